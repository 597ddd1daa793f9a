// live_cascade: the planned cascade against the best single zoo model, side by side in
// one run, on the 10,000 Fashion-MNIST test images.
//
// Prints, as medians over --runs interleaved runs: accuracy, mean multiply-adds and
// wall-clock throughput of both, their ratios; the engine's overhead (measured cascade
// time against the sum over tiers of examples reaching the tier x the members' own
// measured time per example, each member timed alone on the whole test set); and the
// peak resident memory of a `coe run` process on the test set.
//
//   live_cascade [--cascade FILE] [--single NAME] [--models CAT] [--runs 5] [--threads N]
//                [--chunk N] [--json]
// Without --cascade it runs `coe demo --work DIR` first (record, plan) and uses its cascade.
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "coe/cascade.h"
#include "coe/cascade_spec.h"
#include "coe/catalogue.h"
#include "coe/dataset.h"
#include "coe/paths.h"
#include "median.h"

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;
const std::string kF = "/usr/share/datasets/fashion-mnist/";

using coe::bench::Median;

struct Proc {
  int status = -1;
  long max_rss_kb = 0;
  std::string out;
};

Proc Spawn(const std::vector<std::string>& argv) {
  int fds[2];
  Proc r;
  if (pipe(fds) != 0) return r;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  posix_spawn_file_actions_addclose(&fa, fds[0]);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid;
  if (posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ) != 0) return r;
  close(fds[1]);
  char buf[65536];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) r.out.append(buf, n);
  close(fds[0]);
  struct rusage ru;
  int status = 0;
  wait4(pid, &status, 0, &ru);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.max_rss_kb = ru.ru_maxrss;
  posix_spawn_file_actions_destroy(&fa);
  return r;
}

struct Timed {
  coe::RunResult result;
  double seconds = 0;
};

Timed RunAll(const coe::Cascade& c, const coe::InputBatch& in, int batch) {
  Timed t;
  const auto t0 = Clock::now();
  for (int64_t b = 0; b < in.size(); b += batch) {
    auto r = c.Run(in.View(b, std::min(in.size(), b + batch)));  // as coe run: no copy
    if (!r.ok()) {
      std::fprintf(stderr, "live_cascade: %s\n", r.status().ToString().c_str());
      std::exit(1);
    }
    if (b == 0) {
      t.result = std::move(*r);
    } else {
      auto& a = t.result;
      a.answer.insert(a.answer.end(), r->answer.begin(), r->answer.end());
      a.exit_tier.insert(a.exit_tier.end(), r->exit_tier.begin(), r->exit_tier.end());
      a.cost.insert(a.cost.end(), r->cost.begin(), r->cost.end());
      for (size_t k = 0; k < a.tiers.size(); ++k) a.tiers[k].reached += r->tiers[k].reached;
    }
  }
  t.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return t;
}

double Accuracy(const coe::InputBatch& in, const coe::RunResult& r) {
  int correct = 0;
  for (int64_t i = 0; i < in.size(); ++i)
    correct += r.answer[i] != coe::kAbstain && r.labels.name(r.answer[i]) == in.truth[i];
  return static_cast<double>(correct) / in.size();
}

double MeanCost(const coe::RunResult& r) {
  double s = 0;
  for (double c : r.cost) s += c;
  return s / r.cost.size();
}

}  // namespace

int main(int argc, char** argv) {
  std::string coe_bin = coe::ExecutableDir() + "/coe";
  std::string models = coe::BuildTreeSourceDir() + "/models/zoo/catalogue.toml";
  std::string cascade_path, single;
  int runs = 5, threads = 0, batch = 2048, chunk = 0;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (a == "--cascade")
      cascade_path = next();
    else if (a == "--single")
      single = next();
    else if (a == "--models")
      models = next();
    else if (a == "--runs")
      runs = std::max(1, std::atoi(next().c_str()));
    else if (a == "--threads")
      threads = std::atoi(next().c_str());
    else if (a == "--batch")
      batch = std::max(1, std::atoi(next().c_str()));
    else if (a == "--chunk")  // examples per model call (default: the engine's)
      chunk = std::max(1, std::atoi(next().c_str()));
    else if (a == "--json")
      json = true;
    else {
      std::fprintf(stderr, "live_cascade: unknown flag %s\n", a.c_str());
      return 2;
    }
  }
  if (cascade_path.empty()) {
    const std::string work = (std::filesystem::temp_directory_path() / "coe-live-bench").string();
    if (!json) std::fprintf(stderr, "planning: coe demo --work %s (record calibration split, plan)\n", work.c_str());
    Proc d = Spawn({coe_bin, "demo", "--models", models, "--work", work, "--json"});
    if (d.status != 0) {
      std::fprintf(stderr, "live_cascade: coe demo failed (exit %d)\n", d.status);
      return 1;
    }
    auto j = nlohmann::json::parse(d.out);
    cascade_path = j["files"]["cascade"];
    if (single.empty()) single = j["best_single"];
  }
  auto cat = coe::ReadCatalogue(models);
  auto spec = coe::ReadCascade(cascade_path);
  if (!cat.ok() || !spec.ok()) {
    std::fprintf(stderr, "live_cascade: %s\n", (!cat.ok() ? cat.status() : spec.status()).ToString().c_str());
    return 2;
  }
  if (single.empty()) single = spec->tiers.back().members.back();
  coe::EngineOptions eo;
  eo.threads = threads;
  if (chunk > 0) eo.chunk = chunk;
  eo.cost_key = "macs";
  coe::CascadeSpec single_spec;
  single_spec.tiers.push_back(coe::TierSpec{{single}, {}});
  auto cascade = coe::Cascade::Create(*spec, *cat, eo);
  auto best = coe::Cascade::Create(single_spec, *cat, eo);
  if (!cascade.ok() || !best.ok()) {
    std::fprintf(stderr, "live_cascade: %s\n", (!cascade.ok() ? cascade.status() : best.status()).ToString().c_str());
    return 1;
  }
  coe::DatasetOptions dopt;
  dopt.expected_shape = (*cascade)->input_shape();
  dopt.labels_path = kF + "t10k-labels-idx1-ubyte.gz";
  dopt.label_names = cat->Find(single)->labels;
  auto in = coe::LoadDataset(kF + "t10k-images-idx3-ubyte.gz", dopt);
  if (!in.ok()) {
    std::fprintf(stderr, "live_cascade: %s\n", in.status().ToString().c_str());
    return 2;
  }
  // Each member alone, on every test image: its own time per example.
  std::map<std::string, std::vector<double>> member_us;
  std::map<std::string, std::unique_ptr<coe::Cascade>> alone;
  for (const std::string& m : spec->AllMembers()) {
    coe::CascadeSpec s;
    s.tiers.push_back(coe::TierSpec{{m}, {}});
    auto c = coe::Cascade::Create(s, *cat, eo);
    if (!c.ok()) return 1;
    alone[m] = std::move(*c);
  }
  RunAll(**cascade, *in, batch);  // warm-up
  RunAll(**best, *in, batch);
  std::vector<double> t_single, t_cascade, ratio, overhead;
  Timed last_c, last_s;
  for (int r = 0; r < runs; ++r) {
    last_s = RunAll(**best, *in, batch);
    last_c = RunAll(**cascade, *in, batch);
    double expected = 0;
    for (size_t t = 0; t < spec->tiers.size(); ++t) {
      double per_example = 0;
      for (const std::string& m : spec->tiers[t].members) {
        // Timed on the examples that reach this tier, so batch sizes match the cascade's.
        Timed a = RunAll(*alone[m], *in, batch);
        member_us[m].push_back(1e6 * a.seconds / in->size());
        per_example += a.seconds / in->size();
      }
      expected += last_c.result.tiers[t].reached * per_example;
    }
    t_single.push_back(last_s.seconds);
    t_cascade.push_back(last_c.seconds);
    ratio.push_back(last_s.seconds / last_c.seconds);
    overhead.push_back(last_c.seconds / expected - 1);
  }
  // Whole `coe run` processes on the test set, the single model's and the cascade's
  // interleaved (start, loading, reading the images, every tier, the summary).
  const std::string single_path =
      (std::filesystem::temp_directory_path() / ("live_cascade_single_" + std::to_string(::getpid()) + ".toml"))
          .string();
  std::ofstream(single_path) << "[[tiers]]\nmembers = [\"" << single << "\"]\n";
  auto coe_run = [&](const std::string& path) {
    std::vector<std::string> argv = {coe_bin,     "run",
                                     "--cascade", path,
                                     "--models",  models,
                                     "--data",    kF + "t10k-images-idx3-ubyte.gz",
                                     "--labels",  kF + "t10k-labels-idx1-ubyte.gz",
                                     "--json"};
    if (threads > 0) argv.insert(argv.end(), {"--threads", std::to_string(threads)});
    const auto t0 = Clock::now();
    Proc p = Spawn(argv);
    return std::make_pair(std::chrono::duration<double>(Clock::now() - t0).count(), p);
  };
  std::vector<double> p_single, p_cascade, p_ratio;
  Proc run;  // the cascade's last, for its peak memory
  for (int r = 0; r < runs; ++r) {
    auto [s_secs, s_proc] = coe_run(single_path);
    auto [c_secs, c_proc] = coe_run(cascade_path);
    if (s_proc.status != 0 || c_proc.status != 0) {
      std::fprintf(stderr, "live_cascade: coe run failed (exit %d / %d)\n", s_proc.status, c_proc.status);
      return 1;
    }
    p_single.push_back(s_secs);
    p_cascade.push_back(c_secs);
    p_ratio.push_back(s_secs / c_secs);
    run = c_proc;
  }
  std::filesystem::remove(single_path);
  const double n = static_cast<double>(in->size());
  const double acc_s = Accuracy(*in, last_s.result), acc_c = Accuracy(*in, last_c.result);
  const double macs_s = MeanCost(last_s.result), macs_c = MeanCost(last_c.result);
  const double tput_s = n / Median(t_single), tput_c = n / Median(t_cascade);
  if (json) {
    nlohmann::json j;
    j["cascade"] = spec->ToString();
    j["single"] = single;
    j["runs"] = runs;
    j["examples"] = in->size();
    j["single_accuracy"] = acc_s;
    j["cascade_accuracy"] = acc_c;
    j["single_macs"] = macs_s;
    j["cascade_macs"] = macs_c;
    j["macs_ratio"] = macs_s / macs_c;
    j["single_images_per_s"] = tput_s;
    j["cascade_images_per_s"] = tput_c;
    j["throughput_ratio_median"] = Median(ratio);
    j["engine_overhead_median"] = Median(overhead);
    j["coe_run_peak_rss_mib"] = run.max_rss_kb / 1024.0;
    j["time_per_compute_in_process"] = Median(ratio) / (macs_s / macs_c);
    j["coe_run_single_seconds_median"] = Median(p_single);
    j["coe_run_cascade_seconds_median"] = Median(p_cascade);
    j["coe_run_ratio_median"] = Median(p_ratio);
    j["time_per_compute_coe_run"] = Median(p_ratio) / (macs_s / macs_c);
    std::vector<int> reached;
    for (auto& t : last_c.result.tiers) reached.push_back(t.reached);
    j["tier_reached"] = reached;
    for (auto& [m, v] : member_us) j["member_us_per_example"][m] = Median(v);
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("10,000 Fashion-MNIST test images, %d interleaved runs (medians)\n", runs);
  std::printf("cascade: %s\n\n", spec->ToString().c_str());
  std::printf("%-30s %9s %14s %12s\n", "", "accuracy", "mean MACs", "images/s");
  std::printf("%-30s %8.2f%% %14.0f %12.0f\n", ("single: " + single).c_str(), 100 * acc_s, macs_s, tput_s);
  std::printf("%-30s %8.2f%% %14.0f %12.0f\n", "cascade", 100 * acc_c, macs_c, tput_c);
  std::printf("\naccuracy %+.2f points; %.2fx fewer multiply-adds; throughput %.2fx (median of per-run ratios)\n",
              100 * (acc_c - acc_s), macs_s / macs_c, Median(ratio));
  std::printf("tier reach:");
  for (auto& t : last_c.result.tiers) std::printf(" %d", t.reached);
  std::printf("\nmember time alone (us/example):");
  for (auto& [m, v] : member_us) std::printf(" %s %.2f", m.c_str(), Median(v));
  std::printf("\nengine overhead: %.1f%% (cascade time vs sum over tiers of reach x members' own time)\n",
              100 * Median(overhead));
  std::printf("time tracks compute (throughput ratio / MACs ratio): %.2f in the engine\n",
              Median(ratio) / (macs_s / macs_c));
  std::printf(
      "whole `coe run` processes on the test set: single %.2f s, cascade %.2f s: %.2fx less wall time "
      "(median of per-run ratios), time / compute %.2f\n",
      Median(p_single), Median(p_cascade), Median(p_ratio), Median(p_ratio) / (macs_s / macs_c));
  std::printf("peak memory of `coe run` on the test set: %.1f MiB (exit %d)\n", run.max_rss_kb / 1024.0, run.status);
  return 0;
}
