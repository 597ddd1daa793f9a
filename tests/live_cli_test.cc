// Conformance: a cascade run live on ONNX models and the same cascade replayed from
// `coe record`'s output (the recorded backend, and `coe eval`) agree exactly.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "testing.h"

namespace {

namespace fs = std::filesystem;

using coe::testing::Proc;
Proc Coe(const std::string& args) { return coe::testing::RunCoe(args); }
std::string Read(const fs::path& p) { return coe::testing::ReadFile(p.string()); }

const std::string kZoo = coe::testing::ZooDir();
const std::string kF = "/usr/share/datasets/fashion-mnist/";
const std::string kLabels =
    "labels = [\"tshirt\", \"trouser\", \"pullover\", \"dress\", \"coat\", \"sandal\", \"shirt\", "
    "\"sneaker\", \"bag\", \"boot\"]\ninput_shape = [1, 28, 28]\n";

TEST(LiveCli, LiveRunEqualsReplayOfRecordings) {
  fs::path dir = fs::temp_directory_path() / ("coe_live_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "zoo.toml") << "[defaults]\nbackend = \"onnx\"\n"
                                  << kLabels << "scale = 0.00392156862745098\nmean = 0.2860\nstd = 0.3530\n"
                                  << "[models.linear]\npath = \"" << kZoo << "linear.onnx\"\nmacs = 7840\n"
                                  << "[models.mlp256x2]\npath = \"" << kZoo << "mlp256x2.onnx\"\nmacs = 235000\n"
                                  << "[models.cnn8_16]\npath = \"" << kZoo << "cnn8_16.onnx\"\nmacs = 290000\n";
  // The same models replayed from the recordings.
  std::ofstream(dir / "replay.toml") << "[defaults]\nbackend = \"recorded\"\npath = \"rec.csv\"\n"
                                     << kLabels << "[models.linear]\nmacs = 7840\n[models.mlp256x2]\nmacs = 235000\n"
                                     << "[models.cnn8_16]\nmacs = 290000\n";
  // Default threads and batches: answers must not depend on them.
  const std::string data =
      "--data " + kF + "t10k-images-idx3-ubyte.gz --labels " + kF + "t10k-labels-idx1-ubyte.gz --range 1000:1800";
  Proc rec =
      Coe("record --models " + (dir / "zoo.toml").string() + " " + data + " --out " + (dir / "rec.csv").string());
  ASSERT_EQ(rec.code, 0) << rec.out;
  // Vote, score and combined rules, and a 3-tier cascade.
  const char* cascades[] = {
      "[[tiers]]\nmembers = [\"linear\", \"mlp256x2\"]\nmin_agreement = 1.0\n[[tiers]]\nmembers = [\"cnn8_16\"]\n",
      "[[tiers]]\nmembers = [\"linear\"]\nmin_score = 0.93\n[[tiers]]\nmembers = [\"mlp256x2\"]\nmin_score = 0.8\n"
      "[[tiers]]\nmembers = [\"cnn8_16\"]\n",
      "[[tiers]]\nmembers = [\"linear\", \"mlp256x2\"]\nmin_agreement = 1.0\nmin_score = 0.9\n"
      "[[tiers]]\nmembers = [\"cnn8_16\"]\n",
  };
  for (const char* c : cascades) {
    std::ofstream(dir / "c.toml") << c;
    Proc live = Coe("run --cascade " + (dir / "c.toml").string() + " --models " + (dir / "zoo.toml").string() + " " +
                    data + " --out " + (dir / "live.csv").string() + " --json");
    ASSERT_EQ(live.code, 0) << live.out;
    Proc replay = Coe("run --cascade " + (dir / "c.toml").string() + " --models " + (dir / "replay.toml").string() +
                      " " + data + " --out " + (dir / "replay.csv").string() + " --json");
    ASSERT_EQ(replay.code, 0) << replay.out;
    // Identical answers, exits, agreement, costs, per example.
    EXPECT_EQ(Read(dir / "live.csv"), Read(dir / "replay.csv")) << c;
    auto lj = nlohmann::json::parse(live.out), rj = nlohmann::json::parse(replay.out);
    EXPECT_EQ(lj["exits"], rj["exits"]);
    EXPECT_EQ(lj["correct"], rj["correct"]);
    EXPECT_EQ(lj["cost"], rj["cost"]);
    // And `coe eval` (the planner's replay) on the recordings reports the same.
    Proc eval = Coe("eval --cascade " + (dir / "c.toml").string() + " --data " + (dir / "rec.csv").string() +
                    " --models " + (dir / "rec.models.toml").string() + " --cost macs --json");
    ASSERT_EQ(eval.code, 0) << eval.out;
    auto ej = nlohmann::json::parse(eval.out);
    EXPECT_EQ(ej["exits"], lj["exits"]) << c;
    EXPECT_EQ(ej["correct"], lj["correct"]) << c;
    EXPECT_NEAR(ej["cost"].get<double>(), lj["cost"].get<double>(), 1e-6);
  }
  fs::remove_all(dir);
}

TEST(LiveCli, BadInputsExitTwo) {
  fs::path dir = fs::temp_directory_path() / ("coe_livebad_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "zoo.toml") << "[defaults]\nbackend = \"onnx\"\n"
                                  << kLabels << "[models.linear]\npath = \"missing.onnx\"\nmacs = 7840\n";
  std::ofstream(dir / "c.toml") << "[[tiers]]\nmembers = [\"linear\"]\n";
  Proc p = Coe("run --cascade " + (dir / "c.toml").string() + " --models " + (dir / "zoo.toml").string() + " --data " +
               kF + "t10k-images-idx3-ubyte.gz");
  EXPECT_EQ(p.code, 2) << p.out;
  EXPECT_NE(p.out.find("missing.onnx"), std::string::npos) << p.out;
  std::ofstream(dir / "zoo2.toml") << "[defaults]\nbackend = \"onnx\"\n"
                                   << kLabels << "[models.linear]\npath = \"" << kZoo << "linear.onnx\"\nmacs = 7840\n";
  std::ofstream(dir / "junk.png") << "junk";
  p = Coe("run --cascade " + (dir / "c.toml").string() + " --models " + (dir / "zoo2.toml").string() + " --data " +
          (dir / "junk.png").string());
  EXPECT_EQ(p.code, 2) << p.out;
  EXPECT_NE(p.out.find("junk.png"), std::string::npos) << p.out;
  p = Coe("run --cascade " + (dir / "c.toml").string() + " --models " + (dir / "zoo2.toml").string() + " --data " + kF +
          "t10k-labels-idx1-ubyte.gz");
  EXPECT_EQ(p.code, 2) << p.out;
  p = Coe("run --cascade " + (dir / "c.toml").string() + " --models " + (dir / "zoo2.toml").string() + " --data " + kF +
          "t10k-images-idx3-ubyte.gz --range 5:2");
  EXPECT_EQ(p.code, 2) << p.out;
  fs::remove_all(dir);
}

// One model that will not load does not stop `coe record`: the others are recorded, the
// refused one's calls are written as failures naming why (never answers), the command
// exits 1, and recording again once the file is fixed fills them in (issue 27).
TEST(LiveCli, RecordGoesOnWhenOneModelWillNotLoad) {
  fs::path dir = fs::temp_directory_path() / ("coe_recrefuse_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string broken = (dir / "broken.onnx").string();
  std::ofstream(broken) << "this is not a protobuf \x01\x02\x03";
  const std::string cat = (dir / "zoo.toml").string();
  std::ofstream(cat) << "[defaults]\n"
                     << kLabels << "[models.linear]\npath = \"" << kZoo << "linear.onnx\"\nmacs = 7840\n"
                     << "[models.mlp32]\npath = \"" << broken << "\"\nmacs = 25408\n";
  const std::string out = (dir / "r.csv").string();
  const std::string args = "record --models " + cat + " --data " + kF + "t10k-images-idx3-ubyte.gz --labels " + kF +
                           "t10k-labels-idx1-ubyte.gz --range 0:30 --out " + out;
  Proc p = Coe(args);
  EXPECT_EQ(p.code, 1) << p.out;
  EXPECT_NE(p.out.find("30 calls of model 'mlp32' failed: not recorded: "), std::string::npos) << p.out;
  EXPECT_NE(p.out.find("broken.onnx"), std::string::npos) << p.out;
  auto rows = coe::testing::CsvRowsById(out);
  ASSERT_EQ(rows.size(), 30u);
  Proc plan = Coe("plan --calib " + out + " --models " + cat);
  EXPECT_NE(plan.code, 0) << plan.out;  // failed calls are refused, not planned on
  // The model fixed: recording again fills in its calls and keeps linear's.
  fs::copy_file(kZoo + "mlp32.onnx", broken, fs::copy_options::overwrite_existing);
  p = Coe(args);
  EXPECT_EQ(p.code, 0) << p.out;
  plan = Coe("plan --calib " + out + " --models " + cat);
  EXPECT_EQ(plan.code, 0) << plan.out;
  fs::remove_all(dir);
}

}  // namespace
