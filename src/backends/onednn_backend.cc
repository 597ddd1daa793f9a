// Backend "onednn": an ONNX classifier run by oneDNN (Debian's libdnnl-dev), in the
// module libcoe_onednn.so (see backends/module.h).
//
// oneDNN's JIT kernels for the CPU at hand (AVX-512, AVX2, ...) run the zoo's models 2-4x
// faster than OpenCV DNN (bench/model_batch), with the same answers within 1e-5.
//
// The graph is read by backends/onnx_model.h (no protobuf library) and compiled into a
// Plan of oneDNN primitives for one batch size: Conv, Add and a following Relu fused
// into one primitive each; MaxPool, AveragePool, GlobalAveragePool, Flatten; Gemm (and a
// following Relu) by backends/dense.h, and so are convolutions of few channels (a first
// layer, and up to 8 -> 16 channels after it: PatchConv), which oneDNN ran at a fifth
// to a third of its speed on larger layers. Layouts
// are oneDNN's choice (blocked or channels-last where that is faster), reordered where
// needed; tensors share one arena.
//
// Answers do not depend on batching: a call's examples run in Plans of kBlock, then of
// the powers of four below it, and every kernel computes an example alike at every size
// (oneDNN's inner product did not, hence Dense). Each plan is checked when built against
// the one-example plan's answers to a probe batch, and a size that differs is not used
// (PlanFor); the conformance suite checks the answers bit for bit.
//
// Concurrency: a Plan holds its buffers, so it runs on one thread at a time. The backend
// keeps one Worker (a stream and its Plans) per concurrent caller, checked out under a
// mutex like the onnx backend's Nets. Only the first Plan of each size is built; the other
// Workers' are clones of it, sharing its primitives and weights (halving the build time
// a process pays on its first examples, ~3.5 ms a plan for resnet_small, and the
// weights). oneDNN's OpenMP threading is held at one thread a caller: the engine runs
// members and chunks in parallel itself.
#include <omp.h>

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <unordered_map>

#include "backends/dense.h"
#include "backends/model_module.h"
#include "backends/module.h"
#include "backends/onnx_model.h"

namespace coe {
namespace {

using dnnl::memory;
using Tag = memory::format_tag;
using Dt = memory::data_type;

// Examples the largest Plan runs at once; the rest of a call runs in Plans of the powers of
// four below (a call of 7: 4, 1, 1, 1). The engine's chunk is 16; plans of 32 were no faster
// (bench/model_batch) and cost a probe twice as long.
constexpr int kBlock = 16;

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};
using Buffer = std::unique_ptr<void, FreeDeleter>;

Buffer Allocate(size_t bytes) {
  bytes = std::max<size_t>(64, (bytes + 63) / 64 * 64);
  void* p = std::aligned_alloc(64, bytes);
  if (!p) throw std::bad_alloc();
  return Buffer(p);
}

// A graph's problem, said as an exception the loader turns into an InvalidArgument.
struct GraphError {
  std::string what;
};

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

// The primitives of one graph for one batch size, with their buffers.
class Plan {
 public:
  Plan(const onnx::Model& model, const std::vector<int64_t>& input_shape, int batch, const dnnl::engine& engine,
       dnnl::stream& stream)
      : engine_(engine), batch_(batch) {
    Build(model, input_shape, stream);
  }

  // A plan like this one, for another caller: the same primitives and weights (shared,
  // read only: oneDNN primitives run concurrently on their own memory and scratchpad), its
  // own tensors and scratchpad, laid out alike. Cloning reads only what Build wrote, so
  // it may run while this plan runs on another thread.
  std::unique_ptr<Plan> Clone() const {
    std::unique_ptr<Plan> c(new Plan(engine_, batch_));
    c->constants_ = constants_;
    c->classes_ = classes_;
    c->arena_bytes_ = arena_bytes_;
    c->arena_ = Allocate(arena_bytes_);
    c->scratch_bytes_ = scratch_bytes_;
    c->scratch_ = Allocate(scratch_bytes_);
    // A memory in this plan's arena or scratchpad moves to the same offset in the
    // clone's; any other is a constant, shared.
    auto moved = [&](void* handle) -> void* {
      const uintptr_t h = reinterpret_cast<uintptr_t>(handle);
      const uintptr_t a = reinterpret_cast<uintptr_t>(arena_.get()), s = reinterpret_cast<uintptr_t>(scratch_.get());
      if (h >= a && h < a + std::max<size_t>(64, arena_bytes_)) return static_cast<char*>(c->arena_.get()) + (h - a);
      if (h >= s && h < s + std::max<size_t>(64, scratch_bytes_))
        return static_cast<char*>(c->scratch_.get()) + (h - s);
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

  float* input() { return static_cast<float*>(input_); }
  const float* output() const { return static_cast<const float*>(output_); }
  int64_t classes() const { return classes_; }
  int batch() const { return batch_; }

  void Run(dnnl::stream& stream) {
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

 private:
  struct Value {
    memory mem;
  };
  using Args = std::unordered_map<int, memory>;
  struct Step {
    dnnl::primitive primitive;
    Args args;
    std::function<void(const Args&)> custom;  // instead of a primitive: a Dense layer
  };
  // A tensor computed by the plan. Tensors live in one arena, at offsets given once
  // the plan is built: two share memory when no step needs both (a resnet's 32-example
  // plan needs ~4 MB, not the ~30 MB of a buffer a tensor).
  struct Activation {
    size_t bytes;
    std::vector<memory> users;                               // the tensor and its views, bound to the arena at the end
    int first = std::numeric_limits<int>::max(), last = -1;  // steps that use it
    size_t offset = 0;
  };

  // A tensor of the plan; its memory is bound when the plan is laid out.
  memory NewMemory(const memory::desc& md) {
    memory m(md, engine_, DNNL_MEMORY_NONE);
    activation_of_[m.get()] = activations_.size();
    activations_.push_back({md.get_size(), {m}});
    return m;
  }
  // `md` over the memory of the tensor `of` (a reshape).
  memory View(const memory& of, const memory::desc& md) {
    memory m(md, engine_, DNNL_MEMORY_NONE);
    const size_t a = activation_of_.at(of.get());
    activation_of_[m.get()] = a;
    activations_[a].users.push_back(m);
    return m;
  }
  Plan(const dnnl::engine& engine, int batch) : engine_(engine), batch_(batch) {}

  // A weight or bias buffer, allocated now.
  memory NewConstant(const memory::desc& md) {
    constants_->push_back(Allocate(md.get_size()));
    return memory(md, engine_, constants_->back().get());
  }

  // Places every tensor in the arena: largest first, each at the lowest offset clear of
  // the tensors placed already whose steps overlap its own.
  void LayOut(const memory& input, const memory& output) {
    for (size_t s = 0; s < steps_.size(); ++s) {
      for (const auto& [arg, m] : steps_[s].args) {
        auto it = activation_of_.find(m.get());
        if (it == activation_of_.end()) continue;
        Activation& a = activations_[it->second];
        a.first = std::min(a.first, static_cast<int>(s));
        a.last = std::max(a.last, static_cast<int>(s));
      }
    }
    activations_[activation_of_.at(input.get())].first = -1;  // written before the steps run
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
  memory InLayout(const memory& mem, const memory::desc& want) {
    if (mem.get_desc() == want) return mem;
    memory out = NewMemory(want);
    dnnl::reorder::primitive_desc pd(engine_, mem.get_desc(), engine_, want, Attr(false));
    Add(dnnl::reorder(pd), {{DNNL_ARG_FROM, mem}, {DNNL_ARG_TO, out}}, pd.scratchpad_desc());
    return out;
  }

  // Weights (or a bias) from the host, reordered once into the primitive's layout.
  memory Constant(const onnx::FloatTensor& t, const memory::dims& dims, Tag tag, const memory::desc& want,
                  dnnl::stream& stream) {
    memory::desc plain(dims, Dt::f32, tag);
    if (plain.get_size() != t.data.size() * sizeof(float)) throw GraphError{"a weight tensor has the wrong size"};
    memory host(plain, engine_, const_cast<float*>(t.data.data()));
    memory out = NewConstant(want);
    dnnl::reorder(host, out).execute(stream, host, out);
    stream.wait();
    return out;
  }

  void Add(dnnl::primitive p, std::unordered_map<int, memory> args, const memory::desc& scratch) {
    scratch_bytes_ = std::max(scratch_bytes_, scratch.get_size());
    scratch_descs_.push_back(scratch);
    steps_.push_back({std::move(p), std::move(args), {}});
    scratch_steps_.push_back(steps_.size() - 1);
  }

  static dnnl::primitive_attr Attr(bool relu) {
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    if (relu) {
      dnnl::post_ops ops;
      ops.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
      attr.set_post_ops(ops);
    }
    return attr;
  }

  void Build(const onnx::Model& model, const std::vector<int64_t>& input_shape, dnnl::stream& stream) {
    std::map<std::string, int> uses;
    for (const onnx::Node& n : model.nodes)
      for (const std::string& i : n.inputs) uses[i]++;
    for (const std::string& o : model.outputs) uses[o]++;

    std::map<std::string, Value> values;
    memory::dims in_dims = {batch_};
    for (int64_t d : input_shape) in_dims.push_back(d);
    Tag in_tag = in_dims.size() == 4 ? Tag::nchw : in_dims.size() == 2 ? Tag::nc : Tag::undef;
    if (in_tag == Tag::undef) throw GraphError{"input_shape must be [C, H, W] or [features]"};
    memory in = NewMemory(memory::desc(in_dims, Dt::f32, in_tag));
    values[model.inputs[0]].mem = in;

    auto input_of = [&](const onnx::Node& n, size_t k) -> Value& {
      if (k >= n.inputs.size()) throw GraphError{n.op_type + " node '" + n.name + "' lacks input " + std::to_string(k)};
      auto it = values.find(n.inputs[k]);
      if (it == values.end())
        throw GraphError{n.op_type + " node '" + n.name + "' reads '" + n.inputs[k] + "', which nothing computes"};
      return it->second;
    };
    auto weight = [&](const onnx::Node& n, size_t k) -> const onnx::FloatTensor* {
      if (k >= n.inputs.size() || n.inputs[k].empty()) return nullptr;
      auto it = model.initializers.find(n.inputs[k]);
      if (it == model.initializers.end())
        throw GraphError{n.op_type + " node '" + n.name + "' takes a computed tensor as input " + std::to_string(k) +
                         " (only constant weights are supported)"};
      return &it->second;
    };
    // A Relu right after node `i`, reading only its output: fused into it.
    auto fused_relu = [&](size_t i) {
      const onnx::Node& n = model.nodes[i];
      if (i + 1 >= model.nodes.size() || uses[n.outputs[0]] != 1) return false;
      const onnx::Node& next = model.nodes[i + 1];
      return next.op_type == "Relu" && next.inputs.size() == 1 && next.inputs[0] == n.outputs[0] &&
             !next.outputs.empty();
    };
    auto plain_2d = [&](Value& v) {
      memory::desc md = v.mem.get_desc();
      memory::dims d = md.dims();
      if (d.size() == 2) return InLayout(v.mem, memory::desc(d, Dt::f32, Tag::nc));
      memory flat = InLayout(v.mem, memory::desc(d, Dt::f32, Tag::nchw));
      int64_t features = 1;
      for (size_t k = 1; k < d.size(); ++k) features *= d[k];
      return View(flat, memory::desc({d[0], features}, Dt::f32, Tag::nc));
    };

    for (size_t i = 0; i < model.nodes.size(); ++i) {
      const onnx::Node& n = model.nodes[i];
      if (n.outputs.empty()) throw GraphError{n.op_type + " node '" + n.name + "' has no output"};
      if (!n.domain.empty() && n.domain != "ai.onnx")
        throw GraphError{"node '" + n.name + "' is of domain " + n.domain + " (unsupported)"};
      const bool relu = (n.op_type == "Conv" || n.op_type == "Gemm" || n.op_type == "Add") && fused_relu(i);
      std::string out_name = relu ? model.nodes[i + 1].outputs[0] : n.outputs[0];
      Value out;
      if (n.op_type == "Conv") {
        memory src = input_of(n, 0).mem;
        const onnx::FloatTensor* w = weight(n, 1);
        const onnx::FloatTensor* b = weight(n, 2);
        memory::dims sd = src.get_desc().dims();
        if (!w || w->dims.size() != 4 || sd.size() != 4)
          throw GraphError{"Conv node '" + n.name + "' is not a 2-D convolution"};
        if (n.Int("group", 1) != 1) throw GraphError{"Conv node '" + n.name + "' is grouped (unsupported)"};
        if (w->dims[1] != sd[1])
          throw GraphError{"Conv node '" + n.name + "' has weights for " + std::to_string(w->dims[1]) +
                           " input channels, its input has " + std::to_string(sd[1])};
        std::vector<int64_t> k = n.Ints("kernel_shape", {w->dims[2], w->dims[3]});
        std::vector<int64_t> s = n.Ints("strides", {1, 1}), dil = n.Ints("dilations", {1, 1}),
                             p = n.Ints("pads", {0, 0, 0, 0});
        if (n.Find("auto_pad") && n.Find("auto_pad")->s != "NOTSET")
          throw GraphError{"Conv node '" + n.name + "' uses auto_pad (unsupported)"};
        if (k.size() != 2 || s.size() != 2 || dil.size() != 2 || p.size() != 4 || k[0] != w->dims[2] ||
            k[1] != w->dims[3])
          throw GraphError{"Conv node '" + n.name + "' has attributes this backend does not read"};
        const int64_t oc = w->dims[0];
        const std::string what = "Conv node '" + n.name + "'";
        memory::dims od = {sd[0], oc, OutputLength(what, sd[2], p[0], p[2], k[0], s[0], dil[0]),
                           OutputLength(what, sd[3], p[1], p[3], k[1], s[1], dil[1])};
        if (od[2] <= 0 || od[3] <= 0) throw GraphError{"Conv node '" + n.name + "' has an empty output"};
        // Few channels: coe's PatchConv, channels-last, the layout the next convolution takes.
        // One input channel (a first layer): 1 -> 8 channels 5x5/2, 2.4 -> ~1 us an example;
        // 1 -> 16 3x3, 9 -> ~2 us. Up to 8 input and 16 output channels (one weight panel):
        // cnn_tiny's 8 -> 16 3x3/2 ran at 30 GMAC/s on oneDNN, and cnn_tiny went 308k ->
        // 338k images/s (one thread, batches of 16); cnn8_16's 8 -> 16 3x3 is even (128k
        // against 125k). From 16 input channels on (cnn_small's 16 -> 32), oneDNN is faster.
        // Odd pads or dilations stay with oneDNN.
        const bool few_channels = sd[1] == 1 || (sd[1] <= 8 && oc <= Dense::kLanes);
        if (few_channels && dil == std::vector<int64_t>{1, 1} && p[0] < k[0] && p[2] < k[0] && p[1] < k[1] &&
            p[3] < k[1]) {
          std::vector<float> bias(oc, 0.f);
          if (b) {
            if (b->size() != oc) throw GraphError{"Conv node '" + n.name + "' has a bias of another size"};
            bias = b->data;
          }
          const int64_t pads[4] = {p[0], p[1], p[2], p[3]};
          auto conv = std::make_shared<const PatchConv>(sd[2], sd[3], sd[1], k[0], k[1], s[0], s[1], pads, oc, w->data,
                                                        bias, relu);
          if (conv->out_h() != od[2] || conv->out_w() != od[3])
            throw GraphError{"Conv node '" + n.name + "': output size mismatch"};
          memory in = InLayout(src, memory::desc(sd, Dt::f32, Tag::nhwc));
          out.mem = NewMemory(memory::desc(od, Dt::f32, Tag::nhwc));
          memory padded = NewMemory(memory::desc({conv->scratch_size()}, Dt::f32, Tag::x));
          const int64_t rows = batch_;
          Step step;
          step.args = {{DNNL_ARG_SRC, in}, {DNNL_ARG_DST, out.mem}, {DNNL_ARG_WORKSPACE, padded}};
          step.custom = [conv, rows](const Args& args) {
            conv->Run(static_cast<const float*>(args.at(DNNL_ARG_SRC).get_data_handle()), rows,
                      static_cast<float*>(args.at(DNNL_ARG_DST).get_data_handle()),
                      static_cast<float*>(args.at(DNNL_ARG_WORKSPACE).get_data_handle()));
          };
          steps_.push_back(std::move(step));
          if (relu) ++i;
          values[out_name] = std::move(out);
          continue;
        }
        auto make = [&](Tag src_tag, Tag dst_tag) {
          memory::desc wmd(w->dims, Dt::f32, Tag::any), bmd({oc}, Dt::f32, Tag::x), dmd(od, Dt::f32, dst_tag),
              smd(sd, Dt::f32, src_tag);
          dnnl::convolution_forward::desc d(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
                                            smd, wmd, bmd, dmd, {s[0], s[1]}, {dil[0] - 1, dil[1] - 1}, {p[0], p[1]},
                                            {p[2], p[3]});
          return dnnl::convolution_forward::primitive_desc(d, Attr(relu), engine_);
        };
        // A first layer PatchConv did not take (dilated, or padded past its kernel) runs ~15%
        // faster on oneDNN from plain NCHW into 8-channel blocks than in the channels-last
        // layout oneDNN picks for it (cnn_tiny, before PatchConv: 290k against 250k images/s,
        // one thread), unless this CPU has only a reference kernel for that (then oneDNN's
        // choice stands).
        const bool first_layer = sd[1] == 1 && oc % 8 == 0;
        dnnl::convolution_forward::primitive_desc pd =
            first_layer ? make(Tag::nchw, Tag::nChw8c) : make(Tag::any, Tag::any);
        if (first_layer && std::string(pd.impl_info_str()).find("ref") != std::string::npos)
          pd = make(Tag::any, Tag::any);
        memory weights = Constant(*w, w->dims, Tag::oihw, pd.weights_desc(), stream);
        onnx::FloatTensor zero{{oc}, std::vector<float>(oc, 0.f)};
        memory bias = Constant(b ? *b : zero, {oc}, Tag::x, pd.bias_desc(), stream);
        memory in = InLayout(src, pd.src_desc());
        out.mem = NewMemory(pd.dst_desc());
        Add(dnnl::convolution_forward(pd),
            {{DNNL_ARG_SRC, in}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_BIAS, bias}, {DNNL_ARG_DST, out.mem}},
            pd.scratchpad_desc());
      } else if (n.op_type == "Gemm") {
        Value& a = input_of(n, 0);
        const onnx::FloatTensor* w = weight(n, 1);
        const onnx::FloatTensor* c = weight(n, 2);
        if (n.Int("transA", 0) != 0) throw GraphError{"Gemm node '" + n.name + "' transposes A (unsupported)"};
        if (!w || w->dims.size() != 2) throw GraphError{"Gemm node '" + n.name + "' has no 2-D weight matrix"};
        const bool trans_b = n.Int("transB", 0) != 0;
        const int64_t outs = trans_b ? w->dims[0] : w->dims[1], ins = trans_b ? w->dims[1] : w->dims[0];
        if (outs < 1 || ins < 1 || static_cast<int64_t>(w->data.size()) != outs * ins)
          throw GraphError{"Gemm node '" + n.name + "' has an empty or inconsistent weight matrix"};
        const float alpha = n.Float("alpha", 1.f), beta = n.Float("beta", 1.f);
        onnx::FloatTensor wt{{outs, ins}, std::vector<float>(outs * ins)};
        for (int64_t o = 0; o < outs; ++o)
          for (int64_t k = 0; k < ins; ++k)
            wt.data[o * ins + k] = alpha * w->data[trans_b ? o * ins + k : k * outs + o];
        onnx::FloatTensor bias{{outs}, std::vector<float>(outs, 0.f)};
        if (c) {
          if (c->size() != outs && c->size() != 1)
            throw GraphError{"Gemm node '" + n.name + "' has a bias C of another shape"};
          for (int64_t o = 0; o < outs; ++o) bias.data[o] = beta * c->data[c->size() == 1 ? 0 : o];
        }
        memory src = plain_2d(a);
        if (src.get_desc().dims()[1] != ins)
          throw GraphError{"Gemm node '" + n.name + "' takes " + std::to_string(ins) + " features, its input has " +
                           std::to_string(src.get_desc().dims()[1])};
        out.mem = NewMemory(memory::desc({batch_, outs}, Dt::f32, Tag::nc));
        auto dense = std::make_shared<const Dense>(ins, outs, wt.data, bias.data, relu);
        const int64_t rows = batch_;
        Step step;
        step.args = {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, out.mem}};
        step.custom = [dense, rows](const Args& args) {
          dense->Run(static_cast<const float*>(args.at(DNNL_ARG_SRC).get_data_handle()), rows,
                     static_cast<float*>(args.at(DNNL_ARG_DST).get_data_handle()));
        };
        steps_.push_back(std::move(step));
      } else if (n.op_type == "Add") {
        memory x = input_of(n, 0).mem, y = input_of(n, 1).mem;
        if (x.get_desc().dims() != y.get_desc().dims())
          throw GraphError{"Add node '" + n.name + "' adds tensors of different shapes (broadcasting is unsupported)"};
        y = InLayout(y, x.get_desc());
        memory::desc dmd(x.get_desc().dims(), Dt::f32, Tag::any);
        dnnl::binary::desc d(dnnl::algorithm::binary_add, x.get_desc(), y.get_desc(), x.get_desc());
        dnnl::binary::primitive_desc pd(d, Attr(relu), engine_);
        out.mem = NewMemory(pd.dst_desc());
        Add(dnnl::binary(pd), {{DNNL_ARG_SRC_0, x}, {DNNL_ARG_SRC_1, y}, {DNNL_ARG_DST, out.mem}},
            pd.scratchpad_desc());
      } else if (n.op_type == "Relu") {
        memory x = input_of(n, 0).mem;
        dnnl::eltwise_forward::desc d(dnnl::prop_kind::forward_inference, dnnl::algorithm::eltwise_relu, x.get_desc(),
                                      0.f);
        dnnl::eltwise_forward::primitive_desc pd(d, Attr(false), engine_);
        out.mem = NewMemory(pd.dst_desc());
        Add(dnnl::eltwise_forward(pd), {{DNNL_ARG_SRC, x}, {DNNL_ARG_DST, out.mem}}, pd.scratchpad_desc());
      } else if (n.op_type == "MaxPool" || n.op_type == "AveragePool" || n.op_type == "GlobalAveragePool") {
        memory x = input_of(n, 0).mem;
        memory::dims sd = x.get_desc().dims();
        if (sd.size() != 4)
          throw GraphError{n.op_type + " node '" + n.name + "' reads a tensor that is not [N, C, H, W]"};
        // With one channel, NCHW and NHWC are the same bytes, and oneDNN pools NHWC with
        // JIT code where NCHW gets its simple loop (linear_pool's 2x2 average ran at a
        // fifth of OpenCV's speed).
        if (sd[1] == 1 && x.get_desc() == memory::desc(sd, Dt::f32, Tag::nchw))
          x = View(x, memory::desc(sd, Dt::f32, Tag::nhwc));
        const bool global = n.op_type == "GlobalAveragePool";
        std::vector<int64_t> k = global ? std::vector<int64_t>{sd[2], sd[3]} : n.Ints("kernel_shape");
        std::vector<int64_t> s = n.Ints("strides", {1, 1}), p = n.Ints("pads", {0, 0, 0, 0}),
                             dil = n.Ints("dilations", {1, 1});
        if (k.size() != 2 || s.size() != 2 || p.size() != 4 || dil != std::vector<int64_t>{1, 1} ||
            n.Int("ceil_mode", 0) != 0 || n.Int("storage_order", 0) != 0 ||
            (n.Find("auto_pad") && n.Find("auto_pad")->s != "NOTSET"))
          throw GraphError{n.op_type + " node '" + n.name + "' has attributes this backend does not support"};
        const std::string what = n.op_type + " node '" + n.name + "'";
        memory::dims od = {sd[0], sd[1], OutputLength(what, sd[2], p[0], p[2], k[0], s[0], 1),
                           OutputLength(what, sd[3], p[1], p[3], k[1], s[1], 1)};
        if (od[2] <= 0 || od[3] <= 0) throw GraphError{n.op_type + " node '" + n.name + "' has an empty output"};
        const dnnl::algorithm alg = n.op_type == "MaxPool"               ? dnnl::algorithm::pooling_max
                                    : n.Int("count_include_pad", 0) != 0 ? dnnl::algorithm::pooling_avg_include_padding
                                                                         : dnnl::algorithm::pooling_avg_exclude_padding;
        dnnl::pooling_forward::desc d(dnnl::prop_kind::forward_inference, alg, x.get_desc(),
                                      memory::desc(od, Dt::f32, Tag::any), {s[0], s[1]}, {k[0], k[1]}, {p[0], p[1]},
                                      {p[2], p[3]});
        dnnl::pooling_forward::primitive_desc pd(d, Attr(false), engine_);
        out.mem = NewMemory(pd.dst_desc());
        Add(dnnl::pooling_forward(pd), {{DNNL_ARG_SRC, x}, {DNNL_ARG_DST, out.mem}}, pd.scratchpad_desc());
      } else if (n.op_type == "Flatten") {
        Value& x = input_of(n, 0);
        if (n.Int("axis", 1) != 1)
          throw GraphError{"Flatten node '" + n.name + "' has an axis other than 1 (unsupported)"};
        out.mem = plain_2d(x);
      } else if (n.op_type == "Identity" || n.op_type == "Dropout") {
        out = input_of(n, 0);
      } else {
        throw GraphError{"node '" + n.name + "' is a " + n.op_type +
                         ", which the onednn backend does not run (it runs Conv, Gemm, Add, Relu, MaxPool, "
                         "AveragePool, GlobalAveragePool, Flatten; backend = \"onnx\" runs more on OpenCV DNN)"};
      }
      if (relu) ++i;
      values[out_name] = std::move(out);
    }
    auto it = values.find(model.outputs[0]);
    if (it == values.end()) throw GraphError{"nothing computes the graph's output '" + model.outputs[0] + "'"};
    memory result = it->second.mem;
    memory::dims od = result.get_desc().dims();
    if (od.size() != 2) throw GraphError{"the output is not [batch, classes]"};
    result = InLayout(result, memory::desc(od, Dt::f32, Tag::nc));
    classes_ = od[1];
    LayOut(in, result);
    input_ = in.get_data_handle();
    output_ = result.get_data_handle();
    // One scratchpad for every step (they run one after another).
    scratch_ = Allocate(scratch_bytes_);
    for (size_t k = 0; k < scratch_steps_.size(); ++k)
      steps_[scratch_steps_[k]].args[DNNL_ARG_SCRATCHPAD] = memory(scratch_descs_[k], engine_, scratch_.get());
  }

  dnnl::engine engine_;
  int batch_;
  std::shared_ptr<std::vector<Buffer>> constants_ = std::make_shared<std::vector<Buffer>>();  // weights, biases
  std::vector<Activation> activations_;                                                       // (while building)
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

// Plans are built one at a time, process-wide. Building one creates oneDNN primitives,
// which go through oneDNN's global primitive cache; with two workers building at once,
// ThreadSanitizer reported a query of a new primitive descriptor (pd.dst_desc() of a
// pooling) reading memory that another thread's primitive creation had allocated, with
// no ordering it could see (scripts/test.sh --tsan, the server tests). Whether or not
// the library's own locking covers it, building under one mutex orders every creation
// after the last. It costs nothing that matters: a plan is built once per batch size
// (the other callers clone it, Plan::Clone, outside this mutex).
std::unique_ptr<Plan> BuildPlan(const onnx::Model& model, const std::vector<int64_t>& input_shape, int batch,
                                const dnnl::engine& engine, dnnl::stream& stream) {
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  return std::make_unique<Plan>(model, input_shape, batch, engine, stream);
}

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

// Plans of kBlock, kBlock / 4, ..., 1 examples: 16, 4 and 1. Each size a process uses is
// built (its primitives JIT-compiled) and probed once, and first runs cold: with every
// power of two, a `coe run` of the zoo cascade built 123 primitives (40 ms) where sizes
// 16, 4 and 1 need ~70; a remainder of 7 now runs 4 + 1 + 1 + 1 instead of 4 + 2 + 1.
constexpr int kPlanSizes = std::bit_width(static_cast<unsigned>(kBlock)) / 2 + 1;
static_assert(kBlock == 1 << (2 * (kPlanSizes - 1)), "kBlock is a power of 4");

// The index of the plan of `size` examples (a power of 4 up to kBlock).
int PlanIndex(int size) { return std::countr_zero(static_cast<unsigned>(kBlock / size)) / 2; }

// One caller's stream and Plans (plans[k] runs kBlock >> 2k examples; made on first use).
struct Worker {
  dnnl::stream stream;
  std::unique_ptr<Plan> plans[kPlanSizes];
};

// A probe of kBlock pseudo-random examples, and what the one-example plan answers on
// each (Probe::want, kBlock rows of `classes`). Every larger plan is checked against it
// when built (OnednnBackend::PlanFor), which makes the probe on first need: when the
// kBlock plan is built as the model loads (Warm; ~4 ms for resnet_small), or later.
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
  Plan& one = *w.plans[kPlanSizes - 1];
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
                std::vector<std::unique_ptr<Worker>> workers, const Plan* one)
      : info_(std::move(info)),
        path_(spec.path),
        scale_(spec.scale),
        mean_(spec.mean),
        std_(spec.std),
        model_(std::move(model)),
        engine_(std::move(engine)),
        workers_(std::move(workers)) {
    first_[kPlanSizes - 1] = one;
  }

  const BackendInfo& info() const override { return info_; }

  // Builds (and probes) the plan of kBlock examples now, as the model loads: most examples
  // run in it, and a `coe run` loads its models while another thread decodes the inputs,
  // so the build is off the critical path there (zoo cascade: 328 -> 313 ms, medians of
  // 13). A failure here is left for the first call to meet (and report) again.
  void Warm() {
    LeasePool<Worker>::Lease worker(&workers_);
    try {
      PlanFor(*worker, kBlock);
    } catch (...) {
    }
  }

  Status Predict(const InputView& batch, std::vector<Prediction>* out) override {
    if (Status s; !BeginPredict(info_, path_, batch, out, stats_, &s)) return s;
    const int64_t n = batch.size();
    omp_set_num_threads(1);
    LeasePool<Worker>::Lease worker(&workers_);
    const int64_t e = static_cast<int64_t>(batch.data.size()) / n;
    const float a = static_cast<float>(scale_ / std_), b = static_cast<float>(-mean_ / std_);
    const int classes = static_cast<int>(info_.labels.size());
    std::string error;
    uint64_t abstained = 0;
    bool bad[kBlock];
    for (int64_t start = 0; start < n;) {
      const int64_t rest = n - start;
      Plan* plan = nullptr;
      try {
        int size = kBlock;
        while (size > rest) size /= 4;
        for (; !plan; size /= 4) plan = PlanFor(*worker, size);
        float* dst = plan->input();
        const float* src = batch.data.data() + start * e;
        for (int64_t i = 0; i < plan->batch(); ++i) {
          // A non-finite input abstains: Relu would turn its NaNs into zeros, where OpenCV
          // (and the contract) let the example's output be non-finite.
          uint32_t non_finite = 0;
          for (int64_t k = i * e; k < (i + 1) * e; ++k) {
            dst[k] = src[k] * a + b;
            const uint32_t bits = std::bit_cast<uint32_t>(dst[k]);
            non_finite |= (bits & 0x7f800000u) == 0x7f800000u;  // an exponent of all ones
          }
          bad[i] = non_finite != 0;
        }
        plan->Run(worker->stream);
      } catch (...) {
        error = ErrorText();
        break;
      }
      const float* rows = plan->output();
      for (int64_t i = 0; i < plan->batch(); ++i) {
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
      start += plan->batch();
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
  // `w`'s plan of `size` examples, made on first use: the first of each size is built and
  // checked against the probe; the other callers' are clones of it. nullptr when plans of
  // that size answer the probe differently from the one-example plan (oneDNN chooses
  // kernels per problem, batch size included: on this CPU alike for every zoo model, but a
  // CPU where not would make an answer depend on how it was batched). Callers then use
  // smaller plans, down to one example, so answers never depend on batching.
  Plan* PlanFor(Worker& w, int size) {
    const int k = PlanIndex(size);
    std::unique_ptr<Plan>& plan = w.plans[k];
    if (plan) return plan.get();
    std::lock_guard<std::mutex> lock(first_mu_);
    if (differs_[k]) return nullptr;
    if (first_[k]) {
      plan = first_[k]->Clone();
      return plan.get();
    }
    if (probe_.want.empty()) {
      std::unique_ptr<Plan>& one = w.plans[kPlanSizes - 1];
      if (!one) one = first_[kPlanSizes - 1]->Clone();
      probe_ = MakeProbe(w, info_.input_shape);
    }
    plan = BuildPlan(*model_, info_.input_shape, size, engine_, w.stream);
    const int64_t e = static_cast<int64_t>(probe_.inputs.size()) / kBlock;
    std::copy(probe_.inputs.begin(), probe_.inputs.begin() + size * e, plan->input());
    plan->Run(w.stream);
    if (std::memcmp(plan->output(), probe_.want.data(), size * plan->classes() * sizeof(float)) != 0) {
      differs_[k] = true;
      plan.reset();
      return nullptr;
    }
    first_[k] = plan.get();
    return plan.get();
  }

  std::mutex first_mu_;
  Probe probe_;                         // guarded by first_mu_: made on first need
  const Plan* first_[kPlanSizes] = {};  // guarded by first_mu_: the plan of each size the others clone (a worker's)
  bool differs_[kPlanSizes] = {};       // guarded by first_mu_: plan sizes refused by the probe
  BackendInfo info_;
  std::string path_;
  double scale_, mean_, std_;
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
    // The first worker's single-example Plan checks the graph now, so that a model this
    // backend cannot run is an error at load time, not an abstention on every example.
    for (int t = 0; t < std::max(1, options.threads); ++t) {
      auto w = std::make_unique<Worker>();
      w->stream = dnnl::stream(engine);
      workers.push_back(std::move(w));
    }
    try {
      workers[0]->plans[kPlanSizes - 1] = BuildPlan(*model, spec.input_shape, 1, engine, workers[0]->stream);
    } catch (const std::bad_alloc&) {
      return ResourceExhaustedError("model '" + spec.name + "': out of memory compiling " + spec.path);
    } catch (...) {
      return InvalidArgumentError("model '" + spec.name + "': " + spec.path +
                                  " cannot run on the onednn backend with inputs of shape " +
                                  ShapeString(spec.input_shape) + ": " + ErrorText());
    }
    const size_t classes = static_cast<size_t>(workers[0]->plans[kPlanSizes - 1]->classes());
    if (info.labels.empty()) {
      for (size_t c = 0; c < classes; ++c) info.labels.push_back(std::to_string(c));
    } else if (classes != info.labels.size()) {
      return InvalidArgumentError("model '" + spec.name + "': " + spec.path + " outputs " + std::to_string(classes) +
                                  " classes but the catalogue lists " + std::to_string(info.labels.size()) + " labels");
    }
    const Plan* one = workers[0]->plans[kPlanSizes - 1].get();
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
