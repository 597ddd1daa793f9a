// Memory of the onnx backend (OpenCV DNN) against threads (issue 27): OpenCV cannot run
// one network on two threads at once nor share weights between networks, so each
// concurrent caller needs a copy; `coe record` with a thread per core once built one
// copy a thread (a 531 MB VGG-11 peaked at 1.56 / 2.11 / 5.30 GB with 1 / 2 / 8
// threads). The copies are now bounded by kOnnxNetworksBytes, or by the catalogue's
// `networks`. Release lane only (ctest label "memory"): sanitizers change memory use.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "coe/catalogue.h"
#include "onnx_writer.h"
#include "testing.h"

namespace coe {
namespace {

namespace fs = std::filesystem;

// The peak resident memory (KiB) of `coe <args>` run in a child (its own and its
// children's), and its exit code.
std::pair<long, int> PeakKb(const std::string& args) {
  const std::string cmd = "exec " + testing::CoeBinary() + " " + args + " >/dev/null 2>&1";
  const pid_t pid = fork();
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  rusage ru{};
  wait4(pid, &status, 0, &ru);
  return {ru.ru_maxrss, WIFEXITED(status) ? WEXITSTATUS(status) : -1};
}

// input [N, 1024] -> Gemm to 98,304 (402 MB of weights) -> Relu -> Gemm to 10 classes.
void WriteBigModel(const std::string& path) {
  constexpr int64_t kIn = 1024, kHidden = 98304, kClasses = 10;
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-0.01f, 0.01f);
  auto values = [&](int64_t n) {
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = u(rng);
    return v;
  };
  auto gemm = [](const std::string& in, const std::string& w, const std::string& b, const std::string& out) {
    Proto trans_b;
    trans_b.Bytes(1, "transB").Int(3, 1).Int(20, 2);  // name, i, type INT
    Proto node;
    node.out = NodeProto("Gemm", {in, w, b}, out);
    node.Bytes(5, trans_b.out);
    return node.out;
  };
  Proto g;
  g.Bytes(1, gemm("input", "W1", "B1", "h"));
  g.Bytes(1, NodeProto("Relu", {"h"}, "r"));
  g.Bytes(1, gemm("r", "W2", "B2", "logits"));
  g.Bytes(5, Tensor("W1", {kHidden, kIn}, values(kHidden * kIn)));
  g.Bytes(5, Tensor("B1", {kHidden}, values(kHidden)));
  g.Bytes(5, Tensor("W2", {kClasses, kHidden}, values(kClasses * kHidden)));
  g.Bytes(5, Tensor("B2", {kClasses}, values(kClasses)));
  g.Bytes(11, FloatValueInfo("input", {kIn}));
  g.Bytes(12, FloatValueInfo("logits", {kClasses}));
  Proto m;
  m.Int(1, 8).Bytes(7, g.out).Bytes(8, Proto().Int(2, 13).out);
  std::ofstream(path, std::ios::binary) << m.out;
}

// 64 examples of 1024 bytes (IDX, unsigned bytes).
void WriteInputs(const std::string& path) {
  std::string idx = {0, 0, 8, 2, 0, 0, 0, 64, 0, 0, 4, 0};
  std::mt19937 rng(5);
  for (int i = 0; i < 64 * 1024; ++i) idx.push_back(static_cast<char>(rng() & 0xff));
  std::ofstream(path, std::ios::binary) << idx;
}

TEST(OnnxMemory, NetworksAreBoundedNotOneAThread) {
  const fs::path dir = fs::temp_directory_path() / ("coe_onnx_memory_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string model = (dir / "big.onnx").string(), data = (dir / "x.idx").string();
  WriteBigModel(model);
  WriteInputs(data);
  const double file_kb = static_cast<double>(fs::file_size(model)) / 1024;
  // The default then allows two copies: two fit in kOnnxNetworksBytes, three do not.
  ASSERT_LE(file_kb * 1024 * 2, kOnnxNetworksBytes);
  ASSERT_GT(file_kb * 1024 * 3, kOnnxNetworksBytes);
  auto catalogue = [&](const std::string& name, const std::string& more) {
    const std::string path = (dir / name).string();
    std::ofstream(path) << "[models.big]\nbackend = \"onnx\"\npath = \"" << model
                        << "\"\ninput_shape = [1024]\nscale = 0.00392156862745098\nusd = 1\n"
                        << more;
    return path;
  };
  const std::string plain = catalogue("cat.toml", ""), one = catalogue("one.toml", "networks = 1\n");
  auto record = [&](const std::string& cat, int threads, const std::string& out) {
    auto [kb, code] = PeakKb("record --models " + cat + " --data " + data + " --out " + (dir / out).string() +
                             " --threads " + std::to_string(threads));
    EXPECT_EQ(code, 0) << cat << " with " << threads << " threads";
    return static_cast<double>(kb);
  };
  const double one_thread = record(plain, 1, "t1.csv");
  const double six_threads = record(plain, 6, "t6.csv");
  const double six_one_network = record(one, 6, "n1.csv");
  std::printf(
      "coe record of a %.0f MB onnx model: peak %.0f MB with 1 thread, %.0f MB with 6, %.0f MB with 6 and "
      "networks = 1\n",
      file_kb / 1024, one_thread / 1024, six_threads / 1024, six_one_network / 1024);
  // The default: one copy beyond the first.
  EXPECT_LE(six_threads, one_thread + 1.5 * file_kb);
  // networks = 1: one copy whatever the threads.
  EXPECT_LE(six_one_network, one_thread + 0.5 * file_kb);
  // And the answers do not depend on it.
  const auto t1 = testing::CsvRowsById((dir / "t1.csv").string());
  EXPECT_EQ(t1.size(), 64u);
  EXPECT_EQ(testing::CsvRowsById((dir / "t6.csv").string()), t1);
  EXPECT_EQ(testing::CsvRowsById((dir / "n1.csv").string()), t1);
  if (!HasFailure()) fs::remove_all(dir);  // else kept, to look into
}

}  // namespace
}  // namespace coe
