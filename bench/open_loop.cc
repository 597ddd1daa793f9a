// An open-loop HTTP load generator: requests are sent at a fixed rate whatever the
// server's pace (unlike wrk, whose connections wait for their answers), and each
// latency counts from the moment its request was due, so queueing anywhere (in this
// client for a free connection, in the kernel, in the server) is measured.
//
//   open_loop --port P --path /v2/models/m/infer --body FILE --rate R --seconds S
//             [--connections C]
// Prints one line: sent, ok (200), busy (503), other, p50/p99 of the 200s and p99 of
// the 503s in milliseconds, and the rate achieved.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
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

namespace {

using Clock = std::chrono::steady_clock;

struct Conn {
  int fd = -1;
  bool busy = false;
  Clock::time_point due;
  std::string in;
};

int Dial(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

// The length of the first complete response in `in`, or 0; its status in *status.
size_t Complete(const std::string& in, int* status, bool* close_after) {
  const size_t head = in.find("\r\n\r\n");
  if (head == std::string::npos) return 0;
  *status = std::atoi(in.c_str() + 9);
  size_t len = 0;
  const std::string h = in.substr(0, head);
  std::string lower = h;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const size_t cl = lower.find("content-length:");
  if (cl != std::string::npos) len = std::strtoul(h.c_str() + cl + 15, nullptr, 10);
  *close_after = lower.find("connection: close") != std::string::npos;
  return in.size() >= head + 4 + len ? head + 4 + len : 0;
}

double Pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

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
  std::vector<Conn> conns(static_cast<size_t>(connections));
  for (Conn& c : conns) c.fd = Dial(port);
  std::deque<Clock::time_point> backlog;  // due requests waiting for a free connection
  std::vector<double> ok_ms, busy_ms;
  long sent = 0, other = 0, errors = 0;
  const auto start = Clock::now();
  const auto end = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  const auto interval = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1.0 / rate));
  auto next = start;
  auto send_on = [&](Conn& c, Clock::time_point due) {
    if (c.fd < 0) c.fd = Dial(port);
    if (c.fd < 0 || send(c.fd, request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size())) {
      ++errors;
      if (c.fd >= 0) close(c.fd);
      c.fd = -1;
      return;
    }
    c.busy = true;
    c.due = due;
    c.in.clear();
    ++sent;
  };
  std::vector<pollfd> pfds;
  for (;;) {
    const auto now = Clock::now();
    while (next <= now && next < end) {
      backlog.push_back(next);
      next += interval;
    }
    for (Conn& c : conns) {
      if (backlog.empty()) break;
      if (!c.busy) {
        send_on(c, backlog.front());
        backlog.pop_front();
      }
    }
    bool any_busy = false;
    pfds.clear();
    for (Conn& c : conns) {
      pfds.push_back({c.busy ? c.fd : -1, POLLIN, 0});
      any_busy = any_busy || c.busy;
    }
    if (next >= end && backlog.empty() && !any_busy) break;
    if (now > end + std::chrono::seconds(30)) break;  // give up on answers that never come
    const int wait_ms =
        next < end ? static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(next - now).count()) : 50;
    poll(pfds.data(), pfds.size(), std::max(0, std::min(wait_ms, 50)));
    for (size_t i = 0; i < conns.size(); ++i) {
      Conn& c = conns[i];
      if (!c.busy || !(pfds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[65536];
      const ssize_t n = read(c.fd, buf, sizeof buf);
      if (n <= 0) {
        ++errors;
        close(c.fd);
        c.fd = -1;
        c.busy = false;
        continue;
      }
      c.in.append(buf, static_cast<size_t>(n));
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
      if (close_after) {
        close(c.fd);
        c.fd = -1;
      }
    }
  }
  const double took = std::chrono::duration<double>(Clock::now() - start).count();
  std::printf(
      "OPEN_LOOP rate=%.1f sent=%ld ok=%zu busy=%zu other=%ld errors=%ld ok_p50_ms=%.2f ok_p99_ms=%.2f "
      "busy_p50_ms=%.2f busy_p99_ms=%.2f achieved_rps=%.1f\n",
      rate, sent, ok_ms.size(), busy_ms.size(), other, errors, Pct(ok_ms, 0.5), Pct(ok_ms, 0.99), Pct(busy_ms, 0.5),
      Pct(busy_ms, 0.99), static_cast<double>(sent) / took);
  for (Conn& c : conns)
    if (c.fd >= 0) close(c.fd);
  return 0;
}
