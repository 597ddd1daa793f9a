// Shadow verification's drift experiment (coe serve --shadow, coe/server.h), shared by
// tests/shadow_serve_test.cc (short, every request shadowed) and bench/shadow_drift.cc
// (the figures, at --shadow 0.05). In testing/: fixtures tests/ and bench/ share.
//
// The served cascade is the tests' ladder of RouterBench chat models, replayed by
// OpenAiReplay on loopback: {mistral-7b, mixtral-8x7b, llama-2-70b} unanimous, then
// {gpt-4}. Its tier 1's calibrated_agreement is what `coe plan` writes for it
// (AgreementWithLastTier) on ARC's train split: 616 of the 644 exits, 95.7%. The
// traffic: chat requests on ARC's test questions (there tier 1 agrees with gpt-4 on
// 94.0% of its exits), then on Winogrande's (77.0%): the cheap tier still agrees with
// itself, but no longer with the truth's stand-in. Each request's user message is
// "[id:QUESTION] ... (NONCE k)": the replay answers by the question, the nonce makes
// every request's content (which chooses it, having no id) its own.
#ifndef COE_TESTING_SHADOW_DRIFT_H_
#define COE_TESTING_SHADOW_DRIFT_H_

#include <httplib.h>

#include <cstdlib>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "coe/cascade_spec.h"
#include "coe/catalogue.h"
#include "coe/cost_model.h"
#include "coe/evaluate.h"
#include "coe/protocol.h"
#include "coe/recordings.h"
#include "coe/server.h"
#include "server/shadow.h"
#include "testing/openai_replay.h"

namespace coe::testing {

// The shared RouterBench file `name` ($COE_SHARED_DATA, else `source_dir`/../shared/data).
inline std::string RouterBenchFile(const std::string& source_dir, const std::string& name) {
  const char* shared = std::getenv("COE_SHARED_DATA");
  return (shared ? std::string(shared) : source_dir + "/../shared/data") + "/routerbench/" + name;
}

class DriftLab {
 public:
  // Loads the recordings, starts the replay (gpt-4 answering after `last_tier_ms`) and
  // plans tier 1's level on ARC train.
  Status Open(const std::string& source_dir, int last_tier_ms = 0) {
    replay.latency_ms[kMembers[3].second] = last_tier_ms;
    const std::string arc_train = RouterBenchFile(source_dir, "arc_challenge_train.csv");
    const std::string arc_test = RouterBenchFile(source_dir, "arc_challenge_test.csv");
    const std::string wino_test = RouterBenchFile(source_dir, "winogrande_test.csv");
    if (!replay.Load(arc_test) || !replay.Load(wino_test))
      return NotFoundError("cannot read " + arc_test + " or " + wino_test);
    COE_ASSIGN_OR_RETURN(arc, Ids(arc_test));
    COE_ASSIGN_OR_RETURN(winogrande, Ids(wino_test));
    replay.Start();
    // The level `coe plan` writes: the ladder over the recordings' own column names.
    LabelSet labels;
    RecordingsReadOptions o;
    o.allow_duplicate_ids = true;
    COE_ASSIGN_OR_RETURN(Recordings rec, ReadRecordings(arc_train, &labels, nullptr, o));
    const std::string models_toml = RouterBenchFile(source_dir, "arc_challenge_train.models.toml");
    COE_ASSIGN_OR_RETURN(Catalogue prices, ReadCatalogue(models_toml));
    COE_ASSIGN_OR_RETURN(CostTable costs, BuildCostTable(rec, prices, CostOptions{}));
    CascadeSpec by_column;
    by_column.tiers.push_back(
        TierSpec{{kMembers[0].second, kMembers[1].second, kMembers[2].second}, DeferralRule{1.0, std::nullopt}});
    by_column.tiers.push_back(TierSpec{{kMembers[3].second}, {}});
    COE_ASSIGN_OR_RETURN(std::vector<std::optional<double>> agreement, AgreementWithLastTier(by_column, rec, costs));
    ladder = CascadeSpec{};
    ladder.name = "ladder";
    ladder.tiers.push_back(TierSpec{{kMembers[0].first, kMembers[1].first, kMembers[2].first},
                                    DeferralRule{1.0, std::nullopt},
                                    AnswerMatch{},
                                    agreement[0]});
    ladder.tiers.push_back(TierSpec{{kMembers[3].first}, {}});
    COE_ASSIGN_OR_RETURN(catalogue, ParseCatalogue(CatalogueToml(), "replay.toml", ""));
    return Status::Ok();
  }

  // Whether tier 1 exits on question `id` (its three members answer alike).
  bool Exits(const std::string& id) {
    const std::string a = replay.calls[kMembers[0].second][id].first;
    return !a.empty() && a == replay.calls[kMembers[1].second][id].first &&
           a == replay.calls[kMembers[2].second][id].first;
  }

  // The gpt-4 dollars the replay reports for question `id` ($1 per million tokens).
  double LastTierUsd(const std::string& id) {
    const ReplayTokens t = ReplayUsage(replay.calls[kMembers[3].second][id].second);
    return static_cast<double>(t.in + t.out) / 1e6;
  }

  OpenAiReplay replay;
  Catalogue catalogue;
  CascadeSpec ladder;
  std::vector<std::string> arc, winogrande;  // the test questions, distinct ids in file order

 private:
  // Catalogue name -> the recordings' model.
  static constexpr std::pair<const char*, const char*> kMembers[] = {
      {"mistral", "mistralai/mistral-7b-chat"},
      {"mixtral", "mistralai/mixtral-8x7b-chat"},
      {"llama70", "meta/llama-2-70b-chat"},
      {"gpt4", "gpt-4-1106-preview"},
  };
  std::string CatalogueToml() const {
    std::ostringstream c;
    c << "[defaults]\nbackend = \"openai\"\nurl = \"http://127.0.0.1:" << replay.port() << "/v1\"\n"
      << "prompt = \"{input}\\nAnswer with one letter.\"\nanswer = \"choice\"\n"
      << "usd_per_mtok_in = 1.0\nusd_per_mtok_out = 1.0\ntimeout_ms = 10000\nretries = 1\nmax_concurrency = 16\n";
    for (const auto& [name, model] : kMembers) c << "[models." << name << "]\nmodel = \"" << model << "\"\n";
    return c.str();
  }
  static StatusOr<std::vector<std::string>> Ids(const std::string& csv) {
    LabelSet labels;
    RecordingsReadOptions o;
    o.allow_duplicate_ids = true;
    COE_ASSIGN_OR_RETURN(Recordings rec, ReadRecordings(csv, &labels, nullptr, o));
    std::vector<std::string> out;
    std::set<std::string> seen;
    for (const std::string& id : rec.ids)
      if (seen.insert(id).second) out.push_back(id);
    return out;
  }
};

struct DriftOutcome {
  int alarm_at = -1;               // the request (0-based) whose shadow run raised the alarm; -1: none
  std::vector<std::string> lines;  // the server's shadow log lines (ALARM, alarm cleared)
  nlohmann::json health;           // GET /coe/plan-health after the last request
  std::string metrics;             // GET /metrics then
  int failed = 0;                  // requests not answered 200
  int exits = 0;                   // requests tier 1 answered
  double usd = 0;                  // the replies' cost_usd, summed
  double shadowed_usd = 0;         // gpt-4's dollars on the exits a shadow run took (by ShadowChosen's oracle)
  double lowest_upper = 1;         // tier 1's lowest upper bound over windows of at least min_samples
  int shadowed_at_mark = 0;        // tier 1's shadowed exits once request `mark` was answered
};

// Serves lab.ladder on loopback with `shadow` and sends `traffic` (question ids) one
// request at a time, in order, waiting after each for its shadow run (FlushShadow):
// the monitor sees the verdicts in request order, so the outcome is the same on every
// run. `nonce` tells runs apart (it is in every request's content). With
// `stop_at_alarm`, the traffic ends at the alarm.  `mark`: a request whose count of
// shadowed exits is kept (shadowed_at_mark).
inline DriftOutcome RunDrift(DriftLab& lab, const std::vector<std::string>& traffic, const ShadowOptions& shadow,
                             const std::string& nonce, bool stop_at_alarm = false, int mark = -1) {
  DriftOutcome out;
  std::mutex mu;
  std::vector<std::string> lines;
  ServerOptions so;
  so.access_log = AccessLog::kOff;
  so.shadow = shadow;
  so.log = [&](const std::string& line) {
    std::lock_guard<std::mutex> lock(mu);
    if (line.find(" shadow ") != std::string::npos) lines.push_back(line);
  };
  auto server = Server::Create(lab.ladder, lab.catalogue, EngineOptions{}, so);
  if (!server.ok() || !(*server)->Start("127.0.0.1", 0).ok()) {
    out.failed = static_cast<int>(traffic.size());
    return out;
  }
  httplib::Client client("127.0.0.1", (*server)->port());
  client.set_keep_alive(true);
  client.set_tcp_nodelay(true);
  client.set_read_timeout(30, 0);
  for (size_t k = 0; k < traffic.size(); ++k) {
    const std::string content = "[id:" + traffic[k] + "] Which option fits? (" + nonce + " " + std::to_string(k) + ")";
    const std::string body =
        nlohmann::json{{"model", "ladder"}, {"messages", {{{"role", "user"}, {"content", content}}}}}.dump();
    auto r = client.Post("/v1/chat/completions", body, "application/json");
    if (!r || r->status != 200) {
      out.failed++;
      continue;
    }
    const nlohmann::json reply = nlohmann::json::parse(r->body, nullptr, false);
    const nlohmann::json& coe = reply["coe"];
    out.usd += coe.value("cost_usd", 0.0);
    if (coe.value("exit_tier", 0) == 1) {
      out.exits++;
      // The server's choice: by the request's record without its id.
      std::string param;
      const StatusOr<ChatRequest> q = ParseChatRequest(body, &param);
      if (q.ok())
        if (const StatusOr<std::string> key = ChatRecordJson(*q, "", false);
            key.ok() && ShadowChosen(*key, shadow.share))
          out.shadowed_usd += lab.LastTierUsd(traffic[k]);
    }
    (*server)->FlushShadow();
    const nlohmann::json tier = nlohmann::json::parse((*server)->PlanHealthJson())["models"]["ladder"]["tiers"][0];
    if (tier["window_n"].get<int>() >= shadow.min_samples)
      out.lowest_upper = std::min(out.lowest_upper, tier["upper"].get<double>());
    if (static_cast<int>(k) == mark) out.shadowed_at_mark = tier["shadowed"].get<int>();
    std::lock_guard<std::mutex> lock(mu);
    if (out.alarm_at < 0 && !lines.empty()) out.alarm_at = static_cast<int>(k);
    if (stop_at_alarm && out.alarm_at >= 0) break;
  }
  out.health = nlohmann::json::parse((*server)->PlanHealthJson());
  out.metrics = (*server)->MetricsText();
  (*server)->Shutdown(1000);
  std::lock_guard<std::mutex> lock(mu);
  out.lines = lines;
  return out;
}

}  // namespace coe::testing

#endif  // COE_TESTING_SHADOW_DRIFT_H_
