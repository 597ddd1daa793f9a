// Internal: shadow verification of a served cascade (coe serve --shadow F).
//
// A share F of the requests that exit before the cascade's last tier are also run on
// the last tier alone, after their reply went out (never on a request's critical
// path), and the two answers are compared. Which requests: those whose id hashes below
// F (ShadowChosen: the same ids are chosen on every run and every server). What it
// costs is counted apart (coe_shadow_cost_total), never in the request's cost.
//
// Per exiting tier k, over a window of the last `window` shadowed requests that
// exited there: the share on which the last tier agreed, with its two-sided
// Clopper-Pearson interval at `confidence`, beside the level the plan expected (the
// cascade file's calibrated agreement of tier k's exits with the last tier; NaN when
// the file has none). The tier's alarm is raised when its window holds at least
// `min_samples` and the interval's upper bound is below expected - margin (then, with
// the stated confidence, the tier agrees less than planned by more than the margin:
// its traffic has drifted), and cleared when the upper bound is back at or above it;
// each change is a log line. A window (not all requests since start) lets the alarm
// see drift that a long stationary past would hide, and clear after it.
//
// ShadowRunner: the bounded queue and the workers the shadow runs wait in and run on.
//
// Thread safety: every method may be called from any thread (one mutex each).
#ifndef COE_SERVER_SHADOW_H_
#define COE_SERVER_SHADOW_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "coe/server.h"

namespace coe {

// InvalidArgument naming the first field of `o` out of its range (coe/server.h), with
// coe serve's flag for it.
Status CheckShadowOptions(const ShadowOptions& o);

// Whether the request `id` is in the shadowed share: a 64-bit hash of its bytes
// (FNV-1a, then SplitMix64's finaliser), as a fraction of 2^64, below `share`.
bool ShadowChosen(std::string_view id, double share);

class ShadowMonitor {
 public:
  // `expected[k]`: the plan's agreement of tier k+1's exits with the last tier (NaN:
  // unknown), one per tier but the last.
  ShadowMonitor(const ShadowOptions& options, std::vector<double> expected);

  // A shadowed request that exited at tier `exit_tier` (1-based, before the last):
  // whether the last tier agreed, what its shadow run cost. Returns the line to log
  // when the tier's alarm rose or cleared, "" otherwise. `model` names it there.
  std::string Add(const std::string& model, int exit_tier, bool agreed, double cost);
  // `n` chosen examples whose shadow run could not be made (the queue was full, the
  // server stopping, the last tier failed): counted, not judged.
  void Skipped(int64_t n = 1);

  // What GET /coe/plan-health says of this model: {"share", "window", "confidence",
  // "margin", "cost", "skipped", "tiers": [{"tier", "shadowed", "agreed", "window_n",
  // "window_agreed", "agreement", "lower", "upper", "expected", "alarm"}]}.
  nlohmann::json Health() const;

 private:
  struct Tier {
    std::deque<bool> window;  // latest last
    int64_t window_agreed = 0;
    int64_t shadowed = 0, agreed = 0;
    double expected = 0;
    bool alarm = false;
  };
  // Tier t's interval over its window.
  void Bounds(const Tier& t, double* agreement, double* lower, double* upper) const;

  const ShadowOptions options_;
  mutable std::mutex mu_;
  std::vector<Tier> tiers_;
  double cost_ = 0;
  int64_t skipped_ = 0;
};

// Shadow runs, off every request's path: at most max_queued jobs wait or run, on
// `workers` threads of their own. A job is `run(stop)` (its run sees `stop` as its
// RunOptions::cancelled) and `skip()` when it will not run (Cancel, destruction).
class ShadowRunner {
 public:
  struct Job {
    std::function<void(const std::atomic<bool>& stop)> run;
    std::function<void()> skip;
  };
  ShadowRunner(int max_queued, int workers);
  ~ShadowRunner();  // Cancel(), then joins the workers
  ShadowRunner(const ShadowRunner&) = delete;
  ShadowRunner& operator=(const ShadowRunner&) = delete;

  // Queues `job` unless max_queued jobs wait or run (then false: the caller skips it).
  // Never waits.
  bool Post(Job job);
  // Waits until every job posted before the call has run or been skipped.
  void Flush();
  // Skips every queued job, cancels those running (their `stop` is set) and waits
  // for them to end; jobs posted afterwards run again. For a server's shutdown.
  void Cancel();

 private:
  void Loop();
  const size_t max_queued_;
  std::mutex mu_;
  std::condition_variable cv_;      // guarded by mu_: queue_, running_, done_, stopping_
  std::deque<Job> queue_;           // under mu_
  size_t running_ = 0;              // under mu_
  uint64_t posted_ = 0, done_ = 0;  // under mu_: jobs posted, and run or skipped
  bool stopping_ = false;           // under mu_: the destructor's
  std::atomic<bool> stop_{false};   // the runs' cancellation (Cancel, destruction)
  std::mutex cancel_mu_;            // serializes Cancel
  std::vector<std::thread> threads_;
};

// The Prometheus series (coe_shadow_*) of every model's Health(), by model.
std::string ShadowMetricsText(const std::map<std::string, nlohmann::json>& health);

}  // namespace coe

#endif  // COE_SERVER_SHADOW_H_
