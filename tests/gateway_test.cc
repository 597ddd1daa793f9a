// The chat gateway's front door (issue 24, deliverable 5), on loopback against the
// replay server of real chat completions (testing/openai_replay.h): the API key, GET
// /v1/models/{id}, the exact-request response cache and the per-request cost ceiling.
// What the upstream did is read from the replay server's own counts.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "server_testing.h"

namespace coe {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using testing::OpenAiReplay;

// The ladder of tests/llm_test.cc: {mistral, mixtral, llama70} unanimous, then gpt4.
const char* const kTier1[] = {"mistralai/mistral-7b-chat", "mistralai/mixtral-8x7b-chat", "meta/llama-2-70b-chat"};
const char* const kTier2 = "gpt-4-1106-preview";
const char* const kTemplate = "{input}\\nAnswer with one letter.";

class Gateway : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* shared = std::getenv("COE_SHARED_DATA");
    const std::string arc =
        (shared ? shared : testing::SourceDir() + "/../shared/data") + "/routerbench/arc_challenge_test.csv";
    if (!fs::exists(arc)) GTEST_SKIP() << "no shared RouterBench data at " << arc;
    ASSERT_TRUE(upstream_.Load(arc));
    upstream_.Start();
    dir_ = fs::temp_directory_path() / ("coe_gateway_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  // Serves the ladder as "ladder" (its members too), every member at `temperature`.
  void Serve(ServerOptions so, double temperature = 0) {
    std::ofstream(dir_ / "cat.toml") << "[defaults]\nbackend = \"openai\"\nurl = \"http://127.0.0.1:"
                                     << upstream_.port() << "/v1\"\nprompt = \"" << kTemplate
                                     << "\"\nanswer = \"choice\"\nusd_per_mtok_in = 1.0\nusd_per_mtok_out = 1.0\n"
                                     << "temperature = " << temperature << "\n"
                                     << "[models.mistral]\nmodel = \"" << kTier1[0]
                                     << "\"\n[models.mixtral]\nmodel = \"" << kTier1[1]
                                     << "\"\n[models.llama70]\nmodel = \"" << kTier1[2]
                                     << "\"\n[models.gpt4]\nmodel = \"" << kTier2 << "\"\n";
    std::ofstream(dir_ / "c.toml") << "[[tiers]]\nmembers = [\"mistral\", \"mixtral\", \"llama70\"]\n"
                                      "min_agreement = 1.0\n[[tiers]]\nmembers = [\"gpt4\"]\n";
    auto cat = ReadCatalogue((dir_ / "cat.toml").string());
    auto spec = ReadCascade((dir_ / "c.toml").string());
    ASSERT_TRUE(cat.ok() && spec.ok()) << cat.status().ToString() << spec.status().ToString();
    so.name = "ladder";
    testing::Served served = testing::ServeOnLoopback(*spec, *cat, so);
    ASSERT_TRUE(served.server);
    coe_ = std::move(served.server);
    client_ = std::move(served.client);  // one connection: its requests are answered (and counted) in order
  }

  // Question `id` of the recordings, as a user asks it.
  static std::string Question(const std::string& id) {
    return "[id:" + id + "] Which option fits question " + id + "?";
  }
  static json Body(const std::string& id, json extra = json::object()) {
    json b = {{"model", "ladder"}, {"messages", {{{"role", "user"}, {"content", Question(id)}}}}};
    if (extra.is_object()) b.update(extra);
    return b;
  }
  struct Answer {
    int status = 0;
    json body;  // the JSON body, or the last chunk holding "coe" of a streamed one
    std::string text;
  };
  Answer Post(const json& body, const httplib::Headers& headers = {}) {
    auto r = client_->Post("/v1/chat/completions", headers, body.dump(), "application/json");
    if (!r) return {};
    Answer a{r->status, json::parse(r->body, nullptr, false), r->body};
    if (r->get_header_value("Content-Type") == "text/event-stream")
      for (size_t at = 0; (at = r->body.find("data: {", at)) != std::string::npos; ++at) {
        json chunk = json::parse(r->body.substr(at + 6, r->body.find("\n\n", at) - at - 6));
        if (chunk.contains("coe")) a.body = chunk;
      }
    return a;
  }
  int Calls() const { return upstream_.requests.load(); }
  double Metric(const std::string& series) const {
    const std::string m = coe_->MetricsText();
    const size_t at = m.find("\n" + series + " ");
    return at == std::string::npos ? -1.0 : std::stod(m.substr(at + series.size() + 2));
  }
  // The recorded answer and dollars of `model` on question `id`.
  std::pair<std::string, double> Recorded(const std::string& model, const std::string& id) {
    const auto& [answer, dollars] = upstream_.calls[model][id];
    const testing::ReplayTokens t = testing::ReplayUsage(dollars);
    return {answer, (t.in + t.out) / 1e6};
  }
  // Questions on which tier 1 answers, all three members readably, and exits (or not).
  std::vector<std::string> Questions(bool exits) {
    std::vector<std::string> out;
    for (const auto& [id, _] : upstream_.calls[kTier2]) {
      const std::string a = Recorded(kTier1[0], id).first, b = Recorded(kTier1[1], id).first,
                        c = Recorded(kTier1[2], id).first;
      if (!a.empty() && !b.empty() && !c.empty() && (a == b && b == c) == exits) out.push_back(id);
    }
    return out;
  }

  // What `members` members of the ladder are estimated to cost on question `id` before
  // any call: each one's prompt (the template's text and the question) at 4 characters
  // a token and max_tokens (256) of completion, at $1 per million tokens in and out.
  static double Estimate(const std::string& id, int members) {
    const size_t chars = Question(id).size() + std::string("\nAnswer with one letter.").size();
    return members * (static_cast<double>((chars + 3) / 4) + 256) / 1e6;
  }
  static std::string FormatCeiling(double usd) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.17g", usd);
    return buf;
  }

  OpenAiReplay upstream_;
  fs::path dir_;
  std::unique_ptr<Server> coe_;
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(Gateway, TheKeyGuardsTheModelRoutesOfBothProtocols) {
  const std::string key = "sk-coe-test-0123456789";
  std::vector<std::string> log;
  std::mutex log_mu;
  ServerOptions so;
  so.api_key = key;
  so.access_log = AccessLog::kText;
  so.log = [&](const std::string& line) {
    std::lock_guard<std::mutex> lock(log_mu);
    log.push_back(line);
  };
  Serve(so);
  const std::string id = Questions(true).at(0);
  const int calls = Calls();
  // No key, a wrong one of the same length, its prefix, it with more after, another
  // scheme: 401 in OpenAI's shape, and no upstream call.
  std::string wrong = key;
  wrong.back() ^= 1;
  for (const httplib::Headers& h : std::vector<httplib::Headers>{{},
                                                                 {{"Authorization", "Bearer " + wrong}},
                                                                 {{"Authorization", "Bearer " + key.substr(0, 10)}},
                                                                 {{"Authorization", "Bearer " + key + "x"}},
                                                                 {{"Authorization", "Bearer "}},
                                                                 {{"Authorization", "Basic " + key}}}) {
    auto r = client_->Post("/v1/chat/completions", h, Body(id).dump(), "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 401) << r->body;
    const json e = json::parse(r->body, nullptr, false);
    EXPECT_EQ(e["error"]["type"], "invalid_request_error") << r->body;
    EXPECT_EQ(e["error"]["code"], "invalid_api_key") << r->body;
    EXPECT_EQ(r->get_header_value("WWW-Authenticate"), "Bearer");
    EXPECT_EQ(r->body.find(key.substr(0, 10)), std::string::npos) << r->body;
  }
  EXPECT_EQ(Calls(), calls);
  for (const char* path : {"/v1/models", "/v1/models/ladder", "/v2/models/ladder", "/v2/models/ladder/ready"}) {
    auto r = client_->Get(path);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 401) << path;
  }
  // The Open Inference Protocol's own error shape on /v2.
  EXPECT_TRUE(json::parse(client_->Get("/v2/models/ladder")->body)["error"].is_string());
  // Health, server metadata and metrics stay open.
  for (const char* path : {"/v2/health/live", "/v2/health/ready", "/v2", "/metrics"})
    EXPECT_EQ(client_->Get(path)->status, 200) << path;
  // The key (the scheme in any case): answered.
  const httplib::Headers right = {{"Authorization", "bearer " + key}};
  const Answer a = Post(Body(id), right);
  EXPECT_EQ(a.status, 200) << a.text;
  EXPECT_EQ(a.body["coe"]["exit_tier"], 1) << a.text;
  EXPECT_EQ(client_->Get("/v1/models", right)->status, 200);
  EXPECT_EQ(client_->Get("/v2/models/ladder", right)->status, 200);
  EXPECT_EQ(Metric("coe_errors_total{code=\"401\"}"), 11);
  coe_->Stop();
  coe_->Wait();
  // The access log has every request, and never the key.
  std::lock_guard<std::mutex> lock(log_mu);
  EXPECT_GE(log.size(), 16u);
  for (const std::string& line : log) EXPECT_EQ(line.find(key.substr(3, 8)), std::string::npos) << line;
}

TEST_F(Gateway, ServeRefusesToStartWithoutItsKey) {
  ::unsetenv("COE_TEST_UNSET_KEY");
  ::setenv("COE_TEST_EMPTY_KEY", "", 1);
  ::setenv("COE_TEST_KEY", "k", 1);
  for (const char* var : {"COE_TEST_UNSET_KEY", "COE_TEST_EMPTY_KEY"}) {
    auto r = testing::RunCoe(std::string("serve --cascade c.toml --models m.toml --api-key-env ") + var);
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_NE(
        r.out.find(std::string("--api-key-env names the environment variable ") + var + ", which is not set or empty"),
        std::string::npos)
        << r.out;
  }
  auto r = testing::RunCoe("serve --cascade c.toml --models m.toml --api-key-env COE_TEST_KEY --grpc-port 0");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("gRPC calls carry no key check"), std::string::npos) << r.out;
}

TEST_F(Gateway, ModelsRetrieveFindsTheChatModels) {
  Serve(ServerOptions{});
  for (const char* name : {"ladder", "gpt4"}) {
    auto r = client_->Get(std::string("/v1/models/") + name);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    const json m = json::parse(r->body);
    EXPECT_EQ(m["id"], name);
    EXPECT_EQ(m["object"], "model");
    EXPECT_EQ(m["owned_by"], "coe");
    EXPECT_TRUE(m["created"].is_number_integer());
  }
  auto r = client_->Get("/v1/models/nope");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  const json e = json::parse(r->body);
  EXPECT_EQ(e["error"]["code"], "model_not_found") << r->body;
  EXPECT_NE(e["error"]["message"].get<std::string>().find("no model named 'nope'"), std::string::npos) << r->body;
}

TEST_F(Gateway, RepeatedDeterministicRequestsAreAnsweredFromTheCache) {
  ServerOptions so;
  so.cache_bytes = 1 << 20;
  Serve(so);
  const std::string id = Questions(false).at(0);  // reaches tier 2: four calls
  int calls = Calls();
  const Answer first = Post(Body(id, {{"temperature", 0}}));
  ASSERT_EQ(first.status, 200) << first.text;
  EXPECT_EQ(Calls() - calls, 4);
  EXPECT_EQ(first.body["coe"]["cached"], false);
  EXPECT_GT(first.body["coe"]["cost_usd"].get<double>(), 0);
  // The same request twice more, its keys in another order, then streamed: no call.
  calls = Calls();
  for (const json& again :
       {Body(id, {{"temperature", 0}}), json::parse("{\"temperature\": 0.0, " + Body(id).dump().substr(1))}) {
    const Answer a = Post(again);
    ASSERT_EQ(a.status, 200) << a.text;
    EXPECT_EQ(a.body["coe"]["cached"], true) << a.text;
    EXPECT_EQ(a.body["coe"]["cost_usd"], 0.0);
    EXPECT_EQ(a.body["usage"]["total_tokens"], 0);
    EXPECT_EQ(a.body["choices"][0]["message"], first.body["choices"][0]["message"]);
    EXPECT_EQ(a.body["coe"]["exit_tier"], 2);
    EXPECT_EQ(a.body["coe"]["answer"], first.body["coe"]["answer"]);
    EXPECT_NE(a.body["id"], first.body["id"]);
  }
  const Answer streamed = Post(Body(id, {{"temperature", 0}, {"stream", true}}));
  ASSERT_EQ(streamed.status, 200) << streamed.text;
  EXPECT_EQ(streamed.body["coe"]["cached"], true) << streamed.text;
  EXPECT_NE(streamed.text.find(json(first.body["choices"][0]["message"]["content"]).dump()), std::string::npos);
  EXPECT_EQ(Calls(), calls);
  for (const char* m : {kTier1[0], kTier1[1], kTier1[2], kTier2}) EXPECT_EQ(upstream_.Attempts(m, id), 1) << m;
  // Requests that would not get the same answer again are not cached: a temperature
  // above 0 (twice: two runs); with a seed they are.
  calls = Calls();
  for (int k = 0; k < 2; ++k) EXPECT_EQ(Post(Body(id, {{"temperature", 0.7}})).body["coe"]["cached"], false);
  EXPECT_EQ(Calls() - calls, 8);
  EXPECT_EQ(Post(Body(id, {{"temperature", 0.7}, {"seed", 7}})).body["coe"]["cached"], false);
  calls = Calls();
  EXPECT_EQ(Post(Body(id, {{"temperature", 0.7}, {"seed", 7}})).body["coe"]["cached"], true);
  EXPECT_EQ(Calls(), calls);
  // A failed answer (502) is not stored: once the upstream is back, the request runs.
  const std::string other = Questions(true).at(0);
  upstream_.SetFaults([](const std::string&, const std::string&, int) { return OpenAiReplay::Fault::k401; });
  EXPECT_EQ(Post(Body(other)).status, 502);
  upstream_.SetFaults(nullptr);
  calls = Calls();
  const Answer after = Post(Body(other));
  ASSERT_EQ(after.status, 200) << after.text;
  EXPECT_EQ(after.body["coe"]["cached"], false);
  EXPECT_EQ(Calls() - calls, 3);
  EXPECT_EQ(Metric("coe_cache_hits_total"), 4);
  EXPECT_EQ(Metric("coe_cache_misses_total"), 4);  // the first, the seeded one's first, the 502, after it
  EXPECT_EQ(Metric("coe_cache_entries"), 3);
  EXPECT_GT(Metric("coe_cache_bytes"), 3 * 256);
}

// Members sampling at their catalogue's temperature: a request that says none is not
// cached, one at temperature 0 neither (the members' own temperature is what they
// sample at unless forwarded), one with a seed is.
TEST_F(Gateway, MembersThatSampleAreNotCachedWithoutASeed) {
  ServerOptions so;
  so.cache_bytes = 1 << 20;
  Serve(so, /*temperature=*/0.8);
  const std::string id = Questions(true).at(0);
  const int calls = Calls();
  for (int k = 0; k < 2; ++k) {
    EXPECT_EQ(Post(Body(id)).body["coe"]["cached"], false);
    EXPECT_EQ(Post(Body(id, {{"temperature", 0}})).body["coe"]["cached"], false);
    EXPECT_EQ(Post(Body(id, {{"seed", 1}})).body["coe"]["cached"], k == 1);
  }
  EXPECT_EQ(Calls() - calls, 5 * 3);
  EXPECT_EQ(Metric("coe_cache_hits_total"), 1);
}

TEST_F(Gateway, ACeilingStopsAtTheDeepestTierItCanPayFor) {
  Serve(ServerOptions{});
  const std::string id = Questions(false).at(0);  // tier 1 disagrees: gpt4 answers it
  const double tier1 = Estimate(id, 3), both = tier1 + Estimate(id, 1);
  // A ceiling both tiers fit: the cascade's answer, and the ceiling said.
  Answer a = Post(Body(id, {{"coe", {{"max_cost_usd", both * 1.001}}}}));
  ASSERT_EQ(a.status, 200) << a.text;
  EXPECT_EQ(a.body["coe"]["exit_tier"], 2) << a.text;
  EXPECT_EQ(a.body["coe"]["max_cost_usd"], both * 1.001);
  EXPECT_EQ(a.body["coe"]["budget_stopped"], false);
  EXPECT_FALSE(a.body["coe"].contains("stopped_at_tier"));
  EXPECT_EQ(upstream_.Attempts(kTier2, id), 1);
  // One tier 1 fits but not both: tier 1 answers, as a last tier does (its plurality;
  // a tie goes to the member listed last), and says the ceiling stopped it. Given in
  // the body, in the header, or in both alike; streamed too.
  std::map<std::string, int> votes;
  std::string plurality;
  for (const char* m : kTier1)
    if (++votes[Recorded(m, id).first] >= votes[plurality]) plurality = Recorded(m, id).first;
  double paid = 0;
  for (const char* m : kTier1) paid += Recorded(m, id).second;
  const double ceiling = (tier1 + both) / 2;
  const json in_body = {{"coe", {{"max_cost_usd", ceiling}}}};
  const httplib::Headers header = {{"coe-max-cost-usd", FormatCeiling(ceiling)}};
  for (const auto& [extra, h] : std::vector<std::pair<json, httplib::Headers>>{
           {in_body, {}}, {{}, header}, {in_body, header}, {{{"stream", true}}, header}}) {
    a = Post(Body(id, extra), h);
    ASSERT_EQ(a.status, 200) << a.text;
    EXPECT_EQ(a.body["coe"]["exit_tier"], 1) << a.text;
    EXPECT_EQ(a.body["coe"]["budget_stopped"], true) << a.text;
    EXPECT_EQ(a.body["coe"]["stopped_at_tier"], 1) << a.text;
    EXPECT_EQ(a.body["coe"]["answer"], plurality) << a.text;
    EXPECT_NEAR(a.body["coe"]["cost_usd"].get<double>(), paid, 1e-12) << a.text;
  }
  EXPECT_EQ(upstream_.Attempts(kTier2, id), 1);  // gpt4 was never called again
  // A question tier 1 agrees on exits there by its rule: not stopped.
  const std::string agreed = Questions(true).at(0);
  a = Post(Body(agreed, {{"coe", {{"max_cost_usd", (Estimate(agreed, 3) + Estimate(agreed, 4)) / 2}}}}));
  ASSERT_EQ(a.status, 200) << a.text;
  EXPECT_EQ(a.body["coe"]["exit_tier"], 1);
  EXPECT_EQ(a.body["coe"]["budget_stopped"], false) << a.text;
  // Below tier 1's estimate: refused, naming both figures, and nothing is called.
  const int calls = Calls();
  a = Post(Body(id, {{"coe", {{"max_cost_usd", tier1 * 0.99}}}}));
  EXPECT_EQ(a.status, 400) << a.text;
  EXPECT_EQ(a.body["error"]["code"], "max_cost_too_low") << a.text;
  EXPECT_EQ(a.body["error"]["param"], "coe.max_cost_usd") << a.text;
  const std::string message = a.body["error"]["message"];
  const size_t at = message.find("estimated at ");
  ASSERT_NE(at, std::string::npos) << message;
  EXPECT_NEAR(std::stod(message.substr(at + 13)), tier1, 1e-12) << message;
  const size_t said = message.find("the cost ceiling ");
  ASSERT_NE(said, std::string::npos) << message;
  EXPECT_EQ(std::stod(message.substr(said + 17)), tier1 * 0.99) << message;
  // Ceilings that are no ceiling: refused, naming what is wrong.
  const std::vector<std::pair<json, std::string>> bad_bodies = {
      {{{"max_cost_usd", -1}}, "'coe.max_cost_usd' must be a number >= 0"},
      {{{"max_cost_usd", "0.01"}}, "'coe.max_cost_usd' must be a number >= 0"},
      {{{"max_cost", 1}}, "'coe.max_cost' is not a field coe reads"},
      {5, "'coe' must be an object"},
  };
  for (const auto& [coe, why] : bad_bodies) {
    a = Post(Body(id, {{"coe", coe}}));
    EXPECT_EQ(a.status, 400) << a.text;
    EXPECT_NE(a.text.find(why), std::string::npos) << a.text;
  }
  for (const char* value : {"abc", "-1", "nan", "inf", "", "1e400"}) {
    a = Post(Body(id), {{"coe-max-cost-usd", value}});
    EXPECT_EQ(a.status, 400) << value << " " << a.text;
    EXPECT_NE(a.text.find("the coe-max-cost-usd header must be a number >= 0"), std::string::npos) << a.text;
  }
  a = Post(Body(id, in_body), {{"coe-max-cost-usd", FormatCeiling(ceiling * 2)}});
  EXPECT_EQ(a.status, 400) << a.text;
  EXPECT_NE(a.text.find("the cost ceiling is given twice, differently"), std::string::npos) << a.text;
  EXPECT_EQ(Calls(), calls);
}

}  // namespace
}  // namespace coe
