// ThreadSanitizer canary: the onnx backend's old bug, kept on purpose, must still be
// reported, and not excused by scripts/tsan_check.py (scripts/tsan-libraries.txt).
// Two threads share a pool of ONE cv::dnn::Net; each
// leases it, runs forward(), gives it back, and only then reads the output, which
// points into the Net's own buffer that the other thread's forward() is rewriting.
// ctest runs it through `tsan_check.py --expect-race`, so an excuse that would hide
// this race fails the suite.
//
// OpenCV is not instrumented, but forward() copies the last layer's result into the
// output with cv::Mat::copyTo (memcpy), which TSan intercepts: the report pairs that
// OpenCV write with this program's read. A `race:` suppression naming any OpenCV
// frame would hide it; tsan_check.py, which excuses only reports lying wholly inside
// a library, does not.
#include <cstdio>
#include <mutex>
#include <opencv2/dnn.hpp>
#include <string>
#include <thread>
#include <vector>

#include "coe/paths.h"

int main(int argc, char** argv) {
  const std::string model = argc > 1 ? argv[1] : coe::BuildTreeSourceDir() + "/models/zoo/mlp32.onnx";
  cv::setNumThreads(1);
  cv::dnn::Net net = cv::dnn::readNetFromONNX(model);
  std::mutex pool;  // guards `net` (a pool of one)
  float sink = 0;
  std::mutex sink_mu;
  auto worker = [&](int seed) {
    int dims[] = {8, 1, 28, 28};
    cv::Mat blob(4, dims, CV_32F, cv::Scalar(seed));
    for (int k = 0; k < 200; ++k) {
      cv::Mat out;
      {
        std::lock_guard<std::mutex> lease(pool);
        net.setInput(blob);
        out = net.forward();
      }
      // The bug: the lease is back in the pool, yet `out` is read.
      float sum = 0;
      for (size_t i = 0; i < out.total(); ++i) sum += out.ptr<float>()[i];
      std::lock_guard<std::mutex> lock(sink_mu);
      sink += sum;
    }
  };
  std::thread a(worker, 1), b(worker, 2);
  a.join();
  b.join();
  std::printf("sum %g\n", sink);
  return 0;
}
