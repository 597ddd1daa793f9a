// A chat member's other endpoints, against OpenAI-compatible replay servers on loopback
// (testing/openai_replay.h, the shared RouterBench answers): `fallbacks` asked in order
// when url fails to connect, times out or answers 429/5xx (never after another 4xx),
// `hedge_url` racing a slow url (the slower side stopped; a response that arrived is
// paid), each endpoint's calls in coe serve's metrics, and the catalogue's checks.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <set>

#include "coe/backend.h"
#include "coe/cascade_spec.h"
#include "coe/catalogue.h"
#include "coe/recordings.h"
#include "coe/server.h"
#include "server_testing.h"
#include "testing.h"
#include "testing/openai_replay.h"

namespace coe {
namespace {

namespace fs = std::filesystem;
using testing::OpenAiReplay;
using testing::RunCoe;

const char* const kGpt4 = "gpt-4-1106-preview";

// A loopback port bound but never listening, for as long as this lives: connections to
// it are refused (a dead endpoint), and no one else can take the port meanwhile.
class DeadPort {
 public:
  DeadPort() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0)
      port_ = ntohs(a.sin_port);
  }
  ~DeadPort() { ::close(fd_); }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

class ChatEndpoints : public ::testing::Test {
 protected:
  void SetUp() override {
    arc_ = testing::SharedDataDir() + "/routerbench/arc_challenge_test.csv";
    if (!fs::exists(arc_)) GTEST_SKIP() << "no shared RouterBench data at " << arc_;
    dir_ = fs::temp_directory_path() / ("coe_endpoints_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    LabelSet labels;
    RecordingsReadOptions o;
    o.allow_duplicate_ids = true;
    auto rec = ReadRecordings(arc_, &labels, nullptr, o);
    ASSERT_TRUE(rec.ok()) << rec.status().ToString();
    std::set<std::string> seen;
    std::ofstream jsonl(P("prompts.jsonl"));
    for (int i = 0; i < rec->num_examples() && ids_.size() < 32; ++i) {
      if (!seen.insert(rec->ids[i]).second) continue;
      ids_.push_back(rec->ids[i]);
      texts_.push_back(R"({"id": ")" + rec->ids[i] + R"(", "question": "Which option fits question )" + rec->ids[i] +
                       R"(?", "label": ")" + labels.name(rec->truth[i]) + "\"}");
      jsonl << texts_.back() << "\n";
    }
    std::ofstream(P("c.toml")) << "[[tiers]]\nmembers = [\"mistral\", \"mixtral\", \"llama70\"]\n"
                                  "min_agreement = 1.0\n[[tiers]]\nmembers = [\"gpt4\"]\n";
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  std::string P(const std::string& name) const { return (dir_ / name).string(); }

  // A replay server of the shared answers, serving; gpt4's replies take `gpt4_ms`.
  OpenAiReplay& Upstream(int gpt4_ms = 0) {
    upstreams_.push_back(std::make_unique<OpenAiReplay>());
    OpenAiReplay& s = *upstreams_.back();
    EXPECT_TRUE(s.Load(arc_));
    if (gpt4_ms > 0) s.latency_ms[kGpt4] = gpt4_ms;
    s.Start();
    return s;
  }
  static std::string Url(int port, const std::string& path = "/v1") {
    return "http://127.0.0.1:" + std::to_string(port) + path;
  }

  // A catalogue file of four chat models at `url`, `extra` lines in [defaults].
  std::string Catalogue(const std::string& name, const std::string& url, const std::string& extra,
                        const std::string& prompt = "[id:{id}] {question}\\nAnswer with one letter.") {
    std::ofstream c(P(name));
    c << "[defaults]\nbackend = \"openai\"\nurl = \"" << url << "\"\nprompt = \"" << prompt
      << "\"\nanswer = \"choice\"\nusd_per_mtok_in = 1.0\nusd_per_mtok_out = 1.0\nmax_concurrency = 8\n"
      << extra << "\n[models.mistral]\nmodel = \"mistralai/mistral-7b-chat\"\n"
      << "[models.mixtral]\nmodel = \"mistralai/mixtral-8x7b-chat\"\n"
      << "[models.llama70]\nmodel = \"meta/llama-2-70b-chat\"\n[models.gpt4]\nmodel = \"" << kGpt4 << "\"\n";
    return P(name);
  }
  // Member gpt4 of catalogue file `path`.
  std::unique_ptr<Backend> Gpt4(const std::string& path) {
    auto cat = ReadCatalogue(path);
    EXPECT_TRUE(cat.ok()) << cat.status().ToString();
    if (!cat.ok()) return nullptr;
    auto b = CreateBackend(*cat->Find("gpt4"), BackendOptions{});
    EXPECT_TRUE(b.ok()) << b.status().ToString();
    return b.ok() ? std::move(*b) : nullptr;
  }
  // Questions [from, from + n) as text inputs.
  InputBatch Questions(int from, int n) const {
    InputBatch in;
    for (int i = from; i < from + n; ++i) {
      in.ids.push_back(ids_[i]);
      in.texts.push_back(texts_[i]);
    }
    return in;
  }
  // What gpt4 answers on `id` and what that call costs (one response's usage).
  std::pair<std::string, double> Expected(const std::string& id) {
    const auto& [answer, dollars] = upstreams_.front()->calls[kGpt4][id];
    const testing::ReplayTokens t = testing::ReplayUsage(dollars);
    return {answer, (t.in + t.out) / 1e6};
  }
  // Every prediction is gpt4's answer on its question, not a failure, paid `times` over.
  void ExpectAnswered(const InputBatch& in, const std::vector<Prediction>& out, int times = 1) {
    ASSERT_EQ(out.size(), in.ids.size());
    for (size_t i = 0; i < out.size(); ++i) {
      const auto [answer, usd] = Expected(in.ids[i]);
      EXPECT_FALSE(out[i].failed) << in.ids[i] << ": " << out[i].error;
      EXPECT_EQ(out[i].answer, answer) << in.ids[i] << ": " << out[i].error;
      EXPECT_NEAR(out[i].cost, times * usd, 1e-12) << in.ids[i];
    }
  }

  std::string arc_;
  fs::path dir_;
  std::vector<std::string> ids_, texts_;
  std::vector<std::unique_ptr<OpenAiReplay>> upstreams_;
};

// url dead (nothing listens): every call goes to the fallback, and `coe run` and
// `coe record` write what they write against a live url, byte for byte: no failure, no
// degraded answer. The fallback is given without a path: it takes url's (/v1).
TEST_F(ChatEndpoints, ADeadUrlFallsBackAndEveryAnswerIsTheLiveOnes) {
  OpenAiReplay& live = Upstream();
  DeadPort dead;
  const std::string cat = Catalogue("live.toml", Url(live.port()), "retries = 1");
  const std::string with_fallback =
      Catalogue("fb.toml", Url(dead.port()), "retries = 1\nfallbacks = [\"" + Url(live.port(), "") + "\"]");
  const std::string run = "run --cascade " + P("c.toml") + " --data " + P("prompts.jsonl") + " --json --models ";
  auto r = RunCoe(run + cat + " --out " + P("live.csv"), false);
  ASSERT_EQ(r.code, 0) << r.out;
  r = RunCoe(run + with_fallback + " --out " + P("fb.csv"), false);
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_TRUE(j.is_object()) << r.out;
  EXPECT_EQ(j["failed_calls"], 0);
  EXPECT_EQ(j["degraded"], 0);
  EXPECT_EQ(testing::ReadFile(P("fb.csv")), testing::ReadFile(P("live.csv")));

  // coe record (the same backend): the same recordings.
  const std::string record = "record --data " + P("prompts.jsonl") + " --models ";
  r = RunCoe(record + cat + " --out " + P("rec_live.csv"));
  ASSERT_EQ(r.code, 0) << r.out;
  r = RunCoe(record + with_fallback + " --out " + P("rec_fb.csv"));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(testing::ReadFile(P("rec_fb.csv")), testing::ReadFile(P("rec_live.csv")));
}

// url answers 500 or 429 (after its retry): the fallback answers, an ordinary answer
// paid once (the refusals carried no usage). url answers 400: a bad request fails the
// same anywhere, so the fallback is never asked and the failure names url's answer.
TEST_F(ChatEndpoints, A500Or429FallsBackButA400DoesNot) {
  OpenAiReplay& refusing = Upstream();
  OpenAiReplay& fallback = Upstream();
  const std::string extra = "retries = 1\ntimeout_ms = 5000\nfallbacks = [\"" + Url(fallback.port()) + "\"]";
  int from = 0;
  for (const auto fault : {OpenAiReplay::Fault::k500, OpenAiReplay::Fault::k429}) {
    SCOPED_TRACE(fault == OpenAiReplay::Fault::k500 ? "500" : "429");
    refusing.SetFaults([fault](const std::string&, const std::string&, int) { return fault; }, /*retry_after_s=*/0);
    auto b = Gpt4(Catalogue("cat.toml", Url(refusing.port()), extra));
    ASSERT_TRUE(b);
    const InputBatch in = Questions(from, 8);
    std::vector<Prediction> out;
    ASSERT_TRUE(b->Predict(in.View(), &out).ok());
    ExpectAnswered(in, out);
    for (const std::string& id : in.ids) {
      EXPECT_EQ(refusing.Attempts(kGpt4, id), 2) << id;  // url's retry budget first
      EXPECT_EQ(fallback.Attempts(kGpt4, id), 1) << id;
    }
    EXPECT_EQ(b->stats().errors.load(), 0u);
    from += 8;
  }
  refusing.SetFaults(nullptr);
  auto b = Gpt4(Catalogue("bad.toml", Url(refusing.port()), extra, "{question}"));  // no [id:...]: HTTP 400
  ASSERT_TRUE(b);
  const int asked = refusing.requests.load(), asked_fallback = fallback.requests.load();
  const InputBatch in = Questions(from, 4);
  std::vector<Prediction> out;
  ASSERT_TRUE(b->Predict(in.View(), &out).ok());
  for (const Prediction& p : out) {
    EXPECT_TRUE(p.failed);
    EXPECT_EQ(p.failure_kind, "http_400");
    EXPECT_NE(
        p.error.find("chat model 'gpt4': url " + Url(refusing.port()) + ": HTTP 400: the prompt names no [id:...]"),
        std::string::npos)
        << p.error;
  }
  EXPECT_EQ(refusing.requests.load() - asked, 4);  // not retried either
  EXPECT_EQ(fallback.requests.load(), asked_fallback);
  EXPECT_EQ(b->stats().errors.load(), 4u);
}

// hedge_url: a call url has not answered within hedge_ms goes there too; the first
// answer wins and the slow request is stopped, so the call takes the fast endpoint's
// time, not url's. A fast url is never hedged; with hedge_ms = 0 a dead url fails over
// to hedge_url, but a 400 does not.
TEST_F(ChatEndpoints, AHedgeAnswersWhenUrlIsSlow) {
  constexpr int kSlowMs = 2000;
  OpenAiReplay& slow = Upstream(kSlowMs);
  OpenAiReplay& fast = Upstream();
  auto hedged = [&](const std::string& url, int hedge_port, double hedge_ms,
                    const std::string& prompt = "[id:{id}] {question}") {
    return Gpt4(Catalogue("hedged.toml", url,
                          "retries = 1\ntimeout_ms = 5000\nhedge_url = \"" + Url(hedge_port, "") +
                              "\"\nhedge_ms = " + std::to_string(hedge_ms),
                          prompt));
  };
  std::vector<Prediction> out;
  {
    auto b = hedged(Url(slow.port()), fast.port(), 50);
    ASSERT_TRUE(b);
    const InputBatch in = Questions(0, 8);
    const auto t0 = std::chrono::steady_clock::now();
    ASSERT_TRUE(b->Predict(in.View(), &out).ok());
    const double secs = testing::Since(t0);
    std::cout << "[ hedge    ] 8 calls, url " << kSlowMs << " ms, hedge_url at once after 50 ms: " << secs * 1000
              << " ms\n";
    EXPECT_LT(secs, kSlowMs / 2000.0);
    ExpectAnswered(in, out);  // paid once: the slow replies never arrived
    EXPECT_EQ(b->stats().hedges.load(), 8u);
    EXPECT_EQ(b->stats().hedge_wins.load(), 8u);
    EXPECT_EQ(b->stats().errors.load(), 0u);
  }
  {  // url fast: never hedged
    auto b = hedged(Url(fast.port()), slow.port(), 1000);
    ASSERT_TRUE(b);
    const InputBatch in = Questions(8, 8);
    const int slow_asked = slow.requests.load();
    ASSERT_TRUE(b->Predict(in.View(), &out).ok());
    ExpectAnswered(in, out);
    EXPECT_EQ(b->stats().hedges.load(), 0u);
    EXPECT_EQ(slow.requests.load(), slow_asked);
  }
  DeadPort dead;
  {  // url dead, hedge_ms 0: fail over to hedge_url
    auto b = hedged(Url(dead.port()), fast.port(), 0);
    ASSERT_TRUE(b);
    const InputBatch in = Questions(16, 8);
    ASSERT_TRUE(b->Predict(in.View(), &out).ok());
    ExpectAnswered(in, out);
    EXPECT_EQ(b->stats().hedges.load(), 8u);
    EXPECT_EQ(b->stats().hedge_wins.load(), 8u);
  }
  {  // url answers 400 (no [id:...] in the prompt): hedge_url is not asked
    auto b = hedged(Url(fast.port()), slow.port(), 0, "{question}");
    ASSERT_TRUE(b);
    const int slow_asked = slow.requests.load();
    const InputBatch in = Questions(24, 4);
    ASSERT_TRUE(b->Predict(in.View(), &out).ok());
    for (const Prediction& p : out) EXPECT_EQ(p.failure_kind, "http_400") << p.error;
    EXPECT_EQ(slow.requests.load(), slow_asked);
    EXPECT_EQ(b->stats().hedges.load(), 0u);
  }
}

// A streamed call (the last tier's single member: InputView::tokens) walks on to a
// fallback while nothing has been streamed; hedged, the sink is one side's: what the
// client was sent is the text of the answer taken, whichever side streamed first.
struct Collected : TokenSink {
  bool Text(std::string_view piece) override {
    std::lock_guard<std::mutex> lock(mu);
    text += piece;
    ++pieces;
    return true;
  }
  std::mutex mu;
  std::string text;
  int pieces = 0;
};

TEST_F(ChatEndpoints, AStreamedCallFallsBackOrHedgesAndStreamsOneSidesText) {
  OpenAiReplay& live = Upstream();
  live.SetStreaming(10, 0);
  DeadPort dead;
  // Question i streamed through b: its answer, paid once, and the pieces are its text.
  auto expect_streamed = [&](Backend& b, int i) {
    const InputBatch in = Questions(i, 1);
    InputView v = in.View();
    Collected sink;
    v.tokens = &sink;
    std::vector<Prediction> out;
    ASSERT_TRUE(b.Predict(v, &out).ok());
    ASSERT_EQ(out.size(), 1u);
    const auto [answer, usd] = Expected(ids_[i]);
    EXPECT_FALSE(out[0].failed) << out[0].error;
    EXPECT_EQ(out[0].answer, answer);
    EXPECT_NEAR(out[0].cost, usd, 1e-12) << ids_[i];
    EXPECT_GE(sink.pieces, 2) << "streamed in pieces";
    EXPECT_EQ(sink.text, out[0].text) << "what was streamed is the answer's text";
  };
  {  // url dead: the fallback streams
    auto b =
        Gpt4(Catalogue("fb.toml", Url(dead.port()), "retries = 1\nfallbacks = [\"" + Url(live.port(), "") + "\"]"));
    ASSERT_TRUE(b);
    for (int i = 0; i < 4; ++i) expect_streamed(*b, i);
    EXPECT_EQ(b->stats().errors.load(), 0u);
  }
  const std::string hedge =
      "retries = 1\ntimeout_ms = 10000\nhedge_url = \"" + Url(live.port(), "") + "\"\nhedge_ms = 50";
  {  // url silent for 1.5 s: hedge_url, asked after 50 ms, streams and answers
    OpenAiReplay& slow = Upstream(1500);
    slow.SetStreaming(10, 0);
    auto b = Gpt4(Catalogue("hedged.toml", Url(slow.port()), hedge));
    ASSERT_TRUE(b);
    for (int i = 4; i < 8; ++i) expect_streamed(*b, i);
    EXPECT_EQ(b->stats().hedge_wins.load(), 4u);
  }
  {  // url streams at once but slowly (10 pieces 100 ms apart), hedge_url fast: both
     // sides stream; the first to stream keeps the sink, the other's pieces are refused
    OpenAiReplay& trickle = Upstream();
    trickle.SetStreaming(10, 100);
    auto b = Gpt4(Catalogue("race.toml", Url(trickle.port()), hedge));
    ASSERT_TRUE(b);
    for (int i = 8; i < 12; ++i) expect_streamed(*b, i);
    EXPECT_EQ(b->stats().hedges.load(), 4u);
  }
}

// coe serve of a chat cascade: per member and endpoint, the calls and how they ended
// (coe_upstream_calls_total), and a hedged call whose both replies arrived is paid
// twice: its usage counts both (whether it happens depends on timing; what is checked
// holds either way), and coe_remote_hedges_paid_twice_total counts it.
class ServedEndpoints : public ChatEndpoints {
 protected:
  // Serves cascade {gpt4} as "ladder" from a catalogue whose prompt is "{input}".
  void Serve(const std::string& url, const std::string& extra) {
    std::ofstream(P("gpt4.toml")) << "[[tiers]]\nmembers = [\"gpt4\"]\n";
    coe_ = testing::ServeFiles(P("gpt4.toml"), Catalogue("served.toml", url, extra, "{input}"), "ladder");
    ASSERT_TRUE(coe_);
    client_ = std::make_unique<httplib::Client>("127.0.0.1", coe_->port());
    client_->set_read_timeout(30, 0);
  }
  // Asks the served cascade question `k`; its reply's JSON.
  nlohmann::json Ask(int k) {
    const nlohmann::json body = {
        {"model", "ladder"},
        {"messages", {{{"role", "user"}, {"content", "[id:" + ids_[k] + "] Which option fits question?"}}}}};
    auto res = client_->Post("/v1/chat/completions", body.dump(), "application/json");
    EXPECT_TRUE(res);
    if (!res) return {};
    EXPECT_EQ(res->status, 200) << res->body;
    return nlohmann::json::parse(res->body, nullptr, false);
  }
  // The value of one series of the metrics (-1: none).
  double Metric(const std::string& series) const {
    const std::string m = coe_->MetricsText();
    const size_t at = m.find(series + " ");
    return at == std::string::npos ? -1.0 : std::stod(m.substr(at + series.size() + 1));
  }
  static std::string Calls(const std::string& endpoint, const std::string& outcome) {
    return "coe_upstream_calls_total{member=\"gpt4\",endpoint=\"" + endpoint + "\",outcome=\"" + outcome + "\"}";
  }

  std::unique_ptr<Server> coe_;
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(ServedEndpoints, MetricsCountEachEndpointsCalls) {
  OpenAiReplay& live = Upstream();
  DeadPort dead;
  ASSERT_NO_FATAL_FAILURE(Serve(Url(dead.port()), "retries = 0\nfallbacks = [\"" + Url(live.port()) + "\"]"));
  for (int k = 0; k < 3; ++k) {
    const nlohmann::json j = Ask(k);
    EXPECT_EQ(j["coe"]["answer"], Expected(ids_[k]).first) << j.dump();
  }
  EXPECT_EQ(Metric(Calls(Url(dead.port()), "failed")), 3);
  EXPECT_EQ(Metric(Calls(Url(dead.port()), "ok")), 0);
  EXPECT_EQ(Metric(Calls(Url(live.port()), "ok")), 3);
  EXPECT_EQ(Metric(Calls(Url(live.port()), "failed")), 0);
  EXPECT_EQ(Metric("coe_member_errors_total{member=\"gpt4\"}"), 0);
  EXPECT_EQ(Metric("coe_degraded_examples_total{model=\"ladder\"}"), 0);
}

TEST_F(ServedEndpoints, AHedgedCallPaysEveryReplyThatArrived) {
  OpenAiReplay& a = Upstream(100);
  OpenAiReplay& b = Upstream(100);
  // Both sides at once, equally slow: which wins, and whether the other's reply arrives
  // before it is stopped, is the machine's timing.
  ASSERT_NO_FATAL_FAILURE(Serve(Url(a.port()), "retries = 0\nhedge_url = \"" + Url(b.port()) + "\"\nhedge_ms = 0.001"));
  constexpr int kCalls = 12;
  int paid_twice = 0;
  for (int k = 0; k < kCalls; ++k) {
    const nlohmann::json j = Ask(k);
    const testing::ReplayTokens t = testing::ReplayUsage(a.calls[kGpt4][ids_[k]].second);
    EXPECT_EQ(j["coe"]["answer"], Expected(ids_[k]).first) << j.dump();
    const int64_t in = j["usage"]["prompt_tokens"];
    ASSERT_TRUE(in == t.in || in == 2 * t.in) << j.dump();
    const int times = in == t.in ? 1 : 2;
    EXPECT_EQ(j["usage"]["completion_tokens"], times * t.out) << j.dump();
    EXPECT_NEAR(j["coe"]["cost_usd"].get<double>(), times * Expected(ids_[k]).second, 1e-12);
    paid_twice += times == 2;
  }
  std::cout << "[ hedge    ] " << paid_twice << " of " << kCalls << " hedged calls had both replies arrive\n";
  EXPECT_EQ(Metric("coe_remote_hedges_total{member=\"gpt4\"}"), kCalls);
  EXPECT_EQ(Metric("coe_remote_hedges_paid_twice_total{member=\"gpt4\"}"), paid_twice);
  const std::string ea = Url(a.port()), eb = Url(b.port(), "/v1");
  EXPECT_EQ(Metric(Calls(ea, "ok")) + Metric(Calls(eb, "ok")), kCalls);
  EXPECT_EQ(Metric(Calls(ea, "late")) + Metric(Calls(eb, "late")), paid_twice);
  EXPECT_EQ(Metric(Calls(ea, "stopped")) + Metric(Calls(eb, "stopped")), kCalls - paid_twice);
  EXPECT_EQ(Metric(Calls(ea, "failed")) + Metric(Calls(eb, "failed")), 0);
}

// The catalogue refuses a bad fallback naming the model, the key and the value (never
// a password or a query it may hold); so does `coe run` on it, before any call.
TEST(ChatFallbacks, BadValuesAreRefusedNamingModelKeyAndValue) {
  auto error = [](const std::string& model_keys) {
    auto cat = ParseCatalogue("[models.m]\n" + model_keys + "\n", "cat.toml", "");
    EXPECT_FALSE(cat.ok()) << model_keys;
    return cat.ok() ? std::string() : cat.status().message();
  };
  const std::string chat = "backend = \"openai\"\nurl = \"http://h:1/v1\"\nprompt = \"{q}\"\n";
  struct Case {
    std::string keys, want;
  };
  const Case cases[] = {
      {chat + "fallbacks = [\"ftp://h:2\"]",
       "cat.toml:5:13: model 'm': key 'fallbacks': 'ftp://h:2' must start with http:// or https://"},
      {chat + "fallbacks = [\"http://\"]", "model 'm': key 'fallbacks': 'http://' names no host"},
      {chat + "fallbacks = \"http://h:2\"", "model 'm': key 'fallbacks': expected an array of addresses"},
      {chat + "fallbacks = [\"http://h:2\", 3]", "model 'm': key 'fallbacks': expected an array of strings"},
      {chat + "fallbacks = [\"http://h:2\", \"http://h:2/v1\"]",
       "model 'm': key 'fallbacks': 'http://h:2/v1' is listed twice (an address without a path takes url's: it is "
       "'http://h:2')"},
      {chat + "fallbacks = [\"http://h:1\"]",
       "model 'm': key 'fallbacks': 'http://h:1' is url itself (an address without a path takes url's: it is "
       "'http://h:1/v1')"},
      {chat + "fallbacks = [\"http://h:1/v1/\"]", "model 'm': key 'fallbacks': 'http://h:1/v1/' is url itself"},
      {chat + "fallbacks = [\"http://me:s3cret@h:2/v1\"]",
       "model 'm': key 'fallbacks': 'http://***@h:2/v1' holds a user name or password"},
      {chat + "fallbacks = [\"http://h:2/v1?key=s3cret\"]",
       "model 'm': key 'fallbacks': 'http://h:2/v1?...' has a query or fragment"},
      {"backend = \"remote\"\nurl = \"http://h:1\"\nlabels = [\"a\"]\nfallbacks = [\"http://h:2\"]",
       "model 'm': key 'fallbacks': only a chat model (backend = \"openai\") takes fallbacks; a remote model fails "
       "over to its hedge_url with hedge_ms = 0"},
  };
  for (const Case& c : cases) {
    const std::string got = error(c.keys);
    EXPECT_NE(got.find(c.want), std::string::npos) << got;
    EXPECT_EQ(got.find("s3cret"), std::string::npos) << got;
  }
  // In [defaults] too, checked against each model's own url.
  EXPECT_NE(error("backend = \"openai\"\nurl = \"http://h:2/v1\"\nprompt = \"{q}\"\n"
                  "[defaults]\nfallbacks = [\"http://h:2\"]")
                .find("is url itself"),
            std::string::npos);
  // A good one reads; `coe run` on a bad one stops before any call, naming it.
  auto ok = ParseCatalogue("[models.m]\n" + chat + "fallbacks = [\"http://h:2\", \"https://h:3/v2\"]\n", "c", "");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  const fs::path dir = fs::temp_directory_path() / ("coe_fallbacks_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "cat.toml") << "[models.m]\n" << chat << "fallbacks = [\"htp://h:2\"]\n";
  std::ofstream(dir / "c.toml") << "[[tiers]]\nmembers = [\"m\"]\n";
  std::ofstream(dir / "in.jsonl") << "{\"id\": \"1\", \"q\": \"x\"}\n";
  const auto r = RunCoe("run --cascade " + (dir / "c.toml").string() + " --models " + (dir / "cat.toml").string() +
                        " --data " + (dir / "in.jsonl").string());
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("model 'm': key 'fallbacks': 'htp://h:2' must start with http:// or https://"),
            std::string::npos)
      << r.out;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace coe
