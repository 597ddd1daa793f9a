// The search's bit-mask kernels (planner/masks.h). Uses no other planner file.
#include "planner/masks.h"

#include <algorithm>
#include <bit>
#include <cstdint>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace coe {
namespace {

// The bodies, inlined into each target's build below (the compiler vectorizes them
// with the target's popcount).
#define COE_MASK_KERNELS(suffix, attr)                                                                         \
  attr int AndCount##suffix(const MaskWord* a, const MaskWord* b, int lo, int hi) {                            \
    uint64_t n = 0; /* 64-bit sums: no narrowing in the vector loop */                                         \
    for (int w = lo; w < hi; ++w) n += std::popcount(a[w] & b[w]);                                             \
    return static_cast<int>(n);                                                                                \
  }                                                                                                            \
  attr void AndCountRows##suffix(const MaskWord* a, const MaskWord* const* rows, int num_rows, int lo, int hi, \
                                 int* out) {                                                                   \
    for (int r = 0; r < num_rows; ++r) {                                                                       \
      const MaskWord* b = rows[r];                                                                             \
      uint64_t n = 0;                                                                                          \
      for (int w = lo; w < hi; ++w) n += std::popcount(a[w] & b[w]);                                           \
      out[r] = static_cast<int>(n);                                                                            \
    }                                                                                                          \
  }                                                                                                            \
  attr void Split##suffix(const MaskWord* reach, const MaskWord* exit, const MaskWord* correct,                \
                          const MaskWord* oracle, MaskWord* next, int lo, int hi, int out[3]) {                \
    uint64_t ec = 0, l = 0, o = 0;                                                                             \
    for (int w = lo; w < hi; ++w) {                                                                            \
      const MaskWord e = reach[w] & exit[w];                                                                   \
      const MaskWord n = reach[w] & ~exit[w];                                                                  \
      ec += std::popcount(e & correct[w]);                                                                     \
      l += std::popcount(n);                                                                                   \
      o += std::popcount(n & oracle[w]);                                                                       \
      next[w] = n;                                                                                             \
    }                                                                                                          \
    out[0] = static_cast<int>(ec);                                                                             \
    out[1] = static_cast<int>(l);                                                                              \
    out[2] = static_cast<int>(o);                                                                              \
  }

COE_MASK_KERNELS(Plain, )

void ExitBitsPlain(const uint8_t* votes, const double* scores, int n, int min_votes, bool score_test, double tau,
                   MaskWord* out) {
  for (int base = 0; base < n; base += 64) {
    const int count = std::min(64, n - base);
    MaskWord bits = 0;
    for (int t = 0; t < count; ++t) {
      const bool pass = votes[base + t] >= min_votes && (!score_test || scores[base + t] >= tau);
      bits |= MaskWord{pass} << t;
    }
    out[base / 64] = bits;
  }
}

constexpr MaskKernels kPlain{"plain", AndCountPlain, AndCountRowsPlain, SplitPlain, ExitBitsPlain};

#if defined(__x86_64__)
#define COE_MASK_X86 1
COE_MASK_KERNELS(Avx2, __attribute__((target("avx2,popcnt"))))
COE_MASK_KERNELS(Avx512, __attribute__((target("avx512f,avx512bw,avx512vl,avx512vpopcntdq,popcnt"))))
// 64 examples a word: one byte compare for the votes, eight double compares for the
// scores (_CMP_GE_OQ: NaN compares false, as in DeferralRule::Exits).
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vpopcntdq,popcnt"))) void ExitBitsAvx512(
    const uint8_t* votes, const double* scores, int n, int min_votes, bool score_test, double tau, MaskWord* out) {
  const int full = n / 64;
  const __m512i need = _mm512_set1_epi8(static_cast<char>(std::min(min_votes, 255)));
  const __m512d bar = _mm512_set1_pd(tau);
  for (int w = 0; w < full; ++w) {
    MaskWord bits = _mm512_cmpge_epu8_mask(_mm512_loadu_si512(votes + w * 64), need);
    if (min_votes > 255) bits = 0;
    if (score_test) {
      MaskWord s = 0;
      for (int k = 0; k < 8; ++k)
        s |= static_cast<MaskWord>(_mm512_cmp_pd_mask(_mm512_loadu_pd(scores + w * 64 + 8 * k), bar, _CMP_GE_OQ))
             << (8 * k);
      bits &= s;
    }
    out[w] = bits;
  }
  if (full * 64 < n)
    ExitBitsPlain(votes + full * 64, scores + full * 64, n - full * 64, min_votes, score_test, tau, out + full);
}

constexpr MaskKernels kAvx2{"avx2", AndCountAvx2, AndCountRowsAvx2, SplitAvx2, ExitBitsPlain};
constexpr MaskKernels kAvx512{"avx512", AndCountAvx512, AndCountRowsAvx512, SplitAvx512, ExitBitsAvx512};
#endif

#undef COE_MASK_KERNELS

}  // namespace

std::vector<const MaskKernels*> SupportedMaskKernels() {
  std::vector<const MaskKernels*> out;
#ifdef COE_MASK_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512vpopcntdq") && __builtin_cpu_supports("avx512f") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
    out.push_back(&kAvx512);
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt")) out.push_back(&kAvx2);
#endif
  out.push_back(&kPlain);
  return out;
}

const MaskKernels& BestMaskKernels() {
  static const MaskKernels* const best = SupportedMaskKernels().front();
  return *best;
}

}  // namespace coe
