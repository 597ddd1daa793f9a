// Internal: a fixed-size thread pool with task groups. Hand-written (60 lines) since
// Debian 12's C++ toolchain has no executor; tasks are short (one member on one chunk).
#ifndef COE_BASE_THREAD_POOL_H_
#define COE_BASE_THREAD_POOL_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

namespace coe {

// What ThreadPool and WaitingPool share: a queue of tasks, the threads that run them,
// and their stop. A thread runs Loop: it takes queued tasks until the pool stops with
// nothing queued. The destructor stops the pool, wakes every thread and joins it; the
// pools derived from this keep no state of their own that a thread uses.
class TaskThreads {
 public:
  TaskThreads(const TaskThreads&) = delete;
  TaskThreads& operator=(const TaskThreads&) = delete;

 protected:
  TaskThreads() = default;
  ~TaskThreads() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (std::thread& t : threads_) t.join();
  }

  void Loop() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      ++idle_;
      cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
      --idle_;
      if (queue_.empty()) return;  // stopping
      std::function<void()> task = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      task();
      lock.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;  // guarded by mu_: queue_, idle_, stop_
  std::deque<std::function<void()>> queue_;
  size_t idle_ = 0;  // threads waiting for a task
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

class ThreadPool : private TaskThreads {
 public:
  explicit ThreadPool(int threads) {
    for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Loop(); });
  }

  int size() const { return static_cast<int>(threads_.size()); }

  // Runs every task and returns when all are done. Safe to call from many threads
  // (not from a task: that could wait on itself). Without `tick`, the calling thread
  // runs tasks too (a single task runs on it, with no handoff at all), and only as
  // many workers are woken as there are tasks left for them. With `tick`, the calling
  // thread only waits, calling `tick` every `every`.
  void RunAll(std::vector<std::function<void()>> tasks, const std::function<void()>& tick = nullptr,
              std::chrono::milliseconds every = std::chrono::milliseconds(100)) {
    if (tasks.empty()) return;
    if (!tick && tasks.size() == 1) {
      tasks[0]();
      return;
    }
    // Workers and the caller claim tasks by index; `left` counts those not finished.
    // Shared: a helper may be dequeued after every task is done and RunAll returned
    // (it then finds nothing to claim).
    struct Group {
      explicit Group(std::vector<std::function<void()>> t) : tasks(std::move(t)), n(tasks.size()), left(n) {}
      std::vector<std::function<void()>> tasks;
      const size_t n;
      std::atomic<size_t> next{0};
      std::mutex mu;
      std::condition_variable cv;
      size_t left;  // guarded by mu
      // Runs claimed tasks until none is left to claim.
      void Drain() {
        for (size_t i; (i = next.fetch_add(1)) < n;) {
          tasks[i]();
          std::lock_guard<std::mutex> g(mu);
          if (--left == 0) cv.notify_all();
        }
      }
    };
    auto group = std::make_shared<Group>(std::move(tasks));
    const size_t helpers = tick ? group->n : group->n - 1;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (size_t k = 0; k < helpers; ++k) queue_.push_back([group] { group->Drain(); });
    }
    if (helpers == 1)
      cv_.notify_one();
    else
      cv_.notify_all();
    if (!tick) group->Drain();
    std::unique_lock<std::mutex> lock(group->mu);
    while (!group->cv.wait_for(lock, every, [&] { return group->left == 0; })) {
      if (!tick) continue;
      lock.unlock();
      tick();
      lock.lock();
    }
    // Every task has run: no helper touches them again. Their captures (references to
    // this caller's frame) go now, not with a late helper.
    group->tasks.clear();
  }
};

// Threads for tasks that mostly wait on another process (a network call): a task gets
// an idle thread, or a new one, so that waiting tasks never queue behind each other;
// threads are kept for reuse (their number is the most tasks ever in flight at once)
// and joined by the destructor.
class WaitingPool : private TaskThreads {
 public:
  WaitingPool() = default;

  // Starts every task on a thread of the pool, runs `meanwhile` on the calling thread,
  // and returns when all are done. A task no thread can be had for (the system is out
  // of threads) runs on the calling thread after `meanwhile`.
  void Run(std::vector<std::function<void()>> tasks, const std::function<void()>& meanwhile) {
    struct Group {
      std::mutex mu;
      std::condition_variable cv;
      size_t left;
    } group;
    group.left = tasks.size();
    std::vector<std::function<void()>> here;
    for (std::function<void()>& t : tasks) {
      std::function<void()> wrapped = [&group, task = std::move(t)] {
        task();
        std::lock_guard<std::mutex> g(group.mu);
        if (--group.left == 0) group.cv.notify_all();
      };
      if (!Start(wrapped)) here.push_back(std::move(wrapped));
    }
    if (meanwhile) meanwhile();
    for (std::function<void()>& t : here) t();
    std::unique_lock<std::mutex> lock(group.mu);
    group.cv.wait(lock, [&] { return group.left == 0; });
  }

  // Starts `task` on a thread of the pool and returns at once; false (task not run)
  // when no thread can be had.
  bool Post(const std::function<void()>& task) { return Start(task); }

 private:
  bool Start(const std::function<void()>& task) {
    std::lock_guard<std::mutex> lock(mu_);
    if (idle_ <= queue_.size()) {
      try {
        threads_.emplace_back([this] { Loop(); });
      } catch (const std::system_error&) {
        return false;
      }
    }
    queue_.push_back(task);
    cv_.notify_one();
    return true;
  }
};

}  // namespace coe

#endif  // COE_BASE_THREAD_POOL_H_
