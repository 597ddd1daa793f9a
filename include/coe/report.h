// coe/report.h: the reports `coe plan` and `coe eval` print, as data, JSON and text.
//
// A plan report puts the chosen cascade beside the frontier and the baselines (every
// single model, the confidence-threshold cascade of single models when the recordings
// have scores, and the plurality of all models), each scored on the calibration split
// and, when given, on a held-out test split, by EvaluateCascade().
//
// Thread safety: pure functions.
#ifndef COE_REPORT_H_
#define COE_REPORT_H_

#include <optional>
#include <string>
#include <vector>

#include "coe/cascade_spec.h"
#include "coe/cost_model.h"
#include "coe/evaluate.h"
#include "coe/planner.h"
#include "coe/recordings.h"

namespace coe {

struct ReportRow {
  std::string name;
  CascadeSpec cascade;
  EvalResult calib;
  std::optional<EvalResult> test;
  // Label-free plans (PlanReport::reference): calib and test score agreement with the
  // reference (their `accuracy`); these are the accuracies against the splits' true
  // labels, when they have any (TrueLabels).
  std::optional<double> calib_true_accuracy, test_true_accuracy;
};

// Label-free plans: the splits' true labels, which the plan did not use, one per
// example of the split (kAbstain: unknown), or null when the split has none.
struct TrueLabels {
  const std::vector<int>* calib = nullptr;
  const std::vector<int>* test = nullptr;
};

// 95% bootstrap percentile intervals of the chosen cascade on the test split, paired
// with the best single model (each resample draws the same examples for both).
struct TestIntervals {
  int resamples = 0;
  std::string best_single;
  double accuracy[2] = {0, 0};       // the chosen cascade's accuracy
  double accuracy_diff[2] = {0, 0};  // chosen minus best single (accuracy)
  double cost[2] = {0, 0};           // the chosen cascade's mean cost
  double saving[2] = {0, 0};         // best single's mean cost / chosen's
};

// Bootstraps TestIntervals from per-example outcomes on the test split, one per
// example in the same order for both (`resamples` draws, seeded: the same inputs give
// the same intervals). Accuracy counts ExampleOutcome::correct over the labeled ones.
TestIntervals BootstrapIntervals(const std::vector<ExampleOutcome>& chosen, const std::vector<ExampleOutcome>& best,
                                 int resamples = 2000, uint64_t seed = 1);

// With a cluster and --qps: the chosen cascade served at that rate (ServeCascade,
// coe/cost_model.h), the exit shares of the split the report shows setting each tier's
// rate, beside the best single model served alone on its own cheapest type, and both
// on --baseline-type when given.
struct ClusterView {
  ServingOptions serving;
  double max_delay_ms = 0;
  std::string split;  // "calibration" or "test"
  std::string best_single;
  Serving chosen, best;
  std::optional<Serving> chosen_on_baseline, best_on_baseline;  // --baseline-type
  std::string baseline_note;                                    // why one of them is missing
  // The search's own choice (CascadeSpec::ToString) when it cost more provisioned at
  // this rate than the best single model alone, which was chosen instead; "" otherwise.
  std::string replaced;
};

// With a cluster (costs in dollars) and a catalogue giving every model `macs`: the
// cascade a plan on multiply-adds would have chosen, and both plans' savings against
// the best single model in both units (calibration split), to show when planning on
// MACs and on dollars disagree.
struct OtherCostPlan {
  std::string key;                                     // "macs"
  std::string cascade;                                 // CascadeSpec::ToString of the plan on `key`
  bool same = false;                                   // it is the chosen cascade
  double saving_on_key = 0, saving = 0;                // it: best single / it, in `key` and in the plan's cost
  double chosen_saving_on_key = 0, chosen_saving = 0;  // the chosen cascade, likewise
};

struct PlanReport {
  std::string goal;
  // Label-free plans (coe plan --reference): the reference whose answers stood in for
  // the truth ("" for a plan on labels). Every `accuracy` is then the agreement with it
  // (ReportRow has the true accuracies), and match-best's figures are in `selection`.
  std::string reference;
  std::string cost_name;
  std::string rules;
  AnswerMatch match;  // how answers were compared with the truth, and in every tier
  bool goal_met = true;
  std::string best_single;
  int calib_examples = 0;
  int test_examples = 0;
  uint64_t searched = 0;
  uint64_t evaluated = 0;
  // A bound on a second figure (--max-cost, --max-latency-ms): its name, the bound and
  // the chosen cascade's mean on calibration ("" when none).
  std::string budget_name;
  double budget = 0, chosen_budget_cost = 0;
  double seconds = 0;         // the whole search and selection
  double search_seconds = 0;  // of which the search of all calibration
  double select_seconds = 0;  // of which match-best's guard
  int score_grid = 0;
  double best_single_cost = 0;  // on calibration
  Selection selection;          // match-best: how the guard chose
  std::vector<std::string> warnings;
  std::optional<TestIntervals> intervals;  // with a test split
  ReportRow chosen;
  std::vector<ReportRow> baselines;
  std::vector<ReportRow> frontier;
  // The frontiers of baseline families, searched like coe's own but restricted: the
  // confidence cascade of single models (score rules, one model a tier, every
  // threshold of the grid) and agreement-only cascades (vote rules), so a reader sees
  // where each family is Pareto-better. Empty families are left out.
  struct Family {
    std::string name, rules;
    std::vector<ReportRow> frontier;
  };
  std::vector<Family> families;
  // The cost model in words (unit, latency mode, cluster, link), for reports.
  std::string cost_model;
  std::optional<ClusterView> cluster;
  std::optional<OtherCostPlan> other_cost_plan;
};

// Scores the plan's cascades (and the baselines, planned with the same goal where
// they involve a choice) on both splits. `test` and `test_costs` may be null. For a
// label-free plan (options.reference set) the splits' truth is the reference's answers
// and `truth` holds their true labels, if any.
StatusOr<PlanReport> BuildPlanReport(const PlanResult& plan, const Goal& goal, const PlannerOptions& options,
                                     const Recordings& calib, const CostTable& calib_costs, const Recordings* test,
                                     const CostTable* test_costs, const TrueLabels& truth = {});

// JSON with the keys of issue #2: goal, cost, calib_examples, test_examples, searched,
// seconds, chosen {tiers, calib, test}, baselines [{name, calib, test}], frontier.
// Label-free plans add: "reference"; in every split of every row "agreement" (= its
// accuracy) and, with true labels, "true_accuracy"; and in the selection "reference",
// "epsilon", "confidence", "disagreements", "disagreement_bound" (null with guard
// none) and "statement" (what the bound says, in words).
std::string PlanReportToJson(const PlanReport& report);
// Reads PlanReportToJson's output back: writing what it reads gives the same text.
// Every value is checked before it is taken (type, range, one exit count per tier):
// InvalidArgument naming `source`, the value's path as jq writes it
// (".frontier[3].calib.accuracy") and what was expected. Keys PlanReportToJson writes
// only sometimes may be missing or null: budget, cost_model, match, a row's test,
// chosen.test_intervals, a tier's min_agreement, min_score and match, a split's
// latency_ms, p99_latency_ms, bytes_sent and cost_homogeneous, and the selection's
// statistic and critical; the selection itself is read for goal match-best only.
// Unknown keys are ignored.
StatusOr<PlanReport> PlanReportFromJson(const std::string& text, const std::string& source);
// What a label-free match-best plan (report.reference set) can say of its chosen
// cascade, in words: with Guard::kNonInferiority "with 95% confidence, accuracy is at
// most E points below REF's own: ..." (the bound, its disagreements, the candidates
// corrected for); the point estimate with kNone; or why no cascade was chosen.
std::string LabelFreeStatement(const PlanReport& report);

// A readable table, with at most `max_frontier` frontier points (0 = all).
std::string PlanReportToText(const PlanReport& report, int max_frontier = 12);

// `coe eval` with a cluster and --qps: the cascade served at that rate (ServeCascade
// with its exit shares on the recordings, the inputs' transfer added), and on
// --baseline-type T alone when given (baseline_note: why it cannot run there).
struct EvalServing {
  ServingOptions serving;
  double max_delay_ms = 0;
  Serving cascade;
  std::optional<Serving> on_baseline;
  std::string baseline_note;
};
StatusOr<std::optional<EvalServing>> BuildEvalServing(const CascadeSpec& spec, const EvalResult& r,
                                                      const CostTable& costs);

// `coe eval` output: {"cascade", "cost", "examples", "accuracy", "cost", "exits", ...},
// and "serving" with a cluster and --qps.
std::string EvalReportToJson(const CascadeSpec& spec, const std::string& cost_name, const EvalResult& r,
                             const EvalServing* serving = nullptr);
std::string EvalReportToText(const CascadeSpec& spec, const std::string& cost_name, const EvalResult& r,
                             const EvalServing* serving = nullptr);

// The text of a JSON document and where it came from (a file name, for messages).
struct JsonDocument {
  std::string source;
  std::string text;
};

// `coe report`: one self-contained HTML file (inline SVG, no script, no network) from
// `coe plan --json` output and any number of `coe run --json` outputs: the Pareto plot
// (coe's frontier on calibration and test, the baselines, the baseline families'
// frontiers, the chosen cascade; each mark's <title> is its hover text), the chosen
// cascade as tiers, the goal and cost model, and live runs beside the plan with
// differences flagged. The plan is read by PlanReportFromJson; of a run, examples,
// exits (integers), cost and seconds (non-negative numbers; seconds may be absent)
// and accuracy (in [0, 1] or null). InvalidArgument, from the first malformed value,
// naming its document's source, the value's path and what was expected.
StatusOr<std::string> RenderHtmlReport(const JsonDocument& plan, const std::vector<JsonDocument>& runs);

}  // namespace coe

#endif  // COE_REPORT_H_
