// True streaming of chat replies, against real servers on loopback: the transport's
// streamed replies (chunked, HTTP/1.0, bounded buffering under a client that does not
// read), the reader of an upstream's server-sent events, and `coe serve` streaming its
// last tier's member as the replay server (testing/openai_replay.h) produces it: the
// first piece reaches the client while the upstream provably holds the rest; streamed
// and plain replies agree; a client that goes away closes the upstream connection; an
// upstream that fails after its first bytes ends the stream with an error event.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "backends/chat_stream.h"
#include "coe/recordings.h"
#include "coe/server.h"
#include "llm_testing.h"
#include "server/http_transport.h"
#include "server_testing.h"
#include "testing/openai_replay.h"

namespace coe::testing {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// --- The transport ---

// A transport whose every request is answered by a stream that `produce` fills, on a
// thread of its own.
class StreamServer {
 public:
  explicit StreamServer(std::function<void(http::ReplyStream&)> produce) : produce_(std::move(produce)) {
    auto t = http::Transport::Listen(
        "127.0.0.1", 0, http::TransportOptions{},
        [this](http::Request&&, http::Responder respond) {
          auto s = std::make_shared<http::ReplyStream>();
          http::Reply r;
          r.content_type = "text/plain";
          r.stream = s;
          respond(std::move(r));
          producers_.emplace_back([this, s] { produce_(*s); });  // the I/O thread only starts it
        },
        [](int status, const std::string&, const std::string& message) {
          http::Reply r;
          r.status = status;
          r.body = message;
          return r;
        });
    EXPECT_TRUE(t.ok());
    transport_ = std::move(*t);
  }
  ~StreamServer() {
    transport_->Stop();
    transport_->Wait();
    for (std::thread& p : producers_) p.join();
  }
  int port() const { return transport_->port(); }

 private:
  std::function<void(http::ReplyStream&)> produce_;
  std::vector<std::thread> producers_;  // one request per test: written by one I/O thread, read after Wait
  std::unique_ptr<http::Transport> transport_;
};

// The body of a chunked response (the bytes after its head), decoded.
std::string Unchunk(std::string_view body) {
  std::string out;
  while (!body.empty()) {
    const size_t eol = body.find("\r\n");
    const size_t n = std::stoul(std::string(body.substr(0, eol)), nullptr, 16);
    if (n == 0) break;
    out.append(body.substr(eol + 2, n));
    body.remove_prefix(eol + 2 + n + 2);
  }
  return out;
}

std::string ReadUntilClosed(int fd) {
  std::string got;
  char buf[1 << 16];
  for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) got.append(buf, static_cast<size_t>(n));
  return got;
}

// A client that reads nothing holds the producer at the bound (ReplyStream::kMaxBuffered
// plus the sockets' buffers), never the whole reply in memory; once it reads, the rest
// comes, chunked, whole and in order.
TEST(StreamTransport, AClientThatDoesNotReadHoldsTheProducerAtTheBound) {
  constexpr size_t kTotal = 32u << 20, kPiece = 16u << 10;
  std::atomic<size_t> produced{0};
  std::atomic<bool> finished{false};
  StreamServer server([&](http::ReplyStream& s) {
    std::string piece(kPiece, 'x');
    for (size_t k = 0; produced < kTotal; ++k) {
      piece[0] = static_cast<char>('a' + k % 26);  // each piece marked: the order is checked
      if (!s.Write(piece)) break;
      produced += kPiece;
    }
    s.Finish(200);
    finished = true;
  });
  const int fd = Dial(server.port());
  ASSERT_GE(fd, 0);
  const std::string request = "GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  ASSERT_EQ(write(fd, request.data(), request.size()), static_cast<ssize_t>(request.size()));
  // Wait until the producer is stuck (no progress for 300 ms): unbounded, it would
  // have queued all 32 MiB at once and finished.
  size_t last = 0;
  for (auto still = Clock::now(); Since(still) < 0.3;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (produced != last) last = produced, still = Clock::now();
  }
  EXPECT_FALSE(finished);
  EXPECT_LT(produced.load(), size_t{16} << 20) << "bytes queued while the client read nothing";
  const std::string got = ReadUntilClosed(fd);
  close(fd);
  const size_t head = got.find("\r\n\r\n");
  ASSERT_NE(head, std::string::npos);
  EXPECT_NE(got.find("Transfer-Encoding: chunked"), std::string::npos) << got.substr(0, head);
  EXPECT_EQ(got.find("Content-Length"), std::string::npos) << got.substr(0, head);
  const std::string body = Unchunk(std::string_view(got).substr(head + 4));
  ASSERT_EQ(body.size(), kTotal);
  for (size_t k = 0; k < kTotal / kPiece; ++k) ASSERT_EQ(body[k * kPiece], static_cast<char>('a' + k % 26)) << k;
  EXPECT_TRUE(finished);
}

// An HTTP/1.0 client gets the stream unchunked, ended by the connection's close; a
// client that goes away makes the producer's next Write fail.
TEST(StreamTransport, Http10IsCloseDelimitedAndAGoneClientStopsTheProducer) {
  std::atomic<int> refused{0};
  StreamServer server([&](http::ReplyStream& s) {
    for (int k = 0; k < 3; ++k) s.Write("piece " + std::to_string(k) + "\n");
    s.Finish(200, "end\n");
  });
  int fd = Dial(server.port());
  ASSERT_GE(fd, 0);
  const std::string request = "GET / HTTP/1.0\r\n\r\n";
  ASSERT_EQ(write(fd, request.data(), request.size()), static_cast<ssize_t>(request.size()));
  std::string got = ReadUntilClosed(fd);
  close(fd);
  EXPECT_EQ(got.find("chunked"), std::string::npos) << got;
  EXPECT_EQ(got.substr(got.find("\r\n\r\n") + 4), "piece 0\npiece 1\npiece 2\nend\n");

  std::atomic<bool> gone{false};
  StreamServer slow([&](http::ReplyStream& s) {
    while (s.Write(std::string(1 << 10, 'y'))) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    refused++;
    s.Finish(499);
    gone = true;
  });
  fd = Dial(slow.port());
  ASSERT_GE(fd, 0);
  const std::string get = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_EQ(write(fd, get.data(), get.size()), static_cast<ssize_t>(get.size()));
  char buf[256];
  ASSERT_GT(read(fd, buf, sizeof buf), 0);  // the stream has begun
  close(fd);
  const auto t0 = Clock::now();
  while (!gone && Since(t0) < 20) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_TRUE(gone);
  EXPECT_EQ(refused, 1);
}

// --- The reader of an upstream's events ---

struct Pieces : TokenSink {
  std::vector<std::string> got;
  bool Text(std::string_view piece) override {
    got.emplace_back(piece);
    return true;
  }
};

// The completion is kept as the plain response says it, whatever the events' line
// endings and splits; comments and other fields are read past.
TEST(ChatStreamReader, KeepsTheCompletionAsAPlainResponseWouldSayIt) {
  const std::string events =
      ": a comment\r\n"
      "event: message\r\n"
      "data:{\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\r\n\r\n"
      "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"The answer \"},"
      "\"logprobs\":{\"content\":[{\"token\":\"The\",\"logprob\":-0.1}]}}]}\n\n"
      "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"is (B).\"},"
      "\"logprobs\":{\"content\":[{\"token\":\"B\",\"logprob\":-0.5}]}}]}\n\n"
      "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}\n\n"
      "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":5}}\n\n"
      "data: [DONE]\n\n";
  for (size_t split : {size_t{1}, size_t{7}, events.size()}) {
    Pieces sink;
    ChatStreamReader reader(&sink);
    for (size_t at = 0; at < events.size(); at += split)
      ASSERT_TRUE(reader.Feed(std::string_view(events).substr(at, split)));
    auto c = reader.Completion();
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    EXPECT_EQ(sink.got, (std::vector<std::string>{"The answer ", "is (B)."}));
    const auto& c0 = (*c)["choices"][0];
    EXPECT_EQ(c0["message"]["content"], "The answer is (B).");
    EXPECT_EQ(c0["finish_reason"], "length");
    EXPECT_EQ(c0["logprobs"]["content"].size(), 2u);
    EXPECT_EQ((*c)["usage"]["completion_tokens"], 5);
  }
}

TEST(ChatStreamReader, AnErrorEventOrACutStreamIsAFailure) {
  ChatStreamReader error(nullptr);
  EXPECT_FALSE(error.Feed("data: {\"error\":{\"message\":\"overloaded\"}}\n\n"));
  EXPECT_NE(error.error().find("overloaded"), std::string::npos);
  EXPECT_FALSE(error.Completion().ok());
  ChatStreamReader cut(nullptr);
  EXPECT_TRUE(cut.Feed("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"half\"}}]}\n\n"));
  EXPECT_NE(cut.Completion().status().message().find("ended before its last event"), std::string::npos);
  ChatStreamReader garbage(nullptr);
  EXPECT_FALSE(garbage.Feed("data: {not json\n\n"));
  // The request asks for the stream: the fields go first in the body's object.
  std::string own;
  const std::vector<std::string_view> body = StreamingBody({"{\"model\":\"m\"", ",\"x\":1}"}, &own);
  std::string whole;
  for (std::string_view p : body) whole += p;
  EXPECT_EQ(whole, "{\"stream\":true,\"stream_options\":{\"include_usage\":true},\"model\":\"m\",\"x\":1}");
}

// --- coe serve, streaming ---

// A reply read as it arrives: its events parsed, its content pieces counted.
struct Streamed {
  int status = 0;
  httplib::Headers headers;
  std::string body;
  std::vector<json> events;  // every event but [DONE]
  bool done = false;         // [DONE] came
  std::string content;
  int pieces = 0;  // events with content
  json Find(const char* key) const {
    for (const json& e : events)
      if (e.contains(key) && !e[key].is_null()) return e[key];
    return nullptr;
  }
};

class Streaming : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(SharedArc())) GTEST_SKIP() << "no shared RouterBench data at " << SharedArc();
    dir_ = TestDir("coe_stream");
    ASSERT_TRUE(replay_.Load(SharedArc()));
    replay_.Start();
    auto s = ServeLadder(dir_, replay_.port(), 20000, 2);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    coe_ = std::move(*s);
    // Questions the ladder answers at tier 1 (its three agree) and at tier 2.
    for (const auto& [id, call] : replay_.calls.at(kModels.at("gpt4"))) {
      const std::string a = Answer("mistral", id);
      (!a.empty() && a == Answer("mixtral", id) && a == Answer("llama70", id) ? tier1_ : tier2_).push_back(id);
      if (tier1_.size() > 20 && tier2_.size() > 20) break;
    }
    ASSERT_GT(tier1_.size(), 5u);
    ASSERT_GT(tier2_.size(), 5u);
  }
  void TearDown() override {
    if (coe_) coe_->Stop();
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  std::string Answer(const std::string& member, const std::string& id) {
    auto& by_id = replay_.calls.at(kModels.at(member));
    auto it = by_id.find(id);
    return it == by_id.end() ? "" : it->second.first;
  }
  static json Body(const std::string& model, const std::string& id, bool stream, bool include_usage = true) {
    json b = {{"model", model},
              {"messages", {{{"role", "user"}, {"content", "[id:" + id + "] Which option fits question " + id + "?"}}}},
              {"stream", stream}};
    if (stream && include_usage) b["stream_options"] = {{"include_usage", true}};
    return b;
  }
  json Plain(const std::string& model, const std::string& id) {
    httplib::Client c("127.0.0.1", coe_->port());
    c.set_read_timeout(60, 0);
    auto r = c.Post("/v1/chat/completions", Body(model, id, false).dump(), "application/json");
    EXPECT_TRUE(r && r->status == 200) << (r ? r->body : "no reply");
    return r ? json::parse(r->body, nullptr, false) : json();
  }
  // Posts a streamed request; `on_piece(k)` runs as the k-th piece of content arrives.
  Streamed Stream(const json& body, const std::function<void(int)>& on_piece = nullptr) {
    httplib::Client c("127.0.0.1", coe_->port());
    c.set_read_timeout(60, 0);
    httplib::Request req;
    req.method = "POST";
    req.path = "/v1/chat/completions";
    req.headers = {{"Content-Type", "application/json"}};
    req.body = body.dump();
    Streamed out;
    std::string pending;
    req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
      out.body.append(data, n);
      pending.append(data, n);
      for (size_t end; (end = pending.find("\n\n")) != std::string::npos;) {
        const std::string event = pending.substr(0, end);
        pending.erase(0, end + 2);
        if (!event.starts_with("data: ")) continue;
        if (event == "data: [DONE]") {
          out.done = true;
          continue;
        }
        out.events.push_back(json::parse(event.substr(6), nullptr, false));
        const json& e = out.events.back();
        if (!e.contains("choices") || e["choices"].empty() || !e["choices"][0]["delta"].contains("content")) continue;
        const std::string piece = e["choices"][0]["delta"]["content"];
        if (piece.empty()) continue;
        out.content += piece;
        ++out.pieces;
        if (on_piece) on_piece(out.pieces);
      }
      return true;
    };
    httplib::Response res;
    httplib::Error err;
    c.send(req, res, err);
    out.status = res.status;
    out.headers = res.headers;
    if (out.status != 200) out.body = res.body.empty() ? out.body : res.body;
    return out;
  }
  // Every call of gpt4 (the last tier) meets `fault`.
  void FailGpt4(OpenAiReplay::Fault fault) {
    replay_.SetFaults([gpt4 = kModels.at("gpt4"), fault](const std::string& model, const std::string&, int) {
      return model == gpt4 ? fault : OpenAiReplay::Fault::kNone;
    });
  }
  // The metric `series` (0 when absent), waited for until it reaches `want` (a
  // stream is counted as it ends, after its client has read it).
  double Metric(const std::string& series, double want = -1) {
    const auto t0 = Clock::now();
    for (;;) {
      const std::string m = coe_->MetricsText();
      const size_t at = m.find(series + " ");
      const double v = at == std::string::npos ? 0 : std::stod(m.substr(at + series.size() + 1));
      if (want < 0 || v >= want || Since(t0) > 20) return v;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  OpenAiReplay replay_;
  std::unique_ptr<Server> coe_;
  std::vector<std::string> tier1_, tier2_;
  fs::path dir_;
};

// The last tier's member streams: its first piece reaches the client while the replay
// server holds its second (HoldAfter(1): released only once the client has the
// first), so the client has it before the upstream sent its last. The rest follows
// in several chunks; content, answer, exit tier, cost and usage are the plain reply's.
TEST_F(Streaming, TheLastTierStreamsBeforeTheUpstreamsLastToken) {
  replay_.SetStreaming(20, 50);
  for (const std::string& model : {std::string("ladder"), std::string("gpt4")}) {
    const std::string& id = tier2_[0];
    replay_.HoldAfter(1);
    int sent_at_first = -1;
    double first_s = 0;
    const auto t0 = Clock::now();
    const Streamed s = Stream(Body(model, id, true), [&](int k) {
      if (k != 1) return;
      first_s = Since(t0);
      sent_at_first = replay_.PiecesSent();
      replay_.Release();
    });
    const double total_s = Since(t0);
    ASSERT_EQ(s.status, 200) << s.body;
    EXPECT_EQ(sent_at_first, 1) << model << ": pieces the upstream had sent when the client got the first";
    EXPECT_GE(s.pieces, 10) << model << ": the completion in several chunks";
    EXPECT_TRUE(s.done) << s.body;
    auto te = s.headers.find("Transfer-Encoding");
    EXPECT_TRUE(te != s.headers.end() && te->second == "chunked");
    EXPECT_FALSE(s.headers.count("Content-Length"));
    bool include_usage = false;
    EXPECT_TRUE(replay_.StreamAsked(kModels.at("gpt4"), id, &include_usage));
    EXPECT_TRUE(include_usage) << "the upstream is asked for its usage";
    const json p = Plain(model, id);
    EXPECT_EQ(s.content, p["choices"][0]["message"]["content"]) << model;
    EXPECT_EQ(s.Find("coe"), p["coe"]) << model;
    EXPECT_EQ(s.Find("usage"), p["usage"]) << model;
    EXPECT_EQ(s.Find("coe")["exit_tier"], model == "ladder" ? 2 : 1);
    std::printf("[ stream   ] %s: first piece after %.0f ms, whole stream %.0f ms (upstream: first piece %.0f ms)\n",
                model.c_str(), 1e3 * first_s, 1e3 * total_s, 1e3 * replay_.FirstPieceSeconds(kModels.at("gpt4"), id));
  }
}

// Streamed and plain replies agree question by question, at either exit tier; an
// answer of tier 1 is sent whole as soon as it is decided (its members do not stream).
TEST_F(Streaming, StreamedAndPlainRepliesAgree) {
  std::vector<std::string> ids(tier1_.begin(), tier1_.begin() + 5);
  ids.insert(ids.end(), tier2_.begin(), tier2_.begin() + 5);
  for (const std::string& id : ids) {
    for (bool include_usage : {true, false}) {
      const Streamed s = Stream(Body("ladder", id, true, include_usage));
      ASSERT_EQ(s.status, 200) << s.body;
      const json p = Plain("ladder", id);
      EXPECT_TRUE(s.done);
      EXPECT_EQ(s.content, p["choices"][0]["message"]["content"]) << id;
      EXPECT_EQ(s.Find("coe"), p["coe"]) << id;
      EXPECT_EQ(s.Find("usage"), include_usage ? p["usage"] : json()) << id;
      const bool tier1 = p["coe"]["exit_tier"] == 1;
      EXPECT_EQ(tier1, std::find(tier1_.begin(), tier1_.end(), id) != tier1_.end()) << id;
      if (tier1) {
        EXPECT_EQ(s.pieces, 1) << id;
        EXPECT_TRUE(s.headers.count("Content-Length")) << id;
        bool asked = false;
        EXPECT_FALSE(replay_.StreamAsked(kModels.at("mistral"), id, &asked)) << "a voting member never streams";
      }
    }
  }
}

// An upstream that answers a request for a stream with a plain response (a server
// that cannot stream): the reply is the same, sent whole at the end.
TEST_F(Streaming, AnUpstreamThatDoesNotStreamIsReadWhole) {
  replay_.IgnoreStream(true);
  const std::string& id = tier2_[4];
  const Streamed s = Stream(Body("ladder", id, true));
  ASSERT_EQ(s.status, 200) << s.body;
  const json p = Plain("ladder", id);
  EXPECT_TRUE(s.done);
  EXPECT_EQ(s.pieces, 1);
  EXPECT_EQ(s.content, p["choices"][0]["message"]["content"]);
  EXPECT_EQ(s.Find("coe"), p["coe"]);
  EXPECT_EQ(s.Find("usage"), p["usage"]);
}

// A reply of tool calls streams as deltas (an id and name, then arguments): read into
// the same calls, answer and cost as the plain reply; with no content to relay, it
// is sent whole when the call ends.
TEST_F(Streaming, ToolCallsAreReadFromTheStream) {
  const std::string& id = tier2_[5];
  const json calls = {{{"id", "call_1"},
                       {"type", "function"},
                       {"function", {{"name", "answer"}, {"arguments", "{\"letter\": \"B\"}"}}}}};
  replay_.SetToolCalls({{kModels.at("gpt4") + "\n" + id, calls}});
  const Streamed s = Stream(Body("gpt4", id, true));
  ASSERT_EQ(s.status, 200) << s.body;
  bool include_usage = false;
  EXPECT_TRUE(replay_.StreamAsked(kModels.at("gpt4"), id, &include_usage));
  const json p = Plain("gpt4", id);
  EXPECT_EQ(p["choices"][0]["message"]["tool_calls"], calls);
  json streamed_calls;
  for (const json& e : s.events)
    if (!e["choices"].empty() && e["choices"][0]["delta"].contains("tool_calls"))
      streamed_calls = e["choices"][0]["delta"]["tool_calls"];
  ASSERT_TRUE(streamed_calls.is_array()) << s.body;
  ASSERT_EQ(streamed_calls.size(), 1u);
  streamed_calls[0].erase("index");
  EXPECT_EQ(streamed_calls, calls);
  EXPECT_EQ(s.Find("coe"), p["coe"]);
  EXPECT_EQ(s.Find("usage"), p["usage"]);
}

// A client that closes its connection mid-stream cancels the run: the upstream call it
// started is aborted and its connection closed at once (the replay server, holding
// its stream after the first piece, notices it), and the request is logged as 499.
TEST_F(Streaming, AClientThatGoesAwayClosesTheUpstreamConnection) {
  replay_.SetStreaming(20, 50);
  replay_.HoldAfter(1);
  const std::string body = Body("ladder", tier2_[1], true).dump();
  const int fd = Dial(coe_->port());
  ASSERT_GE(fd, 0);
  const std::string request =
      "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
      "Content-Length: " +
      std::to_string(body.size()) + "\r\n\r\n" + body;
  ASSERT_EQ(write(fd, request.data(), request.size()), static_cast<ssize_t>(request.size()));
  std::string got;
  char buf[4096];
  while (got.find("\"content\":\"", got.find("\"role\"")) == std::string::npos) {  // the first piece
    pollfd p{fd, POLLIN, 0};
    ASSERT_GT(poll(&p, 1, 20000), 0) << got;
    const ssize_t n = read(fd, buf, sizeof buf);
    ASSERT_GT(n, 0) << got;
    got.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  const auto closed = Clock::now();
  while (replay_.StreamsAborted() == 0 && Since(closed) < 20) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  ASSERT_EQ(replay_.StreamsAborted(), 1) << "the upstream connection stayed open";
  const double ms = std::chrono::duration<double, std::milli>(replay_.AbortNoticed() - closed).count();
  std::printf("[ stream   ] the upstream saw its connection closed %.0f ms after the client left\n", ms);
  EXPECT_LT(ms, 5000);  // the stream was held for 30 s: only the cancellation ends it early
  EXPECT_EQ(replay_.PiecesSent(), 1);
  EXPECT_EQ(Metric("coe_requests_total{model=\"ladder\",code=\"499\"}", 1), 1);
  replay_.HoldAfter(0);
  EXPECT_EQ(Stream(Body("ladder", tier2_[1], true)).status, 200);  // the server goes on
}

// An upstream that fails after its first bytes: the status was sent, so the stream
// ends with an error event (no [DONE]); the call is not retried (its text was passed
// on), and the request counts as a 502 failure.
TEST_F(Streaming, AnUpstreamThatFailsMidStreamEndsItWithAnErrorEvent) {
  const std::string gpt4 = kModels.at("gpt4");
  FailGpt4(OpenAiReplay::Fault::kStreamCut);
  const std::string& id = tier2_[2];
  const Streamed s = Stream(Body("ladder", id, true));
  ASSERT_EQ(s.status, 200);
  EXPECT_GE(s.pieces, 1);
  EXPECT_FALSE(s.done) << s.body;
  ASSERT_FALSE(s.events.empty());
  const json& last = s.events.back();
  ASSERT_TRUE(last.contains("error")) << s.body;
  EXPECT_NE(last["error"]["message"].get<std::string>().find("failed after its first bytes"), std::string::npos)
      << last.dump();
  EXPECT_EQ(replay_.Attempts(gpt4, id), 1) << "a stream that began is never retried";
  EXPECT_EQ(Metric("coe_requests_total{model=\"ladder\",code=\"502\"}", 1), 1);
  EXPECT_GE(Metric("coe_member_failures_total{member=\"gpt4\",reason=\"timeout\"}"), 1);
}

// An upstream that fails before its first byte is the cascade's failure as usual:
// retried, then the same reply (status, facts) streamed or not.
TEST_F(Streaming, AnUpstreamThatFailsBeforeItsFirstByteIsAnsweredAsUsual) {
  const std::string gpt4 = kModels.at("gpt4");
  FailGpt4(OpenAiReplay::Fault::k500);
  const std::string& id = tier2_[3];
  const Streamed s = Stream(Body("ladder", id, true));
  httplib::Client c("127.0.0.1", coe_->port());
  auto p = c.Post("/v1/chat/completions", Body("ladder", id, false).dump(), "application/json");
  ASSERT_TRUE(p);
  EXPECT_EQ(s.status, p->status);
  EXPECT_EQ(replay_.Attempts(gpt4, id), 6) << "3 attempts each";
  if (p->status == 200) {
    EXPECT_EQ(s.Find("coe"), json::parse(p->body)["coe"]);
    EXPECT_EQ(s.Find("coe")["degraded"], true);
  } else {
    EXPECT_EQ(json::parse(s.body)["error"], json::parse(p->body)["error"]);
  }
}

}  // namespace
}  // namespace coe::testing
