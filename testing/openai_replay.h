// An OpenAI-compatible chat server that replays recorded answers, for tests and
// benchmarks of chat-model cascades (no model, no network beyond loopback). In
// testing/: the fixtures tests/ and bench/ share (scripts/check_layers.py).
//
// It loads recordings in coe's CSV format (the shared RouterBench files: per model and
// question an answer letter and the dollars the call cost). A request's prompt carries
// the question's id as "[id:...]"; the reply is a synthesised completion, "Let me
// think. The answer is (B).", or a sentence without a letter where the model's
// answer was unreadable. Usage: the recorded dollars at the fixture price of $1 per
// million tokens in and out, so total tokens = round(dollars x 1e6); 8 of them are the
// completion's, the rest the prompt's (at least 9 tokens in all).
//
// Faults, decided per request by SetFaults' `fault(model, id, attempt)`: 429 or 503 with
// a Retry-After, 500, 401, a timeout (the reply waits `hang_ms`), malformed JSON, a reply
// without usage, usage of 2^62 tokens in and out. Latency per model in `latency_ms`
// (scaled down in tests). SetTexts replaces the synthesised completions of chosen ids;
// SetToolCalls answers chosen ids with tool calls instead (content null, finish_reason
// "tool_calls"). With KeepBodies(true) it keeps every request body it receives
// (Received()), for tests that check what reached the upstream.
//
// Streaming: a request with "stream": true gets its completion as server-sent events
// (OpenAI's chat.completion.chunk format: the role, the text in SetStreaming's
// `chunks` pieces `token_ms` apart, the finish_reason, the usage when
// stream_options.include_usage, then [DONE]); a plain request waits as long in all
// (latency, then the pieces' time). HoldAfter(k) makes a stream stop after its k-th
// piece until Release(), writing an SSE comment every 10 ms meanwhile, so that a
// connection its client closed is noticed (StreamsAborted). Tool calls stream as
// OpenAI's do: each in two deltas (its id and name, then its arguments). Fault
// kStreamCut closes a stream's connection after half its pieces.
#ifndef COE_TESTING_OPENAI_REPLAY_H_
#define COE_TESTING_OPENAI_REPLAY_H_

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "coe/recordings.h"

namespace coe::testing {

struct ReplayTokens {
  int64_t in = 0, out = 0;
};

// The usage the replay server reports for a call that cost `dollars` (see above).
inline ReplayTokens ReplayUsage(double dollars) {
  const int64_t total = std::max<int64_t>(9, std::llround(dollars * 1e6));
  return {total - 8, 8};
}

class OpenAiReplay {
 public:
  enum class Fault {
    kNone,
    k429,
    k503,
    k500,
    k401,         // "invalid api key", as OpenAI says it
    kUnreadable,  // a completion with no answer in it
    kLength,      // the answer, with finish_reason "length" (cut at max_tokens)
    kTimeout,
    kMalformed,
    kNoUsage,
    kHuge,       // a right answer in 40 MiB
    kHugeUsage,  // usage: 2^62 prompt and completion tokens
    kStreamCut,  // streamed: the connection closes after half the pieces
  };

  // model -> id -> (answer, dollars)
  std::map<std::string, std::map<std::string, std::pair<std::string, double>>> calls;
  using FaultFn = std::function<Fault(const std::string& model, const std::string& id, int attempt)>;
  // Set before Start() (the server's threads read them; thread creation orders it).
  std::map<std::string, int> latency_ms;  // per model (0 when absent)

  // Faults, changeable while serving: a timeout fault's wait, a 429/503's
  // Retry-After, and which fault each request meets. The server reads them under
  // its lock (requests come from other processes: nothing else orders them).
  void SetFaults(FaultFn fault, int retry_after_s = 1, int hang_ms = 3000) {
    std::lock_guard<std::mutex> lock(mu_);
    fault_ = std::move(fault);
    retry_after_s_ = retry_after_s;
    hang_ms_ = hang_ms;
  }

  // Completions instead of the synthesised ones, keyed by id (every model's reply) or
  // by model + "\n" + id (that model's); changeable while serving, like the faults.
  void SetTexts(std::map<std::string, std::string> by_id) {
    std::lock_guard<std::mutex> lock(mu_);
    texts_ = std::move(by_id);
  }

  // How completions are streamed (changeable while serving): in `chunks` pieces (at
  // most one per byte), `token_ms` apart, for plain requests too (they wait as long).
  void SetStreaming(int chunks, int token_ms) {
    std::lock_guard<std::mutex> lock(mu_);
    chunks_ = std::max(1, chunks);
    token_ms_ = std::max(0, token_ms);
  }
  // Answers a request for a stream with a plain response, as a server that cannot
  // stream does.
  void IgnoreStream(bool ignore) {
    std::lock_guard<std::mutex> lock(mu_);
    ignore_stream_ = ignore;
  }
  // Streams stop after their k-th piece (0: never) until Release().
  void HoldAfter(int k) {
    std::lock_guard<std::mutex> lock(mu_);
    hold_after_ = k;
    released_ = false;
  }
  void Release() {
    std::lock_guard<std::mutex> lock(mu_);
    released_ = true;
    hold_cv_.notify_all();
  }
  // Pieces of text the latest stream has written (of its n); streams whose client closed the
  // connection (a write failed), and when the last such was noticed.
  int PiecesSent() const { return pieces_sent_.load(); }
  int StreamsAborted() const { return streams_aborted_.load(); }
  std::chrono::steady_clock::time_point AbortNoticed() {
    std::lock_guard<std::mutex> lock(mu_);
    return abort_noticed_;
  }
  // Whether the last call of `model` on `id` asked for a stream, and with usage.
  bool StreamAsked(const std::string& model, const std::string& id, bool* include_usage) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = stream_asked_.find(model + "\n" + id);
    if (it == stream_asked_.end()) return false;
    *include_usage = it->second;
    return true;
  }
  // Seconds from the last streamed call of `model` on `id` entering the handler to its
  // first piece of text written (0: none).
  double FirstPieceSeconds(const std::string& model, const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = first_piece_s_.find(model + "\n" + id);
    return it == first_piece_s_.end() ? 0.0 : it->second;
  }

  // Tool calls (a JSON array, OpenAI's message.tool_calls) instead of a completion,
  // keyed as SetTexts' texts; changeable while serving.
  void SetToolCalls(std::map<std::string, nlohmann::json> by_id) {
    std::lock_guard<std::mutex> lock(mu_);
    tool_calls_ = std::move(by_id);
  }

  // Whether to keep the bodies of the requests received from now on (off: a test of
  // memory sends megabytes).
  void KeepBodies(bool keep) {
    std::lock_guard<std::mutex> lock(mu_);
    keep_bodies_ = keep;
  }
  // The bodies kept, in the order received; `model`: only those for that model.
  std::vector<nlohmann::json> Received(const std::string& model = "") {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<nlohmann::json> out;
    for (const nlohmann::json& b : received_)
      if (model.empty() || (b.is_object() && b.value("model", "") == model)) out.push_back(b);
    return out;
  }
  void ClearReceived() {
    std::lock_guard<std::mutex> lock(mu_);
    received_.clear();
  }

  // Loads the answers and dollars of every model of a recordings CSV.
  bool Load(const std::string& csv) {
    LabelSet labels;
    RecordingsReadOptions o;
    o.allow_duplicate_ids = true;
    auto rec = ReadRecordings(csv, &labels, nullptr, o);
    if (!rec.ok()) return false;
    for (const ModelRecord& m : rec->models)
      for (int i = 0; i < rec->num_examples(); ++i)
        calls[m.name][rec->ids[i]] = {labels.name(m.label[i]), m.cost.empty() ? 0.0 : m.cost[i]};
    return true;
  }

  int Start() {
    // httplib gives each connection a worker for its life (kept alive): enough of them
    // for every client connection of a test or benchmark.
    http_.new_task_queue = [this] {
      auto* q = new httplib::ThreadPool(256);
      queue_ready_ = true;  // the accept loop starts next
      return q;
    };
    http_.set_tcp_nodelay(true);
    http_.set_keep_alive_max_count(100000);  // pooled clients keep their connections
    int fd = -1;
    http_.set_socket_options([&fd](int sock) {
      int yes = 1;
      setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
      fd = sock;
    });
    http_.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) { Chat(req, res); });
    http_.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
      nlohmann::json data = nlohmann::json::array();
      for (const auto& [m, _] : calls) data.push_back({{"id", m}, {"object", "model"}});
      res.set_content(nlohmann::json{{"object", "list"}, {"data", data}}.dump(), "application/json");
    });
    port_ = http_.bind_to_any_port("127.0.0.1");
    if (fd >= 0) ::listen(fd, 1024);  // httplib's own backlog is 5
    thread_ = std::thread([this] { http_.listen_after_bind(); });
    // Listening is not accepting: httplib creates the 256 workers first (seconds under
    // TSan, longer than a client's timeout). Wait for them.
    while (!http_.is_running() || !queue_ready_) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return port_;
  }
  int port() const { return port_; }
  // Stops serving (a killed endpoint); also done by the destructor.
  void Stop() {
    http_.stop();
    if (thread_.joinable()) thread_.join();
  }
  ~OpenAiReplay() { Stop(); }

  std::atomic<int> requests{0};
  // Seconds the last answered call of `model` on `id` spent in this server's handler
  // (its latency and its own work); 0 when none.
  double HandlerSeconds(const std::string& model, const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = handled_s_.find(model + "\n" + id);
    return it == handled_s_.end() ? 0.0 : it->second;
  }
  int Attempts(const std::string& model, const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    return attempts_[model + "\n" + id];
  }

 private:
  void Chat(const httplib::Request& req, httplib::Response& res) {
    requests++;
    const auto entered = std::chrono::steady_clock::now();
    const nlohmann::json body = nlohmann::json::parse(req.body, nullptr, false);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (keep_bodies_) received_.push_back(body);
    }
    auto error = [&](int code, const std::string& message) {
      res.status = code;
      res.set_content(nlohmann::json{{"error", {{"message", message}, {"type", "invalid_request_error"}}}}.dump(),
                      "application/json");
    };
    if (!body.is_object() || !body.contains("model") || !body["model"].is_string() || !body.contains("messages") ||
        !body["messages"].is_array() || body["messages"].empty())
      return error(400, "expected model and messages");
    const std::string model = body["model"];
    std::string prompt;
    for (const auto& m : body["messages"])
      if (m.is_object() && m.value("role", "") == "user" && m.contains("content") && m["content"].is_string())
        prompt = m["content"];
    static const std::regex id_re(R"(\[id:([^\]]+)\])");
    std::smatch match;
    if (!std::regex_search(prompt, match, id_re)) return error(400, "the prompt names no [id:...]");
    const std::string id = match[1];
    auto mit = calls.find(model);
    if (mit == calls.end()) return error(404, "no model " + model);
    auto cit = mit->second.find(id);
    if (cit == mit->second.end()) return error(404, "no recorded answer of " + model + " for " + id);
    int attempt, retry_after_s, hang_ms;
    FaultFn fault;
    {
      std::lock_guard<std::mutex> lock(mu_);
      attempt = attempts_[model + "\n" + id]++;
      fault = fault_;
      retry_after_s = retry_after_s_;
      hang_ms = hang_ms_;
    }
    if (auto l = latency_ms.find(model); l != latency_ms.end() && l->second > 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(l->second));
    bool stream = body.contains("stream") && body["stream"] == true;
    bool include_usage = false;
    if (auto so = body.find("stream_options"); so != body.end() && so->is_object())
      include_usage = so->value("include_usage", false);
    int chunks, token_ms;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stream) stream_asked_[model + "\n" + id] = include_usage;
      stream &= !ignore_stream_;
      chunks = chunks_;
      token_ms = token_ms_;
    }
    const Fault f = fault ? fault(model, id, attempt) : Fault::kNone;
    if (f == Fault::k429 || f == Fault::k503) {
      res.set_header("Retry-After", std::to_string(retry_after_s));
      return error(f == Fault::k429 ? 429 : 503, "busy, retry later");
    }
    if (f == Fault::k500) return error(500, "internal error");
    if (f == Fault::k401) return error(401, "invalid api key");
    if (f == Fault::kTimeout) std::this_thread::sleep_for(std::chrono::milliseconds(hang_ms));
    if (f == Fault::kMalformed) {
      res.set_content("{\"choices\": [", "application/json");
      return;
    }
    const auto& [answer, dollars] = cit->second;
    std::string text = answer.empty() || f == Fault::kUnreadable ? "I cannot tell from the options given."
                                                                 : "Let me think. The answer is (" + answer + ").";
    nlohmann::json message = {{"role", "assistant"}, {"content", text}};
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (auto t = texts_.find(model + "\n" + id); t != texts_.end())
        message["content"] = t->second;
      else if (auto all = texts_.find(id); all != texts_.end())
        message["content"] = all->second;
      auto calls = tool_calls_.find(model + "\n" + id);
      if (calls == tool_calls_.end()) calls = tool_calls_.find(id);
      if (calls != tool_calls_.end())
        message = {{"role", "assistant"}, {"content", nullptr}, {"tool_calls", calls->second}};
    }
    const char* finish = message.contains("tool_calls") ? "tool_calls" : f == Fault::kLength ? "length" : "stop";
    const std::vector<std::string> pieces =
        Pieces(message["content"].is_string() ? message["content"].get<std::string>() : "", chunks);
    if (!stream && token_ms > 0 && pieces.size() > 1)  // as long as streaming it
      std::this_thread::sleep_for(std::chrono::milliseconds(token_ms * static_cast<int>(pieces.size() - 1)));
    nlohmann::json reply = {{"id", "chatcmpl-replay"},
                            {"object", "chat.completion"},
                            {"model", model},
                            {"choices", {{{"index", 0}, {"message", message}, {"finish_reason", finish}}}}};
    if (f == Fault::kHuge) reply["pad"] = std::string(40u << 20, 'x');  // a valid reply of 40 MiB
    if (f == Fault::kHugeUsage) {
      const int64_t huge = int64_t{1} << 62;
      reply["usage"] = {{"prompt_tokens", huge}, {"completion_tokens", huge}, {"total_tokens", huge}};
    } else if (f != Fault::kNoUsage) {
      const ReplayTokens t = ReplayUsage(dollars);
      reply["usage"] = {{"prompt_tokens", t.in}, {"completion_tokens", t.out}, {"total_tokens", t.in + t.out}};
    }
    if (stream)
      return Stream(res, reply, pieces, token_ms, include_usage, f == Fault::kStreamCut, model + "\n" + id, entered);
    res.set_content(reply.dump(), "application/json");
    std::lock_guard<std::mutex> lock(mu_);
    handled_s_[model + "\n" + id] = std::chrono::duration<double>(std::chrono::steady_clock::now() - entered).count();
  }

  // `text` in at most `n` pieces of about equal size, cut at UTF-8 character starts.
  static std::vector<std::string> Pieces(const std::string& text, int n) {
    std::vector<std::string> out;
    size_t at = 0;
    for (int k = 1; k <= n && at < text.size(); ++k) {
      size_t end = k == n ? text.size() : std::max(at + 1, text.size() * k / n);
      while (end < text.size() && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) ++end;
      if (end > at) out.push_back(text.substr(at, end - at));
      at = end;
    }
    return out;
  }

  // The plain `reply` as server-sent events, written by httplib as they are produced.
  void Stream(httplib::Response& res, const nlohmann::json& reply, std::vector<std::string> pieces, int token_ms,
              bool include_usage, bool cut, std::string key, std::chrono::steady_clock::time_point entered) {
    const nlohmann::json& c0 = reply["choices"][0];
    auto chunk = [&reply, include_usage](nlohmann::json delta, nlohmann::json finish) {
      nlohmann::json c = {{"id", reply["id"]},
                          {"object", "chat.completion.chunk"},
                          {"model", reply["model"]},
                          {"choices", {{{"index", 0}, {"delta", std::move(delta)}, {"finish_reason", finish}}}}};
      if (include_usage) c["usage"] = nullptr;
      return "data: " + c.dump() + "\n\n";
    };
    std::vector<std::string> events = {chunk({{"role", "assistant"}, {"content", ""}}, nullptr)};
    for (const std::string& p : pieces) events.push_back(chunk({{"content", p}}, nullptr));
    if (const nlohmann::json& calls = c0["message"].value("tool_calls", nlohmann::json()); calls.is_array())
      for (size_t k = 0; k < calls.size(); ++k) {  // each call in two deltas: its name, then its arguments
        const nlohmann::json& f = calls[k].value("function", nlohmann::json::object());
        const nlohmann::json args = f.value("arguments", nlohmann::json("{}"));
        nlohmann::json head = {{"index", k},
                               {"id", calls[k].value("id", "")},
                               {"type", "function"},
                               {"function", {{"name", f.value("name", "")}, {"arguments", ""}}}};
        events.push_back(chunk({{"tool_calls", nlohmann::json::array({head})}}, nullptr));
        nlohmann::json rest = {{"index", k},
                               {"function", {{"arguments", args.is_string() ? args : nlohmann::json(args.dump())}}}};
        events.push_back(chunk({{"tool_calls", nlohmann::json::array({rest})}}, nullptr));
      }
    events.push_back(chunk(nlohmann::json::object(), c0["finish_reason"]));
    if (include_usage && reply.contains("usage"))
      events.push_back("data: " +
                       nlohmann::json{{"id", reply["id"]},
                                      {"object", "chat.completion.chunk"},
                                      {"choices", nlohmann::json::array()},
                                      {"usage", reply["usage"]}}
                           .dump() +
                       "\n\n");
    events.push_back("data: [DONE]\n\n");
    pieces_sent_ = 0;
    const size_t n = pieces.size();
    const size_t cut_at = cut ? 1 + n / 2 : events.size();  // events [0, cut_at) are written
    res.set_chunked_content_provider(
        "text/event-stream", [this, events = std::move(events), n, token_ms, cut_at, key = std::move(key), entered](
                                 size_t, httplib::DataSink& sink) {
          auto aborted = [&] {
            streams_aborted_++;
            std::lock_guard<std::mutex> lock(mu_);
            abort_noticed_ = std::chrono::steady_clock::now();
            return false;
          };
          for (size_t k = 0; k < events.size(); ++k) {  // events 1..n are the pieces
            if (k == cut_at) return false;              // kStreamCut: the connection closes mid-stream
            if (k > 1 && k <= n && token_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(token_ms));
            if (k >= 1 && k <= n) pieces_sent_ = static_cast<int>(k);  // counted before its client can see it
            if (!sink.write(events[k].data(), events[k].size())) return aborted();
            if (k == 0 || k > n) continue;
            if (k == 1) {
              std::lock_guard<std::mutex> lock(mu_);
              first_piece_s_[key] = std::chrono::duration<double>(std::chrono::steady_clock::now() - entered).count();
            }
            if (!Hold(sink, static_cast<int>(k))) return aborted();
          }
          sink.done();
          std::lock_guard<std::mutex> lock(mu_);
          handled_s_[key] = std::chrono::duration<double>(std::chrono::steady_clock::now() - entered).count();
          return true;
        });
  }

  // After a piece: held there while HoldAfter says so, probing the connection with an
  // SSE comment every 10 ms (a closed one fails a write). False: the client is gone.
  bool Hold(httplib::DataSink& sink, int piece) {
    std::unique_lock<std::mutex> lock(mu_);
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);  // never a hung test
    while (hold_after_ > 0 && piece == hold_after_ && !released_ && std::chrono::steady_clock::now() < until) {
      hold_cv_.wait_for(lock, std::chrono::milliseconds(10));
      lock.unlock();
      static constexpr char kProbe[] = ": held\n\n";
      const bool ok = sink.write(kProbe, sizeof kProbe - 1);
      lock.lock();
      if (!ok) return false;
    }
    return true;
  }

  httplib::Server http_;
  std::thread thread_;
  int port_ = 0;
  std::mutex mu_;
  std::map<std::string, int> attempts_;
  std::map<std::string, double> handled_s_;
  std::atomic<bool> queue_ready_{false};
  FaultFn fault_;  // guarded by mu_, as the three below
  int retry_after_s_ = 1, hang_ms_ = 3000;
  std::map<std::string, std::string> texts_;
  // Streaming (guarded by mu_ but for the atomics).
  int chunks_ = 20, token_ms_ = 0, hold_after_ = 0;
  bool released_ = false, ignore_stream_ = false;
  std::condition_variable hold_cv_;           // released_
  std::map<std::string, bool> stream_asked_;  // model + "\n" + id: include_usage
  std::map<std::string, double> first_piece_s_;
  std::chrono::steady_clock::time_point abort_noticed_;
  std::atomic<int> pieces_sent_{0}, streams_aborted_{0};
  std::map<std::string, nlohmann::json> tool_calls_;
  bool keep_bodies_ = false;
  std::vector<nlohmann::json> received_;
};

}  // namespace coe::testing

#endif  // COE_TESTING_OPENAI_REPLAY_H_
