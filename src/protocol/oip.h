// Internal: Open Inference Protocol JSON messages, shared by the server (requests in,
// responses out) and the remote backend (requests out, responses in).
//
// ParseMessage is a SAX parser (nlohmann::json::sax_parse) that reads tensor data
// straight into floats: no DOM of a million numbers, and every number is converted
// from its decimal text exactly once (std::from_chars), so a float written by
// AppendFloat reads back bit-identical.
#ifndef COE_PROTOCOL_OIP_H_
#define COE_PROTOCOL_OIP_H_

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "coe/protocol.h"
#include "coe/status.h"

namespace coe::oip {

struct Tensor {
  std::string name, datatype;
  std::vector<int64_t> shape;
  bool has_shape = false, has_data = false;
  std::vector<float> numbers;        // numeric and boolean (0/1) elements, flattened
  std::vector<std::string> strings;  // string elements, flattened
  int data_depth = 0;                // deepest array nesting of `data`
  // The tensor's "parameters" with scalar values, as text (e.g. binary_data_size).
  std::map<std::string, std::string> parameters;
};

// A request ("inputs", "outputs" naming the requested outputs) or a response
// ("model_name", "outputs" with data); unknown keys are skipped and listed in `skipped` (a request refuses them; a
// response from another server may carry more).
struct Message {
  std::optional<std::string> id;
  std::string model_name;
  std::vector<Tensor> inputs, outputs;
  // Top-level "parameters" with scalar values, as text (strings unquoted, numbers as
  // written, true/false/null); non-scalar values are skipped.
  std::map<std::string, std::string> parameters;
  // What was not read (up to 8): keys of the message or of a tensor that it does not
  // have ("\"ouputs\"", "\"shape_\" of inputs[0]") and parameters that are not scalars.
  std::vector<std::string> skipped;
};

// InvalidArgument naming the problem (and the byte offset of a JSON syntax error).
// Never throws.
Status ParseMessage(std::string_view body, Message* out);
// The binary tensor data extension (Triton's; the Inference-Header-Content-Length
// header): the first `json_size` bytes of `body` are the JSON message, the rest the
// data of each tensor whose parameters hold binary_data_size, in order. FP32, INT32
// (little-endian), UINT8, BOOL (a byte each) and BYTES (each element a 4-byte
// little-endian length and its bytes) fill `numbers` / `strings` as JSON data would.
Status ParseMessage(std::string_view body, size_t json_size, Message* out);

// The request a message holds, checked for a model taking examples of `input_shape`
// (empty = any): one FP32 or UINT8 input whose shape and data agree, finite values,
// UINT8 in 0..255; the outputs named (the server checks their names). Both codecs
// (ParseInferRequest's JSON, oip_proto.h's protobuf) end here, so a request is checked
// by one set of rules with one set of messages.
StatusOr<InferRequest> RequestFromMessage(Message m, const std::vector<int64_t>& input_shape);
// The example shape of an input `name` of `shape` ([batch, ...], non-empty) for a
// model taking `input_shape` (empty = any: the request's): the model's, when the rest
// of `shape` is it or its flat size; else InvalidArgument saying what the model takes.
StatusOr<std::vector<int64_t>> ExampleShapeFor(const std::string& name, const std::vector<int64_t>& shape,
                                               const std::vector<int64_t>& input_shape);

// A request to another server's model (the remote backend's): one input tensor and
// the outputs wanted.
struct OutgoingRequest {
  std::string input;              // the input tensor's name
  std::vector<int64_t> shape;     // [batch, ...]
  std::span<const float> values;  // prod(shape), finite
  bool uint8 = false;             // with binary: values are 0..255 integers, sent a byte each
  bool binary = false;            // the binary tensor data extension, for the input and outputs
  std::vector<std::string> outputs;
};
// Its body; *json_size: the JSON's length when binary data follows it, else 0.
std::string EncodeInferRequestJson(const OutgoingRequest& q, size_t* json_size);

// The number of elements of a tensor `name` of `shape` (every dimension >= 0, at most
// 2^40 in all), counted without overflow; else InvalidArgument naming the shape.
StatusOr<int64_t> ShapeElements(const std::string& name, const std::vector<int64_t>& shape);

// Little-endian 4-byte elements of binary tensor data (both codecs), written with
// shifts so that they hold on any host byte order.
void AppendU32Le(std::string* out, uint32_t v);
uint32_t ReadU32Le(const char* p);

// Appends the shortest decimal text that reads back as exactly `v` (finite v).
void AppendFloat(std::string* out, float v);
// Appends `s` as a JSON string literal (quoted, escaped; invalid UTF-8 replaced), the
// bytes nlohmann's dump (error_handler_t::replace) writes, without copying `s`.
void AppendJsonString(std::string* out, std::string_view s);
// The same without the quotes: the text inside a JSON string literal.
void AppendJsonEscaped(std::string* out, std::string_view s);

}  // namespace coe::oip

#endif  // COE_PROTOCOL_OIP_H_
