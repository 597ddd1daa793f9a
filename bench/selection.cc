// Selection benchmark: does match-best's choice hold on new data, guard by guard?
//
// For each setting, random splits (seeded): the zoo's calibration recordings (the last
// 10,000 training images) subsampled to 300 / 1,000 / 3,000 examples and scored on the
// zoo's test recordings (the official 10,000), and the shared RouterBench
// ARC-Challenge and Winogrande recordings pooled (train + test) and re-split at random,
// 30% calibration. For every guard it prints the share of splits where the chosen
// cascade's test accuracy is at least the best single model's (chosen on calibration)
// minus 0.5 points, the share where it costs no more than that model on calibration
// and on test, and the mean cost cut on test (the best model's cost / the chosen's).
//   build/selection [--splits 20] [--settings zoo300,zoo1000,zoo3000,arc,wino]
//                   [--guards none,mcnemar,noninferiority,holdout,cv]
// The zoo recordings are made once with `coe record` into build/bench-data/.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "coe/catalogue.h"
#include "coe/cost_model.h"
#include "coe/evaluate.h"
#include "coe/paths.h"
#include "coe/planner.h"
#include "coe/recordings.h"
#include "planner/guards.h"
#include "planner/search.h"

namespace fs = std::filesystem;
using namespace coe;

namespace {

std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "selection: %s\n", what.c_str());
  std::exit(1);
}

template <typename T>
T OrDie(StatusOr<T> v) {
  if (!v.ok()) Die(v.status().ToString());
  return std::move(*v);
}

// Makes the zoo's recordings with `coe record` unless they are there.
std::string ZooRecordings(const std::string& dir, const std::string& name, const std::string& data,
                          const std::string& labels, const std::string& range) {
  const std::string out = dir + "/" + name + ".csv";
  if (fs::exists(out)) return out;
  fs::create_directories(dir);
  const std::string cmd = ExecutableDir() + "/coe record --models " + BuildTreeSourceDir() +
                          "/models/zoo/catalogue.toml --data " + data + " --labels " + labels +
                          (range.empty() ? "" : " --range " + range) + " --out " + out + " >/dev/null";
  std::fprintf(stderr, "recording: %s\n", cmd.c_str());
  if (std::system(cmd.c_str()) != 0) Die("coe record failed");
  return out;
}

struct Data {
  Recordings rec;
  CostTable costs;
};

Data Load(const std::string& csv, const Catalogue& cat, LabelSet* labels, const CostOptions& co) {
  RecordingsReadOptions ro;
  ro.allow_duplicate_ids = true;
  Data d;
  d.rec = OrDie(ReadRecordings(csv, labels, nullptr, ro));
  d.costs = OrDie(BuildCostTable(d.rec, cat, co));
  return d;
}

// Pools two recordings of the same models (same columns).
Data Pool(const Data& a, const Data& b) {
  Data d;
  std::vector<int> all_a(a.rec.num_examples()), all_b(b.rec.num_examples());
  std::iota(all_a.begin(), all_a.end(), 0);
  std::iota(all_b.begin(), all_b.end(), 0);
  d.rec = SelectRows(a.rec, all_a);
  for (size_t i = 0; i < b.rec.ids.size(); ++i) d.rec.ids.push_back(b.rec.ids[i] + "#b");
  d.rec.truth.insert(d.rec.truth.end(), b.rec.truth.begin(), b.rec.truth.end());
  for (size_t m = 0; m < d.rec.models.size(); ++m) {
    ModelRecord& x = d.rec.models[m];
    const ModelRecord& y = b.rec.models[b.rec.ModelIndex(x.name)];
    x.label.insert(x.label.end(), y.label.begin(), y.label.end());
    x.score.insert(x.score.end(), y.score.begin(), y.score.end());
    x.cost.insert(x.cost.end(), y.cost.begin(), y.cost.end());
    x.probs.insert(x.probs.end(), y.probs.begin(), y.probs.end());
  }
  d.costs = a.costs;
  d.costs.num_examples = d.rec.num_examples();
  if (a.costs.is_per_example()) {
    // b's columns in a's model order
    for (int i = 0; i < b.costs.num_examples; ++i)
      for (int m = 0; m < a.costs.num_models; ++m) {
        const int bm = b.rec.ModelIndex(a.rec.models[m].name);
        d.costs.per_example.push_back(b.costs.Cost(bm, i));
      }
  }
  std::vector<int> all(d.rec.num_examples());
  std::iota(all.begin(), all.end(), 0);
  d.costs = SelectRows(d.costs, all);  // recomputes the means
  return d;
}

struct Tally {
  int splits = 0, within = 0, calib_ok = 0, test_ok = 0, kept = 0;
  double cut = 0, seconds = 0;
};

}  // namespace

int main(int argc, char** argv) {
  int splits = 20;
  std::vector<std::string> settings = {"zoo300", "zoo1000", "zoo3000", "arc", "wino"};
  std::vector<std::string> guards = {"none", "mcnemar", "noninferiority", "holdout", "cv"};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--splits" && i + 1 < argc)
      splits = std::atoi(argv[++i]);
    else if (a == "--settings" && i + 1 < argc)
      settings = Split(argv[++i]);
    else if (a == "--guards" && i + 1 < argc)
      guards = Split(argv[++i]);
    else
      Die("usage: selection [--splits N] [--settings zoo300,zoo1000,zoo3000,arc,wino] [--guards a,b]");
  }
  const auto t_start = std::chrono::steady_clock::now();
  const std::string src = BuildTreeSourceDir();
  const std::string shared = src + "/../shared/data/routerbench/";
  const std::string F = "/usr/share/datasets/fashion-mnist/";
  std::printf("selection benchmark: %d random splits per setting; match-best with each guard\n", splits);
  std::printf("%-8s %-15s %8s %9s %8s %7s %8s %8s\n", "setting", "guard", "within", "calib<=", "test<=", "kept", "cut",
              "s/split");
  std::map<std::string, std::map<std::string, Tally>> all;
  for (const std::string& setting : settings) {
    LabelSet labels;
    Data calib_pool, test_fixed;
    bool zoo = setting.rfind("zoo", 0) == 0;
    int calib_n = 0;
    if (zoo) {
      const std::string dir = ExecutableDir() + "/bench-data";
      const std::string c = ZooRecordings(dir, "zoo_calib", F + "train-images-idx3-ubyte.gz",
                                          F + "train-labels-idx1-ubyte.gz", "50000:60000");
      const std::string t =
          ZooRecordings(dir, "zoo_test", F + "t10k-images-idx3-ubyte.gz", F + "t10k-labels-idx1-ubyte.gz", "");
      Catalogue cat = OrDie(ReadCatalogue(src + "/models/zoo/catalogue.toml"));
      CostOptions co;
      co.key = "macs";
      calib_pool = Load(c, cat, &labels, co);
      test_fixed = Load(t, cat, &labels, co);
      calib_n = std::atoi(setting.c_str() + 3);
    } else {
      const std::string base = shared + (setting == "arc" ? "arc_challenge" : "winogrande");
      if (!fs::exists(base + "_train.csv")) Die("no shared data at " + base + "_train.csv");
      Catalogue cat = OrDie(ReadCatalogue(base + "_train.models.toml"));
      CostOptions co;  // the recorded per-question dollars
      calib_pool = Pool(Load(base + "_train.csv", cat, &labels, co), Load(base + "_test.csv", cat, &labels, co));
      calib_n = static_cast<int>(0.3 * calib_pool.rec.num_examples());
    }
    for (int s = 0; s < splits; ++s) {
      std::mt19937_64 rng(1000 + s);
      std::vector<int> rows(calib_pool.rec.num_examples());
      std::iota(rows.begin(), rows.end(), 0);
      std::shuffle(rows.begin(), rows.end(), rng);
      std::vector<int> cal(rows.begin(), rows.begin() + calib_n), rest(rows.begin() + calib_n, rows.end());
      std::sort(cal.begin(), cal.end());
      std::sort(rest.begin(), rest.end());
      const Recordings calib = SelectRows(calib_pool.rec, cal);
      const CostTable calib_costs = SelectRows(calib_pool.costs, cal);
      const Recordings test = zoo ? test_fixed.rec : SelectRows(calib_pool.rec, rest);
      const CostTable test_costs = zoo ? test_fixed.costs : SelectRows(calib_pool.costs, rest);
      PlannerOptions opt;
      opt.threads = 2;
      const auto t0 = std::chrono::steady_clock::now();
      PlanResult searched = OrDie(SearchRows(calib, calib_costs, opt, {}));
      const double search_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      CascadeSpec best;
      best.tiers.push_back(TierSpec{{searched.best_single}, {}});
      const EvalResult best_test = OrDie(EvaluateCascade(best, test, test_costs));
      for (const std::string& g : guards) {
        PlanResult r = searched;
        opt.select.guard = OrDie(ParseGuard(g));
        const auto t1 = std::chrono::steady_clock::now();
        Status st = ChooseMatchBest(calib, calib_costs, opt, &r);
        if (!st.ok()) Die(st.ToString());
        const double secs = search_s + std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
        const EvalResult chosen_test = OrDie(EvaluateCascade(r.chosen.cascade, test, test_costs));
        Tally& t = all[setting][g];
        t.splits++;
        t.within += chosen_test.accuracy >= best_test.accuracy - 0.005 - 1e-12;
        t.calib_ok += r.chosen.cost <= r.best_single_cost * (1 + 1e-9);
        t.test_ok += chosen_test.mean_cost <= best_test.mean_cost * (1 + 1e-9);
        t.kept += r.selection.kept_best_single;
        t.cut += best_test.mean_cost / chosen_test.mean_cost;
        t.seconds += secs;
      }
    }
    for (const std::string& g : guards) {
      const Tally& t = all[setting][g];
      std::printf("%-8s %-15s %7.0f%% %8.0f%% %7.0f%% %6.0f%% %7.2fx %8.2f\n", setting.c_str(), g.c_str(),
                  100.0 * t.within / t.splits, 100.0 * t.calib_ok / t.splits, 100.0 * t.test_ok / t.splits,
                  100.0 * t.kept / t.splits, t.cut / t.splits, t.seconds / t.splits);
      std::fflush(stdout);
    }
  }
  std::printf("\nover all settings (%d splits each):\n", splits);
  std::printf("%-15s %8s %9s %8s %8s\n", "guard", "within", "calib<=", "test<=", "cut");
  for (const std::string& g : guards) {
    Tally sum;
    for (const std::string& setting : settings) {
      const Tally& t = all[setting][g];
      sum.splits += t.splits, sum.within += t.within, sum.calib_ok += t.calib_ok, sum.test_ok += t.test_ok;
      sum.cut += t.cut;
    }
    std::printf("%-15s %7.0f%% %8.0f%% %7.0f%% %7.2fx\n", g.c_str(), 100.0 * sum.within / sum.splits,
                100.0 * sum.calib_ok / sum.splits, 100.0 * sum.test_ok / sum.splits, sum.cut / sum.splits);
  }
  std::printf("\nrun time %.0f s\n", std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count());
  return 0;
}
