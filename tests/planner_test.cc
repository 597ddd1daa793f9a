// The planner against a naive per-example simulation through the engine's rule code.
#include "coe/planner.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <random>

#include "coe/evaluate.h"

namespace coe {
namespace {

struct RandomSpec {
  int models = 5;
  int examples = 120;
  int labels = 3;
  bool scores = false;
  bool probs = false;
  bool per_example_cost = false;
  double abstain = 0.05;
  double unlabeled = 0.05;
};

// Recordings whose models get better (and dearer) with their index, with errors that
// are partly shared (a per-example difficulty), so agreement means something.
Recordings MakeRecordings(uint32_t seed, const RandomSpec& s, LabelSet* labels,
                          std::vector<double>* fixed_cost) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  for (int l = 0; l < s.labels; ++l) labels->Intern("L" + std::to_string(l));
  Recordings r;
  r.source = "random-" + std::to_string(seed);
  std::vector<double> difficulty(s.examples);
  for (int i = 0; i < s.examples; ++i) {
    r.ids.push_back("e" + std::to_string(i));
    r.truth.push_back(u(rng) < s.unlabeled ? kAbstain : static_cast<int>(rng() % s.labels));
    difficulty[i] = u(rng);
  }
  fixed_cost->clear();
  for (int m = 0; m < s.models; ++m) {
    ModelRecord mr;
    mr.name = "m" + std::to_string(m);
    double skill = 0.45 + 0.5 * (m + 1) / s.models;
    double cost = std::pow(3.0, m) * (0.5 + u(rng));
    fixed_cost->push_back(cost);
    if (s.probs) mr.num_probs = s.labels;
    for (int i = 0; i < s.examples; ++i) {
      int truth = r.truth[i] == kAbstain ? static_cast<int>(rng() % s.labels) : r.truth[i];
      bool right = u(rng) < skill * (1.2 - 0.6 * difficulty[i]);
      int label = right ? truth : static_cast<int>(rng() % s.labels);
      if (u(rng) < s.abstain) label = kAbstain;
      mr.label.push_back(label);
      double conf = std::clamp(0.3 + 0.6 * u(rng) * (right ? 1.0 : 0.7), 0.0, 1.0);
      conf = std::round(conf * 20) / 20;  // coarse, so score ties happen
      if (s.scores) mr.score.push_back(label == kAbstain ? NAN : static_cast<float>(conf));
      if (s.probs) {
        for (int l = 0; l < s.labels; ++l)
          mr.probs.push_back(label == kAbstain ? 0.0f
                             : l == label      ? static_cast<float>(conf)
                                               : static_cast<float>((1 - conf) / (s.labels - 1)));
      }
      if (s.per_example_cost) mr.cost.push_back(cost * (0.5 + u(rng)));
    }
    r.models.push_back(std::move(mr));
  }
  return r;
}

CostTable MakeCosts(const Recordings& r, const std::vector<double>& fixed) {
  Catalogue cat;
  cat.source = "random.toml";
  for (size_t m = 0; m < r.models.size(); ++m) {
    ModelSpec spec;
    spec.name = r.models[m].name;
    spec.costs["usd"] = fixed[m];
    cat.models.push_back(spec);
  }
  CostOptions opt;  // |cost columns when present, else usd
  auto t = BuildCostTable(r, cat, opt);
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  return *t;
}

void ExpectFrontierMatchesSimulation(const PlanResult& plan, const Recordings& rec,
                                     const CostTable& costs) {
  ASSERT_FALSE(plan.frontier.empty());
  for (size_t k = 0; k < plan.frontier.size(); ++k) {
    const OperatingPoint& p = plan.frontier[k];
    auto sim = EvaluateCascade(p.cascade, rec, costs);
    ASSERT_TRUE(sim.ok()) << sim.status().ToString();
    EXPECT_EQ(sim->correct, p.correct) << p.cascade.ToString();
    EXPECT_NEAR(sim->accuracy, p.accuracy, 1e-12) << p.cascade.ToString();
    EXPECT_NEAR(sim->mean_cost, p.cost, 1e-9 * std::max(1.0, p.cost)) << p.cascade.ToString();
    if (k > 0) {
      EXPECT_GT(p.correct, plan.frontier[k - 1].correct);
      EXPECT_GE(p.cost, plan.frontier[k - 1].cost);
    }
  }
}

void ExpectSameFrontierValues(const PlanResult& a, const PlanResult& b) {
  ASSERT_EQ(a.frontier.size(), b.frontier.size());
  for (size_t k = 0; k < a.frontier.size(); ++k) {
    EXPECT_EQ(a.frontier[k].correct, b.frontier[k].correct);
    EXPECT_NEAR(a.frontier[k].cost, b.frontier[k].cost, 1e-9 * std::max(1.0, a.frontier[k].cost));
  }
  EXPECT_EQ(a.chosen.correct, b.chosen.correct);
  EXPECT_NEAR(a.chosen.cost, b.chosen.cost, 1e-9 * std::max(1.0, a.chosen.cost));
}

class PlannerRandom : public ::testing::TestWithParam<int> {};

TEST_P(PlannerRandom, FrontierEqualsNaiveSimulationAndPruningIsExact) {
  const int seed = GetParam();
  RandomSpec s;
  s.models = 4 + seed % 3;
  s.examples = 50 + 37 * (seed % 5);
  s.labels = 2 + seed % 3;
  s.scores = seed % 2 == 0;
  s.probs = seed % 4 == 1;
  s.per_example_cost = seed % 3 == 0;
  LabelSet labels;
  std::vector<double> fixed;
  Recordings rec = MakeRecordings(seed, s, &labels, &fixed);
  CostTable costs = MakeCosts(rec, fixed);
  PlannerOptions opt;
  opt.max_tiers = 3;
  opt.max_members = 3;
  opt.score_quantiles = 4;
  opt.threads = 2;
  auto pruned = Plan(rec, costs, Goal{}, opt);
  ASSERT_TRUE(pruned.ok()) << pruned.status().ToString();
  ExpectFrontierMatchesSimulation(*pruned, rec, costs);
  opt.prune = false;
  opt.threads = 1;
  auto full = Plan(rec, costs, Goal{}, opt);
  ASSERT_TRUE(full.ok());
  EXPECT_EQ(full->evaluated, full->space_size);
  EXPECT_LE(pruned->evaluated, full->evaluated);
  ExpectSameFrontierValues(*pruned, *full);
  ExpectFrontierMatchesSimulation(*full, rec, costs);
}

INSTANTIATE_TEST_SUITE_P(Seeds, PlannerRandom, ::testing::Range(1, 25));

// The exactness checks above would pass with pruning that skips nothing: over the
// same 24 recordings, pruning must actually skip cascades.
TEST(Planner, PruningSkipsCascades) {
  int64_t pruned_total = 0, full_total = 0;
  for (int seed = 1; seed < 25; ++seed) {
    RandomSpec s;
    s.models = 4 + seed % 3;
    s.examples = 50 + 37 * (seed % 5);
    s.labels = 2 + seed % 3;
    s.scores = seed % 2 == 0;
    s.probs = seed % 4 == 1;
    s.per_example_cost = seed % 3 == 0;
    LabelSet labels;
    std::vector<double> fixed;
    Recordings rec = MakeRecordings(seed, s, &labels, &fixed);
    CostTable costs = MakeCosts(rec, fixed);
    PlannerOptions opt;
    opt.score_quantiles = 4;
    auto pruned = Plan(rec, costs, Goal{}, opt);
    ASSERT_TRUE(pruned.ok());
    pruned_total += pruned->evaluated;
    full_total += pruned->space_size;
  }
  EXPECT_LT(pruned_total, full_total * 9 / 10) << pruned_total << " of " << full_total << " evaluated";
}

// An independent enumeration of the vote-only space, scored by EvaluateCascade: its
// Pareto frontier must equal the planner's.
TEST(Planner, VoteOnlyFrontierEqualsBruteForce) {
  for (int seed : {3, 7, 11}) {
    RandomSpec s;
    s.models = 5;
    s.examples = 90;
    s.per_example_cost = seed == 7;
    LabelSet labels;
    std::vector<double> fixed;
    Recordings rec = MakeRecordings(seed, s, &labels, &fixed);
    CostTable costs = MakeCosts(rec, fixed);
    std::vector<int> order(s.models);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int a, int b) { return costs.mean[a] < costs.mean[b]; });
    std::vector<std::vector<int>> subsets;  // positions in cost order
    for (int mask = 1; mask < (1 << s.models); ++mask) {
      if (std::popcount(static_cast<unsigned>(mask)) > 3) continue;
      std::vector<int> sub;
      for (int q = 0; q < s.models; ++q)
        if (mask >> q & 1) sub.push_back(q);
      subsets.push_back(sub);
    }
    std::vector<std::pair<int, double>> points;  // (correct, cost)
    CascadeSpec spec;
    std::function<void(int, int)> rec_fn = [&](int prev_max, int used) {
      for (const auto& sub : subsets) {
        int mask = 0;
        for (int q : sub) mask |= 1 << q;
        if (sub.back() <= prev_max || (mask & used)) continue;
        TierSpec tier;
        for (int q : sub) tier.members.push_back(rec.models[order[q]].name);
        spec.tiers.push_back(tier);
        auto r = EvaluateCascade(spec, rec, costs);
        ASSERT_TRUE(r.ok());
        points.push_back({r->correct, r->mean_cost});
        spec.tiers.pop_back();
        if (spec.tiers.size() + 1 < 3 && sub.size() >= 2) {
          for (int k = static_cast<int>(sub.size()) / 2 + 1; k <= static_cast<int>(sub.size()); ++k) {
            tier.rule.min_agreement = static_cast<double>(k) / sub.size();
            spec.tiers.push_back(tier);
            rec_fn(sub.back(), used | mask);
            spec.tiers.pop_back();
          }
        }
      }
    };
    rec_fn(-1, 0);
    // Pareto of the brute force.
    std::sort(points.begin(), points.end(), [](auto& a, auto& b) {
      return a.second != b.second ? a.second < b.second : a.first > b.first;
    });
    std::vector<std::pair<int, double>> pareto;
    for (auto& p : points)
      if (pareto.empty() || p.first > pareto.back().first) pareto.push_back(p);
    PlannerOptions opt;
    opt.rules = kRuleVote;
    auto plan = Plan(rec, costs, Goal{}, opt);
    ASSERT_TRUE(plan.ok());
    EXPECT_EQ(plan->space_size, points.size());
    ASSERT_EQ(plan->frontier.size(), pareto.size()) << "seed " << seed;
    for (size_t k = 0; k < pareto.size(); ++k) {
      EXPECT_EQ(plan->frontier[k].correct, pareto[k].first);
      EXPECT_NEAR(plan->frontier[k].cost, pareto[k].second, 1e-9 * pareto[k].second);
    }
  }
}

TEST(Planner, SpaceSizeOfElevenModelsVoteOnly) {
  // Issue #2: the default vote-only space over 11 models is about 280,000 cascades.
  RandomSpec s;
  s.models = 11;
  s.examples = 400;
  s.labels = 4;
  LabelSet labels;
  std::vector<double> fixed;
  Recordings rec = MakeRecordings(5, s, &labels, &fixed);
  CostTable costs = MakeCosts(rec, fixed);
  auto plan = Plan(rec, costs, Goal{}, PlannerOptions{});
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->space_size, 280060u);
}

TEST(Planner, DeterministicAcrossThreadCounts) {
  RandomSpec s;
  s.models = 6;
  s.examples = 200;
  s.scores = true;
  LabelSet labels;
  std::vector<double> fixed;
  Recordings rec = MakeRecordings(42, s, &labels, &fixed);
  CostTable costs = MakeCosts(rec, fixed);
  PlannerOptions one, two;
  one.threads = 1;
  two.threads = 2;
  auto a = Plan(rec, costs, Goal{}, one);
  auto b = Plan(rec, costs, Goal{}, two);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ(a->frontier.size(), b->frontier.size());
  for (size_t k = 0; k < a->frontier.size(); ++k)
    EXPECT_EQ(a->frontier[k].cascade.ToString(), b->frontier[k].cascade.ToString());
}

TEST(Planner, Goals) {
  RandomSpec s;
  s.models = 6;
  s.examples = 300;
  s.scores = true;
  LabelSet labels;
  std::vector<double> fixed;
  Recordings rec = MakeRecordings(9, s, &labels, &fixed);
  CostTable costs = MakeCosts(rec, fixed);
  PlannerOptions opt;
  auto best = Plan(rec, costs, Goal{}, opt);
  ASSERT_TRUE(best.ok());
  int best_single = 0;
  for (size_t m = 0; m < rec.models.size(); ++m) {
    CascadeSpec single;
    single.tiers.push_back(TierSpec{{rec.models[m].name}, {}});
    best_single = std::max(best_single, EvaluateCascade(single, rec, costs)->correct);
  }
  EXPECT_GE(best->chosen.correct, best_single);

  // The non-inferiority test: b - c >= z sqrt(b + c) against the best single model.
  EXPECT_GE(best->wins_over_best - best->losses_to_best,
            1.645 * std::sqrt(static_cast<double>(best->wins_over_best + best->losses_to_best)) - 1e-9);
  PlannerOptions plain = opt;
  plain.match_best_z = 0;
  auto cheap = Plan(rec, costs, Goal{}, plain);
  ASSERT_TRUE(cheap.ok());
  EXPECT_LE(cheap->chosen.cost, best->chosen.cost);  // z = 0 is the least-cost match
  EXPECT_GE(cheap->chosen.correct, best_single);
  for (const OperatingPoint& p : cheap->frontier)
    if (p.correct >= best_single) {
      EXPECT_GE(p.cost, cheap->chosen.cost);
    }

  auto budget = Plan(rec, costs, *Goal::Parse("budget=" + std::to_string(best->chosen.cost / 2)), opt);
  ASSERT_TRUE(budget.ok());
  EXPECT_LE(budget->chosen.cost, best->chosen.cost / 2 * (1 + 1e-9));
  auto max_acc = Plan(rec, costs, *Goal::Parse("max-accuracy"), opt);
  ASSERT_TRUE(max_acc.ok());
  EXPECT_EQ(max_acc->chosen.correct, max_acc->frontier.back().correct);
  auto unreachable = Plan(rec, costs, *Goal::Parse("accuracy=1"), opt);
  ASSERT_TRUE(unreachable.ok());
  EXPECT_FALSE(unreachable->goal_met);
  EXPECT_FALSE(Goal::Parse("accuracy=1.5").ok());
  EXPECT_FALSE(Goal::Parse("fastest").ok());
}

TEST(Planner, ScoreRulesNeedScores) {
  RandomSpec s;
  LabelSet labels;
  std::vector<double> fixed;
  Recordings rec = MakeRecordings(1, s, &labels, &fixed);
  CostTable costs = MakeCosts(rec, fixed);
  PlannerOptions opt;
  opt.rules = kRuleScore;
  auto plan = Plan(rec, costs, Goal{}, opt);
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.status().code(), StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace coe
