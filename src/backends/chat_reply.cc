#include "backends/chat_reply.h"

#include <algorithm>
#include <optional>
#include <vector>

#include "protocol/json_text.h"

namespace coe {

using json = nlohmann::json;

namespace {

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// The canonical form of a call's arguments: the JSON its text holds, or a JSON value.
std::optional<std::string> CanonicalArguments(const json& args) {
  if (args.is_string()) return json_text::Canonical(args.get_ref<const std::string&>());
  return json_text::Canonical(Dump(args));
}

}  // namespace

std::string ToolCallsAnswer(const json& calls, std::string* why) {
  std::vector<std::string> each;
  for (size_t k = 0; k < calls.size(); ++k) {
    const json& c = calls[k];
    const std::string which = "tool call " + std::to_string(k + 1);
    const json* f = c.is_object() && c.contains("function") && c["function"].is_object() ? &c["function"] : nullptr;
    if (!f || !f->contains("name") || !(*f)["name"].is_string()) {
      *why = which + " is not a function call with a name";
      return "";
    }
    const std::optional<std::string> args =
        f->contains("arguments") ? CanonicalArguments((*f)["arguments"]) : std::optional<std::string>("{}");
    if (!args) {
      *why = which + " (" + (*f)["name"].get<std::string>() + ") has arguments that are not JSON";
      return "";
    }
    std::string one = "{\"arguments\":" + *args + ",\"name\":";
    one += Dump((*f)["name"]) + "}";
    each.push_back(std::move(one));
  }
  std::sort(each.begin(), each.end());
  std::string answer = "{\"tool_calls\":[";
  for (size_t k = 0; k < each.size(); ++k) answer += (k ? "," : "") + each[k];
  return answer + "]}";
}

bool ReadChatReply(const json& res, const ChatBody& body, const AnswerReader& reader, Prediction* p, std::string* why) {
  const json* choice = res.is_object() && res.contains("choices") && res["choices"].is_array() &&
                               !res["choices"].empty() && res["choices"][0].is_object()
                           ? &res["choices"][0]
                           : nullptr;
  const json* message =
      choice && choice->contains("message") && (*choice)["message"].is_object() ? &(*choice)["message"] : nullptr;
  const json* content = message && message->contains("content") ? &(*message)["content"] : nullptr;
  const json* calls = message && message->contains("tool_calls") && (*message)["tool_calls"].is_array() &&
                              !(*message)["tool_calls"].empty()
                          ? &(*message)["tool_calls"]
                          : nullptr;
  if (!(content && content->is_string()) && !calls) {
    *why = "the response has no choices[0].message.content (nor tool_calls)";
    return false;
  }
  if (content && content->is_string()) p->text = content->get<std::string>();
  if (auto fr = choice->find("finish_reason"); fr != choice->end() && fr->is_string())
    p->finish_reason = fr->get<std::string>();
  if (body.keep_logprobs && choice->contains("logprobs") && !(*choice)["logprobs"].is_null())
    p->logprobs = Dump((*choice)["logprobs"]);
  if (calls) {
    p->tool_calls = Dump(*calls);
    p->answer = ToolCallsAnswer(*calls, &p->error);
  } else if (body.json_reply) {
    p->answer = json_text::Canonical(p->text).value_or("");
    if (p->answer.empty()) p->error = "the reply is not JSON, as the request's response_format asks";
  } else {
    p->answer = reader.Read(p->text, &p->error);
  }
  return true;
}

}  // namespace coe
