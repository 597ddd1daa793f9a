// The planner against a naive per-example simulation through the engine's rule code.
#include "coe/planner.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <functional>
#include <numeric>
#include <random>

#include "base/numbers.h"
#include "coe/evaluate.h"
#include "coe/report.h"
#include "planner/masks.h"

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
Recordings MakeRecordings(uint32_t seed, const RandomSpec& s, LabelSet* labels, std::vector<double>* fixed_cost) {
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

void ExpectFrontierMatchesSimulation(const PlanResult& plan, const Recordings& rec, const CostTable& costs) {
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

// The same at the scale of the zoo's search (10 models, every rule kind, tens of
// millions of cascades) on a sample of 3,000 examples (47 mask words, so the vector kernels run their full width), a
// score grid of 8. The frontier found with pruning equals the exhaustive one, and each of its points equals the
// engine's per-example simulation.
TEST(Planner, ScoreRulesAtScalePruneExactly) {
  RandomSpec s;
  s.models = 10;
  s.examples = 3000;
  s.labels = 10;
  s.scores = true;
  s.per_example_cost = false;
  LabelSet labels;
  std::vector<double> fixed;
  Recordings rec = MakeRecordings(2026, s, &labels, &fixed);
  CostTable costs = MakeCosts(rec, fixed);
  PlannerOptions opt;
  opt.max_tiers = 3;
  opt.max_members = 3;
  opt.rules = kRuleVote | kRuleScore | kRuleVoteAndScore;
  opt.score_quantiles = 8;
  opt.threads = 2;
  auto pruned = Plan(rec, costs, Goal{}, opt);
  ASSERT_TRUE(pruned.ok()) << pruned.status().ToString();
  EXPECT_GT(pruned->space_size, 10000000u);
  opt.prune = false;
  auto full = Plan(rec, costs, Goal{}, opt);
  ASSERT_TRUE(full.ok());
  EXPECT_EQ(full->evaluated, full->space_size);
  EXPECT_LT(pruned->evaluated, full->evaluated);
  ExpectSameFrontierValues(*pruned, *full);
  ExpectFrontierMatchesSimulation(*pruned, rec, costs);
}

TEST(CostModel, TierTimeQueuesMembersOnTheCores) {
  const std::vector<double> ms = {2, 3, 2};
  EXPECT_EQ(TierTime(ms, LatencyMode::kParallel, 0), 3);  // a core each: the slowest
  EXPECT_EQ(TierTime(ms, LatencyMode::kParallel, 3), 3);
  EXPECT_EQ(TierTime(ms, LatencyMode::kParallel, 2), 4);  // 3 | 2 + 2
  EXPECT_EQ(TierTime(ms, LatencyMode::kParallel, 1), 7);  // one after another
  EXPECT_EQ(TierTime(ms, LatencyMode::kSequential, 0), 7);
  EXPECT_EQ(TierTime({}, LatencyMode::kParallel, 2), 0);
}

// Planning on latency (a tier takes its members' time on 2 cores) within a budget on
// the dollar figure: every frontier point's latency and dollars are the per-example
// simulation's, every one is within the budget, and pruning changes nothing.
TEST(Planner, LatencyObjectiveWithinABudgetIsExact) {
  for (int seed : {5, 6, 7}) {
    RandomSpec s;
    s.models = 6;
    s.examples = 400;
    s.scores = true;
    LabelSet labels;
    std::vector<double> fixed;
    Recordings rec = MakeRecordings(seed, s, &labels, &fixed);
    CostTable usd = MakeCosts(rec, fixed);
    std::mt19937 rng(seed);
    for (int m = 0; m < s.models; ++m) usd.latency_ms.push_back(1 + (rng() % 1000) / 10.0);
    usd.cores = 2;
    auto latency = LatencyCost(usd);
    ASSERT_TRUE(latency.ok()) << latency.status().ToString();
    std::vector<double> sorted = fixed;
    std::sort(sorted.begin(), sorted.end());
    PlannerOptions opt;
    opt.max_tiers = 3;
    opt.max_members = 3;
    opt.score_quantiles = 4;
    opt.budget_costs = usd;
    opt.budget = sorted[3];  // some models alone are over it
    auto pruned = Plan(rec, *latency, Goal{}, opt);
    ASSERT_TRUE(pruned.ok()) << pruned.status().ToString();
    ExpectFrontierMatchesSimulation(*pruned, rec, *latency);
    for (const OperatingPoint& p : pruned->frontier) {
      auto dollars = EvaluateCascade(p.cascade, rec, usd);
      ASSERT_TRUE(dollars.ok());
      EXPECT_NEAR(dollars->mean_cost, p.budget_cost, 1e-9 * std::max(1.0, p.budget_cost)) << p.cascade.ToString();
      EXPECT_LE(p.budget_cost, opt.budget * (1 + 1e-12)) << p.cascade.ToString();
    }
    EXPECT_LE(pruned->chosen.budget_cost, opt.budget * (1 + 1e-12));
    opt.prune = false;
    auto full = Plan(rec, *latency, Goal{}, opt);
    ASSERT_TRUE(full.ok());
    ExpectSameFrontierValues(*pruned, *full);
    // Without the budget the frontier reaches further, past it.
    opt.budget_costs.reset();
    auto free = Plan(rec, *latency, Goal{}, opt);
    ASSERT_TRUE(free.ok());
    EXPECT_GT(free->frontier.back().correct, pruned->frontier.back().correct);
  }
}

// Every build of the search's mask kernels that this CPU runs (AVX-512, AVX2, plain)
// counts exactly as the plain one, on ranges of every alignment and length.
TEST(PlannerMasks, EveryBuildCountsAsThePlainOne) {
  std::mt19937_64 rng(7);
  const int words = 83;
  auto random_mask = [&] {
    std::vector<MaskWord> m(words);
    for (MaskWord& w : m) w = rng() & rng();  // about a quarter of the bits
    return m;
  };
  std::vector<std::vector<MaskWord>> rows;
  for (int r = 0; r < 5; ++r) rows.push_back(random_mask());
  std::vector<const MaskWord*> row_ptrs;
  for (const auto& r : rows) row_ptrs.push_back(r.data());
  const std::vector<MaskWord> reach = random_mask(), exit = random_mask(), correct = random_mask(),
                              oracle = random_mask();
  const std::vector<const MaskKernels*> builds = SupportedMaskKernels();
  ASSERT_FALSE(builds.empty());
  const MaskKernels& plain = *builds.back();
  EXPECT_STREQ(plain.name, "plain");
  EXPECT_EQ(&BestMaskKernels(), builds.front());
  for (const MaskKernels* k : builds) {
    SCOPED_TRACE(k->name);
    for (int lo = 0; lo < 20; ++lo) {
      for (int hi = lo; hi <= words; hi += 1 + (hi > 30) * 7) {
        ASSERT_EQ(k->and_count(reach.data(), correct.data(), lo, hi),
                  plain.and_count(reach.data(), correct.data(), lo, hi));
        int got[5], want[5];
        k->and_count_rows(reach.data(), row_ptrs.data(), 5, lo, hi, got);
        plain.and_count_rows(reach.data(), row_ptrs.data(), 5, lo, hi, want);
        for (int r = 0; r < 5; ++r) ASSERT_EQ(got[r], want[r]);
        std::vector<MaskWord> next_k(words, ~MaskWord{0}), next_p(words, ~MaskWord{0});
        int ck[3], cp[3];
        k->split(reach.data(), exit.data(), correct.data(), oracle.data(), next_k.data(), lo, hi, ck);
        plain.split(reach.data(), exit.data(), correct.data(), oracle.data(), next_p.data(), lo, hi, cp);
        ASSERT_EQ(next_k, next_p);  // words outside [lo, hi) untouched by both
        for (int i = 0; i < 3; ++i) ASSERT_EQ(ck[i], cp[i]);
        // And the plain one counts what it says.
        int ec = 0, left = 0, reachable = 0;
        for (int w = lo; w < hi; ++w) {
          ec += std::popcount(reach[w] & exit[w] & correct[w]);
          left += std::popcount(reach[w] & ~exit[w]);
          reachable += std::popcount(reach[w] & ~exit[w] & oracle[w]);
          ASSERT_EQ(next_p[w], reach[w] & ~exit[w]);
        }
        ASSERT_EQ(cp[0], ec);
        ASSERT_EQ(cp[1], left);
        ASSERT_EQ(cp[2], reachable);
      }
    }
    // Exit masks: vote counts and scores (NaN among them) against every threshold, on
    // lengths that end mid-word.
    std::vector<uint8_t> v(333);
    std::vector<double> sc(333);
    for (size_t i = 0; i < v.size(); ++i) {
      v[i] = static_cast<uint8_t>(rng() % 4);
      sc[i] = i % 17 == 0 ? std::nan("") : static_cast<double>(rng() % 100) / 100;
    }
    for (int n : {0, 1, 63, 64, 65, 128, 333})
      for (int min_votes : {1, 2, 3, 4})
        for (bool test : {false, true})
          for (double tau : {0.0, 0.5, 0.99}) {
            // One word past the mask, which the kernel must leave as it is (7).
            std::vector<MaskWord> got((n + 63) / 64 + 1, 7), expect((n + 63) / 64 + 1, 7);
            k->exit_bits(v.data(), sc.data(), n, min_votes, test, tau, got.data());
            for (size_t w = 0; w + 1 < expect.size(); ++w) expect[w] = 0;
            for (int i = 0; i < n; ++i)
              if (v[i] >= min_votes && (!test || sc[i] >= tau)) expect[i / 64] |= MaskWord{1} << (i % 64);
            ASSERT_EQ(got, expect) << "n " << n << " votes " << min_votes << " tau " << tau;
          }
  }
}

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
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return costs.mean[a] < costs.mean[b]; });
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
    std::sort(points.begin(), points.end(),
              [](auto& a, auto& b) { return a.second != b.second ? a.second < b.second : a.first > b.first; });
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

// match-best's guards, each checked against an independent recomputation on the
// recordings: what it must choose, and that it never costs more than the best model.
class MatchBest : public ::testing::TestWithParam<int> {};

TEST_P(MatchBest, GuardsChooseWhatTheySayAndNeverCostMoreThanTheBestModel) {
  const int seed = GetParam();
  RandomSpec s;
  s.models = 6;
  s.examples = 400 + 100 * (seed % 3);
  s.scores = seed % 2 == 0;
  s.per_example_cost = seed % 3 == 0;
  LabelSet labels;
  std::vector<double> fixed;
  Recordings rec = MakeRecordings(seed, s, &labels, &fixed);
  CostTable costs = MakeCosts(rec, fixed);
  // The best single model, by an independent replay (ties: the cheaper).
  std::string best;
  int best_correct = -1;
  double best_cost = 0;
  std::vector<int> order(rec.models.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return costs.mean[a] < costs.mean[b]; });
  for (int m : order) {
    CascadeSpec single;
    single.tiers.push_back(TierSpec{{rec.models[m].name}, {}});
    auto e = EvaluateCascade(single, rec, costs);
    if (e->correct > best_correct) best_correct = e->correct, best = rec.models[m].name, best_cost = e->mean_cost;
  }
  std::vector<int> best_answers, answers;
  CascadeSpec best_spec;
  best_spec.tiers.push_back(TierSpec{{best}, {}});
  ASSERT_TRUE(EvaluateCascadeAnswers(best_spec, rec, costs, &best_answers).ok());
  auto b_and_c = [&](const CascadeSpec& spec) {
    EXPECT_TRUE(EvaluateCascadeAnswers(spec, rec, costs, &answers).ok());
    int b = 0, c = 0;
    for (int i = 0; i < rec.num_examples(); ++i) {
      if (rec.truth[i] == kAbstain) continue;
      b += answers[i] == rec.truth[i] && best_answers[i] != rec.truth[i];
      c += best_answers[i] == rec.truth[i] && answers[i] != rec.truth[i];
    }
    return std::pair{b, c};
  };
  for (Guard guard :
       {Guard::kNone, Guard::kMcNemar, Guard::kNonInferiority, Guard::kHoldout, Guard::kCrossValidation}) {
    SCOPED_TRACE(GuardName(guard));
    PlannerOptions opt;
    opt.select.guard = guard;
    auto plan = Plan(rec, costs, Goal{}, opt);
    ASSERT_TRUE(plan.ok()) << plan.status().ToString();
    EXPECT_EQ(plan->best_single, best);
    EXPECT_EQ(plan->selection.guard, guard);
    // The chosen figures are its replay's, and it never costs more than the best model.
    auto e = EvaluateCascade(plan->chosen.cascade, rec, costs);
    ASSERT_TRUE(e.ok());
    EXPECT_EQ(plan->chosen.correct, e->correct);
    EXPECT_NEAR(plan->chosen.cost, e->mean_cost, 1e-9 * std::max(1.0, e->mean_cost));
    EXPECT_LE(e->mean_cost, best_cost * (1 + 1e-12));
    const bool is_best = plan->chosen.cascade.ToString() == best_spec.ToString();
    EXPECT_EQ(plan->selection.kept_best_single, is_best);
    // The calibration-based guards: the chosen point passes, every cheaper candidate fails.
    const double z_ni = guard == Guard::kNonInferiority ? plan->selection.critical : 0;
    auto passes = [&](const OperatingPoint& p) {
      const auto [b, c] = b_and_c(p.cascade);
      const int n = rec.num_labeled();
      switch (guard) {
        case Guard::kNone:
          return p.correct >= best_correct;
        case Guard::kMcNemar:
          return p.correct >= best_correct && b - c >= 1.645 * std::sqrt(double(b + c)) - 1e-9;
        default: {
          const double d = double(b - c) / n, var = (b + c - double(b - c) * (b - c) / n) / (double(n) * n);
          return var > 0 ? (d + 0.005) / std::sqrt(var) >= z_ni : d + 0.005 > 0;
        }
      }
    };
    if (guard == Guard::kNone || guard == Guard::kMcNemar || guard == Guard::kNonInferiority) {
      int candidates = 0;
      for (const OperatingPoint& p : plan->frontier) {
        if (p.cost > best_cost * (1 + 1e-12)) continue;
        if (guard != Guard::kNonInferiority && p.correct < best_correct) continue;
        ++candidates;
        if (p.cost < plan->chosen.cost) {
          EXPECT_FALSE(passes(p)) << p.cascade.ToString();
        }
      }
      EXPECT_EQ(plan->selection.candidates, candidates);
      if (!is_best) {
        EXPECT_TRUE(passes(plan->chosen)) << plan->chosen.cascade.ToString();
      }
      if (guard == Guard::kNonInferiority && candidates > 0) {
        // Bonferroni: the upper alpha/m point of the normal, found here by bisection.
        double lo = 0, hi = 10;
        for (int it = 0; it < 200; ++it) {
          const double mid = (lo + hi) / 2;
          (0.5 * std::erfc(mid / std::sqrt(2.0)) > 0.05 / candidates ? lo : hi) = mid;
        }
        EXPECT_NEAR(plan->selection.critical, lo, 1e-6);
      }
    }
    // Deterministic: the same options give the same choice.
    auto again = Plan(rec, costs, Goal{}, opt);
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(again->chosen.cascade.ToString(), plan->chosen.cascade.ToString());
  }
}

INSTANTIATE_TEST_SUITE_P(Seeds, MatchBest, ::testing::Range(1, 7));

// Refitting the thresholds on the recordings they were found on changes nothing.
TEST(Planner, RefitThresholdsOnTheSameDataIsTheIdentity) {
  RandomSpec s;
  s.models = 5;
  s.examples = 500;
  s.scores = true;
  LabelSet labels;
  std::vector<double> fixed;
  Recordings rec = MakeRecordings(4, s, &labels, &fixed);
  CostTable costs = MakeCosts(rec, fixed);
  PlannerOptions opt;
  opt.score_quantiles = 6;
  auto plan = Plan(rec, costs, Goal{}, opt);
  ASSERT_TRUE(plan.ok());
  int with_scores = 0;
  for (const OperatingPoint& p : plan->frontier) {
    ASSERT_EQ(p.score_levels.size(), p.cascade.tiers.size());
    auto refit = RefitThresholds(p.cascade, p.score_levels, rec);
    ASSERT_TRUE(refit.ok());
    EXPECT_EQ(refit->ToString(), p.cascade.ToString());
    for (size_t t = 0; t < p.cascade.tiers.size(); ++t) {
      EXPECT_EQ(refit->tiers[t].rule.min_score, p.cascade.tiers[t].rule.min_score);
      with_scores += !std::isnan(p.score_levels[t]);
    }
  }
  EXPECT_GT(with_scores, 0);
  // On other data the thresholds move to that data's quantiles.
  Recordings other = MakeRecordings(5, s, &labels, &fixed);
  for (const OperatingPoint& p : plan->frontier)
    for (size_t t = 0; t < p.cascade.tiers.size(); ++t)
      if (!std::isnan(p.score_levels[t])) {
        auto refit = RefitThresholds(p.cascade, p.score_levels, other);
        ASSERT_TRUE(refit.ok());
        EXPECT_TRUE(refit->tiers[t].rule.min_score.has_value());
      }
}

// Free-text answers: numbers written differently ("2", "2.0") agree under
// --match number; the search stays exact against the replay, which uses the same rule.
TEST(Planner, NumberMatchingIsExactToo) {
  for (uint32_t seed : {5u, 6u, 7u}) {
    std::mt19937 rng(seed);
    LabelSet labels;
    const char* forms[][2] = {{"1", "1.0"}, {"2", "2.00"}, {"3", "3"}, {"4", "4.0"}};
    Recordings rec;
    rec.source = "numbers";
    rec.labels = &labels;
    const int n = 300, models = 5;
    std::vector<int> truth_value(n);
    for (int i = 0; i < n; ++i) {
      rec.ids.push_back("e" + std::to_string(i));
      truth_value[i] = static_cast<int>(rng() % 4);
      rec.truth.push_back(labels.Intern(forms[truth_value[i]][0]));
    }
    std::vector<double> fixed;
    for (int m = 0; m < models; ++m) {
      ModelRecord mr;
      mr.name = "m" + std::to_string(m);
      fixed.push_back(std::pow(3.0, m));
      for (int i = 0; i < n; ++i) {
        const bool right = rng() % 100 < static_cast<unsigned>(50 + 10 * m);
        const int v = right ? truth_value[i] : static_cast<int>(rng() % 4);
        mr.label.push_back(rng() % 20 == 0 ? kAbstain : labels.Intern(forms[v][rng() % 2]));
        mr.score.push_back(static_cast<float>((rng() % 20) / 20.0));
      }
      rec.models.push_back(std::move(mr));
    }
    CostTable costs = MakeCosts(rec, fixed);
    PlannerOptions opt;
    opt.match = *AnswerMatch::Parse("number");
    opt.score_quantiles = 3;
    auto pruned = Plan(rec, costs, Goal{}, opt);
    ASSERT_TRUE(pruned.ok()) << pruned.status().ToString();
    EXPECT_EQ(pruned->frontier.back().cascade.tiers[0].match.ToString(), "number");
    ExpectFrontierMatchesSimulation(*pruned, rec, costs);
    opt.prune = false;
    auto full = Plan(rec, costs, Goal{}, opt);
    ASSERT_TRUE(full.ok());
    ExpectSameFrontierValues(*pruned, *full);
    // Under exact matching "2" and "2.00" disagree: fewer answers are right.
    PlannerOptions exact = opt;
    exact.match = AnswerMatch{};
    auto e = Plan(rec, costs, Goal{}, exact);
    ASSERT_TRUE(e.ok());
    EXPECT_LT(e->frontier.back().correct, full->frontier.back().correct);
  }
}

// Numbers stored as text, each model writing them its own way ("42.0", "42.00",
// "4.2e1") against labels written "42": under --match number every figure of a plan
// (the guards' paired counts, the baselines, test scores, the bootstrap) counts an
// answer right exactly when the AnswerMatcher says so (issue 22: the guards, the
// baselines and the bootstrap compared label strings, so a model 6.7 points worse
// than the best passed as "noninferior" with 0 wins and 0 losses).
Recordings NumberRecordings(uint32_t seed, int n, LabelSet* labels, std::vector<double>* fixed) {
  std::mt19937 rng(seed);
  Recordings rec;
  rec.source = "numbers-" + std::to_string(seed);
  rec.labels = labels;
  std::vector<int> value(n);
  for (int i = 0; i < n; ++i) {
    rec.ids.push_back("e" + std::to_string(i));
    value[i] = 1 + static_cast<int>(rng() % 60);
    rec.truth.push_back(labels->Intern(std::to_string(value[i])));
  }
  auto form = [](int m, int v, int i) {
    if (m == 0) return std::to_string(v) + ".0";
    if (m == 1) return std::to_string(v) + ".00";
    return i % 3 ? std::to_string(v) + ".000" : FormatDouble(v / 10.0) + "e1";
  };
  *fixed = {1, 2, 4};
  for (int m = 0; m < 3; ++m) {
    ModelRecord mr;
    mr.name = "m" + std::to_string(m);
    for (int i = 0; i < n; ++i) {
      const bool right = rng() % 1000 < static_cast<unsigned>(800 + 50 * m);
      const int v = right ? value[i] : 1 + static_cast<int>(rng() % 60);
      mr.label.push_back(labels->Intern(form(m, v, i)));
      mr.score.push_back(static_cast<float>((right ? 10 + rng() % 11 : rng() % 15) / 20.0));
    }
    rec.models.push_back(std::move(mr));
  }
  return rec;
}

TEST(Planner, EveryFigureUsesTheAnswerMatch) {
  LabelSet labels;
  std::vector<double> fixed;
  const Recordings calib = NumberRecordings(11, 1200, &labels, &fixed);
  const Recordings test = NumberRecordings(12, 1200, &labels, &fixed);
  const CostTable calib_costs = MakeCosts(calib, fixed), test_costs = MakeCosts(test, fixed);
  const AnswerMatch number = *AnswerMatch::Parse("number");
  AnswerMatcher matcher(number, labels);
  // The oracle: per example, whether `spec`'s answer is the truth by the matcher.
  auto right = [&](const CascadeSpec& spec, const Recordings& rec) {
    std::vector<int> answers;
    EXPECT_TRUE(
        EvaluateCascadeAnswers(spec, rec, rec.source == calib.source ? calib_costs : test_costs, &answers).ok());
    std::vector<bool> r(rec.num_examples());
    for (int i = 0; i < rec.num_examples(); ++i) r[i] = matcher.Same(answers[i], rec.truth[i]);
    return r;
  };
  auto count = [](const std::vector<bool>& v) { return static_cast<int>(std::count(v.begin(), v.end(), true)); };
  auto single = [&](const std::string& m) {
    CascadeSpec s;
    s.tiers.push_back(TierSpec{{m}, {}, number});
    return s;
  };
  std::string best;
  int best_correct = -1;
  for (const char* m : {"m0", "m1", "m2"})
    if (count(right(single(m), calib)) > best_correct) best = m, best_correct = count(right(single(m), calib));
  const std::vector<bool> best_right = right(single(best), calib);
  for (Guard guard :
       {Guard::kNone, Guard::kMcNemar, Guard::kNonInferiority, Guard::kHoldout, Guard::kCrossValidation}) {
    SCOPED_TRACE(GuardName(guard));
    PlannerOptions opt;
    opt.match = number;
    opt.select.guard = guard;
    auto plan = Plan(calib, calib_costs, Goal{}, opt);
    ASSERT_TRUE(plan.ok()) << plan.status().ToString();
    EXPECT_EQ(plan->best_single, best);
    EXPECT_EQ(plan->best_single_correct, best_correct);
    EXPECT_TRUE(plan->warnings.empty()) << plan->warnings[0];
    for (const TierSpec& tier : plan->chosen.cascade.tiers) EXPECT_EQ(tier.match.ToString(), "number");
    const std::vector<bool> chosen = right(plan->chosen.cascade, calib);
    EXPECT_EQ(plan->chosen.correct, count(chosen));
    if (guard == Guard::kMcNemar || guard == Guard::kNonInferiority) {
      int b = 0, c = 0;
      for (size_t i = 0; i < chosen.size(); ++i) b += chosen[i] && !best_right[i], c += best_right[i] && !chosen[i];
      EXPECT_EQ(plan->selection.wins_over_best, plan->selection.kept_best_single ? 0 : b);
      EXPECT_EQ(plan->selection.losses_to_best, plan->selection.kept_best_single ? 0 : c);
      // Never a cascade more than the margin worse on calibration.
      EXPECT_GE(plan->chosen.correct, best_correct - 0.005 * calib.num_labeled() - 3 * std::sqrt(b + c + 1.0));
    }
    auto report = BuildPlanReport(*plan, Goal{}, opt, calib, calib_costs, &test, &test_costs);
    ASSERT_TRUE(report.ok()) << report.status().ToString();
    EXPECT_TRUE(report->warnings.empty()) << report->warnings[0];
    for (const ReportRow& row : report->baselines) {
      SCOPED_TRACE(row.name);
      for (const TierSpec& tier : row.cascade.tiers) EXPECT_EQ(tier.match.ToString(), "number");
      if (row.cascade.tiers[0].members.size() > 1) continue;
      EXPECT_EQ(row.calib.correct, count(right(row.cascade, calib)));
      EXPECT_EQ(row.test->correct, count(right(row.cascade, test)));
    }
    // The plurality of all models, by TallyVotes under the matcher.
    int plurality = 0;
    for (int i = 0; i < test.num_examples(); ++i) {
      std::vector<MemberOutput> outs;
      for (int m = 0; m < 3; ++m) outs.push_back(test.Output(m, i));
      plurality += matcher.Same(TallyVotes(outs, &matcher).plurality, test.truth[i]);
    }
    EXPECT_EQ(report->baselines.back().name, "plurality of all models");
    EXPECT_EQ(report->baselines.back().test->correct, plurality);
    // Test scores and their bootstrap intervals.
    const std::vector<bool> chosen_test = right(plan->chosen.cascade, test), best_test = right(single(best), test);
    const double n = test.num_labeled(), acc = count(chosen_test) / n, diff = acc - count(best_test) / n;
    EXPECT_EQ(report->chosen.test->correct, count(chosen_test));
    ASSERT_TRUE(report->intervals);
    EXPECT_GT(acc, 0.5);
    EXPECT_LE(report->intervals->accuracy[0], acc);
    EXPECT_GE(report->intervals->accuracy[1], acc);
    EXPECT_LE(report->intervals->accuracy_diff[0], diff + 1e-12);
    EXPECT_GE(report->intervals->accuracy_diff[1], diff - 1e-12);
  }
  // Compared as exact strings no model is ever right: both splits say so.
  auto plan = Plan(calib, calib_costs, Goal{}, PlannerOptions{});
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  auto report = BuildPlanReport(*plan, Goal{}, PlannerOptions{}, calib, calib_costs, &test, &test_costs);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  int flagged = 0;
  for (const std::string& w : report->warnings)
    flagged += w.find("no model answers any of its 1200 labeled examples right") != std::string::npos &&
               w.find("--match exact") != std::string::npos;
  EXPECT_EQ(flagged, 2) << ::testing::PrintToString(report->warnings);
  EXPECT_NE(PlanReportToText(*report).find("warning: numbers-12: no model answers any"), std::string::npos);
  EXPECT_NE(PlanReportToJson(*report).find("numbers-11: no model answers any"), std::string::npos);
}

TEST(Planner, AutoScoreGridFollowsTheCalibrationSize) {
  EXPECT_EQ(AutoScoreGrid(100), 2);
  EXPECT_EQ(AutoScoreGrid(300), 2);
  EXPECT_EQ(AutoScoreGrid(1000), 5);
  EXPECT_EQ(AutoScoreGrid(3000), 8);
  EXPECT_EQ(AutoScoreGrid(1000000), 8);
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
