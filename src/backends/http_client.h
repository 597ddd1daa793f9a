// Internal to coe_remote: the one HTTP client of the HTTP backends (remote, openai).
//
// A Client is one endpoint ("http://host:port") with its kept-alive connections, and
// sends a request there within one deadline, retrying what may pass with another try:
//
// Connections: one httplib::Client per request in flight, kept alive and pooled. With
//   max_connections > 0 at most that many are in flight at once, whoever calls; a
//   request waits for a free one until its deadline (then fails, kind "busy"). Idle
//   connections kept: max_connections, or 64 when unbounded.
// Deadline: every attempt's connect, send and receive and the waits between attempts
//   end by the call's deadline; a response still arriving past it is cancelled.
// Retries: a transport error or timeout and HTTP 429/5xx are retried, at most
//   `retries` more attempts; another status, a response past max_response_bytes (read
//   no further: http_body.h BoundedBody), cancellation and a stopped race side are not.
//   A race side stopped after its response arrived in full keeps that response (the
//   endpoint answered, and may have billed it: the caller decides what it pays).
// Backoff (one policy for every HTTP backend): before retry k (1, 2, ...) a wait drawn
//   uniformly from [b/2, b], b = min(kBackoffCapMs, kBackoffBaseMs x 2^(k-1)), so
//   50-100 ms, 100-200 ms, ... up to 1-2 s; a Retry-After (in seconds) lengthens it, up
//   to kBackoffCapMs. The wait takes at most half of the time left before the
//   deadline, and with under 10 ms left there is no retry.
// Cancellation: a run's cancelled flag (http_cancel.h) starts no attempt and aborts
//   the one in flight (kind "cancelled").
// Failures are classified as Prediction::failure_kind values: "http_N" (the status),
//   "timeout", "connect", "too_large", "busy", "cancelled", "stopped" (a race side
//   that lost); "bad_response" is the caller's, for a body it cannot use.
// Request bodies are lent (http_body.h LendBody), never copied.
#ifndef COE_BACKENDS_HTTP_CLIENT_H_
#define COE_BACKENDS_HTTP_CLIENT_H_

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "coe/backend.h"
#include "coe/catalogue.h"

namespace coe::http {

using Clock = std::chrono::steady_clock;

inline constexpr int kBackoffBaseMs = 50, kBackoffCapMs = 2000;
inline constexpr const char* kCancelled = "cancelled: the request's client went away or the server is stopping";

// The wait before retry k (>= 1) after a refusal that asked for `retry_after_ms` (0:
// none), `left_ms` before the deadline; -1: no retry (too little time left). `unit`
// in [0, 1] places the wait in its jitter range.
int BackoffMs(int k, int retry_after_ms, int64_t left_ms, double unit);

// Stops one request from another thread: the loser of a hedged race. The request's
// connection in flight is shut, a wait between its attempts ends.
class Stopper {
 public:
  bool stopped();
  void Stop();
  // The request's connection in flight (null: none); false when stopped already.
  bool Attach(httplib::Client* client);
  // Sleeps `ms`, or less when stopped or *cancelled; false then.
  bool Sleep(std::chrono::milliseconds ms, const std::atomic<bool>* cancelled);

 private:
  std::mutex mu_;
  std::condition_variable cv_;  // guarded by mu_: stopped_
  bool stopped_ = false;
  httplib::Client* active_ = nullptr;
};

struct Options {
  std::string host;                     // "http://host:port"
  double timeout_ms = 10000;            // the catalogue's, named in timeout messages
  int retries = 2;                      // more attempts after the first
  uint64_t max_response_bytes = 0;      // a larger response fails ("too_large")
  int max_connections = 0;              // in flight at once; 0: unbounded
  httplib::Headers headers;             // sent with every request
  bool decompress = true;               // let httplib decompress a compressed response
  bool name_host_in_errors = true;      // "cannot connect to HOST (...)"
  BackendStats* count_bytes = nullptr;  // adds bytes_sent, bytes_received when set
};

struct Request {
  std::string method = "GET";  // GET or POST
  std::string path;
  std::vector<std::string_view> body;            // its pieces, sent in turn (they outlive the call)
  httplib::Headers headers;                      // with Options::headers
  const std::atomic<bool>* cancelled = nullptr;  // the run's flag (InputView::cancelled)
  Stopper* stopper = nullptr;                    // a hedged race's side
  // Called with each attempt that an HTTP status other than 200 answered (e.g. to pay
  // the usage its body reports).
  std::function<void(const httplib::Response&)> on_refused;
  // Streaming: a 200 response of Content-Type text/event-stream goes here piece by
  // piece as it arrives (bounded by max_response_bytes all the same; Response::body
  // stays empty), from the calling thread. False: stop reading (the attempt fails,
  // kind "cancelled", and its connection is closed). Once a piece went here, a
  // failure is not retried (its text may have been passed on): Response::streamed.
  std::function<bool(std::string_view piece)> on_stream;
};

struct Response {
  bool ok = false;         // HTTP 200
  bool retryable = false;  // the last attempt failed in a way another try may not
  int status = 0;          // its HTTP status; 0: none came
  int retry_after_ms = 0;  // the refusal's Retry-After; 0: none
  std::string error;       // why it failed, e.g. "HTTP 503: busy"
  std::string kind;        // and its Prediction::failure_kind
  std::string body;
  httplib::Headers headers;
  bool streamed = false;  // pieces of the body went to Request::on_stream
};

class Client {
 public:
  explicit Client(Options options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  const std::string& host() const { return o_.host; }

  // Sends `request` with retries, all within `deadline`.
  Response Send(const Request& request, Clock::time_point deadline);

 private:
  Response SendOnce(const Request& request, Clock::time_point deadline);
  Response Classify(httplib::Error err, const Request& request) const;
  // A connection for one attempt; null with *why set when none is free by the deadline
  // or the run is cancelled.
  std::unique_ptr<httplib::Client> Lease(Clock::time_point deadline, const std::atomic<bool>* cancelled, Response* why);
  // Frees the attempt's slot; keeps the connection when it is still usable.
  void Return(std::unique_ptr<httplib::Client> client, bool keep);
  std::string Ms() const;

  const Options o_;
  std::mutex mu_;
  std::condition_variable cv_;  // guarded by mu_: in_use_ fell
  std::vector<std::unique_ptr<httplib::Client>> idle_;
  int in_use_ = 0;  // attempts holding a connection
};

// `url`, the catalogue's `key` of model `model` (url, hedge_url, fallbacks): its server
// and path (coe/catalogue.h ParseEndpointAddress; with `base`, no path takes base's),
// a server httplib can use. InvalidArgument naming the model, the key and the value.
StatusOr<EndpointAddress> CheckAddress(const std::string& model, const std::string& key, const std::string& url,
                                       const EndpointAddress* base = nullptr);

// hedge_url and hedge_ms of `spec` together: hedge_ms needs a hedge_url and must be
// under timeout_ms. InvalidArgument naming the model.
Status CheckHedge(const ModelSpec& spec);

// A hedged call: `side(s, stopper)` runs side 0 at once and, when it has not succeeded
// within `delay` (zero: when it failed) and the deadline is not past, side 1 on another
// thread; the first to succeed (return true) wins and the other is stopped. Returns the
// winner, or -1; *hedged: side 1 ran.
int Race(const std::function<bool(int side, Stopper* stopper)>& side, std::chrono::microseconds delay,
         Clock::time_point deadline, bool* hedged);

}  // namespace coe::http

#endif  // COE_BACKENDS_HTTP_CLIENT_H_
