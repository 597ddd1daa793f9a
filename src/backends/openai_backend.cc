// Backend "openai": a chat model behind any OpenAI-compatible chat-completions endpoint
// (OpenAI, vLLM, llama.cpp server, Ollama, Together, ...). See coe/catalogue.h for its
// settings.
//
// One example is one call (POST {url}/chat/completions): the prompt template filled
// with the example's fields (InputBatch::records), the answer read from the
// completion by the `answer` mode, the cost from the response's `usage` at the
// catalogue's prices. Calls of one Predict run at once, at most `max_concurrency` in
// flight to the endpoint whatever the callers (a pool of that many workers).
//
// Failures: an attempt fails on a transport error, HTTP 429/5xx (retried, after the
// server's Retry-After when it gives one, else a jittered backoff) or another status or
// a malformed response (not retried). All attempts of a call share one deadline,
// `timeout_ms`; a response over `max_response_mb` (default 32) is refused as it arrives
// (not retried). A call that fails is the example's abstention (error set). What is
// paid: every attempt that returned `usage`; a response without `usage`, or with a
// figure that is no token count (not an integer from 0 to kMaxUsageTokens, 2^40:
// base/tokens.h), is counted at an estimate (a token for 4 characters of prompt and
// completion) and counted in BackendStats::estimated_costs, never as free. Token sums
// saturate at kTokenCap.
//
// The API key is read once, from the environment variable `api_key_env` names, and is
// never written anywhere (errors name the variable, not its value).
#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "backends/answer_reader.h"
#include "backends/backends.h"
#include "backends/chat_body.h"
#include "backends/http_body.h"
#include "backends/http_cancel.h"
#include "base/thread_pool.h"
#include "base/tokens.h"

namespace coe {
namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

constexpr int kBackoffBaseMs = 50, kBackoffCapMs = 2000;

struct Attempt {
  bool ok = false, retry = false;
  int retry_after_ms = -1;
  std::string error, body;
  std::string kind;  // a failed attempt's Prediction::failure_kind
};

}  // namespace

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

namespace {

class OpenAiBackend : public Backend {
 public:
  OpenAiBackend(BackendInfo info, const ModelSpec& spec, std::string host, std::string path, std::string key,
                AnswerReader reader)
      : info_(std::move(info)),
        spec_(spec),
        host_(std::move(host)),
        path_(std::move(path)),
        key_(std::move(key)),
        reader_(std::move(reader)),
        pool_(spec.max_concurrency) {}

  const BackendInfo& info() const override { return info_; }

  Status Predict(const InputView& batch, std::vector<Prediction>* out) override {
    const int64_t n = batch.size();
    out->assign(n, Prediction{});
    stats_.calls++;
    stats_.examples += n;
    if (n == 0) return Status::Ok();
    if (static_cast<int64_t>(batch.records.size()) != n) {
      for (Prediction& p : *out) p = Prediction::Failure("a chat model needs text inputs (JSONL records)", "input");
      stats_.abstentions += n;
      return InvalidArgumentError("model '" + info_.name +
                                  "' is a chat model: its inputs are JSON records (a .jsonl "
                                  "file or the chat API), not tensors");
    }
    if (n == 1) {  // one input (the chat front door): on this thread, no handoff
      (*out)[0] = Call(batch.records[0], batch.cancelled);
    } else {
      std::vector<std::function<void()>> tasks;
      for (int64_t i = 0; i < n; ++i)
        tasks.push_back([this, &batch, out, i] { (*out)[i] = Call(batch.records[i], batch.cancelled); });
      pool_.RunAll(std::move(tasks));
    }
    uint64_t abstained = 0;
    for (const Prediction& p : *out) abstained += p.answer.empty();
    stats_.abstentions += abstained;
    return Status::Ok();
  }

 private:
  // `cancelled`: the run's flag (InputView::cancelled): no attempt starts once it is
  // set, and the one in flight is aborted.
  Prediction Call(const std::string& record_text, const std::atomic<bool>* cancelled) {
    Prediction p;
    // The request body: pieces of its own and views of the record, never a copy of a
    // message (backends/chat_body.h).
    auto built = BuildChatBody(spec_, spec_.model.empty() ? info_.name : spec_.model, record_text);
    if (!built.ok()) return Prediction::Failure(built.status().message(), "input");
    const std::vector<std::string_view> body = built->Views(record_text);
    const size_t prompt_bytes = built->prompt_bytes;
    const auto deadline = Clock::now() + std::chrono::microseconds(static_cast<int64_t>(spec_.timeout_ms * 1000));
    Attempt a;
    for (int k = 0; k <= spec_.retries; ++k) {
      if (k > 0) {
        thread_local std::mt19937 rng(std::random_device{}());
        int ms = std::min(kBackoffCapMs, kBackoffBaseMs << std::min(k - 1, 10));
        ms = std::uniform_int_distribution<int>(ms / 2, ms)(rng);
        if (a.retry_after_ms >= 0) ms = a.retry_after_ms;
        if (Clock::now() + std::chrono::milliseconds(ms) >= deadline) break;
        if (!SleepUnlessCancelled(std::chrono::milliseconds(ms), cancelled)) break;
      }
      {
        // At most max_concurrency requests in flight to the endpoint, from any caller.
        std::unique_lock<std::mutex> lock(slots_mu_);
        // A cancelled run's calls in flight are aborted: their slots free up at once.
        if (!slots_cv_.wait_until(lock, deadline,
                                  [&] { return in_flight_ < spec_.max_concurrency || IsCancelled(cancelled); })) {
          a = Attempt{};
          a.error = "no answer within " + FormatMs() + " (timeout_ms): every one of the " +
                    std::to_string(spec_.max_concurrency) + " connections (max_concurrency) stayed busy";
          a.kind = "busy";
          break;
        }
        if (IsCancelled(cancelled)) {
          a = Attempt{};
          a.error = "cancelled: the request's client went away or the server is stopping";
          break;
        }
        ++in_flight_;
      }
      a = Send(body, deadline, &p, cancelled);
      {
        std::lock_guard<std::mutex> lock(slots_mu_);
        --in_flight_;
      }
      slots_cv_.notify_one();
      if (a.ok || !a.retry || IsCancelled(cancelled)) break;
    }
    if (!a.ok) return Failed(std::move(p), a.error, IsCancelled(cancelled) ? "cancelled" : a.kind);
    json res = json::parse(a.body, nullptr, false);
    const json* content = nullptr;
    if (res.is_object() && res.contains("choices") && res["choices"].is_array() && !res["choices"].empty() &&
        res["choices"][0].is_object() && res["choices"][0].contains("message") &&
        res["choices"][0]["message"].is_object() && res["choices"][0]["message"].contains("content") &&
        res["choices"][0]["message"]["content"].is_string())
      content = &res["choices"][0]["message"]["content"];
    if (!content) return Failed(std::move(p), "the response has no choices[0].message.content", "bad_response");
    p.text = content->get<std::string>();
    if (auto fr = res["choices"][0].find("finish_reason"); fr != res["choices"][0].end() && fr->is_string())
      p.finish_reason = fr->get<std::string>();
    Pay(res, spec_.system.size() + prompt_bytes, p.text.size(), &p);
    p.answer = reader_.Read(p.text, &p.error);
    if (p.answer.empty()) return p;
    p.score = AnswerProbability(res, p.answer);
    return p;
  }

  // The call failed: no answer. What its attempts' usage said was paid stays paid.
  Prediction Failed(Prediction p, const std::string& why, const std::string& kind) {
    if (kind != "cancelled") stats_.errors++;  // a cancelled call is not the model's failure
    p.error = "chat model '" + info_.name + "': " + why;
    p.failed = true;
    p.failure_kind = kind;
    if (std::isnan(p.cost)) p.cost = 0;  // no attempt returned usage: nothing paid
    return p;
  }

  // One attempt, bounded by the deadline. A failed attempt that returned usage (an
  // error body with it) is paid too.
  // `body`: its pieces, sent one after the other (they outlive the call).
  Attempt Send(const std::vector<std::string_view>& body, Clock::time_point deadline, Prediction* p,
               const std::atomic<bool>* cancelled) {
    Attempt a;
    const auto left = std::chrono::duration_cast<std::chrono::microseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      a.error = "no answer within " + FormatMs() + " (timeout_ms)";
      a.kind = "timeout";
      return a;
    }
    std::unique_ptr<httplib::Client> client = Lease();
    client->set_connection_timeout(left);
    client->set_read_timeout(left);
    client->set_write_timeout(left);
    httplib::Headers headers = {{"Accept", "application/json"}};
    if (!key_.empty()) headers.emplace("Authorization", "Bearer " + key_);
    httplib::Request req;
    req.method = "POST";
    req.path = path_;
    req.headers = headers;
    req.headers.emplace("Content-Type", "application/json");
    LendBody(&req, body);
    req.progress = [deadline, cancelled](uint64_t, uint64_t) {
      return Clock::now() < deadline && !IsCancelled(cancelled);
    };
    // The body is received here, so that a response past max_response_mb is refused as
    // it arrives (or at once, from its Content-Length), never held whole.
    const uint64_t max_bytes = static_cast<uint64_t>(spec_.max_response_mb * (1 << 20));
    std::string received;
    bool too_large = false;
    req.content_receiver = BoundedBody(&received, &too_large, max_bytes);
    httplib::Response res;
    httplib::Error err = httplib::Error::Success;
    bool sent = false;
    {
      CancelWatch watch(cancelled, client.get());  // a cancelled run's call is aborted
      sent = client->send(req, res, err);
    }
    res.body = std::move(received);
    if (IsCancelled(cancelled)) {  // not retried, and the client (maybe stopped) not kept
      a.error = "cancelled: the request's client went away or the server is stopping";
      return a;
    }
    if (too_large) {  // not retried: the same request would get the same answer
      a.error =
          "the response is larger than " + std::to_string(max_bytes) + " bytes (max_response_mb in the catalogue)";
      a.kind = "too_large";
      return a;
    }
    if (!sent) {  // the client is dropped: its connection may be broken
      a.retry = true;
      a.kind = err == httplib::Error::Connection ? "connect" : "timeout";
      a.error =
          err == httplib::Error::Connection ? "cannot connect to " + host_
          : (err == httplib::Error::Read || err == httplib::Error::Canceled || err == httplib::Error::ConnectionTimeout)
              ? "no answer within " + FormatMs() + " (timeout_ms)"
              : "HTTP request failed: " + httplib::to_string(err);
      return a;
    }
    Return(std::move(client));
    if (res.status == 200) {
      a.ok = true;
      a.body = std::move(res.body);
      return a;
    }
    // Some servers bill a failed attempt: pay what its usage says.
    json err_body = json::parse(res.body, nullptr, false);
    if (err_body.is_object() && err_body.contains("usage")) Pay(err_body, 0, 0, p);
    a.retry = res.status == 429 || res.status >= 500;
    if (res.has_header("Retry-After")) {
      const std::string v = res.get_header_value("Retry-After");
      if (!v.empty() && v.size() < 6 && v.find_first_not_of("0123456789") == std::string::npos)
        a.retry_after_ms = std::stoi(v) * 1000;
    }
    std::string detail;
    if (err_body.is_object() && err_body.contains("error") && err_body["error"].is_object() &&
        err_body["error"].contains("message") && err_body["error"]["message"].is_string())
      detail = err_body["error"]["message"].get<std::string>();
    else
      detail = res.body.substr(0, 200);
    a.error = "HTTP " + std::to_string(res.status) + ": " + detail;
    a.kind = "http_" + std::to_string(res.status);
    return a;
  }

  // Adds the cost of a response to *p: its usage at the prices, or an estimate from
  // the characters sent and received when it has none or an implausible one (a figure
  // that is not an integer in [0, kMaxUsageTokens]).
  void Pay(const json& res, size_t chars_in, size_t chars_out, Prediction* p) {
    int64_t in = 0, out = 0;
    bool have = false;
    if (auto u = res.find("usage"); u != res.end() && u->is_object()) {
      auto num = [&](const char* k) -> int64_t {
        auto it = u->find(k);
        if (it == u->end() || !it->is_number_integer()) return -1;
        if (it->is_number_unsigned()) {  // past int64_t too, e.g. 2^64 - 1
          const uint64_t v = it->get<uint64_t>();
          return v <= static_cast<uint64_t>(kMaxUsageTokens) ? static_cast<int64_t>(v) : -1;
        }
        const int64_t v = it->get<int64_t>();
        return v >= 0 && v <= kMaxUsageTokens ? v : -1;
      };
      in = num("prompt_tokens");
      out = num("completion_tokens");
      have = in >= 0 && out >= 0;
    }
    if (!have) {
      in = static_cast<int64_t>((chars_in + 3) / 4);
      out = static_cast<int64_t>((chars_out + 3) / 4);
      stats_.estimated_costs++;
    }
    const double usd = (in * spec_.usd_per_mtok_in + out * spec_.usd_per_mtok_out) / 1e6;
    p->cost = (std::isnan(p->cost) ? 0.0 : p->cost) + usd;
    p->tokens_in = AddTokens(p->tokens_in, in);
    p->tokens_out = AddTokens(p->tokens_out, out);
    AddTokens(&stats_.tokens_in, in);
    AddTokens(&stats_.tokens_out, out);
    stats_.usd.fetch_add(usd, std::memory_order_relaxed);
  }

  // The probability of the answer's token, from the response's log-probabilities when
  // it has them (the last token holding the answer); NaN otherwise.
  static float AnswerProbability(const json& res, const std::string& answer) {
    const json& c0 = res["choices"][0];
    if (!c0.contains("logprobs") || !c0["logprobs"].is_object()) return NAN;
    const json& content = c0["logprobs"]["content"];
    if (!content.is_array()) return NAN;
    for (size_t k = content.size(); k-- > 0;) {
      const json& t = content[k];
      if (!t.is_object() || !t.contains("token") || !t["token"].is_string() || !t.contains("logprob") ||
          !t["logprob"].is_number())
        continue;
      if (t["token"].get<std::string>().find(answer) != std::string::npos)
        return static_cast<float>(std::exp(std::min(0.0, t["logprob"].get<double>())));
    }
    return NAN;
  }

  // Kept-alive connections, one a caller at a time.
  std::unique_ptr<httplib::Client> Lease() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!clients_.empty()) {
        auto c = std::move(clients_.back());
        clients_.pop_back();
        return c;
      }
    }
    auto c = std::make_unique<httplib::Client>(host_);
    c->set_keep_alive(true);
    c->set_tcp_nodelay(true);
    return c;
  }
  void Return(std::unique_ptr<httplib::Client> c) {
    std::lock_guard<std::mutex> lock(mu_);
    if (clients_.size() < static_cast<size_t>(spec_.max_concurrency)) clients_.push_back(std::move(c));
  }

  std::string FormatMs() const { return std::to_string(static_cast<int64_t>(spec_.timeout_ms)) + " ms"; }

  const BackendInfo info_;
  const ModelSpec spec_;
  const std::string host_, path_, key_;
  const AnswerReader reader_;
  std::mutex mu_;  // guards clients_
  std::vector<std::unique_ptr<httplib::Client>> clients_;
  ThreadPool pool_;  // max_concurrency workers for a batch's inputs
  std::mutex slots_mu_;
  std::condition_variable slots_cv_;  // guarded by slots_mu_: in_flight_
  int in_flight_ = 0;                 // requests being sent now (<= max_concurrency)
};

}  // namespace

StatusOr<std::unique_ptr<Backend>> CreateOpenAiBackend(const ModelSpec& spec, const BackendOptions&) {
  const std::string what = "model '" + spec.name + "': ";
  if (spec.url.empty()) return InvalidArgumentError(what + "a chat model needs url = \"http://host:port/v1\"");
  const size_t scheme_end = spec.url.find("://");
  const std::string scheme = scheme_end == std::string::npos ? "" : spec.url.substr(0, scheme_end);
  if (scheme != "http" && scheme != "https")
    return InvalidArgumentError(what + "url '" + spec.url + "' must start with http:// or https://");
  const size_t slash = spec.url.find('/', scheme_end + 3);
  const std::string host = spec.url.substr(0, slash);
  std::string prefix = slash == std::string::npos ? "" : spec.url.substr(slash);
  while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
  if (host.size() <= scheme_end + 3) return InvalidArgumentError(what + "url '" + spec.url + "' names no host");
  // httplib parses a URL with a function-local static regex inside its uninstrumented
  // library: built here, on the creating thread, before any thread that calls this
  // backend exists (ordered for ThreadSanitizer, which cannot see the library's guard).
  if (!httplib::Client(host).is_valid()) return InvalidArgumentError(what + "url '" + spec.url + "' is not valid");
  WarmHttplibForTsan();
  if (spec.prompt.empty())
    return InvalidArgumentError(what + "a chat model needs a prompt template, e.g. prompt = \"{question}\"");
  auto fields = PromptFields(spec.prompt);
  if (!fields.ok()) return fields.status().WithPrefix(what + "prompt");
  std::string key;
  if (!spec.api_key_env.empty()) {
    const char* v = std::getenv(spec.api_key_env.c_str());
    if (!v || !*v)
      return FailedPreconditionError(what + "api_key_env names the environment variable " + spec.api_key_env +
                                     ", which is not set");
    key = v;
  }
  auto reader = AnswerReader::Create(spec.answer, spec.labels);
  if (!reader.ok()) return reader.status().WithPrefix("model '" + spec.name + "'");
  if (!(spec.timeout_ms > 0)) return InvalidArgumentError(what + "timeout_ms must be positive");
  BackendInfo info;
  info.name = spec.name;
  info.kind = "openai";
  info.labels = spec.labels;
  info.open_labels = true;
  info.text_inputs = true;
  info.fields = *fields;
  info.cost_unit = "usd";
  info.waits = true;
  return std::unique_ptr<Backend>(
      new OpenAiBackend(std::move(info), spec, host, prefix + "/chat/completions", std::move(key), std::move(*reader)));
}

}  // namespace coe
