// Fault injection for tests: wrapper backends around a real one (slow, flaky, dead).
// Each keeps its own statistics, as the backend.h contract asks of every backend.
#ifndef COE_TESTS_FAULT_BACKENDS_H_
#define COE_TESTS_FAULT_BACKENDS_H_

#include <chrono>
#include <cmath>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "coe/backend.h"

namespace coe::testing {

class FaultyBackend : public Backend {
 public:
  enum class Mode {
    kSlow,     // answers as the inner backend, after a delay
    kFailOdd,  // fails (no answer) on examples whose id ends in an odd digit
    kDead,     // every call fails: no example has an answer
    kBroken,   // breaks the contract: returns an error status and answers nothing
  };
  FaultyBackend(std::unique_ptr<Backend> inner, Mode mode,
                std::chrono::microseconds delay = std::chrono::microseconds(200))
      : inner_(std::move(inner)), mode_(mode), delay_(delay) {}

  const BackendInfo& info() const override { return inner_->info(); }

  Status Predict(const InputView& batch, std::vector<Prediction>* out) override {
    const int64_t n = batch.size();
    stats_.calls++;
    stats_.examples += n;
    const std::vector<int64_t>& shape = inner_->info().input_shape;
    if (!shape.empty() && batch.shape() != shape) {
      out->assign(n, Prediction::Failure("wrong input shape", "input"));
      stats_.abstentions += n;
      return InvalidArgumentError("model '" + info().name + "' takes inputs of shape " + ShapeString(shape) + ", got " +
                                  ShapeString(batch.shape()));
    }
    if (mode_ == Mode::kDead) {
      out->assign(n, Prediction::Failure("injected: dead backend", "connect"));
      stats_.errors++;
      stats_.abstentions += n;
      return Status::Ok();
    }
    if (mode_ == Mode::kBroken) {
      out->clear();
      return UnavailableError("injected: broken backend");
    }
    if (mode_ == Mode::kSlow) std::this_thread::sleep_for(delay_);
    const Status s = inner_->Predict(batch, out);
    if (!s.ok()) {
      stats_.abstentions += n;
      return s;
    }
    uint64_t abstained = 0;
    for (int64_t i = 0; i < n; ++i) {
      Prediction& p = (*out)[i];
      if (mode_ == Mode::kFailOdd && i < static_cast<int64_t>(batch.ids.size()) && !batch.ids[i].empty() &&
          (batch.ids[i].back() - '0') % 2 == 1)
        p = Prediction::Failure("injected failure", "http_500");
      abstained += p.label == kAbstain;
    }
    stats_.abstentions += abstained;
    return Status::Ok();
  }

  Backend& inner() { return *inner_; }

 private:
  std::unique_ptr<Backend> inner_;
  Mode mode_;
  std::chrono::microseconds delay_;
};

}  // namespace coe::testing

#endif  // COE_TESTS_FAULT_BACKENDS_H_
