// OpenAI chat-completions messages: the front door of `coe serve` (coe/protocol.h).
#include <nlohmann/json.hpp>

#include "coe/protocol.h"
#include "protocol/json_text.h"

namespace coe {
namespace {

using json = nlohmann::json;

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

json Usage(const ChatReply& r) {
  return {{"prompt_tokens", r.prompt_tokens},
          {"completion_tokens", r.completion_tokens},
          {"total_tokens", r.prompt_tokens + r.completion_tokens}};
}

json Facts(const ChatReply& r) {
  return {{"answer", r.answer.empty() ? json(nullptr) : json(r.answer)},
          {"exit_tier", r.exit_tier},
          {"agreement", r.members ? static_cast<double>(r.votes) / r.members : 0.0},
          {"votes", r.votes},
          {"members", r.members},
          {"cost_usd", r.cost_usd},
          {"degraded", r.degraded}};
}

json Chunk(const ChatReply& r, json choices) {
  return {{"id", r.id},
          {"object", "chat.completion.chunk"},
          {"created", r.created},
          {"model", r.model},
          {"choices", std::move(choices)}};
}

// The text of a message's content, as the inside of a JSON string (escaped): a
// string, or the "text" of its parts joined by line breaks.
StatusOr<std::string> ContentJson(std::string_view content, size_t index) {
  const std::string where = "messages[" + std::to_string(index) + "].content";
  if (json_text::Kind(content) == '"') return std::string(json_text::Inside(content));
  if (json_text::Kind(content) != '[') return InvalidArgumentError(where + " must be a string or an array of parts");
  std::string text;
  for (std::string_view part : json_text::Elements(content)) {
    const auto m = json_text::Members(part);
    const auto type = m.find("type"), t = m.find("text");
    if (json_text::Kind(part) != '{' || type == m.end() || json_text::Kind(type->second) != '"' ||
        json_text::Decode(type->second) != "text" || t == m.end() || json_text::Kind(t->second) != '"')
      return InvalidArgumentError(where + ": only text parts ({\"type\":\"text\",\"text\":...}) are supported");
    if (!text.empty()) text += "\\n";
    text += json_text::Inside(t->second);
  }
  return text;
}

}  // namespace

// Read with json_text, not a DOM: the message is never decoded (coe/protocol.h).
StatusOr<ChatRequest> ParseChatRequest(std::string_view body) {
  using json_text::Kind;
  if (!json_text::Valid(body)) return InvalidArgumentError("the request body is not valid JSON");
  if (Kind(body) != '{') return InvalidArgumentError("the request body must be a JSON object");
  const auto top = json_text::Members(body);
  auto field = [&](const char* name) {
    auto it = top.find(name);
    return it == top.end() ? std::string_view() : it->second;
  };
  ChatRequest q;
  const std::string_view model = field("model");
  if (Kind(model) != '"' || (q.model = json_text::Decode(model)).empty())
    return InvalidArgumentError("'model' is required: a string naming a served cascade (see GET /v1/models)");
  const std::vector<std::string_view> messages = json_text::Elements(field("messages"));
  if (messages.empty()) return InvalidArgumentError("'messages' is required: a non-empty array of {role, content}");
  bool found = false;
  for (size_t k = 0; k < messages.size(); ++k) {
    const auto m = json_text::Members(messages[k]);
    const auto role = m.find("role");
    if (Kind(messages[k]) != '{' || role == m.end() || Kind(role->second) != '"')
      return InvalidArgumentError("messages[" + std::to_string(k) + "] must be an object with a string 'role'");
    if (json_text::Decode(role->second) != "user") continue;
    const auto content = m.find("content");
    if (content == m.end()) return InvalidArgumentError("messages[" + std::to_string(k) + "] has no 'content'");
    COE_ASSIGN_OR_RETURN(q.input_json, ContentJson(content->second, k));
    found = true;
  }
  if (!found) return InvalidArgumentError("'messages' holds no message with role 'user'");
  if (const std::string_view n = field("n"); !n.empty() && Kind(n) != 'n') {
    const json v = json::parse(n);
    if (!(v.is_number_integer() && v.get<int64_t>() == 1))
      return InvalidArgumentError("'n' must be 1: a cascade answers with one completion");
  }
  if (const std::string_view stream = field("stream"); !stream.empty() && Kind(stream) != 'n') {
    if (Kind(stream) != 't' && Kind(stream) != 'f') return InvalidArgumentError("'stream' must be true or false");
    q.stream = Kind(stream) == 't';
  }
  if (const std::string_view so = field("stream_options"); Kind(so) == '{') {
    const auto o = json_text::Members(so);
    const auto usage = o.find("include_usage");
    q.include_usage = usage != o.end() && Kind(usage->second) == 't';
  }
  return q;
}

std::string ChatCompletionJson(const ChatReply& r) {
  json j = {{"id", r.id},
            {"object", "chat.completion"},
            {"created", r.created},
            {"model", r.model},
            {"choices",
             {{{"index", 0},
               {"message", {{"role", "assistant"}, {"content", r.content}, {"refusal", nullptr}}},
               {"logprobs", nullptr},
               {"finish_reason", r.finish_reason}}}},
            {"usage", Usage(r)},
            {"coe", Facts(r)}};
  return Dump(j);
}

namespace {

std::string Event(const json& j) { return "data: " + Dump(j) + "\n\n"; }

// A chunk of one choice: its delta and finish_reason, with "usage": null when the
// client asked for usage (it comes in a chunk of its own at the end).
json OneChoice(const ChatReply& r, json delta, json finish_reason, bool include_usage) {
  json chunk =
      Chunk(r, {{{"index", 0}, {"delta", std::move(delta)}, {"logprobs", nullptr}, {"finish_reason", finish_reason}}});
  if (include_usage) chunk["usage"] = nullptr;
  return chunk;
}

}  // namespace

std::string ChatRoleEvent(const ChatReply& head, bool include_usage) {
  return Event(OneChoice(head, {{"role", "assistant"}, {"content", ""}}, nullptr, include_usage));
}

std::string ChatContentEvent(const ChatReply& head, std::string_view content, bool include_usage) {
  return Event(OneChoice(head, {{"content", content}}, nullptr, include_usage));
}

std::string ChatFinalEvents(const ChatReply& r, bool include_usage) {
  json last = OneChoice(r, json::object(), r.finish_reason, include_usage);
  last["coe"] = Facts(r);
  std::string out = Event(last);
  if (include_usage) {
    json u = Chunk(r, json::array());
    u["usage"] = Usage(r);
    out += Event(u);
  }
  return out + "data: [DONE]\n\n";
}

std::string ChatErrorEvent(std::string_view error_json) { return "data: " + std::string(error_json) + "\n\n"; }

std::string ChatCompletionEvents(const ChatReply& r, bool include_usage) {
  std::string out = ChatRoleEvent(r, include_usage);
  if (!r.content.empty()) out += ChatContentEvent(r, r.content, include_usage);
  return out + ChatFinalEvents(r, include_usage);
}

std::string ModelListJson(const std::vector<std::string>& names, int64_t created) {
  json data = json::array();
  for (const std::string& n : names)
    data.push_back({{"id", n}, {"object", "model"}, {"created", created}, {"owned_by", "coe"}});
  return Dump({{"object", "list"}, {"data", data}});
}

std::string OpenAiErrorJson(int http_status, std::string_view message, bool model_not_found) {
  std::string type = http_status >= 500 || http_status == 429 ? "server_error" : "invalid_request_error";
  if (http_status == 503 || http_status == 429) type = "server_busy";
  json code = model_not_found ? json("model_not_found") : json(nullptr);
  return Dump({{"error", {{"message", std::string(message)}, {"type", type}, {"param", nullptr}, {"code", code}}}});
}

}  // namespace coe
