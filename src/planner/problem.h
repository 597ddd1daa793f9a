// Internal: the tables the planner's search runs on (planner/search.cc): the examples
// it sees, the models in cost order, per model and per member set the bit masks of
// their answers, and per member set its rule options (planner/member_sets.cc builds
// those). Plain data, built once and then read by every searcher thread at once.
#ifndef COE_PLANNER_PROBLEM_H_
#define COE_PLANNER_PROBLEM_H_

#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "coe/cost_model.h"
#include "coe/planner.h"
#include "coe/recordings.h"
#include "coe/rules.h"
#include "coe/status.h"
#include "planner/masks.h"

namespace coe::search {

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
  // What sending an example's input to this tier costs, paid when no tier before sent
  // it (TierTransfer: the largest of its members' `transfer`).
  double transfer = 0;
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
  std::vector<Word> all;           // every example
  std::vector<Word> oracle;        // some model is right
  std::vector<double> total_cost;  // by position: summed over every example
  // By position: TierTransfer of the model alone (0 but for cloud models with a
  // transfer price); transfer_mask: the positions where it is > 0, whose tier sends.
  std::vector<double> transfer;
  uint64_t transfer_mask = 0;
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

// The examples a search sees: rows of the recordings (all of them, or a part, for the
// guards that search on part of calibration), with the models' mean costs over them.
struct Examples {
  const Recordings& rec;
  const CostTable& costs;
  std::vector<int> rows;
  int labeled = 0;
  std::vector<double> mean;  // per recordings model
};

// The examples `rows` of `rec` (empty = all), with the models' mean costs over them.
Examples MakeExamples(const Recordings& rec, const CostTable& costs, std::span<const int> rows);

// The models in the search, in ascending mean cost (ties: column order); an error when
// options.only names a model `ex` lacks, or there are more than kMaxModels.
StatusOr<std::vector<int>> ModelsByCost(const Examples& ex, const PlannerOptions& options);

// The per-example tables of the search over `models` (positions in cost order), every
// one but the member sets (BuildMemberSets). Takes ex.rows (moved into Problem::order).
Problem BuildProblem(Examples& ex, const std::vector<int>& models, const PlannerOptions& options);

}  // namespace coe::search

#endif  // COE_PLANNER_PROBLEM_H_
