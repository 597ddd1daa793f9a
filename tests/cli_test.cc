// The `coe` command end to end: real files, real process, exit codes and messages.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <string>

#include "coe/report.h"
#include "testing.h"

namespace {

namespace fs = std::filesystem;

using coe::testing::Proc;
Proc Coe(const std::string& args) { return coe::testing::RunCoe(args); }
Proc CoeStdout(const std::string& args) { return coe::testing::RunCoe(args, /*with_stderr=*/false); }

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("coe_cli_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    Write("cat.toml", "[models.a]\nusd = 1\n[models.b]\nusd = 2\n[models.c]\nusd = 4\n");
    Write("good.csv", "id,label,a,b,c\n1,x,x,x,x\n2,y,x,y,y\n3,x,y,x,x\n4,y,y,y,x\n");
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
    return (dir_ / name).string();
  }
  std::string P(const std::string& name) { return (dir_ / name).string(); }
  fs::path dir_;
};

TEST_F(CliTest, PlanWritesCascadeThatEvalReads) {
  Proc plan = Coe("plan --calib " + P("good.csv") + " --test " + P("good.csv") + " --models " + P("cat.toml") +
                  " --out " + P("c.toml"));
  ASSERT_EQ(plan.code, 0) << plan.out;
  EXPECT_NE(plan.out.find("CHOSEN"), std::string::npos);
  Proc eval = CoeStdout("eval --cascade " + P("c.toml") + " --data " + P("good.csv") + " --models " + P("cat.toml") +
                        " --json");
  ASSERT_EQ(eval.code, 0) << eval.out;
  auto j = nlohmann::json::parse(eval.out);
  EXPECT_EQ(j["examples"], 4);
  EXPECT_TRUE(j.contains("exits"));
}

TEST_F(CliTest, PlanJsonHasTheIssueKeys) {
  Proc r = CoeStdout("plan --calib " + P("good.csv") + " --test " + P("good.csv") + " --models " + P("cat.toml") +
                     " --json");
  ASSERT_EQ(r.code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out);
  for (const char* k :
       {"goal", "cost", "calib_examples", "test_examples", "searched", "seconds", "chosen", "baselines", "frontier"})
    EXPECT_TRUE(j.contains(k)) << k;
  for (const char* k : {"tiers", "calib", "test"}) EXPECT_TRUE(j["chosen"].contains(k)) << k;
  EXPECT_TRUE(j["chosen"]["tiers"][0].contains("min_agreement"));
  EXPECT_TRUE(j["chosen"]["tiers"][0].contains("min_score"));
  for (const char* k : {"accuracy", "cost", "exits"}) EXPECT_TRUE(j["chosen"]["test"].contains(k)) << k;
  EXPECT_EQ(j["baselines"].size(), 4u);  // 3 singles + plurality of all
}

// Planning on latency within a budget on the cost, end to end: the chosen cascade's
// latency is the plan's cost and its dollars are within the budget; wrong combinations
// and missing figures are bad input naming the flag.
TEST_F(CliTest, PlanOnLatencyWithinACostBudget) {
  Write("lat.toml",
        "[models.a]\nusd = 1\nlatency_ms = 2\n[models.b]\nusd = 2\nlatency_ms = 3\n"
        "[models.c]\nusd = 4\nlatency_ms = 9\n");
  Proc r = CoeStdout("plan --calib " + P("good.csv") + " --models " + P("lat.toml") +
                     " --objective latency --max-cost 3 --json");
  ASSERT_TRUE(r.code == 0 || r.code == 3) << r.out;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_NE(j["cost"].get<std::string>().find("latency_ms"), std::string::npos) << j["cost"];
  EXPECT_LE(j["budget"]["chosen"].get<double>(), 3.0);
  EXPECT_EQ(j["budget"]["max"].get<double>(), 3.0);
  for (const auto& p : j["frontier"]) EXPECT_LE(p["calib"]["cost"].get<double>(), 9.0);
  // The budget and the objective must not name the same figure.
  Proc same =
      Coe("plan --calib " + P("good.csv") + " --models " + P("lat.toml") + " --objective latency --max-latency-ms 2");
  EXPECT_EQ(same.code, 2) << same.out;
  EXPECT_NE(same.out.find("--goal budget"), std::string::npos) << same.out;
  Proc cost_budget = Coe("plan --calib " + P("good.csv") + " --models " + P("lat.toml") + " --max-cost 2");
  EXPECT_EQ(cost_budget.code, 2) << cost_budget.out;
  Proc bad = Coe("plan --calib " + P("good.csv") + " --models " + P("lat.toml") + " --objective speed");
  EXPECT_EQ(bad.code, 2) << bad.out;
  EXPECT_NE(bad.out.find("--objective"), std::string::npos) << bad.out;
  Proc cores = Coe("plan --calib " + P("good.csv") + " --models " + P("lat.toml") + " --objective latency --cores x");
  EXPECT_EQ(cores.code, 2) << cores.out;
  EXPECT_NE(cores.out.find("--cores"), std::string::npos) << cores.out;
  // No latency figures: the message says what is missing.
  Proc none = Coe("plan --calib " + P("good.csv") + " --models " + P("cat.toml") + " --objective latency");
  EXPECT_EQ(none.code, 2) << none.out;
  EXPECT_NE(none.out.find("latency_ms"), std::string::npos) << none.out;
  // Nothing within the budget.
  Proc tight =
      Coe("plan --calib " + P("good.csv") + " --models " + P("lat.toml") + " --objective latency --max-cost 0.5");
  EXPECT_EQ(tight.code, 2) << tight.out;
  EXPECT_NE(tight.out.find("budget"), std::string::npos) << tight.out;
}

TEST_F(CliTest, SmallCalibrationWithScoreRulesIsFlagged) {
  std::string csv = "id,label,a,b,c,a|score,b|score,c|score\n";
  for (int i = 0; i < 40; ++i)
    csv += std::to_string(i) + ",x," + (i % 3 ? "x" : "y") + "," + (i % 5 ? "x" : "y") + ",x,0." +
           std::to_string(10 + i) + ",0.9,0.8\n";
  Write("small.csv", csv);
  Proc r = CoeStdout("plan --calib " + P("small.csv") + " --models " + P("cat.toml") + " --json");
  ASSERT_EQ(r.code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["warnings"].size(), 1u) << r.out;
  EXPECT_NE(j["warnings"][0].get<std::string>().find("40 labeled examples"), std::string::npos);
  EXPECT_EQ(j["score_grid"], 2);  // adapted to 40 examples
  Proc text = Coe("plan --calib " + P("small.csv") + " --models " + P("cat.toml"));
  EXPECT_NE(text.out.find("warning: "), std::string::npos) << text.out;
  // Without score columns there is no score rule to overfit: no warning.
  Proc votes = CoeStdout("plan --calib " + P("good.csv") + " --models " + P("cat.toml") + " --json");
  EXPECT_TRUE(nlohmann::json::parse(votes.out)["warnings"].empty());
}

TEST_F(CliTest, BadInputExitsTwoWithLocation) {
  struct Case {
    std::string file, text, want;
  };
  const Case cases[] = {
      {"ragged.csv", "id,label,a,b,c\n1,x,x,x\n", "ragged.csv:2: row has 4 fields"},
      {"badnum.csv", "id,label,a,b,c,a|cost\n1,x,x,x,x,zz\n", "badnum.csv:2: column 'a|cost'"},
      {"dup.csv", "id,label,a,b,c\n1,x,x,x,x\n1,x,x,x,x\n", "dup.csv:3: column 'id': duplicate id"},
      {"nan.csv", "id,label,a,b,c,a|cost\n1,x,x,x,x,nan\n", "not finite"},
      {"neg.csv", "id,label,a,b,c,a|cost\n1,x,x,x,x,-3\n", "negative cost"},
      {"empty.csv", "id,label,a,b,c\n", "no data rows"},
      {"nolabel.csv", "id,a,b,c\n1,x,x,x\n", "no 'label' column"},
  };
  for (const Case& c : cases) {
    Write(c.file, c.text);
    Proc r = Coe("plan --calib " + P(c.file) + " --models " + P("cat.toml"));
    EXPECT_EQ(r.code, 2) << c.file << ": " << r.out;
    EXPECT_NE(r.out.find(c.want), std::string::npos) << c.file << ": " << r.out;
  }
  Proc missing = Coe("plan --calib " + P("nope.csv") + " --models " + P("cat.toml"));
  EXPECT_EQ(missing.code, 2);
  EXPECT_NE(missing.out.find("nope.csv"), std::string::npos);
  Write("bad.toml", "[models.a]\nusd = \"cheap\"\n");
  Proc badcat = Coe("plan --calib " + P("good.csv") + " --models " + P("bad.toml"));
  EXPECT_EQ(badcat.code, 2);
  EXPECT_NE(badcat.out.find("bad.toml:2"), std::string::npos) << badcat.out;
  Proc badflag = Coe("plan --calib " + P("good.csv") + " --models " + P("cat.toml") + " --goal fast");
  EXPECT_EQ(badflag.code, 2);
  Proc badcascade = Coe("eval --cascade " + Write("c.toml", "[[tiers]]\nmembers=[\"q\"]\n") + " --data " +
                        P("good.csv") + " --models " + P("cat.toml"));
  EXPECT_EQ(badcascade.code, 2);
  EXPECT_NE(badcascade.out.find("'q'"), std::string::npos) << badcascade.out;
}

// `coe eval` warns about a tier that costs no more than the one before by the cost
// figure it reports (--cost, or the default), not by another catalogue figure.
TEST_F(CliTest, EvalWarnsAboutTierOrderByTheCostInUse) {
  // By params b is dearer than a; by latency it is cheaper (the default key would be latency_ms).
  Write("two.toml", "[models.a]\nlatency_ms = 5\nparams = 1\n[models.b]\nlatency_ms = 3\nparams = 10\n");
  Write("ab.toml", "[[tiers]]\nmembers = [\"a\"]\nmin_score = 0.5\n[[tiers]]\nmembers = [\"b\"]\n");
  Write("ab.csv", "id,label,a,b,a|score\n1,x,x,x,0.9\n2,y,x,y,0.1\n");
  const std::string base = "eval --cascade " + P("ab.toml") + " --data " + P("ab.csv") + " --models " + P("two.toml");
  Proc by_params = Coe(base + " --cost params");
  ASSERT_EQ(by_params.code, 0) << by_params.out;
  EXPECT_EQ(by_params.out.find("costs no more"), std::string::npos) << by_params.out;
  Proc by_latency = Coe(base + " --cost latency_ms");
  ASSERT_EQ(by_latency.code, 0) << by_latency.out;
  EXPECT_NE(by_latency.out.find("warning: tier 2 {b} costs no more than tier 1 (its dearest member: 3 vs 5)"),
            std::string::npos)
      << by_latency.out;
  // Recorded per-example costs are the default cost: their means decide.
  Write("rc.csv", "id,label,a,b,a|score,a|cost,b|cost\n1,x,x,x,0.9,1,8\n2,y,x,y,0.1,3,8\n");
  Proc recorded = Coe("eval --cascade " + P("ab.toml") + " --data " + P("rc.csv") + " --models " + P("two.toml"));
  ASSERT_EQ(recorded.code, 0) << recorded.out;
  EXPECT_NE(recorded.out.find("recorded"), std::string::npos) << recorded.out;
  EXPECT_EQ(recorded.out.find("costs no more"), std::string::npos) << recorded.out;
}

// Every way to spoil one value of a JSON document: each value set to null and to a
// value of another type (an integer also to 0.5), each object member removed, each
// non-empty object emptied. `visit(path, kind, spoiled)` sees each; paths are as jq
// writes them (.frontier[0].calib.accuracy).
void SpoilEveryValue(const nlohmann::json& doc,
                     const std::function<void(const std::string&, const std::string&, const nlohmann::json&)>& visit) {
  using nlohmann::json;
  std::function<void(const json::json_pointer&, const std::string&, const json&)> walk =
      [&](const json::json_pointer& ptr, const std::string& path, const json& v) {
        auto with = [&](const std::string& kind, const json& value) {
          json d = doc;
          d[ptr] = value;
          visit(path, kind, d);
        };
        if (!v.is_null()) with("null", nullptr);
        with("wrong type", v.is_object()   ? json::array()
                           : v.is_array()  ? json::object()
                           : v.is_string() ? json(5)
                                           : json("x"));
        if (v.is_number_integer()) with("not an integer", 0.5);
        if (v.is_object() && !v.empty()) with("empty object", json::object());
        if (!ptr.empty() && doc[ptr.parent_pointer()].is_object()) {
          json d = doc;
          d[ptr.parent_pointer()].erase(ptr.back());
          visit(path, "missing", d);
        }
        if (v.is_object())
          for (auto it = v.begin(); it != v.end(); ++it) walk(ptr / it.key(), path + "." + it.key(), it.value());
        if (v.is_array())
          for (size_t i = 0; i < v.size(); ++i) walk(ptr / i, path + "[" + std::to_string(i) + "]", v[i]);
      };
  walk(json::json_pointer(), "", doc);
}

// The keys coe plan --json writes only sometimes (coe/report.h): they may be null or
// missing. `path` with its indices dropped ([3] -> []).
bool OptionalInPlan(const std::string& path) {
  static const std::regex kOptional(
      R"(^\.(budget|cost_model|match|chosen\.test_intervals|selection\.statistic|selection\.critical)$)"
      R"(|\.test$|\.tiers\[\]\.(min_agreement|min_score|match)$)"
      R"(|\.(calib|test)\.(latency_ms|p99_latency_ms|bytes_sent|cost_homogeneous)$)");
  return std::regex_search(std::regex_replace(path, std::regex(R"(\[\d+\])"), "[]"), kOptional);
}

// coe report reads a plan through one checked reader: every value of a real plan
// spoiled in every way is an error naming the file and the value's path (or, for a
// key written only sometimes, null or missing is fine); never a crash (issue 22: a
// number for a string aborted, a frontier entry {} read invalid memory).
TEST_F(CliTest, ReportRefusesEveryMalformedPlanValueNamingIt) {
  std::string csv = "id,label,a,b,c,a|score,b|score,c|score\n";
  for (int i = 0; i < 60; ++i) {
    const std::string t(1, "xyz"[i % 3]), other(1, "xyz"[(i + 1) % 3]);
    csv += std::to_string(i) + "," + t;
    for (int m = 0; m < 3; ++m) csv += "," + ((i * 7 + m * 5) % 10 < 6 + m ? t : other);
    for (int m = 0; m < 3; ++m) csv += ",0." + std::to_string(2 + (i * (m + 1)) % 8);
    csv += "\n";
  }
  Write("r.csv", csv);
  Write("lat.toml",
        "[models.a]\nusd = 1\nlatency_ms = 1\n[models.b]\nusd = 2\nlatency_ms = 2\n[models.c]\nusd = 4\n"
        "latency_ms = 5\n");
  Proc plan = CoeStdout("plan --calib " + P("r.csv") + " --test " + P("r.csv") + " --models " + P("lat.toml") +
                        " --max-latency-ms 6 --max-tiers 2 --match jaccard:0.5 --json");
  ASSERT_TRUE(plan.code == 0 || plan.code == 3) << plan.out;
  const nlohmann::json doc = nlohmann::json::parse(plan.out);
  for (const char* k : {"budget", "families", "selection", "cost_model", "warnings"}) ASSERT_FALSE(doc[k].empty()) << k;
  ASSERT_TRUE(doc["chosen"].contains("test_intervals"));
  // The reader reads every key the writer writes: writing what it read gives the same text.
  auto read = coe::PlanReportFromJson(plan.out, "plan.json");
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(coe::PlanReportToJson(*read), plan.out);
  int variants = 0, refused = 0;
  SpoilEveryValue(doc, [&](const std::string& path, const std::string& kind, const nlohmann::json& spoiled) {
    ++variants;
    auto html = coe::RenderHtmlReport({"plan.json", spoiled.dump(1)}, {});
    if ((kind == "null" || kind == "missing") && OptionalInPlan(path)) {
      EXPECT_TRUE(html.ok()) << path << " " << kind << ": " << html.status().ToString();
      return;
    }
    ++refused;
    ASSERT_FALSE(html.ok()) << path << " " << kind;
    EXPECT_EQ(html.status().code(), coe::StatusCode::kInvalidArgument) << path << " " << kind;
    EXPECT_NE(html.status().message().find("plan.json: " + path), std::string::npos)
        << path << " " << kind << ": " << html.status().message();
  });
  EXPECT_GT(variants, 1000);
  EXPECT_GT(refused, 900);
  // Through the command: exit 2, the file and the value named, no report written.
  const std::pair<const char*, nlohmann::json> cli[] = {
      {"/goal", 5},
      {"/cost", nullptr},
      {"/frontier/0", nlohmann::json::object()},
      {"/frontier/0/calib/accuracy", "high"},
      {"/baselines/1/name", false},
      {"/chosen/tiers/0/members", "a"},
      {"/chosen/calib/exits/0", -1},
      {"/chosen/test_intervals/accuracy", {0.5}},
      {"/selection/candidates", 1.5},
      {"/families/0/frontier", nlohmann::json::object()},
      {"/budget/max", "6"},
      {"/searched", nlohmann::json::array()},
  };
  for (const auto& [where, value] : cli) {
    nlohmann::json spoiled = doc;
    spoiled[nlohmann::json::json_pointer(where)] = value;
    std::ofstream(P("bad.json")) << spoiled.dump(2);
    Proc r = Coe("report --plan " + P("bad.json") + " --out " + P("bad.html"));
    EXPECT_EQ(r.code, 2) << where << ": " << r.out;
    std::string path = where;  // /frontier/0/calib -> .frontier[0].calib
    path = std::regex_replace(path, std::regex(R"(/(\d+))"), "[$1]");
    std::replace(path.begin(), path.end(), '/', '.');
    EXPECT_NE(r.out.find(P("bad.json") + ": " + path), std::string::npos) << where << ": " << r.out;
    EXPECT_FALSE(fs::exists(P("bad.html"))) << where;
  }
  std::ofstream(P("plan.json")) << plan.out;
  Proc good = Coe("report --plan " + P("plan.json") + " --out " + P("good.html"));
  EXPECT_EQ(good.code, 0) << good.out;
  EXPECT_NE(coe::testing::ReadFile(P("good.html")).find("Answers compared: jaccard:0.5"), std::string::npos);
}

// A live run beside the plan: the keys coe report reads of coe run --json are checked
// the same way (accuracy and seconds may be null or missing); the others are ignored.
TEST_F(CliTest, ReportRefusesMalformedRunValuesNamingThem) {
  fs::create_directories(dir_ / "img");
  const std::string pixels(784, '\x20');
  for (const char* name : {"a.pgm", "b.pgm", "c.pgm"}) Write(std::string("img/") + name, "P5\n28 28\n255\n" + pixels);
  Write("labels.csv", "id,label\na,tshirt\nb,trouser\nc,bag\n");
  const std::string zoo = coe::testing::ZooDir() + "catalogue.toml";
  const std::string c = Write("c.toml", "[[tiers]]\nmembers = [\"linear\"]\n");
  Proc run = CoeStdout("run --cascade " + c + " --models " + zoo + " --data " + P("img") + " --labels " +
                       P("labels.csv") + " --json");
  ASSERT_EQ(run.code, 0) << run.out;
  Proc plan = CoeStdout("plan --calib " + P("good.csv") + " --test " + P("good.csv") + " --models " + P("cat.toml") +
                        " --json");
  ASSERT_EQ(plan.code, 0) << plan.out;
  ASSERT_TRUE(coe::RenderHtmlReport({"plan.json", plan.out}, {{"run.json", run.out}}).ok());
  const std::set<std::string> read = {".examples", ".exits", ".cost", ".accuracy", ".seconds"};
  int refused = 0;
  SpoilEveryValue(nlohmann::json::parse(run.out),
                  [&](const std::string& path, const std::string& kind, const nlohmann::json& spoiled) {
                    auto html = coe::RenderHtmlReport({"plan.json", plan.out}, {{"run.json", spoiled.dump()}});
                    const std::string key = path.substr(0, path.find('['));
                    const bool optional = key == ".accuracy" || key == ".seconds";
                    if ((!key.empty() && !read.count(key)) || (optional && (kind == "null" || kind == "missing"))) {
                      EXPECT_TRUE(html.ok()) << path << " " << kind << ": " << html.status().ToString();
                      return;
                    }
                    ++refused;
                    ASSERT_FALSE(html.ok()) << path << " " << kind;
                    EXPECT_NE(html.status().message().find("run.json: " + path), std::string::npos)
                        << path << " " << kind << ": " << html.status().message();
                  });
  EXPECT_GT(refused, 10);
  std::ofstream(P("plan.json")) << plan.out;
  std::ofstream(P("run.json")) << "{\"examples\": 3, \"exits\": \"all\", \"cost\": 1}";
  Proc r = Coe("report --plan " + P("plan.json") + " --run " + P("run.json") + " --out " + P("r.html"));
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find(P("run.json") + ": .exits: expected an array, got the string \"all\""), std::string::npos)
      << r.out;
}

// The shared RouterBench recordings (third-party data beside the repo, not in it).
TEST_F(CliTest, PlanOnRouterBenchArc) {
  const char* shared = std::getenv("COE_SHARED_DATA");
  std::string dir = shared ? shared : coe::testing::SourceDir() + "/../shared/data";
  if (!fs::exists(dir + "/routerbench/arc_challenge_train.csv")) GTEST_SKIP() << "no shared data at " << dir;
  std::string base = dir + "/routerbench/arc_challenge_";
  Proc r = CoeStdout("plan --calib " + base + "train.csv --test " + base + "test.csv --models " + base +
                     "train.models.toml --allow-duplicate-ids --json");
  ASSERT_EQ(r.code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["calib_examples"], 1039);
  EXPECT_EQ(j["test_examples"], 445);
  EXPECT_EQ(j["searched"], 280060);
  double best_single = 0;
  bool found = false;
  for (auto& b : j["baselines"])
    if (b["name"] == j["best_single"]) best_single = b["calib"]["accuracy"], found = true;
  ASSERT_TRUE(found) << "no baseline named " << j["best_single"];
  // The default guard said what it chose on; never dearer than the best model.
  EXPECT_EQ(j["selection"]["guard"], "noninferiority");
  EXPECT_NE(j["selection"]["basis"].get<std::string>().find("calibration"), std::string::npos);
  EXPECT_LE(j["chosen"]["calib"]["cost"].get<double>(), j["best_single_cost"].get<double>() * (1 + 1e-12));
  if (!j["selection"]["kept_best_single"].get<bool>()) {
    EXPECT_GE(j["chosen"]["calib"]["accuracy"].get<double>(), best_single - 0.005);
  }
  // 95% bootstrap intervals on the test split, paired with the best model.
  const auto& iv = j["chosen"]["test_intervals"];
  EXPECT_EQ(iv["paired_with"], j["best_single"]);
  const double acc = j["chosen"]["test"]["accuracy"];
  EXPECT_LE(iv["accuracy"][0].get<double>(), acc);
  EXPECT_GE(iv["accuracy"][1].get<double>(), acc);
  EXPECT_LT(iv["accuracy"][0].get<double>(), iv["accuracy"][1].get<double>());
  EXPECT_LE(iv["accuracy_minus_best"][0].get<double>(), iv["accuracy_minus_best"][1].get<double>());
  // Every guard is selectable; a bad one is exit 2.
  for (const char* g : {"none", "mcnemar", "holdout", "cv"}) {
    Proc o = CoeStdout("plan --calib " + base + "train.csv --models " + base +
                       "train.models.toml --allow-duplicate-ids --json --select " + g);
    ASSERT_EQ(o.code, 0) << g;
    EXPECT_EQ(nlohmann::json::parse(o.out)["selection"]["guard"], g);
  }
  EXPECT_EQ(Coe("plan --calib " + base + "train.csv --models " + base + "train.models.toml --select best").code, 2);
}

}  // namespace
