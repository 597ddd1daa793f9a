// Internal: a fixed-size thread pool with task groups. Hand-written (60 lines) since
// Debian 12's C++ toolchain has no executor; tasks are short (one member on one chunk).
#ifndef COE_BASE_THREAD_POOL_H_
#define COE_BASE_THREAD_POOL_H_

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
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

}  // namespace coe

#endif  // COE_BASE_THREAD_POOL_H_
