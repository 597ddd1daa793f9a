// `coe plan` and `coe eval`: planning and scoring cascades over recordings.
#include <malloc.h>

#include <cmath>
#include <cstdio>

#include "coe/cascade_spec.h"
#include "coe/evaluate.h"
#include "coe/files.h"
#include "coe/planner.h"
#include "coe/report.h"
#include "coe/workflow.h"
#include "commands.h"
#include "common.h"
#include "progress.h"

namespace coe::app {

namespace {

struct PlanFlags {
  PlanFiles files;
  PlanRequest request;
  std::string out, report, frontier = "12";
  bool json = false, no_prune = false;
  double confidence = 0.95;  // = 1 - request.select_options.alpha
  CostFlags cost;
};

struct ReportFlags {
  std::string plan, out;
  std::vector<std::string> runs;
};

// The cost model in words, for reports.
std::string CostModelWords(const CostFlags& c, bool latency_objective) {
  std::string s;
  if (latency_objective) {
    s = "--objective latency: each tier an example reaches taking its members' time";
  } else {
    s = c.key.empty() ? "the default figure of every command" : "--cost " + c.key;
    s += ", summed over every member of every tier an example reaches";
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
  int max_frontier = 0;
  if (f.frontier != "all") {
    char* end = nullptr;
    const long v = std::strtol(f.frontier.c_str(), &end, 10);
    if (f.frontier.empty() || *end || v < 1)
      return Fail(cmd, InvalidArgumentError("--frontier: '" + f.frontier + "' (expected a count or all)"));
    max_frontier = static_cast<int>(v);
  }
  PlanRequest request = f.request;
  request.prune = !f.no_prune;
  request.select_options.alpha = 1 - f.confidence;
  auto cost = f.cost.Build();
  if (!cost.ok()) return Fail(cmd, cost.status());
  request.cost = std::move(*cost);
  request.cost_words = CostModelWords(f.cost, request.objective == "latency");
  Progress progress("searching cascades", !f.json);
  request.progress = [&](const std::string&, double x, const std::string&) { progress.Update(x); };
  std::vector<std::string> warnings;
  auto p = PlanFromFiles(f.files, request, &warnings);
  progress.Done();
  PrintWarnings(warnings, f.json);
  if (!p.ok()) return Fail(cmd, p.status());
  if (!f.report.empty()) {
    auto html = RenderHtmlReport({f.files.calib, PlanReportToJson(p->report)}, {});
    if (!html.ok()) return Fail(cmd, html.status());
    if (Status w = WriteStringToFile(f.report, *html); !w.ok()) return Fail(cmd, w);
  }
  if (!f.out.empty())
    if (Status w = WriteStringToFile(f.out, ChosenCascadeToml(*p)); !w.ok()) return Fail(cmd, w);
  std::string out = f.json ? PlanReportToJson(p->report) : PlanReportToText(p->report, max_frontier);
  std::fwrite(out.data(), 1, out.size(), stdout);
  if (!f.json && !f.out.empty()) std::printf("\nwrote %s\n", f.out.c_str());
  if (!f.json && !f.report.empty()) std::printf("wrote %s (open it in a browser)\n", f.report.c_str());
  if (!p->plan.goal_met) {
    std::fprintf(stderr, "coe plan: the goal %s is not met; the nearest point is reported (exit 3)\n", p->goal.c_str());
    return kExitGoalNotMet;
  }
  return 0;
}

int RunReport(const ReportFlags& f) {
  const char* cmd = "report";
  auto plan = ReadFileToString(f.plan);
  if (!plan.ok()) return Fail(cmd, plan.status());
  std::vector<JsonDocument> runs;
  for (const std::string& r : f.runs) {
    auto text = ReadFileToString(r);
    if (!text.ok()) return Fail(cmd, text.status());
    runs.push_back({r, std::move(*text)});
  }
  auto html = RenderHtmlReport({f.plan, std::move(*plan)}, runs);
  if (!html.ok()) return Fail(cmd, html.status());
  Status w = WriteStringToFile(f.out, *html);
  if (!w.ok()) return Fail(cmd, w);
  std::printf("wrote %s (%zu bytes; open it in a browser)\n", f.out.c_str(), html->size());
  return 0;
}

int RunEval(const EvalFlags& f) {
  const char* cmd = "eval";
  auto cost = f.cost.Build();
  if (!cost.ok()) return Fail(cmd, cost.status());
  std::vector<std::string> warnings;
  auto e = EvalFromFiles(f.cascade, f.data, f.models, f.read, *cost, &warnings);
  PrintWarnings(warnings, f.json);
  if (!e.ok()) return Fail(cmd, e.status());
  const EvalServing* serving = e->serving ? &*e->serving : nullptr;
  std::string out = f.json ? EvalReportToJson(e->cascade, e->cost_name, e->result, serving)
                           : EvalReportToText(e->cascade, e->cost_name, e->result, serving);
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

}  // namespace

void AddPlanCommands(CLI::App& app) {
  auto pf = std::make_shared<PlanFlags>();
  CLI::App* plan =
      app.add_subcommand("plan", "search cascades over recordings; print the chosen cascade, frontier and baselines");
  plan->add_option("--calib", pf->files.calib, "calibration recordings (CSV)")->required();
  plan->add_option("--test", pf->files.test, "held-out test recordings (CSV) to report on");
  plan->add_option("--models", pf->files.models, "model catalogue (TOML)")->required();
  plan->add_option("--goal", pf->request.goal, "match-best | accuracy=X | budget=X | max-accuracy")
      ->capture_default_str();
  plan->add_option("--max-tiers", pf->request.max_tiers, "at most this many tiers")->capture_default_str();
  plan->add_option("--max-members", pf->request.max_members, "at most this many models a tier")->capture_default_str();
  plan->add_option("--rules", pf->request.rules,
                   "rule kinds: vote, score, vote+score or a comma list (default: every kind the "
                   "recordings support)");
  plan->add_option("--score-grid", pf->request.score_grid,
                   "calibration quantiles tried as score thresholds a tier, 1-100, or auto (2 below 600 "
                   "labeled examples, rising to 8 from 1,600)")
      ->capture_default_str();
  plan->add_option("--only", pf->request.only, "search only these models (repeat or comma list)")->delimiter(',');
  plan->add_option("--threads", pf->request.threads, "search threads (default: the cores)");
  plan->add_option("--select", pf->request.select,
                   "match-best's guard against choices that do not hold on new data: noninferiority (not "
                   "worse than the best model by --margin, one-sided paired test, Bonferroni over the "
                   "candidates), holdout (search on 70% of calibration, confirm on the rest), cv (k-fold), "
                   "mcnemar (beat it by --match-z), none")
      ->capture_default_str();
  plan->add_option("--match-z", pf->request.select_options.mcnemar_z, "--select mcnemar: z of the one-sided test")
      ->capture_default_str();
  plan->add_option("--folds", pf->request.select_options.folds, "--select cv: folds")->capture_default_str();
  plan->add_option("--holdout", pf->request.select_options.holdout, "--select holdout: share of calibration held out")
      ->capture_default_str();
  plan->add_option("--margin", pf->request.select_options.margin, "--select noninferiority: accuracy margin")
      ->capture_default_str();
  plan->add_option("--reference", pf->request.reference,
                   "plan without labels: this model's answers (or, with 'plurality', the plurality of every "
                   "recorded model's; ties to the last column) stand in for the truth under --match; a label "
                   "column, if any, is only reported as the true accuracy. match-best then asks agreement with "
                   "it on at least 1 - --epsilon of the inputs, by a one-sided Clopper-Pearson bound at "
                   "--confidence, Bonferroni over the candidates");
  plan->add_option("--epsilon", pf->request.select_options.epsilon,
                   "--reference, match-best: the share of inputs the cascade may disagree with the reference on "
                   "(its accuracy then at most this below the reference's, with --confidence)")
      ->capture_default_str();
  plan->add_option("--confidence", pf->confidence,
                   "match-best's one-sided confidence (--select noninferiority, and the bound with --reference)")
      ->capture_default_str();
  plan->add_flag("--no-prune", pf->no_prune, "evaluate every cascade (same result, slower)");
  plan->add_option("--match", pf->request.match,
                   "how every tier compares answers: exact, number (the last numbers equal exactly) or jaccard:T "
                   "(word-stem overlap >= T, for free text)")
      ->capture_default_str();
  plan->add_option("--frontier", pf->frontier, "frontier points the table shows: a count or all (JSON has all)")
      ->capture_default_str();
  plan->add_option("--out", pf->out, "write the chosen cascade (TOML)");
  plan->add_option("--report", pf->report, "also write the HTML report (as coe report) to this file");
  plan->add_flag("--json", pf->json, "print the report as JSON");
  plan->add_flag("--allow-duplicate-ids", pf->files.read.allow_duplicate_ids,
                 "keep rows with a repeated id as distinct examples (warn instead of failing)");
  plan->add_flag("--normalize-labels", pf->files.read.normalize_labels,
                 "labels that differ only in case or surrounding spaces are one class");
  pf->cost.Add(plan);
  plan->add_option("--objective", pf->request.objective,
                   "what the search minimises: cost (the cost figure, every member paid) or latency (mean "
                   "latency per example from latency_ms/latency_us, a tier taking its members' time: see "
                   "--latency, --cores)")
      ->capture_default_str();
  plan->add_option("--max-cost", pf->request.max_cost,
                   "--objective latency: only cascades whose mean cost per example is at most this");
  plan->add_option("--max-latency-ms", pf->request.max_latency_ms,
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
