// Internal: sums of token counts that saturate instead of overflowing.
//
// A chat model's usage comes from its server (coe/catalogue.h: a call's usage above
// kMaxUsageTokens is refused and its cost estimated), and counts are summed per
// example, per tier, per member and over a server's life: each such sum stops at
// kTokenCap. kTokenCap is half of int64_t's range, so that the sum of two capped
// counts (prompt + completion tokens, the OpenAI response's total_tokens) still fits.
#ifndef COE_BASE_TOKENS_H_
#define COE_BASE_TOKENS_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <limits>

namespace coe {

// The most tokens one call may report (2^40, about 1.1e12: a million times any
// context window); a larger figure is not a usage.
inline constexpr int64_t kMaxUsageTokens = int64_t{1} << 40;
// Where every sum of tokens stops.
inline constexpr int64_t kTokenCap = std::numeric_limits<int64_t>::max() / 2;

// A count taken in [0, kTokenCap].
inline int64_t ClampTokens(int64_t n) { return std::clamp<int64_t>(n, 0, kTokenCap); }
// sum + n, each taken in [0, kTokenCap], at most kTokenCap.
inline int64_t AddTokens(int64_t sum, int64_t n) { return std::min(ClampTokens(sum) + ClampTokens(n), kTokenCap); }
inline uint64_t AddTokens(uint64_t sum, int64_t n) {
  return static_cast<uint64_t>(AddTokens(static_cast<int64_t>(std::min<uint64_t>(sum, kTokenCap)), n));
}
// The same on a counter that threads add to at once.
inline void AddTokens(std::atomic<uint64_t>* sum, int64_t n) {
  uint64_t seen = sum->load(std::memory_order_relaxed);
  while (!sum->compare_exchange_weak(seen, AddTokens(seen, n), std::memory_order_relaxed)) {
  }
}

}  // namespace coe

#endif  // COE_BASE_TOKENS_H_
