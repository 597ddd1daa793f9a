// Internal: a fixed-size thread pool with task groups. Hand-written (60 lines) since
// Debian 12's C++ toolchain has no executor; tasks are short (one member on one chunk).
#ifndef COE_BASE_THREAD_POOL_H_
#define COE_BASE_THREAD_POOL_H_

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

namespace coe {

class ThreadPool {
 public:
  explicit ThreadPool(int threads) {
    for (int i = 0; i < threads; ++i) workers_.emplace_back([this] { Loop(); });
  }
  ~ThreadPool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (std::thread& t : workers_) t.join();
  }
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()); }

  // Runs every task and returns when all are done. Safe to call from many threads
  // (not from a task: that could wait on itself). While waiting, the calling thread
  // calls `tick` (when given) every `every`.
  void RunAll(std::vector<std::function<void()>> tasks, const std::function<void()>& tick = nullptr,
              std::chrono::milliseconds every = std::chrono::milliseconds(100)) {
    if (tasks.empty()) return;
    struct Group {
      std::mutex mu;
      std::condition_variable cv;
      size_t left;
    } group;
    group.left = tasks.size();
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& t : tasks) {
        queue_.push_back([&group, task = std::move(t)] {
          task();
          std::lock_guard<std::mutex> g(group.mu);
          if (--group.left == 0) group.cv.notify_all();
        });
      }
    }
    cv_.notify_all();
    std::unique_lock<std::mutex> lock(group.mu);
    while (!group.cv.wait_for(lock, every, [&] { return group.left == 0; })) {
      if (!tick) continue;
      lock.unlock();
      tick();
      lock.lock();
    }
  }

 private:
  void Loop() {
    for (;;) {
      std::function<void()> task;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
        if (stop_ && queue_.empty()) return;
        task = std::move(queue_.front());
        queue_.pop_front();
      }
      task();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;  // guarded by mu_: queue_ and stop_
  std::deque<std::function<void()>> queue_;
  bool stop_ = false;
  std::vector<std::thread> workers_;
};

// Threads for tasks that mostly wait on another process (a network call): a task gets
// an idle thread, or a new one, so that waiting tasks never queue behind each other;
// threads are kept for reuse (their number is the most tasks ever in flight at once)
// and joined by the destructor.
class WaitingPool {
 public:
  WaitingPool() = default;
  ~WaitingPool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (std::thread& t : threads_) t.join();
  }
  WaitingPool(const WaitingPool&) = delete;
  WaitingPool& operator=(const WaitingPool&) = delete;

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

}  // namespace coe

#endif  // COE_BASE_THREAD_POOL_H_
