// The pieces of the chat gateway's conversations and parameters, one by one: canonical
// JSON, tool-call answers, structured answers under every match, the request's checks
// (ParseChatRequest), the record it becomes (ChatRecordJson) and the body each member
// sends (BuildChatBody). tests/chat_gateway_test.cc runs them end to end.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "backends/chat_body.h"
#include "backends/chat_reply.h"
#include "coe/cascade_spec.h"
#include "coe/catalogue.h"
#include "coe/protocol.h"
#include "coe/rules.h"
#include "protocol/json_text.h"

namespace coe {
namespace {

using json = nlohmann::json;

TEST(CanonicalJson, SortsKeysDropsSpaceAndWritesWholeNumbersAsIntegers) {
  EXPECT_EQ(json_text::Canonical(R"( { "b" : 1 , "a" : [ 1.0 , -0.0 , 2.5, 1e2, "\u0041" ] } )"),
            R"({"a":[1,0,2.5,100,"A"],"b":1})");
  EXPECT_EQ(json_text::Canonical(R"({"a":{"y":true,"x":null}})"), R"({"a":{"x":null,"y":true}})");
  EXPECT_EQ(json_text::Canonical("12345678901234567890"), "12345678901234567890");  // past 2^53: as written
  EXPECT_EQ(json_text::Canonical("9007199254740994.0"), "9.007199254740994e+15");   // a double past 2^53
  EXPECT_EQ(json_text::Canonical("1e300"), "1e+300");
  EXPECT_EQ(json_text::Canonical("{\"a\":1,\"a\":2}"), "{\"a\":2}");
  EXPECT_EQ(json_text::Canonical("[1,"), std::nullopt);
  EXPECT_EQ(json_text::Canonical("not json"), std::nullopt);
  EXPECT_EQ(json_text::Canonical("1e400"), std::nullopt);
  const std::string deep =
      std::string(json_text::kMaxCanonicalDepth + 1, '[') + std::string(json_text::kMaxCanonicalDepth + 1, ']');
  EXPECT_EQ(json_text::Canonical(deep), std::nullopt);
  const std::string ok =
      std::string(json_text::kMaxCanonicalDepth, '[') + std::string(json_text::kMaxCanonicalDepth, ']');
  EXPECT_EQ(json_text::Canonical(ok), ok);
  EXPECT_EQ(json_text::Canonical("[\"[[[[\"]"), "[\"[[[[\"]");  // brackets in strings are no depth
}

json Call(const std::string& id, const std::string& name, const std::string& arguments) {
  return {{"id", id}, {"type", "function"}, {"function", {{"name", name}, {"arguments", arguments}}}};
}

TEST(ToolCallsAnswer, NamesAndArgumentsAsCanonicalJsonInAnyOrder) {
  std::string why;
  const std::string a = ToolCallsAnswer(
      json::array({Call("call_1", "weather", R"({"city": "Paris", "days": 3.0})"), Call("call_2", "time", "{}")}),
      &why);
  EXPECT_EQ(a, R"({"tool_calls":[{"arguments":{"city":"Paris","days":3},"name":"weather"},)"
               R"({"arguments":{},"name":"time"}]})");
  // Other ids, other key order and spacing, the calls the other way round: the same.
  EXPECT_EQ(ToolCallsAnswer(
                json::array({Call("x", "time", " { } "), Call("y", "weather", R"({"days":3,"city":"Paris"})")}), &why),
            a);
  // Arguments given as a JSON value (some servers do) read as their text would.
  json object_args = Call("z", "weather", "");
  object_args["function"]["arguments"] = {{"days", 3}, {"city", "Paris"}};
  EXPECT_EQ(ToolCallsAnswer(json::array({object_args, Call("w", "time", "{}")}), &why), a);
  EXPECT_NE(ToolCallsAnswer(
                json::array({Call("a", "weather", R"({"city":"Paris","days":4})"), Call("b", "time", "{}")}), &why),
            a);
  EXPECT_EQ(ToolCallsAnswer(json::array({Call("a", "weather", "{city: Paris}")}), &why), "");
  EXPECT_EQ(why, "tool call 1 (weather) has arguments that are not JSON");
  EXPECT_EQ(ToolCallsAnswer(json::array({json{{"id", "a"}, {"type", "function"}}}), &why), "");
  EXPECT_EQ(why, "tool call 1 is not a function call with a name");
}

// Tool calls and JSON replies compare exactly under every match: under "number" two
// calls that end in the same number, under jaccard two objects with the same words,
// would otherwise agree.
TEST(StructuredAnswers, CompareExactlyUnderEveryMatch) {
  const std::string paris = R"({"tool_calls":[{"arguments":{"city":"Paris","days":3},"name":"weather"}]})";
  const std::string rome = R"({"tool_calls":[{"arguments":{"city":"Rome","days":3},"name":"weather"}]})";
  const std::string words_a = R"({"a":"x y","b":"z"})", words_b = R"({"a":"x","b":"y z"})";
  EXPECT_TRUE(IsStructuredAnswer(paris));
  EXPECT_TRUE(IsStructuredAnswer("[1]"));
  EXPECT_FALSE(IsStructuredAnswer("{not json}"));
  EXPECT_FALSE(IsStructuredAnswer("42"));
  for (const char* m : {"exact", "number", "jaccard:0.5"}) {
    const AnswerMatch match = *AnswerMatch::Parse(m);
    EXPECT_FALSE(match.Same(paris, rome)) << m;
    EXPECT_TRUE(match.Same(paris, paris)) << m;
    EXPECT_FALSE(match.Same(words_a, words_b)) << m;
    EXPECT_FALSE(match.Same(paris, "3")) << m;
    LabelSet labels;
    const int p = labels.Intern(paris), r = labels.Intern(rome), a = labels.Intern(words_a), b = labels.Intern(words_b);
    AnswerMatcher matcher(match, labels);
    EXPECT_FALSE(matcher.Same(p, r)) << m;
    EXPECT_FALSE(matcher.Same(a, b)) << m;
    EXPECT_TRUE(matcher.Same(p, p)) << m;
    MemberOutput outs[3];
    outs[0].label = p;
    outs[1].label = r;
    outs[2].label = p;
    const TierVote v = TallyVotes(outs, &matcher);
    EXPECT_EQ(v.plurality, p) << m;
    EXPECT_EQ(v.votes, 2) << m;
  }
  // Text answers still match as before.
  EXPECT_TRUE(AnswerMatch::Parse("number")->Same("It is 3.", "3"));
}

// The message of a refused request and the parameter it names.
std::pair<std::string, std::string> Refusal(const json& body) {
  std::string param;
  const std::string text = body.dump();
  auto q = ParseChatRequest(text, &param);
  return {q.ok() ? "" : q.status().message(), param};
}

json Request(json extra = json::object()) {
  json b = {{"model", "m"}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}};
  b.update(extra);
  return b;
}

TEST(ParseChatRequest, NamesTheParameterOfEachRefusal) {
  using P = std::pair<std::string, std::string>;
  EXPECT_EQ(Refusal(Request({{"temperature", "hot"}})), P("'temperature' must be a number in [0, 2]", "temperature"));
  EXPECT_EQ(Refusal(Request({{"temperature", 2.5}})), P("'temperature' must be a number in [0, 2]", "temperature"));
  EXPECT_EQ(Refusal(Request({{"max_tokens", 0}})),
            P("'max_tokens' must be an integer in [1, 2147483647]", "max_tokens"));
  EXPECT_EQ(Refusal(Request({{"n", 2}})), P("'n' must be 1: a cascade answers with one completion", "n"));
  EXPECT_EQ(Refusal(Request({{"temprature", 0}})).first,
            "unknown parameter 'temprature' (did you mean 'temperature'?): coe refuses what it would not honour; the "
            "parameters it takes are listed in its README");
  EXPECT_EQ(Refusal(Request({{"logit_bias", {{"50256", -100}}}})).second, "logit_bias");
  EXPECT_EQ(Refusal(Request({{"stream_options", {{"include_usage", true}}}})),
            P("'stream_options' is only allowed with \"stream\": true", "stream_options"));
  EXPECT_EQ(Refusal(Request({{"top_logprobs", 3}})), P("'top_logprobs' needs \"logprobs\": true", "top_logprobs"));
  EXPECT_EQ(Refusal(Request({{"max_tokens", 5}, {"max_completion_tokens", 5}})).second, "max_tokens");
  EXPECT_EQ(Refusal(Request({{"tool_choice", "auto"}})).second, "tool_choice");
  const json tools = {{{"type", "function"}, {"function", {{"name", "f"}}}}};
  EXPECT_EQ(
      Refusal(Request({{"tools", tools}, {"tool_choice", {{"type", "function"}, {"function", {{"name", "g"}}}}}})),
      P("'tool_choice' names function 'g', which 'tools' does not hold", "tool_choice"));
  EXPECT_EQ(
      Refusal(Request({{"tools", tools}, {"tool_choice", {{"type", "function"}, {"function", {{"name", "f"}}}}}})),
      P("", ""));
  EXPECT_EQ(Refusal({{"model", "m"}, {"messages", {{{"role", "robot"}, {"content", "x"}}}}}),
            P("messages[0]: role 'robot' is none of system, developer, user, assistant, tool", "messages"));
  EXPECT_EQ(Refusal({{"model", "m"}, {"messages", {{{"role", "user"}, {"content", 5}}}}}),
            P("messages[0] has no 'content' (a string or an array of parts)", "messages"));
  EXPECT_EQ(Refusal({{"messages", {{{"role", "user"}, {"content", "x"}}}}}).second, "model");
  // null is a parameter's default: neither checked nor sent.
  const std::string body = Request({{"temperature", nullptr}, {"stop", nullptr}, {"seed", 7}}).dump();
  auto q = ParseChatRequest(body);
  ASSERT_TRUE(q.ok());
  ASSERT_EQ(q->parameters.size(), 1u);
  EXPECT_EQ(q->parameters[0].first, "seed");
  EXPECT_EQ(q->parameters[0].second, "7");
}

TEST(ParseChatRequest, SaysWhatAConversationHoldsBesidesItsUserMessage) {
  auto beyond = [](std::vector<std::string> roles) {
    json messages = json::array();
    for (const std::string& r : roles) messages.push_back({{"role", r}, {"content", r}});
    const std::string body = json{{"model", "m"}, {"messages", messages}}.dump();
    auto q = ParseChatRequest(body);
    EXPECT_TRUE(q.ok()) << q.status().ToString();
    return q.ok() ? q->beyond_user : "?";
  };
  EXPECT_EQ(beyond({"user"}), "");
  EXPECT_EQ(beyond({"system", "user"}), "a system message");
  EXPECT_EQ(beyond({"system", "user", "assistant", "user"}), "a system message and 2 earlier messages");
  EXPECT_EQ(beyond({"developer", "system", "user", "assistant"}), "2 system messages and a trailing assistant message");
  EXPECT_EQ(beyond({"user", "user"}), "an earlier message");
}

TEST(ChatRecordJson, CarriesTheMessagesOrTheUserTextAndTheParameters) {
  const std::string body =
      R"({"model":"m","temperature":0.5,"stop":["x"],"stream":true,"messages":[{"role":"system","content":"s"},)"
      R"({"role":"user","content":[{"type":"text","text":"a\"b"},{"type":"text","text":"c"}]}]})";
  auto q = ParseChatRequest(body);
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  auto messages = ChatRecordJson(*q, "id-1", true);
  ASSERT_TRUE(messages.ok());
  EXPECT_EQ(json::parse(*messages), json::parse(R"({"id":"id-1","messages":)" + std::string(q->messages_json) +
                                                R"(,"coe.parameters":{"stop":["x"],"temperature":0.5}})"));
  auto input = ChatRecordJson(*q, "id-1", false);
  ASSERT_TRUE(input.ok());
  EXPECT_EQ(json::parse(*input),
            json::parse(R"({"id":"id-1","input":"a\"b\nc","coe.parameters":{"stop":["x"],"temperature":0.5}})"));
  auto image = ParseChatRequest(R"({"model":"m","messages":[{"role":"user","content":[{"type":"image_url"}]}]})");
  ASSERT_TRUE(image.ok());  // forwarded as it is in messages mode
  EXPECT_TRUE(ChatRecordJson(*image, "i", true).ok());
  EXPECT_EQ(ChatRecordJson(*image, "i", false).status().message(),
            "messages[0].content: only text parts ({\"type\":\"text\",\"text\":...}) are supported");
}

std::string Joined(const ChatBody& b, std::string_view record) {
  std::string out;
  for (std::string_view piece : b.Views(record)) out += piece;
  return out;
}

TEST(ChatBody, SendsTheConversationAndTheParametersTheCatalogueDoesNotPin) {
  ModelSpec spec;
  spec.system = "Catalogue says.";
  spec.max_tokens = 64;
  spec.temperature = 0;
  const json conversation = {{{"role", "system"}, {"content", "Be brief."}},
                             {{"role", "user"}, {"content", "Hi"}},
                             {{"role", "assistant"}, {"content", "Hello"}},
                             {{"role", "user"}, {"content", "Why?"}}};
  const json params = {{"temperature", 0.7}, {"max_completion_tokens", 9},
                       {"stop", "END"},      {"logprobs", false},
                       {"seed", 5},          {"response_format", {{"type", "json_object"}}}};
  const std::string record = json{{"id", "r"}, {"messages", conversation}, {"coe.parameters", params}}.dump();
  auto b = BuildChatBody(spec, "model-x", record, true);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  json want = {{"model", "model-x"},
               {"logprobs", true},
               {"temperature", 0.7},
               {"seed", 5},
               {"stop", "END"},
               {"max_completion_tokens", 9},
               {"messages", json::array({{{"role", "system"}, {"content", "Catalogue says."}}})},
               {"response_format", {{"type", "json_object"}}}};
  for (const json& m : conversation) want["messages"].push_back(m);
  EXPECT_EQ(json::parse(Joined(*b, record)), want);
  EXPECT_TRUE(b->json_reply);
  EXPECT_FALSE(b->keep_logprobs);
  // Pinned: the catalogue's temperature and max_tokens; a sample's seed.
  spec.pin = {"temperature", "max_tokens"};
  spec.sample = 2;
  spec.system.clear();
  b = BuildChatBody(spec, "model-x", record, true);
  ASSERT_TRUE(b.ok());
  want.erase("max_completion_tokens");
  want["max_tokens"] = 64;
  want["temperature"] = 0.0;
  want["seed"] = 2;
  want["messages"] = conversation;
  EXPECT_EQ(json::parse(Joined(*b, record)), want);
  EXPECT_EQ(PinnedParameters(spec),
            (std::map<std::string, std::string>{{"max_tokens", "64"}, {"seed", "2"}, {"temperature", "0.0"}}));
  // Template mode: the template over the record's fields, the parameters all the same.
  spec.prompt = "Q: {input}";
  const std::string templated = json{{"input", "x"}, {"coe.parameters", {{"logprobs", true}}}}.dump();
  b = BuildChatBody(spec, "m", templated, false);
  ASSERT_TRUE(b.ok());
  EXPECT_TRUE(b->keep_logprobs);
  EXPECT_EQ(json::parse(Joined(*b, templated))["messages"], json::parse(R"([{"role":"user","content":"Q: x"}])"));
  EXPECT_EQ(BuildChatBody(spec, "m", R"({"input":"x"})", true).status().message(),
            "the input has no 'messages' (a non-empty array): the cascade's input = \"messages\" sends each record's "
            "conversation");
  EXPECT_EQ(BuildChatBody(spec, "m", R"({"input":"x","coe.parameters":[1]})", false).status().message(),
            "the input's 'coe.parameters' is not an object");
}

TEST(CascadeSpec, InputSaysHowMembersSeeAChatRequest) {
  auto s = ParseCascade("input = \"messages\"\n[[tiers]]\nmembers = [\"a\"]\n", "c.toml");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->input, ChatInput::kMessages);
  auto back = ParseCascade(CascadeToToml(*s, {}), "back.toml");
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->input, ChatInput::kMessages);
  EXPECT_EQ(ParseCascade("[[tiers]]\nmembers = [\"a\"]\n", "c.toml")->input, ChatInput::kTemplate);
  EXPECT_EQ(ParseCascade("input = \"template\"\n[[tiers]]\nmembers = [\"a\"]\n", "c.toml")->input,
            ChatInput::kTemplate);
  EXPECT_EQ(CascadeToToml(*ParseCascade("[[tiers]]\nmembers = [\"a\"]\n", "c.toml"), {}).find("input"),
            std::string::npos);
  auto bad = ParseCascade("input = \"chat\"\n[[tiers]]\nmembers = [\"a\"]\n", "c.toml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("c.toml:1:9: 'input' must be \"template\""), std::string::npos)
      << bad.status().message();
}

TEST(Catalogue, PinNamesParametersTheCatalogueSets) {
  auto c =
      ParseCatalogue("[models.x]\nbackend = \"openai\"\npin = [\"temperature\", \"max_tokens\"]\n", "cat.toml", "");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->Find("x")->pin, (std::vector<std::string>{"temperature", "max_tokens"}));
  auto back = ParseCatalogue(CatalogueToToml(*c), "back.toml", "");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->Find("x")->pin, c->Find("x")->pin);
  for (const char* wrong : {"[\"top_p\"]", "[\"temperature\", \"temperature\"]", "\"temperature\""}) {
    auto bad = ParseCatalogue(std::string("[models.x]\npin = ") + wrong + "\n", "cat.toml", "");
    ASSERT_FALSE(bad.ok()) << wrong;
    EXPECT_NE(bad.status().message().find("key 'pin'"), std::string::npos) << bad.status().message();
  }
}

}  // namespace
}  // namespace coe
