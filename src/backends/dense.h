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
  int64_t ins_, outs_, panels_;
  std::vector<float> packed_;  // [panel][in][kLanes], zero-padded past `outs`
  std::vector<float> bias_;    // panels_ * kLanes, zero-padded
  bool relu_;
};

}  // namespace coe

#endif  // COE_BACKENDS_DENSE_H_
