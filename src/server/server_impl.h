// Internal to the server layer: the state of a Server (Server::Impl) and the helpers
// its routes share. server.cc holds the server's life (create, start, stop) and the
// admission of requests; routes.cc the routing of every request (Impl::Handle);
// infer_route.cc the Open Inference Protocol's infer route; chat_route.cc the OpenAI
// front door, chat_gateway.cc its response cache, cost ceiling and model list.
#ifndef COE_SERVER_SERVER_IMPL_H_
#define COE_SERVER_SERVER_IMPL_H_

#include <malloc.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/thread_pool.h"
#include "coe/server.h"
#include "server/batcher.h"
#include "server/http_transport.h"
#include "server/metrics.h"
#include "server/response_cache.h"
#include "server/shadow.h"

namespace coe {

using Clock = std::chrono::steady_clock;

// An error message cut to 512 bytes (at a UTF-8 boundary) with "...": a malformed body
// is never echoed back at length.
std::string Bounded(std::string message);

// The HTTP status of a failed run's or request's status code.
int HttpCode(const Status& s);

// {"error": message} with `code`: the Open Inference Protocol's error.
http::Reply ErrorReply(int code, const std::string& message);
http::Reply JsonReply(std::string body);

// A response of the OpenAI front door, built without the HTTP library.
struct HttpReply {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  int retry_after_s = 0;                                     // > 0: send Retry-After
  bool close = false;                                        // send Connection: close
  std::vector<std::pair<std::string, std::string>> headers;  // more headers
};

// An error in OpenAI's shape (the message Bounded); `param`: the request parameter it
// is about, if any.
HttpReply OpenAiError(int status, const std::string& message, bool model_not_found = false,
                      const std::string& param = "");
// The same with its `code` and `param` ("": null).
HttpReply OpenAiCodedError(int status, const std::string& message, std::string_view code, std::string_view param);

// The coe-pinned header of a reply whose parameters members' catalogues pinned: their
// names; {"", ""} when none was.
std::pair<std::string, std::string> PinnedHeader(const ChatReply& reply);

// Whether the member of run `r`'s answering tier failed, when that tier is a single
// member: a streamed member (RunOptions::tokens) whose call failed.
bool SingleMemberFailed(const Cascade& c, const RunResult& r);

// The streamed reply of a chat request with `stream: true` whose last tier streams
// (RunOptions::tokens): its events go to the client as the member produces them. The
// reply opens (200, text/event-stream, through `respond`) at the first piece of
// content, and its status is final from then on; until then nothing is sent, and the
// request is answered as any (an earlier tier's answer, an error) by its Responder.
// Used on one thread at a time (Chat's, then the member call's, then Chat's again).
class ChatStream : public TokenSink {
 public:
  explicit ChatStream(const http::Responder* respond) : respond_(respond) {}  // `respond` outlives it
  ~ChatStream() override;  // an opened stream not ended is ended with an error event
  ChatStream(const ChatStream&) = delete;
  ChatStream& operator=(const ChatStream&) = delete;
  // Before the run: the reply's id, model and created; whether usage is asked for;
  // a header of the response besides its content type (coe-pinned; {"", ""}: none).
  void Start(ChatReply head, bool include_usage, std::pair<std::string, std::string> header) {
    head_ = std::move(head);
    include_usage_ = include_usage;
    header_ = std::move(header);
  }
  bool Text(std::string_view piece) override;
  bool opened() const { return stream_ != nullptr; }
  // Ends an opened stream with Chat's reply: a 200's body (the last events), or an
  // error's as an error event; `reply.status` is the request's outcome in the logs.
  void End(const HttpReply& reply);

 private:
  const http::Responder* const respond_;
  ChatReply head_;
  bool include_usage_ = false;
  std::pair<std::string, std::string> header_;
  std::shared_ptr<http::ReplyStream> stream_;
};

// Why a cascade cannot answer chat requests ("" when it can): every member must read
// text; with input = "template" its prompt template may use only {input} (the user
// message), with input = "messages" it must read conversations.
std::string ChatRefusal(const std::string& name, const Cascade& c);

// One load of the served cascade (a generation): the models it serves and what the
// server built of them. Immutable once built; a request takes the current generation
// (Impl::Current) when it arrives and holds it until it is answered, so it runs, is
// batched and is answered by one generation whatever reloads meanwhile. An old
// generation is destroyed when the last request holding it is done, on the Reaper's
// thread (never a batcher's own worker, which its destructor joins).
struct Generation {
  uint64_t number = 0;    // 1 for the cascade the server was created with, +1 per reload
  int64_t loaded_at = 0;  // unix seconds
  std::string origin;     // where it came from (CascadeSource::origin), "" when given in process
  std::vector<ServedModel> models;
  std::map<std::string, const ServedModel*, std::less<>> by_name;
  std::map<std::string, std::string, std::less<>> chat_refusal;    // by model: ChatRefusal, "" = serves chat
  std::map<std::string, std::string, std::less<>> tensor_refusal;  // by model: TensorRefusal, "" = takes tensors
  std::vector<Backend*> members;                                   // one per distinct member name
  // By model: its load, a number no other cascade loaded in this process has (the
  // response cache's keys hold it, so no generation is answered from another's replies).
  std::map<std::string, uint64_t, std::less<>> loads;
  // By model of more than one tier: its shadow verification (server.h), against this
  // generation's plan. Shadow runs of its requests hold the generation.
  std::map<std::string, std::unique_ptr<ShadowMonitor>, std::less<>> shadow;
  // Declared last: destroyed first (their runs' callbacks read `models`).
  std::map<std::string, std::unique_ptr<Batcher>, std::less<>> batchers;  // by model

  const ServedModel* Find(std::string_view name) const {
    auto it = by_name.find(name);
    return it == by_name.end() ? nullptr : it->second;
  }
};

// The models a cascade file serves (server.cc): the cascade as `name`, and with
// serve_members each member on its own (a 1-tier cascade sharing the member's backend).
StatusOr<std::vector<ServedModel>> ServedModelsOf(const CascadeSpec& spec, const Catalogue& catalogue,
                                                  const EngineOptions& engine, const std::string& name,
                                                  bool serve_members);
// The cascade's served name: options.name, else the spec's name, else "coe".
std::string ServedName(const ServerOptions& options, const CascadeSpec& spec);

// Destroys retired generations on its own thread: the last request holding one may end
// on a batcher worker of that generation (whose destructor joins it) or an I/O thread
// (which must not wait for backends to close). Stop() drains the queue and joins; a
// generation released after that is destroyed on the releasing thread.
class Reaper {
 public:
  Reaper() : thread_([this] { Loop(); }) {}
  ~Reaper() { Stop(); }
  Reaper(const Reaper&) = delete;
  Reaper& operator=(const Reaper&) = delete;
  void Retire(Generation* g) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!stop_) {
        queue_.push_back(g);
        cv_.notify_one();
        return;
      }
    }
    delete g;
  }
  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void Loop() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and drained
      Generation* g = queue_.front();
      queue_.pop_front();
      lock.unlock();
      delete g;
      lock.lock();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;  // guarded by mu_: queue_, stop_
  std::deque<Generation*> queue_;
  bool stop_ = false;
  std::thread thread_;
};

struct Server::Impl {
  ServerOptions options;
  EngineOptions engine;  // a reload builds its cascade with these
  Metrics metrics;
  std::atomic<int64_t> inflight{0};
  std::atomic<uint64_t> chat_count{0};
  std::unique_ptr<ResponseCache> cache;  // null: off (ServerOptions::cache_bytes 0)
  // The request log (null: off). Declared before the batchers, whose runs add to it:
  // destroyed after them, writing what they queued.
  std::unique_ptr<RequestLog> request_log;
  const int64_t started =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  std::atomic<int64_t> io_wait_us{0};  // the transport's, as of the last request

  // Picks made whose Shadow has not posted yet (Server::FlushShadow waits for none).
  // Declared before the generations, whose requests hold picks: destroyed after them.
  std::mutex shadow_mu;
  std::condition_variable shadow_cv;  // guarded by shadow_mu: shadow_pending fell to 0
  int64_t shadow_pending = 0;         // under shadow_mu

  // Reloads: counted by outcome; serialized by reload_mu (one builds at a time, the
  // generation numbers follow the swaps).
  std::mutex reload_mu;
  std::atomic<uint64_t> reloads_ok{0}, reloads_failed{0};
  // Declared after metrics and cancel_all (the generations' batchers use them) and
  // before the waiting pool and the transport (whose requests hold generations):
  // destroyed after them, the reaper last of the three.
  std::shared_ptr<Reaper> reaper = std::make_shared<Reaper>();
  mutable std::mutex current_mu;              // guards current
  std::shared_ptr<const Generation> current;  // never null after Create
  std::shared_ptr<const Generation> Current() const {
    std::lock_guard<std::mutex> lock(current_mu);
    return current;
  }
  // Builds a generation of `models` (its number and origin set by the caller), or says
  // why they cannot be served (Server::Create's checks).
  StatusOr<std::unique_ptr<Generation>> Build(std::vector<ServedModel> models);
  // Makes `g` the current generation; the old one lives on while requests hold it.
  void Install(std::unique_ptr<Generation> g);
  // POST /coe/reload (off the I/O threads): Server::Reload, answered as JSON.
  void ReloadRoute(const http::Request& request, const http::Responder& respond);
  StatusOr<ReloadInfo> Reload(const CascadeSource* source);
  // Shadow runs (null: ServerOptions::shadow.share 0). Declared after the generation
  // (its jobs hold generations, released to the reaper) and before the pool and the
  // transport, whose requests post to it: destroyed after them, cancelling its runs.
  std::unique_ptr<ShadowRunner> shadow_runner;
  // Shadow verification (shadow_route.cc; see server.h). Before a run of model `m` of
  // `gen` on `inputs`: the examples chosen by their keys (`keys[i]`, "" or absent: the
  // example's input bytes), with a copy of their inputs; null when none is (or shadow
  // is off, or `m` has one tier). After the run answered (its reply handed over):
  // Shadow posts a shadow run of those of them that exited before the last tier by
  // their tier's rule; `log_ids`: the run's examples' ids in the request log (their
  // shadow results are logged under them; may be empty without a log).
  struct ShadowPick;
  // The keys of a request's `n` examples by its `id`: {id} for one, else "<id>/<k>"
  // (none without an id: the examples' bytes choose).
  static std::vector<std::string> ShadowKeys(const std::string& id = "", int64_t n = 0);
  std::shared_ptr<ShadowPick> PickShadow(const Generation& gen, const ServedModel& m, const InputView& inputs,
                                         std::span<const std::string> keys);
  void Shadow(const std::shared_ptr<const Generation>& gen, const ServedModel& m, ShadowPick& pick, const RunResult& r,
              std::span<const std::string> log_ids);
  // The shadow run of `job` (on a shadow worker).
  struct ShadowJob;
  void RunShadow(const Generation& gen, const ServedModel& m, const ShadowJob& job, const std::atomic<bool>& stop);
  std::string ShadowText(const Generation& gen) const;  // the coe_shadow_* series ("" when off)
  std::string PlanHealth() const;                       // GET /coe/plan-health
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
    for (auto& header : h.headers) r.headers.push_back(std::move(header));
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
      if (r.stream)  // a streamed reply: the place is given back as it ends
        r.stream->AtEnd([slot](int, size_t) { slot->Release(); });
      else
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

  // POST /v2/models/NAME/infer on model `m` of generation `gen` (held until answered).
  void Infer(std::shared_ptr<const Generation> gen, const ServedModel& m, http::Request&& req,
             const http::Responder& respond_raw);

  // The request log's lines for run `r` of model `m` (request_logging.cc): one per
  // example, `ids` theirs, `inputs` the examples as the members got them, `ms` the
  // time since admission; `shadow` (a shadow run's lines): each example's "shadow"
  // field, as JSON text. Nothing without a log.
  void LogRun(const ServedModel& m, const char* route, const std::vector<std::string>& ids, const InputBatch& inputs,
              const RunResult& r, double ms, std::span<const std::string> shadow = {});
  // The /metrics lines of the request log ("" without one).
  std::string LogMetrics() const;

  // The 502 of a chat request no tier answered: the upstreams' own words when calls
  // failed, else that the members answered but nothing could be read from them.
  HttpReply NoAnswer(const ServedModel& m, const RunResult& r);

  // POST /v1/chat/completions, request in, response out (no transport here): the
  // request becomes the cascade's record (the user message for {input}, or the whole
  // conversation, by the cascade's input mode, and the parameters to forward), the
  // cascade runs, and the reply is the winning member's completion with usage summed
  // over every call made. The request's memory: its body, then the record (the
  // messages' JSON text, never decoded), the body given back once the record is made.
  // `header_ceiling`: the coe-max-cost-usd header's cost ceiling, if any. With
  // `stream` (ChatRoute's), a request with `stream: true` streams its last tier there;
  // once it opened, the reply returned is the stream's end (ChatStream::End).
  // `after_reply` (when given) receives what is to run once the reply is handed over
  // (a shadow run's posting), or stays empty.
  HttpReply Chat(const std::shared_ptr<const Generation>& gen, std::string body, std::optional<double> header_ceiling,
                 std::string* model_name, const std::atomic<bool>* cancelled, ChatStream* stream = nullptr,
                 std::function<void()>* after_reply = nullptr);
  std::string NewChatId();
  static int64_t NowSeconds();
  // The response to `q` of `reply`: JSON, or server-sent events when q streams.
  static HttpReply Render(const ChatReply& reply, const ChatRequest& q);
  // The response cache (chat_route.cc): the key of a request to `m` ("" when it is not
  // cached: the cache is off, the request is large or not deterministic), and a reply
  // from the cache.
  std::string CacheKey(const Generation& gen, const ServedModel& m, const CanonicalChatRequest& c) const;
  HttpReply FromCache(ChatReply reply, const ChatRequest& q, std::string id);
  // A cache hit's line in the request log (there is one): `record` the request's.
  void LogCached(const ServedModel& m, const std::string& id, std::string record, const ChatReply& hit,
                 Clock::time_point t0);
  // A cost ceiling (chat_route.cc): sets ro->max_tiers to the deepest tier it can pay
  // for, or returns the refusal (400) of a ceiling below tier 1's estimated cost.
  std::optional<HttpReply> Budget(const ServedModel& m, const InputBatch& batch, double ceiling, RunOptions* ro) const;
  // The 1-based tier where the ceiling stopped run `r` (its rule would have deferred), or 0.
  static int BudgetStop(const ServedModel& m, const RunOptions& ro, const RunResult& r);

  // After a response is written: counters and the access log.
  void Logged(const http::Request& req, const http::Reply& res, const std::string& model, double seconds);
  void Logged(const http::Request& req, int status, size_t bytes_out, const std::string& model, double seconds);

  // A transport error (malformed request, limits, too many connections), shaped for
  // the route it was meant for.
  http::Reply TransportError(int status, const std::string& path, const std::string& message);

  // Every request, on an I/O thread: answers cheap routes at once and passes infer and
  // chat requests on (models never run on I/O threads).
  void Handle(http::Request&& request, http::Responder respond_raw);

  // POST /v1/chat/completions on an I/O thread: admits the request and runs Chat off
  // the I/O threads, on generation `gen` (held until answered).
  void ChatRoute(std::shared_ptr<const Generation> gen, http::Request&& request, http::Responder respond,
                 std::shared_ptr<std::string> model);
  // GET /v1/models: the cascades of `gen` that answer chat requests.
  http::Reply ModelList(const Generation& gen) const;
  // GET /v1/models/{id}: one of them, or 404 (code model_not_found).
  http::Reply ModelRetrieve(const Generation& gen, std::string_view id) const;
  // The reload series of /metrics (reload.cc).
  std::string ReloadText(const Generation& gen) const;
  // The /metrics page.
  std::string MetricsPage() const;
  // With ServerOptions::api_key: the 401 of a request to a model route without the key
  // (null when it may pass). Never logs the key.
  std::optional<http::Reply> KeyRefusal(const http::Request& request) const;
};

}  // namespace coe

#endif  // COE_SERVER_SERVER_IMPL_H_
