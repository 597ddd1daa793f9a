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

}  // namespace
}  // namespace coe
