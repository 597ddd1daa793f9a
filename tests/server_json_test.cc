// The chat path's JSON without a DOM (issue 22: memory), against nlohmann as the
// oracle: protocol/json_text.h accepts what json::accept accepts, AppendJsonString
// writes what dump writes, ParseChatRequest reads the message the DOM reads, and the
// openai backend's request body (backends/chat_body.h) is the JSON the DOM-built one was.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "backends/chat_body.h"
#include "coe/protocol.h"
#include "protocol/json_text.h"
#include "protocol/oip.h"

namespace coe {
namespace {

using json = nlohmann::json;

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// Texts at the grammar's edges, valid and not.
const std::vector<std::string> kEdges = {
    "",
    " ",
    "{}",
    "[]",
    "{ }",
    "[ ]",
    "\xEF\xBB\xBF{}",
    "\xEF\xBB{}",
    "null",
    "true",
    "false",
    "nul",
    "truex",
    "0",
    "-0",
    "01",
    "-",
    "1.",
    "1.5",
    ".5",
    "1e5",
    "1E+5",
    "1e-5",
    "1e",
    "1e+",
    "+1",
    "1.5e3",
    "-12.25E-1",
    "\"\"",
    "\"a\"",
    "\"\\u0041\"",
    "\"\\u00e9\"",
    "\"\\uD83D\\uDE00\"",
    "\"\\uD83D\"",
    "\"\\uDE00\"",
    "\"\\uD83D\\u0041\"",
    "\"\\u12\"",
    "\"\\x\"",
    "\"\\/\\b\\f\\n\\r\\t\\\"\\\\\"",
    "\"a\nb\"",
    "\"\t\"",
    "\"\x7f\"",
    "\"\xC3\xA9\"",
    "\"\xC3\"",
    "\"\xE0\x80\x80\"",
    "\"\xED\xA0\x80\"",
    "\"\xF4\x90\x80\x80\"",
    "\"\xF0\x9F\x98\x80\"",
    "\"\xC0\xAF\"",
    "\"abc",
    "{\"a\":1}",
    "{\"a\" : [1, 2, {\"b\": null}]}",
    "{\"a\":1,}",
    "[1,]",
    "[1 2]",
    "{\"a\" 1}",
    "{\"a\":}",
    "{1:2}",
    "[[[[[]]]]]",
    "[[[[[]]]]",
    "{\"a\":1}}",
    "[1]x",
    "[1] ",
    "\n[1]\n",
    "{\"a\":{\"b\":{\"c\":[true,false,null]}}}",
    "[\"\\u0000\"]",
    "{\"\":\"\"}",
};

TEST(JsonText, ValidAcceptsWhatNlohmannAccepts) {
  std::vector<std::string> texts = kEdges;
  texts.push_back(std::string(100000, '[') + std::string(100000, ']'));
  // Mutations of valid documents: a byte changed, dropped or doubled.
  std::mt19937 rng(22);
  const std::string alphabet = "{}[]\":,\\ntrufalse0123456789.eE+-u \xC3\xA9\x01";
  const std::vector<std::string> seeds = {
      R"({"model":"chat","messages":[{"role":"user","content":"hi \"there\" \u00e9\n"}],"n":1})",
      R"([1, -2.5e3, true, null, {"a": ["b", {"c": "\ud83d\ude00"}]}])"};
  for (const std::string& seed : seeds)
    for (int k = 0; k < 3000; ++k) {
      std::string t = seed;
      const size_t at = rng() % t.size();
      switch (rng() % 3) {
        case 0:
          t[at] = alphabet[rng() % alphabet.size()];
          break;
        case 1:
          t.erase(at, 1);
          break;
        default:
          t.insert(at, 1, t[at]);
      }
      texts.push_back(t);
    }
  int valid = 0;
  for (const std::string& t : texts) {
    EXPECT_EQ(json_text::Valid(t), json::accept(t)) << "[" << t.substr(0, 200) << "]";
    valid += json::accept(t);
  }
  EXPECT_GT(valid, 500);  // both kinds, many of each
  EXPECT_GT(static_cast<int>(texts.size()) - valid, 500);
}

TEST(JsonText, MembersAndDecodedSizesAreTheDomsOnes) {
  const std::string t =
      R"({"b": [1, {"x": "}"}], "a" : "\u00e9\ud83d\ude00\n\"q\"", "a\u0062c": -1.5e2, "n": null, "a": "last"})";
  ASSERT_TRUE(json_text::Valid(t));
  const json dom = json::parse(t);
  const auto members = json_text::Members(t);
  ASSERT_EQ(members.size(), dom.size());
  for (const auto& [key, value] : members) {
    ASSERT_TRUE(dom.contains(key)) << key;
    EXPECT_EQ(json::parse(value), dom[key]) << key;
    if (json_text::Kind(value) == '"') {
      EXPECT_EQ(json_text::Decode(value), dom[key].get<std::string>());
      EXPECT_EQ(json_text::DecodedSize(value), dom[key].get<std::string>().size());
    }
  }
  EXPECT_EQ(json_text::Elements(members.at("b")).size(), 2u);
}

TEST(OipJson, AppendJsonStringWritesWhatNlohmannDumps) {
  std::mt19937 rng(7);
  std::vector<std::string> strings = {"",
                                      "plain",
                                      "quote \" backslash \\ slash /",
                                      "\x01\x1f\x7f\b\f\n\r\t",
                                      "\xC3\xA9\xF0\x9F\x98\x80",
                                      "\xC3",
                                      "\xFF\xFE",
                                      "a\xE0\x80\x80z"};
  for (int k = 0; k < 2000; ++k) {
    std::string s(rng() % 40, ' ');
    for (char& c : s) c = static_cast<char>(rng() % 4 == 0 ? rng() % 256 : 'a' + rng() % 26);
    strings.push_back(s);
  }
  for (const std::string& s : strings) {
    std::string got;
    oip::AppendJsonString(&got, s);
    EXPECT_EQ(got, Dump(json(s))) << s;
  }
}

// Metadata goes through the codec both ways: what the server writes, the remote
// backend reads back whole; another server's odd metadata is read as far as it is
// well formed; a body that is not an object is refused.
TEST(OipJson, MetadataReadsBackWhatItWrites) {
  const ModelMetadata m{"ladder",
                        "coe",
                        {"1"},
                        {{"input", "FP32", {-1, 3, 224, 224}}},
                        {{"label", "BYTES", {-1}}, {"probabilities", "FP32", {-1, 1000}}}};
  StatusOr<ModelMetadata> back = ParseModelMetadataJson(EncodeModelMetadataJson(m));
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(back->name, "ladder");
  EXPECT_EQ(back->platform, "coe");
  EXPECT_EQ(back->versions, std::vector<std::string>{"1"});
  ASSERT_EQ(back->inputs.size(), 1u);
  EXPECT_EQ(back->inputs[0].shape, (std::vector<int64_t>{-1, 3, 224, 224}));
  ASSERT_EQ(back->outputs.size(), 2u);
  EXPECT_EQ(back->outputs[1].name, "probabilities");
  EXPECT_EQ(back->outputs[1].datatype, "FP32");
  EXPECT_EQ(back->outputs[1].shape, (std::vector<int64_t>{-1, 1000}));

  StatusOr<ServerMetadata> server = ParseServerMetadataJson(EncodeServerMetadataJson({"coe", "0.1.0", {"x", "y"}}));
  ASSERT_TRUE(server.ok());
  EXPECT_EQ(server->name, "coe");
  EXPECT_EQ(server->extensions, (std::vector<std::string>{"x", "y"}));

  StatusOr<ModelMetadata> odd = ParseModelMetadataJson(
      R"({"name":7,"outputs":[5,{"name":"p","datatype":"FP32","shape":[-1,"n"]},{"name":"q","shape":[2]}]})");
  ASSERT_TRUE(odd.ok());
  EXPECT_EQ(odd->name, "");
  EXPECT_TRUE(odd->inputs.empty());
  ASSERT_EQ(odd->outputs.size(), 2u);  // the 5 is skipped
  EXPECT_TRUE(odd->outputs[0].shape.empty());
  EXPECT_EQ(odd->outputs[1].datatype, "");
  EXPECT_EQ(odd->outputs[1].shape, std::vector<int64_t>{2});

  EXPECT_EQ(ParseModelMetadataJson("[1]").status().message(), "metadata is not a JSON object");
  // The small messages, as the DOM would write them.
  EXPECT_EQ(EncodeErrorJson("a \"quoted\" \xFF"), Dump(json{{"error", "a \"quoted\" \xFF"}}));
  EXPECT_EQ(EncodeHealthJson("ready", true), Dump(json{{"ready", true}}));
  EXPECT_EQ(EncodeModelReadyJson("m\n", false), Dump(json{{"name", "m\n"}, {"ready", false}}));
  EXPECT_FALSE(ParseServerMetadataJson("{").ok());
}

// The DOM's reading of a chat request's last user message (the code it replaced).
std::string DomInput(const json& request) {
  std::string input;
  for (const json& m : request["messages"]) {
    if (m["role"] != "user") continue;
    if (m["content"].is_string()) {
      input = m["content"];
      continue;
    }
    input.clear();
    for (const json& part : m["content"]) {
      if (!input.empty()) input += "\n";
      input += part["text"].get<std::string>();
    }
  }
  return input;
}

TEST(ParseChatRequest, ReadsTheMessageTheDomReads) {
  const std::vector<json> requests = {
      {{"model", "m"}, {"messages", {{{"role", "user"}, {"content", "caf\u00e9 \"quoted\"\n\ttab \\ end"}}}}},
      {{"model", "m"},
       {"messages",
        {{{"role", "system"}, {"content", "5"}},
         {{"content", "first"}, {"role", "user"}},
         {{"role", "assistant"}, {"content", "x"}},
         {{"role", "user"},
          {"content",
           {{{"type", "text"}, {"text", ""}},
            {{"type", "text"}, {"text", "a\u0001"}},
            {{"type", "text"}, {"text", "b"}}}}}}},
       {"stream", true},
       {"stream_options", {{"include_usage", true}}}},
  };
  for (const json& r : requests) {
    const std::string body = r.dump();  // the request's views point into it
    auto q = ParseChatRequest(body);
    ASSERT_TRUE(q.ok()) << q.status().ToString();
    EXPECT_EQ(q->model, "m");
    auto record = ChatRecordJson(*q, "id", false);  // the user message, for a template
    ASSERT_TRUE(record.ok()) << record.status().ToString();
    EXPECT_EQ(json::parse(*record)["input"].get<std::string>(), DomInput(r)) << r.dump();
    EXPECT_EQ(q->stream, r.value("stream", false));
    EXPECT_EQ(q->include_usage, r.contains("stream_options"));
  }
  EXPECT_EQ(ParseChatRequest("{\"model\":\"m\",\"messages\":[").status().message(),
            "the request body is not valid JSON");
  EXPECT_EQ(ParseChatRequest(R"({"model":"m","messages":[{"role":"user","content":"x"}],"n":1.0})").status().message(),
            "'n' must be 1: a cascade answers with one completion");
  // Parts other than text are the members' to read (messages mode), not a template's.
  auto image = ParseChatRequest(R"({"model":"m","messages":[{"role":"user","content":[{"type":"image"}]}]})");
  ASSERT_TRUE(image.ok()) << image.status().ToString();
  EXPECT_EQ(ChatRecordJson(*image, "id", false).status().message(),
            "messages[0].content: only text parts ({\"type\":\"text\",\"text\":...}) are supported");
}

// The request body the openai backend built with a DOM before (the code it replaced).
json DomRequest(const ModelSpec& spec, const std::string& model, const json& record, size_t* prompt_bytes) {
  std::string prompt;
  const std::string& t = spec.prompt;
  for (size_t i = 0; i < t.size(); ++i) {
    if ((t[i] == '{' || t[i] == '}') && i + 1 < t.size() && t[i + 1] == t[i]) {
      prompt += t[i++];
    } else if (t[i] != '{') {
      prompt += t[i];
    } else {
      const size_t end = t.find('}', i);
      const json& v = record[t.substr(i + 1, end - i - 1)];
      prompt += v.is_string() ? v.get<std::string>() : v.dump();
      i = end;
    }
  }
  *prompt_bytes = prompt.size();
  json req = {{"model", model},
              {"messages", json::array()},
              {"max_tokens", spec.max_tokens},
              {"temperature", spec.temperature}};
  if (!spec.system.empty()) req["messages"].push_back({{"role", "system"}, {"content", spec.system}});
  req["messages"].push_back({{"role", "user"}, {"content", prompt}});
  if (spec.sample > 0) req["seed"] = spec.sample;
  req["logprobs"] = true;
  return req;
}

TEST(ChatBody, IsTheRequestTheDomBuilt) {
  ModelSpec spec;
  spec.prompt = "Q: {question} ({{braces}}) n={n} tags={tags} obj={obj} \"{input}\"\n";
  spec.system = "Be \"brief\".";
  spec.max_tokens = 17;
  spec.temperature = 0.25;
  const std::vector<json> records = {
      {{"question", "caf\u00e9 \\ \"q\"\n\u0001 \xF0\x9F\x98\x80"},
       {"n", -1.5e2},
       {"tags", {"a", 1, true}},
       {"obj", {{"k", "v"}}},
       {"input", ""},
       {"extra", nullptr}},
      {{"input", "x"}, {"question", ""}, {"n", 3}, {"tags", json::array()}, {"obj", json::object()}},
  };
  for (int sample : {0, 2})
    for (const json& record : records) {
      spec.sample = sample;
      // The record as another writer may give it: escapes nlohmann would not write.
      std::string text = record.dump();
      if (const size_t at = text.find("caf"); at != std::string::npos) text.replace(at, 3, "c\\u0061f");
      auto built = BuildChatBody(spec, "model-x", text);
      ASSERT_TRUE(built.ok()) << built.status().ToString();
      std::string body;
      for (std::string_view piece : built->Views(text)) body += piece;
      size_t prompt_bytes = 0;
      EXPECT_EQ(json::parse(body), DomRequest(spec, "model-x", record, &prompt_bytes)) << body;
      EXPECT_EQ(built->prompt_bytes, prompt_bytes);
    }
  EXPECT_EQ(BuildChatBody(spec, "m", "[1]").status().message(), "the input is not a JSON object");
  EXPECT_EQ(BuildChatBody(spec, "m", R"({"question":"q","n":null})").status().message(),
            "the prompt names field 'n', which the input lacks");
}

}  // namespace
}  // namespace coe
