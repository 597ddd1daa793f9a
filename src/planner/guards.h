// Internal: match-best's selection guards (see Guard in coe/planner.h).
#ifndef COE_PLANNER_GUARDS_H_
#define COE_PLANNER_GUARDS_H_

#include <string>

#include "coe/cost_model.h"
#include "coe/planner.h"
#include "coe/recordings.h"
#include "coe/status.h"

namespace coe {

// `result` holds a finished search of `calib` (frontier, best single model); sets
// result->chosen and result->selection by options.select. The holdout and
// cross-validation guards search parts of `calib` again with `options` (SearchRows,
// planner/search.h) and refit thresholds on them (planner/refit.h).
Status ChooseMatchBest(const Recordings& calib, const CostTable& costs, const PlannerOptions& options,
                       PlanResult* result);

// `model` alone, its answers compared with the truth by `match` (the plan's --match:
// every baseline and guard scores single models so, as the search does).
CascadeSpec SingleModelCascade(const std::string& model, const AnswerMatch& match);

// The inverse of the standard normal CDF, for p in (0, 1).
double NormalQuantile(double p);

}  // namespace coe

#endif  // COE_PLANNER_GUARDS_H_
