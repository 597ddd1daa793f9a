// Bad input through the `coe` command: each case exits 2 with a message naming the
// file, line or field, and never crashes, hangs or takes unbounded memory.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "coe/catalogue.h"
#include "testing.h"

namespace coe {
namespace {

namespace fs = std::filesystem;
using testing::Proc;
using testing::RunCoe;

const std::string kF = "/usr/share/datasets/fashion-mnist/";

class Robustness : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("coe_robust_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name, std::ios::binary) << text;
    return (dir_ / name).string();
  }
  std::string Zoo(const std::string& extra = "") {
    return Write("zoo.toml",
                 "[defaults]\nbackend = \"onnx\"\ninput_shape = [1, 28, 28]\n"
                 "labels = [\"tshirt\", \"trouser\", \"pullover\", \"dress\", \"coat\", \"sandal\", "
                 "\"shirt\", \"sneaker\", \"bag\", \"boot\"]\n[models.linear]\npath = \"" +
                     testing::ZooDir() + "linear.onnx\"\nmacs = 7840\n" + extra);
  }
  std::string OneTier(const std::string& model = "linear") {
    return Write("c.toml", "[[tiers]]\nmembers = [\"" + model + "\"]\n");
  }
  fs::path dir_;
};

// The peak resident memory of the largest child process waited for, in MiB.
double ChildPeakMiB() {
  rusage ru{};
  getrusage(RUSAGE_CHILDREN, &ru);
  return ru.ru_maxrss / 1024.0;
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kMeasuresMemory = false;  // sanitizers change memory use
#else
constexpr bool kMeasuresMemory = true;
#endif

TEST_F(Robustness, HugeInputShapeIsRefusedNotAnAbort) {
  auto cat = ParseCatalogue("[models.m]\npath = \"m.onnx\"\ninput_shape = [1, 65536, 65536]\n", "cat.toml", "");
  ASSERT_FALSE(cat.ok());
  EXPECT_NE(cat.status().message().find("cat.toml:3"), std::string::npos) << cat.status().message();
  EXPECT_NE(cat.status().message().find("input_shape"), std::string::npos) << cat.status().message();
  Write("huge.toml", "[defaults]\nbackend = \"onnx\"\ninput_shape = [1, 65536, 65536]\n[models.linear]\npath = \"" +
                         testing::ZooDir() + "linear.onnx\"\nmacs = 1\n");
  Proc p = RunCoe("run --cascade " + OneTier() + " --models " + (dir_ / "huge.toml").string() + " --data " + kF +
                  "t10k-images-idx3-ubyte.gz --range 0:10");
  EXPECT_EQ(p.code, 2) << p.out;
  EXPECT_NE(p.out.find("input_shape"), std::string::npos) << p.out;
  // A shape within the limits that the model cannot take: OpenCV's exception stays a
  // message.
  Write("wrong.toml", "[defaults]\nbackend = \"onnx\"\ninput_shape = [3, 300, 300]\n[models.linear]\npath = \"" +
                          testing::ZooDir() + "linear.onnx\"\nmacs = 1\n");
  p = RunCoe("run --cascade " + OneTier() + " --models " + (dir_ / "wrong.toml").string() + " --data " + kF +
             "t10k-images-idx3-ubyte.gz --range 0:10");
  EXPECT_EQ(p.code, 2) << p.out;
  EXPECT_NE(p.out.find("linear.onnx"), std::string::npos) << p.out;
}

TEST_F(Robustness, IdxReadsOnlyWhatItsHeaderDeclares) {
  // A 10-image header, its 7,840 bytes, then 1 GiB of zeros (about 1 MB gzipped).
  const std::string path = (dir_ / "padded-idx3-ubyte.gz").string();
  gzFile f = gzopen(path.c_str(), "wb9");
  ASSERT_NE(f, nullptr);
  const unsigned char header[16] = {0, 0, 8, 3, 0, 0, 0, 10, 0, 0, 0, 28, 0, 0, 0, 28};
  gzwrite(f, header, sizeof header);
  std::string images(10 * 784, '\x40');
  gzwrite(f, images.data(), images.size());
  const std::string zeros(1 << 20, '\0');
  for (int i = 0; i < 1024; ++i) gzwrite(f, zeros.data(), zeros.size());
  gzclose(f);
  EXPECT_LT(fs::file_size(path), 2u << 20);
  Proc p = RunCoe("run --cascade " + OneTier() + " --models " + Zoo() + " --data " + path);
  EXPECT_EQ(p.code, 2) << p.out;
  EXPECT_NE(p.out.find("data after the 7840 bytes its header declares"), std::string::npos) << p.out;
  if (kMeasuresMemory) {
    EXPECT_LT(ChildPeakMiB(), 200) << "peak RSS of coe run";
  }
  // The same file without the padding is fine.
  f = gzopen(path.c_str(), "wb1");
  gzwrite(f, header, sizeof header);
  gzwrite(f, images.data(), images.size());
  gzclose(f);
  p = RunCoe("run --cascade " + OneTier() + " --models " + Zoo() + " --data " + path);
  EXPECT_EQ(p.code, 0) << p.out;
  // Truncated payload.
  f = gzopen(path.c_str(), "wb1");
  gzwrite(f, header, sizeof header);
  gzwrite(f, images.data(), 5000);
  gzclose(f);
  p = RunCoe("run --cascade " + OneTier() + " --models " + Zoo() + " --data " + path);
  EXPECT_EQ(p.code, 2) << p.out;
  EXPECT_NE(p.out.find("truncated: the header promises 7840 bytes of data, the file has 5000"), std::string::npos)
      << p.out;
}

TEST_F(Robustness, ImagesAsLabelsAndEmptyImageListsAreErrors) {
  Proc p = RunCoe("run --cascade " + OneTier() + " --models " + Zoo() + " --data " + kF +
                  "t10k-images-idx3-ubyte.gz --range 0:10 --labels " + kF + "t10k-images-idx3-ubyte.gz");
  EXPECT_EQ(p.code, 2) << p.out;
  EXPECT_NE(p.out.find("is not a label file: it holds a 3-D IDX array [10000, 28, 28]"), std::string::npos) << p.out;
  const std::string list = Write("list.txt", "\n  \n");
  p = RunCoe("run --cascade " + OneTier() + " --models " + Zoo() + " --data " + list);
  EXPECT_EQ(p.code, 2) << p.out;
  EXPECT_NE(p.out.find("list.txt' lists no images"), std::string::npos) << p.out;
  p = RunCoe("eval --cascade " + OneTier() + " --models " + Zoo() + " --data " + dir_.string());
  EXPECT_EQ(p.code, 2) << p.out;
  EXPECT_NE(p.out.find("is a directory"), std::string::npos) << p.out;
}

TEST_F(Robustness, CsvErrorsKeepEveryByteOfTheirMessage) {
  const std::string cat = Write("cat.toml", "[models.a]\nusd = 1\n[models.b]\nusd = 2\n");
  // A NUL byte in a column name: the message is printed whole, the NUL escaped.
  static const char kNul[] = "id,label,a,b\0x,b|score\n1,x,x,x,0.5\n";
  const std::string nul = Write("nul.csv", std::string(kNul, sizeof kNul - 1));
  Proc p = RunCoe("plan --calib " + nul + " --models " + cat);
  EXPECT_NE(p.out.find("ignoring column 'b\\x00x': it names no model of"), std::string::npos) << p.out;
  // ... and in an error: the same column in a cascade.
  p = RunCoe("eval --cascade " + Write("c.toml", std::string("[[tiers]]\nmembers = [\"b\\u0000x\"]\n")) + " --data " +
             nul + " --models " + cat);
  EXPECT_EQ(p.code, 2) << p.out;
  EXPECT_NE(p.out.find("b\\x00x"), std::string::npos) << p.out;
  // Probabilities that sum to more than 1.
  const std::string over = Write("over.csv", "id,label,a,b,a|p:x,a|p:y\n1,x,x,y,1,1\n2,y,x,y,0.5,0.5\n");
  p = RunCoe("plan --calib " + over + " --models " + cat);
  EXPECT_EQ(p.code, 2) << p.out;
  EXPECT_NE(p.out.find("over.csv:2: model 'a': its |p: columns sum to 2, not 1"), std::string::npos) << p.out;
  // Rounded probabilities (within 0.01 of 1) pass.
  const std::string ok = Write("ok.csv", "id,label,a,b,a|p:x,a|p:y\n1,x,x,y,0.333,0.663\n2,y,y,y,0.5,0.5\n");
  p = RunCoe("plan --calib " + ok + " --models " + cat);
  EXPECT_EQ(p.code, 0) << p.out;
}

TEST_F(Robustness, CascadeValueErrorsPointAtTheirOwnLine) {
  const std::string c = Write("bad.toml",
                              "[[tiers]]\nmembers = [\"linear\", \"linear2\"]\nmin_agreement = \"high\"\n"
                              "[[tiers]]\nmembers = [\"linear3\"]\n");
  Proc p = RunCoe("run --cascade " + c + " --models " + Zoo() + " --data " + kF + "t10k-images-idx3-ubyte.gz");
  EXPECT_EQ(p.code, 2) << p.out;
  EXPECT_NE(p.out.find("bad.toml:3:"), std::string::npos) << p.out;
  EXPECT_NE(p.out.find("'min_agreement' must be a number"), std::string::npos) << p.out;
}

}  // namespace
}  // namespace coe
