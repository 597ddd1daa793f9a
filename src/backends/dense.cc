#include "backends/dense.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

namespace coe {
namespace {

// What a tile reads: x(r, k) is input k of its row r.
// Rows of a matrix (Dense): row r at p + r * ins.
struct MatrixRows {
  const float* p;
  int64_t ins;
  float operator()(int r, int64_t k) const { return p[r * ins + k]; }
};
// Pixels of a padded image (PatchConv): pixel r's patch starts `step` floats after pixel
// r - 1's, and input k is the tap at offset taps[k] from there.
struct PatchRows {
  const float* p;
  int64_t step;
  const int64_t* taps;
  float operator()(int r, int64_t k) const { return p[r * step + taps[k]]; }
};

// One tile: some rows (the template's R) of one panel (its weights `w` and 16 biases),
// into the first `n` lanes of each row of y (rows `y_step` floats apart).
template <class X>
using TileFn = void (*)(const X& x, int64_t ins, const float* w, const float* bias, bool relu, int64_t n,
                        int64_t y_step, float* y);

// Writes lanes [0, n) of a panel's 16 results to y.
inline void StoreLanes(const float* lanes, int64_t n, float* y) { std::memcpy(y, lanes, n * sizeof(float)); }

// The plain loop: one row.
template <int R, class X>
void TilePlain(const X& x, int64_t ins, const float* w, const float* bias, bool relu, int64_t n, int64_t y_step,
               float* y) {
  static_assert(R == 1);
  (void)y_step;
  float acc[Dense::kLanes];
  std::memcpy(acc, bias, sizeof(acc));
  for (int64_t k = 0; k < ins; ++k) {
    const float v = x(0, k);
    for (int l = 0; l < Dense::kLanes; ++l) acc[l] = std::fma(v, w[k * Dense::kLanes + l], acc[l]);
  }
  if (relu)
    for (float& a : acc) a = a > 0.f ? a : 0.f;
  StoreLanes(acc, n, y);
}

// R rows, on AVX-512: R accumulators of 16 lanes.
template <int R, class X>
__attribute__((target("avx512f"))) inline void Tile512(const X& x, int64_t ins, const float* w, const float* bias,
                                                       bool relu, int64_t n, int64_t y_step, float* y) {
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_loadu_ps(bias);
  for (int64_t k = 0; k < ins; ++k) {
    const __m512 wk = _mm512_loadu_ps(w + k * Dense::kLanes);
    for (int r = 0; r < R; ++r) acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(x(r, k)), wk, acc[r]);
  }
  const __mmask16 mask = static_cast<__mmask16>((1u << n) - 1);
  for (int r = 0; r < R; ++r) {
    if (relu) acc[r] = _mm512_maskz_max_ps(0xffff, acc[r], _mm512_set1_ps(0.f));
    _mm512_mask_storeu_ps(y + r * y_step, mask, acc[r]);
  }
}

// R rows, on AVX2: two 8-lane accumulators a row.
template <int R, class X>
__attribute__((target("avx2,fma"))) inline void Tile256(const X& x, int64_t ins, const float* w, const float* bias,
                                                        bool relu, int64_t n, int64_t y_step, float* y) {
  __m256 lo[R], hi[R];
  for (int r = 0; r < R; ++r) {
    lo[r] = _mm256_loadu_ps(bias);
    hi[r] = _mm256_loadu_ps(bias + 8);
  }
  for (int64_t k = 0; k < ins; ++k) {
    const __m256 wl = _mm256_loadu_ps(w + k * Dense::kLanes), wh = _mm256_loadu_ps(w + k * Dense::kLanes + 8);
    for (int r = 0; r < R; ++r) {
      const __m256 v = _mm256_set1_ps(x(r, k));
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
    StoreLanes(lanes, n, y + r * y_step);
  }
}

// A build: its tiles (tiles[k] computes k + 1 rows). The builds differ only in their tiles.
template <class X>
struct Build {
  const char* name;
  const TileFn<X>* tiles;
  int64_t max_rows;
};

// The builds this CPU runs, fastest first.
template <class X>
std::vector<Build<X>> Supported() {
  static constexpr TileFn<X> k512[] = {&Tile512<1, X>, &Tile512<2, X>, &Tile512<3, X>, &Tile512<4, X>,
                                       &Tile512<5, X>, &Tile512<6, X>, &Tile512<7, X>, &Tile512<8, X>};
  static constexpr TileFn<X> k256[] = {&Tile256<1, X>, &Tile256<2, X>, &Tile256<3, X>, &Tile256<4, X>};
  static constexpr TileFn<X> kPlain[] = {&TilePlain<1, X>};
  std::vector<Build<X>> out;
  if (__builtin_cpu_supports("avx512f")) out.push_back({"avx512", k512, 8});
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) out.push_back({"avx2", k256, 4});
  out.push_back({"plain", kPlain, 1});
  return out;
}

template <class X>
const Build<X>& Best() {
  static const Build<X> best = Supported<X>().front();
  return best;
}

// The build named `name` (nullptr when this CPU does not run it).
template <class X>
const Build<X>* Named(const char* name) {
  static const std::vector<Build<X>> builds = Supported<X>();
  for (const Build<X>& b : builds)
    if (std::strcmp(b.name, name) == 0) return &b;
  return nullptr;
}

// `count` rows read through x(r, k) (x_at(first) gives the accessor whose row 0 is row
// `first`), in tiles of up to the build's rows, panel by panel, into y (rows `y_step` apart).
// Rows go in blocks of kRowBlock, each block panel by panel, so that a panel's weights
// are read once a block from cache, not once a tile from memory: a transformer's layer
// has ~200 rows an image and megabytes of weights (ViT-B/16's 768 x 2304 matrix is 7 MB),
// which tile by tile streamed from memory ~50 times an image. A row's sums are its
// tile's, in the same order whatever the tile or the block, so its values do not change.
template <class X, class At>
void RunTiled(const Build<X>& b, const At& x_at, int64_t count, int64_t ins, const float* packed, const float* bias,
              int64_t outs, int64_t panels, bool relu, int64_t y_step, float* y) {
  constexpr int64_t kRowBlock = 64;
  for (int64_t r0 = 0; r0 < count; r0 += kRowBlock) {
    const int64_t r1 = std::min(count, r0 + kRowBlock);
    for (int64_t p = 0; p < panels; ++p) {
      for (int64_t r = r0; r < r1;) {
        // Tiles of equal size as far as possible (14 rows in 7 + 7, not 8 + 6).
        const int64_t tiles_left = (r1 - r + b.max_rows - 1) / b.max_rows;
        const int64_t tile = (r1 - r + tiles_left - 1) / tiles_left;
        b.tiles[tile - 1](x_at(r), ins, packed + p * ins * Dense::kLanes, bias + p * Dense::kLanes, relu,
                          std::min<int64_t>(Dense::kLanes, outs - p * Dense::kLanes), y_step,
                          y + r * y_step + p * Dense::kLanes);
        r += tile;
      }
    }
  }
}

void RunDense(const Build<MatrixRows>& b, const float* x, int64_t rows, int64_t ins, const float* packed,
              const float* bias, int64_t outs, int64_t panels, bool relu, float* y) {
  RunTiled(
      b,
      [&](int64_t r) {
        return MatrixRows{x + r * ins, ins};
      },
      rows, ins, packed, bias, outs, panels, relu, outs, y);
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
  RunDense(Best<MatrixRows>(), x, rows, ins_, packed_.data(), bias_.data(), outs_, panels_, relu_, y);
}

const char* Dense::Build() { return Best<MatrixRows>().name; }

void Dense::RunWith(const char* build, const float* x, int64_t rows, float* y) const {
  if (const coe::Build<MatrixRows>* b = Named<MatrixRows>(build))
    RunDense(*b, x, rows, ins_, packed_.data(), bias_.data(), outs_, panels_, relu_, y);
}

namespace {

// ONNX's [outs][channels][kh][kw] as [outs][kh][kw][channels]: the order of the taps.
std::vector<float> TapsOrder(const std::vector<float>& w, int64_t outs, int64_t channels, int64_t kh, int64_t kw) {
  std::vector<float> t(w.size());
  for (int64_t o = 0; o < outs; ++o)
    for (int64_t c = 0; c < channels; ++c)
      for (int64_t i = 0; i < kh; ++i)
        for (int64_t j = 0; j < kw; ++j)
          t[((o * kh + i) * kw + j) * channels + c] = w[((o * channels + c) * kh + i) * kw + j];
  return t;
}

}  // namespace

PatchConv::PatchConv(int64_t in_h, int64_t in_w, int64_t channels, int64_t kernel_h, int64_t kernel_w, int64_t stride_h,
                     int64_t stride_w, const int64_t pads[4], int64_t outs, const std::vector<float>& weights,
                     const std::vector<float>& bias, bool relu)
    : in_h_(in_h),
      in_w_(in_w),
      channels_(channels),
      stride_h_(stride_h),
      stride_w_(stride_w),
      pad_top_(pads[0]),
      pad_left_(pads[1]),
      padded_h_(in_h + pads[0] + pads[2]),
      padded_w_(in_w + pads[1] + pads[3]),
      out_h_(padded_h_ < kernel_h ? 0 : (padded_h_ - kernel_h) / stride_h + 1),
      out_w_(padded_w_ < kernel_w ? 0 : (padded_w_ - kernel_w) / stride_w + 1),
      dense_(kernel_h * kernel_w * channels, outs, TapsOrder(weights, outs, channels, kernel_h, kernel_w), bias, relu) {
  for (int64_t i = 0; i < kernel_h; ++i)
    for (int64_t j = 0; j < kernel_w; ++j)
      for (int64_t c = 0; c < channels; ++c) taps_.push_back((i * padded_w_ + j) * channels + c);
}

template <class B>
void PatchConv::RunOn(const B& build, const float* x, int64_t rows, float* y, float* scratch) const {
  std::memset(scratch, 0, scratch_size() * sizeof(float));  // the padding; each example fills the rest
  const int64_t outs = dense_.outs_, line = in_w_ * channels_, padded_line = padded_w_ * channels_;
  for (int64_t n = 0; n < rows; ++n) {
    for (int64_t i = 0; i < in_h_; ++i)
      std::memcpy(scratch + (i + pad_top_) * padded_line + pad_left_ * channels_, x + (n * in_h_ + i) * line,
                  line * sizeof(float));
    for (int64_t oh = 0; oh < out_h_; ++oh) {
      const float* row = scratch + oh * stride_h_ * padded_line;
      RunTiled(
          build,
          [&](int64_t ow) {
            return PatchRows{row + ow * stride_w_ * channels_, stride_w_ * channels_, taps_.data()};
          },
          out_w_, dense_.ins_, dense_.packed_.data(), dense_.bias_.data(), outs, dense_.panels_, dense_.relu_, outs,
          y + (n * out_h_ + oh) * out_w_ * outs);
    }
  }
}

void PatchConv::Run(const float* x, int64_t rows, float* y, float* scratch) const {
  RunOn(Best<PatchRows>(), x, rows, y, scratch);
}

void PatchConv::RunWith(const char* build, const float* x, int64_t rows, float* y, float* scratch) const {
  if (const coe::Build<PatchRows>* b = Named<PatchRows>(build)) RunOn(*b, x, rows, y, scratch);
}

}  // namespace coe
