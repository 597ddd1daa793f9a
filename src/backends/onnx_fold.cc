// Nodes of constant inputs computed at load (backends/onnx_fold.h).
#include "backends/onnx_fold.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <numeric>

namespace coe::onnx {
namespace {

using Dims = std::vector<int64_t>;
constexpr int64_t kMaxValues = int64_t{1} << 26;

struct FoldError {
  std::string what;
};

int64_t Count(const Dims& d) {
  int64_t n = 1;
  for (int64_t x : d) {
    if (x < 0) throw FoldError{"has a negative dimension"};
    if (x != 0 && n > kMaxValues / x) throw FoldError{"computes a tensor of more than 2^26 values (unsupported)"};
    n *= x;
  }
  return n;
}

std::string DimsText(const Dims& d) {
  std::string s = "[";
  for (size_t k = 0; k < d.size(); ++k) s += (k ? ", " : "") + std::to_string(d[k]);
  return s + "]";
}

// A float holding an integer, as int64 (INT64_MAX, which torch writes for "to the end",
// arrives as 9.22e18: kept at 2^62).
int64_t AsInt(float v) {
  if (!std::isfinite(v)) throw FoldError{"takes a non-finite value as an integer"};
  constexpr double kBig = 4611686018427387904.0;  // 2^62
  const double d = std::clamp(static_cast<double>(v), -kBig, kBig);
  return static_cast<int64_t>(d);
}

Dims Ints(const FloatTensor& t) {
  Dims v;
  for (float x : t.data) v.push_back(AsInt(x));
  return v;
}

// An axis of a tensor of `rank`, negative counting from the end.
int64_t Axis(int64_t axis, int64_t rank) {
  if (axis < 0) axis += rank;
  if (axis < 0 || axis >= rank) throw FoldError{"has an axis outside its rank " + std::to_string(rank)};
  return axis;
}

FloatTensor Make(Dims dims, bool integer) {
  FloatTensor t;
  t.data.assign(Count(dims), 0.f);
  t.dims = std::move(dims);
  t.integer = integer;
  return t;
}

// Row-major strides.
Dims Strides(const Dims& d) {
  Dims s(d.size(), 1);
  for (size_t k = d.size(); k-- > 1;) s[k - 1] = s[k] * d[k];
  return s;
}

// ONNX's (numpy's) broadcast of several shapes.
Dims Broadcast(const std::vector<const FloatTensor*>& ts) {
  size_t rank = 0;
  for (const FloatTensor* t : ts) rank = std::max(rank, t->dims.size());
  Dims out(rank, 1);
  for (const FloatTensor* t : ts) {
    const size_t off = rank - t->dims.size();
    for (size_t k = 0; k < t->dims.size(); ++k) {
      const int64_t d = t->dims[k];
      if (d == out[off + k] || d == 1) continue;
      if (out[off + k] != 1) throw FoldError{"has inputs whose shapes do not broadcast"};
      out[off + k] = d;
    }
  }
  return out;
}

// f applied to the broadcast inputs, value by value.
FloatTensor Elementwise(const std::vector<const FloatTensor*>& ts, bool integer,
                        const std::function<float(const float*)>& f) {
  FloatTensor out = Make(Broadcast(ts), integer);
  const size_t rank = out.dims.size();
  std::vector<Dims> bs;  // each input's strides over the output's dimensions (0: broadcast)
  for (const FloatTensor* t : ts) {
    Dims own = Strides(t->dims), b(rank, 0);
    const size_t off = rank - t->dims.size();
    for (size_t k = 0; k < t->dims.size(); ++k)
      if (t->dims[k] != 1) b[off + k] = own[k];
    bs.push_back(std::move(b));
  }
  Dims index(rank, 0);
  std::vector<float> args(ts.size());
  for (float& v : out.data) {
    for (size_t i = 0; i < ts.size(); ++i) {
      int64_t at = 0;
      for (size_t k = 0; k < rank; ++k) at += index[k] * bs[i][k];
      args[i] = ts[i]->data[at];
    }
    v = f(args.data());
    for (size_t k = rank; k-- > 0;) {
      if (++index[k] < out.dims[k]) break;
      index[k] = 0;
    }
  }
  return out;
}

const FloatTensor& In(const std::vector<const FloatTensor*>& in, size_t k) {
  if (k >= in.size() || !in[k]) throw FoldError{"lacks input " + std::to_string(k)};
  return *in[k];
}

FloatTensor Binary(const std::string& op, const FloatTensor& a, const FloatTensor& b, const Node& n) {
  const bool integer = a.integer && b.integer;
  auto two = [&](bool out_integer, std::function<float(float, float)> f) {
    return Elementwise({&a, &b}, out_integer, [&](const float* v) { return f(v[0], v[1]); });
  };
  if (op == "Add") return two(integer, [](float x, float y) { return x + y; });
  if (op == "Sub") return two(integer, [](float x, float y) { return x - y; });
  if (op == "Mul") return two(integer, [](float x, float y) { return x * y; });
  if (op == "Div")
    return two(integer, [integer](float x, float y) {
      if (!integer) return x / y;
      if (y == 0) throw FoldError{"divides an integer by zero"};
      return std::trunc(static_cast<float>(static_cast<double>(x) / y));
    });
  if (op == "Mod") {
    const bool fmod = n.Int("fmod", 0) != 0;
    return two(integer, [fmod](float x, float y) {
      if (y == 0) throw FoldError{"takes a remainder of division by zero"};
      float r = std::fmod(x, y);
      if (!fmod && r != 0 && ((r < 0) != (y < 0))) r += y;  // the divisor's sign
      return r;
    });
  }
  if (op == "Pow") return two(a.integer, [](float x, float y) { return y == 2.f ? x * x : std::pow(x, y); });
  if (op == "Min") return two(integer, [](float x, float y) { return std::min(x, y); });
  if (op == "Max") return two(integer, [](float x, float y) { return std::max(x, y); });
  if (op == "Equal") return two(true, [](float x, float y) { return float(x == y); });
  if (op == "Less") return two(true, [](float x, float y) { return float(x < y); });
  if (op == "Greater") return two(true, [](float x, float y) { return float(x > y); });
  if (op == "LessOrEqual") return two(true, [](float x, float y) { return float(x <= y); });
  if (op == "GreaterOrEqual") return two(true, [](float x, float y) { return float(x >= y); });
  if (op == "And") return two(true, [](float x, float y) { return float(x != 0 && y != 0); });
  return two(true, [](float x, float y) { return float(x != 0 || y != 0); });  // Or
}

FloatTensor Unary(const std::string& op, const FloatTensor& a) {
  auto one = [&](bool integer, float (*f)(float)) {
    return Elementwise({&a}, integer, [f](const float* v) { return f(v[0]); });
  };
  if (op == "Neg") return one(a.integer, [](float x) { return -x; });
  if (op == "Abs") return one(a.integer, [](float x) { return std::fabs(x); });
  if (op == "Sqrt") return one(false, [](float x) { return std::sqrt(x); });
  if (op == "Floor") return one(a.integer, [](float x) { return std::floor(x); });
  if (op == "Ceil") return one(a.integer, [](float x) { return std::ceil(x); });
  if (op == "Reciprocal") return one(false, [](float x) { return 1.f / x; });
  if (op == "Exp") return one(false, [](float x) { return std::exp(x); });
  if (op == "Log") return one(false, [](float x) { return std::log(x); });
  return one(true, [](float x) { return float(x == 0); });  // Not
}

FloatTensor Cast(const Node& n, const FloatTensor& a) {
  const int64_t to = n.Int("to", 1);
  const bool to_float = to == 1 || to == 10 || to == 11 || to == 16;
  if (to_float) return Elementwise({&a}, false, [](const float* v) { return v[0]; });
  if (to == 9) return Elementwise({&a}, true, [](const float* v) { return float(v[0] != 0); });
  return Elementwise({&a}, true, [](const float* v) { return std::trunc(v[0]); });
}

// Copies a row-major tensor into `out` through a map from each output index to an input
// offset (Gather, Slice, Transpose, Expand).
FloatTensor Remap(const FloatTensor& a, Dims dims, const std::function<int64_t(const Dims&)>& offset) {
  FloatTensor out = Make(std::move(dims), a.integer);
  Dims index(out.dims.size(), 0);
  for (float& v : out.data) {
    v = a.data[offset(index)];
    for (size_t k = index.size(); k-- > 0;) {
      if (++index[k] < out.dims[k]) break;
      index[k] = 0;
    }
  }
  return out;
}

FloatTensor Gather(const Node& n, const FloatTensor& data, const FloatTensor& indices) {
  const int64_t rank = static_cast<int64_t>(data.dims.size());
  const int64_t axis = Axis(n.Int("axis", 0), rank);
  Dims ind = Ints(indices);
  for (int64_t& i : ind) {
    if (i < 0) i += data.dims[axis];
    if (i < 0 || i >= data.dims[axis]) throw FoldError{"gathers an index outside its axis"};
  }
  Dims dims(data.dims.begin(), data.dims.begin() + axis);
  dims.insert(dims.end(), indices.dims.begin(), indices.dims.end());
  dims.insert(dims.end(), data.dims.begin() + axis + 1, data.dims.end());
  const Dims s = Strides(data.dims), is = Strides(indices.dims);
  const int64_t q = static_cast<int64_t>(indices.dims.size());
  return Remap(data, dims, [&](const Dims& o) {
    int64_t at = 0, flat = 0;
    for (int64_t k = 0; k < axis; ++k) at += o[k] * s[k];
    for (int64_t k = 0; k < q; ++k) flat += o[axis + k] * is[k];
    at += ind[flat] * s[axis];
    for (int64_t k = axis + 1; k < rank; ++k) at += o[k + q - 1] * s[k];
    return at;
  });
}

// Unsqueeze's and Squeeze's axes: an input from opset 13, an attribute before.
Dims AxesOf(const Node& n, const std::vector<const FloatTensor*>& in, int64_t opset) {
  if (opset >= 13) return in.size() > 1 && in[1] ? Ints(*in[1]) : Dims{};
  return n.Ints("axes");
}

FloatTensor Reshaped(const FloatTensor& a, Dims dims) {
  FloatTensor out = a;  // (CompileReshape passes a tensor of no values: only its dims matter)
  if (Count(dims) != Count(a.dims)) throw FoldError{"reshapes " + DimsText(a.dims) + " into " + DimsText(dims)};
  out.dims = std::move(dims);
  return out;
}

FloatTensor Slice(const Node& n, const std::vector<const FloatTensor*>& in, int64_t opset) {
  const FloatTensor& a = In(in, 0);
  const int64_t rank = static_cast<int64_t>(a.dims.size());
  Dims starts, ends, axes, steps;
  if (opset >= 10) {
    starts = Ints(In(in, 1));
    ends = Ints(In(in, 2));
    if (in.size() > 3 && in[3]) axes = Ints(*in[3]);
    if (in.size() > 4 && in[4]) steps = Ints(*in[4]);
  } else {
    starts = n.Ints("starts");
    ends = n.Ints("ends");
    axes = n.Ints("axes");
  }
  if (axes.empty())
    for (size_t k = 0; k < starts.size(); ++k) axes.push_back(static_cast<int64_t>(k));
  if (steps.empty()) steps.assign(starts.size(), 1);
  if (ends.size() != starts.size() || axes.size() != starts.size() || steps.size() != starts.size())
    throw FoldError{"has starts, ends, axes and steps of different lengths"};
  Dims first(rank, 0), step(rank, 1), dims = a.dims;
  for (size_t k = 0; k < starts.size(); ++k) {
    const int64_t ax = Axis(axes[k], rank), d = a.dims[ax], st = steps[k];
    if (st == 0) throw FoldError{"has a step of 0"};
    int64_t b = starts[k] < 0 ? starts[k] + d : starts[k], e = ends[k] < 0 ? ends[k] + d : ends[k];
    if (st > 0) {
      b = std::clamp<int64_t>(b, 0, d);
      e = std::clamp<int64_t>(e, 0, d);
      dims[ax] = e > b ? (e - b + st - 1) / st : 0;
    } else {
      b = std::clamp<int64_t>(b, 0, d - 1);
      e = std::clamp<int64_t>(e, -1, d - 1);
      dims[ax] = b > e ? (b - e - st - 1) / -st : 0;
    }
    first[ax] = b;
    step[ax] = st;
  }
  const Dims s = Strides(a.dims);
  return Remap(a, dims, [&](const Dims& o) {
    int64_t at = 0;
    for (int64_t k = 0; k < rank; ++k) at += (first[k] + o[k] * step[k]) * s[k];
    return at;
  });
}

FloatTensor Transpose(const Node& n, const FloatTensor& a) {
  const int64_t rank = static_cast<int64_t>(a.dims.size());
  Dims perm = n.Ints("perm");
  if (perm.empty())
    for (int64_t k = rank; k-- > 0;) perm.push_back(k);
  if (static_cast<int64_t>(perm.size()) != rank) throw FoldError{"has a perm of another rank"};
  Dims dims(rank), sorted = perm;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t k = 0; k < rank; ++k) {
    if (sorted[k] != k) throw FoldError{"has a perm that is not a permutation"};
    dims[k] = a.dims[perm[k]];
  }
  const Dims s = Strides(a.dims);
  return Remap(a, dims, [&](const Dims& o) {
    int64_t at = 0;
    for (int64_t k = 0; k < rank; ++k) at += o[k] * s[perm[k]];
    return at;
  });
}

FloatTensor Concat(const Node& n, const std::vector<const FloatTensor*>& in) {
  const FloatTensor& first = In(in, 0);
  const int64_t rank = static_cast<int64_t>(first.dims.size());
  const int64_t axis = Axis(n.Int("axis", 0), rank);
  Dims dims = first.dims;
  dims[axis] = 0;
  for (size_t i = 0; i < in.size(); ++i) {
    const FloatTensor& t = In(in, i);
    for (int64_t k = 0; k < rank; ++k)
      if (t.dims.size() != first.dims.size() || (k != axis && t.dims[k] != first.dims[k]))
        throw FoldError{"joins " + DimsText(first.dims) + " and " + DimsText(t.dims)};
    dims[axis] += t.dims[axis];
  }
  FloatTensor out = Make(dims, first.integer);
  int64_t outer = 1;
  for (int64_t k = 0; k < axis; ++k) outer *= dims[k];
  float* o = out.data.data();
  for (int64_t r = 0; r < outer; ++r)
    for (const FloatTensor* t : in) {
      const int64_t block = static_cast<int64_t>(t->data.size()) / std::max<int64_t>(outer, 1);
      o = std::copy_n(t->data.begin() + r * block, block, o);
    }
  return out;
}

FloatTensor Reshape(const Node& n, const FloatTensor& a, const FloatTensor& shape) {
  Dims dims = Ints(shape);
  const bool allowzero = n.Int("allowzero", 0) != 0;
  int64_t known = 1, infer = -1;
  for (size_t k = 0; k < dims.size(); ++k) {
    if (dims[k] == 0 && !allowzero) {
      if (k >= a.dims.size()) throw FoldError{"copies a dimension its input lacks"};
      dims[k] = a.dims[k];
    }
    if (dims[k] == -1) {
      if (infer >= 0) throw FoldError{"has two dimensions of -1"};
      infer = static_cast<int64_t>(k);
    } else {
      known *= dims[k];
    }
  }
  if (infer >= 0) {
    if (known == 0 || Count(a.dims) % known != 0)
      throw FoldError{"cannot infer the -1 of " + DimsText(Ints(shape)) + " for " + DimsText(a.dims)};
    dims[infer] = Count(a.dims) / known;
  }
  return Reshaped(a, dims);
}

FloatTensor ScatterND(const Node& n, const FloatTensor& data, const FloatTensor& indices, const FloatTensor& updates) {
  if (n.Find("reduction") && n.Find("reduction")->s != "none") throw FoldError{"reduces (unsupported)"};
  if (indices.dims.empty()) throw FoldError{"has scalar indices"};
  const int64_t k = indices.dims.back(), rank = static_cast<int64_t>(data.dims.size());
  if (k > rank) throw FoldError{"indexes more dimensions than its data has"};
  const Dims s = Strides(data.dims);
  int64_t slice = 1;
  for (int64_t d = k; d < rank; ++d) slice *= data.dims[d];
  const int64_t count = static_cast<int64_t>(indices.data.size()) / std::max<int64_t>(k, 1);
  if (static_cast<int64_t>(updates.data.size()) != count * slice) throw FoldError{"has updates of another size"};
  FloatTensor out = data;
  const Dims ind = Ints(indices);
  for (int64_t u = 0; u < count; ++u) {
    int64_t at = 0;
    for (int64_t d = 0; d < k; ++d) {
      int64_t i = ind[u * k + d];
      if (i < 0) i += data.dims[d];
      if (i < 0 || i >= data.dims[d]) throw FoldError{"scatters to an index outside its data"};
      at += i * s[d];
    }
    std::copy_n(updates.data.begin() + u * slice, slice, out.data.begin() + at);
  }
  return out;
}

std::vector<FloatTensor> Split(const Node& n, const std::vector<const FloatTensor*>& in, int64_t opset) {
  const FloatTensor& a = In(in, 0);
  const int64_t rank = static_cast<int64_t>(a.dims.size());
  const int64_t axis = Axis(n.Int("axis", 0), rank), outs = static_cast<int64_t>(n.outputs.size());
  Dims split = opset >= 13 ? (in.size() > 1 && in[1] ? Ints(*in[1]) : Dims{}) : n.Ints("split");
  if (split.empty()) {
    if (outs == 0 || a.dims[axis] % outs != 0) throw FoldError{"splits its axis unevenly"};
    split.assign(outs, a.dims[axis] / outs);
  }
  if (static_cast<int64_t>(split.size()) != outs ||
      std::accumulate(split.begin(), split.end(), int64_t{0}) != a.dims[axis])
    throw FoldError{"has a split that does not add up to its axis"};
  std::vector<FloatTensor> result;
  int64_t begin = 0;
  for (int64_t part : split) {
    Node slice;
    slice.op_type = "Slice";
    FloatTensor starts{{1}, {float(begin)}, true}, ends{{1}, {float(begin + part)}, true}, ax{{1}, {float(axis)}, true};
    result.push_back(Slice(slice, {&a, &starts, &ends, &ax}, 13));
    begin += part;
  }
  return result;
}

FloatTensor Unsqueeze(const FloatTensor& a, Dims axes) {
  const int64_t rank = static_cast<int64_t>(a.dims.size() + axes.size());
  for (int64_t& x : axes) x = Axis(x, rank);
  std::sort(axes.begin(), axes.end());
  Dims dims = a.dims;
  for (int64_t x : axes) dims.insert(dims.begin() + std::min<int64_t>(x, dims.size()), 1);
  return Reshaped(a, dims);
}

FloatTensor Squeeze(const FloatTensor& a, Dims axes) {
  const int64_t rank = static_cast<int64_t>(a.dims.size());
  for (int64_t& x : axes) x = Axis(x, rank);
  Dims dims;
  for (int64_t k = 0; k < rank; ++k) {
    const bool named = std::find(axes.begin(), axes.end(), k) != axes.end();
    if (named && a.dims[k] != 1) throw FoldError{"squeezes an axis of size " + std::to_string(a.dims[k])};
    if (!(named || (axes.empty() && a.dims[k] == 1))) dims.push_back(a.dims[k]);
  }
  return Reshaped(a, dims);
}

std::vector<FloatTensor> FoldNode(const Node& n, const std::vector<const FloatTensor*>& in, int64_t opset) {
  const std::string& op = n.op_type;
  if (op == "Identity" || op == "Dropout") return {In(in, 0)};
  if (op == "Shape") return {ShapeOf(n, In(in, 0).dims)};
  if (op == "Size") return {FloatTensor{{}, {float(In(in, 0).data.size())}, true}};
  if (op == "Cast") return {Cast(n, In(in, 0))};
  if (op == "Neg" || op == "Abs" || op == "Sqrt" || op == "Floor" || op == "Ceil" || op == "Reciprocal" ||
      op == "Exp" || op == "Log" || op == "Not")
    return {Unary(op, In(in, 0))};
  if (op == "Where") {
    const FloatTensor &c = In(in, 0), &x = In(in, 1), &y = In(in, 2);
    return {Elementwise({&c, &x, &y}, x.integer, [](const float* v) { return v[0] != 0 ? v[1] : v[2]; })};
  }
  if (op == "Gather") return {Gather(n, In(in, 0), In(in, 1))};
  if (op == "Unsqueeze") return {Unsqueeze(In(in, 0), AxesOf(n, in, opset))};
  if (op == "Squeeze") return {Squeeze(In(in, 0), AxesOf(n, in, opset))};
  if (op == "Concat") return {Concat(n, in)};
  if (op == "Slice") return {Slice(n, in, opset)};
  if (op == "Reshape") return {Reshape(n, In(in, 0), In(in, 1))};
  if (op == "Flatten") {
    const FloatTensor& a = In(in, 0);
    const int64_t axis = n.Int("axis", 1) < 0 ? n.Int("axis", 1) + int64_t(a.dims.size()) : n.Int("axis", 1);
    if (axis < 0 || axis > static_cast<int64_t>(a.dims.size())) throw FoldError{"has an axis outside its rank"};
    const int64_t outer = Count(Dims(a.dims.begin(), a.dims.begin() + axis));
    return {Reshaped(a, {outer, outer ? Count(a.dims) / outer : 0})};
  }
  if (op == "Transpose") return {Transpose(n, In(in, 0))};
  if (op == "Expand") {
    const FloatTensor& a = In(in, 0);
    FloatTensor shape = Make(Ints(In(in, 1)), false);  // a tensor of the target shape, to broadcast with
    return {Elementwise({&a, &shape}, a.integer, [](const float* v) { return v[0]; })};
  }
  if (op == "ConstantOfShape") {
    const Attribute* value = n.Find("value");
    FloatTensor out = Make(Ints(In(in, 0)), value && value->has_tensor ? value->t.integer : false);
    if (value && value->has_tensor) {
      if (value->t.data.size() != 1) throw FoldError{"has a value of other than one element"};
      std::fill(out.data.begin(), out.data.end(), value->t.data[0]);
    }
    return {out};
  }
  if (op == "Range") {
    const FloatTensor &s = In(in, 0), &l = In(in, 1), &d = In(in, 2);
    if (s.data.size() != 1 || l.data.size() != 1 || d.data.size() != 1 || d.data[0] == 0)
      throw FoldError{"takes other than three scalars, or a delta of 0"};
    const double count = std::ceil((double(l.data[0]) - s.data[0]) / d.data[0]);
    FloatTensor out =
        Make({std::max<int64_t>(0, static_cast<int64_t>(std::min(count, double(kMaxValues) + 1)))}, s.integer);
    for (size_t k = 0; k < out.data.size(); ++k) out.data[k] = s.data[0] + float(k) * d.data[0];
    return {out};
  }
  if (op == "ScatterND") return {ScatterND(n, In(in, 0), In(in, 1), In(in, 2))};
  if (op == "Split") return Split(n, in, opset);
  return {Binary(op, In(in, 0), In(in, 1), n)};
}

const char* const kFolded[] = {"Identity",
                               "Dropout",
                               "Shape",
                               "Size",
                               "Cast",
                               "Neg",
                               "Abs",
                               "Sqrt",
                               "Floor",
                               "Ceil",
                               "Reciprocal",
                               "Exp",
                               "Log",
                               "Not",
                               "Where",
                               "Gather",
                               "Unsqueeze",
                               "Squeeze",
                               "Concat",
                               "Slice",
                               "Reshape",
                               "Flatten",
                               "Transpose",
                               "Expand",
                               "ConstantOfShape",
                               "Range",
                               "ScatterND",
                               "Split",
                               "Add",
                               "Sub",
                               "Mul",
                               "Div",
                               "Mod",
                               "Pow",
                               "Min",
                               "Max",
                               "Equal",
                               "Less",
                               "Greater",
                               "LessOrEqual",
                               "GreaterOrEqual",
                               "And",
                               "Or"};

}  // namespace

bool Folds(const std::string& op_type) {
  return std::find(std::begin(kFolded), std::end(kFolded), op_type) != std::end(kFolded);
}

FloatTensor ShapeOf(const Node& n, const std::vector<int64_t>& dims) {
  const int64_t rank = static_cast<int64_t>(dims.size());
  int64_t start = n.Int("start", 0), end = n.Int("end", rank);
  if (start < 0) start += rank;
  if (end < 0) end += rank;
  start = std::clamp<int64_t>(start, 0, rank);
  end = std::clamp<int64_t>(end, start, rank);
  FloatTensor t{{end - start}, {}, true};
  for (int64_t k = start; k < end; ++k) t.data.push_back(static_cast<float>(dims[k]));
  return t;
}

StatusOr<std::vector<FloatTensor>> Fold(const Node& n, const std::vector<const FloatTensor*>& inputs, int64_t opset) {
  try {
    if (!Folds(n.op_type)) throw FoldError{"is not an operator computed at load"};
    std::vector<FloatTensor> out = FoldNode(n, inputs, opset);
    if (out.size() < n.outputs.size()) throw FoldError{"has more outputs than its operator computes"};
    return out;
  } catch (const FoldError& e) {
    return InvalidArgumentError(n.op_type + " node '" + n.name + "' " + e.what);
  } catch (const std::bad_alloc&) {
    return ResourceExhaustedError(n.op_type + " node '" + n.name + "': out of memory computing it at load");
  }
}

}  // namespace coe::onnx
