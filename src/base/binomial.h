// Internal: exact (Clopper-Pearson) confidence bounds on a binomial proportion, from
// the binomial distribution itself (no normal approximation: the shares coe bounds are
// near 0 or 1, where that approximation is worst).
#ifndef COE_BASE_BINOMIAL_H_
#define COE_BASE_BINOMIAL_H_

#include <cstdint>

namespace coe {

// P(X <= k) for X ~ Binomial(n, p); 1 when k >= n, 0 when k < 0.
double BinomialCdf(int64_t k, int64_t n, double p);

struct Interval {
  double lower = 0, upper = 1;
};

// The two-sided Clopper-Pearson interval at `confidence` (e.g. 0.95: each bound
// one-sided at 0.975) for `successes` of `n` trials: lower is the p with
// P(X >= successes) = alpha/2 (0 when successes = 0), upper the p with
// P(X <= successes) = alpha/2 (1 when successes = n). n = 0: [0, 1]. Accurate to 1e-12.
Interval ClopperPearson(int64_t successes, int64_t n, double confidence);

// The one-sided upper bound at `confidence` on the share of `failures` in n trials:
// the p with P(X <= failures) = 1 - confidence (1 when failures = n; n = 0: 1).
double ClopperPearsonUpper(int64_t failures, int64_t n, double confidence);

}  // namespace coe

#endif  // COE_BASE_BINOMIAL_H_
