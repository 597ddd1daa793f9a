#include "backends/dense.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

namespace coe {
namespace {

using Kernel = void (*)(const float* x, int64_t rows, int64_t ins, const float* packed, const float* bias, int64_t outs,
                        int64_t panels, bool relu, float* y);

// Writes lanes [0, n) of a panel's 16 results to y.
inline void StoreLanes(const float* lanes, int64_t n, float* y) { std::memcpy(y, lanes, n * sizeof(float)); }

void RunPlain(const float* x, int64_t rows, int64_t ins, const float* packed, const float* bias, int64_t outs,
              int64_t panels, bool relu, float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t p = 0; p < panels; ++p) {
      float acc[Dense::kLanes];
      std::memcpy(acc, bias + p * Dense::kLanes, sizeof(acc));
      const float* w = packed + p * ins * Dense::kLanes;
      for (int64_t k = 0; k < ins; ++k) {
        const float v = x[r * ins + k];
        for (int l = 0; l < Dense::kLanes; ++l) acc[l] = std::fma(v, w[k * Dense::kLanes + l], acc[l]);
      }
      if (relu)
        for (float& a : acc) a = a > 0.f ? a : 0.f;
      StoreLanes(acc, std::min<int64_t>(Dense::kLanes, outs - p * Dense::kLanes), y + r * outs + p * Dense::kLanes);
    }
  }
}

// One tile: some rows of one panel (x's rows, the panel's weights `w` and 16 biases) into the
// first `n` lanes of y's rows; a tile template's row count is its template argument.
using TileFn = void (*)(const float* x, int64_t ins, const float* w, const float* bias, bool relu, int64_t n,
                        int64_t outs, float* y);

// Runs `rows` in tiles of up to `max_rows`, panel by panel; tiles[k] computes k + 1 rows.
// The AVX-512 and AVX2 builds differ only in their tiles.
void RunTiled(const TileFn* tiles, int64_t max_rows, const float* x, int64_t rows, int64_t ins, const float* packed,
              const float* bias, int64_t outs, int64_t panels, bool relu, float* y) {
  for (int64_t r = 0; r < rows; r += max_rows) {
    const int64_t tile = std::min<int64_t>(max_rows, rows - r);
    for (int64_t p = 0; p < panels; ++p) {
      tiles[tile - 1](x + r * ins, ins, packed + p * ins * Dense::kLanes, bias + p * Dense::kLanes, relu,
                      std::min<int64_t>(Dense::kLanes, outs - p * Dense::kLanes), outs,
                      y + r * outs + p * Dense::kLanes);
    }
  }
}

// R rows of one panel, on AVX-512: R accumulators of 16 lanes.
template <int R>
__attribute__((target("avx512f"))) inline void Tile512(const float* x, int64_t ins, const float* w, const float* bias,
                                                       bool relu, int64_t n, int64_t outs, float* y) {
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_loadu_ps(bias);
  for (int64_t k = 0; k < ins; ++k) {
    const __m512 wk = _mm512_loadu_ps(w + k * Dense::kLanes);
    for (int r = 0; r < R; ++r) acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(x[r * ins + k]), wk, acc[r]);
  }
  const __mmask16 mask = static_cast<__mmask16>((1u << n) - 1);
  for (int r = 0; r < R; ++r) {
    if (relu) acc[r] = _mm512_maskz_max_ps(0xffff, acc[r], _mm512_set1_ps(0.f));
    _mm512_mask_storeu_ps(y + r * outs, mask, acc[r]);
  }
}

void RunAvx512(const float* x, int64_t rows, int64_t ins, const float* packed, const float* bias, int64_t outs,
               int64_t panels, bool relu, float* y) {
  static constexpr TileFn kTiles[] = {&Tile512<1>, &Tile512<2>, &Tile512<3>, &Tile512<4>,
                                      &Tile512<5>, &Tile512<6>, &Tile512<7>, &Tile512<8>};
  RunTiled(kTiles, 8, x, rows, ins, packed, bias, outs, panels, relu, y);
}

// R rows of one panel, on AVX2: two 8-lane accumulators a row.
template <int R>
__attribute__((target("avx2,fma"))) inline void Tile256(const float* x, int64_t ins, const float* w, const float* bias,
                                                        bool relu, int64_t n, int64_t outs, float* y) {
  __m256 lo[R], hi[R];
  for (int r = 0; r < R; ++r) {
    lo[r] = _mm256_loadu_ps(bias);
    hi[r] = _mm256_loadu_ps(bias + 8);
  }
  for (int64_t k = 0; k < ins; ++k) {
    const __m256 wl = _mm256_loadu_ps(w + k * Dense::kLanes), wh = _mm256_loadu_ps(w + k * Dense::kLanes + 8);
    for (int r = 0; r < R; ++r) {
      const __m256 v = _mm256_set1_ps(x[r * ins + k]);
      lo[r] = _mm256_fmadd_ps(v, wl, lo[r]);
      hi[r] = _mm256_fmadd_ps(v, wh, hi[r]);
    }
  }
  for (int r = 0; r < R; ++r) {
    if (relu) {
      lo[r] = _mm256_max_ps(lo[r], _mm256_set1_ps(0.f));
      hi[r] = _mm256_max_ps(hi[r], _mm256_set1_ps(0.f));
    }
    alignas(32) float lanes[Dense::kLanes];
    _mm256_store_ps(lanes, lo[r]);
    _mm256_store_ps(lanes + 8, hi[r]);
    StoreLanes(lanes, n, y + r * outs);
  }
}

void RunAvx2(const float* x, int64_t rows, int64_t ins, const float* packed, const float* bias, int64_t outs,
             int64_t panels, bool relu, float* y) {
  static constexpr TileFn kTiles[] = {&Tile256<1>, &Tile256<2>, &Tile256<3>, &Tile256<4>};
  RunTiled(kTiles, 4, x, rows, ins, packed, bias, outs, panels, relu, y);
}

struct NamedKernel {
  const char* name;
  Kernel run;
};

// The builds this CPU runs, fastest first.
std::vector<NamedKernel> Supported() {
  std::vector<NamedKernel> out;
  if (__builtin_cpu_supports("avx512f")) out.push_back({"avx512", &RunAvx512});
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) out.push_back({"avx2", &RunAvx2});
  out.push_back({"plain", &RunPlain});
  return out;
}

const NamedKernel& Best() {
  static const NamedKernel best = Supported().front();
  return best;
}

}  // namespace

Dense::Dense(int64_t ins, int64_t outs, const std::vector<float>& weights, const std::vector<float>& bias, bool relu)
    : ins_(ins), outs_(outs), panels_((outs + kLanes - 1) / kLanes), relu_(relu) {
  packed_.assign(panels_ * ins_ * kLanes, 0.f);
  bias_.assign(panels_ * kLanes, 0.f);
  for (int64_t o = 0; o < outs_; ++o) {
    const int64_t p = o / kLanes, l = o % kLanes;
    for (int64_t k = 0; k < ins_; ++k) packed_[(p * ins_ + k) * kLanes + l] = weights[o * ins_ + k];
    if (!bias.empty()) bias_[o] = bias[o];
  }
}

void Dense::Run(const float* x, int64_t rows, float* y) const {
  Best().run(x, rows, ins_, packed_.data(), bias_.data(), outs_, panels_, relu_, y);
}

const char* Dense::Build() { return Best().name; }

void Dense::RunWith(const char* build, const float* x, int64_t rows, float* y) const {
  for (const NamedKernel& k : Supported())
    if (std::strcmp(k.name, build) == 0)
      return k.run(x, rows, ins_, packed_.data(), bias_.data(), outs_, panels_, relu_, y);
}

}  // namespace coe
