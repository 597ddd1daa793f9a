// The benches' HTTP/1.1 client pieces for a server on 127.0.0.1: connect, and tell
// when a response has fully arrived.
#ifndef COE_BENCH_LOOPBACK_H_
#define COE_BENCH_LOOPBACK_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <string>

namespace coe::bench {

// A connected socket to 127.0.0.1:port with Nagle off, or -1.
inline int Dial(int port) {
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
inline size_t Complete(const std::string& in, int* status, bool* close_after) {
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

// Sends `request` on fd and reads one whole response into *in (nothing after it); its
// status, or -1 on a broken connection.
inline int RoundTrip(int fd, const std::string& request, std::string* in) {
  for (size_t sent = 0; sent < request.size();) {
    const ssize_t k = write(fd, request.data() + sent, request.size() - sent);
    if (k <= 0) return -1;
    sent += static_cast<size_t>(k);
  }
  in->clear();
  char buf[65536];
  int status = -1;
  bool close_after = false;
  size_t len = 0;
  while ((len = Complete(*in, &status, &close_after)) == 0) {
    const ssize_t k = read(fd, buf, sizeof buf);
    if (k <= 0) return -1;
    in->append(buf, static_cast<size_t>(k));
  }
  in->resize(len);
  return status;
}

}  // namespace coe::bench

#endif  // COE_BENCH_LOOPBACK_H_
