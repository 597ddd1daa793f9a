// OpenAI chat-completions messages: the front door of `coe serve` (coe/protocol.h).
#include <cmath>
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
  json j = {{"answer", r.answer.empty() ? json(nullptr) : json(r.answer)},
            {"exit_tier", r.exit_tier},
            {"agreement", r.members ? static_cast<double>(r.votes) / r.members : 0.0},
            {"votes", r.votes},
            {"members", r.members},
            {"cost_usd", r.cost_usd},
            {"degraded", r.degraded},
            {"cached", r.cached}};
  if (r.max_cost_usd) {
    j["max_cost_usd"] = *r.max_cost_usd;
    j["budget_stopped"] = r.budget_tier > 0;
    if (r.budget_tier > 0) j["stopped_at_tier"] = r.budget_tier;
  }
  return j;
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
  if (const std::string_view coe = field("coe"); !coe.empty() && Kind(coe) != 'n')
    COE_RETURN_IF_ERROR(ParseCoeField(coe, &q));
  return q;
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

std::string ChatCompletionEvents(const ChatReply& r, bool include_usage) {
  std::string out;
  auto event = [&](const json& j) { out += "data: " + Dump(j) + "\n\n"; };
  const json null_usage = include_usage ? json{{"usage", nullptr}} : json::object();
  auto with = [&](json chunk) {
    chunk.update(null_usage);
    return chunk;
  };
  event(with(Chunk(r, {{{"index", 0},
                        {"delta", {{"role", "assistant"}, {"content", ""}}},
                        {"logprobs", nullptr},
                        {"finish_reason", nullptr}}})));
  if (!r.content.empty())
    event(with(Chunk(
        r, {{{"index", 0}, {"delta", {{"content", r.content}}}, {"logprobs", nullptr}, {"finish_reason", nullptr}}})));
  json last = with(
      Chunk(r, {{{"index", 0}, {"delta", json::object()}, {"logprobs", nullptr}, {"finish_reason", r.finish_reason}}}));
  last["coe"] = Facts(r);
  event(last);
  if (include_usage) {
    json u = Chunk(r, json::array());
    u["usage"] = Usage(r);
    event(u);
  }
  return out + "data: [DONE]\n\n";
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

std::string OpenAiErrorJson(int http_status, std::string_view message, bool model_not_found) {
  return OpenAiErrorJson(http_status, message, model_not_found ? "model_not_found" : "", "");
}

std::string OpenAiErrorJson(int http_status, std::string_view message, std::string_view code, std::string_view param) {
  std::string type = http_status >= 500 || http_status == 429 ? "server_error" : "invalid_request_error";
  if (http_status == 503 || http_status == 429) type = "server_busy";
  auto or_null = [](std::string_view v) { return v.empty() ? json(nullptr) : json(std::string(v)); };
  return Dump(
      {{"error",
        {{"message", std::string(message)}, {"type", type}, {"param", or_null(param)}, {"code", or_null(code)}}}});
}

}  // namespace coe
