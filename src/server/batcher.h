// Internal: dynamic batching across requests for one served cascade (as Triton's
// dynamic batcher). Requests queue; a worker takes the oldest and, while the batch
// holds fewer than max_batch examples, more queued requests (waiting at most
// max_queue_delay_us for them), runs the cascade once on the whole batch and splits
// the answers back. A request is never split: one larger than max_batch runs alone.
// Answers do not depend on the batch an example shares (the engine's answers are per
// example).
//
// Admission: a request that cannot start within queue_timeout_ms is refused at once
// (Unavailable): Submit estimates its wait from the examples queued ahead of it and
// the measured time per example; a request that has waited longer than the timeout
// when a worker reaches it is refused then.
//
// With max_batch <= 1 batching is off: every request runs alone, `workers` at once.
//
// Cancellation: a request whose RunOptions::cancelled is set before its run starts is
// answered Unavailable and left out of the run; a run of one request stops when its
// flag is set, a run of several when BatchOptions::cancel_all is (they share one
// run: one client going away does not cancel the others).
#ifndef COE_SERVER_BATCHER_H_
#define COE_SERVER_BATCHER_H_

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "coe/cascade.h"
#include "coe/status.h"

namespace coe {

struct BatchOptions {
  int max_batch = 64;               // examples per run; <= 1: off
  int64_t max_queue_delay_us = 0;   // how long the first request waits for others
  int64_t queue_timeout_ms = 1000;  // 0: no admission by deadline
  int workers = 2;                  // runs at once (threads start on demand)
  // Cancels runs of several requests when set (a shutdown); a run of one request is
  // cancelled by its own RunOptions::cancelled. Null: never. Must outlive the batcher.
  const std::atomic<bool>* cancel_all = nullptr;
};

class Batcher {
 public:
  using Done = std::function<void(StatusOr<RunResult>)>;
  // `on_run` sees every whole run (for metrics), on a worker thread.
  Batcher(std::shared_ptr<const Cascade> cascade, const BatchOptions& options,
          std::function<void(const RunResult&)> on_run);
  ~Batcher();  // answers every queued request, then joins
  Batcher(const Batcher&) = delete;
  Batcher& operator=(const Batcher&) = delete;

  // Queues `batch`; `done` is called once, on a worker thread, with this request's
  // answers. Unavailable (and `done` never called) when admission refuses it;
  // InvalidArgument for options.max_tiers != 0 (one run answers several requests).
  Status Submit(InputBatch batch, const RunOptions& options, Done done);

  // Mean seconds per example of recent runs (0 before the first).
  double seconds_per_example() const;

 private:
  using Clock = std::chrono::steady_clock;
  struct Item {
    InputBatch batch;
    RunOptions options;
    Done done;
    Clock::time_point queued;
  };
  void Loop();
  void RunBatch(std::vector<Item>& items);
  // The cascade on the items' examples (each request's given back as it joins the run).
  StatusOr<RunResult> Run(std::vector<Item>& items, const RunOptions& ro) const;

  const std::shared_ptr<const Cascade> cascade_;
  const BatchOptions options_;
  const std::function<void(const RunResult&)> on_run_;
  mutable std::mutex mu_;
  std::condition_variable cv_;  // guarded by mu_: queue_, queued_examples_, stop_
  std::deque<Item> queue_;
  size_t queued_examples_ = 0;
  double seconds_per_example_ = 0;  // EWMA of runs, under mu_
  bool stop_ = false;
  size_t idle_ = 0;                   // workers waiting for work
  std::vector<std::thread> threads_;  // under mu_
};

}  // namespace coe

#endif  // COE_SERVER_BATCHER_H_
