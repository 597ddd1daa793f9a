#include "protocol/oip.h"

#include <bit>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

#include "coe/protocol.h"
#include "protocol/json_text.h"

namespace coe::oip {
namespace {

using json = nlohmann::json;

constexpr int kMaxDepth = 32;  // nesting of `data` arrays
constexpr size_t kMaxTensors = 64;
constexpr size_t kMaxRank = 16;

// SAX handler for Message. Each value's role follows from the enclosing frame and the
// last key; a value in an unexpected place is an error, an unknown key is skipped.
class Sax {
 public:
  explicit Sax(Message* m) : m_(m) {}
  const std::string& error() const { return error_; }

  bool null() { return Scalar(kNull, "null"); }
  bool boolean(bool b) {
    if (Role() == kElement) return Push(b ? 1.0f : 0.0f);
    return Scalar(kBool, b ? "true" : "false");
  }
  bool number_integer(json::number_integer_t v) {
    if (Role() == kElement) return Push(static_cast<float>(v));  // the hot path: no text
    return Integer(v < 0 ? -1 : v, std::to_string(v));
  }
  bool number_unsigned(json::number_unsigned_t v) {
    if (Role() == kElement) return Push(static_cast<float>(v));
    return Integer(v > static_cast<uint64_t>(INT64_MAX) ? -1 : static_cast<int64_t>(v), std::to_string(v));
  }
  bool number_float(json::number_float_t v, const std::string& text) {
    const R r = Role();
    if (r == kElement) {
      float f = 0;
      auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), f);
      if (ec == std::errc::result_out_of_range && std::fabs(v) < 1) {
        f = static_cast<float>(v);  // underflow: a tiny value rounds to 0 or a subnormal
      } else if (ec != std::errc() || ptr != text.data() + text.size() || !std::isfinite(f)) {
        return Fail("value " + text + " in " + Where() + " does not fit in FP32");
      }
      return Push(f);
    }
    if (r == kDim) return Fail(Where() + " must hold non-negative integers, got " + text);
    return Scalar(kNumber, text);
  }
  bool string(std::string& s) {
    switch (Role()) {
      case kId:
        m_->id = std::move(s);
        return true;
      case kModelName:
        m_->model_name = std::move(s);
        return true;
      case kTensorName:
        Cur().name = std::move(s);
        return true;
      case kDatatype:
        Cur().datatype = std::move(s);
        return true;
      case kElement:
        Cur().strings.push_back(std::move(s));
        return true;
      default:
        return Scalar(kString, s);
    }
  }
  bool binary(json::binary_t&) { return Fail("binary values are not JSON"); }

  bool start_object(size_t) {
    const R r = Role();
    if (r == kTop) return Enter(kRootF);
    if (r == kTensorObj) {
      std::vector<Tensor>& list = stack_.back().outputs ? m_->outputs : m_->inputs;
      if (list.size() >= kMaxTensors) return Fail("more than 64 tensors");
      list.emplace_back();
      return Enter(kTensorF, stack_.back().outputs);
    }
    if (r == kParamsObj) return Enter(kParamsF);
    if (r == kTensorParamsObj) return Enter(kTensorParamsF);
    if (r == kParam || r == kTensorParam) NoteSkippedParameter(r);
    if (r == kSkip || r == kParam || r == kTensorParam) return Enter(kSkipF);
    return Fail(Where() + " must not be an object");
  }
  bool start_array(size_t) {
    switch (Role()) {
      case kInputs:
        return Enter(kTensorsF, false);
      case kOutputs:
        return Enter(kTensorsF, true);
      case kShape:
        if (Cur().has_shape) return Fail("repeated \"shape\" in " + TensorWhere());
        Cur().has_shape = true;
        return Enter(kShapeF);
      case kData:
        if (Cur().has_data) return Fail("repeated \"data\" in " + TensorWhere());
        Cur().has_data = true;
        Cur().data_depth = 1;
        return Enter(kDataF, false, 1);
      case kElement: {
        const int depth = stack_.back().depth + 1;
        if (depth > kMaxDepth) return Fail("\"data\" of " + TensorWhere() + " is nested too deeply");
        Cur().data_depth = std::max(Cur().data_depth, depth);
        return Enter(kDataF, false, depth);
      }
      case kParam:
      case kTensorParam:
        NoteSkippedParameter(Role());
        return Enter(kSkipF);
      case kSkip:
        return Enter(kSkipF);
      case kTop:
        return Fail("the request body must be a JSON object");
      default:
        return Fail(Where() + " must not be an array");
    }
  }
  bool key(std::string& k) {
    key_ = std::move(k);
    // A key of the message or of a tensor that is not read: noted (a request refuses it).
    if (!stack_.empty() && Role() == kSkip && m_->skipped.size() < 8) {
      const F f = stack_.back().f;
      if (f == kRootF) m_->skipped.push_back("\"" + key_.substr(0, 64) + "\"");
      if (f == kTensorF) m_->skipped.push_back("\"" + key_.substr(0, 64) + "\" of " + TensorWhere());
    }
    return true;
  }
  bool end_object() { return Leave(); }
  bool end_array() { return Leave(); }
  bool parse_error(size_t position, const std::string&, const nlohmann::detail::exception& e) {
    // e.what(): "[json.exception.parse_error.101] parse error at line 1, column 7: ...".
    std::string what = e.what();
    const size_t colon = what.find("parse error");
    what = colon == std::string::npos ? what : what.substr(colon);
    return Fail("malformed JSON (byte " + std::to_string(position) + "): " + what);
  }

 private:
  enum F { kRootF, kTensorsF, kTensorF, kShapeF, kDataF, kParamsF, kTensorParamsF, kSkipF };
  enum R {
    kTop,
    kId,
    kModelName,
    kInputs,
    kOutputs,
    kParamsObj,
    kTensorObj,
    kTensorName,
    kDatatype,
    kShape,
    kData,
    kDim,
    kElement,
    kParam,
    kTensorParamsObj,
    kTensorParam,
    kSkip,
    kBad
  };
  enum Kind { kNull, kBool, kNumber, kString };
  struct Frame {
    F f;
    bool outputs = false;  // kTensorsF / kTensorF: in "outputs"
    int depth = 0;         // kDataF: nesting level
  };

  // The role of the next value.
  R Role() const {
    if (stack_.empty()) return done_ ? kBad : kTop;
    switch (stack_.back().f) {
      case kRootF:
        if (key_ == "id") return kId;
        if (key_ == "model_name") return kModelName;
        if (key_ == "inputs") return kInputs;
        if (key_ == "outputs") return kOutputs;
        if (key_ == "parameters") return kParamsObj;
        return kSkip;
      case kTensorsF:
        return kTensorObj;
      case kTensorF:
        if (key_ == "name") return kTensorName;
        if (key_ == "datatype") return kDatatype;
        if (key_ == "shape") return kShape;
        if (key_ == "data") return kData;
        if (key_ == "parameters") return kTensorParamsObj;
        return kSkip;
      case kShapeF:
        return kDim;
      case kDataF:
        return kElement;
      case kParamsF:
        return kParam;
      case kTensorParamsF:
        return kTensorParam;
      case kSkipF:
        return kSkip;
    }
    return kBad;
  }

  Tensor& Cur() {
    for (auto it = stack_.rbegin(); it != stack_.rend(); ++it)
      if (it->f == kTensorF) return (it->outputs ? m_->outputs : m_->inputs).back();
    return scratch_;  // unreachable: roles that call Cur() lie inside a tensor
  }
  std::string TensorWhere() {
    for (auto it = stack_.rbegin(); it != stack_.rend(); ++it)
      if (it->f == kTensorF)
        return it->outputs ? "outputs[" + std::to_string(m_->outputs.size() - 1) + "]"
                           : "inputs[" + std::to_string(m_->inputs.size() - 1) + "]";
    return "a tensor";
  }
  std::string Where() {
    switch (Role()) {
      case kTop:
        return "the request body";
      case kId:
        return "\"id\"";
      case kModelName:
        return "\"model_name\"";
      case kInputs:
        return "\"inputs\"";
      case kOutputs:
        return "\"outputs\"";
      case kParamsObj:
        return "\"parameters\"";
      case kTensorObj:
        return std::string("each of \"") + (stack_.back().outputs ? "outputs" : "inputs") + "\"";
      case kTensorName:
        return "\"name\" of " + TensorWhere();
      case kDatatype:
        return "\"datatype\" of " + TensorWhere();
      case kShape:
      case kDim:
        return "\"shape\" of " + TensorWhere();
      case kData:
      case kElement:
        return "\"data\" of " + TensorWhere();
      default:
        return "the value";
    }
  }

  bool Scalar(Kind kind, const std::string& text) {
    const R r = Role();
    if (r == kSkip) return true;
    if (r == kParam) {
      m_->parameters[key_] = text;
      return true;
    }
    if (r == kTensorParam) {
      Cur().parameters[key_] = text;
      return true;
    }
    static const char* const kWhat[] = {"null", "a boolean", "a number", "a string"};
    std::string want;
    switch (r) {
      case kTop:
        want = "a JSON object";
        break;
      case kId:
      case kModelName:
      case kTensorName:
      case kDatatype:
        want = "a string";
        break;
      case kInputs:
      case kOutputs:
        want = "an array of tensor objects";
        break;
      case kParamsObj:
      case kTensorParamsObj:
        want = "an object";
        break;
      case kTensorObj:
        want = "an object";
        break;
      case kShape:
      case kDim:
        want = "an array of non-negative integers";
        break;
      case kData:
        want = "an array";
        break;
      case kElement:
        want = "numbers, booleans or strings";
        break;
      default:
        return Fail("unexpected " + std::string(kWhat[kind]) + " after the end of the JSON value");
    }
    return Fail(Where() + " must be " + want + ", got " + kWhat[kind]);
  }
  // A non-element integer; `as_int` is -1 when negative or past INT64_MAX.
  bool Integer(int64_t as_int, const std::string& text) {
    if (Role() == kDim) {
      if (as_int < 0) return Fail(Where() + " must hold non-negative integers, got " + text);
      if (Cur().shape.size() >= kMaxRank) return Fail(Where() + " has more than 16 dimensions");
      Cur().shape.push_back(as_int);
      return true;
    }
    return Scalar(kNumber, text);
  }
  bool Push(float f) {
    Cur().numbers.push_back(f);
    return true;
  }
  bool Enter(F f, bool outputs = false, int depth = 0) {
    stack_.push_back(Frame{f, outputs, depth});
    key_.clear();
    return true;
  }
  bool Leave() {
    if (!stack_.empty()) stack_.pop_back();
    if (stack_.empty()) done_ = true;
    key_.clear();  // a key is never followed by the end of its container
    return true;
  }
  bool Fail(std::string message) {
    if (error_.empty()) error_ = std::move(message);
    return false;
  }
  // A parameter whose value is an object or array (not read; a request refuses it).
  void NoteSkippedParameter(R r) {
    if (m_->skipped.size() >= 8) return;
    m_->skipped.push_back("parameter \"" + key_.substr(0, 64) + "\"" +
                          (r == kTensorParam ? " of " + TensorWhere() : "") + " (not a scalar)");
  }

  Message* m_;
  std::vector<Frame> stack_;
  std::string key_;
  bool done_ = false;
  std::string error_;
  Tensor scratch_;
};

}  // namespace

namespace {

// Reads the binary data of every tensor whose parameters declare binary_data_size,
// in order (inputs, then outputs), from `binary`: the bytes after the JSON.
Status ReadBinaryTensors(std::string_view binary, Message* m) {
  static_assert(std::endian::native == std::endian::little, "binary tensors are little-endian");
  size_t at = 0;
  for (std::vector<Tensor>* list : {&m->inputs, &m->outputs}) {
    for (size_t k = 0; k < list->size(); ++k) {
      Tensor& t = (*list)[k];
      auto it = t.parameters.find("binary_data_size");
      if (it == t.parameters.end()) continue;
      const std::string what = std::string(list == &m->inputs ? "inputs[" : "outputs[") + std::to_string(k) + "]";
      size_t n = 0;
      auto [ptr, ec] = std::from_chars(it->second.data(), it->second.data() + it->second.size(), n);
      if (ec != std::errc() || ptr != it->second.data() + it->second.size())
        return InvalidArgumentError(what + ": binary_data_size must be a non-negative integer");
      if (t.has_data) return InvalidArgumentError(what + " has both \"data\" and binary_data_size");
      if (n > binary.size() - at)
        return InvalidArgumentError(what + ": binary_data_size " + std::to_string(n) + " but only " +
                                    std::to_string(binary.size() - at) + " bytes of binary data are left");
      const char* p = binary.data() + at;
      const std::string& type = t.datatype;
      if (type == "FP32" || type == "INT32") {
        if (n % 4) return InvalidArgumentError(what + ": " + type + " binary data of " + std::to_string(n) + " bytes");
        t.numbers.resize(n / 4);
        for (size_t i = 0; i < n / 4; ++i) {
          // Finite or not: a request's values are checked by RequestFromMessage, a
          // response's by its reader (the remote backend abstains on a row).
          const uint32_t u = ReadU32Le(p + 4 * i);
          t.numbers[i] = type == "FP32" ? std::bit_cast<float>(u) : static_cast<float>(static_cast<int32_t>(u));
        }
      } else if (type == "UINT8" || type == "BOOL") {
        t.numbers.resize(n);
        for (size_t i = 0; i < n; ++i) t.numbers[i] = static_cast<float>(static_cast<unsigned char>(p[i]));
      } else if (type == "BYTES") {
        size_t i = 0;
        while (i < n) {
          if (n - i < 4) return InvalidArgumentError(what + ": BYTES binary data ends inside a length");
          const uint32_t len = ReadU32Le(p + i);
          i += 4;
          if (len > n - i) return InvalidArgumentError(what + ": BYTES element longer than its binary data");
          t.strings.emplace_back(p + i, len);
          i += len;
        }
      } else {
        return InvalidArgumentError(what + ": binary data of datatype '" + type.substr(0, 16) + "' is not supported");
      }
      t.has_data = true;
      t.data_depth = 1;
      at += n;
    }
  }
  if (at != binary.size())
    return InvalidArgumentError(std::to_string(binary.size()) +
                                " bytes of binary data follow the JSON but its "
                                "tensors declare " +
                                std::to_string(at));
  return Status::Ok();
}

}  // namespace

Status ParseMessage(std::string_view body, size_t json_size, Message* out) {
  if (json_size > body.size())
    return InvalidArgumentError("Inference-Header-Content-Length " + std::to_string(json_size) +
                                " is larger than the body (" + std::to_string(body.size()) + " bytes)");
  COE_RETURN_IF_ERROR(ParseMessage(body.substr(0, json_size), out));
  return ReadBinaryTensors(body.substr(json_size), out);
}

Status ParseMessage(std::string_view body, Message* out) {
  *out = Message{};
  Sax sax(out);
  bool ok = false;
  try {
    ok = json::sax_parse(body.begin(), body.end(), &sax);
  } catch (const std::exception& e) {  // bad_alloc, or a library error: never past here
    return InvalidArgumentError(std::string("cannot parse the body: ") + e.what());
  }
  if (!ok) return InvalidArgumentError(sax.error().empty() ? "malformed JSON" : sax.error());
  return Status::Ok();
}

void AppendFloat(std::string* out, float v) {
  if (v == 0 && std::signbit(v)) {  // "-0" would read back as the integer 0
    *out += "-0.0";
    return;
  }
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  if (ec != std::errc()) {  // cannot happen for a 32-byte buffer
    out->push_back('0');
    return;
  }
  out->append(buf, end);
}

void AppendJsonEscaped(std::string* out, std::string_view s) {
  if (!json_text::IsUtf8(s)) {  // rare: nlohmann's own replacement of the invalid sequences
    const std::string q = json(std::string(s)).dump(-1, ' ', false, json::error_handler_t::replace);
    out->append(q, 1, q.size() - 2);
    return;
  }
  // Escaped as nlohmann's serializer does (ensure_ascii off): '"', '\\', and the control
  // characters below 0x20 (\b \t \n \f \r, else \u00xx); every other byte as it is. The
  // exact size first (and room for a closing quote and brace): a large string is
  // appended without regrowth, which would copy it into twice its size.
  size_t size = s.size();
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\' || c == '\b' || c == '\t' || c == '\n' || c == '\f' || c == '\r')
      size += 1;
    else if (c < 0x20)
      size += 5;
  }
  out->reserve(out->size() + size + 16);
  size_t from = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out->append(s.data() + from, i - from);
    from = i + 1;
    switch (c) {
      case '"':
        *out += "\\\"";
        break;
      case '\\':
        *out += "\\\\";
        break;
      case '\b':
        *out += "\\b";
        break;
      case '\t':
        *out += "\\t";
        break;
      case '\n':
        *out += "\\n";
        break;
      case '\f':
        *out += "\\f";
        break;
      case '\r':
        *out += "\\r";
        break;
      default: {
        char u[8];
        std::snprintf(u, sizeof u, "\\u%04x", c);
        *out += u;
      }
    }
  }
  out->append(s.data() + from, s.size() - from);
}

std::string EncodeInferRequestJson(const OutgoingRequest& q, size_t* json_size) {
  const bool bytes = q.binary && q.uint8;
  const size_t width = bytes ? 1 : 4;
  std::string b;
  b.reserve(q.values.size() * (q.binary ? width : 12) + 200);
  b += "{\"inputs\":[{\"name\":";
  AppendJsonString(&b, q.input);
  b += std::string(",\"datatype\":\"") + (bytes ? "UINT8" : "FP32") + "\",\"shape\":[";
  for (size_t d = 0; d < q.shape.size(); ++d) b += (d ? "," : "") + std::to_string(q.shape[d]);
  if (q.binary) {
    b += "],\"parameters\":{\"binary_data_size\":" + std::to_string(q.values.size() * width) + "}}";
  } else {
    b += "],\"data\":[";
    for (size_t i = 0; i < q.values.size(); ++i) {
      if (i) b += ',';
      AppendFloat(&b, q.values[i]);
    }
    b += "]}";
  }
  b += "],\"outputs\":[";
  for (size_t k = 0; k < q.outputs.size(); ++k) {
    b += k ? ",{\"name\":" : "{\"name\":";
    AppendJsonString(&b, q.outputs[k]);
    b += q.binary ? ",\"parameters\":{\"binary_data\":true}}" : "}";
  }
  b += "]}";
  *json_size = q.binary ? b.size() : 0;
  if (!q.binary) return b;
  b.reserve(b.size() + q.values.size() * width);
  for (float v : q.values) {
    if (bytes)
      b.push_back(static_cast<char>(static_cast<unsigned char>(v)));
    else
      AppendU32Le(&b, std::bit_cast<uint32_t>(v));
  }
  return b;
}

StatusOr<int64_t> ShapeElements(const std::string& name, const std::vector<int64_t>& shape) {
  int64_t elements = 1;
  for (int64_t d : shape)
    if (d < 0 || __builtin_mul_overflow(elements, d, &elements) || elements > (int64_t{1} << 40))
      return InvalidArgumentError(name + " has an impossible shape " + ShapeString(shape));
  return elements;
}

void AppendU32Le(std::string* out, uint32_t v) {
  const char b[4] = {static_cast<char>(v), static_cast<char>(v >> 8), static_cast<char>(v >> 16),
                     static_cast<char>(v >> 24)};
  out->append(b, 4);
}

uint32_t ReadU32Le(const char* p) {
  const auto* b = reinterpret_cast<const unsigned char*>(p);
  return uint32_t{b[0]} | uint32_t{b[1]} << 8 | uint32_t{b[2]} << 16 | uint32_t{b[3]} << 24;
}

void AppendJsonString(std::string* out, std::string_view s) {
  out->push_back('"');
  AppendJsonEscaped(out, s);
  out->push_back('"');
}

}  // namespace coe::oip

namespace coe {

namespace {

// Nothing of the request goes unread: a key coe does not read, or a parameter it does
// not honour, is InvalidArgument naming it (a misspelt "ouputs" or "binary_data_outptu"
// was ignored and answered 200).
Status CheckRead(const oip::Message& m) {
  if (!m.skipped.empty()) {
    std::string list;
    for (const std::string& k : m.skipped) list += (list.empty() ? "" : ", ") + k;
    return InvalidArgumentError("the request has " + list +
                                ", which coe does not read (a request has id, inputs, outputs and parameters; a "
                                "tensor has name, datatype, shape, data and parameters)");
  }
  // Each parameter coe honours, where it may be, and whether it is a flag.
  auto check = [](const std::map<std::string, std::string>& params, const std::string& where, const char* known,
                  bool flag) -> Status {
    for (const auto& [key, value] : params) {
      if (key != known)
        return InvalidArgumentError("parameter \"" + key.substr(0, 64) + "\"" + where +
                                    " is not one coe honours (it reads " + known + " there)");
      if (flag && value != "true" && value != "false")
        return InvalidArgumentError("parameter \"" + key + "\"" + where + " must be true or false, got " +
                                    value.substr(0, 32));
    }
    return Status::Ok();
  };
  COE_RETURN_IF_ERROR(check(m.parameters, " of the request", "binary_data_output", true));
  for (size_t i = 0; i < m.inputs.size(); ++i)
    COE_RETURN_IF_ERROR(
        check(m.inputs[i].parameters, " of inputs[" + std::to_string(i) + "]", "binary_data_size", false));
  for (size_t i = 0; i < m.outputs.size(); ++i)
    COE_RETURN_IF_ERROR(check(m.outputs[i].parameters, " of outputs[" + std::to_string(i) + "]", "binary_data", true));
  return Status::Ok();
}

}  // namespace

StatusOr<InferRequest> ParseInferRequest(std::string_view body, const std::vector<int64_t>& input_shape,
                                         std::optional<size_t> json_size) {
  oip::Message m;
  COE_RETURN_IF_ERROR(json_size ? oip::ParseMessage(body, *json_size, &m) : oip::ParseMessage(body, &m));
  COE_RETURN_IF_ERROR(CheckRead(m));
  return oip::RequestFromMessage(std::move(m), input_shape);
}

namespace oip {

StatusOr<std::vector<int64_t>> ExampleShapeFor(const std::string& name, const std::vector<int64_t>& shape,
                                               const std::vector<int64_t>& input_shape) {
  const std::vector<int64_t> rest(shape.begin() + 1, shape.end());
  if (input_shape.empty()) return rest;
  int64_t want = 1;
  for (int64_t d : input_shape) want *= d;
  if (rest == input_shape || (rest.size() == 1 && rest[0] == want)) return input_shape;
  std::vector<int64_t> full = {-1}, flat = {-1, want};
  full.insert(full.end(), input_shape.begin(), input_shape.end());
  return InvalidArgumentError(name + " has shape " + ShapeString(shape) + ", the model takes " + ShapeString(full) +
                              " or " + ShapeString(flat));
}

StatusOr<InferRequest> RequestFromMessage(Message m, const std::vector<int64_t>& input_shape) {
  InferRequest req;
  req.id = std::move(m.id);
  if (m.inputs.empty()) return InvalidArgumentError("the request has no \"inputs\"");
  if (m.inputs.size() != 1)
    return InvalidArgumentError("the model takes one input tensor, the request has " + std::to_string(m.inputs.size()));
  oip::Tensor& t = m.inputs[0];
  const std::string name = "input '" + t.name + "'";
  if (t.datatype.empty()) return InvalidArgumentError(name + " has no \"datatype\"");
  if (t.datatype != "FP32" && t.datatype != "UINT8")
    return InvalidArgumentError(name + " has datatype " + t.datatype.substr(0, 32) +
                                ", the model takes FP32 (or UINT8 pixel values)");
  if (!t.has_shape || t.shape.empty()) return InvalidArgumentError(name + " has no \"shape\" [batch, ...]");
  if (!t.has_data) return InvalidArgumentError(name + " has no \"data\"");
  if (!t.strings.empty()) return InvalidArgumentError(name + " is FP32 but its data holds strings");
  if (t.data_depth > static_cast<int>(t.shape.size()))
    return InvalidArgumentError(name + ": \"data\" is nested deeper than its shape " + ShapeString(t.shape));
  COE_ASSIGN_OR_RETURN(const int64_t elements, ShapeElements(name, t.shape));
  if (static_cast<uint64_t>(elements) != t.numbers.size())
    return InvalidArgumentError(name + " has shape " + ShapeString(t.shape) + " (" + std::to_string(elements) +
                                " values) but its data holds " + std::to_string(t.numbers.size()) + " values");
  COE_ASSIGN_OR_RETURN(req.batch.example_shape, ExampleShapeFor(name, t.shape, input_shape));
  if (t.shape[0] > 0 && req.batch.ExampleSize() == 0)
    return InvalidArgumentError(name + " has examples of no values (shape " + ShapeString(t.shape) + ")");
  if (t.datatype == "UINT8")
    for (float v : t.numbers)
      if (!(v >= 0 && v <= 255 && v == std::floor(v)))
        return InvalidArgumentError(name + " is UINT8 but holds " + std::to_string(v));
  if (t.datatype == "FP32")
    for (size_t i = 0; i < t.numbers.size(); ++i)
      if (!std::isfinite(t.numbers[i]))
        return InvalidArgumentError(name + ": element " + std::to_string(i) + " is not a finite number");
  req.batch.data = std::move(t.numbers);
  auto flag = [](const std::map<std::string, std::string>& p, const char* key) {
    auto it = p.find(key);
    return it != p.end() && it->second == "true";
  };
  req.binary_output = flag(m.parameters, "binary_data_output");
  for (const oip::Tensor& o : m.outputs)
    req.outputs.push_back({.name = o.name, .binary = req.binary_output || flag(o.parameters, "binary_data")});
  return req;
}

}  // namespace oip

const char* DatatypeName(OutputTensor::Type t) {
  switch (t) {
    case OutputTensor::Type::kBytes:
      return "BYTES";
    case OutputTensor::Type::kInt32:
      return "INT32";
    case OutputTensor::Type::kBool:
      return "BOOL";
    case OutputTensor::Type::kFp32:
      return "FP32";
  }
  return "FP32";
}

namespace {

// One output's elements: as JSON "data", or as binary data appended to *tail (BYTES
// each as a 4-byte little-endian length and its bytes; the others little-endian).
void AppendOutputData(const OutputTensor& o, std::string* s, std::string* tail) {
  using T = OutputTensor::Type;
  if (o.binary) {
    const size_t from = tail->size();
    switch (o.type) {
      case T::kBytes:
        for (const std::string& b : o.bytes) {
          oip::AppendU32Le(tail, static_cast<uint32_t>(b.size()));
          tail->append(b);
        }
        break;
      case T::kInt32:
        for (int32_t v : o.int32) oip::AppendU32Le(tail, static_cast<uint32_t>(v));
        break;
      case T::kBool:
        tail->append(reinterpret_cast<const char*>(o.bools.data()), o.bools.size());
        break;
      case T::kFp32:
        for (float v : o.fp32) oip::AppendU32Le(tail, std::bit_cast<uint32_t>(v));
        break;
    }
    *s += ",\"parameters\":{\"binary_data_size\":" + std::to_string(tail->size() - from) + "}}";
    return;
  }
  *s += ",\"data\":[";
  switch (o.type) {
    case T::kBytes:
      for (size_t i = 0; i < o.bytes.size(); ++i) {
        if (i) *s += ',';
        oip::AppendJsonString(s, o.bytes[i]);
      }
      break;
    case T::kInt32:
      for (size_t i = 0; i < o.int32.size(); ++i) *s += (i ? "," : "") + std::to_string(o.int32[i]);
      break;
    case T::kBool:
      for (size_t i = 0; i < o.bools.size(); ++i) *s += std::string(i ? "," : "") + (o.bools[i] ? "true" : "false");
      break;
    case T::kFp32:
      for (size_t i = 0; i < o.fp32.size(); ++i) {
        if (i) *s += ',';
        oip::AppendFloat(s, std::isfinite(o.fp32[i]) ? o.fp32[i] : 0.0f);
      }
      break;
  }
  *s += "]}";
}

}  // namespace

std::string EncodeInferResponseJson(const InferResponse& r, std::string* tail) {
  std::string s = "{\"model_name\":";
  oip::AppendJsonString(&s, r.model_name);
  s += ",\"model_version\":";
  oip::AppendJsonString(&s, r.model_version);
  if (r.id) {
    s += ",\"id\":";
    oip::AppendJsonString(&s, *r.id);
  }
  s += ",\"parameters\":{";
  bool first = true;
  for (const auto& [key, value] : r.int_parameters) {
    s += first ? "" : ",";
    first = false;
    oip::AppendJsonString(&s, key);
    s += ":" + std::to_string(value);
  }
  for (const auto& [key, value] : r.string_parameters) {
    s += first ? "" : ",";
    first = false;
    oip::AppendJsonString(&s, key);
    s += ':';
    oip::AppendJsonString(&s, value);
  }
  s += "},\"outputs\":[";
  for (size_t k = 0; k < r.outputs.size(); ++k) {
    const OutputTensor& o = r.outputs[k];
    s += k ? ",{\"name\":" : "{\"name\":";
    oip::AppendJsonString(&s, o.name);
    s += std::string(",\"datatype\":\"") + DatatypeName(o.type) + "\",\"shape\":[";
    for (size_t d = 0; d < o.shape.size(); ++d) s += (d ? "," : "") + std::to_string(o.shape[d]);
    s += "]";
    AppendOutputData(o, &s, tail);
  }
  return s + "]}";
}

namespace {

using json = nlohmann::json;

json TensorsJson(const std::vector<TensorMetadata>& tensors) {
  json a = json::array();
  for (const TensorMetadata& t : tensors) a.push_back({{"name", t.name}, {"datatype", t.datatype}, {"shape", t.shape}});
  return a;
}

std::string StringOf(const json& o, const char* key) {
  auto it = o.find(key);
  return it != o.end() && it->is_string() ? it->get<std::string>() : "";
}

std::vector<std::string> StringsOf(const json& o, const char* key) {
  std::vector<std::string> out;
  auto it = o.find(key);
  if (it == o.end() || !it->is_array()) return out;
  for (const json& e : *it)
    if (e.is_string()) out.push_back(e.get<std::string>());
  return out;
}

std::vector<TensorMetadata> TensorsOf(const json& o, const char* key) {
  std::vector<TensorMetadata> out;
  auto it = o.find(key);
  if (it == o.end() || !it->is_array()) return out;
  for (const json& e : *it) {
    if (!e.is_object()) continue;
    TensorMetadata t{StringOf(e, "name"), StringOf(e, "datatype"), {}};
    auto shape = e.find("shape");
    if (shape != e.end() && shape->is_array())
      for (const json& d : *shape) {
        if (!d.is_number_integer()) {
          t.shape.clear();
          break;
        }
        t.shape.push_back(d.get<int64_t>());
      }
    out.push_back(std::move(t));
  }
  return out;
}

StatusOr<json> ObjectOf(std::string_view body, const char* what) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return InvalidArgumentError(std::string(what) + " is not a JSON object");
  return j;
}

}  // namespace

std::string EncodeModelMetadataJson(const ModelMetadata& m) {
  const json j = {{"name", m.name},
                  {"versions", m.versions},
                  {"platform", m.platform},
                  {"inputs", TensorsJson(m.inputs)},
                  {"outputs", TensorsJson(m.outputs)}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string EncodeServerMetadataJson(const ServerMetadata& m) {
  const json j = {{"name", m.name}, {"version", m.version}, {"extensions", m.extensions}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string EncodeErrorJson(std::string_view message) {
  std::string s = "{\"error\":";
  oip::AppendJsonString(&s, message);
  return s + "}";
}

std::string EncodeHealthJson(std::string_view key, bool value) {
  std::string s = "{";
  oip::AppendJsonString(&s, key);
  return s + (value ? ":true}" : ":false}");
}

std::string EncodeModelReadyJson(std::string_view name, bool ready) {
  std::string s = "{\"name\":";
  oip::AppendJsonString(&s, name);
  return s + (ready ? ",\"ready\":true}" : ",\"ready\":false}");
}

StatusOr<ModelMetadata> ParseModelMetadataJson(std::string_view body) {
  COE_ASSIGN_OR_RETURN(const json j, ObjectOf(body, "metadata"));
  return ModelMetadata{StringOf(j, "name"), StringOf(j, "platform"), StringsOf(j, "versions"), TensorsOf(j, "inputs"),
                       TensorsOf(j, "outputs")};
}

StatusOr<ServerMetadata> ParseServerMetadataJson(std::string_view body) {
  COE_ASSIGN_OR_RETURN(const json j, ObjectOf(body, "server metadata"));
  return ServerMetadata{StringOf(j, "name"), StringOf(j, "version"), StringsOf(j, "extensions")};
}

}  // namespace coe
