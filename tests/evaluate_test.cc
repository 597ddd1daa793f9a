// EvaluateCascade's figures on hand-computed cases.
#include "coe/evaluate.h"

#include <gtest/gtest.h>

namespace coe {
namespace {

struct Fixture {
  LabelSet labels;
  Recordings rec;
  Catalogue cat;
  Fixture() {
    rec = *ParseRecordings(
        "id,label,a,a2,b,a|score,a2|score\n"
        "1,x,x,x,x,0.9,0.8\n"  // tier 1 agrees
        "2,y,x,y,y,0.6,0.7\n"  // defers to b
        "3,x,,,x,,\n",         // tier 1 all abstain: defers
        "r.csv", &labels, nullptr);
    cat = *ParseCatalogue(R"(
[models.a]
usd = 1
latency_ms = 1
[models.a2]
usd = 2
latency_ms = 2
[models.b]
usd = 10
latency_ms = 10
site = "cloud"
input_bytes = 1000
)",
                          "c.toml", "");
  }
};

CascadeSpec TwoTiers() {
  CascadeSpec s;
  s.tiers.push_back(TierSpec{{"a", "a2"}, DeferralRule{1.0, std::nullopt}});
  s.tiers.push_back(TierSpec{{"b"}, {}});
  return s;
}

TEST(Evaluate, CostLatencyAndBytesOverALink) {
  Fixture f;
  CostOptions opt;
  opt.key = "usd";
  opt.link = *LinkSpec::Parse("bandwidth=8Mbit,rtt=40ms");
  auto costs = BuildCostTable(f.rec, f.cat, opt);
  ASSERT_TRUE(costs.ok()) << costs.status().ToString();
  std::vector<ExampleOutcome> out;
  auto r = EvaluateCascade(TwoTiers(), f.rec, *costs, &out);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->correct, 3);
  EXPECT_EQ(r->exits, (std::vector<int>{1, 2}));
  // Costs: 3, 3 + 10, 3 + 10.
  EXPECT_DOUBLE_EQ(r->mean_cost, (3.0 + 13 + 13) / 3);
  // Latency: parallel tier 1 = 2 ms; b = 10 ms + 40 ms RTT + 1000 B at 8 Mbit/s (1 ms).
  EXPECT_DOUBLE_EQ(out[0].latency_ms, 2);
  EXPECT_DOUBLE_EQ(out[1].latency_ms, 2 + 51);
  EXPECT_DOUBLE_EQ(*r->mean_bytes_sent, 2000.0 / 3);
  EXPECT_DOUBLE_EQ(*r->p99_latency_ms, 53);
  opt.latency = LatencyMode::kSequential;
  costs = BuildCostTable(f.rec, f.cat, opt);
  r = EvaluateCascade(TwoTiers(), f.rec, *costs, &out);
  EXPECT_DOUBLE_EQ(out[0].latency_ms, 3);
  EXPECT_DOUBLE_EQ(out[2].latency_ms, 3 + 51);
}

TEST(Evaluate, AllAbstainAtLastTierIsWrongAndUnanswered) {
  Fixture f;
  CascadeSpec s;
  s.tiers.push_back(TierSpec{{"a2"}, {}});
  auto costs = BuildCostTable(f.rec, f.cat, CostOptions{});
  auto r = EvaluateCascade(s, f.rec, *costs);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->unanswered, 1);
  EXPECT_EQ(r->correct, 2);  // examples 1 and 2; 3 has no answer
}

TEST(Evaluate, ScoreRuleNeedsScoresAndMembersMustExist) {
  Fixture f;
  auto costs = BuildCostTable(f.rec, f.cat, CostOptions{});
  CascadeSpec s;
  s.tiers.push_back(TierSpec{{"b"}, DeferralRule{std::nullopt, 0.5}});
  s.tiers.push_back(TierSpec{{"a"}, {}});
  auto r = EvaluateCascade(s, f.rec, *costs);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  CascadeSpec t;
  t.tiers.push_back(TierSpec{{"zz"}, {}});
  EXPECT_EQ(EvaluateCascade(t, f.rec, *costs).status().code(), StatusCode::kNotFound);
}

TEST(Evaluate, ScoreRuleUsesMeanConfidence) {
  Fixture f;
  auto costs = BuildCostTable(f.rec, f.cat, CostOptions{});
  CascadeSpec s;
  s.tiers.push_back(TierSpec{{"a"}, DeferralRule{std::nullopt, 0.85}});
  s.tiers.push_back(TierSpec{{"b"}, {}});
  std::vector<ExampleOutcome> out;
  auto r = EvaluateCascade(s, f.rec, *costs, &out);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(out[0].exit_tier, 0);  // 0.9 >= 0.85
  EXPECT_EQ(out[1].exit_tier, 1);  // 0.6
  EXPECT_EQ(out[2].exit_tier, 1);  // abstained
}

TEST(Evaluate, OnlyLimitsWhichModelsNeedCosts) {
  Fixture f;
  auto cat = *ParseCatalogue("[models.a]\nusd = 1\n[models.a2]\nusd = 2\n[models.b]\nflops = 3\n", "c", "");
  CostOptions opt;
  opt.key = "usd";
  EXPECT_FALSE(BuildCostTable(f.rec, cat, opt).ok());
  opt.only = {"a", "a2"};
  auto costs = BuildCostTable(f.rec, cat, opt);
  ASSERT_TRUE(costs.ok()) << costs.status().ToString();
  CascadeSpec s;
  s.tiers.push_back(TierSpec{{"b"}, {}});
  EXPECT_EQ(EvaluateCascade(s, f.rec, *costs).status().code(), StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace coe
