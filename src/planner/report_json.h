// Internal: reading `coe run --json` output for `coe report` (the plan's own reader,
// PlanReportFromJson, is in coe/report.h). Both go through one checked JSON reader.
#ifndef COE_PLANNER_REPORT_JSON_H_
#define COE_PLANNER_REPORT_JSON_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "coe/status.h"

namespace coe {

// The figures of a live run that `coe report` sets beside the plan.
struct RunFigures {
  std::string source;
  int64_t examples = 0;
  std::vector<int64_t> exits;      // examples answered by each tier
  std::optional<double> accuracy;  // null in the JSON when nothing was labeled
  double cost = 0;                 // mean per example
  std::optional<double> seconds;
};

// Reads the summary `coe run --json` prints. The keys read are checked (examples,
// exits: non-negative integers; accuracy: a number in [0, 1] or null; cost,
// seconds: non-negative numbers; seconds may be absent); others are ignored.
// InvalidArgument naming `source`, the value's path and what was expected.
StatusOr<RunFigures> RunFiguresFromJson(const std::string& text, const std::string& source);

}  // namespace coe

#endif  // COE_PLANNER_REPORT_JSON_H_
