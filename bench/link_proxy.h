// An emulated network link for benchmarks: a TCP forwarding proxy on loopback that adds
// a one-way delay to every byte and shapes each direction to a bandwidth.
//
// Linux `tc` here has token-bucket shaping but no netem delay, so the link is emulated
// in process: each direction queues the bytes it read with the time they may leave
// (arrival + rtt/2, and no earlier than the previous bytes finished at the shaped rate),
// and a sender thread writes them out then. Hand-written (150 lines) because Debian has
// no library for it. Counts the bytes in each direction.
#ifndef COE_BENCH_LINK_PROXY_H_
#define COE_BENCH_LINK_PROXY_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace coe::bench {

class LinkProxy {
 public:
  // Listens on 127.0.0.1:0 and forwards to 127.0.0.1:upstream_port.
  LinkProxy(int upstream_port, double bandwidth_bits_per_s, double rtt_ms)
      : upstream_(upstream_port), bps_(bandwidth_bits_per_s), one_way_(rtt_ms / 2000.0) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    listen(listen_fd_, 128);
    socklen_t len = sizeof a;
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    acceptor_ = std::thread([this] { Accept(); });
  }
  ~LinkProxy() {
    stop_ = true;
    shutdown(listen_fd_, SHUT_RDWR);
    close(listen_fd_);
    acceptor_.join();
    for (auto& t : threads_) t.join();
  }
  int port() const { return port_; }
  uint64_t bytes_up() const { return up_; }      // toward the upstream server
  uint64_t bytes_down() const { return down_; }  // back to the client

 private:
  using Clock = std::chrono::steady_clock;
  struct Chunk {
    Clock::time_point due;
    std::string bytes;
  };
  // One direction of one connection.
  struct Pipe {
    std::mutex mu;
    std::condition_variable cv;  // guarded by mu: q, closed
    std::deque<Chunk> q;
    bool closed = false;
    Clock::time_point free_at{};  // when the shaped link is next free
  };

  void Accept() {
    while (!stop_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      int c = accept(listen_fd_, nullptr, nullptr);
      if (c < 0) continue;
      int u = socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a.sin_port = htons(upstream_);
      if (connect(u, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        close(c);
        close(u);
        continue;
      }
      int one = 1;
      setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      setsockopt(u, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      threads_.emplace_back([this, c, u] { Connection(c, u); });
    }
  }

  void Connection(int client, int upstream) {
    auto up = std::make_shared<Pipe>(), down = std::make_shared<Pipe>();
    std::thread r1([&] { Read(client, *up, &up_); });
    std::thread r2([&] { Read(upstream, *down, &down_); });
    std::thread w1([&] { Write(upstream, *up); });
    std::thread w2([&] { Write(client, *down); });
    r1.join();
    r2.join();
    w1.join();
    w2.join();
    close(client);
    close(upstream);
  }

  void Read(int fd, Pipe& pipe, std::atomic<uint64_t>* counter) {
    char buf[16384];
    for (;;) {
      pollfd p{fd, POLLIN, 0};
      int pr = poll(&p, 1, 100);
      if (stop_) break;
      if (pr <= 0) continue;
      ssize_t n = read(fd, buf, sizeof buf);
      if (n <= 0) break;
      *counter += n;
      std::lock_guard<std::mutex> lock(pipe.mu);
      const auto now = Clock::now();
      const auto arrive = now + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(one_way_));
      const auto start = std::max(arrive, pipe.free_at);
      pipe.free_at = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(n * 8.0 / bps_));
      pipe.q.push_back(Chunk{pipe.free_at, std::string(buf, n)});
      pipe.cv.notify_one();
    }
    std::lock_guard<std::mutex> lock(pipe.mu);
    pipe.closed = true;
    pipe.cv.notify_one();
  }

  void Write(int fd, Pipe& pipe) {
    for (;;) {
      Chunk c;
      {
        std::unique_lock<std::mutex> lock(pipe.mu);
        pipe.cv.wait(lock, [&] { return !pipe.q.empty() || pipe.closed; });
        if (pipe.q.empty()) break;
        c = std::move(pipe.q.front());
        pipe.q.pop_front();
      }
      std::this_thread::sleep_until(c.due);
      size_t off = 0;
      while (off < c.bytes.size()) {
        ssize_t n = write(fd, c.bytes.data() + off, c.bytes.size() - off);
        if (n <= 0) return;
        off += n;
      }
    }
    shutdown(fd, SHUT_WR);
  }

  int upstream_;
  double bps_, one_way_;
  int listen_fd_ = -1, port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> up_{0}, down_{0};
  std::thread acceptor_;
  std::vector<std::thread> threads_;
};

}  // namespace coe::bench

#endif  // COE_BENCH_LINK_PROXY_H_
