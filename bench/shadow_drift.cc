// Shadow verification's drift figures (issue 25): how many requests after traffic
// drifts the alarm takes, and how often it rises on stationary traffic. A coe server
// (in process, on loopback) serves the RouterBench ladder of testing/shadow_drift.h
// over a local upstream replaying the recorded answers, with shadow verification at
// --share (default 0.05, as `coe serve --shadow 0.05`). Each drift run sends --before
// requests drawn from ARC's test questions, then up to --after drawn from Winogrande's,
// and stops at the alarm; each stationary run sends --before + --after ARC requests.
// Runs differ by their seed (the questions' order, and the nonce in every request's
// content, which chooses it). Prints one line per run and the summary:
//   build/shadow_drift [--runs 10] [--share 0.05] [--window 100] [--min-samples 30]
//                      [--margin 0.05] [--before 3000] [--after 15000]
#include "testing/shadow_drift.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "coe/paths.h"

namespace {

using coe::testing::DriftLab;
using coe::testing::DriftOutcome;

std::vector<std::string> Draw(const std::vector<std::string>& from, int n, std::mt19937_64* rng) {
  std::uniform_int_distribution<size_t> pick(0, from.size() - 1);
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back(from[pick(*rng)]);
  return out;
}

int Run(int argc, char** argv) {
  int runs = 10, before = 3000, after = 15000;
  coe::ShadowOptions shadow{.share = 0.05, .window = 100, .confidence = 0.95, .margin = 0.05, .min_samples = 30};
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const double v = std::atof(argv[i + 1]);
    if (flag == "--runs")
      runs = static_cast<int>(v);
    else if (flag == "--share")
      shadow.share = v;
    else if (flag == "--window")
      shadow.window = static_cast<int>(v);
    else if (flag == "--min-samples")
      shadow.min_samples = static_cast<int>(v);
    else if (flag == "--margin")
      shadow.margin = v;
    else if (flag == "--before")
      before = static_cast<int>(v);
    else if (flag == "--after")
      after = static_cast<int>(v);
    else
      return std::fprintf(stderr, "shadow_drift: unknown flag %s\n", flag.c_str()), 2;
  }
  DriftLab lab;
  const coe::Status opened = lab.Open(coe::BuildTreeSourceDir());
  if (!opened.ok()) return std::fprintf(stderr, "shadow_drift: %s\n", opened.ToString().c_str()), 1;
  std::printf(
      "ladder {mistral-7b, mixtral-8x7b, llama-2-70b} unanimous -> {gpt-4}; tier 1 planned on ARC train at "
      "%.4f; share %.3g, window %d, min samples %d, margin %.3g, confidence %.3g\n",
      *lab.ladder.tiers[0].calibrated_agreement, shadow.share, shadow.window, shadow.min_samples, shadow.margin,
      shadow.confidence);
  std::vector<int> delays, drifted_samples;
  const double line = *lab.ladder.tiers[0].calibrated_agreement - shadow.margin;  // the alarm: upper < line
  double lowest = 1;
  int missed = 0, false_alarms = 0;
  double shadow_usd = 0, request_usd = 0;
  for (int run = 0; run < runs; ++run) {
    std::mt19937_64 rng(1000 + run);
    std::vector<std::string> traffic = Draw(lab.arc, before, &rng);
    const std::vector<std::string> drifted = Draw(lab.winogrande, after, &rng);
    traffic.insert(traffic.end(), drifted.begin(), drifted.end());
    const DriftOutcome d =
        RunDrift(lab, traffic, shadow, "drift-" + std::to_string(run), /*stop_at_alarm=*/true, /*mark=*/before - 1);
    const nlohmann::json& tier = d.health["models"]["ladder"]["tiers"][0];
    if (d.alarm_at >= before) {
      delays.push_back(d.alarm_at - before + 1);
      drifted_samples.push_back(tier["shadowed"].get<int>() - d.shadowed_at_mark);
    } else {
      missed++;
    }
    std::printf(
        "drift run %d: alarm %s (%d shadowed exits of tier 1, %d after the switch; window agreement %.3f, upper "
        "%.3f); %d failed\n",
        run,
        d.alarm_at < 0        ? "never"
        : d.alarm_at < before ? ("BEFORE the switch, at request " + std::to_string(d.alarm_at)).c_str()
                              : ("after " + std::to_string(d.alarm_at - before + 1) + " drifted requests").c_str(),
        tier["shadowed"].get<int>(), tier["shadowed"].get<int>() - d.shadowed_at_mark,
        tier["agreement"].is_null() ? 0.0 : tier["agreement"].get<double>(), tier["upper"].get<double>(), d.failed);
    std::fflush(stdout);
  }
  for (int run = 0; run < runs; ++run) {
    std::mt19937_64 rng(2000 + run);
    const std::vector<std::string> traffic = Draw(lab.arc, before + after, &rng);
    const DriftOutcome s = RunDrift(lab, traffic, shadow, "stationary-" + std::to_string(run));
    const nlohmann::json& h = s.health["models"]["ladder"];
    if (s.alarm_at >= 0) false_alarms++;
    shadow_usd += h["cost"].get<double>();
    request_usd += s.usd;
    std::printf(
        "stationary run %d: %d requests, %s (%d shadowed exits; lowest upper bound %.3f, the alarm's line %.3f); "
        "%d failed\n",
        run, before + after, s.alarm_at < 0 ? "no alarm" : ("ALARM at request " + std::to_string(s.alarm_at)).c_str(),
        h["tiers"][0]["shadowed"].get<int>(), s.lowest_upper, line, s.failed);
    lowest = std::min(lowest, s.lowest_upper);
    std::fflush(stdout);
  }
  auto median = [](std::vector<int> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? -1.0 : v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2.0;
  };
  std::sort(delays.begin(), delays.end());
  std::printf(
      "summary: drift runs %d: alarm in all but %d, after a median of %.1f drifted requests (min %d, max %d; a "
      "median of %.1f shadowed exits of them); stationary runs %d of %d requests: %d false alarms (lowest upper bound "
      "%.3f, the alarm's line %.3f); shadow cost %.2f%% of the requests' cost\n",
      runs, missed, median(delays), delays.empty() ? -1 : delays.front(), delays.empty() ? -1 : delays.back(),
      median(drifted_samples), runs, before + after, false_alarms, lowest, line,
      request_usd > 0 ? 100 * shadow_usd / request_usd : 0.0);
  return missed == 0 && false_alarms == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) { return Run(argc, argv); }
