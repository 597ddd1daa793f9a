// Backend "onnx": an ONNX classifier run by OpenCV DNN (Debian's libopencv-dev).
//
// cv::dnn::Net::forward is not safe to call concurrently on one Net, so the backend
// keeps a Net per concurrent caller (checked out under a mutex), each its own copy of
// the weights, up to OnnxNetworks(): beyond it callers wait for a Net, so memory does
// not grow with threads past the catalogue's bound. OpenCV's own
// threading is turned off (cv::setNumThreads(1)): the engine runs members and chunks
// in parallel itself, and two thread pools on two cores only fight.
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <opencv2/core.hpp>
#include <opencv2/core/utils/logger.hpp>
#include <opencv2/dnn.hpp>
#include <set>
#include <span>
#include <thread>

#include "backends/backends.h"
#include "backends/model_module.h"
#include "backends/onnx_model.h"

namespace coe {
namespace {

class OnnxBackend : public Backend {
 public:
  // one_at_a_time: the network runs one example a call only (OpenCV cannot run some
  // graphs, MobileNetV3's say, on a batch of more). probabilities: its last layer is a
  // Softmax, so its outputs are taken as they are, not softmaxed again.
  OnnxBackend(BackendInfo info, const ModelSpec& spec, std::vector<std::unique_ptr<cv::dnn::Net>> nets,
              bool one_at_a_time, bool probabilities)
      : info_(std::move(info)),
        path_(spec.path),
        prep_(PreprocessOf(spec)),
        nets_(std::move(nets)),
        one_at_a_time_(one_at_a_time),
        probabilities_(probabilities) {}

  const BackendInfo& info() const override { return info_; }

  Status Predict(const InputView& batch, std::vector<Prediction>* out) override {
    if (Status s; !BeginPredict(info_, path_, batch, out, stats_, &s)) return s;
    const int64_t n = batch.size();
    // forward() returns a header over the Net's own output buffer, which the next
    // forward() on this Net (another thread's, once the lease is back in the pool)
    // overwrites. So the output is read while the lease is held, never after.
    LeasePool<cv::dnn::Net>::Lease net(&nets_);
    const int classes = static_cast<int>(info_.labels.size());
    cv::Mat logits;
    std::string error;
    try {
      const int64_t e = static_cast<int64_t>(batch.data.size()) / n;
      const int64_t step = one_at_a_time_ ? 1 : n;
      if (one_at_a_time_) logits.create(static_cast<int>(n), classes, CV_32F);
      for (int64_t start = 0; start < n; start += step) {
        std::vector<int> dims = {static_cast<int>(step)};
        for (int64_t d : info_.input_shape) dims.push_back(static_cast<int>(d));
        cv::Mat blob(static_cast<int>(dims.size()), dims.data(), CV_32F);
        float* dst = blob.ptr<float>();
        for (int64_t i = 0; i < step; ++i) prep_.Apply(batch.data.data() + (start + i) * e, e, dst + i * e);
        net->setInput(blob);
        cv::Mat got = net->forward();
        if (!one_at_a_time_) {
          logits = got;
        } else if (got.total() == static_cast<size_t>(classes) && got.type() == CV_32F && got.isContinuous()) {
          std::copy_n(got.ptr<float>(), classes, logits.ptr<float>(static_cast<int>(start)));
        } else {
          logits = got;  // the size check below names it
          break;
        }
      }
    } catch (...) {
      error = "OpenCV: " + CurrentExceptionText();
    }
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
      const std::span<const float> row(rows + i * classes, static_cast<size_t>(classes));
      p.label = probabilities_ ? Argmax(row, &p.probs) : SoftmaxArgmax(row, &p.probs);
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
  bool one_at_a_time_, probabilities_;

  // The outputs of a final Softmax as the probabilities; kAbstain for a non-finite one.
  static int Argmax(std::span<const float> row, std::vector<float>* probs) {
    probs->assign(row.begin(), row.end());
    int best = 0;
    for (size_t c = 0; c < row.size(); ++c) {
      if (!std::isfinite(row[c])) return kAbstain;
      if (row[c] > row[best]) best = static_cast<int>(c);
    }
    return best;
  }
};

// Whether `net`'s last layer is a Softmax (then its outputs are probabilities). The
// layers are in topological order; OpenCV ends the graph output with an Identity.
bool EndsInSoftmax(cv::dnn::Net& net) {
  const std::vector<std::string> names = net.getLayerNames();
  for (auto it = names.rbegin(); it != names.rend(); ++it) {
    const cv::Ptr<cv::dnn::Layer> layer = net.getLayer(net.getLayerId(*it));
    if (!layer) return false;
    if (layer->type == "Identity") continue;
    return layer->type == "Softmax" || layer->type == "SoftMax";
  }
  return false;
}

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

// A graph OpenCV DNN 4.6 is known to misread: a Gather of one index (a 0-d index) from a
// computed tensor, as torchvision's GoogLeNet (transform_input) writes `x[:, 0]`. Its
// shape inference then reads past a convolution's buffers (valgrind, `coe record` of
// such a graph: "Invalid read of size 8" in libopencv_dnn, from
// Net::Impl::getLayerShapesRecursively, of a block ConvolutionLayer::create allocated),
// and the run goes on with whatever it read: a SIGFPE on some runs, garbage shapes on
// others. (A Gather from a Shape's output, shape arithmetic OpenCV computes at load, is
// not this.) "" when the graph has none; else the node, named.
std::string KnownMisread(const onnx::Model& m) {
  std::set<std::string> shapes;  // outputs of Shape nodes
  for (const onnx::Node& n : m.nodes)
    if (n.op_type == "Shape" && !n.outputs.empty()) shapes.insert(n.outputs[0]);
  for (const onnx::Node& n : m.nodes) {
    if (n.op_type != "Gather" || n.inputs.size() < 2 || m.initializers.count(n.inputs[0]) || shapes.count(n.inputs[0]))
      continue;
    auto index = m.initializers.find(n.inputs[1]);
    if (index != m.initializers.end() && index->second.dims.empty())
      return "its Gather node '" + n.name + "' takes one index from a computed tensor, which OpenCV DNN 4.6 " +
             "misreads (its shape inference reads past a convolution's buffers; valgrind shows it)";
  }
  return "";
}

// OpenCV DNN 4.6 can crash, not throw, on a valid model: a torchvision GoogLeNet (random
// weights, tests/zoo) ends `coe record` with SIGFPE in its shape inference
// (Net::Impl::getLayerShapesRecursively, from the first forward()); whether it does
// depends on the weights, so no check of the graph can tell in advance. The model is
// first read and run, as CreateOnnxBackend then does, in a child process: a child killed
// by a signal refuses the model with that signal named, and coe goes on. Exceptions are
// left to the parent, which reports OpenCV's message. The child runs only OpenCV code on
// one thread (cv::setNumThreads(1)); it is killed after `limit`, which counts as a pass
// (the parent's own load then decides), so a child that cannot finish (a lock another
// thread held at fork) costs time, never an answer.
std::string CrashOfProbe(const ModelSpec& spec, std::chrono::seconds limit) {
  const pid_t pid = fork();
  if (pid < 0) return "";  // no child: the parent's load decides, as before
  if (pid == 0) {
    try {
      cv::dnn::Net net = cv::dnn::readNetFromONNX(spec.path);
      net.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
      net.setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
      for (int batch : {2, 1}) {
        std::vector<int> dims = {batch};
        for (int64_t d : spec.input_shape) dims.push_back(static_cast<int>(d));
        try {
          net.setInput(cv::Mat(static_cast<int>(dims.size()), dims.data(), CV_32F, cv::Scalar(0)));
          net.forward();
          break;
        } catch (...) {
        }
      }
    } catch (...) {
    }
    // The exit system call itself, not _exit: ThreadSanitizer's _exit interceptor
    // finalizes, and the child, which has only this thread, reports as leaked every
    // thread the parent had not yet joined at fork (TSan lane: "thread leak (pid=16858)
    // Thread T1 (tid=16857, finished) created by main thread at ... RunRun", a `coe run`
    // input loader of the parent: its tid precedes the child's pid). No atexit handler or
    // sanitizer report of the parent's state belongs to this child.
    syscall(SYS_exit_group, 0);
  }
  const auto deadline = std::chrono::steady_clock::now() + limit;
  int status = 0;
  for (;;) {
    const pid_t done = waitpid(pid, &status, WNOHANG);
    if (done == pid) break;
    if (done < 0) return "";
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return "";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (!WIFSIGNALED(status)) return "";
  const int sig = WTERMSIG(status);
  return "OpenCV DNN crashed reading or running it (signal " + std::to_string(sig) + ", " + strsignal(sig) +
         "), in a child process coe runs first for this reason";
}

// How many Nets serve concurrent callers: the catalogue's `networks`, else one a
// thread while the copies' files together stay within kOnnxNetworksBytes (at least one).
int OnnxNetworks(const ModelSpec& spec, int threads) {
  const int callers = std::max(1, threads);
  if (spec.networks > 0) return std::min(spec.networks, callers);
  std::error_code ec;
  const auto bytes = static_cast<int64_t>(std::filesystem::file_size(spec.path, ec));
  if (ec || bytes <= 0) return callers;
  return static_cast<int>(std::clamp<int64_t>(kOnnxNetworksBytes / bytes, 1, callers));
}

}  // namespace

StatusOr<std::unique_ptr<Backend>> CreateOnnxBackend(const ModelSpec& spec, const BackendOptions& options) {
  static std::once_flag once;
  std::call_once(once, [] {
    cv::setNumThreads(1);
    // Its errors reach the user in coe's messages (CurrentExceptionText); its own log
    // lines on stderr would only repeat them.
    cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_SILENT);
  });
  if (spec.path.empty()) return InvalidArgumentError("model '" + spec.name + "': onnx backend needs a path");
  if (!std::filesystem::exists(spec.path))
    return NotFoundError("model '" + spec.name + "': model file " + spec.path + " does not exist");
  if (spec.input_shape.empty())
    return InvalidArgumentError("model '" + spec.name + "': the catalogue gives no input_shape");
  if (auto graph = onnx::ReadModel(spec.path); graph.ok())  // (a file coe cannot read: OpenCV's own words follow)
    if (std::string misread = KnownMisread(*graph); !misread.empty())
      return InvalidArgumentError("model '" + spec.name + "': " + spec.path + ": " + misread +
                                  "; backend = \"onednn\" runs it");
  if (std::string crash = CrashOfProbe(spec, std::chrono::seconds(120)); !crash.empty())
    return InvalidArgumentError("model '" + spec.name + "': " + spec.path + ": " + crash +
                                "; backend = \"onednn\" may run it");
  COE_ASSIGN_OR_RETURN(std::unique_ptr<cv::dnn::Net> first, LoadNet(spec));
  // Validate: a forward pass on a zero batch of 2 must give [2, classes]. A network
  // OpenCV runs one example at a time only (a batch of 2 fails, 1 runs) is run so.
  auto probe = [&](int batch, cv::Mat* out) -> std::string {
    std::vector<int> dims = {batch};
    for (int64_t d : spec.input_shape) dims.push_back(static_cast<int>(d));
    try {
      cv::Mat zeros(static_cast<int>(dims.size()), dims.data(), CV_32F, cv::Scalar(0));
      first->setInput(zeros);
      *out = first->forward().clone();
      return "";
    } catch (...) {
      return CurrentExceptionText();
    }
  };
  cv::Mat out;
  bool one_at_a_time = false;
  if (std::string two = probe(2, &out); !two.empty()) {
    cv::Mat one;
    if (!probe(1, &one).empty())
      return InvalidArgumentError("model '" + spec.name + "': " + spec.path + " fails on an input of shape " +
                                  ShapeString(spec.input_shape) + " (" + two + ")");
    one_at_a_time = true;
    cv::vconcat(one.reshape(1, 1), one.reshape(1, 1), out);
    int sizes[] = {2, static_cast<int>(one.total())};
    out = out.reshape(1, 2, sizes);
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
  for (int t = 1; t < OnnxNetworks(spec, options.threads); ++t) {
    COE_ASSIGN_OR_RETURN(std::unique_ptr<cv::dnn::Net> net, LoadNet(spec));
    nets.push_back(std::move(net));
  }
  const bool probabilities = EndsInSoftmax(*nets[0]);
  return std::unique_ptr<Backend>(
      new OnnxBackend(std::move(info), spec, std::move(nets), one_at_a_time, probabilities));
}

}  // namespace coe
