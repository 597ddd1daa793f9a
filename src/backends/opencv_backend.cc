// Backend "onnx": an ONNX classifier run by OpenCV DNN (Debian's libopencv-dev).
//
// cv::dnn::Net::forward is not safe to call concurrently on one Net, so the backend
// keeps one Net per concurrent caller (checked out under a mutex). OpenCV's own
// threading is turned off (cv::setNumThreads(1)): the engine runs members and chunks
// in parallel itself, and two thread pools on two cores only fight.
#include <chrono>
#include <filesystem>
#include <mutex>
#include <opencv2/core.hpp>
#include <opencv2/dnn.hpp>

#include "backends/backends.h"
#include "backends/model_module.h"

namespace coe {
namespace {

class OnnxBackend : public Backend {
 public:
  OnnxBackend(BackendInfo info, const ModelSpec& spec, std::vector<std::unique_ptr<cv::dnn::Net>> nets)
      : info_(std::move(info)), path_(spec.path), prep_(PreprocessOf(spec)), nets_(std::move(nets)) {}

  const BackendInfo& info() const override { return info_; }

  Status Predict(const InputView& batch, std::vector<Prediction>* out) override {
    if (Status s; !BeginPredict(info_, path_, batch, out, stats_, &s)) return s;
    const int64_t n = batch.size();
    // forward() returns a header over the Net's own output buffer, which the next
    // forward() on this Net (another thread's, once the lease is back in the pool)
    // overwrites. So the output is read while the lease is held, never after.
    LeasePool<cv::dnn::Net>::Lease net(&nets_);
    cv::Mat logits;
    std::string error;
    try {
      std::vector<int> dims = {static_cast<int>(n)};
      for (int64_t d : info_.input_shape) dims.push_back(static_cast<int>(d));
      cv::Mat blob(static_cast<int>(dims.size()), dims.data(), CV_32F);
      float* dst = blob.ptr<float>();
      const int64_t e = static_cast<int64_t>(batch.data.size()) / n;
      for (int64_t i = 0; i < n; ++i) prep_.Apply(batch.data.data() + i * e, e, dst + i * e);
      net->setInput(blob);
      logits = net->forward();
    } catch (...) {
      error = "OpenCV: " + CurrentExceptionText();
    }
    const int classes = static_cast<int>(info_.labels.size());
    if (error.empty() &&
        (logits.total() != static_cast<size_t>(n) * classes || logits.type() != CV_32F || !logits.isContinuous()))
      error = "output has " + std::to_string(logits.total()) + " values, expected " + std::to_string(n * classes);
    if (!error.empty()) {
      stats_.errors++;
      stats_.abstentions += n;
      for (Prediction& p : *out) p = Prediction::Failure(error, "runtime");
      return Status::Ok();
    }
    const float* rows = logits.ptr<float>();
    uint64_t abstained = 0;
    for (int64_t i = 0; i < n; ++i) {
      Prediction& p = (*out)[i];
      p.label = SoftmaxArgmax({rows + i * classes, static_cast<size_t>(classes)}, &p.probs);
      if (p.label == kAbstain) {
        p.error = "non-finite output";
        p.probs.clear();
        ++abstained;
        continue;
      }
      p.score = p.probs[p.label];
    }
    stats_.abstentions += abstained;
    return Status::Ok();
  }

 private:
  BackendInfo info_;
  std::string path_;
  Preprocess prep_;
  LeasePool<cv::dnn::Net> nets_;  // one Net a concurrent caller
};

StatusOr<std::unique_ptr<cv::dnn::Net>> LoadNet(const ModelSpec& spec) {
  try {
    auto net = std::make_unique<cv::dnn::Net>(cv::dnn::readNetFromONNX(spec.path));
    if (net->empty())
      return InvalidArgumentError("model '" + spec.name + "': " + spec.path + " loads as an empty network");
    net->setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
    net->setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
    return net;
  } catch (...) {
    return InvalidArgumentError("model '" + spec.name + "': cannot load " + spec.path + " as ONNX (" +
                                CurrentExceptionText() + ")");
  }
}

}  // namespace

StatusOr<std::unique_ptr<Backend>> CreateOnnxBackend(const ModelSpec& spec, const BackendOptions& options) {
  static std::once_flag once;
  std::call_once(once, [] { cv::setNumThreads(1); });
  if (spec.path.empty()) return InvalidArgumentError("model '" + spec.name + "': onnx backend needs a path");
  if (!std::filesystem::exists(spec.path))
    return NotFoundError("model '" + spec.name + "': model file " + spec.path + " does not exist");
  if (spec.input_shape.empty())
    return InvalidArgumentError("model '" + spec.name + "': the catalogue gives no input_shape");
  COE_ASSIGN_OR_RETURN(std::unique_ptr<cv::dnn::Net> first, LoadNet(spec));
  // Validate: a forward pass on a zero batch of 2 must give [2, classes].
  std::vector<int> dims = {2};
  for (int64_t d : spec.input_shape) dims.push_back(static_cast<int>(d));
  cv::Mat out;
  try {
    cv::Mat probe(static_cast<int>(dims.size()), dims.data(), CV_32F, cv::Scalar(0));
    first->setInput(probe);
    out = first->forward();
  } catch (...) {
    return InvalidArgumentError("model '" + spec.name + "': " + spec.path + " fails on an input of shape " +
                                ShapeString(spec.input_shape) + " with batch 2 (" + CurrentExceptionText() + ")");
  }
  BackendInfo info;
  info.name = spec.name;
  info.kind = "onnx";
  info.input_shape = spec.input_shape;
  info.gives_probabilities = true;
  info.labels = spec.labels;
  const size_t per_example = out.total() / 2;
  if (out.total() % 2 != 0 || out.size[0] != 2)
    return InvalidArgumentError("model '" + spec.name + "': " + spec.path + " gives an output of " +
                                std::to_string(out.total()) + " values for a batch of 2 (not [batch, classes])");
  if (info.labels.empty()) {
    for (size_t c = 0; c < per_example; ++c) info.labels.push_back(std::to_string(c));
  } else if (per_example != info.labels.size()) {
    return InvalidArgumentError("model '" + spec.name + "': " + spec.path + " outputs " + std::to_string(per_example) +
                                " classes but the catalogue lists " + std::to_string(info.labels.size()) + " labels");
  }
  std::vector<std::unique_ptr<cv::dnn::Net>> nets;
  nets.push_back(std::move(first));
  for (int t = 1; t < std::max(1, options.threads); ++t) {
    COE_ASSIGN_OR_RETURN(std::unique_ptr<cv::dnn::Net> net, LoadNet(spec));
    nets.push_back(std::move(net));
  }
  return std::unique_ptr<Backend>(new OnnxBackend(std::move(info), spec, std::move(nets)));
}

}  // namespace coe
