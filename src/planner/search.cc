// The search behind Plan(). Every tier's decision on every example is computed once,
// through TallyVotes() and DeferralRule::Exits() (the engine's own rule code), and
// bit-packed: per tier option an exit mask, per member set a "plurality is correct"
// mask. A cascade is then evaluated by AND/popcount over reach masks, and the search
// walks cascades depth-first so that a prefix's reach mask and cost are shared by all
// of its completions.
//
// SearchRows: the tables (planner/problem.h, planner/member_sets.h), then the
// depth-first search of a Searcher a thread, each with its own frontier
// (planner/frontier.h), merged at the end. Uses those files, masks and goals.cc
// (AutoScoreGrid).
#include "planner/search.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <functional>
#include <memory>
#include <unordered_map>

#include "base/cores.h"
#include "base/thread_pool.h"
#include "planner/frontier.h"
#include "planner/masks.h"
#include "planner/member_sets.h"
#include "planner/problem.h"

namespace coe {
namespace search {
namespace {

// Counts the cascades below a prefix that used `used` (bit per position) at `depth`.
class SpaceCounter {
 public:
  explicit SpaceCounter(const Problem& p) : p_(p) {}
  uint64_t Count(uint64_t used, int depth) {
    uint64_t key = used * 8 + depth;
    auto it = memo_.find(key);
    if (it != memo_.end()) return it->second;
    int prev_max = used ? 63 - std::countl_zero(used) : -1;
    uint64_t total = 0;
    for (const MemberSet& s : p_.sets) {
      if (s.max_pos <= prev_max || (s.mask & used)) continue;
      total += 1;
      if (depth + 1 < p_.max_tiers && !s.options.empty()) total += s.options.size() * Count(used | s.mask, depth + 1);
    }
    memo_[key] = total;
    return total;
  }

 private:
  const Problem& p_;
  std::unordered_map<uint64_t, uint64_t> memo_;
};

class Searcher {
 public:
  explicit Searcher(const Problem& p)
      : p_(p),
        buf_(kMaxTiers + 1, std::vector<Word>(p.words)),
        mc_(kMaxTiers + 1, std::vector<double>(p.num_models)),
        next_(kMaxTiers + 1) {}

  // Evaluates the cascades that start with `first` (one root work item).
  void RunItem(int item_index, const Step& first) {
    key_ = static_cast<uint64_t>(item_index) << 40;
    Candidate c;
    c.depth = 0;
    const MemberSet& s = p_.sets[first.set];
    std::vector<Word>& reach = buf_[0];
    std::copy(p_.all.begin(), p_.all.end(), reach.begin());
    const double set_cost = SetCost(s, p_.total_cost, p_.n, 0);
    const double set_cost2 = p_.n * s.unit2;
    if (first.option < 0) {
      Emit(c, first, k_.and_count(reach.data(), s.correct.data(), 0, p_.words), set_cost, set_cost2);
      return;
    }
    if (p_.has_budget && OverBudget(set_cost2)) return;
    const Option& o = s.options[first.option];
    std::vector<Word>& next = buf_[1];
    int counts[3];
    k_.split(reach.data(), o.exit.data(), s.correct.data(), p_.oracle.data(), next.data(), 0, p_.words, counts);
    c.path[0] = first;
    c.depth = 1;
    c.correct = counts[0];
    c.cost = set_cost;
    c.cost2 = set_cost2;
    Visit(c, s.mask, s.max_pos, 1, counts[1], counts[2], 0, p_.words);
  }

  Frontier& frontier() { return frontier_; }
  uint64_t evaluated() const { return evaluated_; }

 private:
  // The cost of each model over the examples of `reach` (words [lo, hi)).
  void MaskedCosts(const std::vector<Word>& reach, int lo, int hi, int count, std::vector<double>& mc) const {
    if (!p_.per_example) {
      for (int q = 0; q < p_.num_models; ++q) mc[q] = count * p_.fixed[q];
      return;
    }
    std::fill(mc.begin(), mc.end(), 0.0);
    const int m = p_.num_models;
    for (int w = lo; w < hi; ++w) {
      Word bits = reach[w];
      while (bits) {
        int i = w * 64 + std::countr_zero(bits);
        bits &= bits - 1;
        const double* row = &p_.rows[static_cast<size_t>(i) * m];
        for (int q = 0; q < m; ++q) mc[q] += row[q];
      }
    }
  }

  // Offers `prefix` + `last` (a final tier) with the given totals. Keys grow within a
  // worker, so a candidate that ties a point already found never replaces it.
  void Emit(const Candidate& prefix, Step last, int correct, double cost, double cost2) {
    ++evaluated_;
    const uint64_t key = key_++;
    if (frontier_.Covers(correct, cost)) return;
    if (p_.has_budget && OverBudget(cost2)) return;
    Candidate f = prefix;
    f.path[f.depth] = last;
    f.depth += 1;
    f.correct = correct;
    f.cost = cost;
    f.cost2 = cost2;
    f.key = key;
    frontier_.Insert(f);
  }

  bool OverBudget(double cost2) const { return cost2 > p_.budget_total * (1 + 1e-12); }

  // What a member set costs over `left` examples reaching it, given each model's cost
  // over them (mc): the sum, or its time per example times `left`.
  // `used`: the positions of the tiers before; the first tier with a cloud member pays
  // the input's transfer (CostTable::transfer_usd_per_byte), as EvaluateCascade does.
  double SetCost(const MemberSet& s, const std::vector<double>& mc, int left, uint64_t used) const {
    if (p_.combine == TierCombine::kTime) return left * s.unit;
    double sum = (used & p_.transfer_mask) ? 0.0 : left * s.transfer;
    for (int q : s.pos) sum += mc[q];
    return sum;
  }

  // `c` holds the non-final tiers so far (c.depth of them); buf_[depth] is the reach
  // mask of the next tier, valid on words [plo, phi), with `left` examples in it of
  // which `reachable` are answered right by some model.
  void Visit(Candidate& c, uint64_t used, int prev_max, int depth, int left, int reachable, int plo, int phi) {
    const std::vector<Word>& reach = buf_[depth];
    // The words from the first nonzero one to the last: examples are sorted easy-first,
    // so deep reach masks are empty at the start.
    int lo = plo, hi = phi;
    while (lo < hi && !reach[lo]) ++lo;
    while (hi > lo && !reach[hi - 1]) --hi;
    // The accuracy any completion can reach: every reached example that some model gets
    // right is answered right.
    const int ub = c.correct + reachable;
    // Whether the frontier strictly dominates every cascade that reaches at most ub at
    // no less than `cost`.
    auto dominated = [&](double cost) { return frontier_.StrictlyDominates(ub, cost); };
    if (p_.prune) {
      // Least cost: one more tier holding only the cheapest usable top member.
      double lb = std::numeric_limits<double>::infinity();
      if (prev_max + 1 < p_.num_models) {
        if (!p_.per_example) {
          for (int q = prev_max + 1; q < p_.num_models; ++q) lb = std::min(lb, left * p_.fixed[q]);
        } else {
          const std::vector<double>& sm = p_.suffix_min[prev_max + 1];
          lb = 0;
          for (int w = lo; w < hi; ++w) {
            for (Word bits = reach[w]; bits; bits &= bits - 1) lb += sm[w * 64 + std::countr_zero(bits)];
          }
        }
      }
      if (dominated(c.cost + lb)) return;
    }
    // Over the budget whatever comes next (a tier costs at least its top member).
    if (p_.has_budget && prev_max + 1 < p_.num_models && OverBudget(c.cost2 + left * p_.min2_from[prev_max + 1]))
      return;
    std::vector<double>& mc = mc_[depth];
    MaskedCosts(reach, lo, hi, left, mc);
    // The sets that can come next, and each one's count as the final tier, all counted
    // in one call. Every cascade through a set costs at least the set's cost here and
    // reaches at most ub: a set strictly dominated by that is skipped.
    Next& next_sets = next_[depth];
    if (next_sets.used != used || next_sets.prev_max != prev_max) {  // siblings share the list
      next_sets.usable.clear();
      for (const Problem::SetRef& ref : p_.after[prev_max + 1])
        if (!(ref.mask & used)) next_sets.usable.push_back(ref.index);
      next_sets.used = used;
      next_sets.prev_max = prev_max;
    }
    next_sets.set.clear();
    next_sets.cost.clear();
    next_sets.rows.clear();
    for (int si : next_sets.usable) {
      const MemberSet& s = p_.sets[si];
      const double set_cost = SetCost(s, mc, left, used);
      if (p_.prune && dominated(c.cost + set_cost)) continue;
      if (p_.has_budget && OverBudget(c.cost2 + left * s.unit2)) continue;
      next_sets.set.push_back(si);
      next_sets.cost.push_back(set_cost);
      next_sets.rows.push_back(s.correct.data());
    }
    const int num_next = static_cast<int>(next_sets.set.size());
    next_sets.count.resize(num_next);
    k_.and_count_rows(reach.data(), next_sets.rows.data(), num_next, lo, hi, next_sets.count.data());
    const bool can_extend = depth + 1 < p_.max_tiers;
    for (int k = 0; k < num_next; ++k) {
      const int si = next_sets.set[k];
      const MemberSet& s = p_.sets[si];
      const double set_cost = next_sets.cost[k];
      // The frontier may have moved since the set was listed.
      if (k > 0 && p_.prune && dominated(c.cost + set_cost)) continue;
      const double cost2 = c.cost2 + left * s.unit2;
      Emit(c, Step{si, -1}, c.correct + next_sets.count[k], c.cost + set_cost, cost2);
      if (!can_extend) continue;
      std::vector<Word>& next = buf_[depth + 1];
      for (int oi = 0; oi < static_cast<int>(s.options.size()); ++oi) {
        const Option& o = s.options[oi];
        int counts[3];
        k_.split(reach.data(), o.exit.data(), s.correct.data(), p_.oracle.data(), next.data(), lo, hi, counts);
        Candidate child = c;
        child.path[depth] = Step{si, oi};
        child.depth = depth + 1;
        child.correct = c.correct + counts[0];
        child.cost = c.cost + set_cost;
        child.cost2 = cost2;
        Visit(child, used | s.mask, s.max_pos, depth + 1, counts[1], counts[2], lo, hi);
      }
    }
  }

  // The sets that may follow a prefix, with their cost and count as the final tier.
  struct Next {
    uint64_t used = ~uint64_t{0};  // the prefix `usable` was listed for
    int prev_max = -2;
    std::vector<int> usable;  // the sets that may follow it
    // Of those, the ones not dominated here:
    std::vector<int> set;
    std::vector<double> cost;
    std::vector<const Word*> rows;  // each set's "plurality is correct" mask
    std::vector<int> count;
  };

  const Problem& p_;
  const MaskKernels& k_ = BestMaskKernels();
  std::vector<std::vector<Word>> buf_;   // reach masks by depth; [kMaxTiers] is scratch
  std::vector<std::vector<double>> mc_;  // per-model cost over buf_[depth]
  std::vector<Next> next_;               // by depth
  Frontier frontier_{p_.n};
  uint64_t evaluated_ = 0;
  uint64_t key_ = 0;
};

Status ValidateOptions(const PlannerOptions& options) {
  if (options.max_tiers < 1 || options.max_tiers > kMaxTiers)
    return InvalidArgumentError("--max-tiers must be in [1, " + std::to_string(kMaxTiers) + "]");
  if (options.max_members < 1 || options.max_members > kMaxMembers)
    return InvalidArgumentError("--max-members must be in [1, " + std::to_string(kMaxMembers) + "]");
  if (options.score_quantiles < 0 || options.score_quantiles > 100)
    return InvalidArgumentError("--score-grid must be in [1, 100] (0 or auto: adapt to the calibration size)");
  if (options.select.folds < 2 || options.select.folds > 20) return InvalidArgumentError("--folds must be in [2, 20]");
  if (!(options.select.holdout > 0 && options.select.holdout < 1))
    return InvalidArgumentError("--holdout must be in (0, 1)");
  if (!(options.select.margin >= 0 && options.select.margin < 1))
    return InvalidArgumentError("--margin must be in [0, 1)");
  if (!(options.select.epsilon >= 0 && options.select.epsilon < 1))
    return InvalidArgumentError("--epsilon must be in [0, 1)");
  if (!(options.select.alpha > 0 && options.select.alpha < 1))
    return InvalidArgumentError("--confidence must be in (0, 1)");
  return Status::Ok();
}

// The depth-first search on the pool: one task a thread, each with its own Searcher
// (and frontier), taking root items off a counter; the frontiers merged
// deterministically (lower key wins ties). Adds the count of cascades evaluated one by
// one to *evaluated.
std::vector<Candidate> RunSearch(const Problem& p, ThreadPool& pool, const std::function<void(double)>& progress,
                                 uint64_t* evaluated) {
  // Root work items: each member set as a single tier, and each (set, option) prefix.
  std::vector<Step> items;
  for (int si = 0; si < static_cast<int>(p.sets.size()); ++si) {
    items.push_back(Step{si, -1});
    if (p.max_tiers > 1)
      for (int oi = 0; oi < static_cast<int>(p.sets[si].options.size()); ++oi) items.push_back(Step{si, oi});
  }
  const int workers = std::min<int>(pool.size(), std::max<size_t>(1, items.size()));
  const int num_items = static_cast<int>(items.size());
  std::atomic<int> next{0}, done{0};
  std::vector<std::unique_ptr<Searcher>> searchers;
  std::vector<std::function<void()>> tasks;
  for (int t = 0; t < workers; ++t) {
    searchers.push_back(std::make_unique<Searcher>(p));
    tasks.push_back([&, s = searchers.back().get()] {
      for (int i; (i = next.fetch_add(1)) < num_items;) {
        s->RunItem(i, items[i]);
        done.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  pool.RunAll(std::move(tasks), [&] {
    if (progress) progress(static_cast<double>(done.load(std::memory_order_relaxed)) / num_items);
  });
  if (progress) progress(1.0);
  std::vector<Candidate> all;
  for (auto& s : searchers) {
    *evaluated += s->evaluated();
    for (const Candidate& c : s->frontier().points()) all.push_back(c);
  }
  std::sort(all.begin(), all.end(), [](const Candidate& a, const Candidate& b) { return a.key < b.key; });
  Frontier merged(p.n);
  for (const Candidate& c : all) merged.Insert(c);
  return merged.points();
}

// A frontier candidate as a cascade, with each tier's score-threshold quantile.
OperatingPoint ToOperatingPoint(const Problem& p, const Recordings& calib, const Candidate& c, int labeled) {
  OperatingPoint op;
  for (int d = 0; d < c.depth; ++d) {
    const MemberSet& s = p.sets[c.path[d].set];
    TierSpec tier;
    for (int q : s.pos) tier.members.push_back(calib.models[p.model[q]].name);
    tier.match = p.match;
    double level = std::numeric_limits<double>::quiet_NaN();
    if (c.path[d].option >= 0) {
      tier.rule = s.options[c.path[d].option].rule;
      level = s.options[c.path[d].option].score_level;
    }
    op.cascade.tiers.push_back(std::move(tier));
    op.score_levels.push_back(level);
  }
  op.correct = c.correct;
  op.accuracy = static_cast<double>(c.correct) / labeled;
  op.cost = c.cost / p.n;
  if (p.has_budget) op.budget_cost = c.cost2 / p.n;
  return op;
}

}  // namespace
}  // namespace search

StatusOr<PlanResult> SearchRows(const Recordings& calib, const CostTable& costs, const PlannerOptions& options,
                                std::span<const int> rows) {
  if (!calib.has_truth())
    return InvalidArgumentError(calib.source +
                                ": no 'label' column: the planner needs the truth, or a reference to plan "
                                "against without labels (--reference MODEL or --reference plurality)");
  COE_RETURN_IF_ERROR(search::ValidateOptions(options));
  if (costs.num_examples != calib.num_examples() || costs.num_models != static_cast<int>(calib.models.size()))
    return InvalidArgumentError("cost table does not match " + calib.source);
  if (!options.match.exact() && !calib.labels)
    return FailedPreconditionError("--match " + options.match.ToString() + " compares answers as text; " +
                                   calib.source + " has no label names");
  if (costs.combine == TierCombine::kTime && costs.is_per_example())
    return InvalidArgumentError(costs.name + ": a tier's time needs one figure per model, not one per example");
  if (options.budget_costs) {
    const CostTable& b = *options.budget_costs;
    if (b.num_models != costs.num_models || b.is_per_example())
      return InvalidArgumentError("the budget's figure (" + b.name + ") needs one fixed figure per model of " +
                                  calib.source);
    if (!(options.budget >= 0) || !std::isfinite(options.budget))
      return InvalidArgumentError("the budget must be a non-negative number");
  }
  search::Examples ex = search::MakeExamples(calib, costs, rows);
  if (ex.labeled == 0) return InvalidArgumentError(calib.source + ": every 'label' is empty: nothing to calibrate on");
  const int grid = options.score_quantiles > 0 ? options.score_quantiles : AutoScoreGrid(ex.labeled);
  COE_ASSIGN_OR_RETURN(std::vector<int> models, search::ModelsByCost(ex, options));
  bool any_scores = false;
  for (int m : models) any_scores |= calib.models[m].has_scores();
  unsigned rules = options.rules;
  if (rules == 0) rules = any_scores ? (kRuleVote | kRuleScore | kRuleVoteAndScore) : kRuleVote;
  if ((rules & (kRuleScore | kRuleVoteAndScore)) && !any_scores)
    return FailedPreconditionError(calib.source +
                                   ": score rules need '<model>|score' or "
                                   "'<model>|p:<label>' columns, and no model has them");
  const int threads = options.threads > 0 ? options.threads : AvailableCores();
  // The tables live only in this scope: a guard's further searches do not stack on them.
  search::Problem p = search::BuildProblem(ex, models, options);
  ThreadPool pool(threads);
  search::BuildMemberSets(p, calib, options.max_members, rules, grid, pool);
  PlanResult result;
  result.rules = rules;
  result.examples = p.n;
  result.labeled = ex.labeled;
  result.score_grid = grid;
  result.space_size = search::SpaceCounter(p).Count(0, 0);
  for (const search::Candidate& c : search::RunSearch(p, pool, options.progress, &result.evaluated))
    result.frontier.push_back(search::ToOperatingPoint(p, calib, c, ex.labeled));
  // The best single model (ties: the cheaper).
  result.best_single_correct = -1;
  for (int q = 0; q < p.num_models; ++q) {
    int correct = 0;
    for (int w = 0; w < p.words; ++w) correct += std::popcount(p.model_correct[q][w]);
    if (correct > result.best_single_correct) {
      result.best_single_correct = correct;
      result.best_single = calib.models[models[q]].name;
      result.best_single_cost = ex.mean[models[q]] + p.transfer[q];  // alone, it sends every input
    }
  }
  return result;
}

std::string NoModelIsRightWarning(const Recordings& rec, int labeled, const AnswerMatch& match) {
  return rec.source + ": no model answers any of its " + std::to_string(labeled) +
         " labeled examples right (every model scores 0% with --match " + match.ToString() +
         "): are the answers written otherwise than the labels (\"42.0\" for \"42\": --match number; free text: "
         "--match jaccard:0.6), or is 'label' the wrong column?";
}

}  // namespace coe
