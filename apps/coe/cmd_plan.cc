// `coe plan` and `coe eval`: planning and scoring cascades over recordings.
#include <malloc.h>

#include <cstdio>

#include "coe/cascade_spec.h"
#include "coe/evaluate.h"
#include "coe/files.h"
#include "coe/planner.h"
#include "coe/report.h"
#include "commands.h"
#include "common.h"
#include "progress.h"

namespace coe::app {

namespace {

struct PlanFlags {
  std::string calib, test, models, goal = "match-best", rules, out, report;
  int max_tiers = 3, max_members = 3, threads = 0;
  std::string score_grid = "auto", select = "noninferiority", frontier = "12", match = "exact";
  std::string objective = "cost";
  double max_cost = -1, max_latency_ms = -1;  // budgets (-1: none)
  SelectOptions select_options;
  std::vector<std::string> only;
  bool json = false, no_prune = false;
  RecordingsReadOptions read;
  CostFlags cost;
};

struct ReportFlags {
  std::string plan, out;
  std::vector<std::string> runs;
};

// The cost model in words, for reports.
std::string CostModelWords(const CostFlags& c, const std::string& cost_name, bool latency_objective) {
  std::string s;
  if (latency_objective) {
    s = "--objective latency: " + cost_name + ", each tier an example reaches taking its members' time";
  } else {
    s = c.key.empty() ? "the default figure of every command" : "--cost " + c.key;
    s += " (" + cost_name + "), summed over every member of every tier an example reaches";
  }
  s += "; latency " + (c.latency.empty() ? std::string("parallel") : c.latency) +
       (c.cores == "0" ? "" : " on " + c.cores + (c.cores == "1" ? " core" : " cores")) + " where figures exist";
  if (!c.cluster.empty()) s += "; GPU cluster " + c.cluster;
  if (!c.link.empty()) s += "; edge/cloud link " + c.link;
  return s;
}

struct EvalFlags {
  std::string cascade, data, models;
  bool json = false;
  RecordingsReadOptions read;
  CostFlags cost;
};

int RunPlan(const PlanFlags& f) {
  const char* cmd = "plan";
  // One malloc arena: the planner's worker threads would otherwise each grow their own
  // and leave its freed blocks resident (peak memory on 1M-row recordings: 1.9x the
  // CSV with one arena, up to 2.2x with one per thread). Its threads hardly allocate.
  mallopt(M_ARENA_MAX, 1);
  std::vector<std::string> warnings;
  auto catalogue = ReadCatalogue(f.models);
  if (!catalogue.ok()) return Fail(cmd, catalogue.status());
  auto goal = Goal::Parse(f.goal);
  if (!goal.ok()) return Fail(cmd, goal.status());
  PlannerOptions opt;
  opt.max_tiers = f.max_tiers;
  opt.max_members = f.max_members;
  if (f.score_grid == "auto") {
    opt.score_quantiles = 0;
  } else {
    char* end = nullptr;
    const long g = std::strtol(f.score_grid.c_str(), &end, 10);
    if (f.score_grid.empty() || *end || g < 1 || g > 100)
      return Fail(cmd, InvalidArgumentError("--score-grid: '" + f.score_grid + "' (expected auto or 1 to 100)"));
    opt.score_quantiles = static_cast<int>(g);
  }
  auto match = AnswerMatch::Parse(f.match);
  if (!match.ok()) return Fail(cmd, match.status().WithPrefix("--match"));
  opt.match = *match;
  auto guard = ParseGuard(f.select);
  if (!guard.ok()) return Fail(cmd, guard.status());
  opt.select = f.select_options;
  opt.select.guard = *guard;
  opt.prune = !f.no_prune;
  opt.threads = f.threads;
  opt.only = f.only;
  if (!f.rules.empty()) {
    auto r = ParseRuleKinds(f.rules);
    if (!r.ok()) return Fail(cmd, r.status());
    opt.rules = *r;
  }
  auto cost_opt = f.cost.Build();
  if (!cost_opt.ok()) return Fail(cmd, cost_opt.status());
  cost_opt->only = f.only;
  LabelSet labels;
  RecordingsReadOptions read = f.read;
  read.keep_ids = false;  // planning needs no ids
  auto calib = ReadRecordings(f.calib, &labels, &warnings, read);
  if (!calib.ok()) return Fail(cmd, calib.status());
  DropUnknownModels(&*calib, *catalogue, &warnings);
  std::optional<Recordings> test;
  if (!f.test.empty()) {
    auto t = ReadRecordings(f.test, &labels, &warnings, read);
    if (!t.ok()) return Fail(cmd, t.status());
    DropUnknownModels(&*t, *catalogue, &warnings);
    test = std::move(*t);
  }
  PrintWarnings(warnings, f.json);
  if (f.objective != "cost" && f.objective != "latency")
    return Fail(cmd, InvalidArgumentError("--objective: '" + f.objective + "' (expected cost or latency)"));
  const bool by_latency = f.objective == "latency";
  if (by_latency && f.max_latency_ms >= 0)
    return Fail(cmd, InvalidArgumentError("--objective latency: bound the latency with --goal budget=MS, and the "
                                          "cost with --max-cost"));
  if (!by_latency && f.max_cost >= 0)
    return Fail(cmd, InvalidArgumentError("bound the cost with --goal budget=X; --max-cost bounds it when "
                                          "planning on latency (--objective latency)"));
  // The figure the search minimises, and the one a budget bounds: cost and latency.
  auto figures = [&](const Recordings& rec) -> StatusOr<std::pair<CostTable, std::optional<CostTable>>> {
    COE_ASSIGN_OR_RETURN(CostTable cost, BuildCostTable(rec, *catalogue, *cost_opt));
    if (!by_latency && f.max_latency_ms < 0) return std::make_pair(std::move(cost), std::optional<CostTable>());
    COE_ASSIGN_OR_RETURN(CostTable latency, LatencyCost(cost));
    if (!by_latency) return std::make_pair(std::move(cost), std::optional<CostTable>(std::move(latency)));
    if (f.max_cost >= 0 && cost.is_per_example())
      return InvalidArgumentError("--max-cost: " + cost.name +
                                  " is per example; a budget needs one figure per model (--cost KEY)");
    return std::make_pair(std::move(latency),
                          f.max_cost >= 0 ? std::optional<CostTable>(std::move(cost)) : std::optional<CostTable>());
  };
  auto calib_figures = figures(*calib);
  if (!calib_figures.ok()) return Fail(cmd, calib_figures.status());
  std::optional<CostTable> calib_costs(std::move(calib_figures->first));
  if (calib_figures->second) {
    opt.budget_costs = std::move(calib_figures->second);
    opt.budget = by_latency ? f.max_cost : f.max_latency_ms;
  }
  std::optional<CostTable> test_costs;
  if (test) {
    auto tc = figures(*test);
    if (!tc.ok()) return Fail(cmd, tc.status());
    test_costs = std::move(tc->first);
  }
  Progress progress("searching cascades", !f.json);
  opt.progress = [&](double x) { progress.Update(x); };
  auto plan = Plan(*calib, *calib_costs, *goal, opt);
  progress.Done();
  if (!plan.ok()) return Fail(cmd, plan.status());
  opt.progress = nullptr;
  auto report = BuildPlanReport(*plan, *goal, opt, *calib, *calib_costs, test ? &*test : nullptr,
                                test_costs ? &*test_costs : nullptr);
  if (!report.ok()) return Fail(cmd, report.status());
  report->cost_model = CostModelWords(f.cost, calib_costs->name, by_latency);
  if (!f.report.empty()) {
    auto html = RenderHtmlReport(PlanReportToJson(*report), {}, f.calib);
    if (!html.ok()) return Fail(cmd, html.status());
    Status w = WriteStringToFile(f.report, *html);
    if (!w.ok()) return Fail(cmd, w);
  }
  if (!f.out.empty()) {
    std::vector<std::string> comment = {"written by coe plan --goal " + goal->ToString() + " on " + f.calib,
                                        "calibration accuracy " + std::to_string(plan->chosen.accuracy) +
                                            ", mean cost " + std::to_string(plan->chosen.cost) + " (" +
                                            calib_costs->name + ")"};
    std::string text = CascadeToToml(plan->chosen.cascade, comment);
    FILE* fp = std::fopen(f.out.c_str(), "w");
    if (!fp || std::fwrite(text.data(), 1, text.size(), fp) != text.size() || std::fclose(fp) != 0)
      return Fail(cmd, InvalidArgumentError("cannot write '" + f.out + "'"));
  }
  int max_frontier = 0;
  if (f.frontier != "all") {
    char* end = nullptr;
    const long v = std::strtol(f.frontier.c_str(), &end, 10);
    if (f.frontier.empty() || *end || v < 1)
      return Fail(cmd, InvalidArgumentError("--frontier: '" + f.frontier + "' (expected a count or all)"));
    max_frontier = static_cast<int>(v);
  }
  std::string out = f.json ? PlanReportToJson(*report) : PlanReportToText(*report, max_frontier);
  std::fwrite(out.data(), 1, out.size(), stdout);
  if (!f.json && !f.out.empty()) std::printf("\nwrote %s\n", f.out.c_str());
  if (!f.json && !f.report.empty()) std::printf("wrote %s (open it in a browser)\n", f.report.c_str());
  if (!plan->goal_met) {
    std::fprintf(stderr, "coe plan: the goal %s is not met; the nearest point is reported (exit 3)\n",
                 goal->ToString().c_str());
    return kExitGoalNotMet;
  }
  return 0;
}

int RunReport(const ReportFlags& f) {
  const char* cmd = "report";
  auto plan = ReadFileToString(f.plan);
  if (!plan.ok()) return Fail(cmd, plan.status());
  std::vector<std::string> runs;
  for (const std::string& r : f.runs) {
    auto text = ReadFileToString(r);
    if (!text.ok()) return Fail(cmd, text.status());
    runs.push_back(std::move(*text));
  }
  auto html = RenderHtmlReport(*plan, runs, f.plan);
  if (!html.ok()) return Fail(cmd, html.status());
  Status w = WriteStringToFile(f.out, *html);
  if (!w.ok()) return Fail(cmd, w);
  std::printf("wrote %s (%zu bytes; open it in a browser)\n", f.out.c_str(), html->size());
  return 0;
}

int RunEval(const EvalFlags& f) {
  const char* cmd = "eval";
  std::vector<std::string> warnings;
  auto spec = ReadCascade(f.cascade);
  if (!spec.ok()) return Fail(cmd, spec.status());
  auto catalogue = ReadCatalogue(f.models);
  if (!catalogue.ok()) return Fail(cmd, catalogue.status());
  WarnAboutCascade(*spec, *catalogue, f.json);
  auto cost_opt = f.cost.Build();
  if (!cost_opt.ok()) return Fail(cmd, cost_opt.status());
  LabelSet labels;
  auto rec = ReadRecordings(f.data, &labels, &warnings, f.read);
  if (!rec.ok()) return Fail(cmd, rec.status());
  DropUnknownModels(&*rec, *catalogue, &warnings);
  PrintWarnings(warnings, f.json);
  auto costs = BuildCostTable(*rec, *catalogue, *cost_opt);
  if (!costs.ok()) return Fail(cmd, costs.status());
  auto r = EvaluateCascade(*spec, *rec, *costs);
  if (!r.ok()) return Fail(cmd, r.status());
  std::string out = f.json ? EvalReportToJson(*spec, costs->name, *r) : EvalReportToText(*spec, costs->name, *r);
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

}  // namespace

void AddPlanCommands(CLI::App& app) {
  auto pf = std::make_shared<PlanFlags>();
  CLI::App* plan =
      app.add_subcommand("plan", "search cascades over recordings; print the chosen cascade, frontier and baselines");
  plan->add_option("--calib", pf->calib, "calibration recordings (CSV)")->required();
  plan->add_option("--test", pf->test, "held-out test recordings (CSV) to report on");
  plan->add_option("--models", pf->models, "model catalogue (TOML)")->required();
  plan->add_option("--goal", pf->goal, "match-best | accuracy=X | budget=X | max-accuracy")->capture_default_str();
  plan->add_option("--max-tiers", pf->max_tiers, "at most this many tiers")->capture_default_str();
  plan->add_option("--max-members", pf->max_members, "at most this many models a tier")->capture_default_str();
  plan->add_option("--rules", pf->rules,
                   "rule kinds: vote, score, vote+score or a comma list (default: every kind the "
                   "recordings support)");
  plan->add_option("--score-grid", pf->score_grid,
                   "calibration quantiles tried as score thresholds a tier, 1-100, or auto (2 below 600 "
                   "labeled examples, rising to 8 from 1,600)")
      ->capture_default_str();
  plan->add_option("--only", pf->only, "search only these models (repeat or comma list)")->delimiter(',');
  plan->add_option("--threads", pf->threads, "search threads (default: the cores)");
  plan->add_option("--select", pf->select,
                   "match-best's guard against choices that do not hold on new data: noninferiority (not "
                   "worse than the best model by --margin, one-sided paired test, Bonferroni over the "
                   "candidates), holdout (search on 70% of calibration, confirm on the rest), cv (k-fold), "
                   "mcnemar (beat it by --match-z), none")
      ->capture_default_str();
  plan->add_option("--match-z", pf->select_options.mcnemar_z, "--select mcnemar: z of the one-sided test")
      ->capture_default_str();
  plan->add_option("--folds", pf->select_options.folds, "--select cv: folds")->capture_default_str();
  plan->add_option("--holdout", pf->select_options.holdout, "--select holdout: share of calibration held out")
      ->capture_default_str();
  plan->add_option("--margin", pf->select_options.margin, "--select noninferiority: accuracy margin")
      ->capture_default_str();
  plan->add_flag("--no-prune", pf->no_prune, "evaluate every cascade (same result, slower)");
  plan->add_option("--match", pf->match,
                   "how every tier compares answers: exact, number (the last numbers equal exactly) or jaccard:T "
                   "(word-stem overlap >= T, for free text)")
      ->capture_default_str();
  plan->add_option("--frontier", pf->frontier, "frontier points the table shows: a count or all (JSON has all)")
      ->capture_default_str();
  plan->add_option("--out", pf->out, "write the chosen cascade (TOML)");
  plan->add_option("--report", pf->report, "also write the HTML report (as coe report) to this file");
  plan->add_flag("--json", pf->json, "print the report as JSON");
  plan->add_flag("--allow-duplicate-ids", pf->read.allow_duplicate_ids,
                 "keep rows with a repeated id as distinct examples (warn instead of failing)");
  plan->add_flag("--normalize-labels", pf->read.normalize_labels,
                 "labels that differ only in case or surrounding spaces are one class");
  pf->cost.Add(plan);
  plan->add_option("--objective", pf->objective,
                   "what the search minimises: cost (the cost figure, every member paid) or latency (mean "
                   "latency per example from latency_ms/latency_us, a tier taking its members' time: see "
                   "--latency, --cores)")
      ->capture_default_str();
  plan->add_option("--max-cost", pf->max_cost,
                   "--objective latency: only cascades whose mean cost per example is at most this");
  plan->add_option("--max-latency-ms", pf->max_latency_ms,
                   "only cascades whose mean latency per example is at most this (planning on cost)");
  plan->callback([pf]() { throw CLI::RuntimeError(RunPlan(*pf)); });

  auto rf = std::make_shared<ReportFlags>();
  CLI::App* report = app.add_subcommand(
      "report", "write one self-contained HTML report (Pareto plot, chosen tiers, baselines) from coe plan --json");
  report->add_option("--plan", rf->plan, "the output of coe plan --json")->required();
  report->add_option("--run", rf->runs, "outputs of coe run --json, shown beside the plan (repeatable)");
  report->add_option("--out", rf->out, "the HTML file to write")->required();
  report->callback([rf]() { throw CLI::RuntimeError(RunReport(*rf)); });

  auto ef = std::make_shared<EvalFlags>();
  CLI::App* eval =
      app.add_subcommand("eval", "score a cascade file on recordings: accuracy, mean cost, exits per tier");
  eval->add_option("--cascade", ef->cascade, "cascade (TOML)")->required();
  eval->add_option("--data", ef->data, "recordings (CSV)")->required();
  eval->add_option("--models", ef->models, "model catalogue (TOML)")->required();
  eval->add_flag("--json", ef->json, "print the report as JSON");
  eval->add_flag("--allow-duplicate-ids", ef->read.allow_duplicate_ids,
                 "keep rows with a repeated id as distinct examples (warn instead of failing)");
  eval->add_flag("--normalize-labels", ef->read.normalize_labels,
                 "labels that differ only in case or surrounding spaces are one class");
  ef->cost.Add(eval);
  eval->callback([ef]() { throw CLI::RuntimeError(RunEval(*ef)); });
}

}  // namespace coe::app
