#include "planner/masks.h"

#include <bit>
#include <cstdint>

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
constexpr MaskKernels kPlain{"plain", AndCountPlain, AndCountRowsPlain, SplitPlain};

#if defined(__x86_64__)
#define COE_MASK_X86 1
COE_MASK_KERNELS(Avx2, __attribute__((target("avx2,popcnt"))))
COE_MASK_KERNELS(Avx512, __attribute__((target("avx512f,avx512bw,avx512vl,avx512vpopcntdq,popcnt"))))
constexpr MaskKernels kAvx2{"avx2", AndCountAvx2, AndCountRowsAvx2, SplitAvx2};
constexpr MaskKernels kAvx512{"avx512", AndCountAvx512, AndCountRowsAvx512, SplitAvx512};
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
