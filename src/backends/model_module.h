// Internal: what the in-process model backends (onnx: OpenCV DNN, onednn: oneDNN) share.
// Header-only: each lives in its own module (backends/module.h), linked against the
// shared base only.
#ifndef COE_BACKENDS_MODEL_MODULE_H_
#define COE_BACKENDS_MODEL_MODULE_H_

#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "coe/backend.h"

namespace coe {

// What the exception being handled says, on one line and of a readable length: its
// start and its end, where libraries put the cause (OpenCV's importer, say, ends its
// message with the node and operator it could not read). Call it inside a catch block;
// no exception leaves a model module.
inline std::string CurrentExceptionText() {
  std::string what = "unknown exception";
  try {
    throw;
  } catch (const std::exception& e) {
    what = e.what();
  } catch (...) {
  }
  std::string line;
  for (char c : what) {
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
    if (c == ' ' && (line.empty() || line.back() == ' ')) continue;
    line += c;
  }
  while (!line.empty() && line.back() == ' ') line.pop_back();
  constexpr size_t kHead = 200, kTail = 600;
  if (line.size() > kHead + kTail + 5) line = line.substr(0, kHead) + " ... " + line.substr(line.size() - kTail);
  return line;
}

// The start of Predict: counts the call, sizes `out`, and refuses a batch of another
// shape than `info`'s (every example abstains). Returns false, with `*status` what
// Predict returns, when there is nothing more to do (that, or an empty batch).
inline bool BeginPredict(const BackendInfo& info, const std::string& path, const InputView& batch,
                         std::vector<Prediction>* out, BackendStats& stats, Status* status) {
  const int64_t n = batch.size();
  out->assign(n, Prediction{});
  stats.calls++;
  stats.examples += n;
  *status = Status::Ok();
  if (n == 0) return false;
  if (batch.shape() == info.input_shape) return true;
  for (Prediction& p : *out) p = Prediction::Failure("wrong input shape", "input");
  stats.abstentions += n;
  *status = InvalidArgumentError("model '" + info.name + "' (" + path + ") takes inputs of shape " +
                                 ShapeString(info.input_shape) + ", got " + ShapeString(batch.shape()));
  return false;
}

// Per-caller state (a Net, a oneDNN stream and its plans) that runs on one thread at a
// time: one item per concurrent caller, checked out for a call.
template <typename T>
class LeasePool {
 public:
  explicit LeasePool(std::vector<std::unique_ptr<T>> items) : items_(std::move(items)) {}

  // Holds one item, waiting for one to be returned if all are out.
  class Lease {
   public:
    explicit Lease(LeasePool* pool) : pool_(pool) {
      std::unique_lock<std::mutex> lock(pool->mu_);
      pool->cv_.wait(lock, [pool] { return !pool->items_.empty(); });
      item_ = std::move(pool->items_.back());
      pool->items_.pop_back();
    }
    ~Lease() {
      std::lock_guard<std::mutex> lock(pool_->mu_);
      pool_->items_.push_back(std::move(item_));
      pool_->cv_.notify_one();
    }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    T* operator->() const { return item_.get(); }
    T& operator*() const { return *item_; }

   private:
    LeasePool* pool_;
    std::unique_ptr<T> item_;
  };

 private:
  std::mutex mu_;
  std::condition_variable cv_;             // signalled when an item is returned
  std::vector<std::unique_ptr<T>> items_;  // guarded by mu_
};

}  // namespace coe

#endif  // COE_BACKENDS_MODEL_MODULE_H_
