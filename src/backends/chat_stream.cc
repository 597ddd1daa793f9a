#include "backends/chat_stream.h"

namespace coe {

using json = nlohmann::json;

std::vector<std::string_view> StreamingBody(std::vector<std::string_view> body, std::string* own) {
  *own = "{\"stream\":true,\"stream_options\":{\"include_usage\":true},";
  // The object's opening brace is the first byte of its first piece (chat_body.h).
  while (!body.empty() && body.front().empty()) body.erase(body.begin());
  if (body.empty() || body.front().front() != '{') return body;  // not an object: sent as it is
  body.front().remove_prefix(1);
  body.insert(body.begin(), *own);
  return body;
}

bool ChatStreamReader::Feed(std::string_view bytes) {
  while (!bytes.empty()) {
    const size_t nl = bytes.find('\n');
    line_.append(bytes.substr(0, nl));
    if (nl == std::string_view::npos) return true;  // the line goes on in the next bytes
    bytes.remove_prefix(nl + 1);
    std::string_view line = line_;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    bool ok = true;
    if (line.empty()) {  // the event ends
      if (!data_.empty()) ok = Event(data_);
      data_.clear();
    } else if (line.starts_with("data:")) {
      line.remove_prefix(5);
      if (line.starts_with(' ')) line.remove_prefix(1);
      if (!data_.empty()) data_ += '\n';
      data_ += line;
    }  // else a comment or another field
    line_.clear();
    if (!ok) return false;
  }
  return true;
}

// One event's data: a chunk, [DONE], or an error.
bool ChatStreamReader::Event(std::string_view data) {
  if (done_) return true;
  if (data == "[DONE]") {
    done_ = true;
    return true;
  }
  const json chunk = json::parse(data, nullptr, false);
  if (!chunk.is_object()) {
    error_ = "an event of the stream is not a JSON object: " + std::string(data.substr(0, 200));
    return false;
  }
  if (auto e = chunk.find("error"); e != chunk.end() && !e->is_null()) {
    const bool has_message = e->is_object() && e->contains("message") && (*e)["message"].is_string();
    error_ = "the stream ended with an error: " + (has_message ? (*e)["message"].get<std::string>() : e->dump());
    return false;
  }
  if (auto u = chunk.find("usage"); u != chunk.end() && u->is_object()) usage_ = *u;
  auto choices = chunk.find("choices");
  if (choices == chunk.end() || !choices->is_array() || choices->empty() || !(*choices)[0].is_object()) return true;
  const json& c0 = (*choices)[0];
  if (auto fr = c0.find("finish_reason"); fr != c0.end() && fr->is_string()) finish_reason_ = fr->get<std::string>();
  if (auto lp = c0.find("logprobs"); lp != c0.end() && lp->is_object()) Logprobs(*lp);
  auto delta = c0.find("delta");
  if (delta == c0.end() || !delta->is_object()) return true;
  if (auto calls = delta->find("tool_calls"); calls != delta->end() && calls->is_array()) ToolCalls(*calls);
  auto content = delta->find("content");
  if (content == delta->end() || !content->is_string()) return true;
  const std::string& piece = content->get_ref<const std::string&>();
  if (piece.empty()) return true;
  text_ += piece;
  return !sink_ || sink_->Text(piece);
}

// A chunk's logprobs: its arrays ("content", "refusal": the tokens) continue the ones
// before, its other values are kept as they first came.
void ChatStreamReader::Logprobs(const json& lp) {
  for (const auto& [key, value] : lp.items()) {
    json& kept = logprobs_[key];
    if (value.is_array()) {
      if (!kept.is_array()) kept = json::array();
      for (const json& t : value) kept.push_back(t);
    } else if (kept.is_null()) {
      kept = value;
    }
  }
}

// A chunk's tool-call deltas: by "index", the id and type as they come, the function's
// name and arguments continued piece by piece.
void ChatStreamReader::ToolCalls(const json& calls) {
  for (const json& d : calls) {
    if (!d.is_object()) continue;
    const size_t k = d.contains("index") && d["index"].is_number_unsigned() ? d["index"].get<size_t>() : 0;
    if (k >= kMaxToolCalls) continue;
    while (tool_calls_.size() <= k)
      tool_calls_.push_back({{"id", ""}, {"type", "function"}, {"function", {{"name", ""}, {"arguments", ""}}}});
    json& call = tool_calls_[k];
    for (const char* key : {"id", "type"})
      if (d.contains(key) && d[key].is_string()) call[key] = d[key];
    if (!d.contains("function") || !d["function"].is_object()) continue;
    for (const char* key : {"name", "arguments"})
      if (d["function"].contains(key) && d["function"][key].is_string())
        call["function"][key] = call["function"][key].get<std::string>() + d["function"][key].get<std::string>();
  }
}

StatusOr<json> ChatStreamReader::Completion() const {
  if (!error_.empty()) return FailedPreconditionError(error_);
  if (!done_ && finish_reason_.empty())
    return FailedPreconditionError("the stream ended before its last event (no finish_reason, no [DONE])");
  // A reply of tool calls alone has no content (null), as a plain response says.
  json message = {{"role", "assistant"},
                  {"content", text_.empty() && !tool_calls_.empty() ? json(nullptr) : json(text_)}};
  if (!tool_calls_.empty()) message["tool_calls"] = tool_calls_;
  json choice = {{"index", 0}, {"message", std::move(message)}};
  if (!finish_reason_.empty()) choice["finish_reason"] = finish_reason_;
  if (!logprobs_.empty()) choice["logprobs"] = logprobs_;
  json res = {{"object", "chat.completion"}, {"choices", json::array({std::move(choice)})}};
  if (!usage_.is_null()) res["usage"] = usage_;
  return res;
}

}  // namespace coe
