#include "backends/http_cancel.h"

#include <algorithm>
#include <condition_variable>
#include <list>
#include <mutex>
#include <thread>
#include <utility>

namespace coe {
namespace {

struct Watcher {
  std::mutex mu;
  std::condition_variable cv;                                              // guarded by mu: calls became non-empty
  std::list<std::pair<const std::atomic<bool>*, httplib::Client*>> calls;  // in flight, under mu

  void Loop() {
    std::unique_lock<std::mutex> lock(mu);
    for (;;) {
      cv.wait(lock, [this] { return !calls.empty(); });
      // Under mu: a watch cannot end (nor its client go) while its client is stopped.
      for (const auto& [flag, client] : calls)
        if (flag->load(std::memory_order_relaxed)) client->stop();
      cv.wait_for(lock, std::chrono::milliseconds(kCancelPollMs));
    }
  }
};

// Made on first use and never destroyed: its detached thread may outlive static
// destruction at exit.
Watcher& TheWatcher() {
  static Watcher* const w = [] {
    auto* made = new Watcher;
    std::thread([made] { made->Loop(); }).detach();
    return made;
  }();
  return *w;
}

}  // namespace

CancelWatch::CancelWatch(const std::atomic<bool>* cancelled, httplib::Client* client)
    : cancelled_(cancelled), client_(client) {
  if (!cancelled_) return;
  Watcher& w = TheWatcher();
  {
    std::lock_guard<std::mutex> lock(w.mu);
    w.calls.emplace_back(cancelled_, client_);
  }
  w.cv.notify_one();
}

CancelWatch::~CancelWatch() {
  if (!cancelled_) return;
  Watcher& w = TheWatcher();
  std::lock_guard<std::mutex> lock(w.mu);
  auto it = std::find(w.calls.begin(), w.calls.end(), std::make_pair(cancelled_, client_));
  if (it != w.calls.end()) w.calls.erase(it);
}

bool SleepUnlessCancelled(std::chrono::milliseconds ms, const std::atomic<bool>* cancelled) {
  const auto until = std::chrono::steady_clock::now() + ms;
  for (;;) {
    if (IsCancelled(cancelled)) return false;
    const auto now = std::chrono::steady_clock::now();
    if (now >= until) return true;
    std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
        until - now, std::chrono::milliseconds(cancelled ? kCancelPollMs : 1 << 30)));
  }
}

}  // namespace coe
