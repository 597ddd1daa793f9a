// An open-loop HTTP load generator (one thread, epoll): requests are sent at a fixed
// rate whatever the server's pace (unlike wrk, whose connections wait for their
// answers), and each latency counts from the moment its request was due, so queueing
// anywhere (in this client for a free connection, in the kernel, in the server) is
// measured. Give it a core of its own (taskset): a client that shares the server's
// cores measures itself.
//
//   open_loop --port P --path /v2/models/m/infer --body FILE --rate R --seconds S
//             [--connections C]
// Prints one line: sent, ok (200), busy (503), other, p50/p99 of the 200s and p99 of
// the 503s in milliseconds, and the rate achieved.
#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "loopback.h"
#include "median.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Conn {
  int fd = -1;
  bool busy = false;
  Clock::time_point due;
  std::string in;
};

using coe::bench::Complete;
using coe::bench::Dial;
using coe::bench::Percentile;

}  // namespace

int main(int argc, char** argv) {
  int port = 0, connections = 256;
  double rate = 100, seconds = 10;
  std::string path = "/", body_file;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--port")
      port = std::atoi(v.c_str());
    else if (k == "--path")
      path = v;
    else if (k == "--body")
      body_file = v;
    else if (k == "--rate")
      rate = std::atof(v.c_str());
    else if (k == "--seconds")
      seconds = std::atof(v.c_str());
    else if (k == "--connections")
      connections = std::atoi(v.c_str());
    else {
      std::fprintf(stderr, "open_loop: unknown flag %s\n", k.c_str());
      return 2;
    }
  }
  if (port <= 0 || body_file.empty() || rate <= 0) {
    std::fprintf(stderr, "usage: open_loop --port P --path PATH --body FILE --rate R --seconds S [--connections C]\n");
    return 2;
  }
  std::ifstream f(body_file);
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string body = ss.str();
  const std::string request = "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" +
                              "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  // Connections are dialled on demand, up to `connections`; a due request takes a free
  // one or waits in `backlog` (its latency still counts from when it was due). epoll, so
  // thousands of connections cost nothing per event (a poll() over all of them made the
  // client, not the server, the bottleneck).
  std::vector<Conn> conns(static_cast<size_t>(connections));
  std::vector<size_t> free_conns;
  size_t dialled = 0;
  const int ep = epoll_create1(EPOLL_CLOEXEC);
  std::deque<Clock::time_point> backlog;  // due requests waiting for a free connection
  std::vector<double> ok_ms, busy_ms;
  long sent = 0, other = 0, errors = 0;
  size_t outstanding = 0;
  const auto start = Clock::now();
  const auto end = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  const auto interval = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1.0 / rate));
  auto next = start;
  auto drop = [&](size_t i) {
    Conn& c = conns[i];
    if (c.fd >= 0) {
      epoll_ctl(ep, EPOLL_CTL_DEL, c.fd, nullptr);
      close(c.fd);
    }
    c.fd = -1;
  };
  // Sends the request due at `due` on connection i; false when it could not be sent.
  auto send_on = [&](size_t i, Clock::time_point due) {
    Conn& c = conns[i];
    if (c.fd < 0) {
      c.fd = Dial(port);
      if (c.fd >= 0) {
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = i;
        epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &ev);
      }
    }
    if (c.fd < 0 || send(c.fd, request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size())) {
      ++errors;
      drop(i);
      return false;
    }
    c.busy = true;
    c.due = due;
    c.in.clear();
    ++sent;
    ++outstanding;
    return true;
  };
  std::vector<epoll_event> events(1024);
  for (;;) {
    const auto now = Clock::now();
    while (next <= now && next < end) {
      backlog.push_back(next);
      next += interval;
    }
    while (!backlog.empty()) {
      size_t i;
      if (!free_conns.empty()) {
        i = free_conns.back();
        free_conns.pop_back();
      } else if (dialled < conns.size()) {
        i = dialled++;
      } else {
        break;
      }
      if (send_on(i, backlog.front())) {
        backlog.pop_front();
      } else {
        free_conns.push_back(i);  // redial on the next turn
        break;
      }
    }
    if (next >= end && backlog.empty() && outstanding == 0) break;
    if (now > end + std::chrono::seconds(30)) break;  // give up on answers that never come
    const auto wait = next < end && backlog.empty()
                          ? std::max(Clock::duration::zero(), next - Clock::now())
                          : std::chrono::duration_cast<Clock::duration>(std::chrono::milliseconds(50));
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(wait).count();
    const timespec ts{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
    const int n = epoll_pwait2(ep, events.data(), static_cast<int>(events.size()), &ts, nullptr);
    for (int e = 0; e < n; ++e) {
      const size_t i = static_cast<size_t>(events[static_cast<size_t>(e)].data.u64);
      Conn& c = conns[i];
      if (!c.busy) {  // closed by the server while idle
        drop(i);
        continue;
      }
      char buf[65536];
      const ssize_t got = read(c.fd, buf, sizeof buf);
      if (got <= 0) {
        ++errors;
        drop(i);
        c.busy = false;
        --outstanding;
        free_conns.push_back(i);
        continue;
      }
      c.in.append(buf, static_cast<size_t>(got));
      int status = 0;
      bool close_after = false;
      if (Complete(c.in, &status, &close_after) == 0) continue;
      const double ms = std::chrono::duration<double, std::milli>(Clock::now() - c.due).count();
      if (status == 200)
        ok_ms.push_back(ms);
      else if (status == 503)
        busy_ms.push_back(ms);
      else
        ++other;
      c.busy = false;
      --outstanding;
      if (close_after) drop(i);
      free_conns.push_back(i);
    }
  }
  const double took = std::chrono::duration<double>(Clock::now() - start).count();
  std::printf(
      "OPEN_LOOP rate=%.1f sent=%ld ok=%zu busy=%zu other=%ld errors=%ld ok_p50_ms=%.2f ok_p99_ms=%.2f "
      "busy_p50_ms=%.2f busy_p99_ms=%.2f achieved_rps=%.1f\n",
      rate, sent, ok_ms.size(), busy_ms.size(), other, errors, Percentile(ok_ms, 0.5), Percentile(ok_ms, 0.99),
      Percentile(busy_ms, 0.5), Percentile(busy_ms, 0.99), static_cast<double>(sent) / std::min(took, seconds));
  for (Conn& c : conns)
    if (c.fd >= 0) close(c.fd);
  close(ep);
  return 0;
}
