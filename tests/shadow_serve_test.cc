// Shadow verification served (coe serve --shadow, coe/server.h): real servers on
// loopback, the zoo's models and RouterBench chat models replayed by a local upstream.
// The drift experiment's figures at --shadow 0.05 are bench/shadow_drift.cc's.
#include <future>
#include <numeric>

#include "llm_testing.h"
#include "server/shadow.h"
#include "server_testing.h"
#include "testing/shadow_drift.h"

namespace coe::testing {
namespace {

// The sum of a counter's lines on a /metrics page whose labels hold `labels`.
double SumOf(const std::string& metrics, const std::string& series, const std::string& labels) {
  double sum = 0;
  std::istringstream in(metrics);
  for (std::string line; std::getline(in, line);)
    if (line.starts_with(series + "{") && line.find(labels) != std::string::npos)
      sum += std::stod(line.substr(line.rfind(' ') + 1));
  return sum;
}

class ShadowDrift : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(RouterBenchFile(SourceDir(), "winogrande_test.csv")))
      GTEST_SKIP() << "no shared RouterBench data";
    const Status s = lab_.Open(SourceDir());
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  DriftLab lab_;
};

// Every exit shadowed (the figures at 5% are the bench's): ARC traffic, then
// Winogrande's. The alarm rises after the switch, within its questions, says so once,
// and never rises on ARC traffic of the same length; the plan's level is the cascade
// file's; the shadow runs' cost is apart from the requests'.
TEST_F(ShadowDrift, TheAlarmRisesOnDriftAndNeverOnStationaryTraffic) {
  const ShadowOptions shadow{.share = 1, .window = 50, .confidence = 0.95, .margin = 0.05, .min_samples = 20};
  ASSERT_TRUE(lab_.ladder.tiers[0].calibrated_agreement.has_value());
  const double planned = *lab_.ladder.tiers[0].calibrated_agreement;
  EXPECT_NEAR(planned, 616.0 / 644, 1e-12) << "coe plan's level on ARC train";

  std::vector<std::string> drift = lab_.arc;
  drift.insert(drift.end(), lab_.winogrande.begin(), lab_.winogrande.end());
  const DriftOutcome d = RunDrift(lab_, drift, shadow, "drift");
  EXPECT_EQ(d.failed, 0);
  const int switched = static_cast<int>(lab_.arc.size());
  ASSERT_GE(d.alarm_at, switched) << (d.lines.empty() ? "no alarm" : d.lines[0]);
  std::printf("[ shadow   ] every exit shadowed: the alarm rose %d requests after the switch to Winogrande\n",
              d.alarm_at - switched + 1);
  ASSERT_FALSE(d.lines.empty());
  EXPECT_NE(d.lines[0].find("coe serve: shadow ALARM: model 'ladder' tier 1 agrees with the last tier on"),
            std::string::npos)
      << d.lines[0];
  const nlohmann::json& tier = d.health["models"]["ladder"]["tiers"][0];
  EXPECT_TRUE(tier["alarm"].get<bool>()) << d.health.dump();
  EXPECT_NEAR(tier["expected"].get<double>(), planned, 1e-12);
  EXPECT_EQ(tier["shadowed"].get<int>(), d.exits) << "share 1: every exit";
  EXPECT_NE(d.metrics.find("coe_shadow_alarm{model=\"ladder\",tier=\"1\"} 1\n"), std::string::npos);

  // Apart: the shadow runs cost gpt-4's calls on the exits, none of it in the
  // requests' cost (their replies' cost_usd and coe_tier_cost_total agree).
  EXPECT_NEAR(d.health["models"]["ladder"]["cost"].get<double>(), d.shadowed_usd, 1e-9);
  EXPECT_NEAR(SumOf(d.metrics, "coe_shadow_cost_total", "model=\"ladder\""), d.shadowed_usd, 1e-9);
  EXPECT_NEAR(SumOf(d.metrics, "coe_tier_cost_total", "model=\"ladder\""), d.usd, 1e-9);

  std::vector<std::string> stationary = lab_.arc;  // the same length, ARC's questions again
  stationary.insert(stationary.end(), lab_.arc.begin(), lab_.arc.begin() + static_cast<long>(lab_.winogrande.size()));
  const DriftOutcome s = RunDrift(lab_, stationary, shadow, "stationary");
  EXPECT_EQ(s.failed, 0);
  EXPECT_EQ(s.alarm_at, -1) << s.lines[0];
  EXPECT_FALSE(s.health["models"]["ladder"]["tiers"][0]["alarm"].get<bool>());
}

// A shadow run waits for its turn in a bounded queue: with one place, the chosen exits
// that find it taken are skipped (counted), and their replies never wait for the
// last tier (3 s here); a shutdown cancels the one running rather than wait for it.
TEST_F(ShadowDrift, AFullQueueSkipsAndAShutdownCancelsWithoutWaiting) {
  DriftLab slow;
  ASSERT_TRUE(slow.Open(SourceDir(), /*last_tier_ms=*/3000).ok());
  std::vector<std::string> exits;
  for (const std::string& id : slow.arc)
    if (slow.Exits(id) && exits.size() < 8) exits.push_back(id);
  ServerOptions so;
  so.access_log = AccessLog::kOff;
  so.shadow = ShadowOptions{.share = 1, .max_queued = 1, .workers = 1};
  auto server = Server::Create(slow.ladder, slow.catalogue, EngineOptions{}, so);
  ASSERT_TRUE(server.ok() && (*server)->Start("127.0.0.1", 0).ok());
  const auto t0 = std::chrono::steady_clock::now();
  for (size_t k = 0; k < exits.size(); ++k) {
    const std::string body =
        nlohmann::json{{"model", "ladder"}, {"messages", {{{"role", "user"}, {"content", "[id:" + exits[k] + "] q"}}}}}
            .dump();
    const Reply r = Http((*server)->port(), "POST", "/v1/chat/completions", body);
    ASSERT_EQ(r.status, 200) << r.raw;
    EXPECT_EQ(r.body["coe"]["exit_tier"], 1);
  }
  EXPECT_LT(Since(t0), 2.5) << "the replies waited for a shadow run of the last tier";
  // Each reply's shadow run is posted after the reply went out: every one posted (or
  // skipped) before the count, the first still running.
  (*server)->FlushShadow(/*runs=*/false);
  nlohmann::json h = nlohmann::json::parse((*server)->PlanHealthJson())["models"]["ladder"];
  EXPECT_EQ(h["skipped"].get<int>(), static_cast<int>(exits.size()) - 1) << "one runs, the others found no place";
  EXPECT_EQ(h["tiers"][0]["shadowed"].get<int>(), 0);
  const auto t1 = std::chrono::steady_clock::now();
  (*server)->Shutdown(0);
  EXPECT_LT(Since(t1), 2.0) << "the shutdown waited for the shadow run";
  h = nlohmann::json::parse((*server)->PlanHealthJson())["models"]["ladder"];
  EXPECT_EQ(h["skipped"].get<int>(), static_cast<int>(exits.size())) << "the one running was cancelled";
  EXPECT_EQ(h["tiers"][0]["shadowed"].get<int>(), 0);
}

// The zoo ({linear, mlp256x2} unanimous -> {cnn8_16}): requests are chosen by their
// id (example k of a batch by "<id>/<k>"), else by their bytes; two servers given the
// same traffic shadow the same requests and say the same; Server::Run (the gRPC
// front end's route) is shadowed by its batch's ids.
TEST(ShadowServe, TheShareIsChosenByIdOrInputReproducibly) {
  const InputBatch images = TestImages(64);
  const double share = 0.3;
  auto serve_and_send = [&](int* expected) {
    ServerOptions so;
    so.access_log = AccessLog::kOff;
    so.shadow = ShadowOptions{.share = share};
    Served s = ServeOnLoopback(TwoTier(), ParseOrDie(ZooToml()), so);
    *expected = 0;
    for (int64_t k = 0; k < images.size(); ++k) {  // one image a request, with an id
      InputBatch one;
      one.example_shape = images.example_shape;
      const auto x = images.Example(k);
      one.data.assign(x.begin(), x.end());
      std::string body = InferBody(one);
      body.insert(1, "\"id\":\"r-" + std::to_string(k) + "\",");
      auto r = s.client->Post("/v2/models/fashion/infer", body, "application/json");
      EXPECT_TRUE(r && r->status == 200);
      const json reply = json::parse(r->body);
      const json* t = Output(reply, "exit_tier");
      if (!t) {
        ADD_FAILURE() << r->body;
        continue;
      }
      if ((*t)["data"][0] == 1 && ShadowChosen("r-" + std::to_string(k), share)) ++*expected;
    }
    // The 64 as one request with an id, then without one.
    for (const std::string& id : {std::string("batch"), std::string()}) {
      std::string body = InferBody(images);
      if (!id.empty()) body.insert(1, "\"id\":\"" + id + "\",");
      auto r = s.client->Post("/v2/models/fashion/infer", body, "application/json");
      EXPECT_TRUE(r && r->status == 200);
      const json reply = json::parse(r->body);
      if (!Output(reply, "exit_tier")) {
        ADD_FAILURE() << r->body;
        continue;
      }
      const json tiers = (*Output(reply, "exit_tier"))["data"];
      for (int64_t k = 0; k < images.size(); ++k) {
        const auto x = images.Example(k);
        const std::string key = id.empty()
                                    ? std::string(reinterpret_cast<const char*>(x.data()), x.size() * sizeof(float))
                                    : id + "/" + std::to_string(k);
        if (tiers[k] == 1 && ShadowChosen(key, share)) ++*expected;
      }
    }
    InputBatch with_ids = images;  // Server::Run, by its batch's ids
    for (int64_t k = 0; k < images.size(); ++k) with_ids.ids.push_back("run-" + std::to_string(k));
    auto run = s.server->Run("fashion", with_ids, RunOptions{});
    EXPECT_TRUE(run.ok());
    for (int64_t k = 0; run.ok() && k < images.size(); ++k)
      if (run->exit_tier[k] == 0 && ShadowChosen(with_ids.ids[k], share)) ++*expected;
    s.server->FlushShadow();
    return json::parse(s.server->PlanHealthJson());
  };
  int expected_a = 0, expected_b = 0;
  const json a = serve_and_send(&expected_a);
  const json b = serve_and_send(&expected_b);
  EXPECT_EQ(a, b) << "the same traffic, the same shadow runs";
  EXPECT_EQ(expected_a, expected_b);
  const json& tier = a["models"]["fashion"]["tiers"][0];
  EXPECT_GT(expected_a, 10);
  EXPECT_EQ(tier["shadowed"].get<int>(), expected_a) << a.dump();
  EXPECT_EQ(a["models"]["fashion"]["skipped"], 0);
  EXPECT_TRUE(tier["expected"].is_null()) << "the cascade has no calibrated_agreement: unknown";
  EXPECT_FALSE(tier["alarm"].get<bool>());
  EXPECT_FALSE(a["models"].contains("linear")) << "a one-tier model has nothing to shadow";
}

// GET /coe/plan-health is open like /metrics (no key), says the plan's level (null when
// the file has none) with shadow off, and the series appear only with shadow on; a
// reload starts the new generation's monitors at its own plan's level.
TEST(ShadowServe, PlanHealthSaysThePlansLevelAndAReloadStartsAfresh) {
  CascadeSpec planned = TwoTier();
  planned.tiers[0].calibrated_agreement = 0.9;
  ServerOptions so;
  so.access_log = AccessLog::kOff;
  so.api_key = "k";
  Served off = ServeOnLoopback(planned, ParseOrDie(ZooToml()), so);
  Reply r = Http(off.server->port(), "GET", "/coe/plan-health");
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(r.body["shadow"], 0);
  EXPECT_EQ(r.body["generation"], 1);
  EXPECT_EQ(r.body["models"]["fashion"]["tiers"][0]["expected"], 0.9);
  EXPECT_TRUE(r.body["models"]["fashion"]["tiers"][0]["agreement"].is_null());
  EXPECT_EQ(off.server->MetricsText().find("coe_shadow_"), std::string::npos);

  so.shadow.share = 1;
  Served on = ServeOnLoopback(planned, ParseOrDie(ZooToml()), so);
  const InputBatch images = TestImages(16);
  auto run = on.server->Run("fashion", images, RunOptions{});
  ASSERT_TRUE(run.ok());
  on.server->FlushShadow();
  const std::string metrics = on.server->MetricsText();
  EXPECT_NE(metrics.find("coe_shadow_expected_agreement{model=\"fashion\",tier=\"1\"} 0.9"), std::string::npos)
      << metrics;
  const int exits = static_cast<int>(std::count(run->exit_tier.begin(), run->exit_tier.end(), 0));
  EXPECT_NE(metrics.find("coe_shadow_requests_total{model=\"fashion\",tier=\"1\"} " + std::to_string(exits) + "\n"),
            std::string::npos)
      << metrics;
  CascadeSource next{TwoTier(), ParseOrDie(ZooToml()), "test"};
  next.spec.tiers[0].calibrated_agreement = 0.8;
  ASSERT_TRUE(on.server->Reload(next).ok());
  r = Http(on.server->port(), "GET", "/coe/plan-health");
  EXPECT_EQ(r.body["generation"], 2);
  EXPECT_EQ(r.body["models"]["fashion"]["tiers"][0]["expected"], 0.8);
  EXPECT_EQ(r.body["models"]["fashion"]["tiers"][0]["shadowed"], 0);
}

// With a request log, each shadow run is a line of its own under its request's id
// (route "shadow"): the same input (so `coe record --data` records it once), the last
// tier's answer, members and cost, and the "shadow" field comparing it with the exit.
TEST(ShadowServe, ShadowRunsGoToTheRequestLogUnderTheRequestsId) {
  const std::filesystem::path dir = TestDir("coe_shadow_log");
  const std::string log = (dir / "requests.log").string();
  ServerOptions so;
  so.access_log = AccessLog::kOff;
  so.shadow.share = 1;
  so.request_log.path = log;
  const Catalogue zoo = ParseOrDie(ZooToml());
  Served s = ServeOnLoopback(TwoTier(), zoo, so);
  const InputBatch images = TestImages(16);
  for (int64_t k = 0; k < images.size(); ++k) {
    json body = json::parse(InferBody(images.Slice(k, k + 1)));
    body["id"] = "s-" + std::to_string(k);
    ASSERT_EQ(Http(s.server->port(), "POST", "/v2/models/fashion/infer", body.dump()).status, 200);
  }
  s.server->FlushShadow();
  s.server->Shutdown(1000);  // the log is written
  // The oracle: the last tier alone on every image.
  CascadeSpec last;
  last.tiers.push_back(TierSpec{{"cnn8_16"}, {}});
  auto alone = Cascade::Create(last, zoo, EngineOptions{});
  ASSERT_TRUE(alone.ok());
  auto want = (*alone)->Run(images, RunOptions{});
  ASSERT_TRUE(want.ok());

  std::map<std::string, json> served, shadowed;
  std::ifstream in(log);
  for (std::string line; std::getline(in, line);) {
    const json j = json::parse(line);
    (j["route"] == "shadow" ? shadowed : served)[j["id"]] = j;
  }
  ASSERT_EQ(served.size(), 16u);
  int exits = 0;
  for (int64_t k = 0; k < images.size(); ++k) {
    const std::string id = "s-" + std::to_string(k);
    const json& first = served[id];
    if (first["exit_tier"] != 1) {
      EXPECT_FALSE(shadowed.contains(id)) << "only exits before the last tier are shadowed";
      continue;
    }
    ++exits;
    ASSERT_TRUE(shadowed.contains(id)) << id;
    const json& line = shadowed[id];
    const std::string answer = want->labels.name(want->answer[k]);
    EXPECT_EQ(line["input"], first["input"]);
    EXPECT_EQ(line["answer"], answer);
    EXPECT_EQ(line["exit_tier"], 2);
    ASSERT_EQ(line["members"].size(), 1u);
    EXPECT_EQ(line["members"][0]["name"], "cnn8_16");
    EXPECT_EQ(line["shadow"]["answer"], answer);
    EXPECT_EQ(line["shadow"]["exit_tier"], 1);
    EXPECT_EQ(line["shadow"]["exit_answer"], first["answer"]);
    EXPECT_EQ(line["shadow"]["agreed"], first["answer"] == answer);
  }
  EXPECT_GT(exits, 4);
  EXPECT_EQ(shadowed.size(), static_cast<size_t>(exits));
  // Read back as inputs (coe record --data): each request once.
  std::vector<std::string> warnings;
  auto inputs = ReadRequestLog(log, {}, 0, -1, &warnings);
  ASSERT_TRUE(inputs.ok()) << inputs.status().ToString();
  EXPECT_EQ(inputs->size(), 16);
  std::filesystem::remove_all(dir);
}

// Every option out of range is refused, naming it and coe serve's flag.
TEST(ShadowServe, OptionsOutOfRangeAreRefusedNamingTheFlag) {
  struct Case {
    ShadowOptions o;
    std::string says;
  } cases[] = {
      {{.share = 1.5}, "shadow share (coe serve --shadow) is 1.5; it must be in [0, 1]"},
      {{.share = -0.1}, "--shadow) is -0.1"},
      {{.share = 0.1, .window = 0}, "--shadow-window) is 0"},
      {{.share = 0.1, .confidence = 1}, "--shadow-confidence) is 1"},
      {{.share = 0.1, .margin = 1}, "--shadow-margin) is 1"},
      {{.share = 0.1, .window = 10, .min_samples = 11}, "--shadow-min-samples) is 11; it must be in [1, window]"},
      {{.share = 0.1, .max_queued = 0}, "--shadow-queue) is 0"},
      {{.share = 0.1, .workers = 0}, "--shadow-workers) is 0"},
  };
  for (const Case& c : cases) {
    ServerOptions so;
    so.shadow = c.o;
    auto s = Server::Create(TwoTier(), ParseOrDie(ZooToml()), EngineOptions{}, so);
    ASSERT_FALSE(s.ok()) << c.says;
    EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(s.status().message().find(c.says), std::string::npos) << s.status().message();
  }
  const Proc p = RunCoe("serve --cascade x.toml --models y.toml --shadow 2");
  EXPECT_NE(p.code, 0);
  EXPECT_NE(p.out.find("--shadow"), std::string::npos) << p.out;
}

}  // namespace
}  // namespace coe::testing
