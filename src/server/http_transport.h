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
//
// A reply is a whole body, or a stream (Reply::stream, a ReplyStream): its status and
// headers are written at once without a Content-Length, and its body as the handler
// produces it: in chunks on HTTP/1.1 (chunked transfer encoding; the connection is
// kept alive after it), until the connection closes on HTTP/1.0.
#ifndef COE_SERVER_HTTP_TRANSPORT_H_
#define COE_SERVER_HTTP_TRANSPORT_H_

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
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

// The body of a streamed reply, between the thread that produces it (one at a time:
// Write, then Finish once) and the transport, which writes it.
//
// Backpressure: Write blocks while kMaxBuffered bytes or more wait to be written (the
// client reads slowly), so a stream holds at most kMaxBuffered bytes plus one piece
// waiting, and the bytes being written (one take of those), never a whole reply; a
// client that reads nothing for write_timeout_ms is closed. A client that goes away
// (its connection ends, a write fails or times out) closes the stream: Write returns
// false from then on (at once, also when blocked) and the request's `cancelled` flag
// is set.
class ReplyStream {
 public:
  static constexpr size_t kMaxBuffered = 64 << 10;

  // Queues `data` to be written. False: the client is gone (nothing more is written).
  bool Write(std::string_view data);
  // Runs the AtEnd hooks with `status` (the request's outcome for logs and metrics:
  // 200, or e.g. 499 when the client went away, 502 when the upstream failed after
  // the first bytes) and the bytes written so far, then queues `tail` and ends the
  // stream after it. Once, also after Write returned false.
  void Finish(int status, std::string_view tail = {});
  // Adds a hook Finish calls (in the order added), before the tail is queued: a
  // client that has read the end finds them run (e.g. its request's place given back).
  void AtEnd(std::function<void(int status, size_t bytes)> hook);

  // The transport's side. Next: data to write (moved into *out), the end, or nothing
  // yet (then the waker set by Attach is called once there is something).
  enum class Next { kData, kEnd, kNone, kClosed };
  Next Take(std::string* out);
  void Attach(std::function<void()> waker);
  void Close();  // the client is gone

 private:
  std::mutex mu_;
  std::condition_variable room_;  // guarded by mu_: pending_ fell below the bound, or closed_
  std::string pending_;
  size_t written_ = 0;
  bool finished_ = false, ended_ = false, closed_ = false;  // Finish called; the tail queued; the client gone
  bool waiting_ = false;                                    // the transport waits for data
  std::function<void()> waker_;
  std::vector<std::function<void(int, size_t)>> hooks_;
};

struct Reply {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers
  bool close = false;                                        // close the connection after it
  // A streamed reply: `body` is ignored, the stream's data is written as it comes.
  std::shared_ptr<ReplyStream> stream;
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
