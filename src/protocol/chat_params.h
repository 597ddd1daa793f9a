// Internal (protocol layer): the parameters of a chat-completions request, checked by
// one table (ChatParameters() in coe/protocol.h) against OpenAI's documented types and
// ranges, read with json_text (no DOM: a request's `tools` or `metadata` are walked, not
// built).
//
// Thread safety: pure functions.
#ifndef COE_PROTOCOL_CHAT_PARAMS_H_
#define COE_PROTOCOL_CHAT_PARAMS_H_

#include <map>
#include <string>
#include <string_view>

#include "coe/protocol.h"
#include "coe/status.h"

namespace coe::chat_params {

// Reads every member of a request body but model and messages (`members`, as
// json_text::Members gives them) into q->parameters, stream, include_usage and
// logprobs. InvalidArgument naming the parameter (and *param set to it) for an unknown
// or refused one, a wrong type or range, or parameters that do not go together
// (stream_options without stream, max_tokens with max_completion_tokens, top_logprobs
// without logprobs, tool_choice or parallel_tool_calls without tools, a tool_choice
// naming no tool of tools).
Status Read(const std::map<std::string, std::string_view>& members, ChatRequest* q, std::string* param);

}  // namespace coe::chat_params

#endif  // COE_PROTOCOL_CHAT_PARAMS_H_
