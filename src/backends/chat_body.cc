#include "backends/chat_body.h"

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>

#include "coe/protocol.h"
#include "protocol/json_text.h"
#include "protocol/oip.h"

namespace coe {
namespace {

using json = nlohmann::json;

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// Appends to the body: its own text, or a range of the record.
struct Writer {
  ChatBody* b;
  std::string_view record;
  void Own(std::string_view text) { Escaped(text, false); }
  void Escaped(std::string_view text, bool escape) {
    const size_t at = b->own.size();
    if (escape)
      oip::AppendJsonEscaped(&b->own, text);
    else
      b->own += text;
    const size_t n = b->own.size() - at;
    if (!b->pieces.empty() && !b->pieces.back().in_record)
      b->pieces.back().size += n;
    else
      b->pieces.push_back({false, at, n});
  }
  void Record(std::string_view part) {
    b->pieces.push_back({true, static_cast<size_t>(part.data() - record.data()), part.size()});
  }
};

}  // namespace

std::vector<std::string_view> ChatBody::Views(std::string_view record) const {
  std::vector<std::string_view> out;
  for (const Piece& p : pieces) out.push_back((p.in_record ? record : std::string_view(own)).substr(p.at, p.size));
  return out;
}

namespace {

// The filled template of `spec` for the record's `fields`, as the user message's
// escaped text: literal text, escaped, and fields (strings as the JSON text they are).
Status WriteTemplate(const ModelSpec& spec, const std::map<std::string, std::string_view>& fields, Writer& w,
                     ChatBody& b) {
  std::string literal;
  const std::string& t = spec.prompt;
  for (size_t i = 0; i < t.size(); ++i) {
    if ((t[i] == '{' || t[i] == '}') && i + 1 < t.size() && t[i + 1] == t[i]) {
      literal += t[i++];
      continue;
    }
    if (t[i] != '{') {
      literal += t[i];
      continue;
    }
    const size_t end = t.find('}', i);
    const std::string name = t.substr(i + 1, end - i - 1);
    auto it = fields.find(name);
    if (it == fields.end() || json_text::Kind(it->second) == 'n')
      return InvalidArgumentError("the prompt names field '" + name + "', which the input lacks");
    w.Escaped(literal, true);
    b.prompt_bytes += literal.size();
    literal.clear();
    if (json_text::Kind(it->second) == '"') {  // a string: its escaped text as it is
      w.Record(json_text::Inside(it->second));
      b.prompt_bytes += json_text::DecodedSize(it->second);
    } else {  // another value: its JSON text, as nlohmann writes it
      const std::string dumped = Dump(json::parse(it->second));
      w.Escaped(dumped, true);
      b.prompt_bytes += dumped.size();
    }
    i = end;
  }
  w.Escaped(literal, true);
  b.prompt_bytes += literal.size();
  return Status::Ok();
}

// Whether the catalogue's value of the request parameter `name` is sent instead of the
// record's: pinned, a sample's seed, or logprobs (always asked for: the answer's
// probability is read from them).
bool CatalogueWins(const ModelSpec& spec, std::string_view name) {
  auto pinned = [&](std::string_view p) { return std::find(spec.pin.begin(), spec.pin.end(), p) != spec.pin.end(); };
  if (name == "temperature") return pinned("temperature");
  if (name == "max_tokens" || name == "max_completion_tokens") return pinned("max_tokens");
  if (name == "seed") return spec.sample > 0;
  return name == "logprobs";
}

// The record's parameters to send (those the catalogue does not override), and what
// they ask of the reply.
StatusOr<std::vector<std::pair<std::string, std::string_view>>> RecordParameters(
    const ModelSpec& spec, const std::map<std::string, std::string_view>& fields, ChatBody* b) {
  std::vector<std::pair<std::string, std::string_view>> out;
  const auto it = fields.find(kRecordParameters);
  if (it == fields.end()) return out;
  if (json_text::Kind(it->second) != '{')
    return InvalidArgumentError(std::string("the input's '") + kRecordParameters + "' is not an object");
  for (const auto& [name, value] : json_text::Members(it->second)) {
    if (name == "logprobs") b->keep_logprobs = json_text::Kind(value) == 't';
    if (name == "response_format") {
      const auto f = json_text::Members(value);
      const auto type = f.find("type");
      const std::string t =
          type == f.end() || json_text::Kind(type->second) != '"' ? "" : json_text::Decode(type->second);
      b->json_reply = t == "json_object" || t == "json_schema";
    }
    if (!CatalogueWins(spec, name)) out.emplace_back(name, value);
  }
  return out;
}

}  // namespace

StatusOr<ChatBody> BuildChatBody(const ModelSpec& spec, const std::string& model, std::string_view record,
                                 bool messages) {
  // Checked, then taken apart, without a copy of any of its strings.
  if (!json_text::Valid(record) || json_text::Kind(record) != '{')
    return InvalidArgumentError("the input is not a JSON object");
  const std::map<std::string, std::string_view> fields = json_text::Members(record);
  ChatBody b;
  Writer w{&b, record};
  COE_ASSIGN_OR_RETURN(const auto params, RecordParameters(spec, fields, &b));
  auto given = [&](std::string_view name) {
    return std::any_of(params.begin(), params.end(), [&](const auto& p) { return p.first == name; });
  };
  w.Own("{\"logprobs\":true");
  if (!given("max_tokens") && !given("max_completion_tokens")) w.Own(",\"max_tokens\":" + Dump(spec.max_tokens));
  w.Own(",\"messages\":[");
  if (!spec.system.empty()) w.Own("{\"content\":" + Dump(spec.system) + ",\"role\":\"system\"},");
  if (messages) {  // the conversation, as the record holds it
    const auto it = fields.find("messages");
    const std::string_view m = it == fields.end() ? std::string_view() : it->second;
    const std::string_view inner = json_text::Kind(m) == '[' ? m.substr(1, m.size() - 2) : std::string_view();
    if (inner.find_first_not_of(" \t\r\n") == std::string_view::npos)  // checked without a scan of its elements
      return InvalidArgumentError(
          "the input has no 'messages' (a non-empty array): the cascade's input = \"messages\" "
          "sends each record's conversation");
    w.Record(inner);
    b.prompt_bytes += inner.size();
    w.Own("]");
  } else {
    w.Own("{\"content\":\"");
    COE_RETURN_IF_ERROR(WriteTemplate(spec, fields, w, b));
    w.Own("\",\"role\":\"user\"}]");
  }
  w.Own(",\"model\":" + Dump(model));
  if (spec.sample > 0) w.Own(",\"seed\":" + Dump(spec.sample));  // k samples: k different draws
  if (!given("temperature")) w.Own(",\"temperature\":" + Dump(spec.temperature));
  for (const auto& [name, value] : params) {  // the request's own JSON text
    std::string key = ",";
    oip::AppendJsonString(&key, name);
    w.Own(key + ":");
    w.Record(value);
  }
  w.Own("}");
  return b;
}

std::map<std::string, std::string> PinnedParameters(const ModelSpec& spec) {
  std::map<std::string, std::string> out;
  for (const std::string& p : spec.pin) out[p] = p == "temperature" ? Dump(spec.temperature) : Dump(spec.max_tokens);
  if (spec.sample > 0) out["seed"] = Dump(spec.sample);
  return out;
}

}  // namespace coe
