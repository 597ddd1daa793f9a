// Plan and evaluation reports (coe/report.h): the chosen cascade, the frontier and the
// baselines scored on calibration and test, as JSON and text. Uses guards.cc
// (SingleModelCascade), search.cc (NoModelIsRightWarning) and goals.cc.
#include "coe/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>

#include "core/cascade_json.h"
#include "planner/cluster_view.h"
#include "planner/guards.h"
#include "planner/search.h"

namespace coe {

using nlohmann::json;

namespace {

// The share of `truth`'s labeled examples that `outcomes` answer right, each by its
// answering tier's match (the true accuracy of a label-free plan's row).
std::optional<double> TrueAccuracy(const CascadeSpec& spec, const Recordings& rec,
                                   const std::vector<ExampleOutcome>& outcomes, const std::vector<int>& truth) {
  static const LabelSet kNoLabels;
  std::vector<AnswerMatcher> matchers;
  for (const TierSpec& tier : spec.tiers) matchers.emplace_back(tier.match, rec.labels ? *rec.labels : kNoLabels);
  int labeled = 0, correct = 0;
  for (size_t i = 0; i < outcomes.size() && i < truth.size(); ++i) {
    if (truth[i] == kAbstain) continue;
    ++labeled;
    correct += matchers[outcomes[i].exit_tier].Same(outcomes[i].answer, truth[i]);
  }
  if (labeled == 0) return std::nullopt;
  return static_cast<double>(correct) / labeled;
}

// One split's figures of `spec`, with the true accuracy when `truth` is given.
StatusOr<EvalResult> ScoreSplit(const CascadeSpec& spec, const Recordings& rec, const CostTable& costs,
                                const std::vector<int>* truth, std::optional<double>* true_accuracy) {
  if (!truth) return EvaluateCascade(spec, rec, costs);
  std::vector<ExampleOutcome> outcomes;
  COE_ASSIGN_OR_RETURN(EvalResult r, EvaluateCascade(spec, rec, costs, &outcomes));
  *true_accuracy = TrueAccuracy(spec, rec, outcomes, *truth);
  return r;
}

StatusOr<ReportRow> Score(const std::string& name, const CascadeSpec& spec, const Recordings& calib,
                          const CostTable& calib_costs, const Recordings* test, const CostTable* test_costs,
                          const TrueLabels& truth) {
  ReportRow row;
  row.name = name;
  row.cascade = spec;
  COE_ASSIGN_OR_RETURN(row.calib, ScoreSplit(spec, calib, calib_costs, truth.calib, &row.calib_true_accuracy));
  if (test) {
    COE_ASSIGN_OR_RETURN(EvalResult t, ScoreSplit(spec, *test, *test_costs, truth.test, &row.test_true_accuracy));
    row.test = std::move(t);
  }
  return row;
}

json TiersJson(const CascadeSpec& spec) { return CascadeTiersJson(spec); }

json ResultJson(const EvalResult& r) {
  json j;
  j["accuracy"] = r.accuracy;
  j["cost"] = r.mean_cost;
  j["exits"] = r.exits;
  j["examples"] = r.examples;
  j["labeled"] = r.labeled;
  j["correct"] = r.correct;
  j["unanswered"] = r.unanswered;
  if (r.mean_latency_ms) j["latency_ms"] = *r.mean_latency_ms;
  if (r.p99_latency_ms) j["p99_latency_ms"] = *r.p99_latency_ms;
  if (r.mean_bytes_sent) j["bytes_sent"] = *r.mean_bytes_sent;
  if (r.mean_cost_homogeneous) j["cost_homogeneous"] = *r.mean_cost_homogeneous;
  if (r.mean_transfer_cost) j["transfer_cost"] = *r.mean_transfer_cost;
  return j;
}

// A split's figures; a label-free plan's also as agreement, and its true accuracy.
json SplitJson(const EvalResult& r, bool label_free, const std::optional<double>& true_accuracy) {
  json j = ResultJson(r);
  if (label_free) j["agreement"] = r.accuracy;
  if (label_free && true_accuracy) j["true_accuracy"] = *true_accuracy;
  return j;
}

json RowJson(const ReportRow& row, bool label_free) {
  json j;
  if (!row.name.empty()) j["name"] = row.name;
  j["tiers"] = TiersJson(row.cascade);
  j["cascade"] = row.cascade.ToString();
  j["calib"] = SplitJson(row.calib, label_free, row.calib_true_accuracy);
  j["test"] = row.test ? SplitJson(*row.test, label_free, row.test_true_accuracy) : json();
  return j;
}

std::string Fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string Pct(double a) { return Fmt("%.2f%%", 100 * a); }
std::string Num(double v) { return Fmt("%.4g", v); }

std::string Exits(const EvalResult& r) {
  std::string s;
  for (size_t t = 0; t < r.exits.size(); ++t) {
    if (t) s += "/";
    s += Fmt("%.0f", 100.0 * r.exits[t] / std::max(1, r.examples));
  }
  return s + "%";
}

// One table line: name, calib acc, calib cost, test acc, test cost, exits, ratio; in a
// label-free plan the accuracies are agreement with the reference, and the true
// accuracy (of the split shown) follows when known.
std::string Line(const std::string& label, const ReportRow& row, double ref_cost, bool has_test, bool label_free) {
  char buf[512];
  const EvalResult& shown = has_test ? *row.test : row.calib;
  std::string extra;
  if (label_free) {
    const std::optional<double>& t = has_test ? row.test_true_accuracy : row.calib_true_accuracy;
    extra += "  true acc " + (t ? Pct(*t) : std::string("-"));
  }
  if (shown.mean_latency_ms) extra += "  lat " + Num(*shown.mean_latency_ms) + "ms";
  if (shown.mean_bytes_sent) extra += "  sent " + Num(*shown.mean_bytes_sent) + "B";
  if (shown.mean_cost_homogeneous) extra += "  dearest-type " + Num(*shown.mean_cost_homogeneous);
  if (shown.mean_transfer_cost) extra += "  transfer " + Num(*shown.mean_transfer_cost);
  std::snprintf(buf, sizeof buf, "  %-34s %8s %11s  %8s %11s %7s  %-12s%s\n", label.c_str(),
                Pct(row.calib.accuracy).c_str(), Num(row.calib.mean_cost).c_str(),
                has_test ? Pct(row.test->accuracy).c_str() : "-", has_test ? Num(row.test->mean_cost).c_str() : "-",
                ref_cost > 0 ? Fmt("%.2fx", ref_cost / std::max(1e-300, shown.mean_cost)).c_str() : "",
                Exits(shown).c_str(), extra.c_str());
  return buf;
}

// A test split on which every model of the search scores 0% (`rows`: the baselines,
// single models among them) most likely compares answers wrongly: say so (Plan() says
// it of calibration).
void WarnIfNoModelIsRight(const Recordings& test, const AnswerMatch& match, const std::vector<ReportRow>& rows,
                          std::vector<std::string>* warnings) {
  int singles = 0, labeled = 0;
  for (const ReportRow& row : rows) {
    if (row.cascade.tiers.size() != 1 || row.cascade.tiers[0].members.size() != 1 || !row.test) continue;
    if (row.test->correct > 0) return;
    ++singles;
    labeled = row.test->labeled;
  }
  if (singles > 0 && labeled > 0) warnings->push_back(NoModelIsRightWarning(test, labeled, match));
}

}  // namespace

StatusOr<PlanReport> BuildPlanReport(const PlanResult& plan, const Goal& goal, const PlannerOptions& options,
                                     const Recordings& calib, const CostTable& calib_costs, const Recordings* test,
                                     const CostTable* test_costs, const TrueLabels& truth) {
  auto score = [&](const std::string& name, const CascadeSpec& spec) {
    return Score(name, spec, calib, calib_costs, test, test_costs, truth);
  };
  PlanReport rep;
  rep.reference = options.reference;
  rep.goal = goal.ToString();
  rep.cost_name = calib_costs.name;
  rep.rules = RuleKindsToString(plan.rules);
  rep.match = options.match;
  rep.goal_met = plan.goal_met;
  rep.best_single = plan.best_single;
  rep.calib_examples = calib.num_examples();
  rep.test_examples = test ? test->num_examples() : 0;
  rep.searched = plan.space_size;
  rep.evaluated = plan.evaluated;
  rep.seconds = plan.seconds;
  if (options.budget_costs) {
    rep.budget_name = options.budget_costs->name;
    rep.budget = options.budget;
    rep.chosen_budget_cost = plan.chosen.budget_cost;
  }
  rep.search_seconds = plan.search_seconds;
  rep.select_seconds = plan.select_seconds;
  rep.score_grid = plan.score_grid;
  rep.best_single_cost = plan.best_single_cost;
  rep.selection = plan.selection;
  rep.warnings = plan.warnings;
  if (test) {
    std::vector<ExampleOutcome> a, b;
    COE_RETURN_IF_ERROR(EvaluateCascade(plan.chosen.cascade, *test, *test_costs, &a).status());
    COE_RETURN_IF_ERROR(
        EvaluateCascade(SingleModelCascade(plan.best_single, options.match), *test, *test_costs, &b).status());
    rep.intervals = BootstrapIntervals(a, b);
    rep.intervals->best_single = plan.best_single;
  }
  COE_ASSIGN_OR_RETURN(rep.chosen, score("chosen", plan.chosen.cascade));
  for (const OperatingPoint& op : plan.frontier) {
    COE_ASSIGN_OR_RETURN(ReportRow row, score("", op.cascade));
    rep.frontier.push_back(std::move(row));
  }
  // Baselines: the search's models, cheapest first.
  std::vector<int> models;
  for (size_t m = 0; m < calib.models.size(); ++m) {
    if (!options.only.empty() &&
        std::find(options.only.begin(), options.only.end(), calib.models[m].name) == options.only.end())
      continue;
    models.push_back(static_cast<int>(m));
  }
  std::stable_sort(models.begin(), models.end(),
                   [&](int a, int b) { return calib_costs.mean[a] < calib_costs.mean[b]; });
  CascadeSpec all_models;
  all_models.tiers.emplace_back();
  all_models.tiers[0].match = options.match;
  bool any_scores = false;
  for (int m : models) {
    COE_ASSIGN_OR_RETURN(ReportRow row,
                         score(calib.models[m].name, SingleModelCascade(calib.models[m].name, options.match)));
    rep.baselines.push_back(std::move(row));
    all_models.tiers[0].members.push_back(calib.models[m].name);
    any_scores |= calib.models[m].has_scores();
  }
  auto family = [&](const std::string& name, const std::string& rules, const PlanResult& fp) -> Status {
    PlanReport::Family f{name, rules, {}};
    for (const OperatingPoint& op : fp.frontier) {
      COE_ASSIGN_OR_RETURN(ReportRow row, score("", op.cascade));
      f.frontier.push_back(std::move(row));
    }
    if (!f.frontier.empty()) rep.families.push_back(std::move(f));
    return Status::Ok();
  };
  if (any_scores) {
    PlannerOptions conf = options;
    conf.max_members = 1;
    conf.max_tiers = std::max(options.max_tiers, 1);
    conf.rules = kRuleScore;
    conf.progress = nullptr;
    COE_ASSIGN_OR_RETURN(PlanResult cp, Plan(calib, calib_costs, goal, conf));
    COE_ASSIGN_OR_RETURN(ReportRow row, score("confidence cascade", cp.chosen.cascade));
    rep.baselines.push_back(std::move(row));
    COE_RETURN_IF_ERROR(family("confidence cascade", "score, one model a tier", cp));
  }
  if (plan.rules != kRuleVote) {  // else coe's own frontier is the agreement-only one
    PlannerOptions vote = options;
    vote.rules = kRuleVote;
    vote.progress = nullptr;
    COE_ASSIGN_OR_RETURN(PlanResult vp, Plan(calib, calib_costs, goal, vote));
    COE_RETURN_IF_ERROR(family("agreement-only cascades", "vote", vp));
  }
  COE_ASSIGN_OR_RETURN(ReportRow all, score("plurality of all models", all_models));
  rep.baselines.push_back(std::move(all));
  if (test) WarnIfNoModelIsRight(*test, options.match, rep.baselines, &rep.warnings);
  COE_ASSIGN_OR_RETURN(rep.cluster, BuildClusterView(rep, calib_costs));
  if (rep.cluster)
    for (std::string& w : ClusterViewWarnings(*rep.cluster)) rep.warnings.push_back(std::move(w));
  return rep;
}

TestIntervals BootstrapIntervals(const std::vector<ExampleOutcome>& chosen, const std::vector<ExampleOutcome>& best,
                                 int resamples, uint64_t seed) {
  TestIntervals t;
  t.resamples = resamples;
  const size_t n = chosen.size();
  if (n == 0 || best.size() != n) return t;
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<size_t> pick(0, n - 1);
  std::vector<double> acc, diff, cost, saving;
  for (int k = 0; k < resamples; ++k) {
    int labeled = 0, right = 0, best_right = 0;
    double c = 0, bc = 0;
    for (size_t j = 0; j < n; ++j) {
      const size_t i = pick(rng);
      c += chosen[i].cost;
      bc += best[i].cost;
      if (!chosen[i].labeled) continue;
      ++labeled;
      right += chosen[i].correct;
      best_right += best[i].correct;
    }
    if (labeled) {
      acc.push_back(static_cast<double>(right) / labeled);
      diff.push_back(static_cast<double>(right - best_right) / labeled);
    }
    cost.push_back(c / n);
    if (c > 0) saving.push_back(bc / c);
  }
  auto interval = [](std::vector<double>& v, double* out) {
    if (v.empty()) return;
    std::sort(v.begin(), v.end());
    out[0] = v[static_cast<size_t>(std::floor(0.025 * (v.size() - 1)))];
    out[1] = v[static_cast<size_t>(std::ceil(0.975 * (v.size() - 1)))];
  };
  interval(acc, t.accuracy);
  interval(diff, t.accuracy_diff);
  interval(cost, t.cost);
  interval(saving, t.saving);
  return t;
}

std::string PlanReportToJson(const PlanReport& r) {
  json j;
  j["goal"] = r.goal;
  if (!r.reference.empty()) j["reference"] = r.reference;
  j["goal_met"] = r.goal_met;
  j["cost"] = r.cost_name;
  j["rules"] = r.rules;
  j["match"] = r.match.ToString();
  j["best_single"] = r.best_single;
  j["calib_examples"] = r.calib_examples;
  j["test_examples"] = r.test_examples;
  j["searched"] = r.searched;
  j["evaluated"] = r.evaluated;
  j["seconds"] = r.seconds;
  if (!r.budget_name.empty())
    j["budget"] = {{"figure", r.budget_name}, {"max", r.budget}, {"chosen", r.chosen_budget_cost}};
  j["search_seconds"] = r.search_seconds;
  j["select_seconds"] = r.select_seconds;
  j["score_grid"] = r.score_grid;
  j["best_single_cost"] = r.best_single_cost;
  j["warnings"] = r.warnings;
  j["chosen"] = RowJson(r.chosen, !r.reference.empty());
  j["chosen"].erase("name");
  if (r.goal == "match-best") {
    const Selection& s = r.selection;
    json sj = {{"guard", GuardName(s.guard)},
               {"basis", s.basis},
               {"candidates", s.candidates},
               {"kept_best_single", s.kept_best_single},
               {"estimate", {{"accuracy", s.accuracy}, {"cost", s.cost}}},
               {"best_single_estimate", {{"accuracy", s.best_accuracy}, {"cost", s.best_cost}}}};
    if (s.guard == Guard::kMcNemar || s.guard == Guard::kNonInferiority || s.guard == Guard::kHoldout) {
      sj["wins_over_best"] = s.wins_over_best;
      sj["losses_to_best"] = s.losses_to_best;
      sj["statistic"] = std::isfinite(s.statistic) ? json(s.statistic) : json();
      sj["critical"] = std::isfinite(s.critical) ? json(s.critical) : json();
    }
    if (!r.reference.empty()) {
      sj["reference"] = s.reference;
      sj["epsilon"] = s.epsilon;
      sj["confidence"] = 1 - s.alpha;
      sj["disagreements"] = s.disagreements;
      sj["disagreement_bound"] = std::isfinite(s.disagreement_bound) ? json(s.disagreement_bound) : json();
      sj["statement"] = LabelFreeStatement(r);
    }
    j["selection"] = sj;
  }
  if (r.intervals) {
    const TestIntervals& t = *r.intervals;
    auto pair = [](const double* v) { return json::array({v[0], v[1]}); };
    j["chosen"]["test_intervals"] = {{"level", 0.95},
                                     {"resamples", t.resamples},
                                     {"paired_with", t.best_single},
                                     {"accuracy", pair(t.accuracy)},
                                     {"accuracy_minus_best", pair(t.accuracy_diff)},
                                     {"cost", pair(t.cost)},
                                     {"saving", pair(t.saving)}};
  }
  j["baselines"] = json::array();
  for (const ReportRow& b : r.baselines) j["baselines"].push_back(RowJson(b, !r.reference.empty()));
  auto frontier = [&](const std::vector<ReportRow>& rows) {
    json a = json::array();
    for (const ReportRow& f : rows) {
      json fj = RowJson(f, !r.reference.empty());
      fj.erase("name");
      a.push_back(fj);
    }
    return a;
  };
  j["frontier"] = frontier(r.frontier);
  j["families"] = json::array();
  for (const PlanReport::Family& f : r.families)
    j["families"].push_back({{"name", f.name}, {"rules", f.rules}, {"frontier", frontier(f.frontier)}});
  if (!r.cost_model.empty()) j["cost_model"] = r.cost_model;
  if (r.cluster) j["cluster"] = ClusterViewJson(*r.cluster);
  if (r.other_cost_plan) j["other_cost_plan"] = OtherCostPlanJson(*r.other_cost_plan);
  return j.dump(2) + "\n";
}

std::string PlanReportToText(const PlanReport& r, int max_frontier) {
  const bool has_test = r.chosen.test.has_value();
  const bool label_free = !r.reference.empty();
  double ref_cost = 0;
  for (const ReportRow& b : r.baselines)
    if (b.name == r.best_single) ref_cost = has_test ? b.test->mean_cost : b.calib.mean_cost;
  std::string s;
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "goal %s%s | cost: %s | rules: %s%s\n"
                "searched %llu cascades (%llu evaluated one by one) on %d calibration examples in %.3f s "
                "(search %.3f s, guard %.3f s)",
                r.goal.c_str(), r.goal_met ? "" : " (NOT MET: nearest point shown)", r.cost_name.c_str(),
                r.rules.c_str(), r.match.exact() ? "" : (" | match: " + r.match.ToString()).c_str(),
                static_cast<unsigned long long>(r.searched), static_cast<unsigned long long>(r.evaluated),
                r.calib_examples, r.seconds, r.search_seconds, r.select_seconds);
  s += buf;
  s += has_test ? "; " + std::to_string(r.test_examples) + " test examples\n"
                : "; no test split (--test): calibration figures only\n";
  if (label_free)
    s += "LABEL-FREE plan against the reference " + r.reference +
         ": its answers stood in for the truth; 'agr' is the agreement with it, 'true acc' the accuracy against the "
         "true labels where the recordings have them (not used for planning)\n";
  if (!r.budget_name.empty()) {
    std::snprintf(buf, sizeof buf, "within a budget of %.6g %s per example: the chosen cascade's is %.6g\n", r.budget,
                  r.budget_name.c_str(), r.chosen_budget_cost);
    s += buf;
  }
  s += "\n";
  std::snprintf(buf, sizeof buf, "  %-34s %8s %11s  %8s %11s %7s  %s\n", "", label_free ? "calib agr" : "calib acc",
                "calib cost", label_free ? "test agr" : "test acc", "test cost", "saving", "exits per tier");
  std::string header = buf;
  for (const std::string& w : r.warnings) s += "warning: " + w + "\n";
  if (!r.warnings.empty()) s += "\n";
  s += "CHOSEN  " + r.chosen.cascade.ToString() + "\n" + header;
  s += Line("chosen cascade", r.chosen, ref_cost, has_test, label_free);
  if (r.goal == "match-best" && label_free) {
    s += "  " + LabelFreeStatement(r) + "\n";
  } else if (r.goal == "match-best") {
    const Selection& g = r.selection;
    s += "  chosen by the " + GuardName(g.guard) + " guard, on " + g.basis + ": " + Pct(g.accuracy) + " at " +
         Num(g.cost) + " vs " + r.best_single + " " + Pct(g.best_accuracy) + " at " + Num(g.best_cost) + " (" +
         std::to_string(g.candidates) + " candidates no dearer than it)";
    if (g.kept_best_single) s += "; kept the best single model";
    s += "\n";
  }
  if (r.intervals) {
    const TestIntervals& t = *r.intervals;
    s += "  test, 95% bootstrap (" + std::to_string(t.resamples) + " resamples, paired with " + t.best_single +
         "): " + (label_free ? "agreement " : "accuracy ") + Pct(t.accuracy[0]) + " to " + Pct(t.accuracy[1]) +
         ", minus the best " + Fmt("%+.2f", 100 * t.accuracy_diff[0]) + " to " +
         Fmt("%+.2f", 100 * t.accuracy_diff[1]) + " points, cost " + Num(t.cost[0]) + " to " + Num(t.cost[1]) +
         ", saving " + Fmt("%.2fx", t.saving[0]) + " to " + Fmt("%.2fx", t.saving[1]) + "\n";
  }
  s += "\nBASELINES (saving = cost of the best single model, " + r.best_single + " / cost)\n" + header;
  for (const ReportRow& b : r.baselines) s += Line(b.name, b, ref_cost, has_test, label_free);
  if (r.cluster) s += ClusterViewText(*r.cluster);
  if (r.other_cost_plan) s += OtherCostPlanText(*r.other_cost_plan);
  // Up to `max_frontier` points: the cheapest, the most accurate, the chosen one and
  // evenly spaced others (JSON has every point).
  const size_t total = r.frontier.size();
  std::vector<bool> show(total, max_frontier <= 0 || static_cast<size_t>(max_frontier) >= total);
  if (max_frontier > 0 && total > 0 && !show[0]) {
    const size_t k = static_cast<size_t>(max_frontier);
    for (size_t j = 0; j < k; ++j) show[j * (total - 1) / std::max<size_t>(1, k - 1)] = true;
    for (size_t i = 0; i < total; ++i)
      if (r.frontier[i].cascade.ToString() == r.chosen.cascade.ToString()) show[i] = true;
  }
  const size_t shown = std::count(show.begin(), show.end(), true);
  s += "\nFRONTIER (calibration Pareto points, cheapest first" +
       (shown < total
            ? "; " + std::to_string(shown) + " of " + std::to_string(total) + " shown, --frontier all for every one"
            : std::string()) +
       ")\n" + header;
  for (size_t i = 0; i < total; ++i) {
    if (!show[i]) continue;
    s += Line("#" + std::to_string(i + 1), r.frontier[i], ref_cost, has_test, label_free);
    s += "      " + r.frontier[i].cascade.ToString() + "\n";
  }
  return s;
}

std::string EvalReportToJson(const CascadeSpec& spec, const std::string& cost_name, const EvalResult& r,
                             const EvalServing* serving) {
  json j = ResultJson(r);
  j["cascade"] = spec.ToString();
  j["tiers"] = TiersJson(spec);
  j["cost_name"] = cost_name;
  if (serving) j["serving"] = EvalServingJson(*serving);
  return j.dump(2) + "\n";
}

std::string EvalReportToText(const CascadeSpec& spec, const std::string& cost_name, const EvalResult& r,
                             const EvalServing* serving) {
  std::string s = "cascade  " + spec.ToString() + "\n";
  s += "examples " + std::to_string(r.examples) + " (" + std::to_string(r.labeled) + " labeled)\n";
  s += "accuracy " + Pct(r.accuracy) + " (" + std::to_string(r.correct) + "/" + std::to_string(r.labeled) + ")\n";
  s += "cost     " + Num(r.mean_cost) + " per example, " + cost_name + "\n";
  if (r.mean_cost_homogeneous)
    s += "cost     " + Num(*r.mean_cost_homogeneous) + " per example with every model on the dearest device type\n";
  if (r.mean_transfer_cost)
    s += "cost     " + Num(*r.mean_transfer_cost) + " of it per example sending inputs to the cloud\n";
  if (r.mean_latency_ms)
    s += "latency  mean " + Num(*r.mean_latency_ms) + " ms, p99 " + Num(*r.p99_latency_ms) + " ms\n";
  if (r.mean_bytes_sent) s += "sent     " + Num(*r.mean_bytes_sent) + " bytes per example to the cloud\n";
  s += "exits    ";
  for (size_t t = 0; t < r.exits.size(); ++t) {
    s += (t ? ", " : "") + std::string("tier ") + std::to_string(t + 1) + ": " + std::to_string(r.exits[t]) +
         Fmt(" (%.1f%%)", 100.0 * r.exits[t] / std::max(1, r.examples));
  }
  s += "\n";
  if (r.unanswered) s += "unanswered " + std::to_string(r.unanswered) + " (every member abstained)\n";
  if (serving) s += EvalServingText(*serving);
  return s;
}

std::string LabelFreeStatement(const PlanReport& r) {
  const Selection& s = r.selection;
  const std::string conf = Fmt("%.4g%%", 100 * (1 - s.alpha)), eps = Fmt("%.4g", 100 * s.epsilon) + " points";
  if (s.kept_best_single && s.disagreements == 0)
    return "no cheaper cascade agrees with " + r.reference + " closely enough: " + r.best_single +
           ", which answers as it does on every calibration input, is chosen";
  if (!r.goal_met)
    return "no cascade agrees with " + r.reference + " on at least " + Pct(1 - s.epsilon) + " of the inputs" +
           (s.guard == Guard::kNone ? "" : " with " + conf + " confidence") +
           ": the point agreeing most with it is shown (the goal is not met)";
  if (s.guard == Guard::kNone)
    return "the chosen cascade disagrees with " + r.reference + " on " + Pct(1 - s.accuracy) +
           " of the calibration inputs, at most epsilon = " + Pct(s.epsilon) +
           " (a point estimate, no confidence bound: --select none)";
  return "with " + conf + " confidence, accuracy is at most " + eps + " below " + r.reference +
         "'s own: the chosen cascade disagrees with it on " + std::to_string(s.disagreements) +
         " calibration inputs, and the one-sided Clopper-Pearson bound on its disagreement rate is " +
         Pct(s.disagreement_bound) + " <= epsilon (Bonferroni over " + std::to_string(s.candidates) + " candidates)";
}

}  // namespace coe
