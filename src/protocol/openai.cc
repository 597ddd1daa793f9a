// OpenAI chat-completions messages: the front door of `coe serve` (coe/protocol.h).
#include <nlohmann/json.hpp>

#include "coe/protocol.h"

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

// The text of a message's content: a string, or the "text" of its parts.
StatusOr<std::string> ContentText(const json& content, size_t index) {
  const std::string where = "messages[" + std::to_string(index) + "].content";
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) return InvalidArgumentError(where + " must be a string or an array of parts");
  std::string text;
  for (const json& part : content) {
    if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") || !part["text"].is_string())
      return InvalidArgumentError(where + ": only text parts ({\"type\":\"text\",\"text\":...}) are supported");
    if (!text.empty()) text += "\n";
    text += part["text"].get<std::string>();
  }
  return text;
}

}  // namespace

StatusOr<ChatRequest> ParseChatRequest(std::string_view body) {
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded()) return InvalidArgumentError("the request body is not valid JSON");
  if (!j.is_object()) return InvalidArgumentError("the request body must be a JSON object");
  ChatRequest q;
  if (!j.contains("model") || !j["model"].is_string() || j["model"].get<std::string>().empty())
    return InvalidArgumentError("'model' is required: a string naming a served cascade (see GET /v1/models)");
  q.model = j["model"].get<std::string>();
  if (!j.contains("messages") || !j["messages"].is_array() || j["messages"].empty())
    return InvalidArgumentError("'messages' is required: a non-empty array of {role, content}");
  const json& messages = j["messages"];
  bool found = false;
  for (size_t k = 0; k < messages.size(); ++k) {
    const json& m = messages[k];
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string())
      return InvalidArgumentError("messages[" + std::to_string(k) + "] must be an object with a string 'role'");
    if (m["role"] != "user") continue;
    if (!m.contains("content")) return InvalidArgumentError("messages[" + std::to_string(k) + "] has no 'content'");
    auto text = ContentText(m["content"], k);
    if (!text.ok()) return text.status();
    q.input = std::move(*text);
    found = true;
  }
  if (!found) return InvalidArgumentError("'messages' holds no message with role 'user'");
  if (j.contains("n") && !j["n"].is_null() && !(j["n"].is_number_integer() && j["n"].get<int64_t>() == 1))
    return InvalidArgumentError("'n' must be 1: a cascade answers with one completion");
  if (j.contains("stream") && !j["stream"].is_null()) {
    if (!j["stream"].is_boolean()) return InvalidArgumentError("'stream' must be true or false");
    q.stream = j["stream"].get<bool>();
  }
  if (j.contains("stream_options") && j["stream_options"].is_object()) {
    const json& so = j["stream_options"];
    q.include_usage =
        so.contains("include_usage") && so["include_usage"].is_boolean() && so["include_usage"].get<bool>();
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
