// Internal: the cluster cost views of a plan report (issue 26): building them from the
// chosen cascade's exits, and writing them as JSON and text. Reading them back is in
// report_json.cc with the rest of the plan's JSON.
#ifndef COE_PLANNER_CLUSTER_VIEW_H_
#define COE_PLANNER_CLUSTER_VIEW_H_

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "coe/report.h"

namespace coe {

// The views for `rep` (its chosen cascade, test figures when present, and best single
// model) when `costs` has a cluster and serving options; none otherwise. A baseline type
// some model cannot run on is noted in baseline_note, not an error.
StatusOr<std::optional<ClusterView>> BuildClusterView(const PlanReport& rep, const CostTable& costs);

nlohmann::json ClusterViewJson(const ClusterView& v);
// The text block, and any warning (the chosen cascade dearer than the best single
// model at the stated rate, in either view).
std::string ClusterViewText(const ClusterView& v);
std::vector<std::string> ClusterViewWarnings(const ClusterView& v);

nlohmann::json EvalServingJson(const EvalServing& s);
std::string EvalServingText(const EvalServing& s);

nlohmann::json OtherCostPlanJson(const OtherCostPlan& p);
std::string OtherCostPlanText(const OtherCostPlan& p);

}  // namespace coe

#endif  // COE_PLANNER_CLUSTER_VIEW_H_
