// The search behind Plan(). Every tier's decision on every example is computed once,
// through TallyVotes() and DeferralRule::Exits() (the engine's own rule code), and
// bit-packed: per tier option an exit mask, per member set a "plurality is correct"
// mask. A cascade is then evaluated by AND/popcount over reach masks, and the search
// walks cascades depth-first so that a prefix's reach mask and cost are shared by all
// of its completions.
#include "coe/planner.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <mutex>
#include <numeric>
#include <span>
#include <thread>
#include <unordered_map>

#include "base/cores.h"
#include "base/numbers.h"
#include "base/thread_pool.h"
#include "coe/evaluate.h"
#include "planner/masks.h"
#include "planner/select.h"

namespace coe {

StatusOr<unsigned> ParseRuleKinds(const std::string& text) {
  unsigned kinds = 0;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(',', start);
    if (end == std::string::npos) end = text.size();
    std::string item = text.substr(start, end - start);
    start = end + 1;
    if (item == "vote")
      kinds |= kRuleVote;
    else if (item == "score")
      kinds |= kRuleScore;
    else if (item == "vote+score" || item == "score+vote")
      kinds |= kRuleVoteAndScore;
    else if (item == "all")
      kinds |= kRuleVote | kRuleScore | kRuleVoteAndScore;
    else
      return InvalidArgumentError("--rules: unknown rule kind '" + item + "' (expected vote, score, vote+score, all)");
  }
  return kinds;
}

std::string RuleKindsToString(unsigned kinds) {
  std::string s;
  auto add = [&](const char* k) { s += s.empty() ? k : std::string(",") + k; };
  if (kinds & kRuleVote) add("vote");
  if (kinds & kRuleScore) add("score");
  if (kinds & kRuleVoteAndScore) add("vote+score");
  return s;
}

StatusOr<Goal> Goal::Parse(const std::string& text) {
  Goal g;
  auto value = [&](const std::string& prefix) -> Status {
    std::optional<double> v = ParseDouble(text.substr(prefix.size()));
    if (!v || !std::isfinite(*v) || *v < 0)
      return InvalidArgumentError("--goal: '" + text + "': expected a non-negative number after '" + prefix + "'");
    g.value = *v;
    return Status::Ok();
  };
  if (text == "match-best") {
    g.kind = Kind::kMatchBest;
  } else if (text == "max-accuracy") {
    g.kind = Kind::kMaxAccuracy;
  } else if (text.rfind("accuracy=", 0) == 0) {
    g.kind = Kind::kAccuracy;
    COE_RETURN_IF_ERROR(value("accuracy="));
    if (g.value > 1) return InvalidArgumentError("--goal: accuracy must be in [0,1], e.g. accuracy=0.9");
  } else if (text.rfind("budget=", 0) == 0) {
    g.kind = Kind::kBudget;
    COE_RETURN_IF_ERROR(value("budget="));
  } else {
    return InvalidArgumentError("--goal: '" + text + "' (expected match-best, accuracy=X, budget=X or max-accuracy)");
  }
  return g;
}

std::string Goal::ToString() const {
  switch (kind) {
    case Kind::kMatchBest:
      return "match-best";
    case Kind::kMaxAccuracy:
      return "max-accuracy";
    case Kind::kAccuracy:
      return "accuracy=" + FormatDouble(value);
    case Kind::kBudget:
      return "budget=" + FormatDouble(value);
  }
  return "";
}

const OperatingPoint* ChooseOperatingPoint(const std::vector<OperatingPoint>& frontier, const Goal& goal, int labeled,
                                           int best_single_correct, bool* goal_met) {
  *goal_met = true;
  if (frontier.empty()) return nullptr;
  const OperatingPoint* most_accurate = &frontier.back();
  auto least_cost_reaching = [&](int target) -> const OperatingPoint* {
    for (const OperatingPoint& p : frontier)
      if (p.correct >= target) return &p;
    *goal_met = false;
    return most_accurate;
  };
  switch (goal.kind) {
    case Goal::Kind::kMatchBest:
      return least_cost_reaching(best_single_correct);
    case Goal::Kind::kAccuracy:
      return least_cost_reaching(static_cast<int>(std::ceil(goal.value * labeled - 1e-9)));
    case Goal::Kind::kMaxAccuracy:
      return most_accurate;
    case Goal::Kind::kBudget: {
      const OperatingPoint* best = nullptr;
      for (const OperatingPoint& p : frontier)
        if (p.cost <= goal.value * (1 + 1e-12)) best = &p;
      if (!best) {
        *goal_met = false;
        return &frontier.front();
      }
      return best;
    }
  }
  return nullptr;
}

namespace {

constexpr int kMaxTiers = 6;
constexpr int kMaxMembers = 8;
constexpr int kMaxModels = 64;

using Word = MaskWord;

// A rule option of a member set, with the examples at which it exits.
struct Option {
  DeferralRule rule;
  double score_level = std::numeric_limits<double>::quiet_NaN();  // quantile of min_score
  std::vector<Word> exit;
};

struct MemberSet {
  std::vector<int> pos;  // positions in cost order, ascending
  uint64_t mask = 0;     // bit per position
  int max_pos = 0;
  std::vector<Word> correct;  // plurality answer is the truth (labeled examples)
  std::vector<Option> options;
  // A tier's figure per example reaching it, with fixed per-model figures: the cost's
  // when it is a time (TierCombine::kTime), the budget's (when there is one).
  double unit = 0, unit2 = 0;
};

// One member set's tally on every example, in 9 bytes an example instead of a
// TierVote's 32 (recordings may have millions of rows). Of(count, score) rebuilds what
// DeferralRule::Exits reads exactly as TallyVotes made it; the plurality label itself
// is not kept (only whether there is one), since the correct mask is built at once.
struct Tallies {
  std::vector<uint8_t> votes;  // votes for the plurality; 0 when every member abstained
  std::vector<double> mean_score;
  int members = 0;
  std::vector<int> scratch;    // example indices for QuantileGrid
  std::vector<uint64_t> exit;  // an option's exit mask being built
  void Resize(int n, int m) {
    votes.resize(n);
    mean_score.resize(n);
    members = m;
  }
  void Set(int i, const TierVote& v) {
    votes[i] = static_cast<uint8_t>(v.plurality == kAbstain ? 0 : v.votes);
    mean_score[i] = v.mean_score;
  }
  // The fewest votes from which `rule`'s vote test passes (members + 1: never).
  // DeferralRule::Exits decides it, from the count alone: agreement grows with the
  // votes, and no votes never exits.
  int MinVotes(const DeferralRule& rule) const {
    const DeferralRule vote_part{rule.min_agreement, std::nullopt};
    int min_votes = members + 1;
    for (int v = members; v >= 0 && vote_part.Exits(Of(v, 0.0)); --v) min_votes = v;
    return min_votes;
  }
  TierVote Of(int count, double score) const {
    TierVote v;
    v.votes = count;
    v.plurality = v.votes > 0 ? 0 : kAbstain;  // a stand-in: Exits only asks whether there is one
    v.members = members;
    v.agreement = static_cast<double>(v.votes) / members;  // as TallyVotes computes it
    v.mean_score = score;
    return v;
  }
};

struct Step {
  int set = 0;
  int option = -1;  // -1: final tier
};

struct Candidate {
  int correct = 0;
  double cost = 0;   // summed over examples
  double cost2 = 0;  // the budget's figure, summed over examples
  uint64_t key = 0;  // deterministic tie-break: lower wins
  int depth = 0;
  Step path[kMaxTiers];
};

// Pareto frontier in (cost strictly ascending, correct strictly ascending). Besides
// the points it keeps, for every count k of examples answered right, the least cost
// of a point reaching k or more (need_[k]), so that the questions of the search (a
// few per cascade evaluated) are a lookup each: 8 bytes an example a searcher.
class Frontier {
 public:
  // `max_correct`: no point reaches more.
  explicit Frontier(int max_correct) : need_(max_correct + 2, std::numeric_limits<double>::infinity()) {}

  // StrictlyDominates(correct, cost): a point with correct >= `correct` and cost <=
  // `cost` exists and is not equal in both, so nothing reaching at most `correct` at no
  // less than `cost` can be on the frontier. It holds exactly when a point reaching
  // more costs no more, or one reaching at least as many costs less.
  bool StrictlyDominates(int correct, double cost) const { return cost >= need_[correct + 1] || cost > need_[correct]; }

  // True when a point with correct >= `correct` and cost <= `cost` exists.
  bool Covers(int correct, double cost) const { return need_[correct] <= cost; }

  void Insert(const Candidate& c) {
    size_t k = std::upper_bound(cost_.begin(), cost_.end(), c.cost) - cost_.begin();
    if (k > 0) {
      Candidate& p = pts_[k - 1];
      if (p.correct > c.correct) return;
      if (p.correct == c.correct) {
        if (p.cost < c.cost) return;
        // Equal in both: the lower key stays.
        if (c.key < p.key) p = c;
        return;
      }
    }
    // c is on the frontier: drop the points it dominates (cost >= c.cost, correct <= c.correct).
    size_t first = k;
    while (first > 0 && cost_[first - 1] == c.cost && correct_[first - 1] <= c.correct) --first;
    size_t last = k;
    while (last < pts_.size() && correct_[last] <= c.correct) ++last;
    pts_.erase(pts_.begin() + first, pts_.begin() + last);
    cost_.erase(cost_.begin() + first, cost_.begin() + last);
    correct_.erase(correct_.begin() + first, correct_.begin() + last);
    pts_.insert(pts_.begin() + first, c);
    cost_.insert(cost_.begin() + first, c.cost);
    correct_.insert(correct_.begin() + first, c.correct);
    // need_ ascends with the count: lower it from c.correct down while c is cheaper.
    for (int j = c.correct; j >= 0 && need_[j] > c.cost; --j) need_[j] = c.cost;
  }

  const std::vector<Candidate>& points() const { return pts_; }

 private:
  std::vector<Candidate> pts_;
  std::vector<double> cost_;  // pts_[k].cost
  std::vector<int> correct_;  // pts_[k].correct
  std::vector<double> need_;  // [k]: the least cost of a point with correct >= k
};

struct Problem {
  int n = 0;  // examples
  int words = 0;
  int num_models = 0;             // in the search
  std::vector<int> model;         // position -> recordings model index
  std::vector<double> mean_cost;  // by position
  bool per_example = false;
  std::vector<double> fixed;  // by position
  std::vector<double> rows;   // [example (sorted order)][position]
  // suffix_min[p][i] = min over positions q >= p of the cost of example i (per-example
  // costs only): the least any tier whose top member is at p or later can cost.
  std::vector<std::vector<double>> suffix_min;
  std::vector<Word> all;                         // every example
  std::vector<Word> oracle;                      // some model is right
  std::vector<double> total_cost;                // by position: summed over every example
  std::vector<std::vector<Word>> model_correct;  // by position
  std::vector<MemberSet> sets;
  // after[q] = the sets whose top position is >= q, in the order of `sets`, with their
  // masks at hand: the tiers that can follow one topped at q - 1.
  struct SetRef {
    uint64_t mask;
    int index;
  };
  std::vector<std::vector<SetRef>> after;
  std::vector<int> order;  // search position -> example of the recordings
  // The search position of each example of the recordings (-1: not searched): the
  // tallies read the recordings in their own order (a random walk over them costs a
  // cache miss a read).
  std::vector<int> position;
  AnswerMatch match;                 // how every tier compares answers
  const LabelSet* labels = nullptr;  // the names behind label indices (for `match`)
  int max_tiers = 3;
  bool prune = true;
  TierCombine combine = TierCombine::kSum;  // of the cost
  // The budget (PlannerOptions::budget_costs), when there is one: each position's
  // figure, the least at or after each position, and the bound on its sum.
  bool has_budget = false;
  std::vector<double> fixed2;
  std::vector<double> min2_from;
  double budget_total = 0;
  const CostTable* budget = nullptr;
  LatencyMode latency_mode = LatencyMode::kParallel;  // of the cost, when a time
  int cores = 0;
};

inline void SetBit(std::vector<Word>& v, int i) { v[i >> 6] |= Word{1} << (i & 63); }

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
    const double set_cost = SetCost(s, p_.total_cost, p_.n);
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
  double SetCost(const MemberSet& s, const std::vector<double>& mc, int left) const {
    if (p_.combine == TierCombine::kTime) return left * s.unit;
    double sum = 0;
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
      const double set_cost = SetCost(s, mc, left);
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

// The values at the j/(g+1) quantiles (j = 1..g) of values[idx[k]] (idx is reordered):
// each is the element a full sort would put at that index, found by nth_element on
// the part not yet ordered. Indices rather than a copy of the values: 4 bytes an
// example instead of 8 (recordings may have millions of rows).
std::vector<std::pair<double, double>> QuantileGrid(const std::vector<double>& values, std::vector<int>& idx, int g) {
  std::vector<std::pair<double, double>> out;  // (value, quantile level)
  if (idx.empty() || g <= 0) return out;
  auto less = [&](int a, int b) { return values[a] < values[b]; };
  size_t done = 0;  // idx[0, done) holds the smallest `done` values
  for (int j = 1; j <= g; ++j) {
    size_t at = static_cast<size_t>(std::floor(static_cast<double>(j) / (g + 1) * idx.size()));
    at = std::min(at, idx.size() - 1);
    if (at >= done) {
      std::nth_element(idx.begin() + done, idx.begin() + at, idx.end(), less);
      done = at + 1;
    }
    double v = values[idx[at]];
    if (v <= 0) continue;  // a rule of "score >= 0" is no rule
    if (out.empty() || out.back().first != v) out.emplace_back(v, static_cast<double>(j) / (g + 1));
  }
  return out;
}

}  // namespace

namespace {

// The examples a search sees: rows of the recordings (all of them, or a part, for the
// guards that search on part of calibration), with the models' mean costs over them.
struct Examples {
  const Recordings& rec;
  const CostTable& costs;
  std::vector<int> rows;
  int labeled = 0;
  std::vector<double> mean;  // per recordings model
};

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
  return Status::Ok();
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

// One member set: its "plurality is correct" mask and its tier options, decided on
// every example through the engine's rule code.
MemberSet BuildMemberSet(const Problem& p, const Recordings& calib, const std::vector<int>& comb, unsigned rules,
                         int grid, Tallies& votes, std::vector<MemberOutput>& outs, AnswerMatcher& matcher) {
  const std::vector<int>& models = p.model;
  MemberSet s;
  s.pos = comb;
  for (int q : comb) s.mask |= uint64_t{1} << q;
  s.max_pos = comb.back();
  std::vector<double> figures;
  if (p.combine == TierCombine::kTime) {
    for (int q : comb) figures.push_back(p.fixed[q]);
    s.unit = TierTime(figures, p.latency_mode, p.cores);
  }
  if (p.has_budget) {
    figures.clear();
    for (int q : comb) figures.push_back(p.fixed2[q]);
    s.unit2 = p.budget->combine == TierCombine::kTime ? TierTime(figures, p.budget->latency_mode, p.budget->cores)
                                                      : std::accumulate(figures.begin(), figures.end(), 0.0);
  }
  s.correct.assign(p.words, 0);
  bool scores = true;
  for (int q : comb) scores &= calib.models[models[q]].has_scores();
  votes.Resize(p.n, static_cast<int>(comb.size()));
  for (int e = 0; e < static_cast<int>(p.position.size()); ++e) {
    const int i = p.position[e];
    if (i < 0) continue;
    outs.clear();
    for (int q : comb) outs.push_back(calib.Output(models[q], e));
    const TierVote v = TallyVotes(outs, &matcher);
    votes.Set(i, v);
    int t = calib.truth[e];
    if (t != kAbstain && matcher.Same(v.plurality, t)) SetBit(s.correct, i);
  }
  std::vector<Word>& exit = votes.exit;  // built here, copied only when new
  const MaskKernels& k = BestMaskKernels();
  auto add_option = [&](DeferralRule rule, double level = std::numeric_limits<double>::quiet_NaN()) {
    // DeferralRule::Exits reads a tally's vote count and mean score only: its vote test
    // as a count (MinVotes); its score test (mean_score >= min_score, NaN failing) done
    // by the kernel, 64 examples to a word.
    exit.assign(p.words, 0);
    k.exit_bits(votes.votes.data(), votes.mean_score.data(), p.n, votes.MinVotes(rule), rule.min_score.has_value(),
                rule.min_score.value_or(0.0), exit.data());
    for (const Option& prev : s.options)
      if (prev.exit == exit) return;  // same decisions: the same cascades
    s.options.push_back(Option{rule, level, exit});
  };
  const int n = static_cast<int>(comb.size());
  std::vector<double> thetas;
  for (int k = n / 2 + 1; k <= n; ++k) thetas.push_back(static_cast<double>(k) / n);
  if ((rules & kRuleVote) && n >= 2)
    for (double th : thetas) add_option(DeferralRule{th, std::nullopt});
  std::vector<int>& idx = votes.scratch;
  if ((rules & kRuleScore) && scores) {
    idx.clear();
    for (int i = 0; i < p.n; ++i)
      if (!std::isnan(votes.mean_score[i])) idx.push_back(i);
    for (auto [tau, level] : QuantileGrid(votes.mean_score, idx, grid))
      add_option(DeferralRule{std::nullopt, tau}, level);
  }
  if ((rules & kRuleVoteAndScore) && scores && n >= 2) {
    for (double th : thetas) {
      const int min_votes = votes.MinVotes(DeferralRule{th, std::nullopt});
      idx.clear();
      for (int i = 0; i < p.n; ++i)
        if (votes.votes[i] >= min_votes && !std::isnan(votes.mean_score[i])) idx.push_back(i);
      for (auto [tau, level] : QuantileGrid(votes.mean_score, idx, grid)) add_option(DeferralRule{th, tau}, level);
    }
  }
  return s;
}

// Every member set of 1 to max_members positions, built on the pool.
void BuildMemberSets(Problem& p, const Recordings& calib, int max_members, unsigned rules, int grid, ThreadPool& pool) {
  max_members = std::min(max_members, p.num_models);
  std::vector<std::vector<int>> combos;
  std::vector<int> comb;
  std::function<void(int)> gen = [&](int start) {
    if (!comb.empty()) combos.push_back(comb);
    if (static_cast<int>(comb.size()) == max_members) return;
    for (int q = start; q < p.num_models; ++q) {
      comb.push_back(q);
      gen(q + 1);
      comb.pop_back();
    }
  };
  gen(0);
  // Smaller sets first: of cascades equal in accuracy and cost, the one found first is
  // kept, and with latency as the cost a member that runs beside a slower one is free;
  // listing smaller sets first keeps the cascade without it.
  std::stable_sort(combos.begin(), combos.end(), [](const auto& a, const auto& b) { return a.size() < b.size(); });
  p.sets.resize(combos.size());
  // One task a thread, each with its own scratch tallies, taking sets off a counter.
  std::atomic<size_t> next_combo{0};
  std::vector<std::function<void()>> tasks;
  for (int t = 0; t < pool.size(); ++t)
    tasks.push_back([&] {
      Tallies votes;
      std::vector<MemberOutput> outs;
      AnswerMatcher matcher(p.match, *p.labels);
      for (size_t c; (c = next_combo.fetch_add(1)) < combos.size();)
        p.sets[c] = BuildMemberSet(p, calib, combos[c], rules, grid, votes, outs, matcher);
    });
  pool.RunAll(std::move(tasks));
  p.after.assign(p.num_models + 1, {});
  for (int q = 0; q <= p.num_models; ++q)
    for (int si = 0; si < static_cast<int>(p.sets.size()); ++si)
      if (p.sets[si].max_pos >= q) p.after[q].push_back(Problem::SetRef{p.sets[si].mask, si});
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

StatusOr<PlanResult> SearchRows(const Recordings& calib, const CostTable& costs, const PlannerOptions& options,
                                std::span<const int> rows) {
  if (!calib.has_truth())
    return InvalidArgumentError(calib.source + ": no 'label' column: the planner needs the truth");
  COE_RETURN_IF_ERROR(ValidateOptions(options));
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
  Examples ex = MakeExamples(calib, costs, rows);
  if (ex.labeled == 0) return InvalidArgumentError(calib.source + ": every 'label' is empty: nothing to calibrate on");
  const int grid = options.score_quantiles > 0 ? options.score_quantiles : AutoScoreGrid(ex.labeled);
  COE_ASSIGN_OR_RETURN(std::vector<int> models, ModelsByCost(ex, options));
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
  Problem p = BuildProblem(ex, models, options);
  ThreadPool pool(threads);
  BuildMemberSets(p, calib, options.max_members, rules, grid, pool);
  PlanResult result;
  result.rules = rules;
  result.examples = p.n;
  result.labeled = ex.labeled;
  result.score_grid = grid;
  result.space_size = SpaceCounter(p).Count(0, 0);
  for (const Candidate& c : RunSearch(p, pool, options.progress, &result.evaluated))
    result.frontier.push_back(ToOperatingPoint(p, calib, c, ex.labeled));
  // The best single model (ties: the cheaper).
  result.best_single_correct = -1;
  for (int q = 0; q < p.num_models; ++q) {
    int correct = 0;
    for (int w = 0; w < p.words; ++w) correct += std::popcount(p.model_correct[q][w]);
    if (correct > result.best_single_correct) {
      result.best_single_correct = correct;
      result.best_single = calib.models[models[q]].name;
      result.best_single_cost = ex.mean[models[q]];
    }
  }
  return result;
}

StatusOr<PlanResult> Plan(const Recordings& calib, const CostTable& costs, const Goal& goal,
                          const PlannerOptions& options) {
  const auto t0 = std::chrono::steady_clock::now();
  COE_ASSIGN_OR_RETURN(PlanResult result, SearchRows(calib, costs, options, {}));
  const auto t1 = std::chrono::steady_clock::now();
  result.search_seconds = std::chrono::duration<double>(t1 - t0).count();
  result.target_accuracy = goal.kind == Goal::Kind::kAccuracy
                               ? goal.value
                               : static_cast<double>(result.best_single_correct) / result.labeled;
  if ((result.rules & (kRuleScore | kRuleVoteAndScore)) && result.labeled < 1000)
    result.warnings.push_back(calib.source + " has " + std::to_string(result.labeled) +
                              " labeled examples for a search of " + std::to_string(result.space_size) +
                              " cascades with score rules: estimates this fine do not hold well "
                              "on new data below ~1,000 examples (the score grid is " +
                              std::to_string(result.score_grid) +
                              " thresholds a tier; match-best's guard: " + GuardName(options.select.guard) + ")");
  if (result.best_single_correct == 0)
    result.warnings.push_back(NoModelIsRightWarning(calib, result.labeled, options.match));
  if (options.budget_costs && result.frontier.empty())
    return InvalidArgumentError("no cascade keeps " + options.budget_costs->name + " within the budget of " +
                                FormatDouble(options.budget) + " per example on " + calib.source);
  if (goal.kind == Goal::Kind::kMatchBest) {
    COE_RETURN_IF_ERROR(SelectMatchBest(calib, costs, options, &result));
    result.select_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  } else {
    const OperatingPoint* chosen =
        ChooseOperatingPoint(result.frontier, goal, result.labeled, result.best_single_correct, &result.goal_met);
    if (!chosen) return InternalError("the search found no cascade");
    result.chosen = *chosen;
  }
  if (options.budget_costs) {
    // The guards may fall back to the best single model, which the search did not hold
    // to the budget: the figure of what was chosen, replayed.
    COE_ASSIGN_OR_RETURN(EvalResult b, EvaluateCascade(result.chosen.cascade, calib, *options.budget_costs));
    result.chosen.budget_cost = b.mean_cost;
    if (b.mean_cost > options.budget * (1 + 1e-12)) {
      result.warnings.push_back("the goal chose " + result.chosen.cascade.ToString() + ", over the budget (" +
                                FormatDouble(b.mean_cost) + " > " + FormatDouble(options.budget) + " " +
                                options.budget_costs->name +
                                "): no cascade within it passed; the most accurate cascade within the budget is "
                                "shown");
      result.chosen = result.frontier.back();
      result.goal_met = false;
    }
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return result;
}

std::string NoModelIsRightWarning(const Recordings& rec, int labeled, const AnswerMatch& match) {
  return rec.source + ": no model answers any of its " + std::to_string(labeled) +
         " labeled examples right (every model scores 0% with --match " + match.ToString() +
         "): are the answers written otherwise than the labels (\"42.0\" for \"42\": --match number; free text: "
         "--match jaccard:0.6), or is 'label' the wrong column?";
}

int AutoScoreGrid(int labeled) { return std::clamp(labeled / 200, 2, 8); }

StatusOr<Guard> ParseGuard(const std::string& text) {
  if (text == "none") return Guard::kNone;
  if (text == "mcnemar") return Guard::kMcNemar;
  if (text == "noninferiority") return Guard::kNonInferiority;
  if (text == "holdout") return Guard::kHoldout;
  if (text == "cv") return Guard::kCrossValidation;
  return InvalidArgumentError("--select: '" + text + "' (expected none, mcnemar, noninferiority, holdout or cv)");
}

std::string GuardName(Guard guard) {
  switch (guard) {
    case Guard::kNone:
      return "none";
    case Guard::kMcNemar:
      return "mcnemar";
    case Guard::kNonInferiority:
      return "noninferiority";
    case Guard::kHoldout:
      return "holdout";
    case Guard::kCrossValidation:
      return "cv";
  }
  return "";
}

StatusOr<CascadeSpec> RefitThresholds(const CascadeSpec& cascade, const std::vector<double>& levels,
                                      const Recordings& rec) {
  return RefitThresholdsOnRows(cascade, levels, rec, {});
}

StatusOr<CascadeSpec> RefitThresholdsOnRows(const CascadeSpec& cascade, const std::vector<double>& levels,
                                            const Recordings& rec, std::span<const int> rows) {
  CascadeSpec out = cascade;
  COE_ASSIGN_OR_RETURN(auto members, ResolveMembers(cascade, rec));
  std::vector<MemberOutput> outs;
  std::vector<double> vals;
  for (size_t t = 0; t < out.tiers.size() && t < levels.size(); ++t) {
    if (std::isnan(levels[t]) || !out.tiers[t].rule.min_score) continue;
    const DeferralRule vote_only{out.tiers[t].rule.min_agreement, std::nullopt};
    static const LabelSet kNoLabels;
    AnswerMatcher matcher(out.tiers[t].match, rec.labels ? *rec.labels : kNoLabels);
    vals.clear();
    const int n = rows.empty() ? rec.num_examples() : static_cast<int>(rows.size());
    for (int k = 0; k < n; ++k) {
      const int i = rows.empty() ? k : rows[k];
      outs.clear();
      for (int m : members[t]) outs.push_back(rec.Output(m, i));
      const TierVote v = TallyVotes(outs, &matcher);
      if (std::isnan(v.mean_score)) continue;
      if (vote_only.min_agreement && !vote_only.Exits(v)) continue;
      vals.push_back(v.mean_score);
    }
    if (vals.empty()) continue;  // no scores here: keep the threshold
    // The index QuantileGrid takes for this level.
    size_t idx = static_cast<size_t>(std::floor(levels[t] * vals.size()));
    idx = std::min(idx, vals.size() - 1);
    std::nth_element(vals.begin(), vals.begin() + idx, vals.end());
    out.tiers[t].rule.min_score = vals[idx];
  }
  return out;
}

}  // namespace coe
