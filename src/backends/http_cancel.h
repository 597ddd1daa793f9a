// Internal: aborting the HTTP backends' calls (remote, openai) when their run is
// cancelled (InputView::cancelled: the server's client went away, or its shutdown
// grace period ended).
//
// httplib blocks in a socket read with no hook of ours (its `progress` callback runs
// only while response bytes arrive), and only Client::stop() from another thread ends
// that read. So one watcher thread per process polls the flags of the calls in flight
// every kCancelPollMs and stops the clients whose flag is set (again at each poll
// while the call lasts: a stop that comes before the call has its socket does
// nothing). Polling, not a callback, keeps the flag a plain atomic the engine and the
// server share without knowing of HTTP.
#ifndef COE_BACKENDS_HTTP_CANCEL_H_
#define COE_BACKENDS_HTTP_CANCEL_H_

#include <httplib.h>

#include <atomic>
#include <chrono>

namespace coe {

inline constexpr int kCancelPollMs = 20;

inline bool IsCancelled(const std::atomic<bool>* cancelled) {
  return cancelled && cancelled->load(std::memory_order_relaxed);
}

// While alive, `client` is stopped (Client::stop, from the watcher's thread) once
// *cancelled is true. A null flag watches nothing. `client` must outlive the watch.
class CancelWatch {
 public:
  CancelWatch(const std::atomic<bool>* cancelled, httplib::Client* client);
  ~CancelWatch();
  CancelWatch(const CancelWatch&) = delete;
  CancelWatch& operator=(const CancelWatch&) = delete;

 private:
  const std::atomic<bool>* cancelled_;
  httplib::Client* client_;
};

// Sleeps `ms`, or less when *cancelled becomes true (checked every kCancelPollMs).
// Returns false when cancelled.
bool SleepUnlessCancelled(std::chrono::milliseconds ms, const std::atomic<bool>* cancelled);

}  // namespace coe

#endif  // COE_BACKENDS_HTTP_CANCEL_H_
