// planner/masks.h: the search's bit-mask kernels (AND + popcount over words of 64
// examples), built for the plain target and, on x86-64, for AVX2 and for AVX-512 with
// VPOPCNTDQ (one instruction counts 512 examples); the best the CPU has is picked once
// at run time. Every build gives the same counts (tests/planner_test.cc checks them
// against each other).
//
// Thread safety: pure functions; BestMaskKernels() may be called from any thread.
#ifndef COE_PLANNER_MASKS_H_
#define COE_PLANNER_MASKS_H_

#include <cstdint>
#include <vector>

namespace coe {

using MaskWord = uint64_t;

struct MaskKernels {
  const char* name;  // "avx512", "avx2", "plain"
  // popcount(a & b) over words [lo, hi).
  int (*and_count)(const MaskWord* a, const MaskWord* b, int lo, int hi);
  // out[r] = popcount(a & rows[r]) over words [lo, hi), for r < num_rows.
  void (*and_count_rows)(const MaskWord* a, const MaskWord* const* rows, int num_rows, int lo, int hi, int* out);
  // Over words [lo, hi): next = reach & ~exit, and the counts
  //   out[0] = popcount(reach & exit & correct)   (examples that exit, answered right)
  //   out[1] = popcount(next)                     (examples left)
  //   out[2] = popcount(next & oracle)            (of those, ones some model gets right)
  void (*split)(const MaskWord* reach, const MaskWord* exit, const MaskWord* correct, const MaskWord* oracle,
                MaskWord* next, int lo, int hi, int out[3]);
  // A rule's exit mask over n examples: bit i of out is set when votes[i] >= min_votes
  // and, with score_test, scores[i] >= tau (NaN failing). out has (n + 63) / 64 words.
  void (*exit_bits)(const uint8_t* votes, const double* scores, int n, int min_votes, bool score_test, double tau,
                    MaskWord* out);
};

// The fastest kernels this CPU runs.
const MaskKernels& BestMaskKernels();
// Every build this CPU runs, fastest first (for tests).
std::vector<const MaskKernels*> SupportedMaskKernels();

}  // namespace coe

#endif  // COE_PLANNER_MASKS_H_
