// Internal (the onednn module): an ONNX graph compiled by oneDNN for one batch size.
//
// The graph is read by backends/onnx_model.h (no protobuf library) and compiled into
// oneDNN primitives: Conv (grouped and depthwise too), Add, Sub, Mul and Div (one
// operand broadcast onto the other, or a constant), each with a following Relu fused
// into one primitive; MaxPool, AveragePool (ceil_mode too), GlobalAveragePool, Flatten,
// Concat, BatchNormalization, and the activations Relu, LeakyRelu, Clip, Sigmoid, Tanh,
// HardSigmoid, HardSwish (onednn_ops.cc); Gemm (and a following Relu) by
// backends/dense.h, and so are convolutions of few channels (a first layer, and up to
// 8 -> 16 channels after it: PatchConv), which oneDNN ran at a fifth to a third of its
// speed on larger layers. Layouts are oneDNN's choice (blocked or channels-last where
// that is faster), reordered where needed; tensors share one arena. Every kernel
// computes an example alike at every batch size.
//
// Errors: compiling throws GraphError for what the graph asks that this compiler does
// not do (or a hostile file sets), dnnl::error from oneDNN, std::bad_alloc; the backend
// (onednn_backend.cc) turns them into Status values.
//
// Threads: a CompiledGraph holds its buffers, so it runs on one thread at a time; Clone
// gives another caller its own, sharing the primitives and weights.
#ifndef COE_BACKENDS_ONEDNN_GRAPH_H_
#define COE_BACKENDS_ONEDNN_GRAPH_H_

#include <cstdint>
#include <cstdlib>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <oneapi/dnnl/dnnl.hpp>
#include <string>
#include <unordered_map>
#include <vector>

#include "backends/onnx_model.h"

namespace coe::onednn {

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};
using Buffer = std::unique_ptr<void, FreeDeleter>;

// "[2, 3]": dimensions, for messages.
inline std::string DimsText(const dnnl::memory::dims& d) {
  std::string s = "[";
  for (size_t k = 0; k < d.size(); ++k) s += (k ? ", " : "") + std::to_string(d[k]);
  return s + "]";
}

// Row-major strides of `d`, and the plain (row-major) f32 layout of any rank.
inline dnnl::memory::dims PlainStrides(const dnnl::memory::dims& d) {
  dnnl::memory::dims s(d.size(), 1);
  for (size_t k = d.size(); k-- > 1;) s[k - 1] = s[k] * d[k];
  return s;
}
inline dnnl::memory::desc PlainDesc(const dnnl::memory::dims& d) {
  return dnnl::memory::desc(d, dnnl::memory::data_type::f32, PlainStrides(d));
}

// A graph's problem, said as an exception the loader turns into an InvalidArgument.
struct GraphError {
  std::string what;
};

// The primitives of one graph for one batch size, with their buffers.
class CompiledGraph {
 public:
  // Compiles `model` for `batch` examples of `input_shape` ([C, H, W] or [features]);
  // weights are reordered into their layouts on `stream`. Throws as said above.
  CompiledGraph(const onnx::Model& model, const std::vector<int64_t>& input_shape, int batch,
                const dnnl::engine& engine, dnnl::stream& stream);

  // A graph like this one, for another caller: the same primitives and weights (shared,
  // read only: oneDNN primitives run concurrently on their own memory and scratchpad), its
  // own tensors and scratchpad, laid out alike. Cloning reads only what the compiler
  // wrote, so it may run while this graph runs on another thread.
  std::unique_ptr<CompiledGraph> Clone() const;

  // batch() examples of the input shape, row after row; written before Run.
  float* input() { return static_cast<float*>(input_); }
  // batch() rows of classes() logits; read after Run.
  const float* output() const { return static_cast<const float*>(output_); }
  int64_t classes() const { return classes_; }
  int batch() const { return batch_; }

  // Runs every step on `stream` and waits for them.
  void Run(dnnl::stream& stream);

 private:
  using memory = dnnl::memory;
  struct Value {
    memory mem;
  };
  using Args = std::unordered_map<int, memory>;
  struct Step {
    dnnl::primitive primitive;
    Args args;
    std::function<void(const Args&)> custom;  // instead of a primitive: a Dense layer
  };
  // A tensor computed by the graph. Tensors live in one arena, at offsets given once
  // the graph is compiled: two share memory when no step needs both (a resnet's
  // 32-example graph needs ~4 MB, not the ~30 MB of a buffer a tensor).
  struct Activation {
    size_t bytes;
    std::vector<memory> users;                               // the tensor and its views, bound to the arena at the end
    int first = std::numeric_limits<int>::max(), last = -1;  // steps that use it
    size_t offset = 0;
  };
  struct Compilation;  // the model being compiled and the values computed so far
  struct ConvShape;    // a convolution's checked attributes and sizes

  CompiledGraph(const dnnl::engine& engine, int batch) : engine_(engine), batch_(batch) {}

  // The tensors of the graph, their layouts and the arena.
  memory NewMemory(const memory::desc& md);
  memory View(const memory& of, const memory::desc& md);
  memory NewConstant(const memory::desc& md);
  void LayOut(const memory& input, const memory& output);
  memory InLayout(const memory& mem, const memory::desc& want);
  memory Constant(const onnx::FloatTensor& t, const memory::dims& dims, memory::format_tag tag,
                  const memory::desc& want, dnnl::stream& stream);
  memory Plain2d(const memory& mem);
  void Add(dnnl::primitive p, Args args, const memory::desc& scratch);
  void AddCustom(Args args, std::function<void(const Args&)> run);
  static dnnl::primitive_attr Attr(bool relu);

  // The compiler: the graph node by node, one step (or none) each.
  void Build(const onnx::Model& model, const std::vector<int64_t>& input_shape, dnnl::stream& stream);
  memory CompileNode(Compilation& g, const onnx::Node& n, bool relu, dnnl::stream& stream);
  memory CompileConv(Compilation& g, const onnx::Node& n, bool relu, dnnl::stream& stream);
  memory AddPatchConv(const ConvShape& c, const memory& src, bool relu);
  memory AddOnednnConv(const ConvShape& c, const memory& src, bool relu, dnnl::stream& stream);
  memory CompileGemm(Compilation& g, const onnx::Node& n, bool relu);
  memory CompilePool(Compilation& g, const onnx::Node& n);
  // onednn_ops.cc: elementwise nodes, Concat, BatchNormalization.
  memory CompileBinary(Compilation& g, const onnx::Node& n, bool relu, dnnl::stream& stream);
  memory CompileActivation(Compilation& g, const onnx::Node& n);
  memory AddEltwise(const memory& x, dnnl::algorithm alg, float alpha, float beta);
  memory AddChannelScale(const memory& x, const memory& y, dnnl::algorithm alg, bool relu);
  memory CompileConcat(Compilation& g, const onnx::Node& n, dnnl::stream& stream);
  memory CompileBatchNorm(Compilation& g, const onnx::Node& n, dnnl::stream& stream);
  memory ConstantOperand(const onnx::FloatTensor& t, const memory::dims& onto, const std::string& what,
                         dnnl::stream& stream);
  // onednn_tensor.cc: values known at load (onnx_fold.h), shapes and data movement
  // (Reshape, Transpose, Slice, Gather, Split, Pad, Concat of constants), MatMul,
  // Softmax, ReduceMean, LayerNormalization, Erf, Pow, Sqrt.
  bool FoldNode(Compilation& g, const onnx::Node& n);
  memory Plain(const memory& mem);
  memory Aligned(const memory& mem, size_t rank);
  memory ConstantTensor(const onnx::FloatTensor& t, dnnl::stream& stream);
  memory InputOrConstant(Compilation& g, const onnx::Node& n, size_t k, dnnl::stream& stream);
  memory CompileReshape(Compilation& g, const onnx::Node& n);
  memory CompileTranspose(Compilation& g, const onnx::Node& n);
  memory CompileSlice(Compilation& g, const onnx::Node& n);
  void CompileSplit(Compilation& g, const onnx::Node& n);
  memory CompilePad(Compilation& g, const onnx::Node& n);
  memory CompileMatMul(Compilation& g, const onnx::Node& n);
  memory CompileSoftmax(Compilation& g, const onnx::Node& n);
  memory CompileReduceMean(Compilation& g, const onnx::Node& n);
  memory CompileLayerNorm(Compilation& g, const onnx::Node& n);
  memory CompileMath(Compilation& g, const onnx::Node& n);
  memory AddCopy(const memory& src, const memory::dims& dims, const memory::dims& src_strides, int64_t src_offset);
  void Finish(const memory& in, memory result);

  dnnl::engine engine_;
  int batch_;
  std::shared_ptr<std::vector<Buffer>> constants_ = std::make_shared<std::vector<Buffer>>();  // weights, biases
  std::vector<Activation> activations_;                                                       // (while compiling)
  std::unordered_map<dnnl_memory_t, size_t> activation_of_;
  size_t arena_bytes_ = 0;
  Buffer arena_;
  std::vector<Step> steps_;
  std::vector<memory::desc> scratch_descs_;
  std::vector<size_t> scratch_steps_;
  size_t scratch_bytes_ = 0;
  Buffer scratch_;
  void* input_ = nullptr;
  void* output_ = nullptr;
  int64_t classes_ = 0;
};

// While compiling: the model, how many nodes read each tensor, and the tensor each
// name computed so far holds.
struct CompiledGraph::Compilation {
  const onnx::Model& model;
  std::map<std::string, int> uses;
  std::map<std::string, Value> values;
  std::map<std::string, onnx::FloatTensor> folded;  // values known at load (onnx_fold.h)

  explicit Compilation(const onnx::Model& m) : model(m) {
    for (const onnx::Node& n : model.nodes)
      for (const std::string& i : n.inputs) uses[i]++;
    for (const std::string& o : model.outputs) uses[o]++;
  }

  Value& InputOf(const onnx::Node& n, size_t k) {
    if (k >= n.inputs.size()) throw GraphError{n.op_type + " node '" + n.name + "' lacks input " + std::to_string(k)};
    auto it = values.find(n.inputs[k]);
    if (it == values.end())
      throw GraphError{n.op_type + " node '" + n.name + "' reads '" + n.inputs[k] + "', which nothing computes"};
    return it->second;
  }

  // The value of `name` when it is known at load: an initializer or a folded value.
  const onnx::FloatTensor* Known(const std::string& name) const {
    if (auto it = model.initializers.find(name); it != model.initializers.end()) return &it->second;
    if (auto it = folded.find(name); it != folded.end()) return &it->second;
    return nullptr;
  }

  const onnx::FloatTensor* Weight(const onnx::Node& n, size_t k) const {
    if (k >= n.inputs.size() || n.inputs[k].empty()) return nullptr;
    const onnx::FloatTensor* t = Known(n.inputs[k]);
    if (!t)
      throw GraphError{n.op_type + " node '" + n.name + "' takes a computed tensor as input " + std::to_string(k) +
                       " (only constants known at load are supported there)"};
    return t;
  }

  // A scalar constant input of a node (Clip's min and max): its one value, or
  // `fallback` when the input is absent.
  float Scalar(const onnx::Node& n, size_t k, float fallback) const {
    const onnx::FloatTensor* t = Weight(n, k);
    if (!t) return fallback;
    if (t->data.size() != 1)
      throw GraphError{n.op_type + " node '" + n.name + "' takes a scalar as input " + std::to_string(k) + ", not " +
                       std::to_string(t->data.size()) + " values"};
    return t->data[0];
  }

  // Whether input `k` of `n` is a constant (an initializer).
  bool IsConstant(const onnx::Node& n, size_t k) const {
    return k < n.inputs.size() && !n.inputs[k].empty() && Known(n.inputs[k]) != nullptr;
  }

  // A Relu right after node `i`, reading only its output: fused into it (a post-op).
  bool FusedRelu(size_t i) {
    const onnx::Node& n = model.nodes[i];
    if (i + 1 >= model.nodes.size() || uses[n.outputs[0]] != 1) return false;
    const onnx::Node& next = model.nodes[i + 1];
    return next.op_type == "Relu" && next.inputs.size() == 1 && next.inputs[0] == n.outputs[0] && !next.outputs.empty();
  }
};

// Compiles a graph as the constructor does, one compilation at a time process-wide (see
// the .cc file for why).
std::unique_ptr<CompiledGraph> CompileGraph(const onnx::Model& model, const std::vector<int64_t>& input_shape,
                                            int batch, const dnnl::engine& engine, dnnl::stream& stream);

}  // namespace coe::onednn

#endif  // COE_BACKENDS_ONEDNN_GRAPH_H_
