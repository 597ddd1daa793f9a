// The server says no only where the answer is no (issue 22): a closed-loop client at
// the documented limit is never refused; a body deadline is the client's time and
// ends in 408; requests whose client went away stop paying upstream calls; SIGTERM
// is bounded by a grace period. Real servers on loopback throughout.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

#include "server_testing.h"

namespace coe {
namespace {

using namespace coe::testing;

// N client threads = max_inflight, each sending its next request as soon as it has the
// previous answer (a closed loop), many rounds: no request is ever refused, on the
// infer route (batched and not) and on the chat route.
void ClosedLoop(int port, const std::string& path, int clients, int rounds,
                const std::function<std::string(int client, int round)>& body) {
  std::atomic<int> refused{0}, other{0};
  std::string first_other;
  std::mutex mu;
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c)
    threads.emplace_back([&, c] {
      httplib::Client client("127.0.0.1", port);
      client.set_keep_alive(true);
      client.set_tcp_nodelay(true);
      client.set_read_timeout(std::chrono::seconds(60));
      for (int r = 0; r < rounds; ++r) {
        auto res = client.Post(path, body(c, r), "application/json");
        if (res && res->status == 200) continue;
        (res && res->status == 503 ? refused : other)++;
        std::lock_guard<std::mutex> lock(mu);
        if (first_other.empty()) first_other = res ? std::to_string(res->status) + " " + res->body : "no response";
      }
    });
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(refused.load(), 0) << path << ": " << first_other;
  EXPECT_EQ(other.load(), 0) << path << ": " << first_other;
}

TEST(ServerLimits, ClosedLoopAtMaxInflightIsNeverRefused) {
  constexpr int kLimit = 16;
  const std::string one = InferBody(TestImages(1));
  for (int max_batch : {1, 64}) {
    ServerOptions o;
    o.max_inflight = kLimit;
    o.max_batch = max_batch;
    o.max_queue_delay_us = max_batch > 1 ? 2000 : 0;  // full batches: every client waits in one
    o.access_log = AccessLog::kOff;
    auto s = Server::Create({{"fashion", SlowCascade("linear", std::chrono::milliseconds(0))}}, o);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    ASSERT_TRUE((*s)->Start("127.0.0.1", 0).ok());
    ClosedLoop((*s)->port(), "/v2/models/fashion/infer", kLimit, 400, [&](int, int) { return one; });
  }
  ChatUpstream chat;
  ServerOptions o;
  o.max_inflight = kLimit;
  auto s = chat.Serve(o);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  ASSERT_TRUE((*s)->Start("127.0.0.1", 0).ok());
  ClosedLoop((*s)->port(), "/v1/chat/completions", kLimit, 100,
             [](int c, int r) { return ChatUpstream::Body((c * 100 + r) % 64); });
}

// A raw HTTP request for `path` with a JSON `body`.
std::string RawPost(const std::string& path, const std::string& body) {
  return "POST " + path +
         " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\n\r\n" + body;
}

// Sends `request` on a new connection and closes it at once: a client gone.
void SendAndLeave(int port, const std::string& request) {
  const int fd = Dial(port);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, request.data(), request.size()), static_cast<ssize_t>(request.size()));
  close(fd);
}

// Waits (at most `seconds`) until the metrics page holds `line`.
bool WaitForLine(const Server& server, const std::string& line, double seconds) {
  const auto t0 = std::chrono::steady_clock::now();
  while (server.MetricsText().find(line + "\n") == std::string::npos) {
    if (Since(t0) > seconds) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

// Clients that send a chat request and go away at once: their requests are cancelled
// (counted as 499). The tier-1 calls already in flight are aborted, so every request
// is over long before the upstream's 3 s, and no request reaches tier 2.
TEST(ServerLimits, ClientsThatGoAwayStopPayingUpstreamCalls) {
  constexpr int kClients = 20;
  ChatUpstream chat;
  chat.replay.latency_ms = {{"a", 3000}, {"b", 3000}};
  auto s = chat.Serve();
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  Server& server = **s;
  ASSERT_TRUE(server.Start("127.0.0.1", 0).ok());
  const auto t0 = std::chrono::steady_clock::now();
  for (int k = 0; k < kClients; ++k)
    SendAndLeave(server.port(), RawPost("/v1/chat/completions", ChatUpstream::Body(k)));
  const std::string over = "coe_requests_total{model=\"chat\",code=\"499\"} " + std::to_string(kClients);
  EXPECT_TRUE(WaitForLine(server, over, 20)) << server.MetricsText();
  const double seconds = Since(t0);
  EXPECT_LT(seconds, 2.5);
  int tier1 = 0, tier2 = 0;
  for (int k = 0; k < kClients; ++k) {
    tier1 += chat.Calls("a", k) + chat.Calls("b", k);
    tier2 += chat.Calls("c", k);
  }
  std::printf(
      "%d clients gone: %d tier-1 calls (at most one per member and request), %d tier-2 calls, over in %.2f s\n",
      kClients, tier1, tier2, seconds);
  EXPECT_LE(tier1, 2 * kClients);
  EXPECT_EQ(tier2, 0);
  EXPECT_TRUE(WaitForLine(server, "coe_inflight_requests 0", 5));
}

// A remote member's call to a hung upstream is aborted when the client goes away: the
// request is over at once, not after the member's 30 s timeout.
TEST(ServerLimits, AClientGoneAbortsItsRemoteCall) {
  HungServer hung;
  ASSERT_GT(hung.port(), 0);
  auto cat =
      ParseCatalogue("[models.m]\nbackend = \"remote\"\nurl = \"http://127.0.0.1:" + std::to_string(hung.port()) +
                         "\"\nlabels = [\"x\", \"y\"]\ninput_shape = [2]\ntimeout_ms = 30000\nretries = 0\n",
                     "t.toml", "");
  ASSERT_TRUE(cat.ok()) << cat.status().ToString();
  CascadeSpec spec;
  spec.tiers.push_back(TierSpec{{"m"}, {}});
  ServerOptions o;
  o.name = "hung";
  o.access_log = AccessLog::kOff;
  auto s = Server::Create(spec, *cat, EngineOptions{}, o);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  Server& server = **s;
  ASSERT_TRUE(server.Start("127.0.0.1", 0).ok());
  const auto t0 = std::chrono::steady_clock::now();
  SendAndLeave(server.port(), RawPost("/v2/models/hung/infer",
                                      R"({"inputs":[{"name":"x","datatype":"FP32","shape":[1,2],"data":[1,2]}]})"));
  EXPECT_TRUE(WaitForLine(server, "coe_requests_total{model=\"hung\",code=\"499\"} 1", 40)) << server.MetricsText();
  EXPECT_LT(Since(t0), 2.5);
  EXPECT_TRUE(WaitForLine(server, "coe_inflight_requests 0", 5));
}

// SIGTERM with a request in flight on a member whose upstream hangs (a remote member
// on the infer route, a chat member on the chat route; both with 60 s timeouts):
// `coe serve` stops within --shutdown-grace-ms and a little, and the client gets 503
// "server stopping".
TEST(ServerShutdown, SigtermCancelsWhatOutlastsTheGrace) {
  HungServer hung;
  ASSERT_GT(hung.port(), 0);
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("coe_shutdown_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string url = "http://127.0.0.1:" + std::to_string(hung.port());
  std::ofstream(dir / "remote.toml") << "[models.m]\nbackend = \"remote\"\nurl = \"" << url
                                     << "\"\nlabels = [\"x\", \"y\"]\ninput_shape = [2]\ntimeout_ms = 60000\n";
  std::ofstream(dir / "chat.toml") << "[models.m]\nbackend = \"openai\"\nurl = \"" << url
                                   << "/v1\"\nprompt = \"{input}\"\nanswer = \"choice\"\ntimeout_ms = 60000\n";
  std::ofstream(dir / "cascade.toml") << "[[tiers]]\nmembers = [\"m\"]\n";
  constexpr int kGraceMs = 500;
  struct Case {
    std::string models, path, body;
  };
  const std::vector<Case> cases = {
      {"remote.toml", "/v2/models/c/infer",
       R"({"inputs":[{"name":"x","datatype":"FP32","shape":[1,2],"data":[1,2]}]})"},
      {"chat.toml", "/v1/chat/completions", R"({"model":"c","messages":[{"role":"user","content":"hi"}]})"},
  };
  for (const Case& c : cases) {
    const ServeProcess serve =
        SpawnServe({"--cascade", (dir / "cascade.toml").string(), "--models", (dir / c.models).string(), "--port", "0",
                    "--name", "c", "--quiet", "--shutdown-grace-ms", std::to_string(kGraceMs)});
    ASSERT_GT(serve.port, 0) << serve.line;
    auto client = std::async(std::launch::async, [&] { return Http(serve.port, "POST", c.path, c.body); });
    const auto t_wait = std::chrono::steady_clock::now();
    while (Http(serve.port, "GET", "/metrics").raw.find("coe_inflight_requests 1\n") == std::string::npos &&
           Since(t_wait) < 20)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    const auto t0 = std::chrono::steady_clock::now();
    ASSERT_EQ(kill(serve.pid, SIGTERM), 0);
    int status = 0;
    ASSERT_EQ(waitpid(serve.pid, &status, 0), serve.pid);
    const double seconds = Since(t0);
    std::printf("%s: SIGTERM to exit %.2f s (grace %d ms)\n", c.models.c_str(), seconds, kGraceMs);
    EXPECT_LT(seconds, kGraceMs / 1000.0 + 2.0) << c.models;
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
    const Reply r = client.get();
    EXPECT_EQ(r.status, 503) << c.models << ": " << r.raw;
    EXPECT_NE(r.raw.find("server stopping"), std::string::npos) << r.raw;
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace coe
