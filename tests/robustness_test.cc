// Bad input through the `coe` command: each case exits 2 with a message naming the
// file, line or field, and never crashes, hangs or takes unbounded memory.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "coe/catalogue.h"
#include "coe/dataset.h"
#include "testing.h"

namespace coe {
namespace {

namespace fs = std::filesystem;
using testing::Proc;
using testing::ReadFile;
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

// An IDX header of 4 axes [n, a, b, c] (big-endian 32-bit sizes) and `payload` bytes.
std::string Idx(std::vector<uint32_t> dims, size_t payload) {
  std::string s = {0, 0, 8, static_cast<char>(dims.size())};
  for (uint32_t d : dims)
    for (int shift : {24, 16, 8, 0}) s += static_cast<char>((d >> shift) & 0xff);
  return s + std::string(payload, '\x40');
}

// A header's sizes are claims: a file claiming 2^31 or 2^32-1 images is refused by its
// real size (plain) or by what decompression yields (gzip), never allocated for (it was
// a std::bad_alloc abort); zero sizes and shapes past the limit say which header field.
TEST_F(Robustness, IdxHeadersThatClaimMoreThanTheFileHoldsAreErrors) {
  auto gz = [&](const std::string& name, const std::string& bytes) {
    const std::string path = (dir_ / name).string();
    gzFile f = gzopen(path.c_str(), "wb9");
    gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
    gzclose(f);
    return path;
  };
  DatasetOptions o;
  for (uint32_t n : {uint32_t{1} << 31, uint32_t{0xffffffff}}) {
    const std::string bytes = Idx({n, 28, 28}, 10 * 784);
    for (const std::string& path : {Write("claims-idx3-ubyte", bytes), gz("claims-idx3-ubyte.gz", bytes)}) {
      SCOPED_TRACE(path + " claiming " + std::to_string(n));
      auto d = LoadDataset(path, o);
      ASSERT_FALSE(d.ok());
      EXPECT_EQ(d.status().code(), StatusCode::kInvalidArgument);
      EXPECT_NE(d.status().message().find("'" + path + "' is truncated"), std::string::npos) << d.status().message();
      EXPECT_NE(d.status().message().find(std::to_string(uint64_t{n} * 784) + " bytes"), std::string::npos)
          << d.status().message();
      // A range inside what the file holds: still refused, the rest is missing.
      o.end = 5;
      EXPECT_FALSE(LoadDataset(path, o).ok());
      o.end = -1;
    }
  }
  // The plain file's message names the header field and the file's real size.
  const std::string plain = Write("claims-idx3-ubyte", Idx({uint32_t{1} << 31, 28, 28}, 10 * 784));
  EXPECT_NE(LoadDataset(plain, o).status().message().find("IDX header (dimension 0, the number of examples) claims "
                                                          "2147483648 examples of 784 bytes"),
            std::string::npos)
      << LoadDataset(plain, o).status().message();
  EXPECT_NE(LoadDataset(plain, o).status().message().find("the file holds 7840"), std::string::npos);
  // Zero sizes: named, not "more than 67108864 values" or "the range is empty".
  const std::pair<std::vector<uint32_t>, std::string> zeros[] = {
      {{1, 0, 0}, "IDX header field 'dimension 1' is 0: every size must be at least 1"},
      {{0, 28, 28}, "IDX header field 'dimension 0' (the number of examples) is 0: the file holds no examples"},
      {{5, 28, 28, 0}, "IDX header field 'dimension 3' is 0"},
  };
  for (const auto& [dims, want] : zeros) {
    for (const std::string& path : {Write("zero-idx3-ubyte", Idx(dims, 0)), gz("zero-idx3-ubyte.gz", Idx(dims, 0))}) {
      auto d = LoadDataset(path, o);
      ASSERT_FALSE(d.ok()) << path;
      EXPECT_NE(d.status().message().find("'" + path + "': " + want), std::string::npos) << d.status().message();
    }
  }
  // Axes whose product overflows 64 bits (4 axes of 2^32-1): the shape limit, named.
  auto huge = LoadDataset(Write("huge-idx3-ubyte", Idx({1, 0xffffffff, 0xffffffff, 0xffffffff}, 0)), o);
  ASSERT_FALSE(huge.ok());
  EXPECT_NE(huge.status().message().find("examples of shape [4294967295, 4294967295, 4294967295] have more than "
                                         "67108864 values"),
            std::string::npos)
      << huge.status().message();
  // A gzip whose size trailer is forged to agree with its header (5,000,000 images, 3.9
  // GB): more than deflate can yield from this file, so nothing is allocated for it.
  std::string forged = ReadFile(gz("forged-idx3-ubyte.gz", Idx({5000000, 28, 28}, 784)));
  const uint32_t claimed = 5000000u * 784u + 16u;
  for (int k = 0; k < 4; ++k) forged[forged.size() - 4 + k] = static_cast<char>((claimed >> (8 * k)) & 0xff);
  auto f = LoadDataset(Write("forged-idx3-ubyte.gz", forged), o);
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("forged-idx3-ubyte.gz' is corrupt"), std::string::npos) << f.status().message();
  EXPECT_NE(f.status().message().find("incorrect length check"), std::string::npos) << f.status().message();
  // And through the command: exit 2 with the message (it was an abort).
  Proc p = RunCoe("run --cascade " + OneTier() + " --models " + Zoo() + " --data " +
                  gz("claims-idx3-ubyte.gz", Idx({uint32_t{1} << 31, 28, 28}, 784)));
  EXPECT_EQ(p.code, 2) << p.out;
  EXPECT_NE(p.out.find("is truncated"), std::string::npos) << p.out;
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
