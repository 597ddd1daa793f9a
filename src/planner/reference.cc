// Label-free planning (coe/planner.h): the answers that stand in for the truth, and
// the Clopper-Pearson bound match-best puts on the disagreement with them. Uses no
// other planner file.
#include <cmath>
#include <limits>

#include "coe/planner.h"
#include "coe/rules.h"

namespace coe {

namespace {

// The continued fraction of the regularized incomplete beta function (modified
// Lentz), converging fast for x < (a + 1) / (a + b + 2). Hand-written: a dozen lines
// of textbook numerics, where a library would be a new dependency.
double BetaFraction(double a, double b, double x) {
  constexpr double kTiny = 1e-300;
  double c = 1, d = 1 - (a + b) * x / (a + 1);
  d = 1 / (std::fabs(d) < kTiny ? kTiny : d);
  double h = d;
  for (int m = 1; m <= 10000; ++m) {
    for (int step = 0; step < 2; ++step) {
      const double num = step == 0 ? m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
                                   : -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1));
      d = 1 + num * d;
      d = 1 / (std::fabs(d) < kTiny ? kTiny : d);
      c = 1 + num / c;
      if (std::fabs(c) < kTiny) c = kTiny;
      h *= d * c;
      if (step == 1 && std::fabs(d * c - 1) < 1e-16) return h;
    }
  }
  return h;
}

// I_x(a, b), the regularized incomplete beta function, for a, b > 0.
double RegularizedBeta(double a, double b, double x) {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const double front =
      std::exp(std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) + a * std::log(x) + b * std::log1p(-x));
  if (x < (a + 1) / (a + b + 2)) return front * BetaFraction(a, b, x) / a;
  return 1 - front * BetaFraction(b, a, 1 - x) / b;
}

}  // namespace

double ClopperPearsonUpper(int k, int n, double alpha) {
  if (n <= 0 || k < 0 || !(alpha > 0 && alpha < 1)) return std::numeric_limits<double>::quiet_NaN();
  if (k >= n) return 1;
  // P(X <= k | p) = 1 - I_p(k + 1, n - k) falls with p: bisect for where it is alpha.
  double lo = 0, hi = 1;
  for (int i = 0; i < 200 && hi - lo > 1e-15; ++i) {
    const double mid = (lo + hi) / 2;
    (1 - RegularizedBeta(k + 1.0, n - k, mid) > alpha ? lo : hi) = mid;
  }
  return hi;  // the side that is not below the bound
}

StatusOr<std::vector<int>> ReferenceAnswers(const Recordings& rec, const std::string& reference,
                                            const AnswerMatch& match) {
  const int n = rec.num_examples();
  if (reference != kPluralityReference) {
    const int m = rec.ModelIndex(reference);
    if (m < 0) {
      std::string models;
      for (const ModelRecord& r : rec.models) models += (models.empty() ? "" : ", ") + r.name;
      return NotFoundError("--reference '" + reference + "': no model of that name in " + rec.source +
                           " (its models: " + (models.empty() ? "none" : models) + "; or --reference " +
                           kPluralityReference + ", the plurality of them all)");
    }
    return rec.models[m].label;
  }
  if (rec.ModelIndex(kPluralityReference) >= 0)
    return InvalidArgumentError("--reference plurality: " + rec.source +
                                " has a model named 'plurality'; rename its column to plan against it");
  if (!match.exact() && !rec.labels)
    return InvalidArgumentError("--match " + match.ToString() + " compares answers as text; " + rec.source +
                                " has no label names");
  static const LabelSet kNoLabels;
  AnswerMatcher matcher(match, rec.labels ? *rec.labels : kNoLabels);
  std::vector<int> out(n, kAbstain);
  std::vector<MemberOutput> outs;
  for (int i = 0; i < n; ++i) {
    outs.clear();
    for (int m = 0; m < static_cast<int>(rec.models.size()); ++m) outs.push_back(rec.Output(m, i));
    out[i] = TallyVotes(outs, &matcher).plurality;
  }
  return out;
}

}  // namespace coe
