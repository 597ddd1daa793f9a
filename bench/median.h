// The benches' order statistics: the median of repeated measurements, percentiles of
// latencies.
#ifndef COE_BENCH_MEDIAN_H_
#define COE_BENCH_MEDIAN_H_

#include <algorithm>
#include <vector>

namespace coe::bench {

// The middle value (the mean of the two middle ones for an even count); 0 for none.
inline double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : (v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2);
}

// The value at fraction p of the sorted values (p = 1: the largest); 0 for none.
inline double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

}  // namespace coe::bench

#endif  // COE_BENCH_MEDIAN_H_
