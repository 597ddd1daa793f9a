#include "server/batcher.h"

#include <algorithm>
#include <cmath>
#include <system_error>

namespace coe {
namespace {

// Whether `b` can share a run with `a`: same example shape, and ids, truth and
// records either present in both or in neither.
bool Compatible(const InputBatch& a, const InputBatch& b) {
  return a.example_shape == b.example_shape && a.ids.empty() == b.ids.empty() && a.truth.empty() == b.truth.empty() &&
         a.texts.empty() == b.texts.empty();
}

template <typename T>
std::vector<T> Slice(const std::vector<T>& v, size_t from, size_t n) {
  if (v.size() < from + n) return {};
  return std::vector<T>(v.begin() + static_cast<std::ptrdiff_t>(from),
                        v.begin() + static_cast<std::ptrdiff_t>(from + n));
}

}  // namespace

Batcher::Batcher(std::shared_ptr<const Cascade> cascade, const BatchOptions& options,
                 std::function<void(const RunResult&)> on_run)
    : cascade_(std::move(cascade)), options_(options), on_run_(std::move(on_run)) {}

Batcher::~Batcher() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : threads_) t.join();
}

double Batcher::seconds_per_example() const {
  std::lock_guard<std::mutex> lock(mu_);
  return seconds_per_example_;
}

Status Batcher::Submit(InputBatch batch, const RunOptions& options, Done done) {
  const size_t n = static_cast<size_t>(batch.size());
  // A run answers several requests with one RunOptions: a per-request stop would be dropped.
  if (options.max_tiers != 0)
    return InvalidArgumentError("RunOptions::max_tiers is not supported on batched runs (Server::Run, infer)");
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return UnavailableError("the server is stopping");
    if (options_.queue_timeout_ms > 0 && !queue_.empty()) {
      // The examples ahead, run `workers` at a time at the measured pace.
      const double wait_ms = 1e3 * static_cast<double>(queued_examples_) * seconds_per_example_ /
                             static_cast<double>(std::max(1, options_.workers));
      if (wait_ms > static_cast<double>(options_.queue_timeout_ms))
        return UnavailableError("server busy: " + std::to_string(queue_.size()) + " requests queued (about " +
                                std::to_string(static_cast<int64_t>(wait_ms)) + " ms of work), over the " +
                                std::to_string(options_.queue_timeout_ms) + " ms queue timeout");
    }
    queue_.push_back(Item{std::move(batch), options, std::move(done), Clock::now()});
    queued_examples_ += n;
    // Workers start on demand, up to `workers`.
    if (idle_ == 0 && threads_.size() < static_cast<size_t>(std::max(1, options_.workers))) {
      try {
        threads_.emplace_back([this] { Loop(); });
      } catch (const std::system_error&) {
        if (threads_.empty()) {
          queue_.pop_back();
          queued_examples_ -= n;
          return UnavailableError("server busy: no thread to run the request");
        }
      }
    }
  }
  cv_.notify_one();
  return Status::Ok();
}

void Batcher::Loop() {
  const bool batching = options_.max_batch > 1;
  const size_t max_batch = static_cast<size_t>(std::max(1, options_.max_batch));
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    ++idle_;
    cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
    --idle_;
    if (queue_.empty()) return;  // stopping and drained
    std::vector<Item> items;
    std::vector<Item> late;  // waited past the queue timeout
    size_t examples = 0;
    const Clock::time_point deadline =
        queue_.front().queued + std::chrono::microseconds(std::max<int64_t>(0, options_.max_queue_delay_us));
    for (;;) {
      // Take what fits, in order; a request that does not fit (or cannot share the run)
      // ends the batch and waits for the next one.
      while (!queue_.empty()) {
        Item& next = queue_.front();
        const size_t n = static_cast<size_t>(next.batch.size());
        if (!items.empty() && (!batching || examples + n > max_batch || !Compatible(items[0].batch, next.batch))) break;
        queued_examples_ -= n;
        const bool expired = options_.queue_timeout_ms > 0 &&
                             Clock::now() - next.queued > std::chrono::milliseconds(options_.queue_timeout_ms);
        (expired ? late : items).push_back(std::move(next));
        queue_.pop_front();
        if (!expired) examples += n;
      }
      const bool full = !batching || examples >= max_batch || (!queue_.empty() && !items.empty());
      if (full || items.empty() || stop_ || options_.max_queue_delay_us <= 0 || Clock::now() >= deadline) break;
      cv_.wait_until(lock, deadline);
    }
    lock.unlock();
    for (Item& it : late)
      it.done(UnavailableError("server busy: the request waited in the queue longer than the " +
                               std::to_string(options_.queue_timeout_ms) + " ms queue timeout"));
    if (!items.empty()) RunBatch(items);
    lock.lock();
  }
}

StatusOr<RunResult> Batcher::Run(std::vector<Item>& items, const RunOptions& ro) const {
  if (items.size() == 1) {
    StatusOr<RunResult> r = cascade_->Run(items[0].batch, ro);
    items[0].batch = InputBatch{};
    return r;
  }
  InputBatch all;
  all.example_shape = items[0].batch.example_shape;
  for (Item& it : items) {
    InputBatch& b = it.batch;
    all.data.insert(all.data.end(), b.data.begin(), b.data.end());
    all.ids.insert(all.ids.end(), b.ids.begin(), b.ids.end());
    all.truth.insert(all.truth.end(), b.truth.begin(), b.truth.end());
    all.texts.insert(all.texts.end(), std::make_move_iterator(b.texts.begin()), std::make_move_iterator(b.texts.end()));
    b = InputBatch{};
  }
  return cascade_->Run(all, ro);
}

void Batcher::RunBatch(std::vector<Item>& items) {
  std::vector<Item> live;
  for (Item& it : items) {
    if (it.options.cancelled && it.options.cancelled->load())
      it.done(UnavailableError("the request was cancelled (its client went away) before its run"));
    else
      live.push_back(std::move(it));
  }
  items.swap(live);
  if (items.empty()) return;
  RunOptions ro;
  for (const Item& it : items) {
    ro.want_probs = ro.want_probs || it.options.want_probs;
    ro.want_members = ro.want_members || it.options.want_members;
  }
  ro.cancelled = items.size() == 1 ? items[0].options.cancelled : options_.cancel_all;
  const auto t0 = Clock::now();
  std::vector<size_t> sizes;  // each request's examples
  for (const Item& it : items) sizes.push_back(static_cast<size_t>(it.batch.size()));
  // Each request's inputs are given back once run (or joined into the run's batch),
  // before the answers are handed out: a request answered holds no memory here.
  StatusOr<RunResult> run = [&]() -> StatusOr<RunResult> {
    try {
      return Run(items, ro);
    } catch (const std::bad_alloc&) {  // refused, never the end of the process
      return UnavailableError("server out of memory for this run; retry later");
    }
  }();
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  if (!run.ok()) {
    for (Item& it : items) it.done(run.status());
    return;
  }
  const RunResult& r = *run;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const double per = seconds / static_cast<double>(std::max<size_t>(1, r.answer.size()));
    seconds_per_example_ = seconds_per_example_ == 0 ? per : 0.8 * seconds_per_example_ + 0.2 * per;
  }
  if (on_run_) on_run_(r);
  if (items.size() == 1) {
    items[0].done(std::move(run));
    return;
  }
  size_t from = 0;
  for (size_t k = 0; k < items.size(); ++k) {
    Item& it = items[k];
    const size_t n = sizes[k];
    RunResult part;
    part.labels = r.labels;
    part.answer = Slice(r.answer, from, n);
    part.exit_tier = Slice(r.exit_tier, from, n);
    part.cost = Slice(r.cost, from, n);
    part.vote = Slice(r.vote, from, n);
    part.degraded = Slice(r.degraded, from, n);
    if (it.options.want_probs) part.probs = Slice(r.probs, from, n);
    part.reply = Slice(r.reply, from, n);
    part.tokens_in = Slice(r.tokens_in, from, n);
    part.tokens_out = Slice(r.tokens_out, from, n);
    if (it.options.want_members) part.member_answers = Slice(r.member_answers, from, n);
    for (const MemberFailure& f : r.failures)  // sorted by example
      if (f.example >= static_cast<int>(from) && f.example < static_cast<int>(from + n)) {
        part.failures.push_back(f);
        part.failures.back().example -= static_cast<int>(from);
      }
    part.seconds = seconds;
    from += n;
    it.done(std::move(part));
  }
}

}  // namespace coe
