// Match-best's selection guards (planner/guards.h). Uses planner/search.h (the guards
// that search parts of calibration again) and planner/refit.h.
#include "planner/guards.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <numeric>
#include <random>

#include "base/binomial.h"
#include "coe/evaluate.h"
#include "planner/refit.h"
#include "planner/search.h"

namespace coe {

double NormalQuantile(double p) {
  // Acklam's rational approximation (relative error < 1.2e-9), refined by one step of
  // Newton's method on erfc: ample for critical values.
  static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02,  -2.759285104469687e+02,
                             1.383577518672690e+02,  -3.066479806614716e+01, 2.506628277459239e+00};
  static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                             6.680131188771972e+01, -1.328068155288572e+01};
  static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                             -2.549732539343734e+00, 4.374664141464968e+00,  2.938163982698783e+00};
  static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                             3.754408661907416e+00};
  p = std::clamp(p, 1e-300, 1 - 1e-16);
  double x;
  if (p < 0.02425) {
    const double q = std::sqrt(-2 * std::log(p));
    x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  } else if (p <= 1 - 0.02425) {
    const double q = p - 0.5, r = q * q;
    x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
  } else {
    const double q = std::sqrt(-2 * std::log(1 - p));
    x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  }
  const double e = 0.5 * std::erfc(-x / std::sqrt(2.0)) - p;
  const double u = e * std::sqrt(2 * M_PI) * std::exp(x * x / 2);
  return x - u / (1 + x * u / 2);
}

CascadeSpec SingleModelCascade(const std::string& model, const AnswerMatch& match) {
  CascadeSpec s;
  s.tiers.push_back(TierSpec{{model}, {}, match});
  return s;
}

namespace {

OperatingPoint BestSinglePoint(const PlanResult& r, const AnswerMatch& match) {
  OperatingPoint p;
  p.cascade = SingleModelCascade(r.best_single, match);
  p.correct = r.best_single_correct;
  p.accuracy = r.labeled ? static_cast<double>(r.best_single_correct) / r.labeled : 0.0;
  p.cost = r.best_single_cost;
  p.score_levels = {std::numeric_limits<double>::quiet_NaN()};
  return p;
}

bool NoDearer(double cost, double best_cost) { return cost <= best_cost * (1 + 1e-12); }

// Examples only the cascade gets right (b) and only the other gets right (c), from
// their ExampleOutcome::correct (the tiers' match decides, as in every other figure).
std::pair<int, int> Discordant(const std::vector<uint8_t>& a, const std::vector<uint8_t>& other) {
  int b = 0, c = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    b += a[i] && !other[i];
    c += other[i] && !a[i];
  }
  return {b, c};
}

// The one-sided paired test of H0: accuracy(cascade) <= accuracy(other) - margin, from
// the b examples only the cascade gets right and the c only the other gets right, of
// n: a Wald z with McNemar's variance (+-infinity when the two never differ).
double NonInferiorityZ(int b, int c, int n, double margin) {
  const double diff = static_cast<double>(b - c) / n;
  const double var = (b + c - static_cast<double>(b - c) * (b - c) / n) / (static_cast<double>(n) * n);
  if (var > 0) return (diff + margin) / std::sqrt(var);
  return diff + margin > 0 ? INFINITY : -INFINITY;
}

// A cascade of the frontier as it scores on calibration (it was found there).
StatusOr<OperatingPoint> Scored(const CascadeSpec& spec, const std::vector<double>& levels, const Recordings& rec,
                                const CostTable& costs) {
  COE_ASSIGN_OR_RETURN(EvalResult r, EvaluateCascade(spec, rec, costs));
  OperatingPoint p;
  p.cascade = spec;
  p.correct = r.correct;
  p.accuracy = r.accuracy;
  p.cost = r.mean_cost;
  p.score_levels = levels;
  return p;
}

// A seeded permutation of the examples.
std::vector<int> Shuffled(int n, uint64_t seed) {
  std::vector<int> rows(n);
  std::iota(rows.begin(), rows.end(), 0);
  std::mt19937_64 rng(seed);
  for (int i = n - 1; i > 0; --i) std::swap(rows[i], rows[std::uniform_int_distribution<int>(0, i)(rng)]);
  return rows;
}

// The options of a search on part of calibration: the whole's score grid (the same
// space, so that quantile levels refit on the whole), no guard, no progress.
PlannerOptions SubSearch(const PlannerOptions& options, int grid) {
  PlannerOptions o = options;
  o.score_quantiles = grid;
  o.select.guard = Guard::kNone;
  o.progress = nullptr;
  return o;
}

// Label-free plans: whether `p` agrees with the reference (the truth here) on enough
// inputs, by the Clopper-Pearson bound on its disagreements at the Bonferroni-corrected
// level `alpha` (the point estimate with Guard::kNone); records the figures in `sel`.
bool AgreesEnough(const OperatingPoint& p, int labeled, const SelectOptions& so, double alpha, Selection* sel) {
  sel->disagreements = labeled - p.correct;
  if (so.guard == Guard::kNone) return sel->disagreements <= so.epsilon * labeled + 1e-9;
  sel->disagreement_bound = ClopperPearsonUpper(sel->disagreements, labeled, alpha);
  return sel->disagreement_bound <= so.epsilon;
}

// kNone, kMcNemar and kNonInferiority on calibration; label-free plans (a reference:
// every frontier point a candidate, each held to AgreesEnough) share the candidates'
// walk, the Bonferroni correction and the fallback to the best single model.
Status ChooseOnCalibration(const Recordings& calib, const CostTable& costs, const PlannerOptions& options,
                           PlanResult* r) {
  const SelectOptions& so = options.select;
  const bool reference = !options.reference.empty();
  Selection& sel = r->selection;
  sel.basis = "calibration (" + std::to_string(r->labeled) +
              (reference ? " examples the reference answered)" : " labeled examples)");
  sel.best_accuracy = static_cast<double>(r->best_single_correct) / r->labeled;
  sel.best_cost = r->best_single_cost;
  std::vector<const OperatingPoint*> candidates;
  for (const OperatingPoint& p : r->frontier) {
    if (!reference && !NoDearer(p.cost, r->best_single_cost)) continue;
    if (!reference && so.guard != Guard::kNonInferiority && p.correct < r->best_single_correct) continue;
    candidates.push_back(&p);
  }
  sel.candidates = static_cast<int>(candidates.size());
  // Bonferroni over the candidates tested.
  const double corrected = so.alpha / std::max<size_t>(1, candidates.size());
  std::vector<uint8_t> best, mine;
  if (so.guard != Guard::kNone && !reference)
    COE_RETURN_IF_ERROR(
        EvaluateCascadeCorrect(SingleModelCascade(r->best_single, options.match), calib, costs, &best).status());
  const int n = r->labeled;
  sel.critical = reference                            ? std::numeric_limits<double>::quiet_NaN()
                 : so.guard == Guard::kMcNemar        ? so.mcnemar_z
                 : so.guard == Guard::kNonInferiority ? NormalQuantile(1 - corrected)
                                                      : 0.0;
  if (reference) {
    sel.reference = options.reference;
    sel.epsilon = so.epsilon;
    sel.alpha = so.alpha;
  }
  for (const OperatingPoint* p : candidates) {
    bool pass = true;
    if (reference) {
      pass = AgreesEnough(*p, n, so, corrected, &sel);
    } else if (so.guard != Guard::kNone) {
      COE_RETURN_IF_ERROR(EvaluateCascadeCorrect(p->cascade, calib, costs, &mine).status());
      const auto [b, c] = Discordant(mine, best);
      sel.wins_over_best = b;
      sel.losses_to_best = c;
      if (so.guard == Guard::kMcNemar) {
        sel.statistic = b + c > 0 ? (b - c) / std::sqrt(static_cast<double>(b + c)) : 0.0;
        pass = b - c >= so.mcnemar_z * std::sqrt(static_cast<double>(b + c)) - 1e-9;
      } else {
        sel.statistic = NonInferiorityZ(b, c, n, so.margin);
        pass = sel.statistic >= sel.critical;
      }
    }
    if (pass) {
      r->chosen = *p;
      sel.accuracy = p->accuracy;
      sel.cost = p->cost;
      return Status::Ok();
    }
  }
  r->chosen = BestSinglePoint(*r, options.match);
  sel.wins_over_best = sel.losses_to_best = 0;
  sel.statistic = std::numeric_limits<double>::quiet_NaN();
  if (reference) {
    // No cascade agrees enough: the best single model meets the goal when it is the
    // reference's equal (every answer the same); else the goal is not met, and the
    // nearest point is the one agreeing most (as for the other goals).
    r->goal_met = r->best_single_correct == n;
    if (!r->goal_met && !r->frontier.empty() && r->frontier.back().correct > r->best_single_correct)
      r->chosen = r->frontier.back();
    AgreesEnough(r->chosen, n, so, corrected, &sel);
    sel.accuracy = r->chosen.accuracy;
    sel.cost = r->chosen.cost;
  }
  return Status::Ok();
}

// Takes `spec` (levels from a search on part of calib) refitted on all of calib, if it
// still costs no more than the best single model there.
StatusOr<bool> TakeRefitted(const CascadeSpec& spec, const std::vector<double>& levels, const Recordings& calib,
                            const CostTable& costs, PlanResult* r) {
  COE_ASSIGN_OR_RETURN(CascadeSpec refit, RefitThresholds(spec, levels, calib));
  COE_ASSIGN_OR_RETURN(OperatingPoint p, Scored(refit, levels, calib, costs));
  if (!NoDearer(p.cost, r->best_single_cost)) return false;
  r->chosen = std::move(p);
  return true;
}

Status ChooseByHoldout(const Recordings& calib, const CostTable& costs, const PlannerOptions& options, PlanResult* r) {
  const SelectOptions& so = options.select;
  Selection& sel = r->selection;
  const int n = calib.num_examples();
  std::vector<int> rows = Shuffled(n, so.seed);
  const int held = static_cast<int>(std::lround(so.holdout * n));
  std::vector<int> hold(rows.begin(), rows.begin() + held), fit(rows.begin() + held, rows.end());
  std::sort(hold.begin(), hold.end());
  std::sort(fit.begin(), fit.end());
  // The search runs on the fit rows in place; only the held-out part is copied.
  const Recordings hold_rec = SelectRows(calib, hold);
  const CostTable hold_costs = SelectRows(costs, hold);
  int fit_labeled = 0;
  for (int i : fit) fit_labeled += calib.truth[i] != kAbstain;
  sel.basis = "held-out " + std::to_string(hold_rec.num_labeled()) + " of " + std::to_string(r->labeled) +
              " labeled calibration examples (search on the rest)";
  auto keep_best = [&] {
    r->chosen = BestSinglePoint(*r, options.match);
    sel.kept_best_single = true;
    return Status::Ok();
  };
  if (fit_labeled < 20 || hold_rec.num_labeled() < 20) return keep_best();
  COE_ASSIGN_OR_RETURN(PlanResult sub, SearchRows(calib, costs, SubSearch(options, r->score_grid), fit));
  COE_ASSIGN_OR_RETURN(EvalResult best,
                       EvaluateCascade(SingleModelCascade(sub.best_single, options.match), hold_rec, hold_costs));
  sel.best_accuracy = best.accuracy;
  sel.best_cost = best.mean_cost;
  // Candidates: the fit part's frontier points that match the best single model there
  // at no more cost, cheapest first. Each must be confirmed on the held-out part: a
  // one-sided paired non-inferiority test (margin, alpha) against the fit part's best
  // model. The first confirmed one is taken, its thresholds refitted on all of it.
  std::vector<uint8_t> best_ans, ans;
  COE_RETURN_IF_ERROR(
      EvaluateCascadeCorrect(SingleModelCascade(sub.best_single, options.match), hold_rec, hold_costs, &best_ans)
          .status());
  const int nh = hold_rec.num_labeled();
  sel.critical = NormalQuantile(1 - so.alpha);
  for (const OperatingPoint& p : sub.frontier) {
    if (!NoDearer(p.cost, sub.best_single_cost) || p.correct < sub.best_single_correct) continue;
    ++sel.candidates;
    COE_ASSIGN_OR_RETURN(EvalResult e, EvaluateCascadeCorrect(p.cascade, hold_rec, hold_costs, &ans));
    const auto [b, c] = Discordant(ans, best_ans);
    sel.statistic = NonInferiorityZ(b, c, nh, so.margin);
    if (sel.statistic < sel.critical) continue;
    COE_ASSIGN_OR_RETURN(bool taken, TakeRefitted(p.cascade, p.score_levels, calib, costs, r));
    if (!taken) continue;
    sel.accuracy = e.accuracy;
    sel.cost = e.mean_cost;
    return Status::Ok();
  }
  sel.accuracy = best.accuracy;
  sel.cost = best.mean_cost;
  return keep_best();
}

Status ChooseByCrossValidation(const Recordings& calib, const CostTable& costs, const PlannerOptions& options,
                               PlanResult* r) {
  const SelectOptions& so = options.select;
  Selection& sel = r->selection;
  const int n = calib.num_examples(), k = std::clamp(so.folds, 2, 20);
  const std::vector<int> rows = Shuffled(n, so.seed);
  struct Fold {
    std::vector<int> train;  // rows of calib (searched and refitted in place)
    Recordings test;
    CostTable test_costs;
    int train_labeled = 0;
  };
  std::vector<Fold> folds(k);
  for (int f = 0; f < k; ++f) {
    std::vector<int> train, test;
    for (int i = 0; i < n; ++i) (i % k == f ? test : train).push_back(rows[i]);
    std::sort(train.begin(), train.end());
    std::sort(test.begin(), test.end());
    folds[f].test = SelectRows(calib, test);
    folds[f].test_costs = SelectRows(costs, test);
    for (int i : train) folds[f].train_labeled += calib.truth[i] != kAbstain;
    folds[f].train = std::move(train);
  }
  sel.basis =
      std::to_string(k) + "-fold cross-validation on " + std::to_string(r->labeled) + " labeled calibration examples";
  // Structures: what the searches on the training parts put on their frontiers.
  std::map<std::string, std::pair<CascadeSpec, std::vector<double>>> structures;
  for (const Fold& fold : folds) {
    if (fold.train_labeled == 0) continue;
    COE_ASSIGN_OR_RETURN(PlanResult sub, SearchRows(calib, costs, SubSearch(options, r->score_grid), fold.train));
    for (const OperatingPoint& p : sub.frontier) {
      std::string key = p.cascade.ToString();
      for (double l : p.score_levels) key += "|" + std::to_string(l);
      structures.emplace(key, std::make_pair(p.cascade, p.score_levels));
    }
  }
  // Each structure's held-out accuracy and cost, thresholds refitted on each training part.
  auto cross = [&](const CascadeSpec& spec, const std::vector<double>& levels, int* correct, int* labeled,
                   double* cost) -> Status {
    *correct = *labeled = 0;
    double sum = 0;
    for (const Fold& fold : folds) {
      COE_ASSIGN_OR_RETURN(CascadeSpec refit, RefitThresholdsOnRows(spec, levels, calib, fold.train));
      COE_ASSIGN_OR_RETURN(EvalResult e, EvaluateCascade(refit, fold.test, fold.test_costs));
      *correct += e.correct;
      *labeled += e.labeled;
      sum += e.mean_cost * e.examples;
    }
    *cost = sum / n;
    return Status::Ok();
  };
  int best_correct = 0, labeled = 0;
  double best_cost = 0;
  COE_RETURN_IF_ERROR(cross(SingleModelCascade(r->best_single, options.match),
                            {std::numeric_limits<double>::quiet_NaN()}, &best_correct, &labeled, &best_cost));
  sel.best_accuracy = labeled ? static_cast<double>(best_correct) / labeled : 0.0;
  sel.best_cost = best_cost;
  struct Scored {
    double cost;
    int correct;
    const std::pair<CascadeSpec, std::vector<double>>* s;
  };
  std::vector<Scored> ok;
  for (const auto& [key, s] : structures) {
    int correct = 0, lab = 0;
    double cost = 0;
    COE_RETURN_IF_ERROR(cross(s.first, s.second, &correct, &lab, &cost));
    if (!NoDearer(cost, best_cost)) continue;
    ++sel.candidates;
    if (correct >= best_correct) ok.push_back({cost, correct, &s});
  }
  std::sort(ok.begin(), ok.end(), [](const Scored& a, const Scored& b) {
    return a.cost != b.cost ? a.cost < b.cost : a.correct > b.correct;
  });
  for (const Scored& c : ok) {
    COE_ASSIGN_OR_RETURN(bool taken, TakeRefitted(c.s->first, c.s->second, calib, costs, r));
    if (!taken) continue;
    sel.accuracy = labeled ? static_cast<double>(c.correct) / labeled : 0.0;
    sel.cost = c.cost;
    return Status::Ok();
  }
  r->chosen = BestSinglePoint(*r, options.match);
  sel.kept_best_single = true;
  sel.accuracy = sel.best_accuracy;
  sel.cost = sel.best_cost;
  return Status::Ok();
}

}  // namespace

Status ChooseMatchBest(const Recordings& calib, const CostTable& costs, const PlannerOptions& options,
                       PlanResult* result) {
  result->selection = Selection{};
  result->selection.guard = options.select.guard;
  result->selection.statistic = result->selection.critical = std::numeric_limits<double>::quiet_NaN();
  result->goal_met = true;
  if (!options.reference.empty() && options.select.guard != Guard::kNone &&
      options.select.guard != Guard::kNonInferiority)
    return InvalidArgumentError("--select " + GuardName(options.select.guard) +
                                ": with --reference, match-best is chosen by the Clopper-Pearson bound on the "
                                "disagreement with the reference (--select noninferiority, the default) or by its "
                                "point estimate (--select none)");
  Status s;
  switch (options.select.guard) {
    case Guard::kNone:
    case Guard::kMcNemar:
    case Guard::kNonInferiority:
      s = ChooseOnCalibration(calib, costs, options, result);
      break;
    case Guard::kHoldout:
      s = ChooseByHoldout(calib, costs, options, result);
      break;
    case Guard::kCrossValidation:
      s = ChooseByCrossValidation(calib, costs, options, result);
      break;
  }
  COE_RETURN_IF_ERROR(s);
  // Whatever the guard, the best single model alone counts as "kept" (it may also be
  // a frontier point that passed).
  Selection& sel = result->selection;
  sel.kept_best_single =
      result->chosen.cascade.ToString() == SingleModelCascade(result->best_single, options.match).ToString();
  if (sel.kept_best_single && options.select.guard != Guard::kHoldout &&
      options.select.guard != Guard::kCrossValidation) {
    sel.accuracy = sel.best_accuracy;
    sel.cost = sel.best_cost;
  }
  return Status::Ok();
}

}  // namespace coe
