// Internal: match-best's selection guards (see Guard in coe/planner.h).
#ifndef COE_PLANNER_SELECT_H_
#define COE_PLANNER_SELECT_H_

#include <span>
#include <string>

#include "coe/cost_model.h"
#include "coe/planner.h"
#include "coe/recordings.h"
#include "coe/status.h"

namespace coe {

// `result` holds a finished search of `calib` (frontier, best single model); sets
// result->chosen and result->selection by options.select. The holdout and
// cross-validation guards search parts of `calib` again with `options`.
Status SelectMatchBest(const Recordings& calib, const CostTable& costs, const PlannerOptions& options,
                       PlanResult* result);

// The search of Plan() on the examples `rows` of `calib` only (empty = all): frontier,
// space and best single model (means over those rows); chooses nothing.
StatusOr<PlanResult> SearchRows(const Recordings& calib, const CostTable& costs, const PlannerOptions& options,
                                std::span<const int> rows);

// RefitThresholds on the examples `rows` of `rec` only (empty = all).
StatusOr<CascadeSpec> RefitThresholdsOnRows(const CascadeSpec& cascade, const std::vector<double>& levels,
                                            const Recordings& rec, std::span<const int> rows);

// `model` alone, its answers compared with the truth by `match` (the plan's --match:
// every baseline and guard scores single models so, as the search does).
CascadeSpec SingleModelCascade(const std::string& model, const AnswerMatch& match);

// The warning for a split of `labeled` labeled examples on which no model of the
// search answers any right (a wrong --match or label column, most likely).
std::string NoModelIsRightWarning(const Recordings& rec, int labeled, const AnswerMatch& match);

// The inverse of the standard normal CDF, for p in (0, 1).
double NormalQuantile(double p);

}  // namespace coe

#endif  // COE_PLANNER_SELECT_H_
