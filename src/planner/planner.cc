// Plan() (coe/planner.h): the search on all of calibration (planner/search.h), then
// the goal's operating point (goals.cc) or match-best's guards (planner/guards.h), then
// the budget's check of what was chosen.
#include "coe/planner.h"

#include <chrono>

#include "base/numbers.h"
#include "coe/evaluate.h"
#include "planner/guards.h"
#include "planner/search.h"

namespace coe {

StatusOr<PlanResult> Plan(const Recordings& calib, const CostTable& costs, const Goal& goal,
                          const PlannerOptions& options) {
  const auto t0 = std::chrono::steady_clock::now();
  COE_ASSIGN_OR_RETURN(PlanResult result, SearchRows(calib, costs, options, {}));
  const auto t1 = std::chrono::steady_clock::now();
  result.search_seconds = std::chrono::duration<double>(t1 - t0).count();
  result.target_accuracy = goal.kind == Goal::Kind::kAccuracy ? goal.value
                           : options.reference.empty()
                               ? static_cast<double>(result.best_single_correct) / result.labeled
                               : 1 - options.select.epsilon;
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
    COE_RETURN_IF_ERROR(ChooseMatchBest(calib, costs, options, &result));
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

}  // namespace coe
