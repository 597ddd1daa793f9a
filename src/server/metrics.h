// Internal: the server's counters and their Prometheus text exposition (format 0.0.4).
// Hand-written: a dozen counters and two histograms do not warrant a client library,
// and Debian 12 packages none for C++ (prometheus-cpp is not in bookworm).
#ifndef COE_SERVER_METRICS_H_
#define COE_SERVER_METRICS_H_

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "coe/backend.h"
#include "coe/cascade.h"
#include "server/response_cache.h"

namespace coe {

// Latency buckets in seconds (Prometheus convention: upper bounds, +Inf implied).
inline constexpr std::array<double, 14> kLatencyBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                           0.1,    0.25,  0.5,    1,     2.5,  5,     10};

struct Histogram {
  std::array<uint64_t, kLatencyBuckets.size() + 1> counts{};  // last: +Inf
  double sum = 0;
  uint64_t count = 0;
  void Observe(double seconds);
};

// The response cache's series (coe_cache_*), from a snapshot of its counters.
std::string CacheText(const CacheStats& stats);

// Thread safety: every method locks; Text() is a consistent snapshot.
class Metrics {
 public:
  // An infer request's outcome (model "" for an unknown model).
  void CountRequest(const std::string& model, int code, double seconds);
  // Any response with status >= 400, on any route.
  void CountError(int code);
  // A successful run of `cascade` served as `model`: its examples, exits (answered
  // ones only: an example no tier answered is no tier's exit), costs, and its members'
  // failed calls by cause.
  void AddRun(const std::string& model, const Cascade& cascade, const RunResult& r);
  // `members`: one backend per distinct member name, for the per-member counters.
  std::string Text(int64_t inflight, double io_wait_seconds, const std::vector<Backend*>& members) const;

 private:
  using Key = std::pair<std::string, std::string>;
  mutable std::mutex mu_;
  std::map<Key, uint64_t> requests_;                                         // (model, code)
  std::map<std::string, uint64_t> errors_;                                   // code
  std::map<std::string, Histogram> request_seconds_;                         // model
  std::map<std::string, uint64_t> examples_, degraded_, unanswered_, runs_;  // model
  std::map<Key, uint64_t> exits_, deferred_;                                 // (model, tier 1-based)
  std::map<Key, double> tier_cost_;                                          // (model, tier 1-based)
  std::map<Key, uint64_t> tier_tokens_in_, tier_tokens_out_;                 // (model, tier 1-based)
  std::map<std::string, std::string> cost_unit_;                             // model -> Cascade::cost_name()
  std::map<std::string, Histogram> member_seconds_;                          // member
  std::map<Key, uint64_t> member_failures_;                                  // (member, failure kind)
};

}  // namespace coe

#endif  // COE_SERVER_METRICS_H_
