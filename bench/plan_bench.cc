// plan_bench: how fast is a whole `coe plan` process?
//
// Runs `coe plan ... --json` as a separate process R times over one recordings file
// (default: the shared ARC-Challenge train split, vote-only, 11 models), and prints
// the median wall time of the process, the median search time the planner reports,
// cascades x examples evaluated per second, and the peak resident memory (from
// wait4's rusage). With --numpy it also times bench/numpy_plan.py on the same file in
// the same run, so the ratio is measured side by side.
//
// With --rules all it plans the zoo instead, with every rule kind (vote, score,
// vote+score) and a score grid of 8: the recordings `coe demo --work DIR` makes (10,000
// Fashion-MNIST calibration images, 10 models), recorded once into DIR (default
// /tmp/coe-plan-bench-zoo) when missing.
//
//   plan_bench [--coe PATH] [--calib CSV] [--models TOML] [--runs R] [--numpy] [--json]
//              [--rules all [--work DIR]] [-- extra coe plan flags]
#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "coe/paths.h"
#include "median.h"

extern char** environ;

namespace {

struct ProcResult {
  double seconds = 0;
  long max_rss_kb = 0;
  int status = -1;
  std::string out, err;  // stdout, stderr
};

ProcResult RunProcess(const std::vector<std::string>& argv) {
  int fds[2];
  if (pipe(fds) != 0) return {};
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&fa, fds[0]);
  // stderr to a file, shown when the process fails.
  char err_path[] = "/tmp/plan_bench_stderr.XXXXXX";
  const int err_fd = mkstemp(err_path);
  if (err_fd >= 0) posix_spawn_file_actions_adddup2(&fa, err_fd, STDERR_FILENO);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  ProcResult r;
  auto t0 = std::chrono::steady_clock::now();
  pid_t pid;
  if (posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ) != 0) {
    close(fds[0]);
    close(fds[1]);
    if (err_fd >= 0) close(err_fd), unlink(err_path);
    r.err = "cannot start " + argv[0];
    return r;
  }
  close(fds[1]);
  char buf[65536];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) r.out.append(buf, n);
  close(fds[0]);
  struct rusage ru;
  int status = 0;
  wait4(pid, &status, 0, &ru);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.max_rss_kb = ru.ru_maxrss;
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  posix_spawn_file_actions_destroy(&fa);
  if (err_fd >= 0) {
    lseek(err_fd, 0, SEEK_SET);
    while ((n = read(err_fd, buf, sizeof buf)) > 0) r.err.append(buf, n);
    close(err_fd);
    unlink(err_path);
  }
  return r;
}

// The number after "key": in a JSON text (the first occurrence).
double JsonNumber(const std::string& text, const std::string& key) {
  size_t p = text.find("\"" + key + "\":");
  if (p == std::string::npos) return -1;
  return std::atof(text.c_str() + p + key.size() + 3);
}

using coe::bench::Median;

}  // namespace

int main(int argc, char** argv) {
  std::string coe = coe::ExecutableDir() + "/coe";
  std::string data = coe::BuildTreeSourceDir() + "/../shared/data/routerbench/";
  std::string calib = data + "arc_challenge_train.csv";
  std::string models = data + "arc_challenge_train.models.toml";
  std::string numpy_script = coe::BuildTreeSourceDir() + "/bench/numpy_plan.py";
  int runs = 9;
  bool numpy = false, json = false, all_rules = false;
  std::string work = "/tmp/coe-plan-bench-zoo";
  std::vector<std::string> extra;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (a == "--coe")
      coe = next();
    else if (a == "--calib")
      calib = next();
    else if (a == "--models")
      models = next();
    else if (a == "--runs")
      runs = std::max(1, std::atoi(next().c_str()));
    else if (a == "--numpy")
      numpy = true;
    else if (a == "--json")
      json = true;
    else if (a == "--rules") {
      if (next() != "all") {
        std::fprintf(stderr, "plan_bench: --rules takes 'all' (for other kinds pass -- --rules K)\n");
        return 2;
      }
      all_rules = true;
    } else if (a == "--work")
      work = next();
    else if (a == "--") {
      for (++i; i < argc; ++i) extra.push_back(argv[i]);
    } else {
      std::fprintf(stderr, "plan_bench: unknown flag %s\n", a.c_str());
      return 2;
    }
  }
  if (all_rules) {
    calib = work + "/calib.csv";
    models = work + "/calib.models.toml";
    if (access(calib.c_str(), R_OK) != 0 || access(models.c_str(), R_OK) != 0) {
      std::fprintf(stderr, "plan_bench: recording the zoo into %s (coe demo, once)\n", work.c_str());
      ProcResult d = RunProcess({coe, "demo", "--work", work, "--json"});
      if (d.status != 0 || access(calib.c_str(), R_OK) != 0) {
        std::fprintf(stderr, "plan_bench: coe demo failed (exit %d): %s\n", d.status, d.err.c_str());
        return 1;
      }
    }
    for (const char* f : {"--rules", "vote,score,vote+score", "--score-grid", "8"}) extra.push_back(f);
  }
  std::vector<std::string> cmd = {coe, "plan", "--calib", calib, "--models", models, "--allow-duplicate-ids", "--json"};
  cmd.insert(cmd.end(), extra.begin(), extra.end());
  std::vector<double> wall, search, plan, guard, rss, np_search, np_wall;
  double searched = 0, examples = 0, evaluated = 0;
  for (int r = 0; r < runs; ++r) {
    ProcResult p = RunProcess(cmd);
    if (p.status != 0) {
      std::fprintf(stderr, "plan_bench: coe plan failed (exit %d): %s\n", p.status, p.err.c_str());
      return 1;
    }
    wall.push_back(p.seconds);
    plan.push_back(JsonNumber(p.out, "seconds"));
    search.push_back(JsonNumber(p.out, "search_seconds"));
    guard.push_back(JsonNumber(p.out, "select_seconds"));
    rss.push_back(p.max_rss_kb / 1024.0);
    searched = JsonNumber(p.out, "searched");
    evaluated = JsonNumber(p.out, "evaluated");
    examples = JsonNumber(p.out, "calib_examples");
    if (numpy) {  // interleaved, so both see the same machine load
      ProcResult q = RunProcess({"/usr/bin/python3", numpy_script, calib, "--json"});
      if (q.status != 0) {
        std::fprintf(stderr, "plan_bench: numpy_plan.py failed (exit %d): %s\n", q.status, q.err.c_str());
        return 1;
      }
      np_search.push_back(JsonNumber(q.out, "seconds"));
      np_wall.push_back(q.seconds);
    }
  }
  const double w = Median(wall), s = Median(search), m = Median(rss);
  const double rate = searched * examples / s;
  if (json) {
    std::printf(
        "{\"runs\": %d, \"searched\": %.0f, \"evaluated\": %.0f, \"examples\": %.0f, "
        "\"process_seconds_median\": %.6f, \"search_seconds_median\": %.6f, "
        "\"guard_seconds_median\": %.6f, \"plan_seconds_median\": %.6f, "
        "\"cascade_examples_per_second\": %.4g, \"peak_rss_mib_median\": %.2f",
        runs, searched, evaluated, examples, w, s, Median(guard), Median(plan), rate, m);
    if (numpy)
      std::printf(
          ", \"numpy_search_seconds_median\": %.4f, \"numpy_process_seconds_median\": %.4f, "
          "\"speedup_search\": %.1f, \"speedup_process\": %.1f",
          Median(np_search), Median(np_wall), Median(np_search) / s, Median(np_wall) / w);
    std::printf("}\n");
    return 0;
  }
  std::printf("coe plan on %s (%d runs, medians)\n", calib.c_str(), runs);
  std::printf("  cascades in the space      %.0f (%.0f evaluated one by one, the rest pruned exactly)\n", searched,
              evaluated);
  std::printf("  calibration examples       %.0f\n", examples);
  std::printf("  whole process, wall        %.1f ms   (min %.1f, max %.1f)\n", 1e3 * w,
              1e3 * *std::min_element(wall.begin(), wall.end()), 1e3 * *std::max_element(wall.begin(), wall.end()));
  std::printf("  search, as reported        %.1f ms   (min %.1f, max %.1f)\n", 1e3 * s,
              1e3 * *std::min_element(search.begin(), search.end()),
              1e3 * *std::max_element(search.begin(), search.end()));
  std::printf("  match-best's guard         %.1f ms   (search and guard: %.1f ms)\n", 1e3 * Median(guard),
              1e3 * Median(plan));
  std::printf("  cascades x examples / s    %.3g (search time; %.3g on whole-process time)\n", rate,
              searched * examples / w);
  std::printf("  peak resident memory       %.1f MiB\n", m);
  if (numpy) {
    std::printf(
        "  NumPy reference search     %.3f s (process %.3f s): coe is %.0fx faster "
        "(search), %.0fx (process)\n",
        Median(np_search), Median(np_wall), Median(np_search) / s, Median(np_wall) / w);
  }
  return 0;
}
