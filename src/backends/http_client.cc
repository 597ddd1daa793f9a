#include "backends/http_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "backends/backends.h"
#include "backends/http_body.h"
#include "backends/http_cancel.h"

namespace coe {

#if defined(__SANITIZE_THREAD__)
// ThreadSanitizer builds only. httplib (Debian's build, not instrumented) parses a
// response with function-local static regexes built on first use; TSan cannot see
// their guards, so the first response read by one thread and every later read by
// another look like a race (proven in scripts/tsan-libraries.txt: an instrumented
// httplib reports nothing). Reading one response from a loopback peer here, on the
// thread that creates the backend and before any thread that calls it exists, builds
// them in an order TSan sees. Production builds do not do this.
void WarmHttplibForTsan() {
  static std::once_flag once;
  std::call_once(once, [] {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 1) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      ::close(fd);
      return;
    }
    std::thread peer([fd] {
      const int c = ::accept(fd, nullptr, nullptr);
      if (c < 0) return;
      std::string got;
      char buf[1024];
      while (got.find("\r\n\r\n") == std::string::npos) {
        const ssize_t n = ::read(c, buf, sizeof buf);
        if (n <= 0) break;
        got.append(buf, static_cast<size_t>(n));
      }
      const std::string reply =
          "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
      [[maybe_unused]] ssize_t w = ::write(c, reply.data(), reply.size());
      ::close(c);
    });
    httplib::Client client("127.0.0.1", ntohs(addr.sin_port));
    client.set_connection_timeout(2, 0);
    client.set_read_timeout(2, 0);
    client.Post("/warm", "{}", "application/json");
    peer.join();
    ::close(fd);
  });
}
#else
void WarmHttplibForTsan() {}
#endif

namespace http {
namespace {

Response Failure(std::string error, std::string kind, bool retryable = false) {
  Response a;
  a.error = std::move(error);
  a.kind = std::move(kind);
  a.retryable = retryable;
  return a;
}
Response Cancelled() { return Failure(kCancelled, "cancelled"); }
Response Stopped() { return Failure("stopped: the other endpoint answered first", "stopped"); }

// What went to Request::on_stream in one attempt.
struct Streamed {
  uint64_t max_bytes = 0;  // the bound (Options::max_response_bytes)
  uint64_t bytes = 0;
  bool too_large = false;  // past the bound
  bool refused = false;    // on_stream said stop
};

// What a refusal's body says: an Open Inference Protocol {"error": "..."}, an OpenAI
// {"error": {"message": "..."}}, else its start.
std::string Detail(const std::string& body) {
  const nlohmann::json j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_object() && j.contains("error")) {
    const nlohmann::json& e = j["error"];
    if (e.is_string()) return e.get<std::string>();
    if (e.is_object() && e.contains("message") && e["message"].is_string()) return e["message"].get<std::string>();
  }
  return body.substr(0, 300);
}

// A content receiver for `r`: with Request::on_stream, a 200 text/event-stream response
// goes there as it arrives, counted against the bound into *streamed; any other
// response (an error's body, a server that does not stream) goes to `keep`. The
// status and headers of `res` are read before its body.
httplib::ContentReceiverWithProgress StreamOrKeep(const Request& r, const httplib::Response& res, Streamed* streamed,
                                                  httplib::ContentReceiverWithProgress keep) {
  if (!r.on_stream) return keep;
  return [&r, &res, streamed, keep = std::move(keep)](const char* data, size_t len, uint64_t off, uint64_t total) {
    if (res.status != 200 || res.get_header_value("Content-Type").rfind("text/event-stream", 0) != 0)
      return keep(data, len, off, total);
    if ((streamed->bytes += len) > streamed->max_bytes) {
      streamed->too_large = true;
      return false;
    }
    if (r.on_stream(std::string_view(data, len))) return true;
    streamed->refused = true;
    return false;
  };
}

}  // namespace

int BackoffMs(int k, int retry_after_ms, int64_t left_ms, double unit) {
  if (left_ms < 10) return -1;
  const int b = std::min(kBackoffCapMs, kBackoffBaseMs << std::min(k - 1, 10));
  int ms = b / 2 + static_cast<int>(std::lround(std::clamp(unit, 0.0, 1.0) * (b - b / 2)));
  ms = std::max(ms, std::min(retry_after_ms, kBackoffCapMs));
  return static_cast<int>(std::min<int64_t>(ms, left_ms / 2));
}

bool Stopper::stopped() {
  std::lock_guard<std::mutex> lock(mu_);
  return stopped_;
}

void Stopper::Stop() {
  std::lock_guard<std::mutex> lock(mu_);
  stopped_ = true;
  if (active_) active_->stop();
  cv_.notify_all();
}

bool Stopper::Attach(httplib::Client* client) {
  std::lock_guard<std::mutex> lock(mu_);
  active_ = stopped_ ? nullptr : client;
  return !stopped_;
}

bool Stopper::Sleep(std::chrono::milliseconds ms, const std::atomic<bool>* cancelled) {
  const auto until = Clock::now() + ms;
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    if (stopped_ || IsCancelled(cancelled)) return false;
    const auto now = Clock::now();
    if (now >= until) return true;
    cv_.wait_until(lock, cancelled ? std::min(until, now + std::chrono::milliseconds(kCancelPollMs)) : until);
  }
}

Client::Client(Options options) : o_(std::move(options)) {}
Client::~Client() = default;

std::string Client::Ms() const { return std::to_string(static_cast<int64_t>(o_.timeout_ms)) + " ms"; }

Response Client::Send(const Request& request, Clock::time_point deadline) {
  thread_local std::mt19937 rng(std::random_device{}());
  Response a;
  for (int k = 0; k <= o_.retries; ++k) {
    if (k > 0) {
      const int64_t left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      const int ms = BackoffMs(k, a.retry_after_ms, left, std::uniform_real_distribution<double>(0, 1)(rng));
      if (ms < 0) break;
      const std::chrono::milliseconds wait(ms);
      if (!(request.stopper ? request.stopper->Sleep(wait, request.cancelled)
                            : SleepUnlessCancelled(wait, request.cancelled)))
        break;
    }
    a = SendOnce(request, deadline);
    if (a.ok || !a.retryable || a.streamed || Clock::now() >= deadline) break;
  }
  if (!a.ok && IsCancelled(request.cancelled)) return Cancelled();
  if (!a.ok && request.stopper && request.stopper->stopped()) return Stopped();
  return a;
}

Response Client::SendOnce(const Request& r, Clock::time_point deadline) {
  if (IsCancelled(r.cancelled)) return Cancelled();
  Response why;
  std::unique_ptr<httplib::Client> client = Lease(deadline, r.cancelled, &why);
  if (!client) return why;
  // This attempt's connect, send and receive may use what is left of the call's time.
  const auto left = std::chrono::duration_cast<std::chrono::microseconds>(deadline - Clock::now());
  if (left.count() <= 0) {
    Return(std::move(client), true);
    return Failure("no answer within " + Ms() + " (timeout_ms)", "timeout");
  }
  client->set_connection_timeout(std::max(left, std::chrono::microseconds(1000)));
  client->set_read_timeout(std::max(left, std::chrono::microseconds(1000)));
  client->set_write_timeout(std::max(left, std::chrono::microseconds(1000)));
  httplib::Request req;
  req.method = r.method;
  req.path = r.path;
  req.headers = o_.headers;
  req.headers.insert(r.headers.begin(), r.headers.end());
  size_t body_bytes = 0;
  for (std::string_view piece : r.body) body_bytes += piece.size();
  if (r.method == "POST") LendBody(&req, r.body);
  req.progress = [deadline, cancelled = r.cancelled](uint64_t, uint64_t) {
    return Clock::now() < deadline && !IsCancelled(cancelled);
  };
  // The body is received here, not by httplib, so that a response past the bound is
  // refused as it arrives (or at once, from its Content-Length), never held whole.
  std::string received;
  bool too_large = false;
  httplib::Response res;
  Streamed streamed{o_.max_response_bytes};
  req.content_receiver = StreamOrKeep(r, res, &streamed, BoundedBody(&received, &too_large, o_.max_response_bytes));
  if (r.stopper && !r.stopper->Attach(client.get())) {  // lost the race before sending
    Return(std::move(client), true);
    return Stopped();
  }
  httplib::Error err = httplib::Error::Success;
  bool sent = false;
  {
    CancelWatch watch(r.cancelled, client.get());  // a cancelled run's request is aborted
    sent = client->send(req, res, err);
  }
  // A lost race whose response had arrived in full keeps it: it was answered (and, by
  // a paid endpoint, billed). One stopped before that has no response.
  const bool was_stopped = r.stopper && !r.stopper->Attach(nullptr);  // its connection may be shut
  const bool stopped = was_stopped && !(sent && !too_large);
  auto count = [&](bool body_went, uint64_t got) {
    if (!o_.count_bytes) return;
    if (body_went) o_.count_bytes->bytes_sent += body_bytes;
    o_.count_bytes->bytes_received += got;
  };
  // A client stopped (cancelled, a lost race) or with a broken connection is not kept.
  if (IsCancelled(r.cancelled) || stopped) {
    Return(nullptr, false);
    return IsCancelled(r.cancelled) ? Cancelled() : Stopped();
  }
  if (streamed.refused) {  // the receiver of a stream went away
    Return(nullptr, false);
    return Failure("the receiver of the streamed response stopped reading", "cancelled");
  }
  too_large |= streamed.too_large;
  if (too_large) {  // not retried: the same request would get the same answer
    count(true, 0);
    Return(nullptr, false);
    return Failure("the response is larger than " + std::to_string(o_.max_response_bytes) +
                       " bytes (max_response_mb in the catalogue)",
                   "too_large");
  }
  if (!sent) {
    count(err == httplib::Error::Read || err == httplib::Error::Canceled, streamed.bytes);
    Return(nullptr, false);
    Response a = Classify(err, r);
    a.streamed = streamed.bytes > 0;  // then not retried
    return a;
  }
  count(true, received.size() + streamed.bytes);
  Return(std::move(client), !was_stopped);
  res.body = std::move(received);
  Response a;
  a.status = res.status;
  if (res.status == 200) {
    a.ok = true;
    a.streamed = streamed.bytes > 0;
    a.body = std::move(res.body);
    a.headers = std::move(res.headers);
    return a;
  }
  if (r.on_refused) r.on_refused(res);
  a.retryable = res.status == 429 || res.status >= 500;
  if (res.has_header("Retry-After")) {
    const std::string v = res.get_header_value("Retry-After");
    if (!v.empty() && v.size() < 6 && v.find_first_not_of("0123456789") == std::string::npos)
      a.retry_after_ms = std::stoi(v) * 1000;
  }
  a.error = "HTTP " + std::to_string(res.status) + ": " + Detail(res.body);
  a.kind = "http_" + std::to_string(res.status);
  a.body = std::move(res.body);
  a.headers = std::move(res.headers);
  return a;
}

Response Client::Classify(httplib::Error err, const Request& r) const {
  switch (err) {
    case httplib::Error::Connection:
      return Failure(
          "cannot connect" + (o_.name_host_in_errors ? " to " + o_.host : std::string()) + " (refused or unreachable)",
          "connect", true);
    case httplib::Error::ConnectionTimeout:
      return Failure("no connection within " + Ms() + " (timeout_ms)", "timeout", true);
    case httplib::Error::Canceled:  // the deadline passed as the response arrived
      return Failure("no answer within " + Ms() + " (timeout_ms)", "timeout", true);
    case httplib::Error::Read:
      return Failure("no answer within " + Ms() + " (timeout_ms), or the connection broke", "timeout", true);
    case httplib::Error::Write:
      return Failure("sending the request failed", "timeout", true);
    default:
      return Failure("HTTP " + r.method + " failed: " + httplib::to_string(err), "timeout", true);
  }
}

std::unique_ptr<httplib::Client> Client::Lease(Clock::time_point deadline, const std::atomic<bool>* cancelled,
                                               Response* why) {
  {
    std::unique_lock<std::mutex> lock(mu_);
    // At most max_connections in flight, from any caller; a cancelled run stops waiting.
    while (o_.max_connections > 0 && in_use_ >= o_.max_connections) {
      if (IsCancelled(cancelled)) {
        *why = Cancelled();
        return nullptr;
      }
      const auto now = Clock::now();
      if (now >= deadline) {
        *why = Failure("no answer within " + Ms() + " (timeout_ms): every one of the " +
                           std::to_string(o_.max_connections) + " connections (max_concurrency) stayed busy",
                       "busy");
        return nullptr;
      }
      cv_.wait_until(lock, std::min(deadline, now + std::chrono::milliseconds(kCancelPollMs)));
    }
    ++in_use_;
    if (!idle_.empty()) {
      std::unique_ptr<httplib::Client> c = std::move(idle_.back());
      idle_.pop_back();
      return c;
    }
  }
  auto c = std::make_unique<httplib::Client>(o_.host);
  c->set_keep_alive(true);
  c->set_tcp_nodelay(true);
  c->set_decompress(o_.decompress);
  return c;
}

void Client::Return(std::unique_ptr<httplib::Client> client, bool keep) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    --in_use_;
    const size_t cap = o_.max_connections > 0 ? static_cast<size_t>(o_.max_connections) : 64;
    if (keep && client && idle_.size() < cap) idle_.push_back(std::move(client));
  }
  cv_.notify_one();
}

StatusOr<EndpointAddress> CheckAddress(const std::string& model, const std::string& key, const std::string& url,
                                       const EndpointAddress* base) {
  const std::string what = "model '" + model + "': " + key + " ";
  auto a = ParseEndpointAddress(url, base);
  if (!a.ok()) return InvalidArgumentError(what + a.status().message());
  // httplib parses the server with a function-local static regex inside its
  // uninstrumented library: done here, on the thread that makes the backend, before any
  // thread that calls it exists (ordered for ThreadSanitizer, which cannot see its guard).
  if (!httplib::Client(a->server).is_valid())
    return InvalidArgumentError(what + "'" + url + "' is not a valid http(s) address");
  return a;
}

Status CheckHedge(const ModelSpec& spec) {
  const std::string what = "model '" + spec.name + "': ";
  if (spec.hedge_ms > 0 && spec.hedge_url.empty())
    return InvalidArgumentError(what + "hedge_ms needs a hedge_url (another endpoint of the same model)");
  if (!spec.hedge_url.empty() && spec.hedge_ms >= spec.timeout_ms)
    return InvalidArgumentError(what + "hedge_ms must be under timeout_ms, or the hedge never starts in time");
  return Status::Ok();
}

int Race(const std::function<bool(int side, Stopper* stopper)>& side, std::chrono::microseconds delay,
         Clock::time_point deadline, bool* hedged) {
  struct State {
    std::mutex mu;
    std::condition_variable cv;  // guarded by mu: finished, winner
    bool finished[2] = {false, false};
    int winner = -1;
    Stopper stoppers[2];
  } st;
  auto run = [&](int s) {
    const bool ok = side(s, &st.stoppers[s]);
    std::lock_guard<std::mutex> lock(st.mu);
    st.finished[s] = true;
    if (ok && st.winner < 0) {
      st.winner = s;
      st.stoppers[1 - s].Stop();  // its request in flight is shut down
    }
    st.cv.notify_all();
  };
  std::thread first(run, 0);
  std::thread second;
  *hedged = false;
  {
    std::unique_lock<std::mutex> lock(st.mu);
    if (delay.count() > 0)
      st.cv.wait_for(lock, delay, [&] { return st.finished[0]; });
    else  // failover only
      st.cv.wait(lock, [&] { return st.finished[0]; });
    // Side 0 is slow, or failed (then side 1 is the failover) while time is left.
    if (st.winner < 0 && Clock::now() < deadline) {
      *hedged = true;
      second = std::thread(run, 1);
    }
  }
  first.join();
  if (second.joinable()) second.join();
  return st.winner;
}

}  // namespace http
}  // namespace coe
