// coe/planner.h: searching cascades of ensembles over recordings.
//
// Plan() enumerates every cascade of the search space below on a calibration split,
// evaluates each one exactly, keeps the accuracy/cost Pareto frontier and picks the
// operating point a Goal asks for.
//
// Search space (binding, issue #2):
//  - 1 to max_tiers tiers; each tier 1 to max_members models; a model appears at most
//    once; tiers in strictly ascending order of their most expensive member's mean
//    cost; members of a tier listed in ascending mean cost.
//  - A non-final tier has a rule: a vote rule needs >= 2 members and takes every
//    threshold k/n with k > n/2; a score rule takes a grid of `score_quantiles`
//    quantiles of the tier's calibration mean scores (for vote+score, of the scores of
//    the examples that pass the vote threshold); identical exit sets are tried once.
//  - The final tier answers with its plurality.
//
// Exactness: each candidate's accuracy and cost are those that EvaluateCascade()
// (coe/evaluate.h) reports for it on the same split (tests/planner_test.cc proves it
// on random recordings). With `prune`, subtrees whose best possible accuracy and
// least possible cost are strictly dominated by a point already found are skipped;
// the frontier and the chosen point are the same as without pruning (tested).
//
// Thread safety: Plan() may be called from any thread; it starts `threads` workers
// and calls `progress` from the calling thread only.
#ifndef COE_PLANNER_H_
#define COE_PLANNER_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "coe/cascade_spec.h"
#include "coe/cost_model.h"
#include "coe/recordings.h"
#include "coe/status.h"

namespace coe {

// Which deferral rules the search tries, as a bit set.
enum RuleKinds : unsigned {
  kRuleVote = 1,          // min_agreement only
  kRuleScore = 2,         // min_score only
  kRuleVoteAndScore = 4,  // both must hold
};
// Parses "vote", "score", "vote+score" or a comma list of them; "all" = every kind.
StatusOr<unsigned> ParseRuleKinds(const std::string& text);
std::string RuleKindsToString(unsigned kinds);

struct Goal {
  enum class Kind {
    kMatchBest,    // least cost with accuracy >= the best single model's
    kAccuracy,     // least cost with accuracy >= value
    kBudget,       // most accurate with mean cost <= value
    kMaxAccuracy,  // most accurate (least cost among equals)
  };
  Kind kind = Kind::kMatchBest;
  double value = 0;

  // "match-best", "accuracy=0.9", "budget=0.001", "max-accuracy".
  static StatusOr<Goal> Parse(const std::string& text);
  std::string ToString() const;
};

struct PlannerOptions {
  int max_tiers = 3;    // 1..6
  int max_members = 3;  // 1..8
  unsigned rules = 0;   // RuleKinds; 0 = every kind the recordings support
  int score_quantiles = 8;
  bool prune = true;
  int threads = 0;  // 0 = the hardware's
  std::vector<std::string> models;  // restrict the search to these (empty = all)
  // match-best only: the chosen cascade must also beat the best single model on the
  // calibration examples where the two differ by at least z standard errors: with b
  // examples only the cascade gets right and c only the single model gets right,
  // b - c >= z * sqrt(b + c) (a one-sided McNemar test). Picking the cheapest of
  // millions of candidates flatters its calibration accuracy; z = 1.645
  // (one-sided 95%, the default) guards against that; 0 compares accuracies only.
  double match_best_z = 1.645;
  // Called now and then with the fraction of the search done.
  std::function<void(double)> progress;
};

struct OperatingPoint {
  CascadeSpec cascade;
  int correct = 0;     // labeled examples answered correctly
  double accuracy = 0; // correct / labeled
  double cost = 0;     // mean cost per example
};

struct PlanResult {
  std::vector<OperatingPoint> frontier;  // ascending cost, strictly ascending accuracy
  OperatingPoint chosen;
  bool goal_met = true;       // false: no cascade meets the goal; chosen = the nearest
  double target_accuracy = 0; // for match-best and accuracy=X
  std::string best_single;    // the most accurate single model on calibration
  // match-best with match_best_z > 0: the chosen point's b and c (see PlannerOptions).
  int wins_over_best = 0, losses_to_best = 0;
  uint64_t space_size = 0;    // cascades in the search space (after deduplication)
  uint64_t evaluated = 0;     // cascades evaluated one by one (the rest were pruned)
  unsigned rules = 0;         // the rule kinds searched
  int examples = 0;
  int labeled = 0;
  double seconds = 0;
};

// Searches `calib` with costs from `costs` (built for `calib`). Errors:
// InvalidArgument for bad options or recordings without a truth column;
// FailedPrecondition for score rules asked of recordings without scores.
StatusOr<PlanResult> Plan(const Recordings& calib, const CostTable& costs, const Goal& goal,
                          const PlannerOptions& options);

// Picks the operating point for `goal` from a frontier (ascending cost). `labeled`
// converts accuracies to counts; `best_single_correct` serves match-best.
const OperatingPoint* ChooseOperatingPoint(const std::vector<OperatingPoint>& frontier,
                                           const Goal& goal, int labeled,
                                           int best_single_correct, bool* goal_met);

}  // namespace coe

#endif  // COE_PLANNER_H_
