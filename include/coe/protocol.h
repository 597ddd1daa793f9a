// coe/protocol.h: the wire messages of the protocol layer: the Open Inference Protocol
// (KServe v2) messages coe reads, and the OpenAI chat-completions messages of the
// server's front door. The server decodes requests with it and the remote backend builds them;
// both share one JSON reader (src/protocol/oip.h) that reads tensor data straight into
// floats, so a float written by coe reads back bit-identical.
//
// Thread safety: pure functions.
#ifndef COE_PROTOCOL_H_
#define COE_PROTOCOL_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "coe/status.h"
#include "coe/tensor.h"

namespace coe {

// An infer request, decoded (from JSON by ParseInferRequest, from protobuf by the gRPC
// service's codec, src/protocol/oip_proto.h): the values both codecs produce.
struct InferRequest {
  std::optional<std::string> id;
  InputBatch batch;  // example_shape: the model's input_shape (the request's when any)
  // The outputs asked for, in order; empty: the model's defaults. `binary`: answered as
  // binary data (the JSON codec's binary tensor data extension: the output's
  // "binary_data": true, or the request's "binary_data_output": true).
  struct Output {
    std::string name;
    bool binary = false;
  };
  std::vector<Output> outputs;
  bool binary_output = false;  // "binary_data_output": outputs not named, as binary data
  bool raw = false;            // protobuf: the input came in raw_input_contents (answered raw too)
};

// An output tensor of an infer response, as both codecs carry it: one of the value
// vectors, by `datatype`, holds prod(shape) elements.
struct OutputTensor {
  enum class Type { kBytes, kInt32, kBool, kFp32 };
  std::string name;
  Type type = Type::kFp32;
  std::vector<int64_t> shape;
  std::vector<std::string> bytes;
  std::vector<int32_t> int32;
  std::vector<uint8_t> bools;  // 0 or 1
  std::vector<float> fp32;     // finite (JSON cannot hold more)
  bool binary = false;         // JSON: sent as binary data after the JSON
};
// The protocol's name of a type ("BYTES", "INT32", "BOOL", "FP32").
const char* DatatypeName(OutputTensor::Type t);

// An infer response: the value the server builds once (src/server/cascade_outputs.h)
// and each codec writes.
struct InferResponse {
  std::string model_name, model_version = "1";
  std::optional<std::string> id;
  // Response parameters: an integer or a string each, in order.
  std::vector<std::pair<std::string, int64_t>> int_parameters;
  std::vector<std::pair<std::string, std::string>> string_parameters;
  std::vector<OutputTensor> outputs;
};

// The JSON codec's response: the JSON text; the bytes of outputs with `binary` go to
// *tail, to follow the JSON (whose length is then the Inference-Header-Content-Length).
std::string EncodeInferResponseJson(const InferResponse& r, std::string* tail);

// Decodes an Open Inference Protocol infer request body for a model taking examples of
// `input_shape` (empty = any shape). Never throws; every malformed, ill-typed or
// inconsistent body is InvalidArgument with a message fit for the client. On success
// the batch holds N * prod(input_shape) finite FP32 values.
// With `json_size` (the Inference-Header-Content-Length header), the body is that many
// bytes of JSON followed by binary tensor data (oip::ParseMessage); the input may
// then also be UINT8 (pixel values 0..255, read as the same floats).
// Nothing is ignored: a key coe does not read (a misspelt "ouputs") or a parameter it
// does not honour (it honours binary_data_output, an input's binary_data_size and an
// output's binary_data, the flags true or false) is InvalidArgument naming it. Output
// names are the server's to check (src/server/cascade_outputs.h).
StatusOr<InferRequest> ParseInferRequest(std::string_view body, const std::vector<int64_t>& input_shape,
                                         std::optional<size_t> json_size = std::nullopt);

// --- OpenAI chat completions (POST /v1/chat/completions, GET /v1/models) ---

// A chat-completions request, decoded. Of the messages only the last one with role
// "user" matters: its text (a string, or the "text" parts of an array) is the input.
// Sampling fields (temperature, max_tokens, n, ...) are accepted and ignored: the
// cascade's members carry their own; n other than 1 is refused.
struct ChatRequest {
  std::string model;
  // The last user message's text as the request holds it: the inside of a JSON string
  // literal (escaped, no quotes; the "text" of parts joined by an escaped line break).
  // Kept so, a large message is never decoded and escaped again: it goes into the
  // cascade's record as it is.
  std::string input_json;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
};

// Decodes a request body. Never throws: malformed JSON, a missing model, no user
// message, a non-text message or n != 1 is InvalidArgument naming the field. Its
// memory: the body and the message's text once more, nothing in between (no DOM).
StatusOr<ChatRequest> ParseChatRequest(std::string_view body);

// What the cascade decided for one chat request.
struct ChatReply {
  std::string id;  // "chatcmpl-..."
  std::string model;
  int64_t created = 0;                               // Unix seconds
  std::string content;                               // the winning member's completion ("" when no tier answered)
  int64_t prompt_tokens = 0, completion_tokens = 0;  // summed over every call made
  // The winning member's, as its endpoint said ("stop", "length", ...).
  std::string finish_reason = "stop";
  // The cascade's facts, returned under "coe".
  std::string answer;  // the answer read from the completions ("" = none)
  int exit_tier = 0;   // 1-based
  int votes = 0, members = 0;
  double cost_usd = 0;
  bool degraded = false;
};

// The body of a non-streaming response: object "chat.completion", one choice
// (the reply's finish_reason), "usage", and "coe": {answer, exit_tier, agreement, votes,
// members, cost_usd, degraded}.
std::string ChatCompletionJson(const ChatReply& reply);
// A streamed response as server-sent events: a chunk with the role, one with the
// content, one with finish_reason and the "coe" facts, then (when include_usage) a
// chunk with empty choices and the usage, then "data: [DONE]".
std::string ChatCompletionEvents(const ChatReply& reply, bool include_usage);
// The same events one at a time, for a reply streamed as its member produces it
// (ChatCompletionEvents is their concatenation): the first chunk (the role), a chunk
// of content, the last ones (finish_reason and "coe", the usage chunk when
// include_usage, "data: [DONE]"). `head` needs only id, model and created.
std::string ChatRoleEvent(const ChatReply& head, bool include_usage);
std::string ChatContentEvent(const ChatReply& head, std::string_view content, bool include_usage);
std::string ChatFinalEvents(const ChatReply& reply, bool include_usage);
// The event that ends a stream whose upstream failed after its first bytes (the
// status cannot change any more): "data: " and an OpenAI error body (OpenAiErrorJson).
std::string ChatErrorEvent(std::string_view error_json);
// GET /v1/models: {"object":"list","data":[{"id","object":"model","created","owned_by":"coe"}]}.
std::string ModelListJson(const std::vector<std::string>& names, int64_t created);
// The OpenAI error body: {"error":{"message","type","param","code"}}; type follows the
// status (400 invalid_request_error, 404 invalid_request_error with code
// model_not_found when `model_not_found`, 503/429 server_busy, else server_error).
std::string OpenAiErrorJson(int http_status, std::string_view message, bool model_not_found = false);

}  // namespace coe

#endif  // COE_PROTOCOL_H_
