// The benches' median of repeated measurements.
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

}  // namespace coe::bench

#endif  // COE_BENCH_MEDIAN_H_
