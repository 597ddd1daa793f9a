// Internal: refitting a cascade's score thresholds to quantile levels on other data
// (RefitThresholds of coe/planner.h, on a part of the recordings).
#ifndef COE_PLANNER_REFIT_H_
#define COE_PLANNER_REFIT_H_

#include <span>
#include <vector>

#include "coe/cascade_spec.h"
#include "coe/recordings.h"
#include "coe/status.h"

namespace coe {

// RefitThresholds on the examples `rows` of `rec` only (empty = all).
StatusOr<CascadeSpec> RefitThresholdsOnRows(const CascadeSpec& cascade, const std::vector<double>& levels,
                                            const Recordings& rec, std::span<const int> rows);

}  // namespace coe

#endif  // COE_PLANNER_REFIT_H_
