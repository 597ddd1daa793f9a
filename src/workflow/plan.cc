// `coe plan` and `coe eval` as library workflows: recordings (files or in memory) in,
// a report out.
#include <cstdlib>
#include <limits>
#include <optional>

#include "coe/evaluate.h"
#include "coe/workflow.h"

namespace coe {

void DropUnknownModels(Recordings* rec, const Catalogue& catalogue, std::vector<std::string>* warnings) {
  for (const std::string& name : DropModels(rec, [&](const std::string& m) { return catalogue.Find(m) != nullptr; }))
    warnings->push_back(rec->source + ": ignoring column '" + name + "': it names no model of " + catalogue.source);
}

namespace {

// The planner's options from the request's words; InvalidArgument naming the flag.
StatusOr<PlannerOptions> PlannerOptionsOf(const PlanRequest& r) {
  PlannerOptions opt;
  opt.max_tiers = r.max_tiers;
  opt.max_members = r.max_members;
  if (r.score_grid == "auto") {
    opt.score_quantiles = 0;
  } else {
    char* end = nullptr;
    const long g = std::strtol(r.score_grid.c_str(), &end, 10);
    if (r.score_grid.empty() || *end || g < 1 || g > 100)
      return InvalidArgumentError("--score-grid: '" + r.score_grid + "' (expected auto or 1 to 100)");
    opt.score_quantiles = static_cast<int>(g);
  }
  auto match = AnswerMatch::Parse(r.match);
  if (!match.ok()) return match.status().WithPrefix("--match");
  opt.match = *match;
  COE_ASSIGN_OR_RETURN(Guard guard, ParseGuard(r.select));
  opt.select = r.select_options;
  opt.select.guard = guard;
  opt.prune = r.prune;
  opt.reference = r.reference;
  opt.threads = r.threads;
  opt.only = r.only;
  if (!r.rules.empty()) {
    COE_ASSIGN_OR_RETURN(opt.rules, ParseRuleKinds(r.rules));
  }
  if (r.objective != "cost" && r.objective != "latency")
    return InvalidArgumentError("--objective: '" + r.objective + "' (expected cost or latency)");
  if (r.objective == "latency" && r.max_latency_ms >= 0)
    return InvalidArgumentError(
        "--objective latency: bound the latency with --goal budget=MS, and the cost with "
        "--max-cost");
  if (r.objective == "cost" && r.max_cost >= 0)
    return InvalidArgumentError(
        "bound the cost with --goal budget=X; --max-cost bounds it when planning on latency "
        "(--objective latency)");
  return opt;
}

// The figure the search minimises, and the one a budget bounds (if any): cost and
// latency, one way or the other round.
struct Figures {
  CostTable objective;
  std::optional<CostTable> budget;
};

StatusOr<Figures> FiguresOf(const Recordings& rec, const Catalogue& cat, const PlanRequest& r,
                            const CostOptions& cost_options) {
  const bool by_latency = r.objective == "latency";
  COE_ASSIGN_OR_RETURN(CostTable cost, BuildCostTable(rec, cat, cost_options));
  if (!by_latency && r.max_latency_ms < 0) return Figures{std::move(cost), std::nullopt};
  COE_ASSIGN_OR_RETURN(CostTable latency, LatencyCost(cost));
  if (!by_latency) return Figures{std::move(cost), std::move(latency)};
  if (r.max_cost >= 0 && cost.is_per_example())
    return InvalidArgumentError("--max-cost: " + cost.name +
                                " is per example; a budget needs one figure per model (--cost KEY)");
  if (r.max_cost >= 0 && cost.transfer_usd_per_byte > 0)
    return InvalidArgumentError(
        "--max-cost: the cluster's [transfer] price depends on the tiers before, which a "
        "bound per model cannot say; plan on cost (--goal budget=X) instead");
  if (r.max_cost >= 0) return Figures{std::move(latency), std::move(cost)};
  return Figures{std::move(latency), std::nullopt};
}

}  // namespace

namespace {

CascadeSpec OneModel(const std::string& model, const AnswerMatch& match) {
  CascadeSpec s;
  s.tiers.push_back(TierSpec{{model}, {}});
  s.tiers[0].match = match;
  return s;
}

// With --qps (issue 26): the search priced each model fully batched on its cheapest
// type, but a team rents whole devices at a rate. When the chosen cascade's provisioned
// bill at that rate (with calibration's exit shares) is above the best single model's
// alone, the best model is the plan; returns the cascade it replaced ("" if none).
StatusOr<std::string> ChooseOnTheBill(const Recordings& calib, const CostTable& costs, const AnswerMatch& match,
                                      PlanResult* plan) {
  const CascadeSpec& c = plan->chosen.cascade;
  if (!costs.cluster || !costs.serving || (c.tiers.size() == 1 && c.tiers[0].members.size() == 1)) return std::string();
  // Each served as `coe eval --qps` serves it (exit shares, whole devices, the inputs'
  // transfer): BuildEvalServing.
  CascadeSpec single = OneModel(plan->best_single, match);
  COE_ASSIGN_OR_RETURN(EvalResult r, EvaluateCascade(c, calib, costs));
  COE_ASSIGN_OR_RETURN(EvalResult b, EvaluateCascade(single, calib, costs));
  COE_ASSIGN_OR_RETURN(std::optional<EvalServing> served_chosen, BuildEvalServing(c, r, costs));
  COE_ASSIGN_OR_RETURN(std::optional<EvalServing> served_best, BuildEvalServing(single, b, costs));
  const Serving& chosen = served_chosen->cascade;
  const Serving& best = served_best->cascade;
  if (chosen.usd_per_hour <= best.usd_per_hour) return std::string();
  const std::string replaced = c.ToString();
  plan->chosen = OperatingPoint{.cascade = std::move(single),
                                .correct = b.correct,
                                .accuracy = b.accuracy,
                                .cost = b.mean_cost,
                                .score_levels = {std::numeric_limits<double>::quiet_NaN()}};
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "provisioned at %.6g examples/s, the cascade the search chose (%s) costs $%.4g/h, more than %s "
                "alone ($%.4g/h): the plan is %s alone",
                costs.serving->qps, replaced.c_str(), chosen.usd_per_hour, plan->best_single.c_str(), best.usd_per_hour,
                plan->best_single.c_str());
  plan->warnings.push_back(buf);
  return replaced;
}

// With a cluster and `macs` for every model: what planning on multiply-adds would have
// chosen, priced in the plan's dollars beside the chosen cascade (issue 26).
StatusOr<std::optional<OtherCostPlan>> PlanOnMacs(const Recordings& calib, const Catalogue& cat,
                                                  const CostTable& dollars, const Goal& goal, const PlannerOptions& opt,
                                                  const PlanResult& plan) {
  if (!dollars.cluster) return std::optional<OtherCostPlan>();
  for (const ModelRecord& m : calib.models)
    if ((opt.only.empty() || std::find(opt.only.begin(), opt.only.end(), m.name) != opt.only.end()) &&
        (!cat.Find(m.name) || !cat.Find(m.name)->Cost("macs")))
      return std::optional<OtherCostPlan>();
  CostOptions co;
  co.key = "macs";
  co.only = opt.only;
  COE_ASSIGN_OR_RETURN(CostTable macs, BuildCostTable(calib, cat, co));
  PlannerOptions o = opt;
  o.progress = nullptr;
  o.budget_costs.reset();
  COE_ASSIGN_OR_RETURN(PlanResult on_macs, Plan(calib, macs, goal, o));
  auto mean = [&](const CascadeSpec& s, const CostTable& t) -> StatusOr<double> {
    COE_ASSIGN_OR_RETURN(EvalResult r, EvaluateCascade(s, calib, t));
    return r.mean_cost;
  };
  const CascadeSpec best = OneModel(plan.best_single, opt.match);
  COE_ASSIGN_OR_RETURN(double best_macs, mean(best, macs));
  COE_ASSIGN_OR_RETURN(double best_usd, mean(best, dollars));
  COE_ASSIGN_OR_RETURN(double other_macs, mean(on_macs.chosen.cascade, macs));
  COE_ASSIGN_OR_RETURN(double other_usd, mean(on_macs.chosen.cascade, dollars));
  COE_ASSIGN_OR_RETURN(double chosen_macs, mean(plan.chosen.cascade, macs));
  COE_ASSIGN_OR_RETURN(double chosen_usd, mean(plan.chosen.cascade, dollars));
  auto ratio = [](double a, double b) { return b > 0 ? a / b : 0.0; };
  OtherCostPlan p;
  p.key = "macs";
  p.cascade = on_macs.chosen.cascade.ToString();
  p.same = p.cascade == plan.chosen.cascade.ToString();
  p.saving_on_key = ratio(best_macs, other_macs);
  p.saving = ratio(best_usd, other_usd);
  p.chosen_saving_on_key = ratio(best_macs, chosen_macs);
  p.chosen_saving = ratio(best_usd, chosen_usd);
  return std::optional<OtherCostPlan>(std::move(p));
}

// Label-free planning: `rec`'s truth becomes the reference's answers; its true labels
// (if it has any) go to *true_labels.
Status TakeReferenceAsTruth(Recordings* rec, const PlanRequest& r, std::vector<int>* true_labels) {
  auto match = AnswerMatch::Parse(r.match);
  if (!match.ok()) return match.status().WithPrefix("--match");
  COE_ASSIGN_OR_RETURN(std::vector<int> answers, ReferenceAnswers(*rec, r.reference, *match));
  *true_labels = std::move(rec->truth);
  rec->truth = std::move(answers);
  return Status::Ok();
}

// PlanRecordings on splits whose truth is what the plan uses; `truth` holds a
// label-free plan's true labels.
StatusOr<PlanOutcome> PlanOn(const Recordings& calib, const Recordings* test, const Catalogue& cat,
                             const PlanRequest& r, const TrueLabels& truth) {
  COE_ASSIGN_OR_RETURN(Goal goal, Goal::Parse(r.goal));
  COE_ASSIGN_OR_RETURN(PlannerOptions opt, PlannerOptionsOf(r));
  CostOptions cost_options = r.cost;
  cost_options.only = r.only;
  COE_ASSIGN_OR_RETURN(Figures calib_figures, FiguresOf(calib, cat, r, cost_options));
  if (calib_figures.budget) {
    opt.budget_costs = std::move(calib_figures.budget);
    opt.budget = r.objective == "latency" ? r.max_cost : r.max_latency_ms;
  }
  std::optional<Figures> test_figures;
  if (test) {
    COE_ASSIGN_OR_RETURN(test_figures, FiguresOf(*test, cat, r, cost_options));
  }
  if (r.progress) opt.progress = [&](double x) { r.progress("searching cascades", x, ""); };
  PlanOutcome out;
  COE_ASSIGN_OR_RETURN(out.plan, Plan(calib, calib_figures.objective, goal, opt));
  opt.progress = nullptr;
  COE_ASSIGN_OR_RETURN(const std::string replaced,
                       ChooseOnTheBill(calib, calib_figures.objective, opt.match, &out.plan));
  CascadeSpec& chosen = out.plan.chosen.cascade;
  COE_ASSIGN_OR_RETURN(auto agreement, AgreementWithLastTier(chosen, calib, calib_figures.objective));
  for (size_t t = 0; t < chosen.tiers.size(); ++t) chosen.tiers[t].calibrated_agreement = agreement[t];
  COE_ASSIGN_OR_RETURN(out.report, BuildPlanReport(out.plan, goal, opt, calib, calib_figures.objective, test,
                                                   test_figures ? &test_figures->objective : nullptr, truth));
  if (out.report.cluster) out.report.cluster->replaced = replaced;
  COE_ASSIGN_OR_RETURN(out.report.other_cost_plan,
                       PlanOnMacs(calib, cat, calib_figures.objective, goal, opt, out.plan));
  if (const auto& o = out.report.other_cost_plan; o && !o->same && o->saving < 1) {
    char buf[512];
    std::snprintf(buf, sizeof buf,
                  "planned on multiply-adds, the cascade %s would save %.2fx in macs but cost %.2fx more in "
                  "dollars than %s alone",
                  o->cascade.c_str(), o->saving_on_key, o->saving > 0 ? 1 / o->saving : 0.0,
                  out.plan.best_single.c_str());
    out.report.warnings.push_back(buf);
  }
  out.report.cost_model = r.cost_words.empty() ? "cost per example = " + calib_figures.objective.name : r.cost_words;
  out.goal = goal.ToString();
  out.cost_name = calib_figures.objective.name;
  return out;
}

// Plans `calib` and `test` (may be null), which this call may change: a reference's
// answers replace their truth.
StatusOr<PlanOutcome> PlanOwned(Recordings* calib, Recordings* test, const Catalogue& cat, const PlanRequest& r) {
  if (r.reference.empty()) return PlanOn(*calib, test, cat, r, {});
  std::vector<int> calib_truth, test_truth;
  COE_RETURN_IF_ERROR(TakeReferenceAsTruth(calib, r, &calib_truth));
  if (test) COE_RETURN_IF_ERROR(TakeReferenceAsTruth(test, r, &test_truth));
  TrueLabels truth;
  if (!calib_truth.empty()) truth.calib = &calib_truth;
  if (!test_truth.empty()) truth.test = &test_truth;
  return PlanOn(*calib, test, cat, r, truth);
}

}  // namespace

StatusOr<PlanOutcome> PlanRecordings(const Recordings& calib, const Recordings* test, const Catalogue& cat,
                                     const PlanRequest& r) {
  if (r.reference.empty()) return PlanOn(calib, test, cat, r, {});
  Recordings c = calib;
  std::optional<Recordings> t;
  if (test) t = *test;
  return PlanOwned(&c, t ? &*t : nullptr, cat, r);
}

StatusOr<PlanOutcome> PlanFromFiles(const PlanFiles& files, const PlanRequest& request,
                                    std::vector<std::string>* warnings) {
  COE_ASSIGN_OR_RETURN(Catalogue cat, ReadCatalogue(files.models));
  LabelSet labels;
  RecordingsReadOptions read = files.read;
  read.keep_ids = false;  // planning needs no ids
  COE_ASSIGN_OR_RETURN(Recordings calib, ReadRecordings(files.calib, &labels, warnings, read));
  DropUnknownModels(&calib, cat, warnings);
  std::optional<Recordings> test;
  if (!files.test.empty()) {
    COE_ASSIGN_OR_RETURN(test, ReadRecordings(files.test, &labels, warnings, read));
    DropUnknownModels(&*test, cat, warnings);
  }
  COE_ASSIGN_OR_RETURN(PlanOutcome out, PlanOwned(&calib, test ? &*test : nullptr, cat, request));
  out.calib_source = files.calib;
  return out;
}

std::string ChosenCascadeToml(const PlanOutcome& p) {
  const std::string& reference = p.report.reference;
  std::vector<std::string> comment = {
      "written by coe plan --goal " + p.goal + (reference.empty() ? "" : " --reference " + reference) + " on " +
          p.calib_source,
      "calibration " + std::string(reference.empty() ? "accuracy " : "agreement with " + reference + " ") +
          std::to_string(p.plan.chosen.accuracy) + ", mean cost " + std::to_string(p.plan.chosen.cost) + " (" +
          p.cost_name + ")"};
  if (p.plan.chosen.cascade.tiers.size() > 1)
    comment.push_back(
        "calibrated_agreement: the share of the calibration inputs exiting at the tier on which the last tier "
        "answers the same (what shadow verification expects)");
  return CascadeToToml(p.plan.chosen.cascade, comment);
}

StatusOr<EvalOutcome> EvalRecordings(const CascadeSpec& spec, const Recordings& rec, const Catalogue& cat,
                                     const CostOptions& cost_options, std::vector<std::string>* warnings) {
  EvalOutcome out;
  out.cascade = spec;
  COE_ASSIGN_OR_RETURN(CostTable costs, BuildCostTable(rec, cat, cost_options));
  out.cost_name = costs.name;
  // Tiers out of cost order, by the figure this report shows (--cost or the default):
  // each member's mean cost over these recordings.
  std::vector<std::string> order = CascadeWarnings(spec, [&](const std::string& name) -> const double* {
    const int m = rec.ModelIndex(name);
    return m >= 0 && !std::isnan(costs.mean[m]) ? &costs.mean[m] : nullptr;
  });
  warnings->insert(warnings->end(), order.begin(), order.end());
  COE_ASSIGN_OR_RETURN(out.result, EvaluateCascade(spec, rec, costs));
  COE_ASSIGN_OR_RETURN(out.serving, BuildEvalServing(spec, out.result, costs));
  return out;
}

StatusOr<EvalOutcome> EvalFromFiles(const std::string& cascade, const std::string& recordings,
                                    const std::string& models, const RecordingsReadOptions& read,
                                    const CostOptions& cost_options, std::vector<std::string>* warnings) {
  COE_ASSIGN_OR_RETURN(CascadeSpec spec, ReadCascade(cascade));
  COE_ASSIGN_OR_RETURN(Catalogue cat, ReadCatalogue(models));
  LabelSet labels;
  COE_ASSIGN_OR_RETURN(Recordings rec, ReadRecordings(recordings, &labels, warnings, read));
  DropUnknownModels(&rec, cat, warnings);
  return EvalRecordings(spec, rec, cat, cost_options, warnings);
}

std::vector<std::string> CascadeCostWarnings(const CascadeSpec& spec, const Catalogue& catalogue,
                                             const std::string& cost_key) {
  std::vector<const ModelSpec*> members;
  for (const std::string& name : spec.AllMembers())
    if (const ModelSpec* m = catalogue.Find(name)) members.push_back(m);
  const std::string key = cost_key.empty() ? DefaultCostKey(members) : cost_key;
  return CascadeWarnings(spec, [&](const std::string& name) -> const double* {
    const ModelSpec* m = catalogue.Find(name);
    return m && !key.empty() ? m->Cost(key) : nullptr;
  });
}

}  // namespace coe
