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
// Every completion is generated in 20 pieces --token-ms apart (50 ms: 0.95 s after its
// first token, the latency above), streamed when the request streams, else returned
// whole at the end. Each configuration runs plain and streamed (`stream: true` with
// include_usage): the time to first byte (the first body byte the client reads) shows
// what streaming the last tier gives; an answer of tier 1 is sent whole either way.
//
// After a warm-up of 2 x users requests (connections opened, not measured), each user
// is a thread with a keep-alive connection posting one question after another
// to /v1/chat/completions. Per request: client-side latency and time to first byte,
// the reply's coe.cost_usd and answer. coe's overhead per request = latency - the sum,
// over the tiers it reached, of the slowest member's call as the replay server timed
// its own handler; streamed, to the first byte: time to first byte - (the earlier
// tiers' calls + the last member's time to its first piece). What coe adds, its
// loopback HTTP hops included (a direct call's hop is printed beside it).
//
//   llm_cascade [--users 32] [--runs 3] [--scale 1.0] [--token-ms 50] [--requests N] [--json]
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
  double ttfb_p50_ms = 0, ttfb_p99_ms = 0;  // time to first byte
  // The overhead on the way to the first byte: a streamed reply's, or the whole one's.
  double ttfb_overhead_mean_ms = 0, ttfb_overhead_p50_ms = 0, ttfb_overhead_p99_ms = 0;
  double seconds = 0;
  int errors = 0, n = 0;
  std::vector<int> exits;
};

// The "coe" facts of a reply: the JSON body's, or a streamed reply's (its last events).
json FactsOf(const std::string& body, bool stream) {
  if (stream) {
    const size_t at = body.rfind("\"coe\":");
    if (at == std::string::npos) return json::object();  // the replay server called directly
    const size_t start = body.rfind("data: ", at), end = body.find("\n\n", at);
    const json e = json::parse(body.substr(start + 6, end - start - 6), nullptr, false);
    return e.is_object() ? e["coe"] : json();
  }
  const json j = json::parse(body, nullptr, false);
  if (!j.is_object()) return json();
  return j.contains("coe") ? j["coe"] : json::object();  // none: the replay server called directly
}

// The upstream time on a request's critical path, in ms: to its whole reply, or (when
// `first_byte`) to its first piece.
using Upstream = std::function<double(const std::string& id, int exit_tier, bool first_byte)>;

// `users` threads send every question once to `model`, streamed or not.
Load Drive(int port, const std::string& model, const std::vector<std::string>& ids,
           const std::map<std::string, std::string>& truth, int users, bool stream, const Upstream& upstream_ms) {
  std::atomic<size_t> next{0};
  std::vector<double> lat(ids.size(), 0), ttfb(ids.size(), 0), cost(ids.size(), 0);
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
        json body = {{"model", model},
                     {"messages", {{{"role", "user"}, {"content", "[id:" + ids[i] + "] Which option is right?"}}}}};
        if (stream) body.update({{"stream", true}, {"stream_options", {{"include_usage", true}}}});
        httplib::Request req;
        req.method = "POST";
        req.path = "/v1/chat/completions";
        req.headers = {{"Content-Type", "application/json"}};
        req.body = body.dump();
        std::string got;
        const auto s = Clock::now();
        req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
          if (got.empty()) ttfb[i] = std::chrono::duration<double, std::milli>(Clock::now() - s).count();
          got.append(data, n);
          return true;
        };
        httplib::Response res;
        httplib::Error err = httplib::Error::Success;
        const bool sent = c.send(req, res, err);
        lat[i] = std::chrono::duration<double, std::milli>(Clock::now() - s).count();
        if (!sent || res.status != 200) {
          std::fprintf(stderr, "llm_cascade: %s: %s\n", ids[i].c_str(),
                       sent ? (std::to_string(res.status) + " " + got).c_str() : httplib::to_string(err).c_str());
          continue;
        }
        const json f = FactsOf(got, stream);
        if (f.is_null()) continue;
        ok[i] = 1;
        if (f.empty()) {  // the replay server called directly
          exit[i] = 1;
          continue;
        }
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
  std::vector<double> good_lat, good_over, good_ttfb, good_ttfb_over;
  double c = 0, a = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (!ok[i]) {
      ++l.errors;
      continue;
    }
    good_lat.push_back(lat[i]);
    good_over.push_back(lat[i] - upstream_ms(ids[i], exit[i], false));
    good_ttfb.push_back(ttfb[i]);
    good_ttfb_over.push_back(ttfb[i] - upstream_ms(ids[i], exit[i], stream));
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
  l.ttfb_p50_ms = Quantile(good_ttfb, 0.5);
  l.ttfb_p99_ms = Quantile(good_ttfb, 0.99);
  l.ttfb_overhead_mean_ms = Mean(good_ttfb_over);
  l.ttfb_overhead_p50_ms = Quantile(good_ttfb_over, 0.5);
  l.ttfb_overhead_p99_ms = Quantile(good_ttfb_over, 0.99);
  return l;
}

double Median(std::vector<double> v) { return Quantile(std::move(v), 0.5); }

struct Args {
  int users = 32, runs = 3, limit = 0;
  double scale = 1.0, token_ms = 50;
  bool as_json = false;
};

Args ParseArgs(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "llm_cascade: %s needs a value\n", arg.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--users")
      a.users = std::stoi(value());
    else if (arg == "--runs")
      a.runs = std::stoi(value());
    else if (arg == "--scale")
      a.scale = std::stod(value());
    else if (arg == "--token-ms")
      a.token_ms = std::stod(value());
    else if (arg == "--requests")
      a.limit = std::stoi(value());
    else if (arg == "--json")
      a.as_json = true;
    else {
      std::fprintf(stderr,
                   "usage: llm_cascade [--users 32] [--runs 3] [--scale 1.0] [--token-ms 50] [--requests N] "
                   "[--json]\n");
      std::exit(2);
    }
  }
  return a;
}

// One way of asking: the cascade, gpt-4 served by coe, or gpt-4 on the replay server
// directly; plain or streamed. Its loads, one per run.
struct Config {
  const char* name;
  int port;
  std::string model;
  bool stream;
  Upstream upstream;
  std::vector<Load> loads;
  double Med(double Load::*f) const {
    std::vector<double> x;
    for (const Load& l : loads) x.push_back(l.*f);
    return Median(x);
  }
  json Json() const {
    return {{"stream", stream},
            {"accuracy", Med(&Load::accuracy)},
            {"mean_cost_usd", Med(&Load::mean_cost)},
            {"mean_ms", Med(&Load::mean_ms)},
            {"p50_ms", Med(&Load::p50_ms)},
            {"p99_ms", Med(&Load::p99_ms)},
            {"ttfb_p50_ms", Med(&Load::ttfb_p50_ms)},
            {"ttfb_p99_ms", Med(&Load::ttfb_p99_ms)},
            {"exits", loads.back().exits},
            {"overhead_mean_ms", Med(&Load::overhead_mean_ms)},
            {"overhead_p50_ms", Med(&Load::overhead_p50_ms)},
            {"overhead_p99_ms", Med(&Load::overhead_p99_ms)},
            {"ttfb_overhead_mean_ms", Med(&Load::ttfb_overhead_mean_ms)},
            {"ttfb_overhead_p50_ms", Med(&Load::ttfb_overhead_p50_ms)},
            {"ttfb_overhead_p99_ms", Med(&Load::ttfb_overhead_p99_ms)}};
  }
};

// The results, as JSON, or as a table.
void Report(const Args& a, size_t questions, const std::vector<Config>& configs, double fastest_tier_ms) {
  int errors = 0;
  json out = {{"questions", questions},
              {"users", a.users},
              {"runs", a.runs},
              {"latency_scale", a.scale},
              {"token_ms", a.token_ms * a.scale}};
  for (const Config& c : configs) {
    out[c.name] = c.Json();
    for (const Load& l : c.loads) errors += l.errors;
  }
  out["errors"] = errors;
  // Per run: gpt-4 alone over the cascade, plain.
  auto ratio = [&](double Load::*f) {
    std::vector<double> x;
    for (int r = 0; r < a.runs; ++r) x.push_back(configs[2].loads[r].*f / configs[0].loads[r].*f);
    return Median(x);
  };
  out["cost_ratio"] = ratio(&Load::mean_cost);
  out["mean_latency_ratio"] = ratio(&Load::mean_ms);
  out["coe_overhead_share_of_fastest_tier"] = configs[0].Med(&Load::overhead_mean_ms) / fastest_tier_ms;
  if (a.as_json) {
    std::printf("%s\n", out.dump(2).c_str());
    return;
  }
  std::printf(
      "llm_cascade: %zu ARC-Challenge questions, %d users, medians of %d interleaved runs; pieces %.0f ms apart\n",
      questions, a.users, a.runs, a.token_ms * a.scale);
  std::printf("%-22s %8s %10s %8s %8s %8s %9s %9s   %-26s %s\n", "", "accuracy", "$/request", "mean ms", "p50 ms",
              "p99 ms", "TTFB p50", "TTFB p99", "overhead ms mean/p50/p99", "to first byte mean/p50/p99");
  for (const Config& c : configs) {
    const json j = out[c.name];
    std::printf("%-22s %7.2f%% %10.6f %8.1f %8.1f %8.1f %9.1f %9.1f   %6.3f / %6.3f / %6.3f   %6.3f / %6.3f / %6.3f\n",
                c.name, 100 * j["accuracy"].get<double>(), j["mean_cost_usd"].get<double>(), j["mean_ms"].get<double>(),
                j["p50_ms"].get<double>(), j["p99_ms"].get<double>(), j["ttfb_p50_ms"].get<double>(),
                j["ttfb_p99_ms"].get<double>(), j["overhead_mean_ms"].get<double>(), j["overhead_p50_ms"].get<double>(),
                j["overhead_p99_ms"].get<double>(), j["ttfb_overhead_mean_ms"].get<double>(),
                j["ttfb_overhead_p50_ms"].get<double>(), j["ttfb_overhead_p99_ms"].get<double>());
  }
  std::printf("  cost: %.2fx less   mean latency: %.2fx   coe's overhead: %.3f%% of tier 1's %.0f ms\n",
              out["cost_ratio"].get<double>(), out["mean_latency_ratio"].get<double>(),
              100 * out["coe_overhead_share_of_fastest_tier"].get<double>(), fastest_tier_ms);
  std::printf("  exits per tier (last run): %d / %d;  failed requests: %d\n", configs[0].loads.back().exits[0],
              configs[0].loads.back().exits[1], errors);
}

// Writes the catalogue and the cascade for a replay server on `replay_port` into `dir`
// and serves them; null (a message printed) when that fails.
std::unique_ptr<coe::Server> Serve(const std::filesystem::path& dir, int replay_port) {
  {
    std::ofstream c(dir / "chat.toml");
    c << "[defaults]\nbackend = \"openai\"\nurl = \"http://127.0.0.1:" << replay_port << "/v1\"\n"
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
    return nullptr;
  }
  coe::ServerOptions so;
  so.name = "ladder";
  so.max_inflight = 256;
  auto server = coe::Server::Create(*spec, *cat, coe::EngineOptions{}, so);
  if (!server.ok() || !(*server)->Start("127.0.0.1", 0).ok()) {
    std::fprintf(stderr, "llm_cascade: cannot serve: %s\n",
                 server.ok() ? "start failed" : server.status().ToString().c_str());
    return nullptr;
  }
  return std::move(*server);
}

std::string ModelOf(const std::string& name) {
  for (const Member& m : kMembers)
    if (m.name == name) return m.model;
  return name;
}

}  // namespace

int main(int argc, char** argv) {
  const Args args = ParseArgs(argc, argv);
  const char* shared = std::getenv("COE_SHARED_DATA");
  const std::string csv = (shared ? std::string(shared) : coe::BuildTreeSourceDir() + "/../shared/data") +
                          "/routerbench/arc_challenge_test.csv";
  coe::testing::OpenAiReplay replay;
  if (!replay.Load(csv)) {
    std::fprintf(stderr, "llm_cascade: cannot read %s (set COE_SHARED_DATA)\n", csv.c_str());
    return 2;
  }
  for (const Member& m : kMembers) replay.latency_ms[m.model] = static_cast<int>(m.latency_ms * args.scale);
  replay.SetStreaming(20, static_cast<int>(args.token_ms * args.scale));
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
  if (args.limit > 0 && static_cast<int>(ids.size()) > args.limit) ids.resize(args.limit);
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("coe_llm_bench_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::unique_ptr<coe::Server> server = Serve(dir, replay.port());
  std::filesystem::remove_all(dir);
  if (!server) return 2;
  // The upstream time on a request's critical path, as the replay server measured its
  // own handlers: per tier reached, the slowest member's call; to the first byte of a
  // streamed reply, the last member's time to its first piece instead of its whole call.
  const std::string gpt4 = ModelOf("gpt4");
  auto cascade_upstream = [&](const std::string& id, int exit_tier, bool first_byte) {
    double ms = 0;
    for (int t = 0; t < exit_tier && t < static_cast<int>(kTiers.size()); ++t) {
      double slowest = 0;
      for (const std::string& n : kTiers[t]) {
        const bool streamed = first_byte && t + 1 == static_cast<int>(kTiers.size());
        slowest = std::max(slowest,
                           streamed ? replay.FirstPieceSeconds(ModelOf(n), id) : replay.HandlerSeconds(ModelOf(n), id));
      }
      ms += 1e3 * slowest;
    }
    return ms;
  };
  auto single_upstream = [&](const std::string& id, int, bool first_byte) {
    return 1e3 * (first_byte ? replay.FirstPieceSeconds(gpt4, id) : replay.HandlerSeconds(gpt4, id));
  };
  double fastest_tier_ms = 0;
  for (const std::string& n : kTiers[0])
    for (const Member& m : kMembers)
      if (m.name == n) fastest_tier_ms = std::max(fastest_tier_ms, m.latency_ms * args.scale);
  const int port = server->port();
  std::vector<Config> configs = {{"cascade", port, "ladder", false, cascade_upstream, {}},
                                 {"cascade, streamed", port, "ladder", true, cascade_upstream, {}},
                                 {"gpt-4 alone", port, "gpt4", false, single_upstream, {}},
                                 {"gpt-4 alone, streamed", port, "gpt4", true, single_upstream, {}},
                                 {"gpt-4 direct (no coe)", replay.port(), gpt4, false, single_upstream, {}},
                                 {"gpt-4 direct, streamed", replay.port(), gpt4, true, single_upstream, {}}};
  // Warm-up (not measured): every user's connection and every member's pooled ones.
  const std::vector<std::string> first(ids.begin(), ids.begin() + std::min<size_t>(ids.size(), 2 * args.users));
  for (const Config& c : configs) Drive(c.port, c.model, first, truth, args.users, c.stream, c.upstream);
  for (int r = 0; r < args.runs; ++r)
    for (Config& c : configs) {
      if (!args.as_json) std::fprintf(stderr, "run %d/%d: %s ...\n", r + 1, args.runs, c.name);
      c.loads.push_back(Drive(c.port, c.model, ids, truth, args.users, c.stream, c.upstream));
    }
  Report(args, ids.size(), configs, fastest_tier_ms);
  int errors = 0;
  for (const Config& c : configs)
    for (const Load& l : c.loads) errors += l.errors;
  return errors ? 1 : 0;
}
