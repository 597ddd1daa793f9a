// Internal: exact (Clopper-Pearson) confidence bounds on a binomial proportion, from
// the binomial distribution itself (no normal approximation: the shares coe bounds are
// near 0 or 1, where that approximation is worst). The one implementation: the
// planner's match-best guard (--reference) and the server's shadow monitor use it.
#ifndef COE_BASE_BINOMIAL_H_
#define COE_BASE_BINOMIAL_H_

#include <cstdint>

namespace coe {

// P(X <= k) for X ~ Binomial(n, p) (through the regularized incomplete beta function,
// so fast for any n); 1 when k >= n, 0 when k < 0.
double BinomialCdf(int64_t k, int64_t n, double p);

// The one-sided upper confidence bound of Clopper and Pearson on a binomial rate,
// from `k` events in `n` trials at level `alpha` in (0, 1): the p at which k or fewer
// events have probability alpha (the (1 - alpha) quantile of Beta(k + 1, n - k)); 1
// when k >= n; NaN when n <= 0, k < 0 or alpha is outside (0, 1). Accurate to 1e-12.
double ClopperPearsonUpper(int64_t k, int64_t n, double alpha);

struct Interval {
  double lower = 0, upper = 1;
};

// The two-sided Clopper-Pearson interval at `confidence` in (0, 1) (e.g. 0.95: each
// bound one-sided at 0.975) for `successes` of `n` trials: lower is the p with
// P(X >= successes) = alpha/2 (0 when successes = 0), upper the p with
// P(X <= successes) = alpha/2 (1 when successes = n). n <= 0: [0, 1].
Interval ClopperPearson(int64_t successes, int64_t n, double confidence);

}  // namespace coe

#endif  // COE_BASE_BINOMIAL_H_
