#include "backends/onnx_model.h"

#include <bit>
#include <cstring>
#include <fstream>
#include <sstream>

namespace coe::onnx {
namespace {

// Field numbers of onnx.proto3 this reader keeps.
enum : uint32_t {
  kModelIrVersion = 1,
  kModelGraph = 7,
  kModelOpset = 8,  // ModelProto
  kOpsetDomain = 1,
  kOpsetVersion = 2,  // OperatorSetIdProto
  kGraphNode = 1,
  kGraphInitializer = 5,
  kGraphInput = 11,
  kGraphOutput = 12,  // GraphProto
  kNodeInput = 1,
  kNodeOutput = 2,
  kNodeName = 3,
  kNodeOpType = 4,
  kNodeAttribute = 5,
  kNodeDomain = 7,
  kAttrName = 1,
  kAttrF = 2,
  kAttrI = 3,
  kAttrS = 4,
  kAttrT = 5,
  kAttrFloats = 7,
  kAttrInts = 8,
  kTensorDims = 1,
  kTensorDataType = 2,
  kTensorFloatData = 4,
  kTensorInt32Data = 5,
  kTensorInt64Data = 7,
  kTensorName = 8,
  kTensorRawData = 9,
  kTensorDoubleData = 10,
  kTensorDataLocation = 14,
  kValueInfoName = 1,
  kValueInfoType = 2,
  kTypeTensor = 1,  // TypeProto
  kTensorTypeShape = 2,
  kShapeDim = 1,  // TensorShapeProto
  kDimValue = 1,
};
// TensorProto.DataType: the ones read (as floats), and the names of the others.
enum : int64_t { kFloat = 1, kUint8 = 2, kInt8 = 3, kInt32 = 6, kInt64 = 7, kBool = 9, kDouble = 11 };

// A valid ONNX tensor of a type coe does not read: FailedPrecondition (not a malformed
// file), naming the type.
Status UnreadType(const std::string& name, int64_t type) {
  static const char* const kNames[] = {"undefined", "float",  "uint8",     "int8",       "uint16",  "int16",
                                       "int32",     "int64",  "string",    "bool",       "float16", "double",
                                       "uint32",    "uint64", "complex64", "complex128", "bfloat16"};
  const std::string what = type >= 0 && type < 17 ? std::string(" (") + kNames[type] + ")" : "";
  return FailedPreconditionError("tensor '" + name + "' has data type " + std::to_string(type) + what +
                                 ", which coe does not read (it reads float, double, int8/16/32/64, uint8 and bool)");
}

bool IntegerType(int64_t t) { return t == kUint8 || t == kInt8 || t == kInt32 || t == kInt64 || t == kBool || t == 5; }
enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kBytes = 2, kFixed32 = 5 };

// One protobuf message being read; every read is bounds-checked and a failure sticks.
class Reader {
 public:
  explicit Reader(std::string_view bytes) : p_(bytes.data()), end_(bytes.data() + bytes.size()) {}

  bool done() const { return p_ == end_ || !error_.empty(); }
  const std::string& error() const { return error_; }

  // The next field's number and wire type; false at the end or on an error.
  bool Next(uint32_t* field, WireType* type) {
    if (done()) return false;
    uint64_t key;
    if (!Varint(&key)) return false;
    *field = static_cast<uint32_t>(key >> 3);
    *type = static_cast<WireType>(key & 7);
    if (*field == 0) return Fail("field number 0");
    if (*type != kVarint && *type != kFixed64 && *type != kBytes && *type != kFixed32)
      return Fail("unsupported wire type " + std::to_string(key & 7));
    return true;
  }
  bool Varint(uint64_t* v) {
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p_ == end_) return Fail("truncated varint");
      const uint8_t b = static_cast<uint8_t>(*p_++);
      *v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return true;
    }
    return Fail("varint longer than 10 bytes");
  }
  bool Bytes(std::string_view* out) {
    uint64_t n;
    if (!Varint(&n)) return false;
    if (n > static_cast<uint64_t>(end_ - p_))
      return Fail("a field of " + std::to_string(n) + " bytes runs past the end");
    *out = std::string_view(p_, n);
    p_ += n;
    return true;
  }
  bool Fixed32(uint32_t* v) { return Fixed(v, 4); }
  bool Fixed64(uint64_t* v) { return Fixed(v, 8); }
  // Skips a field of `type`.
  bool Skip(WireType type) {
    uint64_t u64;
    uint32_t u32;
    std::string_view bytes;
    switch (type) {
      case kVarint:
        return Varint(&u64);
      case kFixed64:
        return Fixed64(&u64);
      case kFixed32:
        return Fixed32(&u32);
      case kBytes:
        return Bytes(&bytes);
    }
    return Fail("bad wire type");
  }
  // An int64 field (varint), as ONNX writes them.
  bool Int(WireType type, int64_t* v) {
    uint64_t u;
    if (type != kVarint) return Fail("an integer field is not a varint");
    if (!Varint(&u)) return false;
    *v = static_cast<int64_t>(u);
    return true;
  }
  bool String(WireType type, std::string* s) {
    std::string_view b;
    if (type != kBytes) return Fail("a string field is not length-delimited");
    if (!Bytes(&b)) return false;
    s->assign(b);
    return true;
  }
  // A repeated int64 field: packed (one length-delimited run) or one varint at a time.
  bool Ints(WireType type, std::vector<int64_t>* out) {
    if (type == kVarint) {
      int64_t v;
      if (!Int(type, &v)) return false;
      out->push_back(v);
      return true;
    }
    std::string_view run;
    if (type != kBytes || !Bytes(&run)) return Fail("a repeated integer field is malformed");
    Reader r(run);
    while (!r.done()) {
      uint64_t u;
      if (!r.Varint(&u)) return Fail(r.error());
      out->push_back(static_cast<int64_t>(u));
    }
    return true;
  }
  // A repeated float or double field: packed, or one fixed32 (fixed64) at a time.
  template <typename T>
  bool Repeated(WireType type, std::vector<T>* out) {
    static_assert(sizeof(T) == 4 || sizeof(T) == 8);
    if (type == (sizeof(T) == 4 ? kFixed32 : kFixed64)) {
      T v;
      if (!Fixed(&v, sizeof(T))) return false;
      out->push_back(v);
      return true;
    }
    std::string_view run;
    if (type != kBytes || !Bytes(&run) || run.size() % sizeof(T) != 0)
      return Fail(sizeof(T) == 4 ? "a repeated float field is malformed" : "a repeated double field is malformed");
    const size_t at = out->size();
    out->resize(at + run.size() / sizeof(T));
    std::memcpy(out->data() + at, run.data(), run.size());
    return true;
  }
  bool Fail(std::string why) {
    if (error_.empty()) error_ = std::move(why);
    p_ = end_;
    return false;
  }

 private:
  template <typename T>
  bool Fixed(T* v, size_t n) {
    if (static_cast<size_t>(end_ - p_) < n) return Fail("truncated fixed-width field");
    std::memcpy(v, p_, n);  // protobuf is little-endian, as is every machine coe runs on
    p_ += n;
    return true;
  }

  const char* p_;
  const char* end_;
  std::string error_;
};

// Reads the length-delimited field just announced as a sub-message and hands it to `parse`.
template <typename Fn>
Status Sub(Reader& r, WireType type, const char* what, Fn parse) {
  std::string_view body;
  if (type != kBytes || !r.Bytes(&body))
    return InvalidArgumentError(std::string(what) + " is malformed" +
                                (r.error().empty() ? std::string() : " (" + r.error() + ")"));
  Reader sub(body);
  COE_RETURN_IF_ERROR(parse(sub));
  if (!sub.error().empty()) return InvalidArgumentError(std::string(what) + ": " + sub.error());
  return Status::Ok();
}

Status ParseTensor(Reader& r, FloatTensor* t, std::string* name) {
  int64_t data_type = 0, location = 0;
  std::vector<int64_t> ints;
  std::vector<double> doubles;
  std::string_view raw;
  bool has_raw = false;
  uint32_t field;
  WireType type;
  while (r.Next(&field, &type)) {
    switch (field) {
      case kTensorDims:
        r.Ints(type, &t->dims);
        break;
      case kTensorDataType:
        r.Int(type, &data_type);
        break;
      case kTensorFloatData:
        r.Repeated(type, &t->data);
        break;
      case kTensorInt32Data:
      case kTensorInt64Data:
        r.Ints(type, &ints);
        break;
      case kTensorDoubleData:
        r.Repeated(type, &doubles);
        break;
      case kTensorName:
        r.String(type, name);
        break;
      case kTensorRawData:
        if (type != kBytes || !r.Bytes(&raw)) r.Fail("raw_data is malformed");
        has_raw = true;
        break;
      case kTensorDataLocation:
        r.Int(type, &location);
        break;
      default:
        r.Skip(type);
    }
  }
  if (!r.error().empty()) return InvalidArgumentError("tensor '" + *name + "': " + r.error());
  t->integer = IntegerType(data_type);
  if (location != 0)
    return InvalidArgumentError("tensor '" + *name + "' keeps its data in an external file (unsupported)");
  // The element count, checked at every factor: dims of 2^32 x 2^32 must not wrap to 0.
  int64_t n = 1;
  for (int64_t d : t->dims) {
    if (d < 0 || d > (int64_t{1} << 31))
      return InvalidArgumentError("tensor '" + *name + "' has a dimension of " + std::to_string(d));
    if (d != 0 && n > (int64_t{1} << 31) / d) return InvalidArgumentError("tensor '" + *name + "' is too large");
    n *= d;
  }
  if (has_raw) {
    const size_t width = data_type == kFloat || data_type == kInt32                        ? 4
                         : data_type == kInt64 || data_type == kDouble                     ? 8
                         : data_type == kUint8 || data_type == kInt8 || data_type == kBool ? 1
                         : data_type == 5                                                  ? 2  // int16
                                                                                           : 0;
    if (width == 0) return UnreadType(*name, data_type);
    if (raw.size() != static_cast<size_t>(n) * width)
      return InvalidArgumentError("tensor '" + *name + "' has " + std::to_string(raw.size()) + " bytes of data for " +
                                  std::to_string(n) + " values");
    t->data.resize(n);
    for (int64_t i = 0; i < n; ++i) {
      const char* at = raw.data() + i * width;
      if (data_type == kFloat) {
        std::memcpy(&t->data[i], at, 4);
      } else if (data_type == kInt32) {
        int32_t v;
        std::memcpy(&v, at, 4);
        t->data[i] = static_cast<float>(v);
      } else if (data_type == kInt64) {
        int64_t v;
        std::memcpy(&v, at, 8);
        t->data[i] = static_cast<float>(v);
      } else if (data_type == kInt8) {
        t->data[i] = static_cast<float>(static_cast<int8_t>(*at));
      } else if (data_type == kUint8 || data_type == kBool) {
        t->data[i] = static_cast<float>(static_cast<uint8_t>(*at));
      } else if (data_type == 5) {
        int16_t v;
        std::memcpy(&v, at, 2);
        t->data[i] = static_cast<float>(v);
      } else {
        double v;
        std::memcpy(&v, at, 8);
        t->data[i] = static_cast<float>(v);
      }
    }
    return Status::Ok();
  }
  if (!ints.empty()) t->data.assign(ints.begin(), ints.end());
  if (!doubles.empty()) t->data.assign(doubles.begin(), doubles.end());
  if (data_type != kFloat && data_type != kDouble && !IntegerType(data_type)) return UnreadType(*name, data_type);
  if (static_cast<int64_t>(t->data.size()) != n)
    return InvalidArgumentError("tensor '" + *name + "' has " + std::to_string(t->data.size()) +
                                " values for dims of " + std::to_string(n));
  return Status::Ok();
}

Status ParseAttribute(Reader& r, Attribute* a) {
  uint32_t field;
  WireType type;
  while (r.Next(&field, &type)) {
    switch (field) {
      case kAttrName:
        r.String(type, &a->name);
        break;
      case kAttrF: {
        uint32_t u;
        if (type != kFixed32 || !r.Fixed32(&u)) {
          r.Fail("attribute f is not a float");
          break;
        }
        a->f = std::bit_cast<float>(u);
        break;
      }
      case kAttrI:
        r.Int(type, &a->i);
        break;
      case kAttrS:
        r.String(type, &a->s);
        break;
      case kAttrT: {
        std::string ignored;
        Status s = Sub(r, type, "attribute tensor", [&](Reader& sub) { return ParseTensor(sub, &a->t, &ignored); });
        if (!s.ok()) return s.WithPrefix("attribute '" + a->name + "'");
        a->has_tensor = true;
        break;
      }
      case kAttrFloats:
        r.Repeated(type, &a->floats);
        break;
      case kAttrInts:
        r.Ints(type, &a->ints);
        break;
      default:
        r.Skip(type);
    }
  }
  return Status::Ok();
}

Status ParseNode(Reader& r, Node* n) {
  uint32_t field;
  WireType type;
  while (r.Next(&field, &type)) {
    switch (field) {
      case kNodeInput:
        r.String(type, &n->inputs.emplace_back());
        break;
      case kNodeOutput:
        r.String(type, &n->outputs.emplace_back());
        break;
      case kNodeName:
        r.String(type, &n->name);
        break;
      case kNodeOpType:
        r.String(type, &n->op_type);
        break;
      case kNodeDomain:
        r.String(type, &n->domain);
        break;
      case kNodeAttribute:
        COE_RETURN_IF_ERROR(
            Sub(r, type, "attribute", [&](Reader& sub) { return ParseAttribute(sub, &n->attributes.emplace_back()); }));
        break;
      default:
        r.Skip(type);
    }
  }
  return Status::Ok();
}

// A message's fields `field` (each a nested message), parsed by `parse`.
template <typename F>
Status EachSub(Reader& r, uint32_t want, const char* what, F parse) {
  uint32_t field;
  WireType type;
  while (r.Next(&field, &type)) {
    if (field == want)
      COE_RETURN_IF_ERROR(Sub(r, type, what, parse));
    else
      r.Skip(type);
  }
  return Status::Ok();
}

// A ValueInfoProto: its name, and (when `dims` is given) its tensor shape, -1 for a
// symbolic or absent dimension.
Status ParseValueInfo(Reader& r, std::string* name, std::vector<int64_t>* dims = nullptr) {
  uint32_t field;
  WireType type;
  while (r.Next(&field, &type)) {
    if (field == kValueInfoName) {
      r.String(type, name);
    } else if (field == kValueInfoType && dims) {
      COE_RETURN_IF_ERROR(Sub(r, type, "type", [&](Reader& t) {
        return EachSub(t, kTypeTensor, "tensor type", [&](Reader& tt) {
          return EachSub(tt, kTensorTypeShape, "shape", [&](Reader& sh) {
            return EachSub(sh, kShapeDim, "dimension", [&](Reader& d) {
              int64_t v = -1;
              uint32_t f;
              WireType ty;
              while (d.Next(&f, &ty)) {
                if (f == kDimValue)
                  d.Int(ty, &v);
                else
                  d.Skip(ty);
              }
              dims->push_back(v > 0 ? v : -1);
              return Status::Ok();
            });
          });
        });
      }));
    } else {
      r.Skip(type);
    }
  }
  return Status::Ok();
}

Status ParseGraph(Reader& r, Model* m) {
  std::vector<std::string> inputs;
  std::vector<std::vector<int64_t>> input_dims;
  uint32_t field;
  WireType type;
  while (r.Next(&field, &type)) {
    switch (field) {
      case kGraphNode: {
        Node& n = m->nodes.emplace_back();
        Status s = Sub(r, type, "node", [&](Reader& sub) { return ParseNode(sub, &n); });
        if (!s.ok()) return s.WithPrefix("node " + std::to_string(m->nodes.size() - 1));
        break;
      }
      case kGraphInitializer: {
        FloatTensor t;
        std::string name;
        COE_RETURN_IF_ERROR(Sub(r, type, "initializer", [&](Reader& sub) { return ParseTensor(sub, &t, &name); }));
        m->initializers[name] = std::move(t);
        break;
      }
      case kGraphInput:
        COE_RETURN_IF_ERROR(Sub(r, type, "graph input", [&](Reader& sub) {
          return ParseValueInfo(sub, &inputs.emplace_back(), &input_dims.emplace_back());
        }));
        break;
      case kGraphOutput:
        COE_RETURN_IF_ERROR(
            Sub(r, type, "graph output", [&](Reader& sub) { return ParseValueInfo(sub, &m->outputs.emplace_back()); }));
        break;
      default:
        r.Skip(type);
    }
  }
  for (size_t k = 0; k < inputs.size(); ++k) {
    if (m->initializers.count(inputs[k])) continue;
    if (m->inputs.empty()) m->input_dims = input_dims[k];
    m->inputs.push_back(std::move(inputs[k]));
  }
  return Status::Ok();
}

Status ParseOpset(Reader& r, Model* m) {
  std::string domain;
  int64_t version = 0;
  uint32_t field;
  WireType type;
  while (r.Next(&field, &type)) {
    if (field == kOpsetDomain)
      r.String(type, &domain);
    else if (field == kOpsetVersion)
      r.Int(type, &version);
    else
      r.Skip(type);
  }
  if (domain.empty() || domain == "ai.onnx") m->opset = version;
  return Status::Ok();
}

}  // namespace

const Attribute* Node::Find(std::string_view attribute) const {
  for (const Attribute& a : attributes)
    if (a.name == attribute) return &a;
  return nullptr;
}

int64_t Node::Int(std::string_view attribute, int64_t fallback) const {
  const Attribute* a = Find(attribute);
  return a ? a->i : fallback;
}

float Node::Float(std::string_view attribute, float fallback) const {
  const Attribute* a = Find(attribute);
  return a ? a->f : fallback;
}

std::vector<int64_t> Node::Ints(std::string_view attribute, std::vector<int64_t> fallback) const {
  const Attribute* a = Find(attribute);
  return a ? a->ints : fallback;
}

namespace {

// Constants the exporters leave as nodes become initializers: a Constant node's tensor,
// and an Identity or Dropout (inference: the identity) of an initializer, which torch's
// exporter writes when it merges equal weights (zero biases, say) into one initializer
// read through Identity nodes. Any other node reading them then finds a constant.
void FoldConstants(Model* m) {
  std::vector<Node> kept;
  for (Node& n : m->nodes) {
    const bool one_out = n.outputs.size() == 1 || (n.op_type == "Dropout" && !n.outputs.empty());
    const bool default_domain = n.domain.empty() || n.domain == "ai.onnx";
    if (n.op_type == "Constant" && n.outputs.size() == 1 && default_domain) {
      if (const Attribute* a = n.Find("value"); a && a->has_tensor) {
        m->initializers[n.outputs[0]] = a->t;
        continue;
      }
    }
    if ((n.op_type == "Identity" || n.op_type == "Dropout") && one_out && default_domain && !n.inputs.empty()) {
      auto it = m->initializers.find(n.inputs[0]);
      if (it != m->initializers.end() && (n.outputs.size() == 1 || n.outputs[1].empty())) {
        FloatTensor copy = it->second;
        m->initializers[n.outputs[0]] = std::move(copy);
        continue;
      }
    }
    kept.push_back(std::move(n));
  }
  m->nodes = std::move(kept);
}

}  // namespace

bool StripFinalSoftmax(Model* m) {
  if (m->nodes.empty() || m->outputs.size() != 1) return false;
  const Node& last = m->nodes.back();
  if (last.op_type != "Softmax" || last.inputs.size() != 1 || last.outputs.size() != 1 ||
      last.outputs[0] != m->outputs[0] || !(last.domain.empty() || last.domain == "ai.onnx"))
    return false;
  // The class axis: -1 (opset 13's default), or 1 of a [batch, classes] output (opsets
  // before 13 flatten from `axis`, default 1, which for that shape is the same).
  const int64_t axis = last.Int("axis", m->opset >= 13 ? -1 : 1);
  if (axis != -1 && axis != 1) return false;
  for (const Node& n : m->nodes)
    for (const std::string& in : n.inputs)
      if (in == last.inputs[0] && &n != &last) return false;  // the logits feed another node too
  m->outputs[0] = last.inputs[0];
  m->nodes.pop_back();
  return true;
}

StatusOr<Model> ParseModel(std::string_view bytes, const std::string& where) {
  Model m;
  Reader r(bytes);
  bool has_graph = false;
  uint32_t field = 0;
  WireType type;
  Status status;
  while (status.ok() && r.Next(&field, &type)) {
    switch (field) {
      case kModelIrVersion:
        r.Int(type, &m.ir_version);
        break;
      case kModelGraph:
        status = Sub(r, type, "graph", [&](Reader& sub) { return ParseGraph(sub, &m); });
        has_graph = true;
        break;
      case kModelOpset:
        status = Sub(r, type, "opset_import", [&](Reader& sub) { return ParseOpset(sub, &m); });
        break;
      default:
        r.Skip(type);
    }
  }
  if (!status.ok() && status.code() == StatusCode::kFailedPrecondition)
    return status.WithPrefix(where + ": a valid ONNX model that coe cannot read");
  if (!status.ok()) {
    // The graph running past the end of the file is what a cut-off download looks like.
    const bool cut = field == kModelGraph && status.message().find("runs past the end") != std::string::npos;
    return status.WithPrefix(where + " is not a valid ONNX model" + (cut ? " (is the file truncated?)" : ""));
  }
  if (!r.error().empty()) return InvalidArgumentError(where + " is not a valid ONNX model: " + r.error());
  if (!has_graph || m.nodes.empty()) return InvalidArgumentError(where + " is not a valid ONNX model: it has no graph");
  if (m.inputs.size() != 1 || m.outputs.size() != 1)
    return InvalidArgumentError(where + ": expected a graph of one input and one output, it has " +
                                std::to_string(m.inputs.size()) + " and " + std::to_string(m.outputs.size()));
  FoldConstants(&m);
  return m;
}

StatusOr<Model> ReadModel(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFoundError("cannot open " + path);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  if (!in.good() && !in.eof()) return InvalidArgumentError("cannot read " + path);
  return ParseModel(bytes.str(), path);
}

}  // namespace coe::onnx
