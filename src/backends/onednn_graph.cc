// The compiled graph of the onednn module (backends/onednn_graph.h): the compiler, node
// by node, and the arena its tensors share. Uses backends/onnx_model.h (the graph) and
// backends/dense.h (Dense, PatchConv); the backend (onednn_backend.cc) uses this file.
#include "backends/onednn_graph.h"

#include <algorithm>
#include <map>
#include <mutex>

#include "backends/dense.h"

namespace coe::onednn {
namespace {

using dnnl::memory;
using Tag = memory::format_tag;
using Dt = memory::data_type;

Buffer Allocate(size_t bytes) {
  bytes = std::max<size_t>(64, (bytes + 63) / 64 * 64);
  void* p = std::aligned_alloc(64, bytes);
  if (!p) throw std::bad_alloc();
  return Buffer(p);
}

// The output length of a convolution or pooling along one axis (0 when empty), after
// checking the attributes a hostile file could set to crash the arithmetic (a stride of
// 0, pads near 2^63).
int64_t OutputLength(const std::string& node, int64_t in, int64_t pad_begin, int64_t pad_end, int64_t kernel,
                     int64_t stride, int64_t dilation) {
  constexpr int64_t kMax = int64_t{1} << 20;
  auto within = [](int64_t v, int64_t lo) { return v >= lo && v <= kMax; };
  if (!within(stride, 1) || !within(dilation, 1) || !within(kernel, 1) || !within(pad_begin, 0) || !within(pad_end, 0))
    throw GraphError{node + " has a stride, dilation or kernel below 1, a negative pad, or one above 2^20"};
  const int64_t span = in + pad_begin + pad_end - dilation * (kernel - 1) - 1;
  return span < 0 ? 0 : span / stride + 1;
}

// Every operator the compiler runs: how CompileNode compiles it, and whether a Relu
// right after it is fused into its primitive. Unknown ones are refused, naming these.
enum class OpKind {
  kConv,
  kGemm,
  kBinary,
  kActivation,
  kPool,
  kConcat,
  kBatchNorm,
  kReshape,
  kTranspose,
  kSlice,
  kPad,
  kMatMul,
  kSoftmax,
  kReduceMean,
  kLayerNorm,
  kMath,
  kPassThrough
};
struct OpInfo {
  const char* name;
  OpKind kind;
  bool fuses_relu;
};
constexpr OpInfo kOps[] = {
    {"Conv", OpKind::kConv, true},
    {"Gemm", OpKind::kGemm, true},
    {"Add", OpKind::kBinary, true},
    {"Sub", OpKind::kBinary, true},
    {"Mul", OpKind::kBinary, true},
    {"Div", OpKind::kBinary, true},
    {"Relu", OpKind::kActivation, false},
    {"LeakyRelu", OpKind::kActivation, false},
    {"Clip", OpKind::kActivation, false},
    {"Sigmoid", OpKind::kActivation, false},
    {"Tanh", OpKind::kActivation, false},
    {"HardSigmoid", OpKind::kActivation, false},
    {"HardSwish", OpKind::kActivation, false},
    {"MaxPool", OpKind::kPool, false},
    {"AveragePool", OpKind::kPool, false},
    {"GlobalAveragePool", OpKind::kPool, false},
    {"Concat", OpKind::kConcat, false},
    {"BatchNormalization", OpKind::kBatchNorm, false},
    {"Flatten", OpKind::kReshape, false},
    {"Reshape", OpKind::kReshape, false},
    {"Squeeze", OpKind::kReshape, false},
    {"Unsqueeze", OpKind::kReshape, false},
    {"Transpose", OpKind::kTranspose, false},
    {"Slice", OpKind::kSlice, false},
    {"Gather", OpKind::kSlice, false},
    {"Split", OpKind::kSlice, false},  // (compiled by Build: several outputs)
    {"Pad", OpKind::kPad, false},
    {"MatMul", OpKind::kMatMul, false},
    {"Softmax", OpKind::kSoftmax, false},
    {"ReduceMean", OpKind::kReduceMean, false},
    {"LayerNormalization", OpKind::kLayerNorm, false},
    {"Erf", OpKind::kMath, false},
    {"Sqrt", OpKind::kMath, false},
    {"Pow", OpKind::kMath, false},
    {"Identity", OpKind::kPassThrough, false},  // (and Dropout: the input itself)
    {"Dropout", OpKind::kPassThrough, false},
};

const OpInfo* FindOp(const std::string& op_type) {
  for (const OpInfo& op : kOps)
    if (op_type == op.name) return &op;
  return nullptr;
}

}  // namespace

// A 2-D convolution's attributes, checked, with its input and output sizes.
struct CompiledGraph::ConvShape {
  const onnx::FloatTensor* w;
  const onnx::FloatTensor* b;  // nullptr: no bias
  memory::dims sd, od;         // input and output [N, C, H, W]
  std::vector<int64_t> k, s, dil, p;
  int64_t oc;
  int64_t groups = 1;
  // The weights' dimensions for oneDNN: [OC, IC, KH, KW], or grouped [G, OC/G, IC/G,
  // KH, KW] (ONNX's [OC, IC/G, KH, KW] is the same bytes).
  memory::dims wdims;
  std::string what;  // "Conv node '<name>'"
};

CompiledGraph::CompiledGraph(const onnx::Model& model, const std::vector<int64_t>& input_shape, int batch,
                             const dnnl::engine& engine, dnnl::stream& stream)
    : engine_(engine), batch_(batch) {
  Build(model, input_shape, stream);
}

std::unique_ptr<CompiledGraph> CompiledGraph::Clone() const {
  std::unique_ptr<CompiledGraph> c(new CompiledGraph(engine_, batch_));
  c->constants_ = constants_;
  c->classes_ = classes_;
  c->arena_bytes_ = arena_bytes_;
  c->arena_ = Allocate(arena_bytes_);
  c->scratch_bytes_ = scratch_bytes_;
  c->scratch_ = Allocate(scratch_bytes_);
  // A memory in this graph's arena or scratchpad moves to the same offset in the
  // clone's; any other is a constant, shared.
  auto moved = [&](void* handle) -> void* {
    const uintptr_t h = reinterpret_cast<uintptr_t>(handle);
    const uintptr_t a = reinterpret_cast<uintptr_t>(arena_.get()), s = reinterpret_cast<uintptr_t>(scratch_.get());
    if (h >= a && h < a + std::max<size_t>(64, arena_bytes_)) return static_cast<char*>(c->arena_.get()) + (h - a);
    if (h >= s && h < s + std::max<size_t>(64, scratch_bytes_)) return static_cast<char*>(c->scratch_.get()) + (h - s);
    return nullptr;
  };
  std::unordered_map<dnnl_memory_t, memory> mapped;
  for (const Step& step : steps_) {
    Step copy{step.primitive, {}, step.custom};
    for (const auto& [arg, m] : step.args) {
      auto it = mapped.find(m.get());
      if (it == mapped.end()) {
        memory to = m;
        if (void* h = moved(m.get_data_handle())) {
          to = memory(m.get_desc(), engine_, DNNL_MEMORY_NONE);
          to.set_data_handle(h);  // as LayOut: zeros any padding of a blocked layout
        }
        it = mapped.emplace(m.get(), to).first;
      }
      copy.args.emplace(arg, it->second);
    }
    c->steps_.push_back(std::move(copy));
  }
  c->input_ = moved(input_);
  c->output_ = moved(output_);
  return c;
}

void CompiledGraph::Run(dnnl::stream& stream) {
  for (Step& s : steps_) {
    if (s.custom) {
      stream.wait();
      s.custom(s.args);
    } else {
      s.primitive.execute(stream, s.args);
    }
  }
  stream.wait();
}

// A tensor of the graph; its memory is bound when the graph is laid out.
memory CompiledGraph::NewMemory(const memory::desc& md) {
  memory m(md, engine_, DNNL_MEMORY_NONE);
  activation_of_[m.get()] = activations_.size();
  activations_.push_back({md.get_size(), {m}});
  return m;
}

// `md` over the memory of the tensor `of` (a reshape).
memory CompiledGraph::View(const memory& of, const memory::desc& md) {
  memory m(md, engine_, DNNL_MEMORY_NONE);
  const size_t a = activation_of_.at(of.get());
  activation_of_[m.get()] = a;
  activations_[a].users.push_back(m);
  return m;
}

// A weight or bias buffer, allocated now.
memory CompiledGraph::NewConstant(const memory::desc& md) {
  constants_->push_back(Allocate(md.get_size()));
  return memory(md, engine_, constants_->back().get());
}

// Places every tensor in the arena: largest first, each at the lowest offset clear of
// the tensors placed already whose steps overlap its own.
void CompiledGraph::LayOut(const memory& input, const memory& output) {
  for (size_t s = 0; s < steps_.size(); ++s) {
    for (const auto& [arg, m] : steps_[s].args) {
      auto it = activation_of_.find(m.get());
      if (it == activation_of_.end()) continue;
      Activation& a = activations_[it->second];
      a.first = std::min(a.first, static_cast<int>(s));
      a.last = std::max(a.last, static_cast<int>(s));
    }
  }
  activations_[activation_of_.at(input.get())].first = -1;                               // written before the steps run
  activations_[activation_of_.at(output.get())].last = static_cast<int>(steps_.size());  // read after
  // A blocked layout padded past the channel count (16-blocks of 6 channels, say) must
  // keep zeros in its padding, which oneDNN's kernels may read and leave untouched: such
  // a tensor shares its bytes with nothing, so the zeros set_data_handle writes stay.
  for (Activation& a : activations_) {
    int64_t dense = sizeof(float);
    for (int64_t d : a.users.front().get_desc().dims()) dense *= d;
    if (a.bytes > static_cast<size_t>(dense)) {
      a.first = -1;
      a.last = static_cast<int>(steps_.size());
    }
  }
  std::vector<size_t> order(activations_.size());
  for (size_t k = 0; k < order.size(); ++k) order[k] = k;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t x, size_t y) { return activations_[x].bytes > activations_[y].bytes; });
  std::vector<size_t> placed;
  size_t total = 0;
  for (size_t k : order) {
    Activation& a = activations_[k];
    const size_t bytes = (a.bytes + 63) / 64 * 64;
    size_t offset = 0;
    for (bool moved = true; moved;) {
      moved = false;
      for (size_t p : placed) {
        const Activation& b = activations_[p];
        const bool live_together = a.first <= b.last && b.first <= a.last;
        const size_t b_end = b.offset + (b.bytes + 63) / 64 * 64;
        if (live_together && offset < b_end && b.offset < offset + bytes) {
          offset = b_end;
          moved = true;
        }
      }
    }
    a.offset = offset;
    total = std::max(total, offset + bytes);
    placed.push_back(k);
  }
  arena_bytes_ = total;
  arena_ = Allocate(total);
  for (Activation& a : activations_)
    for (memory& m : a.users) m.set_data_handle(static_cast<char*>(arena_.get()) + a.offset);
}

// `mem` in the layout `want`: itself, or a reorder into a new buffer.
memory CompiledGraph::InLayout(const memory& mem, const memory::desc& want) {
  if (mem.get_desc() == want) return mem;
  memory out = NewMemory(want);
  dnnl::reorder::primitive_desc pd(engine_, mem.get_desc(), engine_, want, Attr(false));
  Add(dnnl::reorder(pd), {{DNNL_ARG_FROM, mem}, {DNNL_ARG_TO, out}}, pd.scratchpad_desc());
  return out;
}

// Weights (or a bias) from the host, reordered once into the primitive's layout.
memory CompiledGraph::Constant(const onnx::FloatTensor& t, const memory::dims& dims, Tag tag, const memory::desc& want,
                               dnnl::stream& stream) {
  memory::desc plain(dims, Dt::f32, tag);
  if (plain.get_size() != t.data.size() * sizeof(float)) throw GraphError{"a weight tensor has the wrong size"};
  memory host(plain, engine_, const_cast<float*>(t.data.data()));
  memory out = NewConstant(want);
  dnnl::reorder(host, out).execute(stream, host, out);
  stream.wait();
  return out;
}

void CompiledGraph::Add(dnnl::primitive p, Args args, const memory::desc& scratch) {
  scratch_bytes_ = std::max(scratch_bytes_, scratch.get_size());
  scratch_descs_.push_back(scratch);
  steps_.push_back({std::move(p), std::move(args), {}});
  scratch_steps_.push_back(steps_.size() - 1);
}

dnnl::primitive_attr CompiledGraph::Attr(bool relu) {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  if (relu) {
    dnnl::post_ops ops;
    ops.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
    attr.set_post_ops(ops);
  }
  return attr;
}

void CompiledGraph::AddCustom(Args args, std::function<void(const Args&)> run) {
  Step step;
  step.args = std::move(args);
  step.custom = std::move(run);
  steps_.push_back(std::move(step));
}

// `mem` as [batch, features] in plain layout: reordered, and viewed flat.
memory CompiledGraph::Plain2d(const memory& mem) {
  memory::desc md = mem.get_desc();
  memory::dims d = md.dims();
  if (d.size() == 2) return InLayout(mem, memory::desc(d, Dt::f32, Tag::nc));
  memory flat = InLayout(mem, memory::desc(d, Dt::f32, Tag::nchw));
  int64_t features = 1;
  for (size_t k = 1; k < d.size(); ++k) features *= d[k];
  return View(flat, memory::desc({d[0], features}, Dt::f32, Tag::nc));
}

void CompiledGraph::Build(const onnx::Model& model, const std::vector<int64_t>& input_shape, dnnl::stream& stream) {
  Compilation g(model);
  memory::dims in_dims = {batch_};
  for (int64_t d : input_shape) in_dims.push_back(d);
  Tag in_tag = in_dims.size() == 4 ? Tag::nchw : in_dims.size() == 2 ? Tag::nc : Tag::undef;
  if (in_tag == Tag::undef) throw GraphError{"input_shape must be [C, H, W] or [features]"};
  memory in = NewMemory(memory::desc(in_dims, Dt::f32, in_tag));
  g.values[model.inputs[0]].mem = in;
  for (size_t i = 0; i < model.nodes.size(); ++i) {
    const onnx::Node& n = model.nodes[i];
    if (n.outputs.empty()) throw GraphError{n.op_type + " node '" + n.name + "' has no output"};
    if (!n.domain.empty() && n.domain != "ai.onnx")
      throw GraphError{"node '" + n.name + "' is of domain " + n.domain + " (unsupported)"};
    if (FoldNode(g, n)) continue;
    if (n.op_type == "Split") {
      CompileSplit(g, n);
      continue;
    }
    const OpInfo* op = FindOp(n.op_type);
    const bool relu = op && op->fuses_relu && g.FusedRelu(i);
    std::string out_name = relu ? model.nodes[i + 1].outputs[0] : n.outputs[0];
    Value out{CompileNode(g, n, relu, stream)};
    if (relu) ++i;
    g.values[out_name] = std::move(out);
  }
  auto it = g.values.find(model.outputs[0]);
  if (it == g.values.end() && g.Known(model.outputs[0]))
    throw GraphError{"the graph's output '" + model.outputs[0] + "' is a constant: it does not depend on the input"};
  if (it == g.values.end()) throw GraphError{"nothing computes the graph's output '" + model.outputs[0] + "'"};
  Finish(in, it->second.mem);
}

// The output as [batch, classes], the arena, and one scratchpad for every step (they
// run one after another).
void CompiledGraph::Finish(const memory& in, memory result) {
  memory::dims od = result.get_desc().dims();
  if (od.size() != 2) throw GraphError{"the output is not [batch, classes]"};
  result = InLayout(result, memory::desc(od, Dt::f32, Tag::nc));
  classes_ = od[1];
  LayOut(in, result);
  input_ = in.get_data_handle();
  output_ = result.get_data_handle();
  scratch_ = Allocate(scratch_bytes_);
  for (size_t k = 0; k < scratch_steps_.size(); ++k)
    steps_[scratch_steps_[k]].args[DNNL_ARG_SCRATCHPAD] = memory(scratch_descs_[k], engine_, scratch_.get());
}

// The tensor node `n` computes (with `relu`: and the Relu after it).
memory CompiledGraph::CompileNode(Compilation& g, const onnx::Node& n, bool relu, dnnl::stream& stream) {
  const OpInfo* op = FindOp(n.op_type);
  if (!op) {
    std::string runs;
    for (const OpInfo& o : kOps)
      if (o.kind != OpKind::kPassThrough) runs += (runs.empty() ? "" : ", ") + std::string(o.name);
    throw GraphError{"node '" + n.name + "' is a " + n.op_type + ", which the onednn backend does not run (it runs " +
                     runs + ", which every torchvision classifier family needs, tests/zoo; no family known to it " +
                     "needs a " + n.op_type + "; backend = \"onnx\" runs more on OpenCV DNN)"};
  }
  switch (op->kind) {
    case OpKind::kConv:
      return CompileConv(g, n, relu, stream);
    case OpKind::kGemm:
      return CompileGemm(g, n, relu);
    case OpKind::kBinary:
      return CompileBinary(g, n, relu, stream);
    case OpKind::kActivation:
      return CompileActivation(g, n);
    case OpKind::kPool:
      return CompilePool(g, n);
    case OpKind::kConcat:
      return CompileConcat(g, n, stream);
    case OpKind::kBatchNorm:
      return CompileBatchNorm(g, n, stream);
    case OpKind::kReshape:
      return CompileReshape(g, n);
    case OpKind::kTranspose:
      return CompileTranspose(g, n);
    case OpKind::kSlice:
      return CompileSlice(g, n);
    case OpKind::kPad:
      return CompilePad(g, n);
    case OpKind::kMatMul:
      return CompileMatMul(g, n);
    case OpKind::kSoftmax:
      return CompileSoftmax(g, n);
    case OpKind::kReduceMean:
      return CompileReduceMean(g, n);
    case OpKind::kLayerNorm:
      return CompileLayerNorm(g, n);
    case OpKind::kMath:
      return CompileMath(g, n);
    case OpKind::kPassThrough:
      break;
  }
  return g.InputOf(n, 0).mem;
}

memory CompiledGraph::CompileConv(Compilation& g, const onnx::Node& n, bool relu, dnnl::stream& stream) {
  memory src = g.InputOf(n, 0).mem;
  ConvShape c;
  c.w = g.Weight(n, 1);
  c.b = g.Weight(n, 2);
  const onnx::FloatTensor* w = c.w;
  c.sd = src.get_desc().dims();
  const memory::dims& sd = c.sd;
  if (!w || w->dims.size() != 4 || sd.size() != 4)
    throw GraphError{"Conv node '" + n.name + "' is not a 2-D convolution"};
  c.groups = n.Int("group", 1);
  if (c.groups < 1 || w->dims[0] % c.groups != 0)
    throw GraphError{"Conv node '" + n.name + "' has " + std::to_string(c.groups) + " groups for " +
                     std::to_string(w->dims[0]) + " output channels (they must divide them)"};
  if (w->dims[1] * c.groups != sd[1])
    throw GraphError{"Conv node '" + n.name + "' has weights for " + std::to_string(w->dims[1] * c.groups) +
                     " input channels (" + std::to_string(c.groups) + " group(s) of " + std::to_string(w->dims[1]) +
                     "), its input has " + std::to_string(sd[1])};
  c.wdims = w->dims;
  if (c.groups > 1) c.wdims = {c.groups, w->dims[0] / c.groups, w->dims[1], w->dims[2], w->dims[3]};
  c.k = n.Ints("kernel_shape", {w->dims[2], w->dims[3]});
  c.s = n.Ints("strides", {1, 1});
  c.dil = n.Ints("dilations", {1, 1});
  c.p = n.Ints("pads", {0, 0, 0, 0});
  const std::vector<int64_t>&k = c.k, &s = c.s, &dil = c.dil, &p = c.p;
  if (n.Find("auto_pad") && n.Find("auto_pad")->s != "NOTSET")
    throw GraphError{"Conv node '" + n.name + "' uses auto_pad (unsupported)"};
  if (k.size() != 2 || s.size() != 2 || dil.size() != 2 || p.size() != 4 || k[0] != w->dims[2] || k[1] != w->dims[3])
    throw GraphError{"Conv node '" + n.name + "' has attributes this backend does not read"};
  c.oc = w->dims[0];
  c.what = "Conv node '" + n.name + "'";
  c.od = {sd[0], c.oc, OutputLength(c.what, sd[2], p[0], p[2], k[0], s[0], dil[0]),
          OutputLength(c.what, sd[3], p[1], p[3], k[1], s[1], dil[1])};
  if (c.od[2] <= 0 || c.od[3] <= 0) throw GraphError{"Conv node '" + n.name + "' has an empty output"};
  // Few channels: coe's PatchConv, channels-last, the layout the next convolution takes.
  // One input channel (a first layer): 1 -> 8 channels 5x5/2, 2.4 -> ~1 us an example;
  // 1 -> 16 3x3, 9 -> ~2 us. Up to 8 input and 16 output channels (one weight panel):
  // cnn_tiny's 8 -> 16 3x3/2 ran at 30 GMAC/s on oneDNN, and cnn_tiny went 308k ->
  // 338k images/s (one thread, batches of 16); cnn8_16's 8 -> 16 3x3 is even (128k
  // against 125k). From 16 input channels on (cnn_small's 16 -> 32), oneDNN is faster.
  // Odd pads or dilations stay with oneDNN.
  const bool few_channels = c.groups == 1 && (sd[1] == 1 || (sd[1] <= 8 && c.oc <= Dense::kLanes));
  if (few_channels && dil == std::vector<int64_t>{1, 1} && p[0] < k[0] && p[2] < k[0] && p[1] < k[1] && p[3] < k[1])
    return AddPatchConv(c, src, relu);
  return AddOnednnConv(c, src, relu, stream);
}

memory CompiledGraph::AddPatchConv(const ConvShape& c, const memory& src, bool relu) {
  std::vector<float> bias(c.oc, 0.f);
  if (c.b) {
    if (c.b->size() != c.oc) throw GraphError{c.what + " has a bias of another size"};
    bias = c.b->data;
  }
  const std::vector<int64_t>&k = c.k, &s = c.s, &p = c.p;
  const int64_t pads[4] = {p[0], p[1], p[2], p[3]};
  auto conv = std::make_shared<const PatchConv>(c.sd[2], c.sd[3], c.sd[1], k[0], k[1], s[0], s[1], pads, c.oc,
                                                c.w->data, bias, relu);
  if (conv->out_h() != c.od[2] || conv->out_w() != c.od[3]) throw GraphError{c.what + ": output size mismatch"};
  memory in = InLayout(src, memory::desc(c.sd, Dt::f32, Tag::nhwc));
  memory out = NewMemory(memory::desc(c.od, Dt::f32, Tag::nhwc));
  memory padded = NewMemory(memory::desc({conv->scratch_size()}, Dt::f32, Tag::x));
  const int64_t rows = batch_;
  AddCustom({{DNNL_ARG_SRC, in}, {DNNL_ARG_DST, out}, {DNNL_ARG_WORKSPACE, padded}}, [conv, rows](const Args& args) {
    conv->Run(static_cast<const float*>(args.at(DNNL_ARG_SRC).get_data_handle()), rows,
              static_cast<float*>(args.at(DNNL_ARG_DST).get_data_handle()),
              static_cast<float*>(args.at(DNNL_ARG_WORKSPACE).get_data_handle()));
  });
  return out;
}

memory CompiledGraph::AddOnednnConv(const ConvShape& c, const memory& src, bool relu, dnnl::stream& stream) {
  const std::vector<int64_t>&s = c.s, &dil = c.dil, &p = c.p;
  auto make = [&](Tag src_tag, Tag dst_tag) {
    memory::desc wmd(c.wdims, Dt::f32, Tag::any), bmd({c.oc}, Dt::f32, Tag::x), dmd(c.od, Dt::f32, dst_tag),
        smd(c.sd, Dt::f32, src_tag);
    dnnl::convolution_forward::desc d(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, smd, wmd,
                                      bmd, dmd, {s[0], s[1]}, {dil[0] - 1, dil[1] - 1}, {p[0], p[1]}, {p[2], p[3]});
    return dnnl::convolution_forward::primitive_desc(d, Attr(relu), engine_);
  };
  // A first layer PatchConv did not take (dilated, or padded past its kernel) runs ~15%
  // faster on oneDNN from plain NCHW into 8-channel blocks than in the channels-last
  // layout oneDNN picks for it (cnn_tiny, before PatchConv: 290k against 250k images/s,
  // one thread), unless this CPU has only a reference kernel for that (then oneDNN's
  // choice stands).
  const bool first_layer = c.sd[1] == 1 && c.oc % 8 == 0 && c.groups == 1;
  dnnl::convolution_forward::primitive_desc pd = first_layer ? make(Tag::nchw, Tag::nChw8c) : make(Tag::any, Tag::any);
  if (first_layer && std::string(pd.impl_info_str()).find("ref") != std::string::npos) pd = make(Tag::any, Tag::any);
  memory weights = Constant(*c.w, c.wdims, c.groups == 1 ? Tag::oihw : Tag::goihw, pd.weights_desc(), stream);
  onnx::FloatTensor zero{{c.oc}, std::vector<float>(c.oc, 0.f)};
  memory bias = Constant(c.b ? *c.b : zero, {c.oc}, Tag::x, pd.bias_desc(), stream);
  memory in = InLayout(src, pd.src_desc());
  memory out = NewMemory(pd.dst_desc());
  Add(dnnl::convolution_forward(pd),
      {{DNNL_ARG_SRC, in}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_BIAS, bias}, {DNNL_ARG_DST, out}},
      pd.scratchpad_desc());
  return out;
}

// A Gemm as a Dense layer: alpha and transB folded into the weights, beta into the bias.
memory CompiledGraph::CompileGemm(Compilation& g, const onnx::Node& n, bool relu) {
  Value& a = g.InputOf(n, 0);
  const onnx::FloatTensor* w = g.Weight(n, 1);
  const onnx::FloatTensor* c = g.Weight(n, 2);
  if (n.Int("transA", 0) != 0) throw GraphError{"Gemm node '" + n.name + "' transposes A (unsupported)"};
  if (!w || w->dims.size() != 2) throw GraphError{"Gemm node '" + n.name + "' has no 2-D weight matrix"};
  const bool trans_b = n.Int("transB", 0) != 0;
  const int64_t outs = trans_b ? w->dims[0] : w->dims[1], ins = trans_b ? w->dims[1] : w->dims[0];
  if (outs < 1 || ins < 1 || static_cast<int64_t>(w->data.size()) != outs * ins)
    throw GraphError{"Gemm node '" + n.name + "' has an empty or inconsistent weight matrix"};
  const float alpha = n.Float("alpha", 1.f), beta = n.Float("beta", 1.f);
  onnx::FloatTensor wt{{outs, ins}, std::vector<float>(outs * ins)};
  for (int64_t o = 0; o < outs; ++o)
    for (int64_t k = 0; k < ins; ++k) wt.data[o * ins + k] = alpha * w->data[trans_b ? o * ins + k : k * outs + o];
  onnx::FloatTensor bias{{outs}, std::vector<float>(outs, 0.f)};
  if (c) {
    if (c->size() != outs && c->size() != 1)
      throw GraphError{"Gemm node '" + n.name + "' has a bias C of another shape"};
    for (int64_t o = 0; o < outs; ++o) bias.data[o] = beta * c->data[c->size() == 1 ? 0 : o];
  }
  memory src = Plain2d(a.mem);
  if (src.get_desc().dims()[1] != ins)
    throw GraphError{"Gemm node '" + n.name + "' takes " + std::to_string(ins) + " features, its input has " +
                     std::to_string(src.get_desc().dims()[1])};
  // Rows: the examples, or (a transformer's [tokens x batch, features]) more.
  const int64_t rows = src.get_desc().dims()[0];
  memory out = NewMemory(memory::desc({rows, outs}, Dt::f32, Tag::nc));
  auto dense = std::make_shared<const Dense>(ins, outs, wt.data, bias.data, relu);
  AddCustom({{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, out}}, [dense, rows](const Args& args) {
    dense->Run(static_cast<const float*>(args.at(DNNL_ARG_SRC).get_data_handle()), rows,
               static_cast<float*>(args.at(DNNL_ARG_DST).get_data_handle()));
  });
  return out;
}

// MaxPool, AveragePool or GlobalAveragePool.
memory CompiledGraph::CompilePool(Compilation& g, const onnx::Node& n) {
  memory x = g.InputOf(n, 0).mem;
  memory::dims sd = x.get_desc().dims();
  if (sd.size() != 4) throw GraphError{n.op_type + " node '" + n.name + "' reads a tensor that is not [N, C, H, W]"};
  // With one channel, NCHW and NHWC are the same bytes, and oneDNN pools NHWC with
  // JIT code where NCHW gets its simple loop (linear_pool's 2x2 average ran at a
  // fifth of OpenCV's speed).
  if (sd[1] == 1 && x.get_desc() == memory::desc(sd, Dt::f32, Tag::nchw))
    x = View(x, memory::desc(sd, Dt::f32, Tag::nhwc));
  const bool global = n.op_type == "GlobalAveragePool";
  std::vector<int64_t> k = global ? std::vector<int64_t>{sd[2], sd[3]} : n.Ints("kernel_shape");
  std::vector<int64_t> s = n.Ints("strides", {1, 1}), p = n.Ints("pads", {0, 0, 0, 0}),
                       dil = n.Ints("dilations", {1, 1});
  const std::string what = n.op_type + " node '" + n.name + "'";
  if (k.size() != 2 || s.size() != 2 || p.size() != 4)
    throw GraphError{what + " has a kernel_shape, strides or pads that are not 2-D"};
  const bool include_pad = n.op_type == "AveragePool" && n.Int("count_include_pad", 0) != 0;
  const bool ceil = n.Int("ceil_mode", 0) != 0;
  std::vector<std::string> unsupported;
  if (dil != std::vector<int64_t>{1, 1}) unsupported.push_back("dilations");
  if (n.Int("storage_order", 0) != 0) unsupported.push_back("storage_order");
  if (n.Find("auto_pad") && n.Find("auto_pad")->s != "NOTSET") unsupported.push_back("auto_pad");
  if (ceil && include_pad) unsupported.push_back("ceil_mode with count_include_pad");
  if (!unsupported.empty()) {
    std::string names;
    for (const std::string& a : unsupported) names += (names.empty() ? "" : ", ") + a;
    throw GraphError{what + " sets " + names + ", which this backend does not support"};
  }
  memory::dims od = {sd[0], sd[1], OutputLength(what, sd[2], p[0], p[2], k[0], s[0], 1),
                     OutputLength(what, sd[3], p[1], p[3], k[1], s[1], 1)};
  if (od[2] <= 0 || od[3] <= 0) throw GraphError{what + " has an empty output"};
  // ceil_mode: a last window that starts inside the input (or its left pad) but runs past
  // the right pad counts too; oneDNN sees it as more right padding, which max pooling and
  // an average that excludes padding both ignore.
  std::vector<int64_t> right = {p[2], p[3]};
  if (ceil)
    for (int a = 0; a < 2; ++a) {
      const int64_t in = sd[2 + a], span = in + p[a] + p[2 + a] - k[a];
      if (span >= 0 && span % s[a] != 0 && (od[2 + a]) * s[a] < in + p[a]) {
        ++od[2 + a];
        right[a] = (od[2 + a] - 1) * s[a] + k[a] - in - p[a];
      }
    }
  const dnnl::algorithm alg = n.op_type == "MaxPool" ? dnnl::algorithm::pooling_max
                              : include_pad          ? dnnl::algorithm::pooling_avg_include_padding
                                                     : dnnl::algorithm::pooling_avg_exclude_padding;
  dnnl::pooling_forward::desc d(dnnl::prop_kind::forward_inference, alg, x.get_desc(),
                                memory::desc(od, Dt::f32, Tag::any), {s[0], s[1]}, {k[0], k[1]}, {p[0], p[1]},
                                {right[0], right[1]});
  dnnl::pooling_forward::primitive_desc pd(d, Attr(false), engine_);
  memory out = NewMemory(pd.dst_desc());
  Add(dnnl::pooling_forward(pd), {{DNNL_ARG_SRC, x}, {DNNL_ARG_DST, out}}, pd.scratchpad_desc());
  return out;
}

// Graphs are compiled one at a time, process-wide. Compiling one creates oneDNN
// primitives, which go through oneDNN's global primitive cache; with two workers
// compiling at once, ThreadSanitizer reported a query of a new primitive descriptor
// (pd.dst_desc() of a pooling) reading memory that another thread's primitive creation
// had allocated, with no ordering it could see (scripts/test.sh --tsan, the server
// tests). Whether or not the library's own locking covers it, compiling under one mutex
// orders every creation after the last. It costs nothing that matters: a graph is
// compiled once per batch size (the other callers clone it, CompiledGraph::Clone,
// outside this mutex).
std::unique_ptr<CompiledGraph> CompileGraph(const onnx::Model& model, const std::vector<int64_t>& input_shape,
                                            int batch, const dnnl::engine& engine, dnnl::stream& stream) {
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  return std::make_unique<CompiledGraph>(model, input_shape, batch, engine, stream);
}

}  // namespace coe::onednn
