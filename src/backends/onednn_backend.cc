// Backend "onednn": an ONNX classifier run by oneDNN (Debian's libdnnl-dev), in the
// module libcoe_onednn.so (see backends/module.h).
//
// oneDNN's JIT kernels for the CPU at hand (AVX-512, AVX2, ...) run the zoo's models 2-4x
// faster than OpenCV DNN (bench/model_batch), with the same answers within 1e-5.
//
// The model is compiled by backends/onednn_graph.h into a CompiledGraph of oneDNN
// primitives for one batch size; this file runs a call's examples on such graphs.
//
// Answers do not depend on batching: a call's examples run in graphs of kBlock, then of
// the powers of four below it, and every kernel computes an example alike at every size
// (oneDNN's inner product did not, hence Dense). Each graph is checked when compiled
// against the one-example graph's answers to a probe batch, and a size that differs is
// not used (GraphFor); the conformance suite checks the answers bit for bit.
//
// Concurrency: a CompiledGraph holds its buffers, so it runs on one thread at a time. The
// backend keeps one Worker (a stream and its graphs) per concurrent caller, checked out
// under a mutex like the onnx backend's Nets. Only the first graph of each size is
// compiled; the other Workers' are clones of it, sharing its primitives and weights
// (halving the build time a process pays on its first examples, ~3.5 ms a graph for
// resnet_small, and the weights). oneDNN's OpenMP threading is held at one thread a
// caller: the engine runs members and chunks in parallel itself.
#include <omp.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>

#include "backends/model_module.h"
#include "backends/module.h"
#include "backends/onednn_graph.h"
#include "backends/onnx_model.h"

namespace coe {
namespace {

using onednn::CompiledGraph;
using onednn::GraphError;

// Examples the largest graph runs at once; the rest of a call runs in graphs of the powers
// of four below (a call of 7: 4, 1, 1, 1). The engine's chunk is 16; graphs of 32 were no
// faster (bench/model_batch) and cost a probe twice as long.
constexpr int kBlock = 16;

// What the exception being handled says (CurrentExceptionText), with the graph's own
// problems in full and oneDNN's errors named; no exception leaves this file.
std::string ErrorText() {
  try {
    throw;
  } catch (const GraphError& e) {
    return e.what;
  } catch (const dnnl::error& e) {
    return std::string("oneDNN: ") + e.what();
  } catch (...) {
    return CurrentExceptionText();
  }
}

// Graphs of kBlock, kBlock / 4, ..., 1 examples: 16, 4 and 1. Each size a process uses is
// compiled (its primitives JIT-compiled) and probed once, and first runs cold: with every
// power of two, a `coe run` of the zoo cascade built 123 primitives (40 ms) where sizes
// 16, 4 and 1 need ~70; a remainder of 7 now runs 4 + 1 + 1 + 1 instead of 4 + 2 + 1.
constexpr int kGraphSizes = std::bit_width(static_cast<unsigned>(kBlock)) / 2 + 1;
static_assert(kBlock == 1 << (2 * (kGraphSizes - 1)), "kBlock is a power of 4");

// The index of the graph of `size` examples (a power of 4 up to kBlock).
int GraphIndex(int size) { return std::countr_zero(static_cast<unsigned>(kBlock / size)) / 2; }

// One caller's stream and graphs (graphs[k] runs kBlock >> 2k examples; made on first use).
struct Worker {
  dnnl::stream stream;
  std::unique_ptr<CompiledGraph> graphs[kGraphSizes];
};

// A probe of kBlock pseudo-random examples, and what the one-example graph answers on
// each (Probe::want, kBlock rows of `classes`). Every larger graph is checked against it
// when compiled (OnednnBackend::GraphFor), which makes the probe on first need: when the
// kBlock graph is compiled as the model loads (Warm; ~4 ms for resnet_small), or later.
struct Probe {
  std::vector<float> inputs, want;
};

Probe MakeProbe(Worker& w, const std::vector<int64_t>& input_shape) {
  int64_t e = 1;
  for (int64_t d : input_shape) e *= d;
  Probe p;
  p.inputs.resize(kBlock * e);
  uint32_t state = 12345;
  for (float& v : p.inputs) {
    state = state * 1664525u + 1013904223u;
    v = static_cast<float>(state >> 8) / static_cast<float>(1u << 24) * 4.f - 2.f;
  }
  CompiledGraph& one = *w.graphs[kGraphSizes - 1];
  for (int i = 0; i < kBlock; ++i) {
    std::copy(p.inputs.begin() + i * e, p.inputs.begin() + (i + 1) * e, one.input());
    one.Run(w.stream);
    p.want.insert(p.want.end(), one.output(), one.output() + one.classes());
  }
  return p;
}

class OnednnBackend : public Backend {
 public:
  OnednnBackend(BackendInfo info, const ModelSpec& spec, std::shared_ptr<const onnx::Model> model, dnnl::engine engine,
                std::vector<std::unique_ptr<Worker>> workers, const CompiledGraph* one)
      : info_(std::move(info)),
        path_(spec.path),
        prep_(PreprocessOf(spec)),
        model_(std::move(model)),
        engine_(std::move(engine)),
        workers_(std::move(workers)) {
    first_[kGraphSizes - 1] = one;
    // A model exported for a fixed batch of one (its shapes baked in) runs one example at a time.
    if (!model_->input_dims.empty() && model_->input_dims[0] == 1)
      for (int k = 0; k + 1 < kGraphSizes; ++k) differs_[k] = true;
  }

  const BackendInfo& info() const override { return info_; }

  // Compiles (and probes) every graph size now, as the model loads (the one-example graph
  // is compiled already): most examples run in the kBlock graph, and a `coe run` loads its
  // models while another thread decodes the inputs, so the build is off the critical path
  // there (zoo cascade: 328 -> 313 ms, medians of 13); the sizes between come with it,
  // so that no call pays a build (issue 27: alexnet's first call of 8 examples took 1.3 s
  // against 0.04 s for 4, building the 4-example graph; `coe serve` is ready only once
  // this is done). A failure here is left for the first call to meet (and report) again.
  void Warm() {
    LeasePool<Worker>::Lease worker(&workers_);
    for (int size = kBlock; size > 1; size /= 4) {
      try {
        GraphFor(*worker, size);
      } catch (...) {
      }
    }
  }

  Status Predict(const InputView& batch, std::vector<Prediction>* out) override {
    if (Status s; !BeginPredict(info_, path_, batch, out, stats_, &s)) return s;
    const int64_t n = batch.size();
    omp_set_num_threads(1);
    LeasePool<Worker>::Lease worker(&workers_);
    const int64_t e = static_cast<int64_t>(batch.data.size()) / n;
    const int classes = static_cast<int>(info_.labels.size());
    std::string error;
    uint64_t abstained = 0;
    bool bad[kBlock];
    for (int64_t start = 0; start < n;) {
      const int64_t rest = n - start;
      CompiledGraph* graph = nullptr;
      try {
        int size = kBlock;
        while (size > rest) size /= 4;
        for (; !graph; size /= 4) graph = GraphFor(*worker, size);
        float* dst = graph->input();
        const float* src = batch.data.data() + start * e;
        for (int64_t i = 0; i < graph->batch(); ++i) {
          // A non-finite input abstains: Relu would turn its NaNs into zeros, where OpenCV
          // (and the contract) let the example's output be non-finite.
          uint32_t non_finite = 0;
          prep_.Apply(src + i * e, e, dst + i * e);
          for (int64_t k = i * e; k < (i + 1) * e; ++k) {
            const uint32_t bits = std::bit_cast<uint32_t>(dst[k]);
            non_finite |= (bits & 0x7f800000u) == 0x7f800000u;  // an exponent of all ones
          }
          bad[i] = non_finite != 0;
        }
        graph->Run(worker->stream);
      } catch (...) {
        error = ErrorText();
        break;
      }
      const float* rows = graph->output();
      for (int64_t i = 0; i < graph->batch(); ++i) {
        Prediction& p = (*out)[start + i];
        if (bad[i]) {
          p.error = "non-finite input";
          ++abstained;
          continue;
        }
        p.label = SoftmaxArgmax({rows + i * classes, static_cast<size_t>(classes)}, &p.probs);
        if (p.label == kAbstain) {
          p.error = "non-finite output";
          p.probs.clear();
          ++abstained;
          continue;
        }
        p.score = p.probs[p.label];
      }
      start += graph->batch();
    }
    if (!error.empty()) {
      stats_.errors++;
      stats_.abstentions += n;
      for (Prediction& p : *out) p = Prediction::Failure(error, "runtime");
      return Status::Ok();
    }
    stats_.abstentions += abstained;
    return Status::Ok();
  }

 private:
  // `w`'s graph of `size` examples, made on first use: the first of each size is compiled
  // and checked against the probe; the other callers' are clones of it. nullptr when graphs of
  // that size answer the probe differently from the one-example graph (oneDNN chooses
  // kernels per problem, batch size included: on this CPU alike for every zoo model, but a
  // CPU where not would make an answer depend on how it was batched). Callers then use
  // smaller graphs, down to one example, so answers never depend on batching.
  CompiledGraph* GraphFor(Worker& w, int size) {
    const int k = GraphIndex(size);
    std::unique_ptr<CompiledGraph>& graph = w.graphs[k];
    if (graph) return graph.get();
    std::lock_guard<std::mutex> lock(first_mu_);
    if (differs_[k]) return nullptr;
    if (first_[k]) {
      graph = first_[k]->Clone();
      return graph.get();
    }
    if (probe_.want.empty()) {
      std::unique_ptr<CompiledGraph>& one = w.graphs[kGraphSizes - 1];
      if (!one) one = first_[kGraphSizes - 1]->Clone();
      probe_ = MakeProbe(w, info_.input_shape);
    }
    try {
      graph = onednn::CompileGraph(*model_, info_.input_shape, size, engine_, w.stream);
    } catch (const GraphError&) {
      // A graph that compiles for one example but not for `size` (a shape the exporter
      // fixed): smaller graphs answer instead, as for a probe that differs.
      differs_[k] = true;
      return nullptr;
    }
    const int64_t e = static_cast<int64_t>(probe_.inputs.size()) / kBlock;
    std::copy(probe_.inputs.begin(), probe_.inputs.begin() + size * e, graph->input());
    graph->Run(w.stream);
    if (std::memcmp(graph->output(), probe_.want.data(), size * graph->classes() * sizeof(float)) != 0) {
      differs_[k] = true;
      graph.reset();
      return nullptr;
    }
    first_[k] = graph.get();
    return graph.get();
  }

  std::mutex first_mu_;
  Probe probe_;  // guarded by first_mu_: made on first need
  const CompiledGraph* first_[kGraphSizes] =
      {};                           // guarded by first_mu_: the graph of each size the others clone (a worker's)
  bool differs_[kGraphSizes] = {};  // guarded by first_mu_: graph sizes refused by the probe
  BackendInfo info_;
  std::string path_;
  Preprocess prep_;
  std::shared_ptr<const onnx::Model> model_;
  dnnl::engine engine_;
  LeasePool<Worker> workers_;  // one Worker a concurrent caller
};

StatusOr<std::unique_ptr<Backend>> CreateOnednnBackend(const ModelSpec& spec, const BackendOptions& options) {
  if (spec.path.empty()) return InvalidArgumentError("model '" + spec.name + "': onednn backend needs a path");
  std::error_code ec;
  if (!std::filesystem::exists(spec.path, ec))
    return NotFoundError("model '" + spec.name + "': model file " + spec.path + " does not exist");
  if (spec.input_shape.empty())
    return InvalidArgumentError("model '" + spec.name + "': the catalogue gives no input_shape");
  auto parsed = onnx::ReadModel(spec.path);
  if (!parsed.ok()) return parsed.status().WithPrefix("model '" + spec.name + "'");
  // The backend softmaxes the graph's output: a graph that ends in its own Softmax over
  // the classes gives the same probabilities without it (and is not softmaxed twice).
  onnx::StripFinalSoftmax(&*parsed);
  // The shape the file declares for its input (past the batch) must hold as many values
  // as the catalogue's (a [C, H, W] image may feed a model of flat [C*H*W] inputs).
  const std::vector<int64_t>& declared = parsed->input_dims;
  int64_t want = 1, has = 1;
  for (int64_t d : spec.input_shape) want *= d;
  for (size_t k = 1; k < declared.size(); ++k) has = declared[k] < 0 || has < 0 ? -1 : has * declared[k];
  if (declared.size() > 1 && has > 0 && has != want) {
    std::vector<int64_t> example(declared.begin() + std::min<size_t>(1, declared.size()), declared.end());
    return InvalidArgumentError("model '" + spec.name + "': " + spec.path + " takes inputs of shape " +
                                ShapeString(example) + " (past the batch), the catalogue's input_shape is " +
                                ShapeString(spec.input_shape));
  }
  auto model = std::make_shared<const onnx::Model>(std::move(*parsed));
  omp_set_num_threads(1);
  BackendInfo info;
  info.name = spec.name;
  info.kind = "onednn";
  info.input_shape = spec.input_shape;
  info.gives_probabilities = true;
  info.labels = spec.labels;
  std::vector<std::unique_ptr<Worker>> workers;
  try {
    dnnl::engine engine(dnnl::engine::kind::cpu, 0);
    // The first worker's single-example graph checks the model now, so that a model this
    // backend cannot run is an error at load time, not an abstention on every example.
    for (int t = 0; t < std::max(1, options.threads); ++t) {
      auto w = std::make_unique<Worker>();
      w->stream = dnnl::stream(engine);
      workers.push_back(std::move(w));
    }
    try {
      workers[0]->graphs[kGraphSizes - 1] =
          onednn::CompileGraph(*model, spec.input_shape, 1, engine, workers[0]->stream);
    } catch (const std::bad_alloc&) {
      return ResourceExhaustedError("model '" + spec.name + "': out of memory compiling " + spec.path);
    } catch (...) {
      return InvalidArgumentError("model '" + spec.name + "': " + spec.path +
                                  " cannot run on the onednn backend with inputs of shape " +
                                  ShapeString(spec.input_shape) + ": " + ErrorText());
    }
    const size_t classes = static_cast<size_t>(workers[0]->graphs[kGraphSizes - 1]->classes());
    if (info.labels.empty()) {
      for (size_t c = 0; c < classes; ++c) info.labels.push_back(std::to_string(c));
    } else if (classes != info.labels.size()) {
      return InvalidArgumentError("model '" + spec.name + "': " + spec.path + " outputs " + std::to_string(classes) +
                                  " classes but the catalogue lists " + std::to_string(info.labels.size()) + " labels");
    }
    const CompiledGraph* one = workers[0]->graphs[kGraphSizes - 1].get();
    auto backend = std::make_unique<OnednnBackend>(std::move(info), spec, std::move(model), std::move(engine),
                                                   std::move(workers), one);
    backend->Warm();
    return std::unique_ptr<Backend>(std::move(backend));
  } catch (...) {
    return InvalidArgumentError("model '" + spec.name + "': " + ErrorText());
  }
}

}  // namespace
}  // namespace coe

namespace {
const coe::ModuleBackend kBackends[] = {{"onednn", &coe::CreateOnednnBackend}};
const coe::ModuleExports kExports{.name = "onednn", .backends = kBackends, .num_backends = 1};
}  // namespace

extern "C" const coe::ModuleExports* coe_module() { return &kExports; }
