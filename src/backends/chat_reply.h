// Internal (openai backend): what a chat-completions response says, read into a
// Prediction: the reply's text, finish_reason, tool calls and logprobs, and the answer
// the member votes with.
//
// The answer:
//  - a reply with tool calls (message.tool_calls, a non-empty array): ToolCallsAnswer;
//  - a JSON reply (the request's response_format json_object or json_schema,
//    ChatBody::json_reply): the content's canonical JSON (protocol/json_text.h), no
//    answer when the content is not JSON;
//  - any other reply: the catalogue's `answer` mode over the content (AnswerReader).
// Tool calls and JSON replies are so compared exactly, whatever the tier's match
// (coe/rules.h: structured answers).
//
// Thread safety: pure functions.
#ifndef COE_BACKENDS_CHAT_REPLY_H_
#define COE_BACKENDS_CHAT_REPLY_H_

#include <nlohmann/json.hpp>
#include <string>

#include "backends/answer_reader.h"
#include "backends/chat_body.h"
#include "coe/backend.h"

namespace coe {

// Reads the response `res` of the request `body` into *p (text, finish_reason,
// tool_calls, logprobs when body.keep_logprobs, answer; `error` when there is no
// answer). False, with *why, when it holds no reply: no choices[0].message with a
// string content or tool_calls.
bool ReadChatReply(const nlohmann::json& res, const ChatBody& body, const AnswerReader& reader, Prediction* p,
                   std::string* why);

// The answer of a reply's tool calls: {"tool_calls":[{"arguments":A,"name":N},...]} as
// canonical JSON, A each call's arguments (a JSON text, as OpenAI sends them, or a JSON
// value) in canonical form, the calls sorted (parallel calls have no order; their ids
// are each endpoint's own and left out). Two replies agree when they call the same
// functions with arguments equal as JSON. "" with *why when a call is not a function
// call with a name, or its arguments are not JSON.
std::string ToolCallsAnswer(const nlohmann::json& calls, std::string* why);

}  // namespace coe

#endif  // COE_BACKENDS_CHAT_REPLY_H_
