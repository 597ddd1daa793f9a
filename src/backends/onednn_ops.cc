// The compiled graph's elementwise nodes, Concat and BatchNormalization
// (backends/onednn_graph.h): each one oneDNN primitive (two for HardSigmoid), and each
// computes an element from that element alone (a Concat copies), so an example's
// values never depend on the batch it runs in.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <string>
#include <vector>

#include "backends/onednn_graph.h"

namespace coe::onednn {
namespace {

using dnnl::memory;
using Tag = memory::format_tag;
using Dt = memory::data_type;

// The plain (row-major) layout of a tensor of `rank` dimensions.
Tag PlainTag(size_t rank) {
  switch (rank) {
    case 1:
      return Tag::a;
    case 2:
      return Tag::ab;
    case 3:
      return Tag::abc;
    case 4:
      return Tag::abcd;
    case 5:
      return Tag::abcde;
    default:
      return Tag::undef;
  }
}

// The dimensions of the concatenation of `descs` along `axis`.
memory::dims DimsOfConcat(const std::vector<memory::desc>& descs, int64_t axis) {
  memory::dims d = descs[0].dims();
  d[axis] = 0;
  for (const memory::desc& m : descs) d[axis] += m.dims()[axis];
  return d;
}

// Whether `small` broadcasts onto `big` (the same rank; each dimension equal or 1).
bool BroadcastsOnto(const memory::dims& small, const memory::dims& big) {
  if (small.size() != big.size()) return false;
  for (size_t k = 0; k < big.size(); ++k)
    if (small[k] != big[k] && small[k] != 1) return false;
  return true;
}

}  // namespace

// A constant operand `t` of an elementwise node, broadcast by ONNX's rules (dimensions
// aligned at the right, missing ones 1) to the rank of `onto`, in plain layout.
memory CompiledGraph::ConstantOperand(const onnx::FloatTensor& t, const memory::dims& onto, const std::string& what,
                                      dnnl::stream& stream) {
  if (t.dims.size() > onto.size())
    throw GraphError{what + " has a constant of rank " + std::to_string(t.dims.size()) + " for a tensor of rank " +
                     std::to_string(onto.size())};
  memory::dims dims(onto.size() - t.dims.size(), 1);
  dims.insert(dims.end(), t.dims.begin(), t.dims.end());
  if (!BroadcastsOnto(dims, onto))
    throw GraphError{what + " has a constant of shape " + DimsText(t.dims) + ", which does not broadcast onto " +
                     DimsText(onto)};
  const Tag tag = PlainTag(dims.size());
  if (tag == Tag::undef) throw GraphError{what + " reads a tensor of rank " + std::to_string(dims.size())};
  return Constant(t, dims, tag, memory::desc(dims, Dt::f32, tag), stream);
}

// A binary node oneDNN would run on its reference kernel, of an image in channel blocks
// and one value a channel ([N, C, 1, 1], a squeeze-and-excitation scale): a loop over the
// blocks (RegNetY's SE blocks, on 8-channel blocks, took 3.2 of 3.8 ms a call on the
// reference kernel). An empty memory when the operands are not such.
memory CompiledGraph::AddChannelScale(const memory& x, const memory& y, dnnl::algorithm alg, bool relu) {
  const memory::desc& xd = x.get_desc();
  const dnnl_blocking_desc_t& b = xd.data.format_desc.blocking;
  const memory::dims dims = xd.dims(), yd = y.get_desc().dims();
  if (dims.size() != 4 || xd.data.format_kind != dnnl_blocked || b.inner_nblks != 1 || b.inner_idxs[0] != 1 ||
      yd != memory::dims{dims[0], dims[1], 1, 1})
    return memory();
  const int64_t block = b.inner_blks[0], n = dims[0], c = dims[1], hw = dims[2] * dims[3];
  const int64_t blocks = (c + block - 1) / block;
  // [N][C/block][H][W][block], dense: the strides of the outer dims say so.
  if (b.strides[1] != hw * block || b.strides[2] != dims[3] * block || b.strides[3] != block ||
      b.strides[0] != blocks * hw * block)
    return memory();
  memory in_y = InLayout(y, memory::desc(yd, Dt::f32, Tag::abcd));
  memory out = NewMemory(xd);
  AddCustom({{DNNL_ARG_SRC_0, x}, {DNNL_ARG_SRC_1, in_y}, {DNNL_ARG_DST, out}}, [=](const Args& args) {
    const float* src = static_cast<const float*>(args.at(DNNL_ARG_SRC_0).get_data_handle());
    const float* scale = static_cast<const float*>(args.at(DNNL_ARG_SRC_1).get_data_handle());
    float* dst = static_cast<float*>(args.at(DNNL_ARG_DST).get_data_handle());
    std::vector<float> s(block);
    for (int64_t e = 0; e < n; ++e)
      for (int64_t cb = 0; cb < blocks; ++cb) {
        for (int64_t i = 0; i < block; ++i) s[i] = cb * block + i < c ? scale[e * c + cb * block + i] : 0.f;
        const int64_t at = (e * blocks + cb) * hw * block;
        for (int64_t p = 0; p < hw; ++p)
          for (int64_t i = 0; i < block; ++i) {
            const float v = src[at + p * block + i];
            float r = alg == dnnl::algorithm::binary_mul   ? v * s[i]
                      : alg == dnnl::algorithm::binary_add ? v + s[i]
                      : alg == dnnl::algorithm::binary_sub ? v - s[i]
                                                           : v / s[i];
            if (cb * block + i >= c) r = 0.f;  // (the padding of the last block stays zero)
            dst[at + p * block + i] = relu && r < 0.f ? 0.f : r;
          }
      }
  });
  return out;
}

// Add, Sub, Mul or Div: two computed tensors of one shape, or one broadcast onto the
// other (an SE block's [N, C, 1, 1] scale, say), or a computed tensor and a constant.
// The broadcast operand is oneDNN's second source; Add and Mul swap their operands for
// it, Sub and Div cannot.
memory CompiledGraph::CompileBinary(Compilation& g, const onnx::Node& n, bool relu, dnnl::stream& stream) {
  const std::string what = n.op_type + " node '" + n.name + "'";
  const dnnl::algorithm alg = n.op_type == "Add"   ? dnnl::algorithm::binary_add
                              : n.op_type == "Sub" ? dnnl::algorithm::binary_sub
                              : n.op_type == "Mul" ? dnnl::algorithm::binary_mul
                                                   : dnnl::algorithm::binary_div;
  const bool commutes = n.op_type == "Add" || n.op_type == "Mul";
  if (n.inputs.size() != 2) throw GraphError{what + " has " + std::to_string(n.inputs.size()) + " inputs, not 2"};
  const bool const0 = g.IsConstant(n, 0), const1 = g.IsConstant(n, 1);
  if (const0 && const1) throw GraphError{what + " computes only constants (unsupported)"};
  if (const0 && !commutes) throw GraphError{what + " has a constant first operand (unsupported)"};
  const size_t xi = const0 ? 1 : 0, yi = 1 - xi;
  memory x = g.InputOf(n, xi).mem, y;
  // Tensors other than images plain: oneDNN's binary runs a permuted layout on its
  // reference kernel only.
  if (x.get_desc().dims().size() != 4) x = InLayout(x, PlainDesc(x.get_desc().dims()));
  memory::dims xd = x.get_desc().dims();
  if (g.IsConstant(n, yi)) {
    y = ConstantOperand(*g.Weight(n, yi), xd, what, stream);
  } else {
    y = g.InputOf(n, yi).mem;  // both computed: x is input 0, y input 1
    // Of different ranks: the lower one gains leading dimensions of 1 (ONNX's broadcast).
    const size_t rank = std::max(xd.size(), y.get_desc().dims().size());
    x = Aligned(x, rank);
    y = Aligned(y, rank);
    xd = x.get_desc().dims();
    const memory::dims yd = y.get_desc().dims();
    if (yd == xd) {
      y = InLayout(y, x.get_desc());
    } else if (BroadcastsOnto(yd, xd)) {
      y = InLayout(y, memory::desc(yd, Dt::f32, PlainTag(yd.size())));
    } else if (commutes && BroadcastsOnto(xd, yd)) {
      std::swap(x, y);
      y = InLayout(y, memory::desc(xd, Dt::f32, PlainTag(xd.size())));
    } else {
      throw GraphError{what + " has operands of shapes " + DimsText(xd) + " and " + DimsText(yd) +
                       (commutes ? ", neither of which broadcasts onto the other"
                                 : ": the second does not broadcast "
                                   "onto the first (unsupported)")};
    }
  }
  // Both plain: adjacent dimensions that y broadcasts alike are one (a LayerNorm's
  // [1, 8, 8, 32] - [1, 8, 8, 1] is [1, 64, 32] - [1, 64, 1]), which oneDNN's JIT kernel
  // runs; the 4-D form ran on its reference kernel.
  const memory::dims full = x.get_desc().dims();
  const bool plain = x.get_desc() == PlainDesc(full) && y.get_desc() == PlainDesc(y.get_desc().dims());
  if (plain && full.size() > 2) {
    const memory::dims yd = y.get_desc().dims();
    memory::dims cx, cy;
    for (size_t k = 0; k < full.size(); ++k) {
      const bool b = yd[k] != full[k];
      if (k > 0 && b == (cy.back() != cx.back())) {
        cx.back() *= full[k];
        cy.back() *= yd[k];
      } else {
        cx.push_back(full[k]);
        cy.push_back(yd[k]);
      }
    }
    if (cx.size() < full.size()) {
      x = View(x, PlainDesc(cx));
      // (a constant operand is no tensor of the arena: the same bytes, described anew)
      y = activation_of_.count(y.get()) ? View(y, PlainDesc(cy)) : memory(PlainDesc(cy), engine_, y.get_data_handle());
    }
  }
  dnnl::binary::desc d(alg, x.get_desc(), y.get_desc(), x.get_desc());
  dnnl::binary::primitive_desc pd(d, Attr(relu), engine_);
  if (std::string(pd.impl_info_str()).rfind("ref", 0) == 0)
    if (memory scaled = AddChannelScale(x, y, alg, relu); scaled) return scaled;
  memory out = NewMemory(pd.dst_desc());
  Add(dnnl::binary(pd), {{DNNL_ARG_SRC_0, x}, {DNNL_ARG_SRC_1, y}, {DNNL_ARG_DST, out}}, pd.scratchpad_desc());
  if (out.get_desc().dims() != full) out = View(out, PlainDesc(full));
  return out;
}

memory CompiledGraph::AddEltwise(const memory& x, dnnl::algorithm alg, float alpha, float beta) {
  dnnl::eltwise_forward::desc d(dnnl::prop_kind::forward_inference, alg, x.get_desc(), alpha, beta);
  dnnl::eltwise_forward::primitive_desc pd(d, Attr(false), engine_);
  memory out = NewMemory(pd.dst_desc());
  Add(dnnl::eltwise_forward(pd), {{DNNL_ARG_SRC, x}, {DNNL_ARG_DST, out}}, pd.scratchpad_desc());
  return out;
}

// Relu, LeakyRelu, Clip (bounds as inputs from opset 11, attributes before), Sigmoid,
// Tanh, HardSigmoid (alpha x + beta, clipped to [0, 1]) and HardSwish
// (x relu6(x + 3) / 6, which is oneDNN's hardswish).
memory CompiledGraph::CompileActivation(Compilation& g, const onnx::Node& n) {
  memory x = g.InputOf(n, 0).mem;
  using A = dnnl::algorithm;
  if (n.op_type == "Relu") return AddEltwise(x, A::eltwise_relu, 0.f, 0.f);
  if (n.op_type == "LeakyRelu") return AddEltwise(x, A::eltwise_relu, n.Float("alpha", 0.01f), 0.f);
  if (n.op_type == "Sigmoid") return AddEltwise(x, A::eltwise_logistic, 0.f, 0.f);
  if (n.op_type == "Tanh") return AddEltwise(x, A::eltwise_tanh, 0.f, 0.f);
  if (n.op_type == "HardSwish") return AddEltwise(x, A::eltwise_hardswish, 0.f, 0.f);
  if (n.op_type == "HardSigmoid") {
    memory lin = AddEltwise(x, A::eltwise_linear, n.Float("alpha", 0.2f), n.Float("beta", 0.5f));
    return AddEltwise(lin, A::eltwise_clip, 0.f, 1.f);
  }
  // Clip
  const bool attrs = g.model.opset > 0 && g.model.opset < 11;
  const float lo = attrs ? n.Float("min", -FLT_MAX) : g.Scalar(n, 1, -FLT_MAX);
  const float hi = attrs ? n.Float("max", FLT_MAX) : g.Scalar(n, 2, FLT_MAX);
  if (!(lo <= hi)) throw GraphError{"Clip node '" + n.name + "' has min above max"};
  return AddEltwise(x, A::eltwise_clip, lo, hi);
}

// Concat of computed tensors of one rank along `axis` (negative: from the end), equal
// in every other dimension.
memory CompiledGraph::CompileConcat(Compilation& g, const onnx::Node& n, dnnl::stream& stream) {
  const std::string what = "Concat node '" + n.name + "'";
  if (n.inputs.empty()) throw GraphError{what + " has no inputs"};
  std::vector<memory> srcs;
  std::vector<memory::desc> descs;
  for (size_t k = 0; k < n.inputs.size(); ++k) srcs.push_back(InputOrConstant(g, n, k, stream));
  const memory::dims first = srcs[0].get_desc().dims();
  const int64_t rank = static_cast<int64_t>(first.size());
  int64_t axis = n.Int("axis", 1);
  if (axis < 0) axis += rank;
  if (axis < 0 || axis >= rank) throw GraphError{what + " has an axis outside its rank " + std::to_string(rank)};
  if (axis == 0) throw GraphError{what + " concatenates along the batch axis (unsupported)"};
  for (const memory& m : srcs) {
    memory::dims d = m.get_desc().dims();
    bool same = d.size() == first.size();
    for (size_t k = 0; same && k < d.size(); ++k) same = static_cast<int64_t>(k) == axis || d[k] == first[k];
    if (!same)
      throw GraphError{what + " joins " + DimsText(first) + " and " + DimsText(d) + " along axis " +
                       std::to_string(axis) + ": the other dimensions differ"};
    descs.push_back(m.get_desc());
  }
  // Images ([N, C, H, W]) in the layout oneDNN picks from its inputs' (blocked, after
  // convolutions); other ranks (a transformer's tokens) plain: oneDNN picked a permuted
  // layout for ViT's [1, 197, 768] (class token and patches), which every binary node after
  // it kept, each then on oneDNN's reference kernel (the model ran at a fifth of its speed).
  dnnl::concat::primitive_desc pd =
      rank == 4 ? dnnl::concat::primitive_desc(static_cast<int>(axis), descs, engine_, Attr(false))
                : dnnl::concat::primitive_desc(PlainDesc(DimsOfConcat(descs, axis)), static_cast<int>(axis), descs,
                                               engine_, Attr(false));
  memory out = NewMemory(pd.dst_desc());
  Args args = {{DNNL_ARG_DST, out}};
  for (size_t k = 0; k < srcs.size(); ++k) args[DNNL_ARG_MULTIPLE_SRC + static_cast<int>(k)] = srcs[k];
  Add(dnnl::concat(pd), std::move(args), pd.scratchpad_desc());
  return out;
}

// BatchNormalization at inference (constant scale, bias, mean and variance over the
// channel axis): scale (x - mean) / sqrt(var + epsilon) + bias, as oneDNN computes it
// with global statistics.
memory CompiledGraph::CompileBatchNorm(Compilation& g, const onnx::Node& n, dnnl::stream& stream) {
  const std::string what = "BatchNormalization node '" + n.name + "'";
  if (n.Int("training_mode", 0) != 0) throw GraphError{what + " is in training mode (unsupported)"};
  if (n.outputs.size() > 1 && !n.outputs[1].empty())
    throw GraphError{what + " outputs its running statistics (training; unsupported)"};
  memory x = g.InputOf(n, 0).mem;
  const memory::dims xd = x.get_desc().dims();
  if (xd.size() != 4 && xd.size() != 2) throw GraphError{what + " reads a tensor that is not [N, C, H, W] or [N, C]"};
  const int64_t channels = xd[1];
  const onnx::FloatTensor* t[4];
  const char* names[4] = {"scale", "B", "mean", "var"};
  for (int k = 0; k < 4; ++k) {
    if (!g.IsConstant(n, k + 1)) throw GraphError{what + " has no constant " + names[k] + " (unsupported)"};
    t[k] = g.Weight(n, k + 1);
    if (t[k]->size() != channels)
      throw GraphError{what + " has a " + names[k] + " of " + std::to_string(t[k]->size()) + " values for " +
                       std::to_string(channels) + " channels"};
  }
  const float epsilon = n.Float("epsilon", 1e-5f);
  if (!(epsilon >= 0) || !std::isfinite(epsilon)) throw GraphError{what + " has a negative or non-finite epsilon"};
  const auto flags = dnnl::normalization_flags::use_global_stats | dnnl::normalization_flags::use_scale |
                     dnnl::normalization_flags::use_shift;
  dnnl::batch_normalization_forward::desc d(dnnl::prop_kind::forward_inference, x.get_desc(), epsilon, flags);
  dnnl::batch_normalization_forward::primitive_desc pd(d, Attr(false), engine_);
  const memory::desc vec({channels}, Dt::f32, Tag::x);
  memory scale = Constant(*t[0], {channels}, Tag::x, vec, stream),
         shift = Constant(*t[1], {channels}, Tag::x, vec, stream),
         mean = Constant(*t[2], {channels}, Tag::x, vec, stream),
         var = Constant(*t[3], {channels}, Tag::x, vec, stream);
  memory in = InLayout(x, pd.src_desc());
  memory out = NewMemory(pd.dst_desc());
  Add(dnnl::batch_normalization_forward(pd),
      {{DNNL_ARG_SRC, in},
       {DNNL_ARG_SCALE, scale},
       {DNNL_ARG_SHIFT, shift},
       {DNNL_ARG_MEAN, mean},
       {DNNL_ARG_VARIANCE, var},
       {DNNL_ARG_DST, out}},
      pd.scratchpad_desc());
  return out;
}

}  // namespace coe::onednn
