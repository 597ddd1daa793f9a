// Internal (openai backend): a chat completion read as it streams. A call with a
// TokenSink (InputView::tokens) asks its endpoint for `stream: true` (and
// `stream_options.include_usage`, so that the streamed call is paid as the plain one
// is) and reads the server-sent events as they arrive: each piece of content goes to
// the sink at once, and the whole is kept, so that the answer, the score and the cost
// are read from it exactly as from a plain response (ChatStreamReader::Completion
// gives that response).
//
// The events (OpenAI's format, also vLLM's, llama.cpp's, Ollama's): lines "data: X"
// (the space optional), an event ending at an empty line; X is a chat.completion.chunk
// or "[DONE]". Comments (": ..."), other fields (event:, id:, retry:) and chunks
// without choices are read past. A chunk's choices[0].delta.content is the next
// piece; its delta.tool_calls (by index: id, type, and the function's name and
// arguments joined in order), finish_reason, logprobs (arrays joined in order) and
// usage (the last one seen) are kept; a chunk {"error": ...} ends the stream as a
// failure naming the upstream's message. Tool calls are not passed to the sink: a
// reply of tool calls alone is sent whole when the call ends.
//
// Thread safety: one call's, on its thread.
#ifndef COE_BACKENDS_CHAT_STREAM_H_
#define COE_BACKENDS_CHAT_STREAM_H_

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "coe/status.h"
#include "coe/tensor.h"

namespace coe {

// `body`, a chat request's pieces (a JSON object's text), with "stream": true and
// "stream_options": {"include_usage": true} first; `own` holds the text added.
std::vector<std::string_view> StreamingBody(std::vector<std::string_view> body, std::string* own);

class ChatStreamReader {
 public:
  explicit ChatStreamReader(TokenSink* sink) : sink_(sink) {}

  // The next bytes of the response, as they arrive. False: stop reading (the sink
  // is gone, or an event cannot be read).
  bool Feed(std::string_view bytes);

  // After the response ended: the completion as a plain chat.completion response
  // ({"choices": [{"message": {"content", "tool_calls"}, "finish_reason", "logprobs"}],
  // "usage"}), or FailedPrecondition saying what went wrong (an error event, an event
  // that is not JSON, a stream cut before its finish_reason or [DONE]).
  StatusOr<nlohmann::json> Completion() const;
  // Why Feed stopped on an event ("" when it did not): a failure of the call.
  const std::string& error() const { return error_; }

 private:
  bool Event(std::string_view data);
  void Logprobs(const nlohmann::json& lp);
  void ToolCalls(const nlohmann::json& calls);

  static constexpr size_t kMaxToolCalls = 128;  // an index past it is not a call (nor an allocation)

  TokenSink* const sink_;
  std::string line_;  // a line not yet ended
  std::string data_;  // the current event's data lines
  std::string text_, finish_reason_, error_;
  nlohmann::json logprobs_ = nlohmann::json::object(), tool_calls_ = nlohmann::json::array(), usage_;
  bool done_ = false;
};

}  // namespace coe

#endif  // COE_BACKENDS_CHAT_STREAM_H_
