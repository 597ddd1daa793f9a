#include "base/binomial.h"

#include <cmath>
#include <limits>

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

double BinomialCdf(int64_t k, int64_t n, double p) {
  if (k < 0) return 0;
  if (k >= n) return 1;
  // P(X <= k) = 1 - I_p(k + 1, n - k).
  return 1 - RegularizedBeta(static_cast<double>(k) + 1, static_cast<double>(n - k), p);
}

double ClopperPearsonUpper(int64_t k, int64_t n, double alpha) {
  if (n <= 0 || k < 0 || !(alpha > 0 && alpha < 1)) return std::numeric_limits<double>::quiet_NaN();
  if (k >= n) return 1;
  // P(X <= k | p) falls with p: bisect for where it is alpha.
  double lo = 0, hi = 1;
  for (int i = 0; i < 200 && hi - lo > 1e-15; ++i) {
    const double mid = (lo + hi) / 2;
    (BinomialCdf(k, n, mid) > alpha ? lo : hi) = mid;
  }
  return hi;  // the side that is not below the bound
}

Interval ClopperPearson(int64_t successes, int64_t n, double confidence) {
  Interval out;
  if (n <= 0 || !(confidence > 0 && confidence < 1)) return out;
  const double tail = (1 - confidence) / 2;
  if (successes < n) out.upper = ClopperPearsonUpper(successes, n, tail);
  // The lower bound on successes is 1 - the upper bound on failures.
  if (successes > 0) out.lower = 1 - ClopperPearsonUpper(n - successes, n, tail);
  return out;
}

}  // namespace coe
