// Chat-model cascades end to end, against an OpenAI-compatible server on loopback that
// replays the shared RouterBench answers (testing/openai_replay.h): `coe record` writes
// the answers and costs the server gives (and resumes), `coe run` of a cascade equals
// `coe eval` of it on those recordings example by example, every member of a reached
// tier is paid, and faults (429/503 with Retry-After, 500, timeouts, malformed JSON,
// missing usage) end as documented.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "coe/cost_model.h"
#include "coe/evaluate.h"
#include "coe/recordings.h"
#include "coe/server.h"
#include "llm_testing.h"
#include "server_testing.h"

namespace coe {
namespace {

namespace fs = std::filesystem;
using testing::kModels;
using testing::OpenAiReplay;
using testing::RunCoe;
using testing::SharedArc;

class Llm : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(SharedArc())) GTEST_SKIP() << "no shared RouterBench data at " << SharedArc();
    dir_ = testing::TestDir("coe_llm");
    ASSERT_TRUE(server_.Load(SharedArc()));
    server_.Start();
    // 120 questions with distinct ids, their truth as labels.
    LabelSet labels;
    RecordingsReadOptions o;
    o.allow_duplicate_ids = true;
    auto rec = ReadRecordings(SharedArc(), &labels, nullptr, o);
    ASSERT_TRUE(rec.ok());
    std::set<std::string> seen;
    std::ofstream jsonl(dir_ / "prompts.jsonl");
    for (int i = 0; i < rec->num_examples() && static_cast<int>(ids_.size()) < 120; ++i) {
      if (!seen.insert(rec->ids[i]).second) continue;
      ids_.push_back(rec->ids[i]);
      jsonl << R"({"id": ")" << rec->ids[i] << R"(", "question": "Which option fits question )" << rec->ids[i]
            << R"(?", "label": ")" << labels.name(rec->truth[i]) << "\"}\n";
    }
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  std::string P(const std::string& name) { return (dir_ / name).string(); }
  std::string Catalogue(int timeout_ms = 2000, int retries = 2,
                        const std::string& prompt = "[id:{id}] {question}\\nAnswer with one letter.", int port = 0) {
    std::ofstream(dir_ / "chat.toml") << testing::ReplayCatalogue(port ? port : server_.port(), prompt, timeout_ms,
                                                                  retries);
    return P("chat.toml");
  }
  // What the server's recordings say member `name` answers and costs on `id`.
  std::pair<std::string, double> Expected(const std::string& name, const std::string& id) {
    const auto& [answer, dollars] = server_.calls[kModels.at(name)][id];
    const testing::ReplayTokens t = testing::ReplayUsage(dollars);
    return {answer, (t.in * 1.0 + t.out * 1.0) / 1e6};
  }

  // What the cascade c.toml of these tests ({mistral, mixtral, llama70} unanimous, then
  // gpt4) answers on `id`, from the server's recordings: answer, 1-based exit tier,
  // dollars, tokens.
  struct Want {
    std::string answer;
    int exit_tier = 1;
    double usd = 0;
    int64_t tokens_in = 0, tokens_out = 0;
  };
  Want Cascaded(const std::string& id) {
    Want w;
    auto pay = [&](const std::string& name) {
      const testing::ReplayTokens t = testing::ReplayUsage(server_.calls[kModels.at(name)][id].second);
      w.usd += Expected(name, id).second;
      w.tokens_in += t.in;
      w.tokens_out += t.out;
      return Expected(name, id).first;
    };
    const std::string a = pay("mistral"), b = pay("mixtral"), c = pay("llama70");
    if (!a.empty() && a == b && b == c) {
      w.answer = a;
      return w;
    }
    w.answer = pay("gpt4");
    w.exit_tier = 2;
    return w;
  }
  void WriteCascade() { std::ofstream(P("c.toml")) << testing::kLadderToml; }

  OpenAiReplay server_;
  std::vector<std::string> ids_;
  fs::path dir_;
};

TEST_F(Llm, RecordWritesWhatTheServerAnsweredAndResumes) {
  const std::string cat = Catalogue();
  auto r = RunCoe("record --models " + cat + " --data " + P("prompts.jsonl") + " --out " + P("rec.csv"));
  ASSERT_EQ(r.code, 0) << r.out;
  LabelSet labels;
  auto rec = ReadRecordings(P("rec.csv"), &labels, nullptr);
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();
  ASSERT_EQ(rec->num_examples(), static_cast<int>(ids_.size()));
  for (const auto& [name, model] : kModels) {
    const int m = rec->ModelIndex(name);
    ASSERT_GE(m, 0) << name;
    for (int i = 0; i < rec->num_examples(); ++i) {
      const auto [answer, cost] = Expected(name, rec->ids[i]);
      EXPECT_EQ(labels.name(rec->models[m].label[i]), answer) << name << " " << rec->ids[i];
      EXPECT_NEAR(rec->models[m].cost[i], cost, 1e-9 * cost) << name << " " << rec->ids[i];
    }
  }
  EXPECT_TRUE(fs::exists(P("rec.models.toml")));
  // Resuming: a file with the first 40 inputs gets the other 80, and only those are asked.
  std::ifstream all(P("prompts.jsonl"));
  std::ofstream half(P("half.jsonl"));
  std::string line;
  for (int k = 0; k < 40 && std::getline(all, line); ++k) half << line << "\n";
  half.close();
  ASSERT_EQ(RunCoe("record --models " + cat + " --data " + P("half.jsonl") + " --out " + P("resumed.csv")).code, 0);
  const int before = server_.requests.load();
  r = RunCoe("record --models " + cat + " --data " + P("prompts.jsonl") + " --out " + P("resumed.csv") + " --json",
             false);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(nlohmann::json::parse(r.out)["kept"], 40);
  EXPECT_EQ(server_.requests.load() - before, static_cast<int>((ids_.size() - 40) * kModels.size()));
  LabelSet l2;
  auto resumed = ReadRecordings(P("resumed.csv"), &l2, nullptr);
  ASSERT_TRUE(resumed.ok()) << resumed.status().ToString();
  EXPECT_EQ(resumed->num_examples(), static_cast<int>(ids_.size()));
}

// A failed call is never an answer: with the upstream down, `coe record` fails naming
// the cause, writes no answer (the planner refuses the file), and once the upstream is
// back, running it again makes exactly the failed calls and completes the file: the
// same file a record against a healthy upstream writes, byte for byte.
TEST_F(Llm, FailedCallsAreNeverAnswersAndRecordingAgainRetriesThem) {
  const int n = static_cast<int>(ids_.size());
  int dead_port = 0;
  {  // a port that was bound, then closed: nothing listens there (connections are refused)
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    dead_port = ntohs(addr.sin_port);
    ::close(fd);
  }
  const std::string dead = Catalogue(2000, 1, "[id:{id}] {question}\\nAnswer with one letter.", dead_port);
  const std::string rec_args = " --data " + P("prompts.jsonl") + " --out " + P("rec.csv");
  auto r = RunCoe("record --models " + dead + rec_args);
  ASSERT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("coe record: error: " + std::to_string(4 * n) + " model calls failed (no answer): not " +
                       "recorded as answers; run the same command again"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find(std::to_string(n) +
                       " calls of model 'gpt4' failed: chat model 'gpt4': cannot connect to "
                       "http://127.0.0.1:" +
                       std::to_string(dead_port)),
            std::string::npos)
      << r.out;
  // Its summary line says how little of it is answers, not just "recorded".
  EXPECT_NE(r.out.find("0 of " + std::to_string(4 * n) + " calls answered, " + std::to_string(4 * n) + " failed"),
            std::string::npos)
      << r.out;
  {
    LabelSet labels;
    RecordingsReadOptions o;
    o.allow_failures = true;
    auto rec = ReadRecordings(P("rec.csv"), &labels, nullptr, o);
    ASSERT_TRUE(rec.ok()) << rec.status().ToString();
    ASSERT_EQ(rec->num_examples(), n);
    for (const ModelRecord& m : rec->models)
      for (int i = 0; i < n; ++i) {
        EXPECT_EQ(m.label[i], kAbstain) << m.name;
        EXPECT_NE(m.error[i].find("cannot connect"), std::string::npos) << m.error[i];
        EXPECT_EQ(m.cost[i], 0.0);
      }
  }
  // A refused connection's time is not a model's latency: no figure is measured.
  for (const char* figure : {"latency_us =", "latency_ms ="})
    EXPECT_EQ(testing::ReadFile(P("rec.models.toml")).find(figure), std::string::npos)
        << testing::ReadFile(P("rec.models.toml"));
  // Nothing plans on it: the file names the first failed call and how to retry.
  auto plan = RunCoe("plan --calib " + P("rec.csv") + " --models " + P("rec.models.toml"));
  EXPECT_EQ(plan.code, 2) << plan.out;
  EXPECT_NE(plan.out.find("its call failed (chat model"), std::string::npos) << plan.out;
  EXPECT_NE(plan.out.find("run `coe record` again with the same --out"), std::string::npos) << plan.out;

  // The upstream is up, but refuses one model's key: the other three answer.
  server_.SetFaults([](const std::string& model, const std::string&, int) {
    return model == "gpt-4-1106-preview" ? OpenAiReplay::Fault::k401 : OpenAiReplay::Fault::kNone;
  });
  const std::string live = Catalogue(2000, 1);
  int before = server_.requests.load();
  r = RunCoe("record --models " + live + rec_args);
  ASSERT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find(std::to_string(n) +
                       " calls of model 'gpt4' failed: chat model 'gpt4': HTTP 401: invalid api key"
                       " (first on input '" +
                       ids_[0] + "')"),
            std::string::npos)
      << r.out;
  EXPECT_EQ(server_.requests.load() - before, 4 * n);  // every failed call, retried once
  // The key is fixed: only gpt4's calls are made, and the file is complete.
  server_.SetFaults(nullptr);
  before = server_.requests.load();
  r = RunCoe("record --models " + live + rec_args + " --json", false);
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["calls"], n);
  EXPECT_EQ(j["failed_calls"], 0);
  EXPECT_EQ(server_.requests.load() - before, n);
  LabelSet labels;
  auto rec = ReadRecordings(P("rec.csv"), &labels, nullptr);
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();
  for (const auto& [name, model] : kModels)
    for (int i = 0; i < n; ++i)
      EXPECT_EQ(labels.name(rec->models[rec->ModelIndex(name)].label[i]), Expected(name, rec->ids[i]).first);
  ASSERT_EQ(RunCoe("record --models " + live + " --data " + P("prompts.jsonl") + " --out " + P("fresh.csv")).code, 0);
  EXPECT_EQ(testing::ReadFile(P("rec.csv")), testing::ReadFile(P("fresh.csv")));
  // Nothing left to do: no call, and the measured catalogue keeps its figures.
  const std::string measured = testing::ReadFile(P("rec.models.toml"));
  before = server_.requests.load();
  ASSERT_EQ(RunCoe("record --models " + live + rec_args).code, 0);
  EXPECT_EQ(server_.requests.load(), before);
  EXPECT_EQ(testing::ReadFile(P("rec.models.toml")), measured);
  EXPECT_EQ(measured.find("latency_us = 0\n"), std::string::npos) << measured;
}

// A row cut off by an interrupted write is recorded again (with a warning), not a reason
// the file cannot be resumed.
TEST_F(Llm, ACutOffLastRowIsRecordedAgain) {
  const std::string cat = Catalogue();
  const std::string args = "record --models " + cat + " --data " + P("prompts.jsonl") + " --out " + P("rec.csv");
  ASSERT_EQ(RunCoe(args).code, 0);
  const std::string whole = testing::ReadFile(P("rec.csv"));
  const size_t last = whole.rfind('\n', whole.size() - 2);
  std::ofstream(P("rec.csv"), std::ios::binary) << whole.substr(0, last + 1 + (whole.size() - last) / 2);
  const int before = server_.requests.load();
  auto r = RunCoe(args);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("its last row was cut off (an interrupted write): it is recorded again"), std::string::npos)
      << r.out;
  EXPECT_EQ(server_.requests.load() - before, static_cast<int>(kModels.size()));
  EXPECT_EQ(testing::ReadFile(P("rec.csv")), whole);
}

TEST_F(Llm, LiveCascadeEqualsEvalOfItsRecordingsAndPaysEveryMember) {
  const std::string cat = Catalogue();
  ASSERT_EQ(RunCoe("record --models " + cat + " --data " + P("prompts.jsonl") + " --out " + P("rec.csv")).code, 0);
  WriteCascade();
  auto live = RunCoe("run --cascade " + P("c.toml") + " --models " + cat + " --data " + P("prompts.jsonl") + " --out " +
                         P("live.csv") + " --json",
                     false);
  ASSERT_EQ(live.code, 0) << live.out;
  // The replay of the recordings, example by example.
  LabelSet labels;
  auto rec = ReadRecordings(P("rec.csv"), &labels, nullptr);
  ASSERT_TRUE(rec.ok());
  auto mcat = ReadCatalogue(P("rec.models.toml"));
  ASSERT_TRUE(mcat.ok()) << mcat.status().ToString();
  auto costs = BuildCostTable(*rec, *mcat, CostOptions{});
  ASSERT_TRUE(costs.ok()) << costs.status().ToString();
  auto spec = ReadCascade(P("c.toml"));
  std::vector<ExampleOutcome> want;
  auto eval = EvaluateCascade(*spec, *rec, *costs, &want);
  ASSERT_TRUE(eval.ok());
  std::ifstream in(P("live.csv"));
  std::string line;
  std::getline(in, line);  // id,answer,exit_tier,agreement,cost,degraded,label
  int i = 0, exits_first = 0;
  while (std::getline(in, line)) {
    std::vector<std::string> f;
    std::stringstream ss(line);
    for (std::string x; std::getline(ss, x, ',');) f.push_back(x);
    ASSERT_GE(f.size(), 6u);
    ASSERT_EQ(f[0], rec->ids[i]);
    EXPECT_EQ(f[1], labels.name(want[i].answer)) << f[0];
    EXPECT_EQ(std::stoi(f[2]), want[i].exit_tier + 1) << line;
    EXPECT_NEAR(std::stod(f[4]), want[i].cost, 1e-9 * want[i].cost) << f[0];
    if (want[i].exit_tier == 0) {
      // Exits at the ensemble tier: all three members are paid (never $0).
      double three = 0;
      for (const char* m : {"mistral", "mixtral", "llama70"}) three += Expected(m, f[0]).second;
      EXPECT_NEAR(std::stod(f[4]), three, 1e-9 * three) << f[0];
      EXPECT_GT(three, 0);
      ++exits_first;
    }
    ++i;
  }
  EXPECT_EQ(i, static_cast<int>(ids_.size()));
  EXPECT_GT(exits_first, 10);
  const auto j = nlohmann::json::parse(live.out);
  EXPECT_NEAR(j["cost"].get<double>(), eval->mean_cost, 1e-9 * eval->mean_cost);
  EXPECT_NEAR(j["accuracy"].get<double>(), eval->accuracy, 1e-12);
  // `coe plan` works unchanged on the recordings (|cost columns, text answers).
  auto plan = RunCoe("plan --calib " + P("rec.csv") + " --models " + P("rec.models.toml") + " --json", false);
  ASSERT_EQ(plan.code, 0) << plan.out;
  EXPECT_EQ(nlohmann::json::parse(plan.out)["cost"], "usd (recorded per example)");
}

TEST_F(Llm, FaultsEndAsDocumented) {
  // Per question: which fault each model's first attempt meets.
  const std::string busy = ids_[1], broken = ids_[2], hung = ids_[3], garbled = ids_[4], unpriced = ids_[5],
                    huge = ids_[6];
  // Copies of the ids: the server's threads call this.
  server_.SetFaults(
      [=](const std::string&, const std::string& id, int attempt) {
        if (id == busy && attempt == 0) return OpenAiReplay::Fault::k429;
        if (id == broken && attempt == 0) return OpenAiReplay::Fault::k500;
        if (id == hung) return OpenAiReplay::Fault::kTimeout;
        if (id == garbled) return OpenAiReplay::Fault::kMalformed;
        if (id == unpriced) return OpenAiReplay::Fault::kNoUsage;
        if (id == huge) return OpenAiReplay::Fault::kHuge;
        return OpenAiReplay::Fault::kNone;
      },
      /*retry_after_s=*/1, /*hang_ms=*/3500);
  std::ofstream(P("gpt4.toml")) << "[[tiers]]\nmembers = [\"gpt4\"]\n";
  std::ofstream(P("five.jsonl")) << [&] {
    std::ifstream all(P("prompts.jsonl"));
    std::string line, out;
    for (int k = 0; k < 7 && std::getline(all, line); ++k) out += line + "\n";
    return out;
  }();
  const auto t0 = std::chrono::steady_clock::now();
  auto r = RunCoe("run --cascade " + P("gpt4.toml") + " --models " + Catalogue(3000, 2) + " --data " + P("five.jsonl") +
                  " --out " + P("out.csv"));
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // Three calls had no answer (a hang, a malformed reply, one too large): the run says so,
  // naming each cause, and fails, after writing its answers.
  ASSERT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("coe run: error: 3 model calls failed (no answer)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("chat model 'gpt4': no answer within 3000 ms (timeout_ms)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("chat model 'gpt4': the response has no choices[0].message.content"), std::string::npos)
      << r.out;
  // (The reply of 40 MiB is refused as it arrives, or, when this machine is slow to
  // build it, meets the deadline first: either way the third failure.)
  EXPECT_LT(secs, 15.0);  // one deadline of 3 s a call, whatever the retries
  EXPECT_NE(r.out.find("model 'gpt4': 1 response(s) had no usage"), std::string::npos) << r.out;
  auto rows = testing::CsvRowsById(P("out.csv"));
  const auto [busy_answer, busy_cost] = Expected("gpt4", busy);
  // 429 with Retry-After, then an answer: the answer, and only the answered attempt paid.
  EXPECT_EQ(rows[busy][1], busy_answer);
  EXPECT_NEAR(std::stod(rows[busy][4]), busy_cost, 1e-12);
  EXPECT_EQ(server_.Attempts("gpt-4-1106-preview", busy), 2);
  // 500, then an answer.
  EXPECT_EQ(rows[broken][1], Expected("gpt4", broken).first);
  // A hang past the deadline, a malformed reply: no answer, nothing paid (no usage came).
  for (const std::string& id : {hung, garbled}) {
    EXPECT_EQ(rows[id][1], "") << id;
    EXPECT_EQ(std::stod(rows[id][4]), 0.0) << id;
  }
  EXPECT_EQ(server_.Attempts("gpt-4-1106-preview", garbled), 1);  // not retried
  // A reply over max_response_mb (32 MiB): refused as it arrives, not retried.
  EXPECT_EQ(rows[huge][1], "");
  EXPECT_EQ(server_.Attempts("gpt-4-1106-preview", huge), 1);
  // No usage: answered, and paid at the estimate (4 characters a token), never 0.
  EXPECT_EQ(rows[unpriced][1], Expected("gpt4", unpriced).first);
  EXPECT_GT(std::stod(rows[unpriced][4]), 0.0);
  // The untouched question is as recorded.
  EXPECT_EQ(rows[ids_[0]][1], Expected("gpt4", ids_[0]).first);
}

// The OpenAI front door of `coe serve`, on loopback: a chat request's user message
// fills {input} (or, with input = "messages", the conversation goes to every member);
// the reply is the winning member's completion, usage and cost summed over every call
// made, the same streamed; OpenAI error bodies; token and dollar metrics.
class FrontDoor : public Llm {
 protected:
  void SetUp() override {
    Llm::SetUp();
    if (IsSkipped()) return;
    WriteCascade();
    Serve("template");
  }
  // Serves c.toml as "ladder", its chat requests read in `input` mode; `api_key`: the
  // front door's key ("": none).
  void Serve(const std::string& input, const std::string& api_key = "") {
    auto cat = ReadCatalogue(Catalogue(2000, 2, "{input}\\nAnswer with one letter."));
    ASSERT_TRUE(cat.ok()) << cat.status().ToString();
    auto spec = ParseCascade("input = \"" + input + "\"\n" + testing::ReadFile(P("c.toml")), P("c.toml"));
    ASSERT_TRUE(spec.ok()) << spec.status().ToString();
    ServerOptions so;
    so.name = "ladder";
    so.api_key = api_key;
    testing::Served served = testing::ServeOnLoopback(*spec, *cat, so);
    ASSERT_TRUE(served.server);
    coe_ = std::move(served.server);
    client_ = std::move(served.client);  // one connection: the server handles its requests in order
  }
  nlohmann::json Body(const std::string& model, const std::string& user, bool stream = false) {
    return {{"model", model},
            {"messages", {{{"role", "user"}, {"content", user}}}},
            {"stream", stream},
            {"temperature", 0}};
  }
  std::string Question(const std::string& id) { return "[id:" + id + "] Which option fits question " + id + "?"; }

  std::unique_ptr<Server> coe_;
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(FrontDoor, RepliesAreTheCascadesWithUsageSummedOverEveryCall) {
  double tier_usd[2] = {0, 0};
  int exits[2] = {0, 0};
  for (int k = 0; k < 40; ++k) {
    const std::string& id = ids_[k];
    const Want w = Cascaded(id);
    auto res = client_->Post("/v1/chat/completions", Body("ladder", Question(id)).dump(), "application/json");
    ASSERT_TRUE(res) << id;
    ASSERT_EQ(res->status, 200) << res->body;
    const auto j = nlohmann::json::parse(res->body);
    EXPECT_EQ(j["object"], "chat.completion");
    EXPECT_EQ(j["model"], "ladder");
    const auto& facts = j["coe"];
    EXPECT_EQ(facts["answer"].is_null() ? "" : facts["answer"].get<std::string>(), w.answer) << id;
    EXPECT_EQ(facts["exit_tier"], w.exit_tier) << id;
    EXPECT_NEAR(facts["cost_usd"].get<double>(), w.usd, 1e-9 * w.usd) << id;
    EXPECT_EQ(j["usage"]["prompt_tokens"], w.tokens_in) << id;
    EXPECT_EQ(j["usage"]["completion_tokens"], w.tokens_out) << id;
    EXPECT_EQ(j["usage"]["total_tokens"], w.tokens_in + w.tokens_out) << id;
    const std::string content = j["choices"][0]["message"]["content"];
    if (!w.answer.empty()) {
      EXPECT_NE(content.find("(" + w.answer + ")"), std::string::npos) << content;
    }
    exits[w.exit_tier - 1]++;
    tier_usd[0] += w.exit_tier == 1 ? w.usd : w.usd - Expected("gpt4", id).second;
    if (w.exit_tier == 2) tier_usd[1] += Expected("gpt4", id).second;
  }
  EXPECT_GT(exits[0], 5);
  EXPECT_GT(exits[1], 5);
  // Metrics: dollars per tier and per member, tokens. A request is counted after its
  // response is written; one more request on the same kept-alive connection (served
  // by the same worker, in order) makes sure the 40th has been counted.
  ASSERT_TRUE(client_->Get("/v1/models"));
  const std::string m = coe_->MetricsText();
  auto value = [&](const std::string& series) {
    const size_t at = m.find(series + " ");
    return at == std::string::npos ? -1.0 : std::stod(m.substr(at + series.size() + 1));
  };
  EXPECT_NEAR(value("coe_tier_cost_total{model=\"ladder\",tier=\"1\",unit=\"usd\"}"), tier_usd[0], 1e-9);
  EXPECT_NEAR(value("coe_tier_cost_total{model=\"ladder\",tier=\"2\",unit=\"usd\"}"), tier_usd[1], 1e-9);
  EXPECT_NEAR(value("coe_member_usd_total{member=\"gpt4\"}"), tier_usd[1], 1e-9);
  EXPECT_GT(value("coe_member_tokens_total{member=\"mistral\",kind=\"in\"}"), 0);
  EXPECT_GT(value("coe_tier_tokens_total{model=\"ladder\",tier=\"2\",kind=\"out\"}"), 0);
  EXPECT_EQ(value("coe_requests_total{model=\"ladder\",code=\"200\"}"), 40);
}

TEST_F(FrontDoor, StreamsTheSameReplyAsServerSentEvents) {
  for (int k = 0; k < 5; ++k) {
    const std::string& id = ids_[k];
    auto plain = client_->Post("/v1/chat/completions", Body("ladder", Question(id)).dump(), "application/json");
    auto body = Body("ladder", Question(id), true);
    body["stream_options"] = {{"include_usage", true}};
    auto streamed = client_->Post("/v1/chat/completions", body.dump(), "application/json");
    ASSERT_TRUE(plain && streamed);
    ASSERT_EQ(streamed->status, 200) << streamed->body;
    EXPECT_EQ(streamed->get_header_value("Content-Type").rfind("text/event-stream", 0), 0u);
    const auto p = nlohmann::json::parse(plain->body);
    std::string text;
    nlohmann::json usage, facts;
    bool done = false;
    std::stringstream ss(streamed->body);
    for (std::string line; std::getline(ss, line);) {
      if (line.empty()) continue;
      ASSERT_EQ(line.rfind("data: ", 0), 0u) << line;
      ASSERT_FALSE(done) << "an event after [DONE]";
      if (line == "data: [DONE]") {
        done = true;
        continue;
      }
      const auto e = nlohmann::json::parse(line.substr(6));
      EXPECT_EQ(e["object"], "chat.completion.chunk");
      if (!e["choices"].empty() && e["choices"][0]["delta"].contains("content"))
        text += e["choices"][0]["delta"]["content"].get<std::string>();
      if (e.contains("usage") && !e["usage"].is_null()) usage = e["usage"];
      if (e.contains("coe")) facts = e["coe"];
    }
    EXPECT_TRUE(done);
    EXPECT_EQ(text, p["choices"][0]["message"]["content"]);
    EXPECT_EQ(usage, p["usage"]);
    EXPECT_EQ(facts, p["coe"]);
  }
}

TEST_F(FrontDoor, ErrorsUseTheOpenAiShape) {
  auto post = [&](const std::string& body) {
    auto r = client_->Post("/v1/chat/completions", body, "application/json");
    EXPECT_TRUE(r);
    return std::make_pair(r ? r->status : 0, r ? nlohmann::json::parse(r->body, nullptr, false) : nlohmann::json());
  };
  auto [code, j] = post(Body("nope", "hi").dump());
  EXPECT_EQ(code, 404);
  EXPECT_EQ(j["error"]["code"], "model_not_found");
  EXPECT_NE(j["error"]["message"].get<std::string>().find("no model named 'nope'"), std::string::npos);
  std::tie(code, j) = post("{\"model\": \"ladder\", \"messages\": [");
  EXPECT_EQ(code, 400);
  EXPECT_EQ(j["error"]["type"], "invalid_request_error");
  std::tie(code, j) = post(R"({"model": "ladder", "messages": [{"role": "system", "content": "x"}]})");
  EXPECT_EQ(code, 400);
  EXPECT_NE(j["error"]["message"].get<std::string>().find("no message with role 'user'"), std::string::npos);
  std::tie(code, j) = post(R"({"model": "ladder", "n": 3, "messages": [{"role": "user", "content": "x"}]})");
  EXPECT_EQ(code, 400);
  auto res = client_->Get("/v1/nothing");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
  EXPECT_TRUE(nlohmann::json::parse(res->body)["error"].contains("message"));
  // Every served model answers chat (members are served too), listed by /v1/models.
  res = client_->Get("/v1/models");
  ASSERT_TRUE(res);
  const auto models = nlohmann::json::parse(res->body);
  std::set<std::string> listed;
  for (const auto& m : models["data"]) listed.insert(m["id"].get<std::string>());
  EXPECT_EQ(listed, (std::set<std::string>{"ladder", "mistral", "mixtral", "llama70", "gpt4"}));
  // The winning member's finish_reason is passed through, not made up, streamed or not.
  server_.SetFaults([](const std::string&, const std::string&, int) { return OpenAiReplay::Fault::kLength; });
  for (bool stream : {false, true}) {
    auto fr =
        client_->Post("/v1/chat/completions", Body("ladder", Question(ids_[0]), stream).dump(), "application/json");
    ASSERT_TRUE(fr);
    ASSERT_EQ(fr->status, 200) << fr->body;
    EXPECT_NE(fr->body.find("\"finish_reason\":\"length\""), std::string::npos) << fr->body;
  }
  server_.SetFaults(nullptr);
  // No tier can answer: a 502 in the upstream's own words, never an empty 200, and no
  // tier is counted as its exit.
  auto exits = [&] {
    const std::string m = coe_->MetricsText();
    int64_t n = 0;
    for (size_t at = 0; (at = m.find("coe_exits_total{model=\"ladder\"", at)) != std::string::npos; ++at)
      n += std::stoll(m.substr(m.find(' ', at) + 1));
    return n;
  };
  const int64_t exits_before = exits();
  auto message = [&](const httplib::Result& r) {
    return r ? nlohmann::json::parse(r->body)["error"]["message"].get<std::string>() : std::string();
  };
  server_.SetFaults([](const std::string&, const std::string&, int) { return OpenAiReplay::Fault::k401; });
  auto r = client_->Post("/v1/chat/completions", Body("ladder", Question(ids_[0])).dump(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 502) << r->body;
  EXPECT_NE(message(r).find("no tier of 'ladder' could answer: 4 member call(s) failed: chat model 'mistral': HTTP "
                            "401: invalid api key"),
            std::string::npos)
      << r->body;
  // Every member answers, but nothing can be read from the completions: a 502 that says so.
  server_.SetFaults([](const std::string&, const std::string&, int) { return OpenAiReplay::Fault::kUnreadable; });
  r = client_->Post("/v1/chat/completions", Body("ladder", Question(ids_[0])).dump(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 502) << r->body;
  EXPECT_NE(message(r).find("no tier of 'ladder' gave a readable answer"), std::string::npos) << r->body;
  server_.SetFaults(nullptr);
  // A killed endpoint: the same, at once.
  server_.Stop();
  r = client_->Post("/v1/chat/completions", Body("ladder", Question(ids_[0])).dump(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 502) << r->body;
  EXPECT_NE(message(r).find("cannot connect to http://127.0.0.1:"), std::string::npos) << r->body;
  EXPECT_EQ(exits(), exits_before);
  const std::string m = coe_->MetricsText();
  EXPECT_NE(m.find("coe_unanswered_examples_total{model=\"ladder\"} 3\n"), std::string::npos) << m;
  EXPECT_NE(m.find("coe_member_failures_total{member=\"gpt4\",reason=\"http_401\"} 1\n"), std::string::npos) << m;
  EXPECT_NE(m.find("coe_member_failures_total{member=\"gpt4\",reason=\"connect\"} 1\n"), std::string::npos) << m;
}

TEST_F(FrontDoor, ACascadeWithOtherTemplateFieldsIsRefusedAtStart) {
  auto cat = ReadCatalogue(Catalogue());  // prompts use {id} and {question}
  ASSERT_TRUE(cat.ok());
  auto spec = ReadCascade(P("c.toml"));
  auto s = Server::Create(*spec, *cat, EngineOptions{}, ServerOptions{});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("may use only {input}"), std::string::npos) << s.status().ToString();
}

TEST_F(FrontDoor, TheOfficialOpenAiClientWorks) {
  const std::string dir = testing::SourceDir() + "/tests/openai_client";
  ASSERT_TRUE(fs::exists(dir + "/node_modules/openai"))
      << "the npm package is missing: scripts/test.sh installs it (npm ci --prefix tests/openai_client)";
  coe_.reset();
  // The client sends system prompts and earlier turns, and the key.
  ASSERT_NO_FATAL_FAILURE(Serve("messages", "sk-coe-front-door"));
  const std::string tool_id = ids_[8];
  // A question the ladder answers at its last tier: its member's completion is streamed
  // as the upstream produces it, in several chunks.
  std::string id = ids_[7];
  for (size_t k = 7; (Cascaded(id).exit_tier != 2 || id == tool_id) && k + 1 < ids_.size();) id = ids_[++k];
  ASSERT_EQ(Cascaded(id).exit_tier, 2);
  std::map<std::string, nlohmann::json> calls;  // every member calls answer(B), each call its own id
  for (const auto& [name, model] : kModels)
    calls[model + "\n" + tool_id] = {{{"id", "call_" + name},
                                      {"type", "function"},
                                      {"function", {{"name", "answer"}, {"arguments", "{\"letter\": \"B\"}"}}}}};
  server_.SetToolCalls(calls);
  const std::string cmd = "node " + dir + "/chat.mjs http://127.0.0.1:" + std::to_string(coe_->port()) +
                          "/v1 ladder '" + Question(id) + "' '" + Question(tool_id) + "' sk-coe-front-door 2>&1";
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_TRUE(p);
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  ASSERT_EQ(pclose(p), 0) << out;
  const auto j = nlohmann::json::parse(out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << out;
  const Want w = Cascaded(id);
  EXPECT_EQ(j["plain"]["coe"]["exit_tier"], w.exit_tier) << out;
  EXPECT_EQ(j["plain"]["usage"]["prompt_tokens"], w.tokens_in) << out;
  EXPECT_NE(j["plain"]["content"].get<std::string>().find("(" + w.answer + ")"), std::string::npos) << out;
  EXPECT_EQ(j["stream"]["content"], j["plain"]["content"]) << out;
  EXPECT_EQ(j["stream"]["usage"], j["plain"]["usage"]) << out;
  EXPECT_EQ(j["stream"]["coe"], j["plain"]["coe"]) << out;
  EXPECT_EQ(j["stream"]["finish"], "stop") << out;
  EXPECT_GT(j["stream"]["pieces"].get<int>(), 1) << out;
  EXPECT_EQ(j["conversation"]["content"], j["plain"]["content"]) << out;
  EXPECT_EQ(j["conversation"]["coe"]["exit_tier"], w.exit_tier) << out;
  EXPECT_EQ(j["tools"]["finish"], "tool_calls") << out;
  EXPECT_TRUE(j["tools"]["content"].is_null()) << out;
  EXPECT_EQ(j["tools"]["calls"], calls.at(kModels.at("llama70") + "\n" + tool_id)) << out;  // tier 1's last
  EXPECT_EQ(j["tools"]["coe"]["exit_tier"], 1) << out;
  EXPECT_EQ(j["error"]["status"], 404) << out;
  EXPECT_EQ(j["error"]["code"], "model_not_found") << out;
  EXPECT_EQ(j["models"].size(), 5u) << out;
  EXPECT_EQ(j["retrieved"], (nlohmann::json{{"id", "ladder"}, {"object", "model"}})) << out;
  // A wrong key: the SDK's AuthenticationError (401, code invalid_api_key).
  EXPECT_EQ(j["wrongKey"]["status"], 401) << out;
  EXPECT_EQ(j["wrongKey"]["code"], "invalid_api_key") << out;
  EXPECT_EQ(j["wrongKey"]["authentication"], true) << out;
}

// examples/llm as its README walks through it: record the 100 questions with the
// example's catalogue, plan, eval the reference ladder, serve it over the chat API. The
// test server stands in for the user's endpoint: each model answers a fixed share of
// the questions wrongly (small models more often), at the example's own prices.
TEST(LlmExample, RecordPlanEvalServe) {
  const std::string ex = testing::SourceDir() + "/examples/llm/";
  const fs::path dir = fs::temp_directory_path() / ("coe_llm_example_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto cat = ReadCatalogue(ex + "catalogue.toml");
  ASSERT_TRUE(cat.ok()) << cat.status().ToString();
  ASSERT_EQ(cat->models.size(), 7u);
  // The stand-in endpoint: its prompts carry the question's id as "[id:...]".
  OpenAiReplay server;
  std::vector<std::pair<std::string, std::string>> questions;  // id, label
  {
    std::ifstream in(ex + "questions.jsonl");
    std::ofstream out(dir / "questions.jsonl");
    for (std::string line; std::getline(in, line);) {
      auto j = nlohmann::json::parse(line);
      questions.emplace_back(j["id"], j["label"]);
      j["input"] = "[id:" + j["id"].get<std::string>() + "] " + j["input"].get<std::string>();
      out << j.dump() << "\n";
    }
  }
  ASSERT_EQ(questions.size(), 100u);
  const std::map<std::string, int> wrong_in_10 = {{"llama3-8b-lite", 3}, {"llama3.1-8b", 3}, {"gemma2-9b", 3},
                                                  {"qwen2-72b", 2},      {"gemma2-27b", 2},  {"llama3.1-70b", 2},
                                                  {"llama3.1-405b", 1}};
  int k = 0;
  for (const ModelSpec& m : cat->models) {
    ++k;
    for (size_t i = 0; i < questions.size(); ++i) {
      const auto& [id, label] = questions[i];
      const bool wrong = static_cast<int>((i * 7 + k * 3) % 10) < wrong_in_10.at(m.name);
      const std::string answer = wrong ? std::string(1, static_cast<char>('A' + (label[0] - 'A' + 1) % 4)) : label;
      server.calls[m.model][id] = {answer, 300e-6};  // 300 tokens a call
    }
  }
  server.Start();
  std::string text = testing::ReadFile(ex + "catalogue.toml");
  const std::string from = "http://127.0.0.1:8000/v1";
  text.replace(text.find(from), from.size(), "http://127.0.0.1:" + std::to_string(server.port()) + "/v1");
  std::ofstream(dir / "catalogue.toml") << text;
  auto P = [&](const std::string& name) { return (dir / name).string(); };
  auto r = RunCoe("record --models " + P("catalogue.toml") + " --data " + P("questions.jsonl") + " --out " +
                      P("rec.csv") + " --json",
                  false);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(server.requests.load(), 700);
  r = RunCoe("plan --calib " + P("rec.csv") + " --models " + P("rec.models.toml") + " --out " + P("plan.toml"));
  EXPECT_TRUE(r.code == 0 || r.code == 3) << r.out;  // 3: the goal not met on 100 questions
  EXPECT_TRUE(fs::exists(P("plan.toml"))) << r.out;
  r = RunCoe(
      "eval --cascade " + ex + "ladder.toml --data " + P("rec.csv") + " --models " + P("rec.models.toml") + " --json",
      false);
  ASSERT_EQ(r.code, 0) << r.out;
  const auto e = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_FALSE(e.is_discarded()) << r.out;
  // Every call is 300 tokens at the member's price: tier 1 alone costs 300 x $0.46/M.
  EXPECT_GE(e["cost"].get<double>(), 300 * 0.46e-6 - 1e-12) << r.out;
  EXPECT_GE(e["accuracy"].get<double>(), 0.85) << r.out;
  // Served over the chat API.
  auto served = ReadCatalogue(P("catalogue.toml"));
  auto spec = ReadCascade(ex + "ladder.toml");
  ASSERT_TRUE(served.ok() && spec.ok());
  auto s = Server::Create(*spec, *served, EngineOptions{}, ServerOptions{});
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  ASSERT_TRUE((*s)->Start("127.0.0.1", 0).ok());
  httplib::Client c("127.0.0.1", (*s)->port());
  const nlohmann::json body = {{"model", "ladder"},
                               {"messages", {{{"role", "user"}, {"content", "[id:q001] What is the capital?"}}}}};
  auto res = c.Post("/v1/chat/completions", body.dump(), "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(nlohmann::json::parse(res->body)["coe"]["answer"], questions[0].second) << res->body;
  fs::remove_all(dir);
}

// JSONL inputs carry their truth in a field: `label`, or the one --label-field names;
// a labels file, or a field no record has, is refused rather than ignored.
TEST_F(Llm, TheTruthOfJsonlIsAFieldNamedByLabelField) {
  WriteCascade();
  const std::string cat = Catalogue();
  {
    std::ifstream in(P("prompts.jsonl"));
    std::ofstream out(P("gold.jsonl"));
    for (std::string line; std::getline(in, line);) {
      const size_t at = line.find("\"label\":");
      out << line.substr(0, at) << "\"gold\":" << line.substr(at + 8) << "\n";
    }
  }
  const std::string run = "run --cascade " + P("c.toml") + " --models " + cat + " --json --data ";
  auto by_label = RunCoe(run + P("prompts.jsonl"), false);
  ASSERT_EQ(by_label.code, 0) << by_label.out;
  auto by_gold = RunCoe(run + P("gold.jsonl") + " --label-field gold", false);
  ASSERT_EQ(by_gold.code, 0) << by_gold.out;
  const auto a = nlohmann::json::parse(by_label.out), b = nlohmann::json::parse(by_gold.out);
  EXPECT_EQ(a["labeled"], static_cast<int>(ids_.size()));
  EXPECT_EQ(b["labeled"], a["labeled"]);
  EXPECT_EQ(b["correct"], a["correct"]);
  auto no_field = RunCoe(run + P("gold.jsonl") + " --label-field answer");
  EXPECT_EQ(no_field.code, 2) << no_field.out;
  EXPECT_NE(no_field.out.find("no record has the field 'answer' that --label-field names"), std::string::npos)
      << no_field.out;
  auto labels_file = RunCoe(run + P("prompts.jsonl") + " --labels " + P("gold.jsonl"));
  EXPECT_EQ(labels_file.code, 2) << labels_file.out;
  EXPECT_NE(labels_file.out.find("is JSONL: its truth is a field of each record, not a labels file"), std::string::npos)
      << labels_file.out;
  const std::string f = "/usr/share/datasets/fashion-mnist/t10k-";
  auto idx = RunCoe("record --models " + testing::ZooDir() + "catalogue.toml --only linear --data " + f +
                    "images-idx3-ubyte.gz --range 0:10 --label-field label --out " + P("x.csv"));
  EXPECT_EQ(idx.code, 2) << idx.out;
  EXPECT_NE(idx.out.find("--label-field 'label' is for JSONL inputs"), std::string::npos) << idx.out;
}

TEST_F(Llm, BadInputNamesModelFileAndLine) {
  // A missing key variable.
  std::ofstream(P("keyed.toml")) << "[models.m]\nbackend = \"openai\"\nurl = \"http://127.0.0.1:1/v1\"\n"
                                    "prompt = \"{question}\"\napi_key_env = \"COE_TEST_NO_SUCH_KEY\"\n";
  std::ofstream(P("one.toml")) << "[[tiers]]\nmembers = [\"m\"]\n";
  auto r = RunCoe("run --cascade " + P("one.toml") + " --models " + P("keyed.toml") + " --data " + P("prompts.jsonl"));
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("model 'm': api_key_env names the environment variable COE_TEST_NO_SUCH_KEY, which is not set"),
            std::string::npos)
      << r.out;
  // A template naming a field the inputs lack.
  std::ofstream(P("field.toml")) << "[models.m]\nbackend = \"openai\"\nurl = \"http://127.0.0.1:1/v1\"\n"
                                    "prompt = \"{context} {question}\"\n";
  r = RunCoe("run --cascade " + P("one.toml") + " --models " + P("field.toml") + " --data " + P("prompts.jsonl"));
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("has no field 'context', which model 'm''s prompt names"), std::string::npos) << r.out;
  // A JSONL line that is not JSON.
  std::ofstream(P("bad.jsonl")) << "{\"id\": 1, \"question\": \"q\"}\n{\"id\": 2, question}\n";
  r = RunCoe("run --cascade " + P("one.toml") + " --models " + P("field.toml") + " --data " + P("bad.jsonl"));
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("bad.jsonl:2: not JSON"), std::string::npos) << r.out;
  // An unreachable endpoint: no call has an answer; the run ends, names the cause and
  // fails (a failed call is not an answer).
  std::ofstream(P("down.toml")) << "[models.m]\nbackend = \"openai\"\nurl = \"http://127.0.0.1:1/v1\"\n"
                                   "prompt = \"[id:{id}] {question}\"\ntimeout_ms = 500\nretries = 1\n";
  r = RunCoe("run --cascade " + P("one.toml") + " --models " + P("down.toml") + " --data " + P("prompts.jsonl") +
             " --json");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("\"unanswered\": " + std::to_string(ids_.size())), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"failed_calls\": " + std::to_string(ids_.size())), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("calls of model 'm' failed: chat model 'm': cannot connect to http://127.0.0.1:1"),
            std::string::npos)
      << r.out;
}

}  // namespace
}  // namespace coe
