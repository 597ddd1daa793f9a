// Internal: an event-driven HTTP/1.1 server (Boost.Beast on Asio, Debian's
// libboost-dev) that hands whole requests to a handler and writes its replies.
//
// A few I/O threads serve every connection; nothing on them blocks: the handler must
// answer quickly or pass the work to another thread and call the Responder from there.
// Per connection: requests are read one at a time and answered in order (pipelined
// requests wait in the read buffer). While a request is with the handler, the
// connection is watched: a client that closes it (or resets it) is gone, and its
// request's `cancelled` flag is set (as Go's net/http and nginx do; a client that
// half-closes its side before reading the reply counts as gone too). The header must
// arrive within header_timeout_ms (a slow client is closed, holding no thread), the
// body within body_timeout_ms of the client's time: its waits while the connection
// has nothing for the server to read; time its bytes wait for a busy I/O thread is
// the server's (past it: 408, `error_reply`); an idle keep-alive connection closes
// after idle_timeout_ms. Limits: header bytes
// (431), body bytes as received, chunked or not (413), gzip/deflate bodies decoded
// with the same limit on the decoded bytes (413; other encodings 415), connections
// (the ones beyond max_connections get 503 and are closed). Transport errors are
// answered with `error_reply` (the server formats them for the route) and close the
// connection.
#ifndef COE_SERVER_HTTP_TRANSPORT_H_
#define COE_SERVER_HTTP_TRANSPORT_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "coe/status.h"

namespace coe::http {

struct Request {
  std::string method;                                        // "GET", "POST", ...
  std::string path;                                          // without the query
  std::string query;                                         // after '?', or ""
  std::string remote;                                        // peer address
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-case
  std::string body;                                          // decoded (Content-Encoding undone)
  size_t wire_bytes = 0;                                     // body bytes as received
  int64_t io_wait_us = 0;  // how long its bytes waited in the kernel before being read
  // Set (true) by the transport when the client goes away (its connection reaches end
  // of stream or fails) before the reply is written; then the reply is dropped. The
  // handler may set it too (a shutdown). Never null for a request from the transport.
  std::shared_ptr<std::atomic<bool>> cancelled;

  // The value of header `lower_name`, or null.
  const std::string* Header(std::string_view lower_name) const;
};

struct Reply {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers
  bool close = false;                                        // close the connection after it
};

// Called exactly once per request, from any thread.
using Responder = std::function<void(Reply)>;
// Runs on an I/O thread: must not block.
using Handler = std::function<void(Request&&, Responder)>;
// Formats a transport error (400 malformed request, 408, 413, 415, 431, 503 too many
// connections) for a request to `path` ("" when unknown).
using ErrorReply = std::function<Reply(int status, const std::string& path, const std::string& message)>;

struct TransportOptions {
  int io_threads = 2;
  int listen_backlog = 1024;
  int max_connections = 4096;  // clamped below the process's file descriptor limit
  int header_timeout_ms = 10000;
  int body_timeout_ms = 10000;  // of the client's time (see above)
  int write_timeout_ms = 10000;
  int idle_timeout_ms = 5000;
  int max_requests_per_connection = 0;  // 0 = no cap
  size_t max_header_bytes = 16 << 10;
  size_t max_body_bytes = 32u << 20;
  // A POST request whose bytes waited in the kernel longer than this before being read
  // (the I/O threads were behind) gets 503 with Retry-After, unseen by the handler
  // (0 = never).
  int max_io_wait_ms = 0;
};

class Transport {
 public:
  // Binds host:port (0 = ephemeral) and starts serving. Unavailable when the address
  // cannot be bound.
  static StatusOr<std::unique_ptr<Transport>> Listen(const std::string& host, int port, const TransportOptions& options,
                                                     Handler handler, ErrorReply error_reply);
  ~Transport();  // Stop() and Wait()
  int port() const;
  int connections() const;  // open now
  // Stops accepting; idle connections close; requests in flight are answered, then
  // their connections close. Returns at once.
  void Stop();
  // Returns once stopped and every connection is closed.
  void Wait();

  struct Impl;

 private:
  explicit Transport(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace coe::http

#endif  // COE_SERVER_HTTP_TRANSPORT_H_
