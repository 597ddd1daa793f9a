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
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
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

// A model's metadata (REST GET /v2/models/{name}, gRPC ModelMetadata) and the server's
// (GET /v2, ServerMetadata): values each codec writes, and the remote backend reads
// from another server. A shape's -1 is a dimension of any size.
struct TensorMetadata {
  std::string name, datatype;
  std::vector<int64_t> shape;
};
struct ModelMetadata {
  std::string name, platform;
  std::vector<std::string> versions;
  std::vector<TensorMetadata> inputs, outputs;
};
struct ServerMetadata {
  std::string name, version;
  std::vector<std::string> extensions;
};
std::string EncodeModelMetadataJson(const ModelMetadata& m);
std::string EncodeServerMetadataJson(const ServerMetadata& m);
// Another server's metadata, read as far as it is well formed: a key that is missing
// or of another type is left empty (a tensor that is not an object is skipped; a shape
// with an entry that is not an integer is empty), since servers differ in what they
// send. InvalidArgument only when the body is not a JSON object.
StatusOr<ModelMetadata> ParseModelMetadataJson(std::string_view body);
StatusOr<ServerMetadata> ParseServerMetadataJson(std::string_view body);

// The REST binding's small messages: an error ({"error": message}), a health probe
// ({"live": true}, {"ready": true}: `key` live or ready) and a model's readiness
// ({"name": name, "ready": ready}).
std::string EncodeErrorJson(std::string_view message);
std::string EncodeHealthJson(std::string_view key, bool value);
std::string EncodeModelReadyJson(std::string_view name, bool ready);

// --- OpenAI chat completions (POST /v1/chat/completions, GET /v1/models) ---

// A chat-completions request, decoded and checked. Its views point into the body given
// to ParseChatRequest, which must outlive them: a large message is never copied nor
// decoded here, it goes from the body into the cascade's record (ChatRecordJson).
// coe's own field, "coe": {"max_cost_usd": x}, is the request's cost ceiling (a
// number >= 0; no other key is allowed in it).
struct ChatRequest {
  std::string model;
  // The messages array's JSON text, as the request holds it.
  std::string_view messages_json;
  // The content (JSON text: a string, or an array of parts) of the last user message.
  std::string_view user_content;
  size_t user_index = 0;  // that message's index in messages
  // What the conversation holds besides one user message ("" when it is just that),
  // e.g. "a system message, 2 earlier messages and a trailing assistant message":
  // what a cascade of input = "template" would not show its members.
  std::string beyond_user;
  // The request's parameters to forward to every member (ChatParameters(), use
  // kForward), each checked, as name and JSON text, in name order; null values left
  // out (null is the parameter's default).
  std::vector<std::pair<std::string, std::string_view>> parameters;
  bool stream = false;
  bool include_usage = false;          // stream_options.include_usage
  bool logprobs = false;               // the client asked for the winning completion's logprobs
  std::optional<double> max_cost_usd;  // coe.max_cost_usd
};

// Decodes and checks a request body. Never throws: malformed JSON, a missing model, a
// malformed message, no user message, or a parameter coe does not know, refuses (see
// ChatParameters()) or finds of the wrong type or range is InvalidArgument naming it;
// *param (when given) is then the parameter's name ("messages", "temperature", ...)
// for OpenAI's error field `param`, "" when none. Its memory: no more than the body
// and a few small strings (no DOM).
StatusOr<ChatRequest> ParseChatRequest(std::string_view body, std::string* param = nullptr);
// A temporary std::string body would die before the request's views: refused at
// compile time (name the body first).
template <class S, std::enable_if_t<std::is_same_v<S, std::string>, int> = 0>
StatusOr<ChatRequest> ParseChatRequest(S&& body, std::string* param = nullptr) = delete;

// How coe treats each top-level field of a chat request besides model and messages.
//  kForward  checked (type, range), then sent to every member as the request gave it
//            (unless the member's catalogue pins it: coe/catalogue.h `pin`);
//  kCoe      coe's own (stream, stream_options), not sent;
//  kRefuse   refused with 400 naming it and why (`refusal`).
// Any field not listed is refused as unknown.
struct ChatParameter {
  enum class Use { kForward, kCoe, kRefuse };
  std::string_view name;
  Use use;
  std::string_view refusal;  // kRefuse: why
};
const std::vector<ChatParameter>& ChatParameters();

// The record a chat request becomes (one of InputBatch::texts): a JSON object with
// "id", then "messages" (the request's array, as its text: `messages`) or "input"
// (the last user message's text, its text parts joined by line breaks: template
// mode), and kRecordParameters: an object of the forwarded parameters (absent when
// none). InvalidArgument (param "messages") when template mode meets a message part
// that is not text. Sized once: a large message is copied once, into it.
inline constexpr const char* kRecordParameters = "coe.parameters";
StatusOr<std::string> ChatRecordJson(const ChatRequest& request, std::string_view id, bool messages);

// A chat request in canonical form, for an exact-request cache: the body parsed, its
// "stream" and "stream_options" removed (they change only the framing of the reply),
// coe.max_cost_usd set to the request's ceiling when it has one (so that a header's
// ceiling and the body's key alike), numbers of one value written alike (an integral
// float up to 2^53 as an integer: 0.0 is 0), written with sorted keys and no white space.
struct CanonicalChatRequest {
  std::string text;                   // "" when the body is not JSON
  std::optional<double> temperature;  // the request's "temperature", when a number
  bool seed = false;                  // the request has an integer "seed"
};
CanonicalChatRequest CanonicalizeChatRequest(std::string_view body, std::optional<double> max_cost_usd);

// What the cascade decided for one chat request.
struct ChatReply {
  std::string id;  // "chatcmpl-..."
  std::string model;
  int64_t created = 0;  // Unix seconds
  std::string content;  // the winning member's completion ("" when no tier answered)
  // The winning member's tool calls and logprobs as JSON text ("" = none): sent as
  // message.tool_calls (content then null when empty) and the choice's logprobs.
  std::string tool_calls, logprobs;
  int64_t prompt_tokens = 0, completion_tokens = 0;  // summed over every call made
  // The winning member's, as its endpoint said ("stop", "length", ...).
  std::string finish_reason = "stop";
  // The cascade's facts, returned under "coe".
  std::string answer;  // the answer read from the completions ("" = none)
  int exit_tier = 0;   // 1-based
  int votes = 0, members = 0;
  double cost_usd = 0;
  bool degraded = false;
  // Parameters of the request that members' catalogues pinned to another value:
  // parameter -> member -> the value sent (JSON text). Returned as "coe": {"pinned"}.
  std::map<std::string, std::map<std::string, std::string>> pinned;
  bool cached = false;  // answered from the server's response cache (no call made)
  // The request's cost ceiling (coe.max_cost_usd), when it gave one; budget_tier > 0
  // when the ceiling stopped the cascade: the (1-based) deepest tier it allowed
  // answered, where the tier's rule would have deferred.
  std::optional<double> max_cost_usd;
  int budget_tier = 0;
};

// The body of a non-streaming response: object "chat.completion", one choice
// (the reply's finish_reason, message.tool_calls when the reply has them, logprobs),
// "usage", and "coe": {answer, exit_tier, agreement, votes, members, cost_usd,
// degraded, cached, pinned when a parameter was} and, with a ceiling, max_cost_usd and
// budget_stopped (with stopped_at_tier when true).
std::string ChatCompletionJson(const ChatReply& reply);
// A streamed response as server-sent events: a chunk with the role, one with the
// content (and logprobs), one with the tool calls (each with its "index") when the
// reply has them, one with finish_reason and the "coe" facts, then (when include_usage) a
// chunk with empty choices and the usage, then "data: [DONE]".
std::string ChatCompletionEvents(const ChatReply& reply, bool include_usage);
// The same events in parts, for a reply streamed as its member produces it
// (ChatCompletionEvents is ChatRoleEvent + ChatFinalEvents): the first chunk (the
// role); a chunk of content; the rest (a chunk with reply.content and logprobs when
// either is not empty: a streamed reply's content went already, so it is left empty
// there; the tool calls; finish_reason and "coe"; usage; "data: [DONE]"). `head` needs
// only id, model and created.
std::string ChatRoleEvent(const ChatReply& head, bool include_usage);
std::string ChatContentEvent(const ChatReply& head, std::string_view content, bool include_usage);
std::string ChatFinalEvents(const ChatReply& reply, bool include_usage);
// The event that ends a stream whose upstream failed after its first bytes (the
// status cannot change any more): "data: " and an OpenAI error body (OpenAiErrorJson).
std::string ChatErrorEvent(std::string_view error_json);
// GET /v1/models: {"object":"list","data":[{"id","object":"model","created","owned_by":"coe"}]}.
std::string ModelListJson(const std::vector<std::string>& names, int64_t created);
// GET /v1/models/{id}: one model object, {"id","object":"model","created","owned_by":"coe"}.
std::string ModelJson(const std::string& name, int64_t created);
// The OpenAI error body: {"error":{"message","type","param","code"}}; type follows the
// status (400 invalid_request_error, 404 invalid_request_error with code
// model_not_found when `model_not_found`, 503/429 server_busy, else server_error);
// param: the request parameter it is about (null when `param` is empty).
std::string OpenAiErrorJson(int http_status, std::string_view message, bool model_not_found = false,
                            std::string_view param = {});
// The same with the given `code` (e.g. "invalid_api_key") and `param` ("" for both: null).
std::string OpenAiCodedErrorJson(int http_status, std::string_view message, std::string_view code,
                                 std::string_view param);

}  // namespace coe

#endif  // COE_PROTOCOL_H_
