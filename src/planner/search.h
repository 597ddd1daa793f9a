// Internal: the search behind Plan() (coe/planner.h), on all of calibration or on a
// part of it (match-best's guards search parts again: planner/guards.h).
#ifndef COE_PLANNER_SEARCH_H_
#define COE_PLANNER_SEARCH_H_

#include <span>
#include <string>

#include "coe/cost_model.h"
#include "coe/planner.h"
#include "coe/recordings.h"
#include "coe/rules.h"
#include "coe/status.h"

namespace coe {

// The search of Plan() on the examples `rows` of `calib` only (empty = all): frontier,
// space and best single model (means over those rows); chooses nothing.
StatusOr<PlanResult> SearchRows(const Recordings& calib, const CostTable& costs, const PlannerOptions& options,
                                std::span<const int> rows);

// The warning for a split of `labeled` labeled examples on which no model of the
// search answers any right (a wrong --match or label column, most likely).
std::string NoModelIsRightWarning(const Recordings& rec, int labeled, const AnswerMatch& match);

}  // namespace coe

#endif  // COE_PLANNER_SEARCH_H_
