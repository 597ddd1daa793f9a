// The chat gateway's conversations and parameters end to end (issue 24), against the
// replay server on loopback (testing/openai_replay.h), which keeps what it received:
// a conversation reaches every member whole in messages mode and is refused in template
// mode; every parameter of a chat request is forwarded (seen upstream with its value)
// or refused with 400 naming it; a pinned parameter wins and is said; tool calls agreed
// by two members are returned with their tool_calls; JSON replies agree as JSON.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "coe/cascade.h"
#include "coe/server.h"
#include "server_testing.h"

namespace coe {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

using testing::Reply;

// Members m1 and m2 (tier 1, unanimous) and m3 (tier 2), answering (C) to every
// question q0..q39 unless a test says otherwise; m1's catalogue has a system prompt.
class ChatGateway : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("coe_gateway_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    std::ofstream csv(dir_ / "answers.csv");
    csv << "id,label,m1,m2,m3,m1|cost,m2|cost,m3|cost\n";
    for (int i = 0; i < 40; ++i) csv << "q" << i << ",C,C,C,C,0.00001,0.00001,0.0001\n";
    csv.close();
    ASSERT_TRUE(replay_.Load((dir_ / "answers.csv").string()));
    replay_.KeepBodies(true);
    replay_.Start();
  }
  void TearDown() override {
    coe_.reset();
    replay_.Stop();
    fs::remove_all(dir_);
  }

  // Serves "gw": {m1, m2} -> {m3} with `input` ("template", the default, or "messages")
  // and the tier-1 `match`; `m1` is more of m1's catalogue table.
  void Serve(const std::string& input, const std::string& m1 = "", const std::string& match = "exact") {
    coe_.reset();
    const std::string cat =
        "[defaults]\nbackend = \"openai\"\nurl = \"http://127.0.0.1:" + std::to_string(replay_.port()) +
        "/v1\"\nprompt = \"{input}\"\nanswer = \"choice\"\nusd_per_mtok_in = 1.0\n"
        "usd_per_mtok_out = 1.0\ntimeout_ms = 20000\nretries = 0\n"
        "[models.m1]\nsystem = \"Catalogue system.\"\n" +
        m1 + "\n[models.m2]\n[models.m3]\n";
    const std::string cascade = (input == "template" ? "" : "input = \"" + input + "\"\n") +
                                "[[tiers]]\nmembers = [\"m1\", \"m2\"]\nmin_agreement = 1.0\n" + "match = \"" + match +
                                "\"\n[[tiers]]\nmembers = [\"m3\"]\n";
    auto c = ParseCatalogue(cat, "gw.toml", "");
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    auto spec = ParseCascade(cascade, "gw-cascade.toml");
    ASSERT_TRUE(spec.ok()) << spec.status().ToString();
    ServerOptions so;
    so.name = "gw";
    auto s = Server::Create(*spec, *c, EngineOptions{}, so);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    coe_ = std::move(*s);
    ASSERT_TRUE(coe_->Start("127.0.0.1", 0).ok());
  }

  Reply Post(const json& body) { return testing::Http(coe_->port(), "POST", "/v1/chat/completions", body.dump()); }

  static json Request(const std::string& id, json extra = json::object()) {
    json b = {{"model", "gw"}, {"messages", {{{"role", "user"}, {"content", "[id:" + id + "] Which option?"}}}}};
    b.update(extra);
    return b;
  }

  fs::path dir_;
  testing::OpenAiReplay replay_;
  std::unique_ptr<Server> coe_;
};

const json kConversation = {{{"role", "system"}, {"content", "Be brief."}},
                            {{"role", "user"}, {"content", "[id:q0] Which option?"}},
                            {{"role", "assistant"}, {"content", "The answer is (C)."}},
                            {{"role", "user"}, {"content", "[id:q1] And this one?"}}};

TEST_F(ChatGateway, AConversationReachesEveryMemberWholeInMessagesMode) {
  ASSERT_NO_FATAL_FAILURE(Serve("messages"));
  replay_.SetTexts({{"m1\nq1", "The answer is (A)."}});  // tier 1 disagrees: m3 is asked too
  Reply r = Post({{"model", "gw"}, {"messages", kConversation}});
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(r.body["coe"]["exit_tier"], 2) << r.raw;
  EXPECT_EQ(r.body["coe"]["answer"], "C") << r.raw;
  json with_system = json::array({{{"role", "system"}, {"content", "Catalogue system."}}});
  for (const json& m : kConversation) with_system.push_back(m);
  for (const std::string m : {"m1", "m2", "m3"}) {
    const auto got = replay_.Received(m);
    ASSERT_EQ(got.size(), 1u) << m;
    EXPECT_EQ(got[0]["messages"], m == "m1" ? with_system : kConversation) << m;  // the catalogue's system first
  }
  // A trailing assistant message (a prefill) reaches them too.
  replay_.ClearReceived();
  json prefill = kConversation;
  prefill.push_back({{"role", "assistant"}, {"content", "The answer is ("}});
  r = Post({{"model", "gw"}, {"messages", prefill}});
  ASSERT_EQ(r.status, 200) << r.raw;
  for (const std::string m : {"m2", "m3"}) {
    const auto got = replay_.Received(m);
    ASSERT_EQ(got.size(), 1u) << m;
    EXPECT_EQ(got[0]["messages"], prefill) << m;
  }
}

TEST_F(ChatGateway, TemplateModeRefusesWhatItWouldNotShowItsMembers) {
  ASSERT_NO_FATAL_FAILURE(Serve("template"));
  Reply r = Post({{"model", "gw"}, {"messages", kConversation}});
  EXPECT_EQ(r.status, 400) << r.raw;
  EXPECT_EQ(r.body["error"]["param"], "messages") << r.raw;
  const std::string message = r.body["error"]["message"];
  EXPECT_NE(message.find("model 'gw' reads one user message (its cascade has input = \"template\""), std::string::npos)
      << message;
  EXPECT_NE(message.find("this request also carries a system message and 2 earlier messages, which its members would "
                         "never see. To serve conversations, set input = \"messages\" in the cascade file"),
            std::string::npos)
      << message;
  r = Post({{"model", "gw"},
            {"messages",
             {{{"role", "user"}, {"content", "[id:q1] Which?"}}, {{"role", "assistant"}, {"content", "It is ("}}}}});
  EXPECT_EQ(r.status, 400) << r.raw;
  EXPECT_NE(r.raw.find("also carries a trailing assistant message"), std::string::npos) << r.raw;
  EXPECT_EQ(replay_.requests.load(), 0);  // nothing was sent
  // One user message: the catalogue's template over it (and m1's system prompt).
  r = Post(Request("q2"));
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(replay_.Received("m1").at(0)["messages"],
            json::parse(R"([{"role":"system","content":"Catalogue system."},)"
                        R"({"role":"user","content":"[id:q2] Which option?"}])"));
}

// Every parameter coe knows, with a value it takes and one it refuses, or (bad null)
// one it refuses whatever the value. It forwards those it takes, but kCoeOwn.
struct ParamCase {
  std::string name;
  json good, bad;
  json with = json::object();  // what else the request needs
};
const std::set<std::string> kCoeOwn = {"coe", "stream", "stream_options"};

const json kTools = json::parse(R"([{"type": "function", "function": {"name": "weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])");

std::vector<ParamCase> ParamCases() {
  return {
      {"audio", {{"voice", "alloy"}, {"format", "wav"}}, nullptr},
      {"frequency_penalty", 0.5, 2.5},
      {"function_call", "auto", nullptr},
      {"functions", json::array({{{"name", "f"}}}), nullptr},
      {"logit_bias", {{"50256", -100}}, nullptr},
      {"logprobs", true, "yes"},
      {"max_completion_tokens", 7, 0},
      {"max_tokens", 7, -1},
      {"metadata", {{"team", "a"}}, {{"team", 1}}},
      {"modalities", {"text"}, {"text", "audio"}},
      {"n", 1, 2},
      {"parallel_tool_calls", false, "no", {{"tools", kTools}}},
      {"prediction", {{"type", "content"}, {"content", "x"}}, {{"type", "content"}}},
      {"presence_penalty", -1.5, -2.5},
      {"prompt_cache_key", "k1", 5},
      {"reasoning_effort", "low", "extreme"},
      {"response_format", {{"type", "json_object"}}, {{"type", "xml"}}},
      {"safety_identifier", "user-1", true},
      {"seed", 42, 1.5},
      {"service_tier", "auto", "gold"},
      {"stop", {"END", "STOP"}, {"a", "b", "c", "d", "e"}},
      {"store", false, 1},
      {"coe", {{"max_cost_usd", 1}}, "cheap"},  // the cost ceiling (tests/gateway_test.cc)
      {"stream", true, "yes"},
      {"stream_options", {{"include_usage", true}}, {{"include_usage", "yes"}}, {{"stream", true}}},
      {"temperature", 0.7, "hot"},
      {"tool_choice", "required", "sometimes", {{"tools", kTools}}},
      {"tools", kTools, {{{"type", "function"}}}},
      {"top_logprobs", 2, 21, {{"logprobs", true}}},
      {"top_p", 0.9, 1.5},
      {"user", "user-1", 3},
      {"verbosity", "low", "loud"},
      {"web_search_options", json::object(), nullptr},
  };
}

TEST_F(ChatGateway, EveryParameterIsForwardedOrRefusedNamingIt) {
  ASSERT_NO_FATAL_FAILURE(Serve("template"));
  replay_.SetTexts({{"q30", "{\"answer\": \"C\"}"}});  // a JSON reply, for response_format
  for (const ParamCase& c : ParamCases()) {
    json extra = c.with;
    extra[c.name] = c.bad.is_null() ? c.good : c.bad;
    Reply r = Post(Request("q1", extra));
    EXPECT_EQ(r.status, 400) << c.name << ": " << r.raw;
    EXPECT_EQ(r.body["error"]["param"], c.name) << r.raw;
    EXPECT_NE(r.body["error"]["message"].get<std::string>().find("'" + c.name + "'"), std::string::npos) << r.raw;
    if (c.bad.is_null()) {
      EXPECT_NE(r.raw.find("'" + c.name + "' is not supported by coe: "), std::string::npos) << r.raw;
      continue;
    }
    replay_.ClearReceived();
    extra[c.name] = c.good;
    r = Post(Request(c.name == "response_format" ? "q30" : "q2", extra));
    ASSERT_EQ(r.status, 200) << c.name << ": " << r.raw;
    const auto got = replay_.Received();
    ASSERT_EQ(got.size(), 2u) << c.name;  // m1 and m2 agree: tier 1
    for (const json& b : got) {
      if (kCoeOwn.count(c.name))
        EXPECT_FALSE(b.contains(c.name)) << c.name << " is coe's own: " << b.dump();
      else
        EXPECT_EQ(b[c.name], c.good) << c.name << ": " << b.dump();
    }
  }
  // A request's max_completion_tokens replaces the catalogue's max_tokens; the
  // catalogue's temperature (0) is sent when the request has none.
  replay_.ClearReceived();
  ASSERT_EQ(Post(Request("q3", {{"max_completion_tokens", 9}})).status, 200);
  for (const json& b : replay_.Received()) {
    EXPECT_FALSE(b.contains("max_tokens")) << b.dump();
    EXPECT_EQ(b["temperature"], 0.0) << b.dump();
  }
  // Unknown fields are refused, never dropped; members are always asked for logprobs
  // (score rules read them), the client gets them only when it asks.
  Reply r = Post(Request("q4", {{"temprature", 0.2}}));
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.body["error"]["param"], "temprature");
  EXPECT_NE(r.raw.find("did you mean 'temperature'?"), std::string::npos) << r.raw;
  replay_.ClearReceived();
  r = Post(Request("q5", {{"logprobs", false}}));
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(replay_.Received().at(0)["logprobs"], true);
  EXPECT_TRUE(r.body["choices"][0]["logprobs"].is_null()) << r.raw;
}

// The table above holds every parameter coe knows, as coe uses it.
TEST(ChatGatewayParameters, TheTableHoldsEveryParameter) {
  const std::vector<ParamCase> cases = ParamCases();
  EXPECT_EQ(cases.size(), ChatParameters().size());
  for (const ChatParameter& p : ChatParameters()) {
    const auto c = std::find_if(cases.begin(), cases.end(), [&](const ParamCase& c) { return c.name == p.name; });
    ASSERT_NE(c, cases.end()) << p.name;
    EXPECT_EQ(c->bad.is_null(), p.use == ChatParameter::Use::kRefuse) << p.name;
    EXPECT_EQ(kCoeOwn.count(c->name) == 1, p.use == ChatParameter::Use::kCoe) << p.name;
  }
}

TEST_F(ChatGateway, APinnedParameterWinsAndIsSaid) {
  ASSERT_NO_FATAL_FAILURE(
      Serve("messages", "pin = [\"temperature\", \"max_tokens\"]\ntemperature = 0.2\nmax_tokens = 64"));
  Reply r = Post(Request("q1", {{"temperature", 0.9}, {"max_completion_tokens", 10}}));
  ASSERT_EQ(r.status, 200) << r.raw;
  const json m1 = replay_.Received("m1").at(0), m2 = replay_.Received("m2").at(0);
  EXPECT_EQ(m1["temperature"], 0.2);
  EXPECT_EQ(m1["max_tokens"], 64);
  EXPECT_FALSE(m1.contains("max_completion_tokens")) << m1.dump();
  EXPECT_EQ(m2["temperature"], 0.9);
  EXPECT_EQ(m2["max_completion_tokens"], 10);
  EXPECT_EQ(r.body["coe"]["pinned"], json::parse(R"({"max_completion_tokens":{"m1":64},"temperature":{"m1":0.2}})"))
      << r.raw;
  auto header = r.headers.find("coe-pinned");
  ASSERT_NE(header, r.headers.end());
  EXPECT_EQ(header->second, "max_completion_tokens, temperature");
  // The pinned value itself, or no value: nothing was overridden.
  r = Post(Request("q2", {{"temperature", 0.2}}));
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_FALSE(r.body["coe"].contains("pinned")) << r.raw;
  EXPECT_EQ(r.headers.count("coe-pinned"), 0u);
}

json ToolCall(const std::string& id, const std::string& arguments) {
  return json::array(
      {{{"id", id}, {"type", "function"}, {"function", {{"name", "weather"}, {"arguments", arguments}}}}});
}

TEST_F(ChatGateway, AToolCallAgreedByTwoMembersIsReturnedWithItsToolCalls) {
  ASSERT_NO_FATAL_FAILURE(Serve("messages"));
  const json m2_calls = ToolCall("call_m2", "{ \"days\": 3.0, \"city\": \"Paris\" }");
  replay_.SetToolCalls({{"m1\nq1", ToolCall("call_m1", R"({"city":"Paris","days":3})")},
                        {"m2\nq1", m2_calls},
                        {"m1\nq2", ToolCall("call_m1", R"({"city":"Paris","days":3})")},
                        {"m2\nq2", ToolCall("call_m2", R"({"city":"Rome","days":3})")}});
  Reply r = Post(Request("q1", {{"tools", kTools}}));
  ASSERT_EQ(r.status, 200) << r.raw;
  const json& choice = r.body["choices"][0];
  EXPECT_EQ(choice["message"]["tool_calls"], m2_calls) << r.raw;  // the last-listed member's, as it sent them
  EXPECT_TRUE(choice["message"]["content"].is_null()) << r.raw;
  EXPECT_EQ(choice["finish_reason"], "tool_calls");
  EXPECT_EQ(r.body["coe"]["exit_tier"], 1);
  EXPECT_EQ(r.body["coe"]["answer"], R"({"tool_calls":[{"arguments":{"city":"Paris","days":3},"name":"weather"}]})");
  // Streamed: the calls in a delta, each with its index.
  r = Post(Request("q1", {{"tools", kTools}, {"stream", true}}));
  ASSERT_EQ(r.status, 200) << r.raw;
  json streamed;
  std::string finish;
  std::stringstream events(r.raw);
  for (std::string line; std::getline(events, line);) {
    if (line.rfind("data: {", 0) != 0) continue;
    const json e = json::parse(line.substr(6));
    if (e["choices"].empty()) continue;
    if (e["choices"][0]["delta"].contains("tool_calls")) streamed = e["choices"][0]["delta"]["tool_calls"];
    if (e["choices"][0]["finish_reason"].is_string()) finish = e["choices"][0]["finish_reason"];
  }
  json indexed = m2_calls;
  indexed[0]["index"] = 0;
  EXPECT_EQ(streamed, indexed) << r.raw;
  EXPECT_EQ(finish, "tool_calls");
  // Other arguments: no agreement, the next tier answers, under exact and under number
  // matching alike (both calls end in 3).
  for (const char* match : {"exact", "number"}) {
    ASSERT_NO_FATAL_FAILURE(Serve("messages", "", match));
    r = Post(Request("q2", {{"tools", kTools}}));
    ASSERT_EQ(r.status, 200) << r.raw;
    EXPECT_EQ(r.body["coe"]["exit_tier"], 2) << match << ": " << r.raw;
    EXPECT_EQ(r.body["coe"]["answer"], "C") << r.raw;
  }
}

TEST_F(ChatGateway, JsonRepliesAgreeAsCanonicalJson) {
  ASSERT_NO_FATAL_FAILURE(Serve("messages"));
  replay_.SetTexts({{"m1\nq1", "{\"b\": 1, \"a\": [1.0]}"},
                    {"m2\nq1", "{\"a\":[1],\"b\":1}"},
                    {"m1\nq2", "{\"a\": 1}"},
                    {"m2\nq2", "not JSON: (C)"},
                    {"m3\nq2", "{\"a\": 1}"}});
  const json format = {{"response_format", {{"type", "json_object"}}}};
  Reply r = Post(Request("q1", format));
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(r.body["coe"]["exit_tier"], 1) << r.raw;
  EXPECT_EQ(r.body["coe"]["answer"], R"({"a":[1],"b":1})");
  EXPECT_EQ(r.body["choices"][0]["message"]["content"], "{\"a\":[1],\"b\":1}");
  r = Post(Request("q2", format));  // m2's reply is no JSON: no agreement
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(r.body["coe"]["exit_tier"], 2) << r.raw;
  EXPECT_EQ(r.body["coe"]["answer"], R"({"a":1})");
}

// `coe run` of a messages-mode cascade reads each JSONL record's conversation; a record
// without one is each member's failure, named.
TEST_F(ChatGateway, RunReadsEachRecordsConversationInMessagesMode) {
  ASSERT_NO_FATAL_FAILURE(Serve("messages"));
  std::ofstream(dir_ / "cascade.toml") << "input = \"messages\"\n[[tiers]]\nmembers = [\"m2\", \"m3\"]\n";
  std::ofstream(dir_ / "cat.toml") << "[defaults]\nbackend = \"openai\"\nurl = \"http://127.0.0.1:" << replay_.port()
                                   << "/v1\"\nanswer = \"choice\"\n[models.m2]\n[models.m3]\n";
  auto spec = ReadCascade((dir_ / "cascade.toml").string());
  auto cat = ReadCatalogue((dir_ / "cat.toml").string());  // no prompt: messages mode needs none
  ASSERT_TRUE(spec.ok() && cat.ok());
  auto cascade = Cascade::Create(*spec, *cat, EngineOptions{});
  ASSERT_TRUE(cascade.ok()) << cascade.status().ToString();
  InputBatch batch;
  batch.texts = {json{{"id", "a"}, {"messages", kConversation}}.dump(), R"({"id":"b","question":"x"})"};
  auto r = (*cascade)->Run(batch);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->labels.name(r->answer[0]), "C");
  EXPECT_EQ(replay_.Received("m3").at(0)["messages"], kConversation);
  EXPECT_EQ(r->answer[1], kAbstain);
  ASSERT_FALSE(r->failures.empty());
  EXPECT_NE(r->failures.back().error.find("the input has no 'messages'"), std::string::npos)
      << r->failures.back().error;
}

}  // namespace
}  // namespace coe
