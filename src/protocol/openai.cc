// OpenAI chat-completions messages: the front door of `coe serve` (coe/protocol.h).
#include <cmath>
#include <nlohmann/json.hpp>

#include "coe/protocol.h"
#include "protocol/chat_params.h"
#include "protocol/json_text.h"
#include "protocol/oip.h"

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
  json facts = {{"answer", r.answer.empty() ? json(nullptr) : json(r.answer)},
                {"exit_tier", r.exit_tier},
                {"agreement", r.members ? static_cast<double>(r.votes) / r.members : 0.0},
                {"votes", r.votes},
                {"members", r.members},
                {"cost_usd", r.cost_usd},
                {"degraded", r.degraded},
                {"cached", r.cached}};
  if (r.max_cost_usd) {
    facts["max_cost_usd"] = *r.max_cost_usd;
    facts["budget_stopped"] = r.budget_tier > 0;
    if (r.budget_tier > 0) facts["stopped_at_tier"] = r.budget_tier;
  }
  if (!r.pinned.empty()) {
    json& pinned = facts["pinned"];
    for (const auto& [name, by_member] : r.pinned)
      for (const auto& [member, value] : by_member) pinned[name][member] = json::parse(value, nullptr, false);
  }
  return facts;
}

// JSON text a member returned (tool calls, logprobs), or null when there is none.
json Parsed(const std::string& text) { return text.empty() ? json(nullptr) : json::parse(text, nullptr, false); }

json Message(const ChatReply& r) {
  json m = {{"role", "assistant"}, {"content", r.content}, {"refusal", nullptr}};
  if (!r.tool_calls.empty()) {
    m["tool_calls"] = Parsed(r.tool_calls);
    if (r.content.empty()) m["content"] = nullptr;
  }
  return m;
}

json Chunk(const ChatReply& r, json choices) {
  return {{"id", r.id},
          {"object", "chat.completion.chunk"},
          {"created", r.created},
          {"model", r.model},
          {"choices", std::move(choices)}};
}

// Appends the text of a message's content as the inside of a JSON string (escaped): a
// string, or the "text" of its parts joined by line breaks.
Status AppendContent(std::string* out, std::string_view content, size_t index) {
  const std::string where = "messages[" + std::to_string(index) + "].content";
  if (json_text::Kind(content) == '"') {
    *out += json_text::Inside(content);
    return Status::Ok();
  }
  if (json_text::Kind(content) != '[') return InvalidArgumentError(where + " must be a string or an array of parts");
  const size_t start = out->size();
  for (std::string_view part : json_text::Elements(content)) {
    const auto m = json_text::Members(part);
    const auto type = m.find("type"), t = m.find("text");
    if (json_text::Kind(part) != '{' || type == m.end() || json_text::Kind(type->second) != '"' ||
        json_text::Decode(type->second) != "text" || t == m.end() || json_text::Kind(t->second) != '"')
      return InvalidArgumentError(where + ": only text parts ({\"type\":\"text\",\"text\":...}) are supported");
    if (out->size() > start) *out += "\\n";  // once some text is written (an empty first part adds none)
    *out += json_text::Inside(t->second);
  }
  return Status::Ok();
}

// Checks messages[k] and returns its role: one of system, developer, user, assistant,
// tool; a content that is a string or an array of parts (null or absent only for an
// assistant's message with tool_calls); a tool message's tool_call_id.
StatusOr<std::string> MessageRole(std::string_view message, size_t k) {
  using json_text::Kind;
  const std::string where = "messages[" + std::to_string(k) + "]";
  const auto m = json_text::Members(message);
  const auto role = m.find("role");
  if (Kind(message) != '{' || role == m.end() || Kind(role->second) != '"')
    return InvalidArgumentError(where + " must be an object with a string 'role'");
  const std::string r = json_text::Decode(role->second);
  if (r != "system" && r != "developer" && r != "user" && r != "assistant" && r != "tool")
    return InvalidArgumentError(where + ": role '" + r + "' is none of system, developer, user, assistant, tool");
  const auto content = m.find("content"), calls = m.find("tool_calls");
  const char kind = content == m.end() ? 'n' : Kind(content->second);
  const bool with_calls = r == "assistant" && calls != m.end() && Kind(calls->second) == '[';
  if (kind != '"' && kind != '[' && !(kind == 'n' && with_calls))
    return InvalidArgumentError(where + " has no 'content' (a string or an array of parts" +
                                (r == "assistant" ? "; null only with tool_calls" : "") + ")");
  if (kind == '[')
    for (std::string_view part : json_text::Elements(content->second)) {
      const auto p = json_text::Members(part);
      if (Kind(part) != '{' || !p.count("type") || Kind(p.at("type")) != '"')
        return InvalidArgumentError(where + ".content: each part must be an object with a string 'type'");
    }
  if (r == "tool" && (!m.count("tool_call_id") || Kind(m.at("tool_call_id")) != '"'))
    return InvalidArgumentError(where + ": a tool message needs a string 'tool_call_id'");
  return r;
}

// "a system message, 2 earlier messages and a trailing assistant message": what
// `roles` hold besides the user message at `user`.
std::string BeyondUser(const std::vector<std::string>& roles, size_t user) {
  size_t system = 0, earlier = 0, after = 0;
  for (size_t k = 0; k < roles.size(); ++k) {
    if (k == user) continue;
    if (roles[k] == "system" || roles[k] == "developer")
      ++system;
    else
      ++(k < user ? earlier : after);
  }
  auto count = [](size_t n, const std::string& one, const std::string& many) {
    return n == 1 ? one : std::to_string(n) + " " + many;
  };
  std::vector<std::string> parts;
  if (system) parts.push_back(count(system, "a system message", "system messages"));
  if (earlier) parts.push_back(count(earlier, "an earlier message", "earlier messages"));
  if (after)
    parts.push_back(after == 1 && roles.back() == "assistant" ? "a trailing assistant message"
                                                              : count(after, "a message after the last user message",
                                                                      "messages after the last user message"));
  std::string out;
  for (size_t k = 0; k < parts.size(); ++k) out += (k == 0 ? "" : k + 1 == parts.size() ? " and " : ", ") + parts[k];
  return out;
}

// coe's own field of a request: {"max_cost_usd": x}, nothing else.
Status ParseCoeField(std::string_view coe, ChatRequest* q) {
  if (json_text::Kind(coe) != '{')
    return InvalidArgumentError("'coe' must be an object: {\"max_cost_usd\": x}, the request's cost ceiling");
  for (const auto& [key, value] : json_text::Members(coe)) {
    if (key != "max_cost_usd")
      return InvalidArgumentError("'coe." + key + "' is not a field coe reads: 'coe' takes only max_cost_usd");
    const json v = json::parse(value, nullptr, false);
    if (!v.is_number() || !(v.get<double>() >= 0) || !std::isfinite(v.get<double>()))
      return InvalidArgumentError("'coe.max_cost_usd' must be a number >= 0 (dollars), not " +
                                  std::string(value.substr(0, 40)));
    q->max_cost_usd = v.get<double>();
  }
  return Status::Ok();
}

}  // namespace

// Read with json_text, not a DOM: no message is decoded (coe/protocol.h).
StatusOr<ChatRequest> ParseChatRequest(std::string_view body, std::string* param) {
  using json_text::Kind;
  if (param) param->clear();
  auto bad = [&](const char* p, const std::string& message) {
    if (param) *param = p;
    return InvalidArgumentError(message);
  };
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
    return bad("model", "'model' is required: a string naming a served cascade (see GET /v1/models)");
  q.messages_json = field("messages");
  const std::vector<std::string_view> messages = json_text::Elements(q.messages_json);
  if (messages.empty()) return bad("messages", "'messages' is required: a non-empty array of {role, content}");
  std::vector<std::string> roles;
  for (size_t k = 0; k < messages.size(); ++k) {
    auto role = MessageRole(messages[k], k);
    if (!role.ok()) return bad("messages", role.status().message());
    if (*role == "user") {
      q.user_index = k;
      q.user_content = json_text::Members(messages[k]).at("content");
    }
    roles.push_back(std::move(*role));
  }
  if (q.user_content.empty()) return bad("messages", "'messages' holds no message with role 'user'");
  q.beyond_user = BeyondUser(roles, q.user_index);
  COE_RETURN_IF_ERROR(chat_params::Read(top, &q, param));
  if (const std::string_view coe = field("coe"); !coe.empty() && Kind(coe) != 'n')
    if (Status s = ParseCoeField(coe, &q); !s.ok()) return bad("coe", s.message());
  return q;
}

StatusOr<std::string> ChatRecordJson(const ChatRequest& q, std::string_view id, bool messages) {
  size_t size = id.size() * 6 + 64 + (messages ? q.messages_json.size() : q.user_content.size());
  for (const auto& [name, value] : q.parameters) size += name.size() + value.size() + 4;
  std::string r;
  r.reserve(size);  // once: a large message is copied once
  r += "{\"id\":";
  oip::AppendJsonString(&r, id);
  if (messages) {
    r += ",\"messages\":";
    r += q.messages_json;
  } else {
    r += ",\"input\":\"";
    COE_RETURN_IF_ERROR(AppendContent(&r, q.user_content, q.user_index));
    r += '"';
  }
  if (!q.parameters.empty()) {
    r += ",\"";
    r += kRecordParameters;
    r += "\":{";
    for (size_t k = 0; k < q.parameters.size(); ++k) {
      if (k) r += ',';
      oip::AppendJsonString(&r, q.parameters[k].first);
      r += ':';
      r += q.parameters[k].second;
    }
    r += '}';
  }
  r += '}';
  return r;
}

namespace {
// Numbers of the same value written alike: a float with an integral value that a
// double holds exactly (up to 2^53) becomes that integer (0.0 and 0, 1e3 and 1000).
void CanonicalNumbers(json* j) {
  if (j->is_structured()) {
    for (json& v : *j) CanonicalNumbers(&v);
  } else if (j->is_number_float()) {
    const double d = j->get<double>();
    if (d == std::trunc(d) && std::fabs(d) <= 9007199254740992.0) *j = static_cast<int64_t>(d);
  }
}
}  // namespace

CanonicalChatRequest CanonicalizeChatRequest(std::string_view body, std::optional<double> max_cost_usd) {
  CanonicalChatRequest c;
  json j = json::parse(body, nullptr, false);
  if (!j.is_object()) return c;
  j.erase("stream");
  j.erase("stream_options");
  if (max_cost_usd) j["coe"]["max_cost_usd"] = *max_cost_usd;  // a double, whatever the body wrote
  if (auto t = j.find("temperature"); t != j.end() && t->is_number()) c.temperature = t->get<double>();
  if (auto s = j.find("seed"); s != j.end()) c.seed = s->is_number_integer();
  CanonicalNumbers(&j);
  c.text = Dump(j);  // nlohmann's objects keep their keys sorted
  return c;
}

std::string ChatCompletionJson(const ChatReply& r) {
  json j = {
      {"id", r.id},
      {"object", "chat.completion"},
      {"created", r.created},
      {"model", r.model},
      {"choices",
       {{{"index", 0}, {"message", Message(r)}, {"logprobs", Parsed(r.logprobs)}, {"finish_reason", r.finish_reason}}}},
      {"usage", Usage(r)},
      {"coe", Facts(r)}};
  return Dump(j);
}

namespace {

std::string Event(const json& j) { return "data: " + Dump(j) + "\n\n"; }

// A chunk of one choice: its delta, logprobs and finish_reason, with "usage": null
// when the client asked for usage (it comes in a chunk of its own at the end).
json OneChoice(const ChatReply& r, json delta, json logprobs, json finish_reason, bool include_usage) {
  json chunk = Chunk(r, {{{"index", 0},
                          {"delta", std::move(delta)},
                          {"logprobs", std::move(logprobs)},
                          {"finish_reason", std::move(finish_reason)}}});
  if (include_usage) chunk["usage"] = nullptr;
  return chunk;
}

}  // namespace

std::string ChatRoleEvent(const ChatReply& head, bool include_usage) {
  return Event(OneChoice(head, {{"role", "assistant"}, {"content", ""}}, nullptr, nullptr, include_usage));
}

std::string ChatContentEvent(const ChatReply& head, std::string_view content, bool include_usage) {
  return Event(OneChoice(head, {{"content", content}}, nullptr, nullptr, include_usage));
}

std::string ChatFinalEvents(const ChatReply& r, bool include_usage) {
  std::string out;
  if (!r.content.empty() || !r.logprobs.empty())
    out += Event(OneChoice(r, {{"content", r.content}}, Parsed(r.logprobs), nullptr, include_usage));
  if (json calls = Parsed(r.tool_calls); calls.is_array()) {
    for (size_t k = 0; k < calls.size(); ++k)
      if (calls[k].is_object()) calls[k]["index"] = k;
    out += Event(OneChoice(r, {{"tool_calls", std::move(calls)}}, nullptr, nullptr, include_usage));
  }
  json last = OneChoice(r, json::object(), nullptr, r.finish_reason, include_usage);
  last["coe"] = Facts(r);
  out += Event(last);
  if (include_usage) {
    json u = Chunk(r, json::array());
    u["usage"] = Usage(r);
    out += Event(u);
  }
  return out + "data: [DONE]\n\n";
}

std::string ChatErrorEvent(std::string_view error_json) { return "data: " + std::string(error_json) + "\n\n"; }

std::string ChatCompletionEvents(const ChatReply& r, bool include_usage) {
  return ChatRoleEvent(r, include_usage) + ChatFinalEvents(r, include_usage);
}

namespace {
json Model(const std::string& name, int64_t created) {
  return {{"id", name}, {"object", "model"}, {"created", created}, {"owned_by", "coe"}};
}
}  // namespace

std::string ModelListJson(const std::vector<std::string>& names, int64_t created) {
  json data = json::array();
  for (const std::string& n : names) data.push_back(Model(n, created));
  return Dump({{"object", "list"}, {"data", data}});
}

std::string ModelJson(const std::string& name, int64_t created) { return Dump(Model(name, created)); }

std::string OpenAiErrorJson(int http_status, std::string_view message, bool model_not_found, std::string_view param) {
  return OpenAiCodedErrorJson(http_status, message, model_not_found ? "model_not_found" : "", param);
}

std::string OpenAiCodedErrorJson(int http_status, std::string_view message, std::string_view code,
                                 std::string_view param) {
  std::string type = http_status >= 500 || http_status == 429 ? "server_error" : "invalid_request_error";
  if (http_status == 503 || http_status == 429) type = "server_busy";
  auto or_null = [](std::string_view v) { return v.empty() ? json(nullptr) : json(std::string(v)); };
  return Dump(
      {{"error",
        {{"message", std::string(message)}, {"type", type}, {"param", or_null(param)}, {"code", or_null(code)}}}});
}

}  // namespace coe
