#include "backends/chat_body.h"

#include <map>
#include <nlohmann/json.hpp>

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

StatusOr<ChatBody> BuildChatBody(const ModelSpec& spec, const std::string& model, std::string_view record) {
  // Checked, then taken apart, without a copy of any of its strings.
  if (!json_text::Valid(record) || json_text::Kind(record) != '{')
    return InvalidArgumentError("the input is not a JSON object");
  const std::map<std::string, std::string_view> fields = json_text::Members(record);
  ChatBody b;
  Writer w{&b, record};
  w.Own("{\"logprobs\":true,\"max_tokens\":" + Dump(spec.max_tokens) + ",\"messages\":[");
  if (!spec.system.empty()) w.Own("{\"content\":" + Dump(spec.system) + ",\"role\":\"system\"},");
  w.Own("{\"content\":\"");
  // The template: literal text, escaped, and fields.
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
  w.Own("\",\"role\":\"user\"}],\"model\":" + Dump(model));
  if (spec.sample > 0) w.Own(",\"seed\":" + Dump(spec.sample));  // k samples: k different draws
  w.Own(",\"temperature\":" + Dump(spec.temperature) + "}");
  return b;
}

}  // namespace coe
