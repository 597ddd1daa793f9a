// llm_cascade: a chat-model cascade served by coe's OpenAI front door against the best
// single model, side by side in one run, at 32 concurrent users.
//
// The models are an OpenAI-compatible replay server on loopback (testing/openai_replay.h)
// answering as the shared RouterBench recordings say (ARC-Challenge test split) and
// billing the recorded dollars, each model after a fixed latency (sleep): mixtral 0.4 s,
// Yi-34B 0.6 s, claude-instant 0.5 s, gpt-4 3 s per call (--scale multiplies them).
// The cascade is the planner's frontier point {mixtral, Yi-34B, claude-instant}
// unanimous -> {gpt-4} on the train split (`coe plan` on arc_challenge_train.csv, #15:
// 95.9% vs 96.7% at 2.19x less cost there); the best model is gpt-4.
//
// After a warm-up of 2 x users requests (connections opened, not measured), each user
// is a thread with a keep-alive connection posting one question after another
// to /v1/chat/completions. Per request: client-side latency, the reply's coe.cost_usd
// and answer. coe's overhead per request = latency - the sum, over the tiers it reached,
// of the slowest member's call as the replay server timed its own handler: what coe
// adds, its loopback HTTP hops included (a direct call's hop is printed beside it).
//
//   llm_cascade [--users 32] [--runs 3] [--scale 1.0] [--requests N] [--json]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "coe/cascade_spec.h"
#include "coe/catalogue.h"
#include "coe/paths.h"
#include "coe/recordings.h"
#include "coe/server.h"
#include "testing/openai_replay.h"

namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

struct Member {
  std::string name, model;
  int latency_ms;
};
const std::vector<Member> kMembers = {
    {"mixtral", "mistralai/mixtral-8x7b-chat", 400},
    {"yi34", "zero-one-ai/Yi-34B-Chat", 600},
    {"claude_instant", "claude-instant-v1", 500},
    {"gpt4", "gpt-4-1106-preview", 3000},
};
const std::vector<std::vector<std::string>> kTiers = {{"mixtral", "yi34", "claude_instant"}, {"gpt4"}};

double Quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * v.size()))];
}
double Mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / v.size();
}

struct Load {
  double accuracy = 0, mean_cost = 0, mean_ms = 0, p50_ms = 0, p99_ms = 0;
  double overhead_mean_ms = 0, overhead_p50_ms = 0, overhead_p99_ms = 0;
  double seconds = 0;
  int errors = 0, n = 0;
  std::vector<int> exits;
};

// `users` threads send every question once to `model`; `critical_ms[t]` is the path
// through tiers 1..t+1.
Load Drive(int port, const std::string& model, const std::vector<std::string>& ids,
           const std::map<std::string, std::string>& truth, int users,
           const std::function<double(const std::string& id, int exit_tier)>& upstream_ms) {
  std::atomic<size_t> next{0};
  std::vector<double> lat(ids.size(), 0), over(ids.size(), 0), cost(ids.size(), 0);
  std::vector<int> ok(ids.size(), 0), correct(ids.size(), 0), exit(ids.size(), 0);
  const auto t0 = Clock::now();
  std::vector<std::thread> threads;
  for (int u = 0; u < users; ++u) {
    threads.emplace_back([&] {
      httplib::Client c("127.0.0.1", port);
      c.set_keep_alive(true);
      c.set_tcp_nodelay(true);
      c.set_read_timeout(120, 0);
      for (size_t i; (i = next++) < ids.size();) {
        const json body = {
            {"model", model},
            {"messages", {{{"role", "user"}, {"content", "[id:" + ids[i] + "] Which option is right?"}}}}};
        const auto s = Clock::now();
        auto res = c.Post("/v1/chat/completions", body.dump(), "application/json");
        lat[i] = std::chrono::duration<double, std::milli>(Clock::now() - s).count();
        if (!res || res->status != 200) {
          std::fprintf(
              stderr, "llm_cascade: %s: %s\n", ids[i].c_str(),
              res ? (std::to_string(res->status) + " " + res->body).c_str() : httplib::to_string(res.error()).c_str());
          continue;
        }
        const json j = json::parse(res->body, nullptr, false);
        if (j.is_discarded()) continue;
        ok[i] = 1;
        if (!j.contains("coe")) {  // the replay server called directly
          exit[i] = 1;
          continue;
        }
        const json& f = j["coe"];
        cost[i] = f["cost_usd"].get<double>();
        exit[i] = f["exit_tier"].get<int>();
        correct[i] = !f["answer"].is_null() && f["answer"].get<std::string>() == truth.at(ids[i]);
      }
    });
  }
  for (auto& t : threads) t.join();
  Load l;
  l.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  l.n = static_cast<int>(ids.size());
  l.exits.assign(2, 0);
  for (size_t i = 0; i < ids.size(); ++i)
    if (ok[i]) over[i] = lat[i] - upstream_ms(ids[i], exit[i]);
  std::vector<double> good_lat, good_over;
  double c = 0, a = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (!ok[i]) {
      ++l.errors;
      continue;
    }
    good_lat.push_back(lat[i]);
    good_over.push_back(over[i]);
    c += cost[i];
    a += correct[i];
    if (exit[i] >= 1 && exit[i] <= static_cast<int>(l.exits.size())) l.exits[exit[i] - 1]++;
  }
  l.accuracy = a / ids.size();
  l.mean_cost = c / std::max<size_t>(1, good_lat.size());
  l.mean_ms = Mean(good_lat);
  l.p50_ms = Quantile(good_lat, 0.5);
  l.p99_ms = Quantile(good_lat, 0.99);
  l.overhead_mean_ms = Mean(good_over);
  l.overhead_p50_ms = Quantile(good_over, 0.5);
  l.overhead_p99_ms = Quantile(good_over, 0.99);
  return l;
}

double Median(std::vector<double> v) { return Quantile(std::move(v), 0.5); }

}  // namespace

int main(int argc, char** argv) {
  int users = 32, runs = 3, limit = 0;
  double scale = 1.0;
  bool as_json = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "llm_cascade: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--users")
      users = std::stoi(value());
    else if (a == "--runs")
      runs = std::stoi(value());
    else if (a == "--scale")
      scale = std::stod(value());
    else if (a == "--requests")
      limit = std::stoi(value());
    else if (a == "--json")
      as_json = true;
    else {
      std::fprintf(stderr, "usage: llm_cascade [--users 32] [--runs 3] [--scale 1.0] [--requests N] [--json]\n");
      return 2;
    }
  }
  const char* shared = std::getenv("COE_SHARED_DATA");
  const std::string csv = (shared ? std::string(shared) : coe::BuildTreeSourceDir() + "/../shared/data") +
                          "/routerbench/arc_challenge_test.csv";
  coe::testing::OpenAiReplay replay;
  if (!replay.Load(csv)) {
    std::fprintf(stderr, "llm_cascade: cannot read %s (set COE_SHARED_DATA)\n", csv.c_str());
    return 2;
  }
  for (const Member& m : kMembers) replay.latency_ms[m.model] = static_cast<int>(m.latency_ms * scale);
  replay.Start();
  // Questions with distinct ids, and their truth.
  coe::LabelSet labels;
  coe::RecordingsReadOptions ro;
  ro.allow_duplicate_ids = true;
  auto rec = coe::ReadRecordings(csv, &labels, nullptr, ro);
  if (!rec.ok()) {
    std::fprintf(stderr, "llm_cascade: %s\n", rec.status().ToString().c_str());
    return 2;
  }
  std::vector<std::string> ids;
  std::map<std::string, std::string> truth;
  for (int i = 0; i < rec->num_examples(); ++i)
    if (truth.emplace(rec->ids[i], labels.name(rec->truth[i])).second) ids.push_back(rec->ids[i]);
  if (limit > 0 && static_cast<int>(ids.size()) > limit) ids.resize(limit);

  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("coe_llm_bench_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  {
    std::ofstream c(dir / "chat.toml");
    c << "[defaults]\nbackend = \"openai\"\nurl = \"http://127.0.0.1:" << replay.port() << "/v1\"\n"
      << "prompt = \"{input}\\nAnswer with one letter.\"\nanswer = \"choice\"\n"
      << "usd_per_mtok_in = 1.0\nusd_per_mtok_out = 1.0\ntimeout_ms = 60000\nretries = 0\nmax_concurrency = 64\n";
    for (const Member& m : kMembers) c << "[models." << m.name << "]\nmodel = \"" << m.model << "\"\n";
    std::ofstream t(dir / "ladder.toml");
    t << "[[tiers]]\nmembers = [\"mixtral\", \"yi34\", \"claude_instant\"]\nmin_agreement = 1.0\n"
      << "[[tiers]]\nmembers = [\"gpt4\"]\n";
  }
  auto cat = coe::ReadCatalogue((dir / "chat.toml").string());
  auto spec = cat.ok() ? coe::ReadCascade((dir / "ladder.toml").string()) : cat.status();
  if (!cat.ok() || !spec.ok()) {
    std::fprintf(stderr, "llm_cascade: %s\n", (cat.ok() ? spec.status() : cat.status()).ToString().c_str());
    return 2;
  }
  coe::ServerOptions so;
  so.name = "ladder";
  so.max_inflight = 256;
  auto server = coe::Server::Create(*spec, *cat, coe::EngineOptions{}, so);
  if (!server.ok() || !(*server)->Start("127.0.0.1", 0).ok()) {
    std::fprintf(stderr, "llm_cascade: cannot serve: %s\n",
                 server.ok() ? "start failed" : server.status().ToString().c_str());
    return 2;
  }
  const int port = (*server)->port();
  std::map<std::string, double> latency;
  for (const Member& m : kMembers) latency[m.name] = m.latency_ms * scale;
  // The upstream time on a request's critical path, as the replay server measured
  // its own handlers: per tier reached, the slowest member's call.
  auto model_of = [](const std::string& name) {
    for (const Member& m : kMembers)
      if (m.name == name) return m.model;
    return name;
  };
  auto cascade_upstream = [&](const std::string& id, int exit_tier) {
    double ms = 0;
    for (int t = 0; t < exit_tier && t < static_cast<int>(kTiers.size()); ++t) {
      double slowest = 0;
      for (const std::string& n : kTiers[t]) slowest = std::max(slowest, replay.HandlerSeconds(model_of(n), id));
      ms += 1e3 * slowest;
    }
    return ms;
  };
  auto single_upstream = [&](const std::string& id, int) {
    return 1e3 * replay.HandlerSeconds("gpt-4-1106-preview", id);
  };
  const double fastest_tier_ms = [&] {
    double slowest = 0;
    for (const std::string& n : kTiers[0])
      for (const Member& m : kMembers)
        if (m.name == n) slowest = std::max(slowest, m.latency_ms * scale);
    return slowest;
  }();
  // Warm-up (not measured): every user's connection and every member's pooled ones.
  {
    const std::vector<std::string> first(ids.begin(), ids.begin() + std::min<size_t>(ids.size(), 2 * users));
    Drive(port, "ladder", first, truth, users, cascade_upstream);
    Drive(port, "gpt4", first, truth, users, single_upstream);
  }
  std::vector<Load> cas, best, direct;  // direct: the replay server's own overhead, without coe
  for (int r = 0; r < runs; ++r) {
    if (!as_json) std::fprintf(stderr, "run %d/%d: cascade ...\n", r + 1, runs);
    cas.push_back(Drive(port, "ladder", ids, truth, users, cascade_upstream));
    if (!as_json) std::fprintf(stderr, "run %d/%d: gpt4 alone ...\n", r + 1, runs);
    best.push_back(Drive(port, "gpt4", ids, truth, users, single_upstream));
    if (!as_json) std::fprintf(stderr, "run %d/%d: gpt-4 on the replay server directly ...\n", r + 1, runs);
    direct.push_back(Drive(replay.port(), "gpt-4-1106-preview", ids, truth, users, single_upstream));
  }
  std::filesystem::remove_all(dir);
  auto med = [](const std::vector<Load>& v, double Load::*f) {
    std::vector<double> x;
    for (const Load& l : v) x.push_back(l.*f);
    return Median(x);
  };
  auto ratio = [&](double Load::*f) {
    std::vector<double> x;
    for (int r = 0; r < runs; ++r) x.push_back(best[r].*f / cas[r].*f);
    return Median(x);
  };
  int errors = 0;
  for (int r = 0; r < runs; ++r) errors += cas[r].errors + best[r].errors + direct[r].errors;
  // coe's own overhead: a request's latency less the upstream calls on its critical
  // path (the replay server's handler times); it still holds the loopback HTTP hops,
  // which `direct` measures for one call made without coe.
  const double server_ms = med(direct, &Load::overhead_mean_ms);
  const double coe_cascade_ms = med(cas, &Load::overhead_mean_ms);
  const double coe_best_ms = med(best, &Load::overhead_mean_ms);
  json out = {{"questions", ids.size()},
              {"users", users},
              {"runs", runs},
              {"latency_scale", scale},
              {"errors", errors},
              {"cascade",
               {{"accuracy", med(cas, &Load::accuracy)},
                {"mean_cost_usd", med(cas, &Load::mean_cost)},
                {"mean_ms", med(cas, &Load::mean_ms)},
                {"p50_ms", med(cas, &Load::p50_ms)},
                {"p99_ms", med(cas, &Load::p99_ms)},
                {"exits", cas.back().exits},
                {"overhead_mean_ms", med(cas, &Load::overhead_mean_ms)},
                {"overhead_p50_ms", med(cas, &Load::overhead_p50_ms)},
                {"overhead_p99_ms", med(cas, &Load::overhead_p99_ms)}}},
              {"best",
               {{"accuracy", med(best, &Load::accuracy)},
                {"mean_cost_usd", med(best, &Load::mean_cost)},
                {"mean_ms", med(best, &Load::mean_ms)},
                {"p50_ms", med(best, &Load::p50_ms)},
                {"p99_ms", med(best, &Load::p99_ms)},
                {"overhead_mean_ms", med(best, &Load::overhead_mean_ms)}}},
              {"cost_ratio", ratio(&Load::mean_cost)},
              {"mean_latency_ratio", ratio(&Load::mean_ms)},
              {"direct_call_overhead_ms", server_ms},
              {"coe_overhead_ms", {{"cascade", coe_cascade_ms}, {"best", coe_best_ms}}},
              {"coe_overhead_share_of_fastest_tier", coe_cascade_ms / fastest_tier_ms}};
  if (as_json) {
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    std::printf("llm_cascade: %zu ARC-Challenge questions, %d users, medians of %d interleaved runs\n", ids.size(),
                users, runs);
    std::printf(
        "                       accuracy   $/request    mean ms    p50 ms    p99 ms   overhead ms (mean/p50/p99)\n");
    auto row = [&](const char* name, const json& j, bool over) {
      std::printf("  %-20s %8.2f%%  %10.6f  %9.1f %9.1f %9.1f", name, 100 * j["accuracy"].get<double>(),
                  j["mean_cost_usd"].get<double>(), j["mean_ms"].get<double>(), j["p50_ms"].get<double>(),
                  j["p99_ms"].get<double>());
      if (over)
        std::printf("   %.3f / %.3f / %.3f", j["overhead_mean_ms"].get<double>(), j["overhead_p50_ms"].get<double>(),
                    j["overhead_p99_ms"].get<double>());
      else
        std::printf("   %.3f", j["overhead_mean_ms"].get<double>());
      std::printf("\n");
    };
    row("cascade (2 tiers)", out["cascade"], true);
    row("gpt-4 alone", out["best"], false);
    std::printf("  cost: %.2fx less   mean latency: %.2fx\n", out["cost_ratio"].get<double>(),
                out["mean_latency_ratio"].get<double>());
    std::printf(
        "  a call made directly, without coe: %.3f ms beyond the server's handler (the loopback hop)\n"
        "  coe's own overhead a request: cascade %.3f ms (%.3f%% of tier 1's %.0f ms), single model %.3f ms\n",
        server_ms, coe_cascade_ms, 100 * coe_cascade_ms / fastest_tier_ms, fastest_tier_ms, coe_best_ms);
    std::printf("  exits per tier (last run): %d / %d;  failed requests: %d\n", cas.back().exits[0],
                cas.back().exits[1], errors);
  }
  return errors ? 1 : 0;
}
