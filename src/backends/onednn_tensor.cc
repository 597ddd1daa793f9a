// The compiled graph's values known at load, its shape and data-movement nodes, and the
// transformer families' arithmetic (backends/onednn_graph.h):
// - a node whose inputs are all known at load (weights, shapes: the graph is compiled
//   for one batch size) is computed then, by onnx_fold.h, and costs nothing per call;
// - Reshape, Flatten, Squeeze and Unsqueeze view a tensor in plain layout; Transpose is
//   a oneDNN reorder; Slice, Gather of one index, Split and Pad are copies;
// - MatMul by a constant matrix is a Dense layer (backends/dense.h) over every row; of two
//   computed tensors (attention), a loop; Softmax, ReduceMean, LayerNormalization and Erf
//   are loops too.
// Every kernel computes an example from that example alone, in an order that does not
// depend on the batch, so an answer does not depend on how it was batched.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "backends/dense.h"
#include "backends/onednn_graph.h"
#include "backends/onnx_fold.h"

namespace coe::onednn {
namespace {

using dnnl::memory;
using Dt = memory::data_type;
using Dims = memory::dims;

int64_t Count(const Dims& d) {
  int64_t n = 1;
  for (int64_t x : d) n *= x;
  return n;
}

int64_t AxisOf(const onnx::Node& n, int64_t axis, size_t rank) {
  const int64_t r = static_cast<int64_t>(rank);
  if (axis < 0) axis += r;
  if (axis < 0 || axis >= r)
    throw GraphError{n.op_type + " node '" + n.name + "' has an axis outside its rank " + std::to_string(rank)};
  return axis;
}

const float* Src(const std::unordered_map<int, memory>& args, int arg) {
  return static_cast<const float*>(args.at(arg).get_data_handle());
}
float* Dst(const std::unordered_map<int, memory>& args) {
  return static_cast<float*>(args.at(DNNL_ARG_DST).get_data_handle());
}

// dst (dense, row-major, `dims`) = src at src_offset + sum(index[k] * src_strides[k]).
void StridedCopy(const Dims& dims, const Dims& strides, int64_t offset, const float* src, float* dst) {
  const size_t rank = dims.size();
  if (rank == 0) {
    dst[0] = src[offset];
    return;
  }
  const int64_t inner = dims.back(), step = strides.back();
  Dims index(rank, 0);
  const int64_t rows = Count(dims) / std::max<int64_t>(inner, 1);
  for (int64_t r = 0; r < rows; ++r) {
    int64_t at = offset;
    for (size_t k = 0; k + 1 < rank; ++k) at += index[k] * strides[k];
    for (int64_t i = 0; i < inner; ++i) dst[i] = src[at + i * step];
    dst += inner;
    for (size_t k = rank - 1; k-- > 0;) {
      if (++index[k] < dims[k]) break;
      index[k] = 0;
    }
  }
}

}  // namespace

// A node whose inputs are all known (or a Shape of a computed tensor): its outputs
// computed now. Returns whether it was.
bool CompiledGraph::FoldNode(Compilation& g, const onnx::Node& n) {
  if (n.op_type == "Shape" && !n.inputs.empty() && !g.IsConstant(n, 0)) {
    g.folded[n.outputs[0]] = onnx::ShapeOf(n, g.InputOf(n, 0).mem.get_desc().dims());
    return true;
  }
  if (!onnx::Folds(n.op_type)) return false;
  std::vector<const onnx::FloatTensor*> inputs;
  for (size_t k = 0; k < n.inputs.size(); ++k) {
    if (n.inputs[k].empty()) {
      inputs.push_back(nullptr);
      continue;
    }
    inputs.push_back(g.Known(n.inputs[k]));
    if (!inputs.back()) return false;
  }
  if (inputs.empty()) return false;
  auto out = onnx::Fold(n, inputs, g.model.opset);
  if (!out.ok()) throw GraphError{out.status().message()};
  for (size_t k = 0; k < n.outputs.size(); ++k)
    if (!n.outputs[k].empty()) g.folded[n.outputs[k]] = std::move((*out)[k]);
  return true;
}

// `mem` in plain (row-major) layout.
memory CompiledGraph::Plain(const memory& mem) { return InLayout(mem, PlainDesc(mem.get_desc().dims())); }

// `mem` viewed with leading dimensions of 1 up to `rank` (ONNX's broadcasting).
memory CompiledGraph::Aligned(const memory& mem, size_t rank) {
  Dims d = mem.get_desc().dims();
  if (d.size() >= rank) return mem;
  d.insert(d.begin(), rank - d.size(), 1);
  return View(Plain(mem), PlainDesc(d));
}

// A known value as a constant tensor of the graph, in plain layout.
memory CompiledGraph::ConstantTensor(const onnx::FloatTensor& t, dnnl::stream& stream) {
  (void)stream;
  const memory::desc md = PlainDesc(t.dims.empty() ? Dims{1} : t.dims);
  if (md.get_size() != t.data.size() * sizeof(float)) throw GraphError{"a constant tensor has the wrong size"};
  memory m = NewConstant(md);
  std::copy(t.data.begin(), t.data.end(), static_cast<float*>(m.get_data_handle()));
  return m;
}

// Input `k` of `n`: computed, or known and made a constant tensor.
memory CompiledGraph::InputOrConstant(Compilation& g, const onnx::Node& n, size_t k, dnnl::stream& stream) {
  if (g.IsConstant(n, k)) return ConstantTensor(*g.Weight(n, k), stream);
  return g.InputOf(n, k).mem;
}

// dims of src (plain) read at src_offset + index . src_strides, copied into a new tensor.
memory CompiledGraph::AddCopy(const memory& src, const Dims& dims, const Dims& src_strides, int64_t src_offset) {
  memory in = Plain(src);
  memory out = NewMemory(PlainDesc(dims));
  AddCustom({{DNNL_ARG_SRC, in}, {DNNL_ARG_DST, out}}, [dims, src_strides, src_offset](const Args& args) {
    StridedCopy(dims, src_strides, src_offset, Src(args, DNNL_ARG_SRC), Dst(args));
  });
  return out;
}

// Reshape, Flatten, Squeeze, Unsqueeze: the same values under other dimensions, which
// onnx_fold.h computes from a tensor of the input's shape (of no values).
memory CompiledGraph::CompileReshape(Compilation& g, const onnx::Node& n) {
  memory x = g.InputOf(n, 0).mem;
  const Dims xd = x.get_desc().dims();
  onnx::FloatTensor shape_only{xd, {}, false};
  std::vector<const onnx::FloatTensor*> inputs = {&shape_only};
  for (size_t k = 1; k < n.inputs.size(); ++k) inputs.push_back(n.inputs[k].empty() ? nullptr : g.Weight(n, k));
  auto out = onnx::Fold(n, inputs, g.model.opset);
  if (!out.ok()) throw GraphError{out.status().message()};
  const Dims od = (*out)[0].dims;
  if (Count(od) != Count(xd))
    throw GraphError{n.op_type + " node '" + n.name + "' reshapes " + DimsText(xd) + " into " + DimsText(od)};
  return View(Plain(x), PlainDesc(od));
}

// Transpose: a reorder into the layout whose plain reading is the permuted tensor.
memory CompiledGraph::CompileTranspose(Compilation& g, const onnx::Node& n) {
  memory x = g.InputOf(n, 0).mem;
  const Dims xd = x.get_desc().dims();
  const size_t rank = xd.size();
  std::vector<int64_t> perm = n.Ints("perm");
  if (perm.empty())
    for (size_t k = rank; k-- > 0;) perm.push_back(static_cast<int64_t>(k));
  std::vector<int64_t> sorted = perm;
  std::sort(sorted.begin(), sorted.end());
  for (size_t k = 0; k < rank; ++k)
    if (sorted.size() != rank || sorted[k] != static_cast<int64_t>(k))
      throw GraphError{"Transpose node '" + n.name + "' has a perm that is not a permutation of its " +
                       std::to_string(rank) + " axes"};
  Dims od(rank), in_strides(rank);
  for (size_t k = 0; k < rank; ++k) od[k] = xd[perm[k]];
  const Dims os = PlainStrides(od);
  for (size_t k = 0; k < rank; ++k) in_strides[perm[k]] = os[k];
  return View(InLayout(x, memory::desc(xd, Dt::f32, in_strides)), PlainDesc(od));
}

// Slice (starts, ends, axes, steps known), or Gather of one known index along an axis.
memory CompiledGraph::CompileSlice(Compilation& g, const onnx::Node& n) {
  memory x = g.InputOf(n, 0).mem;
  const Dims xd = x.get_desc().dims(), xs = PlainStrides(xd);
  const std::string what = n.op_type + " node '" + n.name + "'";
  if (n.op_type == "Gather") {
    const onnx::FloatTensor* idx = g.Weight(n, 1);
    if (!idx || idx->data.size() != 1)
      throw GraphError{what + " gathers " + (idx ? std::to_string(idx->data.size()) : "no") +
                       " indices of a computed tensor (only one is supported)"};
    const int64_t axis = AxisOf(n, n.Int("axis", 0), xd.size());
    int64_t i = static_cast<int64_t>(idx->data[0]);
    if (i < 0) i += xd[axis];
    if (i < 0 || i >= xd[axis]) throw GraphError{what + " gathers index " + std::to_string(i) + " of " + DimsText(xd)};
    Dims od, os;
    for (size_t k = 0; k < xd.size(); ++k) {
      if (static_cast<int64_t>(k) == axis) {
        if (!idx->dims.empty()) od.push_back(1), os.push_back(0);  // a [1] index keeps the axis
        continue;
      }
      od.push_back(xd[k]);
      os.push_back(xs[k]);
    }
    return AddCopy(x, od, os, i * xs[axis]);
  }
  // The slice's extent, as onnx_fold.h computes it on a tensor of the input's shape
  // holding each value's own offset.
  onnx::FloatTensor offsets{xd, std::vector<float>(Count(xd)), false};
  if (Count(xd) > (int64_t{1} << 24)) throw GraphError{what + " slices a tensor of more than 2^24 values"};
  for (size_t k = 0; k < offsets.data.size(); ++k) offsets.data[k] = static_cast<float>(k);
  std::vector<const onnx::FloatTensor*> inputs = {&offsets};
  for (size_t k = 1; k < n.inputs.size(); ++k) inputs.push_back(n.inputs[k].empty() ? nullptr : g.Weight(n, k));
  auto out = onnx::Fold(n, inputs, g.model.opset);
  if (!out.ok()) throw GraphError{out.status().message()};
  const onnx::FloatTensor& o = (*out)[0];
  // Each output axis steps through the input by a fixed stride: read them off the offsets.
  const Dims od = o.dims, ostr = PlainStrides(od);
  Dims strides(od.size(), 0);
  const int64_t base = o.data.empty() ? 0 : static_cast<int64_t>(o.data[0]);
  for (size_t k = 0; k < od.size(); ++k)
    if (od[k] > 1) strides[k] = static_cast<int64_t>(o.data[ostr[k]]) - base;
  return AddCopy(x, od, strides, base);
}

// Split of a computed tensor: a Slice per output.
void CompiledGraph::CompileSplit(Compilation& g, const onnx::Node& n) {
  memory x = g.InputOf(n, 0).mem;
  const Dims xd = x.get_desc().dims(), xs = PlainStrides(xd);
  const int64_t axis = AxisOf(n, n.Int("axis", 0), xd.size());
  std::vector<int64_t> split;
  if (g.model.opset >= 13 && n.inputs.size() > 1 && !n.inputs[1].empty())
    for (float v : g.Weight(n, 1)->data) split.push_back(static_cast<int64_t>(v));
  if (g.model.opset < 13) split = n.Ints("split");
  const int64_t outs = static_cast<int64_t>(n.outputs.size());
  if (split.empty() && outs > 0 && xd[axis] % outs == 0) split.assign(outs, xd[axis] / outs);
  int64_t total = 0;
  bool negative = false;
  for (int64_t s : split) total += s, negative |= s < 0;
  if (static_cast<int64_t>(split.size()) != outs || total != xd[axis] || negative)
    throw GraphError{"Split node '" + n.name + "' has a split that does not add up to its axis of " +
                     std::to_string(xd[axis])};
  int64_t begin = 0;
  for (int64_t k = 0; k < outs; ++k) {
    Dims od = xd;
    od[axis] = split[k];
    if (!n.outputs[k].empty()) g.values[n.outputs[k]].mem = AddCopy(x, od, xs, begin * xs[axis]);
    begin += split[k];
  }
}

// Pad (mode constant) by known pads: zeros (or the constant value) around a copy.
memory CompiledGraph::CompilePad(Compilation& g, const onnx::Node& n) {
  memory x = g.InputOf(n, 0).mem;
  const Dims xd = x.get_desc().dims();
  const std::string what = "Pad node '" + n.name + "'";
  const std::string mode = n.Find("mode") ? n.Find("mode")->s : "constant";
  std::vector<int64_t> pads;
  float value = 0;
  if (g.model.opset >= 11) {
    if (const onnx::FloatTensor* p = g.Weight(n, 1))
      for (float v : p->data) pads.push_back(static_cast<int64_t>(v));
    value = g.Scalar(n, 2, 0.f);
    if (n.inputs.size() > 3 && !n.inputs[3].empty()) throw GraphError{what + " has axes (unsupported)"};
  } else {
    pads = n.Ints("pads");
    value = n.Float("value", 0.f);
  }
  const size_t rank = xd.size();
  if (pads.size() != 2 * rank)
    throw GraphError{what + " has " + std::to_string(pads.size()) + " pads for rank " + std::to_string(rank)};
  if (std::all_of(pads.begin(), pads.end(), [](int64_t p) { return p == 0; })) return x;
  if (mode != "constant") throw GraphError{what + " pads in mode '" + mode + "' (only constant is supported)"};
  Dims od = xd;
  int64_t offset = 0;
  for (size_t k = 0; k < rank; ++k) {
    if (pads[k] < 0 || pads[k + rank] < 0 || pads[k] > (1 << 20) || pads[k + rank] > (1 << 20))
      throw GraphError{what + " has a negative pad or one above 2^20 (unsupported)"};
    od[k] += pads[k] + pads[k + rank];
  }
  const Dims os = PlainStrides(od);
  for (size_t k = 0; k < rank; ++k) offset += pads[k] * os[k];
  memory in = Plain(x);
  memory out = NewMemory(PlainDesc(od));
  const int64_t total = Count(od);
  AddCustom({{DNNL_ARG_SRC, in}, {DNNL_ARG_DST, out}}, [xd, os, offset, total, value](const Args& args) {
    float* dst = Dst(args);
    std::fill(dst, dst + total, value);
    // Row by row of the input into the padded rows.
    const float* src = Src(args, DNNL_ARG_SRC);
    const size_t r = xd.size();
    const int64_t inner = xd.back(), rows = Count(xd) / std::max<int64_t>(inner, 1);
    Dims index(r, 0);
    for (int64_t row = 0; row < rows; ++row, src += inner) {
      int64_t at = offset;
      for (size_t k = 0; k + 1 < r; ++k) at += index[k] * os[k];
      std::copy_n(src, inner, dst + at);
      for (size_t k = r - 1; k-- > 0;) {
        if (++index[k] < xd[k]) break;
        index[k] = 0;
      }
    }
  });
  return out;
}

// MatMul: by a known [K, N] matrix, a Dense layer over every row of K values; of two
// computed tensors [..., M, K] x [..., K, N] (the same leading dimensions), a loop.
memory CompiledGraph::CompileMatMul(Compilation& g, const onnx::Node& n) {
  const std::string what = "MatMul node '" + n.name + "'";
  if (g.IsConstant(n, 0)) throw GraphError{what + " has a constant first operand (unsupported)"};
  memory a = Plain(g.InputOf(n, 0).mem);
  const Dims ad = a.get_desc().dims();
  if (ad.size() < 2) throw GraphError{what + " multiplies a tensor of rank " + std::to_string(ad.size())};
  const int64_t k = ad.back(), rows = Count(ad) / std::max<int64_t>(k, 1);
  if (g.IsConstant(n, 1)) {
    const onnx::FloatTensor& w = *g.Weight(n, 1);
    if (w.dims.size() != 2 || w.dims[0] != k)
      throw GraphError{what + " multiplies " + DimsText(ad) + " by a constant of shape " + DimsText(w.dims) + " (a [" +
                       std::to_string(k) + ", N] matrix is supported)"};
    const int64_t outs = w.dims[1];
    std::vector<float> wt(outs * k);
    for (int64_t o = 0; o < outs; ++o)
      for (int64_t i = 0; i < k; ++i) wt[o * k + i] = w.data[i * outs + o];
    auto dense = std::make_shared<const Dense>(k, outs, wt, std::vector<float>(outs, 0.f), false);
    Dims od = ad;
    od.back() = outs;
    memory out = NewMemory(PlainDesc(od));
    AddCustom({{DNNL_ARG_SRC, a}, {DNNL_ARG_DST, out}},
              [dense, rows](const Args& args) { dense->Run(Src(args, DNNL_ARG_SRC), rows, Dst(args)); });
    return out;
  }
  memory b = Plain(g.InputOf(n, 1).mem);
  const Dims bd = b.get_desc().dims();
  if (bd.size() != ad.size() || bd[bd.size() - 2] != k || !std::equal(ad.begin(), ad.end() - 2, bd.begin()))
    throw GraphError{what + " multiplies " + DimsText(ad) + " by " + DimsText(bd) +
                     " (tensors of the same leading dimensions are supported)"};
  const int64_t m = ad[ad.size() - 2], cols = bd.back(), batches = rows / std::max<int64_t>(m, 1);
  Dims od = ad;
  od.back() = cols;
  memory out = NewMemory(PlainDesc(od));
  AddCustom({{DNNL_ARG_SRC_0, a}, {DNNL_ARG_SRC_1, b}, {DNNL_ARG_DST, out}}, [=](const Args& args) {
    const float *x = Src(args, DNNL_ARG_SRC_0), *y = Src(args, DNNL_ARG_SRC_1);
    float* z = Dst(args);
    for (int64_t p = 0; p < batches; ++p, x += m * k, y += k * cols, z += m * cols)
      for (int64_t r = 0; r < m; ++r) {
        float* row = z + r * cols;
        std::fill(row, row + cols, 0.f);
        for (int64_t i = 0; i < k; ++i) {
          const float xv = x[r * k + i];
          const float* yr = y + i * cols;
          for (int64_t c = 0; c < cols; ++c) row[c] += xv * yr[c];
        }
      }
  });
  return out;
}

// Softmax along one axis (from opset 13; before, over everything from `axis` on).
memory CompiledGraph::CompileSoftmax(Compilation& g, const onnx::Node& n) {
  memory x = Plain(g.InputOf(n, 0).mem);
  const Dims xd = x.get_desc().dims();
  const bool v13 = g.model.opset >= 13 || g.model.opset == 0;
  const int64_t axis = AxisOf(n, n.Int("axis", v13 ? -1 : 1), xd.size());
  int64_t len = xd[axis], inner = 1;
  for (size_t k = axis + 1; k < xd.size(); ++k) (v13 ? inner : len) *= xd[k];
  const int64_t outer = Count(xd) / std::max<int64_t>(len * inner, 1);
  memory out = NewMemory(PlainDesc(xd));
  AddCustom({{DNNL_ARG_SRC, x}, {DNNL_ARG_DST, out}}, [=](const Args& args) {
    const float* src = Src(args, DNNL_ARG_SRC);
    float* dst = Dst(args);
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t i = 0; i < inner; ++i) {
        const float* s = src + o * len * inner + i;
        float* d = dst + o * len * inner + i;
        float top = s[0];
        for (int64_t l = 1; l < len; ++l) top = std::max(top, s[l * inner]);
        float sum = 0;
        for (int64_t l = 0; l < len; ++l) sum += d[l * inner] = std::exp(s[l * inner] - top);
        for (int64_t l = 0; l < len; ++l) d[l * inner] /= sum;
      }
  });
  return out;
}

// ReduceMean over the `axes` attribute (every axis without it), keepdims or not.
memory CompiledGraph::CompileReduceMean(Compilation& g, const onnx::Node& n) {
  memory x = Plain(g.InputOf(n, 0).mem);
  const Dims xd = x.get_desc().dims();
  const size_t rank = xd.size();
  std::vector<int64_t> axes = n.Ints("axes");
  if (n.inputs.size() > 1 && !n.inputs[1].empty())
    for (float v : g.Weight(n, 1)->data) axes.push_back(static_cast<int64_t>(v));
  std::vector<bool> reduced(rank, axes.empty() && n.Int("noop_with_empty_axes", 0) == 0);
  for (int64_t a : axes) reduced[AxisOf(n, a, rank)] = true;
  if (reduced[0]) throw GraphError{"ReduceMean node '" + n.name + "' reduces the batch axis (unsupported)"};
  Dims kept, od;
  int64_t count = 1;
  for (size_t k = 0; k < rank; ++k) {
    kept.push_back(reduced[k] ? 1 : xd[k]);
    if (reduced[k]) count *= xd[k];
    if (!reduced[k] || n.Int("keepdims", 1) != 0) od.push_back(reduced[k] ? 1 : xd[k]);
  }
  // Each input value's output offset: the kept axes' plain strides, 0 on reduced ones.
  Dims to = PlainStrides(kept);
  for (size_t k = 0; k < rank; ++k)
    if (reduced[k]) to[k] = 0;
  const int64_t outs = Count(kept), total = Count(xd), inner = xd.back();
  memory out = NewMemory(PlainDesc(od));
  AddCustom({{DNNL_ARG_SRC, x}, {DNNL_ARG_DST, out}}, [=](const Args& args) {
    const float* src = Src(args, DNNL_ARG_SRC);
    float* dst = Dst(args);
    std::vector<double> sum(outs, 0.0);
    Dims index(rank, 0);
    for (int64_t at = 0; at < total; at += inner) {
      int64_t o = 0;
      for (size_t k = 0; k + 1 < rank; ++k) o += index[k] * to[k];
      if (to[rank - 1] == 0) {
        double s = 0;
        for (int64_t i = 0; i < inner; ++i) s += src[at + i];
        sum[o] += s;
      } else {
        for (int64_t i = 0; i < inner; ++i) sum[o + i] += src[at + i];
      }
      for (size_t k = rank - 1; k-- > 0;) {
        if (++index[k] < xd[k]) break;
        index[k] = 0;
      }
    }
    for (int64_t o = 0; o < outs; ++o) dst[o] = static_cast<float>(sum[o] / count);
  });
  return out;
}

// LayerNormalization (opset 17) over the axes from `axis` on, with known scale and bias.
memory CompiledGraph::CompileLayerNorm(Compilation& g, const onnx::Node& n) {
  const std::string what = "LayerNormalization node '" + n.name + "'";
  memory x = Plain(g.InputOf(n, 0).mem);
  const Dims xd = x.get_desc().dims();
  const int64_t axis = AxisOf(n, n.Int("axis", -1), xd.size());
  if (axis == 0) throw GraphError{what + " normalises over the batch axis (unsupported)"};
  int64_t inner = 1;
  for (size_t k = axis; k < xd.size(); ++k) inner *= xd[k];
  if (n.outputs.size() > 1 && (!n.outputs[1].empty() || (n.outputs.size() > 2 && !n.outputs[2].empty())))
    throw GraphError{what + " outputs its mean or inverse deviation (unsupported)"};
  const onnx::FloatTensor* scale = g.Weight(n, 1);
  const onnx::FloatTensor* bias = g.Weight(n, 2);
  if (!scale || scale->size() != inner || (bias && bias->size() != inner))
    throw GraphError{what + " has a scale or bias of other than " + std::to_string(inner) + " values"};
  std::vector<float> s = scale->data, b = bias ? bias->data : std::vector<float>(inner, 0.f);
  const float eps = n.Float("epsilon", 1e-5f);
  const int64_t rows = Count(xd) / inner;
  memory out = NewMemory(PlainDesc(xd));
  AddCustom({{DNNL_ARG_SRC, x}, {DNNL_ARG_DST, out}}, [=](const Args& args) {
    const float* src = Src(args, DNNL_ARG_SRC);
    float* dst = Dst(args);
    for (int64_t r = 0; r < rows; ++r, src += inner, dst += inner) {
      double mean = 0, var = 0;
      for (int64_t i = 0; i < inner; ++i) mean += src[i];
      mean /= inner;
      for (int64_t i = 0; i < inner; ++i) var += (src[i] - mean) * (src[i] - mean);
      const float m = static_cast<float>(mean), inv = static_cast<float>(1.0 / std::sqrt(var / inner + eps));
      for (int64_t i = 0; i < inner; ++i) dst[i] = (src[i] - m) * inv * s[i] + b[i];
    }
  });
  return out;
}

// Erf (a loop), Sqrt, and Pow by a known scalar exponent (oneDNN eltwise: x * x for 2).
memory CompiledGraph::CompileMath(Compilation& g, const onnx::Node& n) {
  memory x = g.InputOf(n, 0).mem;
  using A = dnnl::algorithm;
  if (n.op_type == "Sqrt") return AddEltwise(x, A::eltwise_sqrt, 0.f, 0.f);
  if (n.op_type == "Pow") {
    if (!g.IsConstant(n, 1)) throw GraphError{"Pow node '" + n.name + "' has a computed exponent (unsupported)"};
    const float e = g.Scalar(n, 1, 1.f);
    if (e == 2.f) return AddEltwise(x, A::eltwise_square, 0.f, 0.f);
    if (e == 0.5f) return AddEltwise(x, A::eltwise_sqrt, 0.f, 0.f);
    return AddEltwise(x, A::eltwise_pow, 1.f, e);
  }
  // Erf
  memory in = Plain(x);
  memory out = NewMemory(in.get_desc());
  const int64_t total = Count(in.get_desc().dims());
  AddCustom({{DNNL_ARG_SRC, in}, {DNNL_ARG_DST, out}}, [total](const Args& args) {
    const float* src = Src(args, DNNL_ARG_SRC);
    float* dst = Dst(args);
    for (int64_t i = 0; i < total; ++i) dst[i] = std::erf(src[i]);
  });
  return out;
}

}  // namespace coe::onednn
