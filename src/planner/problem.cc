// The tables of a search (planner/problem.h): which examples and models, in which
// order, and their costs, correctness and oracle masks. Uses no other planner file.
#include "planner/problem.h"

#include <algorithm>
#include <numeric>

namespace coe::search {

Examples MakeExamples(const Recordings& rec, const CostTable& costs, std::span<const int> rows) {
  Examples ex{rec, costs, {}, 0, {}};
  if (rows.empty()) {
    ex.rows.resize(rec.num_examples());
    std::iota(ex.rows.begin(), ex.rows.end(), 0);
  } else {
    ex.rows.assign(rows.begin(), rows.end());
  }
  if (rec.has_truth())
    for (int r : ex.rows) ex.labeled += rec.truth[r] != kAbstain;
  if (rows.empty()) {
    ex.mean = costs.mean;
  } else {
    ex.mean.assign(costs.num_models, 0.0);
    for (int m = 0; m < costs.num_models; ++m) {
      if (!costs.is_per_example()) {
        ex.mean[m] = costs.fixed[m];
        continue;
      }
      double sum = 0;
      for (int r : ex.rows) sum += costs.Cost(m, r);
      ex.mean[m] = sum / ex.rows.size();
    }
  }
  return ex;
}

// The models in the search, in ascending mean cost (ties: column order).
StatusOr<std::vector<int>> ModelsByCost(const Examples& ex, const PlannerOptions& options) {
  const Recordings& calib = ex.rec;
  std::vector<int> models;
  if (options.only.empty()) {
    models.resize(calib.models.size());
    std::iota(models.begin(), models.end(), 0);
  } else {
    for (const std::string& name : options.only) {
      int m = calib.ModelIndex(name);
      if (m < 0) return NotFoundError("--only: no model '" + name + "' in " + calib.source);
      models.push_back(m);
    }
  }
  if (models.size() > static_cast<size_t>(kMaxModels))
    return InvalidArgumentError("the planner searches at most 64 models; restrict the set");
  std::stable_sort(models.begin(), models.end(), [&](int a, int b) { return ex.mean[a] < ex.mean[b]; });
  return models;
}

// The per-example tables of the search: examples sorted easy-first (fewest distinct
// answers among the models), so that the reach masks of deep tiers concentrate in few
// words (a permutation changes no sum); costs, correctness and oracle masks.
Problem BuildProblem(Examples& ex, const std::vector<int>& models, const PlannerOptions& options) {
  const Recordings& calib = ex.rec;
  const CostTable& costs = ex.costs;
  Problem p;
  p.n = static_cast<int>(ex.rows.size());
  p.words = (p.n + 63) / 64;
  p.num_models = static_cast<int>(models.size());
  p.model = models;
  p.max_tiers = options.max_tiers;
  p.prune = options.prune;
  p.combine = costs.combine;
  p.latency_mode = costs.latency_mode;
  p.cores = costs.cores;
  if (options.budget_costs) {
    const CostTable& b = *options.budget_costs;
    p.has_budget = true;
    p.budget = &b;
    for (int m : models) p.fixed2.push_back(b.fixed[m]);
    p.min2_from.assign(p.num_models + 1, std::numeric_limits<double>::infinity());
    for (int q = p.num_models - 1; q >= 0; --q) p.min2_from[q] = std::min(p.min2_from[q + 1], p.fixed2[q]);
    p.budget_total = options.budget * p.n;
  }
  p.per_example = costs.is_per_example();
  static const LabelSet kNoLabels;
  p.match = options.match;
  p.labels = calib.labels ? calib.labels : &kNoLabels;
  AnswerMatcher matcher(p.match, *p.labels);
  std::vector<int>& order = p.order;
  order = std::move(ex.rows);
  {
    std::vector<uint8_t> hardness(calib.num_examples());  // <= 2 * 64 + 1
    std::vector<int> seen;
    for (int r : order) {
      seen.clear();
      int abstain = 0;
      for (int m : models) {
        int l = calib.models[m].label[r];
        if (l == kAbstain)
          ++abstain;
        else if (std::find(seen.begin(), seen.end(), l) == seen.end())
          seen.push_back(l);
      }
      hardness[r] = static_cast<uint8_t>(seen.size() * 2 + (abstain > 0));
    }
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return hardness[a] < hardness[b]; });
  }
  p.position.assign(calib.num_examples(), -1);
  for (int i = 0; i < p.n; ++i) p.position[order[i]] = i;
  p.all.assign(p.words, 0);
  p.total_cost.assign(p.num_models, 0.0);
  for (int q = 0; q < p.num_models; ++q)
    for (int i = 0; i < p.n; ++i) p.total_cost[q] += costs.Cost(models[q], order[i]);
  for (int i = 0; i < p.n; ++i) SetBit(p.all, i);
  for (int q = 0; q < p.num_models; ++q) {
    const int m = models[q];
    p.transfer.push_back(costs.combine == TierCombine::kSum ? TierTransfer(costs, std::span<const int>(&m, 1)) : 0.0);
    if (p.transfer.back() > 0) p.transfer_mask |= uint64_t{1} << q;
  }
  for (int q = 0; q < p.num_models; ++q) {
    p.mean_cost.push_back(ex.mean[models[q]]);
    if (!p.per_example) p.fixed.push_back(costs.fixed[models[q]]);
    std::vector<Word> mcorr(p.words, 0);
    for (int i = 0; i < p.n; ++i) {
      int e = order[i];
      int t = calib.truth[e];
      if (t != kAbstain && matcher.Same(calib.models[models[q]].label[e], t)) SetBit(mcorr, i);
    }
    p.model_correct.push_back(std::move(mcorr));
  }
  p.oracle.assign(p.words, 0);
  for (const auto& mc : p.model_correct)
    for (int w = 0; w < p.words; ++w) p.oracle[w] |= mc[w];
  if (p.per_example) {
    p.suffix_min.assign(p.num_models + 1, std::vector<double>(p.n, std::numeric_limits<double>::infinity()));
    for (int q = p.num_models - 1; q >= 0; --q)
      for (int i = 0; i < p.n; ++i)
        p.suffix_min[q][i] = std::min(p.suffix_min[q + 1][i], costs.Cost(models[q], order[i]));
    p.rows.resize(static_cast<size_t>(p.n) * p.num_models);
    for (int i = 0; i < p.n; ++i)
      for (int q = 0; q < p.num_models; ++q)
        p.rows[static_cast<size_t>(i) * p.num_models + q] = costs.Cost(models[q], order[i]);
  }
  return p;
}

}  // namespace coe::search
