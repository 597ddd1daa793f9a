// Shadow verification's parts (src/server/shadow.h, src/base/binomial.h): the exact
// binomial bounds against scipy's beta quantiles, which requests are chosen, and the
// alarm on a tier's agreement with the last tier: raised on drift, never on stationary
// traffic at the planned level, cleared when it comes back.
#include "server/shadow.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>

#include "base/binomial.h"

namespace coe {
namespace {

TEST(ClopperPearson, AgreesWithTheBetaQuantiles) {
  // scipy.stats.beta.ppf: upper = ppf(1 - a/2, k + 1, n - k), lower = ppf(a/2, k, n - k + 1).
  auto i = ClopperPearson(0, 10, 0.95);
  EXPECT_EQ(i.lower, 0);
  EXPECT_NEAR(i.upper, 0.3084971078187608, 1e-10);
  i = ClopperPearson(10, 10, 0.95);
  EXPECT_NEAR(i.lower, 0.6915028921812392, 1e-10);
  EXPECT_EQ(i.upper, 1);
  i = ClopperPearson(5, 10, 0.95);
  EXPECT_NEAR(i.lower, 0.18708602844739855, 1e-10);
  EXPECT_NEAR(i.upper, 0.8129139715526015, 1e-10);
  i = ClopperPearson(90, 100, 0.95);
  EXPECT_NEAR(i.lower, 0.8237774022599773, 1e-10);
  EXPECT_NEAR(i.upper, 0.9509953107785141, 1e-10);
  EXPECT_NEAR(ClopperPearsonUpper(1, 20, 0.05), 0.2161061642068473, 1e-10);  // one-sided, alpha 0.05
  i = ClopperPearson(0, 0, 0.95);
  EXPECT_EQ(i.lower, 0);
  EXPECT_EQ(i.upper, 1);
  EXPECT_NEAR(BinomialCdf(3, 10, 0.5), 176.0 / 1024, 1e-14);
}

TEST(ShadowChosen, TakesTheShareByIdAlone) {
  int chosen = 0;
  for (int i = 0; i < 100000; ++i) chosen += ShadowChosen("chatcmpl-" + std::to_string(i), 0.05);
  EXPECT_GT(chosen, 4800);
  EXPECT_LT(chosen, 5200);
  for (int i = 0; i < 1000; ++i) {
    const std::string id = "req-" + std::to_string(i);
    EXPECT_EQ(ShadowChosen(id, 0.3), ShadowChosen(id, 0.3));
    EXPECT_FALSE(ShadowChosen(id, 0));
    EXPECT_TRUE(ShadowChosen(id, 1));
    if (ShadowChosen(id, 0.1)) {
      EXPECT_TRUE(ShadowChosen(id, 0.2)) << "a larger share keeps the smaller's ids";
    }
  }
}

// Tier 1 was planned to agree with the last tier on 90% of its exits.
struct Feed {
  ShadowMonitor monitor{
      ShadowOptions{.share = 0.05, .window = 200, .confidence = 0.95, .margin = 0.05, .min_samples = 50}, {0.9, NAN}};
  std::mt19937_64 rng{7};
  std::vector<std::string> lines;
  // n shadowed exits of tier 1 that agree with probability p; the index of the first
  // alarm line among them, or -1.
  int Add(int n, double p) {
    std::bernoulli_distribution agree(p);
    int first = -1;
    for (int i = 0; i < n; ++i) {
      std::string line = monitor.Add("ladder", 1, agree(rng), 0.001);
      if (line.empty()) continue;
      if (first < 0) first = i;
      lines.push_back(line);
    }
    return first;
  }
};

TEST(ShadowMonitor, AlarmsOnDriftNeverOnStationaryTraffic) {
  for (int run = 0; run < 10; ++run) {  // stationary at the planned level: no alarm
    Feed f;
    f.rng.seed(100 + run);
    EXPECT_EQ(f.Add(5000, 0.9), -1) << (f.lines.empty() ? "" : f.lines[0]);
  }
  Feed f;
  EXPECT_EQ(f.Add(1000, 0.9), -1);
  const int after = f.Add(1000, 0.6);  // drift: the cheap tier is now wrong 40% of the time
  ASSERT_GE(after, 0) << "no alarm";
  EXPECT_LT(after, 150) << "shadowed exits before the alarm";
  std::printf("[ shadow   ] alarm after %d shadowed exits of the drift (agreement 0.9 -> 0.6, window 200)\n", after);
  ASSERT_EQ(f.lines.size(), 1u);
  EXPECT_NE(f.lines[0].find("shadow ALARM: model 'ladder' tier 1 agrees with the last tier on"), std::string::npos)
      << f.lines[0];
  EXPECT_NE(f.lines[0].find("the plan expected 90.0% (margin 5.0%)"), std::string::npos) << f.lines[0];
  nlohmann::json h = f.monitor.Health();
  EXPECT_TRUE(h["tiers"][0]["alarm"].get<bool>());
  EXPECT_LT(h["tiers"][0]["upper"].get<double>(), 0.85);
  EXPECT_EQ(h["tiers"][0]["shadowed"], 2000);
  EXPECT_EQ(h["tiers"][0]["window_n"], 200);
  EXPECT_NEAR(h["cost"].get<double>(), 2.0, 1e-9);
  EXPECT_TRUE(h["tiers"][1]["expected"].is_null());
  EXPECT_GE(f.Add(1000, 0.9), 0) << "cleared when agreement comes back";
  EXPECT_NE(f.lines.back().find("alarm cleared"), std::string::npos) << f.lines.back();
  const std::string text = ShadowMetricsText({{"ladder", f.monitor.Health()}});
  EXPECT_NE(text.find("coe_shadow_alarm{model=\"ladder\",tier=\"1\"} 0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("coe_shadow_requests_total{model=\"ladder\",tier=\"1\"} 3000\n"), std::string::npos) << text;
  EXPECT_NE(text.find("# TYPE coe_shadow_expected_agreement gauge\ncoe_shadow_expected_agreement{model=\"ladder\","
                      "tier=\"1\"} 0.9"),
            std::string::npos)
      << text;
}

TEST(ShadowMonitor, NoAlarmWithoutAPlannedLevelOrEnoughSamples) {
  ShadowMonitor m(ShadowOptions{.share = 1, .window = 100, .min_samples = 50}, {NAN, 0.95});
  for (int i = 0; i < 200; ++i) EXPECT_EQ(m.Add("c", 1, false, 0), "");  // no expected level
  for (int i = 0; i < 49; ++i) EXPECT_EQ(m.Add("c", 2, false, 0), "");   // too few yet
  EXPECT_NE(m.Add("c", 2, false, 0), "");
  EXPECT_EQ(m.Add("c", 3, true, 0), "") << "the last tier is never judged";
}

}  // namespace
}  // namespace coe
