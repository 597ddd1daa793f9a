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
#include <limits>
#include <optional>
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

// How match-best picks among the candidates. The calibration accuracy of the cheapest
// of millions of searched cascades is flattered by that very choice, most on small
// calibration sets, so each guard asks for evidence beyond "calibration accuracy >=
// the best single model's". Whatever the guard, the chosen cascade never costs more on
// calibration than the best single model, which is always a candidate and the fallback.
//  kNone            the cheapest frontier point at >= the best model's calibration accuracy
//  kMcNemar         ... that also beats it where they differ: b - c >= z sqrt(b + c)
//  kNonInferiority  the cheapest point not worse than the best model by more than
//                   `margin`, a one-sided paired test at level alpha / (candidates tested)
//  kHoldout         search on (1 - holdout) of calibration; of the points that match
//                   the best model there at no more cost, cheapest first, the first
//                   confirmed on the held-out rest by the one-sided non-inferiority test
//                   (margin, alpha; each try unadjusted); its score thresholds are then
//                   refitted (same quantiles) on all of calibration
//  kCrossValidation search on each of `folds` training parts; every structure found
//                   (members, vote threshold, score-threshold quantile) is scored on the
//                   held-out folds with thresholds refitted on the training parts; the
//                   cheapest structure whose mean fold accuracy is >= the best model's
//                   and whose mean fold cost is no more; refitted on all of it.
enum class Guard { kNone, kMcNemar, kNonInferiority, kHoldout, kCrossValidation };
// "none", "mcnemar", "noninferiority", "holdout", "cv".
StatusOr<Guard> ParseGuard(const std::string& text);
std::string GuardName(Guard guard);

struct SelectOptions {
  Guard guard = Guard::kNonInferiority;  // the default: see bench/selection.cc
  double mcnemar_z = 1.645;              // kMcNemar
  double margin = 0.005;                 // kNonInferiority: accuracy
  double alpha = 0.05;                   // kNonInferiority: one-sided, before the correction
  // Label-free plans (PlannerOptions::reference): the share of inputs on which the
  // chosen cascade may disagree with the reference (--epsilon).
  double epsilon = 0.02;
  int folds = 5;             // kCrossValidation
  double holdout = 0.3;      // kHoldout: share of calibration held out
  uint64_t seed = 20241127;  // kHoldout, kCrossValidation: how examples are split
};

struct PlannerOptions {
  int max_tiers = 3;    // 1..6
  int max_members = 3;  // 1..8
  unsigned rules = 0;   // RuleKinds; 0 = every kind the recordings support
  // Score thresholds tried per tier: 0 = adapt to the calibration size (AutoScoreGrid).
  int score_quantiles = 0;
  bool prune = true;
  int threads = 0;                // 0 = the hardware's
  std::vector<std::string> only;  // --only: search these models (empty = all)
  SelectOptions select;           // match-best only
  // Label-free planning (coe plan --reference): when not empty, the truth of the
  // recordings given to Plan() is this reference's answers (ReferenceAnswers), every
  // "accuracy" is the agreement with it under `match`, and match-best becomes "agree
  // with the reference on at least 1 - select.epsilon of the inputs": the cheapest
  // frontier point (every point a candidate) whose one-sided Clopper-Pearson upper
  // bound on the disagreement rate, at level select.alpha / (candidates tested)
  // (Bonferroni, as kNonInferiority corrects), is <= epsilon; with Guard::kNone, whose
  // point estimate is. Since the cascade is right wherever it agrees with a right
  // reference, its accuracy is then, with confidence 1 - alpha, at most epsilon below
  // the reference's own. Examples the reference abstained on carry no truth and are
  // not counted. The holdout, cv and mcnemar guards are refused with a reference.
  std::string reference;
  AnswerMatch match;  // how every tier compares answers (--match)
  // A bound on a second figure (--max-cost, --max-latency-ms): the mean per example of
  // `budget_costs` (a table built for the same recordings with one fixed figure per
  // model, a tier's combined as its `combine` says) must be <= `budget` for every
  // frontier point; the best single model is still the target of match-best, and when
  // it is over the budget and no cascade within it matches it, the goal is not met.
  std::optional<CostTable> budget_costs;
  double budget = 0;
  // Called now and then with the fraction of the search done.
  std::function<void(double)> progress;
};

// The score grid for `labeled` calibration examples: every threshold should split off
// enough examples to be estimated, so 2 below 600 examples, up to 8 from 1,600.
int AutoScoreGrid(int labeled);

struct OperatingPoint {
  CascadeSpec cascade;
  int correct = 0;      // labeled examples answered correctly
  double accuracy = 0;  // correct / labeled
  double cost = 0;      // mean cost per example
  // Per tier: the calibration quantile its min_score was taken at (NaN: none), so the
  // threshold can be refitted on other data (RefitThresholds).
  std::vector<double> score_levels;
  double budget_cost = std::numeric_limits<double>::quiet_NaN();  // mean of budget_costs (NaN: none)
};

// What the guard chose on, for reports.
struct Selection {
  Guard guard = Guard::kNone;
  std::string basis;              // what the estimates below were measured on
  int candidates = 0;             // cascades the guard compared with the best single model
  bool kept_best_single = false;  // no cascade passed: the best single model is chosen
  // The guard's estimates for the chosen cascade and the best single model.
  double accuracy = 0, best_accuracy = 0, cost = 0, best_cost = 0;
  // kMcNemar: b, c of the chosen point; kMcNemar and kNonInferiority: its statistic
  // and the critical value it had to reach (NaN otherwise).
  int wins_over_best = 0, losses_to_best = 0;
  double statistic = 0, critical = 0;
  // Label-free plans (PlannerOptions::reference): the reference, epsilon and alpha of
  // the goal, and for the chosen point its disagreements with the reference and the
  // one-sided upper bound on its disagreement rate (NaN with Guard::kNone).
  std::string reference;
  double epsilon = 0, alpha = 0;
  int disagreements = 0;
  double disagreement_bound = std::numeric_limits<double>::quiet_NaN();
};

struct PlanResult {
  std::vector<OperatingPoint> frontier;  // ascending cost, strictly ascending accuracy
  OperatingPoint chosen;
  bool goal_met = true;        // false: no cascade meets the goal; chosen = the nearest
  double target_accuracy = 0;  // for match-best and accuracy=X
  std::string best_single;     // the most accurate single model on calibration
  int best_single_correct = 0;
  double best_single_cost = 0;        // its mean calibration cost
  Selection selection;                // match-best: how the guard chose
  int score_grid = 0;                 // score thresholds tried per tier
  std::vector<std::string> warnings;  // e.g. a calibration split small for the search
  uint64_t space_size = 0;            // cascades in the search space (after deduplication)
  uint64_t evaluated = 0;             // cascades evaluated one by one (the rest were pruned)
  unsigned rules = 0;                 // the rule kinds searched
  int examples = 0;
  int labeled = 0;
  double seconds = 0;         // the whole of Plan()
  double search_seconds = 0;  // of which: the search on all of calibration (tables and cascades)
  double select_seconds = 0;  // of which: match-best's guard (its own searches included)
};

// Searches `calib` with costs from `costs` (built for `calib`). Errors:
// InvalidArgument for bad options or recordings without a truth column;
// FailedPrecondition for score rules asked of recordings without scores.
StatusOr<PlanResult> Plan(const Recordings& calib, const CostTable& costs, const Goal& goal,
                          const PlannerOptions& options);

// The word --reference takes for the plurality of every recorded model.
inline constexpr const char* kPluralityReference = "plurality";

// The answers that stand in for the truth in a label-free plan, one per example of
// `rec` (kAbstain where there is none): model `reference`'s answers, or with
// kPluralityReference the plurality of every model of `rec`, tallied as one tier of
// all of them in column order under `match` (TallyVotes: a tie goes to the group
// holding the last-listed column's answer; an example every model abstained on has
// none). NotFound for a reference with no column in `rec`, naming it and listing the
// models there; InvalidArgument when a model is itself named "plurality" and the
// reference is that word (ambiguous), or when `match` compares text and `rec` has no
// label names.
StatusOr<std::vector<int>> ReferenceAnswers(const Recordings& rec, const std::string& reference,
                                            const AnswerMatch& match);

// The cascade with each score threshold that has a level (a quantile, see
// OperatingPoint::score_levels) recomputed on `rec` at that quantile, as the search
// would have set it there. NotFound for a member without a column in `rec`.
StatusOr<CascadeSpec> RefitThresholds(const CascadeSpec& cascade, const std::vector<double>& levels,
                                      const Recordings& rec);

// Picks the operating point for `goal` from a frontier (ascending cost). `labeled`
// converts accuracies to counts; `best_single_correct` serves match-best.
const OperatingPoint* ChooseOperatingPoint(const std::vector<OperatingPoint>& frontier, const Goal& goal, int labeled,
                                           int best_single_correct, bool* goal_met);

}  // namespace coe

#endif  // COE_PLANNER_H_
