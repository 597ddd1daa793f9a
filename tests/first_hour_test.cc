// A new user's first hour, through the `coe` command: each thing that once surprised
// a new user, as it should go now.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "testing.h"

namespace coe {
namespace {

namespace fs = std::filesystem;
using testing::Proc;
using testing::RunCoe;

const std::string kF = "/usr/share/datasets/fashion-mnist/";

class FirstHour : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("coe_first_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    Write("cat.toml", "[models.a]\nusd = 1\n[models.b]\nusd = 2\n[models.c]\nusd = 4\n");
    Write("rec.csv", "id,label,a,b,c\n1,x,x,x,x\n2,y,x,y,y\n3,x,y,x,x\n4,y,y,y,x\n5,x,x,x,y\n6,y,y,x,y\n");
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name, std::ios::binary) << text;
    return (dir_ / name).string();
  }
  std::string P(const std::string& name) { return (dir_ / name).string(); }
  std::string Zoo() {
    return Write("zoo.toml",
                 "[defaults]\nbackend = \"onnx\"\ninput_shape = [1, 28, 28]\n"
                 "labels = [\"tshirt\", \"trouser\", \"pullover\", \"dress\", \"coat\", \"sandal\", "
                 "\"shirt\", \"sneaker\", \"bag\", \"boot\"]\nscale = 0.00392156862745098\n"
                 "mean = 0.2860\nstd = 0.3530\n[models.linear]\npath = \"" +
                     testing::ZooDir() + "linear.onnx\"\nmacs = 7840\n[models.mlp32]\npath = \"" + testing::ZooDir() +
                     "mlp32.onnx\"\nmacs = 25408\n");
  }
  fs::path dir_;
};

TEST_F(FirstHour, UnknownCommandsAndFlagsNameTheClosest) {
  Proc p = RunCoe("pln");
  EXPECT_EQ(p.code, 2);
  EXPECT_NE(p.out.find("unknown command 'pln'; did you mean 'plan'?"), std::string::npos) << p.out;
  p = RunCoe("help");
  EXPECT_EQ(p.code, 0);
  EXPECT_NE(p.out.find("plan"), std::string::npos) << p.out;
  EXPECT_NE(p.out.find("serve"), std::string::npos) << p.out;
  p = RunCoe("help plan");
  EXPECT_EQ(p.code, 0);
  EXPECT_NE(p.out.find("--calib"), std::string::npos) << p.out;
  p = RunCoe("plan --model " + P("cat.toml") + " --calib " + P("rec.csv"));
  EXPECT_EQ(p.code, 2);
  EXPECT_NE(p.out.find("unknown flag --model; did you mean --models?"), std::string::npos) << p.out;
}

TEST_F(FirstHour, RulesReadAsTheyMean) {
  Write("cat5.toml",
        "[models.a]\nusd = 1\n[models.b]\nusd = 2\n[models.c]\nusd = 4\n[models.d]\nusd = 8\n"
        "[models.e]\nusd = 16\n[models.f]\nusd = 32\n");
  Write("rec5.csv", "id,label,a,b,c,d,e,f\n1,x,x,x,x,x,y,x\n2,y,x,y,y,y,y,y\n3,x,y,x,x,y,x,x\n");
  Write("c.toml",
        "[[tiers]]\nmembers = [\"a\", \"b\"]\nmin_agreement = 1.0\n[[tiers]]\nmembers = [\"c\", \"d\", "
        "\"e\"]\nmin_agreement = 0.6666666666666666\n[[tiers]]\nmembers = [\"f\"]\n");
  Proc p = RunCoe("eval --cascade " + P("c.toml") + " --data " + P("rec5.csv") + " --models " + P("cat5.toml"));
  ASSERT_EQ(p.code, 0) << p.out;
  EXPECT_NE(p.out.find("{a, b} unanimous -> {c, d, e} agree>=2/3 -> {f}"), std::string::npos) << p.out;
}

TEST_F(FirstHour, CascadesThatCannotDeferOrRunDearTiersFirstAreFlagged) {
  Write("c.toml", "[[tiers]]\nmembers = [\"a\", \"b\"]\nmin_agreement = 0.4\n[[tiers]]\nmembers = [\"c\"]\n");
  Proc p = RunCoe("eval --cascade " + P("c.toml") + " --data " + P("rec.csv") + " --models " + P("cat.toml"));
  ASSERT_EQ(p.code, 0) << p.out;
  EXPECT_NE(p.out.find("warning: tier 1 {a, b}: min_agreement 0.4 of 2 members is met by a single vote"),
            std::string::npos)
      << p.out;
  Write("d.toml", "[[tiers]]\nmembers = [\"c\"]\nmin_score = 0.5\n[[tiers]]\nmembers = [\"a\"]\n");
  p = RunCoe("eval --cascade " + P("d.toml") + " --data " + P("rec.csv") + " --models " + P("cat.toml"));
  EXPECT_NE(p.out.find("warning: tier 2 {a} costs no more than tier 1"), std::string::npos) << p.out;
}

TEST_F(FirstHour, PlanWithoutTestAndALongFrontier) {
  Proc p = RunCoe("plan --calib " + P("rec.csv") + " --models " + P("cat.toml"));
  ASSERT_EQ(p.code, 0) << p.out;
  EXPECT_EQ(p.out.find("test split: 0"), std::string::npos) << p.out;
  EXPECT_NE(p.out.find("no test split (--test)"), std::string::npos) << p.out;
  // The zoo's recordings have a long frontier: the table shows a few, JSON all.
  const std::string zoo = testing::SourceDir() + "/models/zoo/catalogue.toml";
  std::string csv = "id,label,a,b,c,a|score,b|score,c|score\n";
  for (int i = 0; i < 400; ++i)
    csv += std::to_string(i) + "," + (i % 2 ? "x" : "y") + "," + (i % 3 ? "x" : "y") + "," + (i % 5 ? "x" : "y") + "," +
           (i % 7 ? "x" : "y") + ",0." + std::to_string(100 + i % 899) + ",0." + std::to_string(100 + i * 7 % 899) +
           ",0." + std::to_string(100 + i * 13 % 899) + "\n";
  Write("long.csv", csv);
  Proc t = RunCoe("plan --calib " + P("long.csv") + " --models " + P("cat.toml") + " --frontier 3");
  ASSERT_EQ(t.code, 0) << t.out;
  Proc j = RunCoe("plan --calib " + P("long.csv") + " --models " + P("cat.toml") + " --json", false);
  const size_t total = nlohmann::json::parse(j.out)["frontier"].size();
  if (total > 4) {
    EXPECT_NE(t.out.find(" of " + std::to_string(total) + " shown, --frontier all"), std::string::npos) << t.out;
  }
  EXPECT_EQ(RunCoe("plan --calib " + P("long.csv") + " --models " + P("cat.toml") + " --frontier none").code, 2);
  (void)zoo;
}

TEST_F(FirstHour, AGoalNotMetExitsThree) {
  Write("hard.csv", "id,label,a,b,c\n1,x,x,x,x\n2,y,x,y,y\n3,x,y,y,y\n");  // nothing gets #3 right
  Proc p = RunCoe("plan --calib " + P("hard.csv") + " --models " + P("cat.toml") + " --goal accuracy=1");
  EXPECT_EQ(p.code, 3) << p.out;
  EXPECT_NE(p.out.find("NOT MET"), std::string::npos) << p.out;
  EXPECT_EQ(RunCoe("plan --calib " + P("hard.csv") + " --models " + P("cat.toml") + " --goal accuracy=0.5").code, 0);
}

TEST_F(FirstHour, AColumnNamingNoModelIsIgnoredWithAWarning) {
  Write("notes.csv", "id,label,a,b,c,notes\n1,x,x,x,x,hello\n2,y,x,y,y,\n3,x,y,x,x,odd one\n4,y,y,y,x,ok\n");
  Proc p = RunCoe("plan --calib " + P("notes.csv") + " --models " + P("cat.toml"));
  EXPECT_EQ(p.code, 0) << p.out;
  EXPECT_NE(p.out.find("ignoring column 'notes': it names no model of"), std::string::npos) << p.out;
}

TEST_F(FirstHour, LabelsThatDifferOnlyInCaseOrSpaces) {
  Write("case.csv", "id,label,a,b,c\n1,cat,cat,Cat,cat \n2,dog,dog,dog,Dog\n3,cat,Cat,cat,cat\n");
  Proc p = RunCoe("eval --cascade " + Write("c.toml", "[[tiers]]\nmembers = [\"a\", \"b\", \"c\"]\n") + " --data " +
                  P("case.csv") + " --models " + P("cat.toml"));
  ASSERT_EQ(p.code, 0) << p.out;
  EXPECT_NE(p.out.find("labels 'cat' (5), 'Cat' (2), 'cat ' (1) differ only in case"), std::string::npos) << p.out;
  Proc n = RunCoe("eval --cascade " + P("c.toml") + " --data " + P("case.csv") + " --models " + P("cat.toml") +
                      " --json --normalize-labels",
                  false);
  ASSERT_EQ(n.code, 0) << n.out;
  EXPECT_DOUBLE_EQ(nlohmann::json::parse(n.out)["accuracy"].get<double>(), 1.0);
}

TEST_F(FirstHour, ImageLabelsMatchByFileNameOrStem) {
  fs::create_directories(dir_ / "img");
  // Three 28x28 grey images (PGM, which OpenCV reads).
  const std::string pixels(784, '\x20');
  for (const char* name : {"a.pgm", "b.pgm", "c.pgm"}) Write(std::string("img/") + name, "P5\n28 28\n255\n" + pixels);
  Write("labels.csv", "id,label\na,tshirt\nb.pgm,trouser\nc,bag\n");
  const std::string c = Write("c.toml", "[[tiers]]\nmembers = [\"linear\"]\n");
  Proc p = RunCoe(
      "run --cascade " + c + " --models " + Zoo() + " --data " + P("img") + " --labels " + P("labels.csv") + " --json",
      false);
  ASSERT_EQ(p.code, 0) << p.out;
  EXPECT_EQ(nlohmann::json::parse(p.out)["labeled"], 3);
  // No label for an image: exit 2 naming it.
  Write("partial.csv", "id,label\na,tshirt\nb,trouser\n");
  p = RunCoe("run --cascade " + c + " --models " + Zoo() + " --data " + P("img") + " --labels " + P("partial.csv"));
  EXPECT_EQ(p.code, 2) << p.out;
  EXPECT_NE(p.out.find("has no label for image 'c.pgm'"), std::string::npos) << p.out;
  // A stem that names two images: ambiguous.
  Write("img/a.png.pgm", "P5\n28 28\n255\n" + pixels);
  Write("img/b.ppm", "P6\n28 28\n255\n" + pixels + pixels + pixels);
  p = RunCoe("run --cascade " + c + " --models " + Zoo() + " --data " + P("img") + " --labels " +
             Write("amb.csv", "id,label\na,tshirt\nb,trouser\nc,bag\na.png,bag\n"));
  EXPECT_EQ(p.code, 2) << p.out;
  EXPECT_NE(p.out.find("id 'b' matches 2 images"), std::string::npos) << p.out;
}

TEST_F(FirstHour, UnitsAndLatencyFiguresAreRequired) {
  Proc p = RunCoe("plan --calib " + P("rec.csv") + " --models " + P("cat.toml") + " --link bandwidth=20,rtt=40");
  EXPECT_EQ(p.code, 2) << p.out;
  EXPECT_NE(p.out.find("give the bandwidth's unit"), std::string::npos) << p.out;
  p = RunCoe("plan --calib " + P("rec.csv") + " --models " + P("cat.toml") + " --latency sequential");
  EXPECT_EQ(p.code, 2) << p.out;
  EXPECT_NE(p.out.find("--latency sequential needs latency_ms or latency_us"), std::string::npos) << p.out;
}

TEST_F(FirstHour, RecordShowsProgressOnATerminal) {
  // `script` gives coe a terminal; the progress line names the model being recorded.
  const std::string cmd = "script -qec '" + testing::CoeBinary() + " record --models " + Zoo() + " --data " + kF +
                          "t10k-images-idx3-ubyte.gz --range 0:3000 --batch 100 --out " + P("r.csv") +
                          "' /dev/null 2>&1";
  FILE* f = popen(cmd.c_str(), "r");
  ASSERT_NE(f, nullptr);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  EXPECT_EQ(pclose(f), 0) << out;
  EXPECT_NE(out.find("recording linear ["), std::string::npos) << out;
  EXPECT_NE(out.find("recording mlp32 ["), std::string::npos) << out;
  EXPECT_TRUE(fs::exists(dir_ / "r.csv"));
}

}  // namespace
}  // namespace coe
