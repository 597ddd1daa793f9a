#include "protocol/chat_params.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>

#include "base/numbers.h"
#include "base/words.h"
#include "protocol/json_text.h"

namespace coe::chat_params {
namespace {

using json = nlohmann::json;
using json_text::Kind;
using Use = ChatParameter::Use;

// How a parameter's value is checked (OpenAI's documented types and ranges).
enum class Check {
  kNone,
  kNumber,          // in [lo, hi]
  kInteger,         // in [lo, hi]
  kBool,            // true or false
  kString,          // any string
  kEnum,            // one of `values`
  kStop,            // a string or up to 4 strings
  kResponseFormat,  // {type: text | json_object | json_schema, json_schema: {name, ...}}
  kTools,           // [{type: function, function: {name, description, parameters, strict}}]
  kToolChoice,      // none | auto | required | {type: function, function: {name}}
  kMetadata,        // up to 16 string values under keys of up to 64 characters
  kModalities,      // ["text"]
  kPrediction,      // {type: content, content: a string or text parts}
  kStreamOptions,   // {include_usage: bool}
};

struct Rule {
  ChatParameter p;
  Check check = Check::kNone;
  double lo = 0, hi = 0;
  std::vector<std::string_view> values;  // kEnum
  std::string_view note = {};            // said after what was expected
};

constexpr double kInt32Max = 2147483647;
constexpr double kInt64 = 9223372036854775807.0;

// Every field of a request but model and messages, by name.
const std::vector<Rule>& Rules() {
  static const std::vector<Rule> rules = {
      {{"audio", Use::kRefuse, "coe answers with text; audio output is not relayed"}},
      {{"coe", Use::kCoe, {}}},  // {"max_cost_usd": x}: read by ParseChatRequest
      {{"frequency_penalty", Use::kForward, {}}, Check::kNumber, -2, 2},
      {{"function_call", Use::kRefuse, "deprecated by OpenAI; use tool_choice"}},
      {{"functions", Use::kRefuse, "deprecated by OpenAI; use tools"}},
      {{"logit_bias", Use::kRefuse,
        "its keys are token ids of one model's tokenizer, and a cascade's members are different models"}},
      {{"logprobs", Use::kForward, {}}, Check::kBool},
      {{"max_completion_tokens", Use::kForward, {}}, Check::kInteger, 1, kInt32Max},
      {{"max_tokens", Use::kForward, {}}, Check::kInteger, 1, kInt32Max},
      {{"metadata", Use::kForward, {}}, Check::kMetadata},
      {{"modalities", Use::kForward, {}}, Check::kModalities},
      {{"n", Use::kForward, {}}, Check::kInteger, 1, 1, {}, "a cascade answers with one completion"},
      {{"parallel_tool_calls", Use::kForward, {}}, Check::kBool},
      {{"prediction", Use::kForward, {}}, Check::kPrediction},
      {{"presence_penalty", Use::kForward, {}}, Check::kNumber, -2, 2},
      {{"prompt_cache_key", Use::kForward, {}}, Check::kString},
      {{"reasoning_effort", Use::kForward, {}}, Check::kEnum, 0, 0, {"minimal", "low", "medium", "high"}},
      {{"response_format", Use::kForward, {}}, Check::kResponseFormat},
      {{"safety_identifier", Use::kForward, {}}, Check::kString},
      {{"seed", Use::kForward, {}}, Check::kInteger, -kInt64, kInt64},
      {{"service_tier", Use::kForward, {}}, Check::kEnum, 0, 0, {"auto", "default", "flex", "scale", "priority"}},
      {{"stop", Use::kForward, {}}, Check::kStop},
      {{"store", Use::kForward, {}}, Check::kBool},
      {{"stream", Use::kCoe, {}}, Check::kBool},
      {{"stream_options", Use::kCoe, {}}, Check::kStreamOptions},
      {{"temperature", Use::kForward, {}}, Check::kNumber, 0, 2},
      {{"tool_choice", Use::kForward, {}}, Check::kToolChoice},
      {{"tools", Use::kForward, {}}, Check::kTools},
      {{"top_logprobs", Use::kForward, {}}, Check::kInteger, 0, 20},
      {{"top_p", Use::kForward, {}}, Check::kNumber, 0, 1},
      {{"user", Use::kForward, {}}, Check::kString},
      {{"verbosity", Use::kForward, {}}, Check::kEnum, 0, 0, {"low", "medium", "high"}},
      {{"web_search_options", Use::kRefuse, "coe's members are chat-completions endpoints; web search is not relayed"}},
  };
  return rules;
}

bool IsString(std::string_view v) { return Kind(v) == '"'; }
bool IsBool(std::string_view v) { return Kind(v) == 't' || Kind(v) == 'f'; }
std::string Str(std::string_view v) { return IsString(v) ? json_text::Decode(v) : std::string(); }

// A function's name as OpenAI takes it: 1 to 64 of a-z, A-Z, 0-9, _ and -.
bool IsFunctionName(std::string_view v) {
  if (!IsString(v)) return false;
  const std::string s = Str(v);
  return !s.empty() && s.size() <= 64 && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
}

// Whether the object `v` has only keys of `allowed`, and has `required` (when given).
bool Keys(std::string_view v, std::initializer_list<std::string_view> allowed, std::string_view required = {}) {
  if (Kind(v) != '{') return false;
  const auto m = json_text::Members(v);
  if (!required.empty() && !m.count(std::string(required))) return false;
  return std::all_of(m.begin(), m.end(), [&](const auto& kv) {
    return std::find(allowed.begin(), allowed.end(), kv.first) != allowed.end();
  });
}

std::string_view Member(std::string_view object, const char* key) {
  const auto m = json_text::Members(object);
  const auto it = m.find(key);
  return it == m.end() ? std::string_view() : it->second;
}

std::string Range(const Rule& r, const char* what) {
  if (r.lo == r.hi) return FormatDouble(r.lo);
  if (r.hi >= kInt64) return std::string("a 64-bit ") + what;
  return std::string("a") + (what[0] == 'i' ? "n " : " ") + what + " in [" + FormatDouble(r.lo) + ", " +
         FormatDouble(r.hi) + "]";
}

// "" when `v` is a number (an integer when `integer`) in the rule's range.
std::string CheckNumber(const Rule& r, std::string_view v, bool integer) {
  const std::string expected = Range(r, integer ? "integer" : "number");
  if (Kind(v) != '0') return expected;
  const json j = json::parse(v, nullptr, false);  // a number past a double's range is discarded
  if (!j.is_number() || (integer && !j.is_number_integer())) return expected;
  if (j.is_number_unsigned() && j.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) return expected;
  const double d = j.get<double>();
  return d >= r.lo && d <= r.hi ? "" : expected;
}

std::string CheckStop(std::string_view v) {
  const std::string expected = "a string or an array of up to 4 strings";
  if (IsString(v)) return "";
  const auto e = json_text::Elements(v);
  if (Kind(v) != '[' || e.size() > 4 || !std::all_of(e.begin(), e.end(), IsString)) return expected;
  return "";
}

std::string CheckResponseFormat(std::string_view v) {
  const std::string expected =
      "{\"type\": \"text\"}, {\"type\": \"json_object\"} or {\"type\": \"json_schema\", \"json_schema\": {\"name\", "
      "\"description\", \"schema\", \"strict\"}}";
  if (!Keys(v, {"type", "json_schema"}, "type")) return expected;
  const std::string type = Str(Member(v, "type"));
  if (type == "text" || type == "json_object") return Member(v, "json_schema").empty() ? "" : expected;
  if (type != "json_schema") return expected;
  const std::string_view s = Member(v, "json_schema");
  if (!Keys(s, {"name", "description", "schema", "strict"}, "name") || !IsFunctionName(Member(s, "name")))
    return expected + " (a name of 1 to 64 letters, digits, _ or -)";
  const std::string_view schema = Member(s, "schema"), strict = Member(s, "strict"), about = Member(s, "description");
  if ((!schema.empty() && Kind(schema) != '{') || (!strict.empty() && !IsBool(strict) && Kind(strict) != 'n') ||
      (!about.empty() && !IsString(about)))
    return expected;
  return "";
}

// "" when `v` is an array of function tools; their names to *names.
std::string CheckTools(std::string_view v, std::set<std::string>* names) {
  const std::string expected =
      "an array of up to 128 tools {\"type\": \"function\", \"function\": {\"name\", \"description\", \"parameters\", "
      "\"strict\"}} (coe relays function tools only), each name 1 to 64 letters, digits, _ or -";
  const auto tools = json_text::Elements(v);
  if (Kind(v) != '[' || tools.size() > 128) return expected;
  for (std::string_view t : tools) {
    if (!Keys(t, {"type", "function"}, "function") || Str(Member(t, "type")) != "function") return expected;
    const std::string_view f = Member(t, "function");
    if (!Keys(f, {"name", "description", "parameters", "strict"}, "name") || !IsFunctionName(Member(f, "name")))
      return expected;
    const std::string_view params = Member(f, "parameters"), strict = Member(f, "strict"),
                           about = Member(f, "description");
    if ((!params.empty() && Kind(params) != '{') || (!strict.empty() && !IsBool(strict) && Kind(strict) != 'n') ||
        (!about.empty() && !IsString(about)))
      return expected;
    names->insert(Str(Member(f, "name")));
  }
  return "";
}

std::string CheckToolChoice(std::string_view v) {
  const std::string expected =
      "\"none\", \"auto\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}";
  if (IsString(v)) {
    const std::string s = Str(v);
    return s == "none" || s == "auto" || s == "required" ? "" : expected;
  }
  if (!Keys(v, {"type", "function"}, "function") || Str(Member(v, "type")) != "function") return expected;
  const std::string_view f = Member(v, "function");
  return Keys(f, {"name"}, "name") && IsFunctionName(Member(f, "name")) ? "" : expected;
}

std::string CheckMetadata(std::string_view v) {
  const std::string expected = "an object of up to 16 strings of up to 512 characters, keys of up to 64";
  const auto m = json_text::Members(v);
  if (Kind(v) != '{' || m.size() > 16) return expected;
  for (const auto& [key, value] : m)
    if (key.size() > 64 || !IsString(value) || Str(value).size() > 512) return expected;
  return "";
}

std::string CheckPrediction(std::string_view v) {
  const std::string expected = "{\"type\": \"content\", \"content\": a string or an array of text parts}";
  if (!Keys(v, {"type", "content"}, "content") || Str(Member(v, "type")) != "content") return expected;
  const std::string_view c = Member(v, "content");
  if (IsString(c)) return "";
  const auto parts = json_text::Elements(c);
  const bool text =
      Kind(c) == '[' && std::all_of(parts.begin(), parts.end(), [](std::string_view p) {
        return Keys(p, {"type", "text"}, "text") && Str(Member(p, "type")) == "text" && IsString(Member(p, "text"));
      });
  return text ? "" : expected;
}

// What `v` should have been for rule `r` ("" when it is fine); tool names to *tools.
std::string Expected(const Rule& r, std::string_view v, std::set<std::string>* tools) {
  switch (r.check) {
    case Check::kNumber:
      return CheckNumber(r, v, false);
    case Check::kInteger:
      return CheckNumber(r, v, true);
    case Check::kBool:
      return IsBool(v) ? "" : "true or false";
    case Check::kString:
      return IsString(v) ? "" : "a string";
    case Check::kEnum: {
      std::string list;
      for (std::string_view e : r.values) list += (list.empty() ? "\"" : ", \"") + std::string(e) + "\"";
      const std::string s = Str(v);
      return std::find(r.values.begin(), r.values.end(), s) != r.values.end() ? "" : "one of " + list;
    }
    case Check::kStop:
      return CheckStop(v);
    case Check::kResponseFormat:
      return CheckResponseFormat(v);
    case Check::kTools:
      return CheckTools(v, tools);
    case Check::kToolChoice:
      return CheckToolChoice(v);
    case Check::kMetadata:
      return CheckMetadata(v);
    case Check::kModalities: {
      const auto e = json_text::Elements(v);
      const bool text = Kind(v) == '[' && std::all_of(e.begin(), e.end(), [](std::string_view m) {
                          return IsString(m) && Str(m) == "text";
                        });
      return text ? "" : "[\"text\"] (coe answers with text)";
    }
    case Check::kPrediction:
      return CheckPrediction(v);
    case Check::kStreamOptions:
      return Keys(v, {"include_usage"}) && (Member(v, "include_usage").empty() || IsBool(Member(v, "include_usage")))
                 ? ""
                 : "{\"include_usage\": true or false}";
    case Check::kNone:
      break;
  }
  return "";
}

Status Bad(std::string* param, std::string_view name, const std::string& message) {
  if (param) *param = std::string(name);
  return InvalidArgumentError(message);
}

// The checks between parameters, once each is known to be well-formed.
Status CheckTogether(const std::map<std::string, std::string_view>& given, const std::set<std::string>& tools,
                     const ChatRequest& q, std::string* param) {
  auto has = [&](const char* name) {
    const auto it = given.find(name);
    return it != given.end() && Kind(it->second) != 'n';
  };
  if (has("stream_options") && !q.stream)
    return Bad(param, "stream_options", "'stream_options' is only allowed with \"stream\": true");
  if (has("max_tokens") && has("max_completion_tokens"))
    return Bad(param, "max_tokens", "give one of 'max_tokens' and 'max_completion_tokens', not both");
  if (has("top_logprobs") && !q.logprobs) return Bad(param, "top_logprobs", "'top_logprobs' needs \"logprobs\": true");
  for (const char* name : {"tool_choice", "parallel_tool_calls"})
    if (has(name) && !has("tools")) return Bad(param, name, "'" + std::string(name) + "' is only allowed with 'tools'");
  if (has("tool_choice") && Kind(given.at("tool_choice")) == '{') {
    const std::string name = Str(Member(Member(given.at("tool_choice"), "function"), "name"));
    if (!tools.count(name))
      return Bad(param, "tool_choice", "'tool_choice' names function '" + name + "', which 'tools' does not hold");
  }
  return Status::Ok();
}

}  // namespace

Status Read(const std::map<std::string, std::string_view>& members, ChatRequest* q, std::string* param) {
  const std::vector<Rule>& rules = Rules();
  std::set<std::string> tools;
  for (const auto& [name, value] : members) {
    if (name == "model" || name == "messages") continue;
    const auto rule = std::find_if(rules.begin(), rules.end(), [&](const Rule& r) { return r.p.name == name; });
    if (rule == rules.end()) {
      std::vector<std::string_view> known = {"model", "messages"};
      for (const Rule& r : rules) known.push_back(r.p.name);
      const std::string near = ClosestWord(name, known);
      return Bad(param, name,
                 "unknown parameter '" + name + "'" + (near.empty() ? "" : " (did you mean '" + near + "'?)") +
                     ": coe refuses what it would not honour; the parameters it takes are listed in its README");
    }
    if (rule->p.use == Use::kRefuse)
      return Bad(param, name, "'" + name + "' is not supported by coe: " + std::string(rule->p.refusal));
    if (Kind(value) == 'n') continue;  // null: the parameter's default
    if (const std::string expected = Expected(*rule, value, &tools); !expected.empty())
      return Bad(param, name,
                 "'" + name + "' must be " + expected + (rule->note.empty() ? "" : ": " + std::string(rule->note)));
    if (name == "stream") q->stream = Kind(value) == 't';
    if (name == "stream_options") q->include_usage = Kind(Member(value, "include_usage")) == 't';
    if (name == "logprobs") q->logprobs = Kind(value) == 't';
    if (rule->p.use == Use::kForward) q->parameters.emplace_back(name, value);
  }
  return CheckTogether(members, tools, *q, param);
}

}  // namespace coe::chat_params

namespace coe {

const std::vector<ChatParameter>& ChatParameters() {
  static const std::vector<ChatParameter> list = [] {
    std::vector<ChatParameter> out;
    for (const auto& r : chat_params::Rules()) out.push_back(r.p);
    return out;
  }();
  return list;
}

}  // namespace coe
