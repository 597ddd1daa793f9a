// The Open Inference Protocol server: routes and handlers over the event-driven
// transport (server/http_transport.h, Boost.Beast), with dynamic batching per served
// model (server/batcher.h).
#include "coe/server.h"

#include <malloc.h>

#include <atomic>
#include <charconv>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <ctime>
#include <future>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "base/cores.h"
#include "base/thread_pool.h"
#include "base/tokens.h"
#include "protocol/oip.h"
#include "server/batcher.h"
#include "server/cascade_outputs.h"
#include "server/http_transport.h"
#include "server/metrics.h"

namespace coe {
namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

// Error messages are bounded: a malformed body is never echoed back at length.
constexpr size_t kMaxErrorMessage = 512;

std::string Bounded(std::string message) {
  if (message.size() > kMaxErrorMessage) {
    message.resize(kMaxErrorMessage);
    while (!message.empty() && (static_cast<unsigned char>(message.back()) & 0xC0) == 0x80) message.pop_back();
    if (!message.empty() && static_cast<unsigned char>(message.back()) >= 0xC0) message.pop_back();
    message += "...";
  }
  return message;
}

// A cascade member served on its own: forwards to the backend inside the full cascade
// (shared nets, one set of stats), which it keeps alive.
class SharedBackend : public Backend {
 public:
  SharedBackend(std::shared_ptr<const Cascade> owner, Backend* target) : owner_(std::move(owner)), target_(target) {}
  const BackendInfo& info() const override { return target_->info(); }
  Status Predict(const InputView& batch, std::vector<Prediction>* out) override { return target_->Predict(batch, out); }

 private:
  std::shared_ptr<const Cascade> owner_;
  Backend* target_;
};

int HttpCode(const Status& s) {
  switch (s.code()) {
    case StatusCode::kInvalidArgument:
      return 400;
    case StatusCode::kNotFound:
      return 404;
    case StatusCode::kUnavailable:
    case StatusCode::kResourceExhausted:
      return 503;
    case StatusCode::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

http::Reply ErrorReply(int code, const std::string& message) {
  http::Reply r;
  r.status = code;
  r.body = "{\"error\":";
  oip::AppendJsonString(&r.body, Bounded(message));
  r.body += "}";
  return r;
}

http::Reply JsonReply(std::string body) {
  http::Reply r;
  r.body = std::move(body);
  return r;
}

// A response of the OpenAI front door, built without the HTTP library.
struct HttpReply {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  int retry_after_s = 0;  // > 0: send Retry-After
  bool close = false;     // send Connection: close
};

HttpReply OpenAiError(int status, const std::string& message, bool model_not_found = false) {
  return {status, "application/json", OpenAiErrorJson(status, Bounded(message), model_not_found)};
}

bool IsOpenAiPath(const std::string& path) { return path.starts_with("/v1/"); }

// Why a cascade cannot answer chat requests ("" when it can): every member must read
// text, and its prompt template may use only {input} (the last user message).
std::string ChatRefusal(const std::string& name, const Cascade& c) {
  for (Backend* b : c.members()) {
    const BackendInfo& info = b->info();
    if (!info.text_inputs) return "model '" + name + "' takes tensors (member '" + info.name + "'), not chat messages";
    for (const std::string& f : info.fields)
      if (f != "input")
        return "model '" + name + "': member '" + info.name + "' fills its prompt template with {" + f +
               "}; a cascade served over /v1/chat/completions may use only {input}, the last user message";
  }
  return "";
}

// Why a cascade cannot answer infer requests (tensors), "" when it can: a member reads
// text. A chat cascade is named with its route.
std::string TensorRefusal(const std::string& name, const Cascade& c, bool serves_chat) {
  if (serves_chat) return "model '" + name + "' takes chat messages (POST /v1/chat/completions), not tensors";
  for (Backend* b : c.members())
    if (b->info().text_inputs)
      return "model '" + name + "': member '" + b->info().name + "' takes text (JSON records), not tensors";
  return "";
}

std::string MetadataJson(const std::string& name, const Cascade& c) {
  json shape = json::array({-1});
  for (int64_t d : c.input_shape()) shape.push_back(d);
  if (c.input_shape().empty()) shape.push_back(-1);
  json j = {{"name", name},
            {"versions", {"1"}},
            {"platform", "coe"},
            {"inputs", {{{"name", "input"}, {"datatype", "FP32"}, {"shape", shape}}}},
            {"outputs", json::array()}};
  for (const CascadeOutput& o : CascadeOutputs()) {
    json shape = json::array({-1});
    if (o.per_label) shape.push_back(c.labels().size());
    j["outputs"].push_back({{"name", o.name}, {"datatype", DatatypeName(o.type)}, {"shape", shape}});
  }
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

// An infer response as an HTTP reply: JSON, or JSON and binary data.
http::Reply InferReply(const InferResponse& res) {
  std::string tail;
  http::Reply reply;
  reply.body = EncodeInferResponseJson(res, &tail);
  if (!tail.empty()) {
    reply.headers.emplace_back("Inference-Header-Content-Length", std::to_string(reply.body.size()));
    reply.content_type = "application/octet-stream";
    reply.body += tail;
  }
  return reply;
}

std::string Now() {
  const auto t = std::chrono::system_clock::now();
  const std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[80];
  const int ms =
      static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count() % 1000);
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
  return buf;
}

// What a request path names under /v2/models/: the model, an optional version and
// the action ("" metadata, "ready", "infer"); ok = false for any other shape.
struct ModelRoute {
  bool ok = false;
  std::string name, version, action;
};

ModelRoute ParseModelRoute(std::string_view path) {
  constexpr std::string_view kPrefix = "/v2/models/";
  ModelRoute r;
  if (!path.starts_with(kPrefix)) return r;
  std::vector<std::string> seg;
  std::string_view rest = path.substr(kPrefix.size());
  while (true) {
    const size_t slash = rest.find('/');
    seg.emplace_back(rest.substr(0, slash));
    if (slash == std::string_view::npos) break;
    rest.remove_prefix(slash + 1);
  }
  if (seg.empty() || seg[0].empty()) return r;
  r.name = seg[0];
  size_t i = 1;
  if (i < seg.size() && seg[i] == "versions") {
    if (i + 1 >= seg.size() || seg[i + 1].empty()) return r;
    r.version = seg[i + 1];
    i += 2;
  }
  if (i + 1 < seg.size()) return r;
  if (i < seg.size()) {
    if (seg[i] != "ready" && seg[i] != "infer") return r;
    r.action = seg[i];
  }
  r.ok = true;
  return r;
}

}  // namespace

struct Server::Impl {
  ServerOptions options;
  std::vector<ServedModel> models;
  std::map<std::string, const ServedModel*, std::less<>> by_name;
  std::map<std::string, std::string, std::less<>> chat_refusal;    // by model: ChatRefusal, "" = serves chat
  std::map<std::string, std::string, std::less<>> tensor_refusal;  // by model: TensorRefusal, "" = takes tensors
  std::vector<Backend*> members;                                   // one per distinct member name
  Metrics metrics;
  std::atomic<int64_t> inflight{0};
  std::atomic<uint64_t> chat_count{0};
  const int64_t started =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  // Declared after metrics (their runs count there) and before the transport (whose
  // requests they answer): destroyed first-declared last.
  std::map<std::string, std::unique_ptr<Batcher>, std::less<>> batchers;  // by model
  std::atomic<int64_t> io_wait_us{0};                                     // the transport's, as of the last request
  WaitingPool waiting;  // parses large bodies, runs chat requests (they wait on members)

  std::mutex mu;       // guards transport
  std::mutex wait_mu;  // serializes Wait()
  std::unique_ptr<http::Transport> transport;

  void Log(const std::string& line) const {
    if (options.log)
      options.log(line);
    else
      std::fprintf(stderr, "%s\n", line.c_str());
  }

  http::Reply Busy(const std::string& why, bool openai) const {
    http::Reply r = openai ? ToReply(OpenAiError(503, why)) : ErrorReply(503, why);
    r.headers.emplace_back("Retry-After", std::to_string(options.retry_after_s));
    return r;
  }

  static http::Reply ToReply(HttpReply h) {
    http::Reply r;
    r.status = h.status;
    r.content_type = h.content_type;
    r.body = std::move(h.body);
    if (h.retry_after_s > 0) r.headers.emplace_back("Retry-After", std::to_string(h.retry_after_s));
    if (h.content_type == "text/event-stream") r.headers.emplace_back("Cache-Control", "no-cache");
    r.close = h.close;
    return r;
  }

  // Admitted requests (infer, chat, Run): their cancellation flags, set when a
  // shutdown's grace period ends (Shutdown) or, by the transport, when a client goes
  // away.
  std::mutex admitted_mu;
  std::condition_variable admitted_cv;                    // admitted emptied
  std::set<std::shared_ptr<std::atomic<bool>>> admitted;  // under admitted_mu
  std::atomic<bool> cancel_all{false};                    // the grace period ended: every run is cancelled
  std::atomic<int64_t> grace_ms{0};                       // of that shutdown

  // One of max_inflight places, held from admission until the answer is handed to the
  // transport: given back before the reply can reach the client, so that a client
  // sending its next request on an answer never finds its previous one still counted
  // (a closed loop at max_inflight is never refused). Destroyed unanswered: given back.
  // It keeps the request's cancellation flag alive.
  //
  // A large request (a body of kLargeBytes or more) counts in large_inflight: when the
  // last one is done its memory goes back to the system (malloc_trim). coe serve keeps
  // freed blocks of up to 64 MiB in malloc's heap (KeepModelBuffers: the models' buffers
  // are reused at every call), request bodies and messages among them: 16 chat requests
  // of 8 MiB left 1.3 GB resident. The trim also returns free pages inside the heap.
  class Slot {
   public:
    Slot(Impl* im, std::shared_ptr<std::atomic<bool>> cancelled, bool large)
        : im_(im), cancelled_(std::move(cancelled)), large_(large) {
      if (large_) im_->large_inflight++;
    }
    ~Slot() { Release(); }
    void Release() {
      if (released_.exchange(true)) return;
      im_->inflight--;
      {
        std::lock_guard<std::mutex> lock(im_->admitted_mu);
        if (im_->admitted.erase(cancelled_) && im_->admitted.empty()) im_->admitted_cv.notify_all();
      }
      if (large_ && --im_->large_inflight == 0) malloc_trim(0);
    }
    const std::atomic<bool>* cancelled() const { return cancelled_.get(); }

   private:
    Impl* const im_;
    const std::shared_ptr<std::atomic<bool>> cancelled_;
    const bool large_;
    std::atomic<bool> released_{false};
  };
  static constexpr size_t kLargeBytes = 1u << 20;
  std::atomic<int> large_inflight{0};
  // A place for a request of `bytes` whose cancellation flag is `cancelled` (null: a
  // new one), or null with *why when max_inflight requests are in flight or the server
  // is stopping.
  std::shared_ptr<Slot> Admit(std::shared_ptr<std::atomic<bool>> cancelled, size_t bytes, std::string* why) {
    if (!cancelled) cancelled = std::make_shared<std::atomic<bool>>(false);
    auto slot = std::make_shared<Slot>(this, cancelled, bytes >= kLargeBytes);
    if (++inflight > options.max_inflight) {  // the place is given back with the slot
      *why = "server busy: more than " + std::to_string(options.max_inflight) + " requests in flight";
      return nullptr;
    }
    std::lock_guard<std::mutex> lock(admitted_mu);
    if (cancel_all) {
      *why = Stopping();
      return nullptr;
    }
    admitted.insert(std::move(cancelled));
    return slot;
  }
  // `respond`, giving `slot` back first.
  static http::Responder Releasing(std::shared_ptr<Slot> slot, http::Responder respond) {
    return [slot = std::move(slot), respond = std::move(respond)](http::Reply r) {
      slot->Release();
      respond(std::move(r));
    };
  }
  std::string Stopping() const {
    return "server stopping: the request was cancelled when the " + std::to_string(grace_ms.load()) +
           " ms shutdown grace period ended (coe serve --shutdown-grace-ms)";
  }
  // The message of a run that failed with `s`: a run cancelled by a shutdown says so.
  std::string RunError(const Status& s) const {
    return s.code() == StatusCode::kUnavailable && cancel_all ? Stopping() : s.message();
  }
  // The status of a run that failed with `s`: 499 (nginx's "client closed request": the
  // reply is not written; for the metrics and the access log) when its client went
  // away, 503 when busy or stopping, else as HttpCode.
  int RunErrorCode(const Status& s, const std::atomic<bool>* cancelled) const {
    if (s.code() != StatusCode::kUnavailable) return HttpCode(s);
    return !cancel_all && cancelled && cancelled->load() ? 499 : 503;
  }

  // Runs `work`, answering 503 through `respond` when memory runs out: a request the
  // server cannot hold is refused, never the end of the process.
  void OutOfMemoryIs503(const std::function<void()>& work, const http::Responder& respond, bool openai) const {
    try {
      work();
    } catch (const std::bad_alloc&) {
      respond(Busy("server out of memory for this request; retry later", openai));
    }
  }

  // Runs `task` off the I/O threads (on the waiting pool; on this thread if no thread
  // can be had).
  void OffIo(const std::function<void()>& task) {
    if (!waiting.Post(task)) task();
  }

  void Infer(const ServedModel& m, http::Request&& req, const http::Responder& respond_raw) {
    if (const std::string& why = tensor_refusal.at(m.name); !why.empty()) return respond_raw(ErrorReply(400, why));
    std::string why;
    std::shared_ptr<Slot> slot = Admit(std::move(req.cancelled), req.body.size(), &why);
    if (!slot) return respond_raw(Busy(why, false));
    const std::atomic<bool>* cancelled = slot->cancelled();  // lives as long as `respond`
    const http::Responder respond = Releasing(std::move(slot), respond_raw);
    const size_t size = req.body.size();
    // The binary tensor data extension: the JSON's length, when binary data follows it.
    std::optional<size_t> json_size;
    if (const std::string* h = req.Header("inference-header-content-length")) {
      size_t v = 0;
      auto [p, ec] = std::from_chars(h->data(), h->data() + h->size(), v);
      if (ec != std::errc() || p != h->data() + h->size())
        return respond(ErrorReply(400, "Inference-Header-Content-Length must be a byte count"));
      json_size = v;
    }
    // Shared: OffIo's task is copied, its captures with it.
    auto work = [this, &m, body = std::make_shared<std::string>(std::move(req.body)), json_size, respond, cancelled] {
      auto q = ParseInferRequest(*body, m.cascade->input_shape(), json_size);
      std::string().swap(*body);  // decoded: given back before the run
      if (!q.ok()) return respond(ErrorReply(400, q.status().message()));
      auto chosen = ChooseOutputs(*q);
      if (!chosen.ok()) return respond(ErrorReply(400, chosen.status().message()));
      RunOptions ro;
      ro.want_probs = NeedsProbabilities(*chosen);
      ro.cancelled = cancelled;
      InputBatch batch = std::move(q->batch);
      auto meta = std::make_shared<InferRequest>(std::move(*q));
      auto done = [this, &m, meta, chosen = std::move(*chosen), respond, cancelled](StatusOr<RunResult> r) {
        if (!r.ok()) {
          const int code = RunErrorCode(r.status(), cancelled);
          return respond(code == 503 ? Busy(RunError(r.status()), false) : ErrorReply(code, r.status().message()));
        }
        OutOfMemoryIs503([&] { respond(InferReply(CascadeResponse(m.name, *meta, chosen, *r, m.cascade->labels()))); },
                         respond, false);
      };
      Status s = batchers.at(m.name)->Submit(std::move(batch), ro, std::move(done));
      if (!s.ok()) respond(Busy(s.message(), false));
    };
    auto guarded = [this, work = std::move(work), respond] { OutOfMemoryIs503(work, respond, false); };
    // A small body is decoded here (microseconds); a large one off the I/O threads.
    if (size <= (64u << 10)) return guarded();
    OffIo(guarded);
  }

  // The 502 of a chat request no tier answered: the upstreams' own words when calls
  // failed, else that the members answered but nothing could be read from them.
  HttpReply NoAnswer(const ServedModel& m, const RunResult& r) {
    if (r.failures.empty())
      return OpenAiError(502, "no tier of '" + m.name +
                                  "' gave a readable answer: the last tier's members answered, but no answer could be "
                                  "read from their completions (the catalogue's `answer` mode)");
    std::string why;
    std::set<std::string> seen;
    for (const MemberFailure& f : r.failures)
      if (seen.insert(f.error).second) why += (why.empty() ? "" : "; ") + f.error;
    return OpenAiError(502, "no tier of '" + m.name + "' could answer: " + std::to_string(r.failures.size()) +
                                " member call(s) failed: " + why);
  }

  // POST /v1/chat/completions, request in, response out (no transport here): the last
  // user message fills every member's {input}, the cascade runs, and the reply is the
  // winning member's completion with usage summed over every call made.
  // The request's memory: its body, then the message (its JSON text, never decoded),
  // then the record; each given back once the next is made.
  HttpReply Chat(std::string body, std::string* model_name, const std::atomic<bool>* cancelled) {
    auto q = ParseChatRequest(body);
    std::string().swap(body);
    if (!q.ok()) return OpenAiError(400, q.status().message());
    auto it = by_name.find(q->model);
    if (it == by_name.end()) return OpenAiError(404, "no model named '" + q->model + "' (see GET /v1/models)", true);
    const ServedModel& m = *it->second;
    *model_name = m.name;
    if (const std::string& why = chat_refusal.at(m.name); !why.empty()) return OpenAiError(400, why);
    InputBatch batch;
    const uint64_t n = ++chat_count;
    const std::string id = "chatcmpl-coe-" + std::to_string(started) + "-" + std::to_string(n);
    std::string record = "{\"id\":";
    oip::AppendJsonString(&record, id);
    record += ",\"input\":\"";
    record.reserve(record.size() + q->input_json.size() + 2);
    record += q->input_json;
    record += "\"}";
    std::string().swap(q->input_json);
    batch.texts.push_back(std::move(record));
    batch.ids.push_back(id);
    auto r = m.cascade->Run(batch, RunOptions{.cancelled = cancelled});
    if (!r.ok()) {
      HttpReply e = OpenAiError(RunErrorCode(r.status(), cancelled), RunError(r.status()));
      if (e.status == 503) e.retry_after_s = options.retry_after_s;
      return e;
    }
    metrics.AddRun(m.name, *m.cascade, *r);
    if (r->answer[0] == kAbstain) return NoAnswer(m, *r);
    ChatReply reply;
    reply.id = id;
    reply.model = m.name;
    reply.created =
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    reply.content = r->reply.empty() ? "" : r->reply[0];
    if (!r->finish_reason.empty() && !r->finish_reason[0].empty()) reply.finish_reason = r->finish_reason[0];
    // In [0, kTokenCap] (base/tokens.h): their sum, total_tokens, fits too.
    reply.prompt_tokens = r->tokens_in.empty() ? 0 : ClampTokens(r->tokens_in[0]);
    reply.completion_tokens = r->tokens_out.empty() ? 0 : ClampTokens(r->tokens_out[0]);
    reply.answer = r->answer[0] == kAbstain ? "" : r->labels.name(r->answer[0]);
    reply.exit_tier = r->exit_tier[0] + 1;
    reply.votes = r->vote[0].votes;
    reply.members = r->vote[0].members;
    reply.cost_usd = r->cost[0];
    reply.degraded = r->degraded[0] != 0;
    if (q->stream) return {200, "text/event-stream", ChatCompletionEvents(reply, q->include_usage)};
    return {200, "application/json", ChatCompletionJson(reply)};
  }

  // After a response is written: counters and the access log.
  void Logged(const http::Request& req, const http::Reply& res, const std::string& model, double seconds) {
    if (res.status >= 400) metrics.CountError(res.status);
    if (!model.empty()) metrics.CountRequest(by_name.count(model) ? model : "", res.status, seconds);
    if (options.access_log == AccessLog::kOff) return;
    char ms[32];
    std::snprintf(ms, sizeof ms, "%.3f", seconds * 1e3);
    const std::string path = Bounded(req.path);
    if (options.access_log == AccessLog::kJson) {
      json j = {{"time", Now()},
                {"remote", req.remote},
                {"method", req.method},
                {"path", path},
                {"status", res.status},
                {"ms", std::round(seconds * 1e6) / 1e3},
                {"bytes_in", req.wire_bytes},
                {"bytes_out", res.body.size()}};
      Log(j.dump(-1, ' ', false, json::error_handler_t::replace));
    } else {
      Log(Now() + " " + req.remote + " \"" + req.method + " " + path + "\" " + std::to_string(res.status) + " " + ms +
          "ms " + std::to_string(req.wire_bytes) + "B in " + std::to_string(res.body.size()) + "B out");
    }
  }

  // A transport error (malformed request, limits, too many connections), shaped for
  // the route it was meant for.
  http::Reply TransportError(int status, const std::string& path, const std::string& message) {
    metrics.CountError(status);
    http::Reply r = IsOpenAiPath(path) ? ToReply(OpenAiError(status, message)) : ErrorReply(status, message);
    if (options.access_log != AccessLog::kOff) {
      Log(Now() + " - \"" + Bounded(path) + "\" " + std::to_string(status) + " " + Bounded(message));
    }
    return r;
  }

  // Every request, on an I/O thread: answers cheap routes at once and passes infer and
  // chat requests on (models never run on I/O threads).
  void Handle(http::Request&& request, http::Responder respond_raw) {
    const auto t0 = Clock::now();
    io_wait_us.store(request.io_wait_us, std::memory_order_relaxed);
    auto req = std::make_shared<http::Request>();
    req->method = request.method;
    req->path = request.path;
    req->remote = request.remote;
    req->wire_bytes = request.wire_bytes;
    auto model = std::make_shared<std::string>();  // the served model for metrics, once known
    http::Responder respond = [this, t0, req, model, respond_raw](http::Reply r) {
      Logged(*req, r, *model, std::chrono::duration<double>(Clock::now() - t0).count());
      respond_raw(std::move(r));
    };
    const std::string& method = request.method;
    const std::string& path = request.path;
    auto not_found = [&] {
      const std::string what = "no route " + method + " " + path;
      respond(IsOpenAiPath(path) ? ToReply(OpenAiError(404, what)) : ErrorReply(404, what));
    };
    if (method == "GET" || method == "HEAD") {
      if (path == "/v2/health/live") return respond(JsonReply("{\"live\":true}"));
      if (path == "/v2/health/ready") return respond(JsonReply("{\"ready\":true}"));
      if (path == "/v2")
        return respond(JsonReply("{\"name\":\"coe\",\"version\":\"0.1.0\",\"extensions\":[\"binary_tensor_data\"]}"));
      if (path == "/metrics") {
        http::Reply r =
            JsonReply(metrics.Text(inflight.load(), static_cast<double>(io_wait_us.load()) * 1e-6, members));
        r.content_type = "text/plain; version=0.0.4; charset=utf-8";
        return respond(std::move(r));
      }
      if (path == "/v1/models") {
        std::vector<std::string> names;
        for (const ServedModel& m : models)
          if (chat_refusal.at(m.name).empty()) names.push_back(m.name);
        return respond(JsonReply(ModelListJson(names, started)));
      }
    }
    if (method == "POST" && path == "/v1/chat/completions") {
      std::string why;
      std::shared_ptr<Slot> slot = Admit(std::move(request.cancelled), request.body.size(), &why);
      if (!slot) return respond(Busy(why, true));
      const std::atomic<bool>* cancelled = slot->cancelled();  // lives as long as `respond`
      // The body is shared: OffIo's task is copied, its captures with it.
      OffIo([this, body = std::make_shared<std::string>(std::move(request.body)), model, cancelled,
             respond = Releasing(std::move(slot), respond)] {
        OutOfMemoryIs503([&] { respond(ToReply(Chat(std::move(*body), model.get(), cancelled))); }, respond, true);
      });
      return;
    }
    const ModelRoute route = ParseModelRoute(path);
    if (!route.ok) return not_found();
    const bool get = method == "GET" || method == "HEAD";
    if (get == (route.action == "infer") || (method != "POST" && !get)) return not_found();
    auto it = by_name.find(route.name);
    if (it == by_name.end()) return respond(ErrorReply(404, "no model named '" + route.name + "'"));
    if (!route.version.empty() && route.version != "1")
      return respond(ErrorReply(404, "model '" + route.name + "' has no version '" + route.version + "' (only 1)"));
    const ServedModel& m = *it->second;
    if (route.action == "") return respond(JsonReply(MetadataJson(m.name, *m.cascade)));
    if (route.action == "ready") {
      std::string body = "{\"name\":";
      oip::AppendJsonString(&body, m.name);
      return respond(JsonReply(body + ",\"ready\":true}"));
    }
    *model = m.name;
    Infer(m, std::move(request), respond);
  }
};

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() {
  Stop();
  Wait();
}

StatusOr<std::unique_ptr<Server>> Server::Create(const CascadeSpec& spec, const Catalogue& catalogue,
                                                 const EngineOptions& engine, const ServerOptions& options) {
  COE_ASSIGN_OR_RETURN(std::unique_ptr<Cascade> built, Cascade::Create(spec, catalogue, engine));
  std::shared_ptr<const Cascade> cascade = std::move(built);
  const std::string name = !options.name.empty() ? options.name : !spec.name.empty() ? spec.name : "coe";
  std::vector<ServedModel> models = {{name, cascade}};
  if (options.serve_members) {
    const std::vector<std::string> names = spec.AllMembers();
    const std::vector<Backend*> backends = cascade->members();
    for (size_t k = 0; k < names.size(); ++k) {
      if (names[k] == name)
        return InvalidArgumentError("the cascade is served as '" + name +
                                    "', which is also a member's name; give it another name");
      CascadeSpec one;
      one.name = names[k];
      one.tiers.push_back(TierSpec{{names[k]}, {}});
      std::vector<std::unique_ptr<Backend>> b;
      b.push_back(std::make_unique<SharedBackend>(cascade, backends[k]));
      const ModelSpec* ms = catalogue.Find(names[k]);
      const double* cost = ms ? ms->Cost(cascade->cost_name()) : nullptr;
      EngineOptions eo = engine;
      eo.cost_key = cascade->cost_name();
      COE_ASSIGN_OR_RETURN(std::unique_ptr<Cascade> mc,
                           Cascade::FromBackends(one, std::move(b), {cost ? *cost : 0.0}, eo));
      models.push_back({names[k], std::shared_ptr<const Cascade>(std::move(mc))});
    }
  }
  return Create(std::move(models), options);
}

StatusOr<std::unique_ptr<Server>> Server::Create(std::vector<ServedModel> models, const ServerOptions& options) {
  if (models.empty()) return InvalidArgumentError("a server needs at least one model");
  if (options.max_inflight < 1) return InvalidArgumentError("max_inflight must be at least 1");
  if (options.max_body_bytes == 0) return InvalidArgumentError("max_body_bytes must be positive");
  if (options.max_batch < 0 || options.max_queue_delay_us < 0 || options.queue_timeout_ms < 0 ||
      options.batch_workers < 1 || options.max_connections < 1)
    return InvalidArgumentError(
        "max_batch, max_queue_delay_us and queue_timeout_ms must be >= 0, batch_workers and max_connections >= 1");
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->models = std::move(models);
  std::map<std::string, bool> seen_member;
  for (const ServedModel& m : impl->models) {
    if (m.name.empty() || m.name.find('/') != std::string::npos)
      return InvalidArgumentError("invalid model name '" + m.name + "' (empty, or holds '/')");
    if (!m.cascade) return InvalidArgumentError("model '" + m.name + "' has no cascade");
    if (!impl->by_name.emplace(m.name, &m).second) return InvalidArgumentError("two models named '" + m.name + "'");
    std::string refusal = ChatRefusal(m.name, *m.cascade);
    const std::vector<Backend*> ms = m.cascade->members();
    const bool reads_text = !ms.empty() && ms.front()->info().text_inputs;
    if (reads_text && !refusal.empty()) return InvalidArgumentError(refusal);  // a chat cascade no route can feed
    impl->tensor_refusal[m.name] = TensorRefusal(m.name, *m.cascade, refusal.empty());
    impl->chat_refusal[m.name] = std::move(refusal);
    for (Backend* b : m.cascade->members())
      if (!seen_member[b->info().name]) {
        seen_member[b->info().name] = true;
        impl->members.push_back(b);
      }
  }
  BatchOptions bo;
  bo.max_batch = options.max_batch;
  bo.max_queue_delay_us = options.max_queue_delay_us;
  bo.queue_timeout_ms = options.queue_timeout_ms;
  bo.cancel_all = &impl->cancel_all;
  // Without batching every request runs alone, as many at once as are admitted.
  bo.workers = options.max_batch > 1 ? options.batch_workers : options.max_inflight;
  Impl* im = impl.get();
  for (const ServedModel& m : impl->models) {
    const ServedModel* mp = &m;
    impl->batchers[m.name] = std::make_unique<Batcher>(
        m.cascade, bo, [im, mp](const RunResult& r) { im->metrics.AddRun(mp->name, *mp->cascade, r); });
  }
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

Status Server::Start(const std::string& host, int port) {
  Impl& im = *impl_;
  std::lock_guard<std::mutex> lock(im.mu);
  if (im.transport)
    return FailedPreconditionError("the server is already serving on port " + std::to_string(im.transport->port()));
  if (port < 0 || port > 65535) return InvalidArgumentError("port " + std::to_string(port) + " is out of range");
  im.cancel_all = false;  // after a Shutdown
  const ServerOptions& o = im.options;
  http::TransportOptions t;
  t.io_threads = o.io_threads > 0 ? o.io_threads : std::clamp(AvailableCores(), 1, 4);
  t.listen_backlog = std::max(1, o.listen_backlog);
  t.max_connections = std::max(1, o.max_connections);
  t.header_timeout_ms = std::max(1, o.header_timeout_ms);
  t.body_timeout_ms = std::max(1, o.io_timeout_s * 1000);
  t.write_timeout_ms = std::max(1, o.io_timeout_s * 1000);
  t.idle_timeout_ms = std::max(1, o.keep_alive_timeout_s * 1000);
  t.max_requests_per_connection = std::max(0, o.keep_alive_max_requests);
  t.max_body_bytes = o.max_body_bytes;
  t.max_io_wait_ms = std::max(0, o.max_io_wait_ms);
  auto transport = http::Transport::Listen(
      host, port, t,
      [&im](http::Request&& req, http::Responder respond) { im.Handle(std::move(req), std::move(respond)); },
      [&im](int status, const std::string& path, const std::string& message) {
        return im.TransportError(status, path, message);
      });
  if (!transport.ok()) return transport.status();
  im.transport = std::move(*transport);
  return Status::Ok();
}

int Server::port() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->transport ? impl_->transport->port() : 0;
}

void Server::Stop() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  if (impl_->transport) impl_->transport->Stop();
}

void Server::Shutdown(int grace_ms) {
  Impl& im = *impl_;
  Stop();
  {
    std::unique_lock<std::mutex> lock(im.admitted_mu);
    im.admitted_cv.wait_for(lock, std::chrono::milliseconds(std::max(0, grace_ms)),
                            [&] { return im.admitted.empty(); });
    im.grace_ms = std::max(0, grace_ms);
    im.cancel_all = true;  // runs of several requests (batched) see it; nothing more is admitted
    for (const auto& cancelled : im.admitted) cancelled->store(true);
  }
  Wait();
}

void Server::Wait() {
  Impl& im = *impl_;
  std::lock_guard<std::mutex> wait_lock(im.wait_mu);
  http::Transport* t = nullptr;
  {
    std::lock_guard<std::mutex> lock(im.mu);
    t = im.transport.get();
  }
  if (!t) return;
  t->Wait();  // returns once Stop was called and every connection closed
  std::lock_guard<std::mutex> lock(im.mu);
  im.transport.reset();
}

const std::vector<ServedModel>& Server::models() const { return impl_->models; }

StatusOr<RunResult> Server::Run(const std::string& name, const InputBatch& batch, const RunOptions& options) {
  Impl& im = *impl_;
  auto it = im.batchers.find(name);
  if (it == im.batchers.end()) return NotFoundError("no model named '" + name + "'");
  if (const std::string& why = im.tensor_refusal.at(name); !why.empty()) return InvalidArgumentError(why);
  std::string why;
  size_t bytes = batch.data.size() * sizeof(float);
  for (const std::string& r : batch.texts) bytes += r.size();
  std::shared_ptr<Impl::Slot> slot = im.Admit(nullptr, bytes, &why);
  if (!slot) return UnavailableError(why);
  RunOptions ro = options;
  ro.cancelled = slot->cancelled();
  std::promise<StatusOr<RunResult>> answer;
  Status s = it->second->Submit(batch, ro, [&answer](StatusOr<RunResult> r) { answer.set_value(std::move(r)); });
  if (!s.ok()) return s;
  StatusOr<RunResult> r = answer.get_future().get();
  if (!r.ok() && r.status().code() == StatusCode::kUnavailable) return UnavailableError(im.RunError(r.status()));
  return r;
}

std::vector<std::string> Server::model_names() const {
  std::vector<std::string> out;
  for (const ServedModel& m : impl_->models) out.push_back(m.name);
  return out;
}

std::vector<std::string> Server::chat_model_names() const {
  std::vector<std::string> out;
  for (const ServedModel& m : impl_->models)
    if (impl_->chat_refusal.at(m.name).empty()) out.push_back(m.name);
  return out;
}

std::string Server::MetricsText() const {
  return impl_->metrics.Text(impl_->inflight.load(), static_cast<double>(impl_->io_wait_us.load()) * 1e-6,
                             impl_->members);
}

}  // namespace coe
