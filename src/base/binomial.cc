#include "base/binomial.h"

#include <algorithm>
#include <cmath>

namespace coe {

double BinomialCdf(int64_t k, int64_t n, double p) {
  if (k < 0) return 0;
  if (k >= n) return 1;
  if (p <= 0) return 1;
  if (p >= 1) return 0;
  // Terms in logs (n may be large), summed from the mode outwards would be faster;
  // the shares bounded here come from windows of at most a few thousand requests.
  const double lp = std::log(p), lq = std::log1p(-p);
  const double lgn = std::lgamma(static_cast<double>(n) + 1);
  double sum = 0;
  for (int64_t i = 0; i <= k; ++i) {
    const double log_term = lgn - std::lgamma(static_cast<double>(i) + 1) -
                            std::lgamma(static_cast<double>(n - i) + 1) + i * lp + (n - i) * lq;
    sum += std::exp(log_term);
  }
  return std::min(1.0, sum);
}

namespace {

// The p in [0, 1] where the decreasing function f(p) crosses `target`, by bisection.
template <class F>
double Solve(F f, double target) {
  double lo = 0, hi = 1;
  for (int i = 0; i < 100 && hi - lo > 1e-14; ++i) {
    const double mid = (lo + hi) / 2;
    (f(mid) > target ? lo : hi) = mid;
  }
  return (lo + hi) / 2;
}

}  // namespace

double ClopperPearsonUpper(int64_t failures, int64_t n, double confidence) {
  if (n <= 0 || failures >= n) return 1;
  // P(X <= failures) falls as p grows.
  return Solve([&](double p) { return BinomialCdf(failures, n, p); }, 1 - confidence);
}

Interval ClopperPearson(int64_t successes, int64_t n, double confidence) {
  Interval out;
  if (n <= 0) return out;
  const double tail = (1 - confidence) / 2;
  if (successes < n) out.upper = ClopperPearsonUpper(successes, n, 1 - tail);
  // The lower bound on successes is 1 - the upper bound on failures.
  if (successes > 0) out.lower = 1 - ClopperPearsonUpper(n - successes, n, 1 - tail);
  return out;
}

}  // namespace coe
