// Internal: the fully connected layer (ONNX Gemm) of the onednn backend, computed so
// that an example's outputs never depend on the other examples of its batch.
//
// oneDNN's inner product picks its GEMM (and the summation order) by batch size, so an
// example answered alone and the same example in a batch of 32 differed in the last
// bits of their probabilities, which the conformance suite forbids (an answer must not
// depend on how requests were batched). Here every output is
//   bias[o] + x[0]*w[0][o] + x[1]*w[1][o] + ...   (one fused multiply-add per term, in order),
// whatever the batch size, the row's place in it, and the vector width (AVX-512, AVX2 and
// the plain loop all compute the same fused sums, so they agree bit for bit).
#ifndef COE_BACKENDS_DENSE_H_
#define COE_BACKENDS_DENSE_H_

#include <cstdint>
#include <vector>

namespace coe {

class Dense {
 public:
  static constexpr int kLanes = 16;  // outputs per weight panel

  // `weights` is [outs][ins] row-major (ONNX Gemm with transB = 1), `bias` has `outs`
  // values (or is empty); `relu` applies max(0, y) after.
  Dense(int64_t ins, int64_t outs, const std::vector<float>& weights, const std::vector<float>& bias, bool relu);

  int64_t ins() const { return ins_; }
  int64_t outs() const { return outs_; }

  // y[r][o] for r < rows: x is [rows][ins], y is [rows][outs], both row-major.
  void Run(const float* x, int64_t rows, float* y) const;

  // The name of the kernel build Run uses on this CPU ("avx512", "avx2" or "plain"), and
  // Run through a named build (tests check every build this CPU runs gives the same bits).
  static const char* Build();
  void RunWith(const char* build, const float* x, int64_t rows, float* y) const;

 private:
  friend class PatchConv;
  int64_t ins_, outs_, panels_;
  std::vector<float> packed_;  // [panel][in][kLanes], zero-padded past `outs`
  std::vector<float> bias_;    // panels_ * kLanes, zero-padded
  bool relu_;
};

// A convolution computed as Dense rows over each output pixel's K x K x C patch
// (channels last), so with the same sums:
//   bias[o] + x[p0]*w[o][0] + x[p1]*w[o][1] + ...   (taps row by row, then channel by
// channel, one fused multiply-add each, padding read as zeros), whatever the batch and
// the build. oneDNN's kernels ran a first layer (one input channel) at 12-16 GMAC/s and
// the small convolutions after it (8 -> 16 channels) at 30-47, against ~90 on large ones.
class PatchConv {
 public:
  // `weights` is [outs][channels][kernel_h][kernel_w] (ONNX's); `pads` are top, left,
  // bottom, right, each less than the kernel along its axis; strides >= 1.
  PatchConv(int64_t in_h, int64_t in_w, int64_t channels, int64_t kernel_h, int64_t kernel_w, int64_t stride_h,
            int64_t stride_w, const int64_t pads[4], int64_t outs, const std::vector<float>& weights,
            const std::vector<float>& bias, bool relu);

  int64_t out_h() const { return out_h_; }
  int64_t out_w() const { return out_w_; }
  int64_t outs() const { return dense_.outs(); }
  // Floats of the scratch buffer Run needs (one example, padded).
  int64_t scratch_size() const { return padded_h_ * padded_w_ * channels_; }

  // y is [rows][out_h][out_w][outs] for x [rows][in_h][in_w][channels] (both channels
  // last); `scratch` holds scratch_size() floats (of any value before: Run overwrites them).
  void Run(const float* x, int64_t rows, float* y, float* scratch) const;
  void RunWith(const char* build, const float* x, int64_t rows, float* y, float* scratch) const;

 private:
  // Run through one build of the tiles (dense.cc's Build).
  template <class B>
  void RunOn(const B& build, const float* x, int64_t rows, float* y, float* scratch) const;

  int64_t in_h_, in_w_, channels_, stride_h_, stride_w_, pad_top_, pad_left_, padded_h_, padded_w_, out_h_, out_w_;
  std::vector<int64_t> taps_;  // each tap's offset in the padded image, row by row, then channel by channel
  Dense dense_;                // the weights as a Dense layer of kernel_h * kernel_w * channels inputs
};

}  // namespace coe

#endif  // COE_BACKENDS_DENSE_H_
