// coe/server.h: a cascade served over the Open Inference Protocol (KServe v2) REST API.
//
// A Server serves models; each is a Cascade under a name. Server::Create from a cascade
// file serves the cascade as one model and, unless disabled, every member of it as its
// own model (a 1-tier cascade sharing the member's backend), so that another coe can
// call a member as a `remote` backend.
//
// Routes (../shared/specs/open_inference_rest.yaml):
//   GET  /v2/health/live, /v2/health/ready       200 {"live"|"ready": true}
//   GET  /v2                                     server metadata
//   GET  /v2/models/{name}[/versions/1]          model metadata (below)
//   GET  /v2/models/{name}[/versions/1]/ready    200 {"name", "ready": true}
//   POST /v2/models/{name}[/versions/1]/infer    inference (below)
//   GET  /metrics                                Prometheus text format
//   POST /v1/chat/completions                    OpenAI chat completions (below)
//   GET  /v1/models                              the models that answer chat
//   GET  /v1/models/{id}                         one of them (404 model_not_found otherwise)
//   POST /coe/reload                             Reload(): the files again (below)
//   GET  /coe/plan-health                        shadow verification, as JSON (below)
//
// Model metadata: platform "coe"; one input "input", FP32, shape [-1, ...input_shape];
// outputs "label" BYTES [-1], "exit_tier" INT32 [-1], "degraded" BOOL [-1] and
// "probabilities" FP32 [-1, C].
//
// Infer request: exactly one input tensor (any name), datatype FP32, shape
// [N, ...input_shape] or flattened [N, prod(input_shape)], `data` row-major, flat or
// nested arrays. Optional "id" (echoed), "parameters" (ignored) and "outputs" (names to
// return; without it: label, exit_tier, degraded). Response outputs:
//   label          BYTES [N]     the answer's class name; "" when unanswered
//   exit_tier      INT32 [N]     1-based tier that answered
//   degraded       BOOL  [N]     true when a failing member forced a fallback answer
//                                (Cascade::Run's `degraded`)
//   probabilities  FP32  [N, C]  only when asked for: the answering tier's mean
//                                probability per label
// and response parameters (scalars, as the protocol requires): "degraded_count" (int)
// and, with probabilities, "labels": the C class names in column order, as the text of
// a JSON array (e.g. "[\"tshirt\",\"trouser\"]").
//
// Errors are JSON {"error": "..."} (messages at most 512 bytes): 400 malformed JSON /
// wrong datatype / wrong shape / data length mismatch / missing input / unknown output
// name / malformed HTTP / a model whose members read text ("model 'x' takes chat
// messages (POST /v1/chat/completions), not tensors"), 404 unknown model or route, 408
// body not received within io_timeout_s of the client's time (time its bytes wait for
// the server's I/O threads does not count), 413 body over max_body_bytes (as received, chunked or not, and after
// gzip/deflate decoding), 415 another Content-Encoding, 431 header too large, 500
// engine failure, 503 (with Retry-After) when more than max_inflight requests are
// admitted, when the queue would not let a request start within queue_timeout_ms, for
// a connection beyond max_connections, or for a request the server cannot allocate
// (out of memory: refused, never the end of the process).
//
// Cancellation: a client that closes its connection before its answer (Go's net/http
// and nginx treat a half-close so too) has its request cancelled: its run starts no
// further tier nor upstream call and its members' HTTP calls in flight are aborted
// (RunOptions::cancelled); the reply is dropped and counted as 499 (nginx's "client
// closed request") in /metrics and the access log. A batched run of several requests
// goes on while any of them waits for it. Shutdown(grace_ms) cancels what is still
// running after its grace period (503 "server stopping").
//
// Transport (server/http_transport.h): event-driven HTTP/1.1 on Boost.Beast; a few I/O
// threads serve every connection and never run models; keep-alive without a request
// cap; pipelined requests answered in order; a client too slow for the header deadline
// is closed, one too slow for the body's gets 408, idle ones are closed after
// keep_alive_timeout_s. Infer requests for a model go
// through its dynamic batcher (server/batcher.h); answers do not depend on batching.
//
// The OpenAI front door: a model whose members are all chat models (text inputs)
// answers POST /v1/chat/completions, by its cascade's `input` (coe/cascade_spec.h):
// "template", the request's one user message fills every member's {input} (such a
// cascade's templates may use no other field: Create refuses it otherwise), and a
// request carrying more (a system message, earlier turns, a trailing assistant
// message) is 400 saying so; "messages", every member gets the whole conversation. The
// request's parameters are checked and forwarded to every member, or refused with 400
// naming them (ChatParameters(), coe/protocol.h); a parameter a member's catalogue pins
// to another value is said in "coe": {"pinned"} and the header coe-pinned. The cascade
// runs; the reply is the completion of the member whose answer won (the last-listed of
// the winning group) with its tool_calls, "usage" sums every call made (every member
// of every tier reached) and "coe" holds the facts: answer, exit_tier, agreement,
// votes, members, cost_usd, degraded. "stream": true is answered as server-sent
// events: when the run reaches a last tier of one member, its tokens are relayed as the
// upstream produces them (TokenSink); otherwise once the deciding tier has answered
// (ChatCompletionEvents). An upstream failing after the first byte ends the stream with
// an error event.
// Errors use OpenAI's body {"error": {"message", "type", "param", "code"}}: 400 bad
// request (param: the field at fault) or a tensor model, 401 without the server's
// key (ServerOptions::api_key; code invalid_api_key), 404 unknown model (code model_not_found), 502 when no
// tier could answer because members failed (an unreachable endpoint: the reply would
// hold no completion), 503 busy.
//
// A cost ceiling per chat request: "coe": {"max_cost_usd": x} in the body, or the
// header `coe-max-cost-usd: x` (both: they must be equal; x a number >= 0, dollars;
// anything else is 400 naming it). Before any call, each tier's cost on the request
// is estimated (Cascade::EstimateTierCosts: a chat member's prompt at 4 characters a
// token, its completion at max_tokens, at its prices); the run reaches at most the
// deepest tier k whose tiers 1..k together are estimated at <= x (RunOptions::
// max_tiers): tier k then decides as a last tier does (its plurality; the degraded
// fallback when it has none and a member failed). "coe" says max_cost_usd and
// budget_stopped: true, with stopped_at_tier k, when the run ended at tier k < the
// cascade's last and tier k's rule would have deferred. A ceiling below tier 1's
// estimate is 400 (code "max_cost_too_low", param "coe.max_cost_usd") naming both:
// the request can never be served as sent (not 402: no payment would change that).
// What is paid is measured as always: the estimate only chooses the tiers.
//
// Response cache (ServerOptions::cache_bytes > 0): a chat request that would get the
// same answer again is answered from the cache when an identical one was: one with
// an integer "seed", or one whose members sample greedily (its temperature 0 or
// absent, and every member's catalogue temperature 0, the catalogue's default).
// Identical: the same served model (and load of its cascade) and the same canonical
// request (CanonicalizeChatRequest: the body parsed, "stream"/"stream_options" left
// out, the ceiling as coe.max_cost_usd, 0.0 as 0, keys sorted). A hit makes no upstream call,
// gets a new id, usage 0 and "coe": {"cached": true, "cost_usd": 0, ...the rest as
// first answered}, streamed or not as asked. Only 200 answers that are not degraded
// are stored (no 4xx/5xx, no degraded answer); request bodies of 1 MiB or more are
// not cached (a cached request holds its key, as large as its body, while it runs).
// Least recently used entries are evicted past cache_bytes (keys and
// replies, 256 bytes each for the bookkeeping). Metrics: coe_cache_hits_total,
// coe_cache_misses_total (cacheable requests only), coe_cache_evictions_total,
// coe_cache_bytes, coe_cache_entries, coe_cache_capacity_bytes.
// The messages are built in the protocol layer (coe/protocol.h) and the handler takes
// a body and returns a status, type and body, so that a transport can be swapped.
// Memory: a chat request holds at most its body and the cascade's record at once (the
// messages are never decoded; the chat members send them from the record without a
// copy); when the last request of 1 MiB or more is done,
// the server gives malloc's free pages back to the system (malloc_trim).
//
// Reload (Server::Reload; POST /coe/reload with an empty body, behind the key like the
// model routes, 401 in the /v2 shape; coe serve's SIGHUP): ServerOptions::load gives
// the cascade and catalogue again, a new generation is built beside the serving one and
// swapped in. A request takes the generation serving when it arrives and keeps it to
// its answer: its batch (batches are per generation), its cache key (the key holds the
// cascade's load; the cache is also cleared on reload) and its metrics are its
// generation's; REST and gRPC share the swap. 200 {"generation", "loaded_at", "model",
// "models", "tiers"}; a failed load: 500 {"error": "reload failed, still serving
// generation N: ORIGIN: why", "generation": N} and the old generation serves on; 501
// without ServerOptions::load; 400 for a body. The /metrics counters read from the
// members' own statistics (coe_member_calls..., tokens, dollars, upstream calls) are the
// serving generation's backends': they restart at a reload (a Prometheus counter reset).
//
// Shadow verification (ServerOptions::shadow; coe serve --shadow F): a share F of the
// examples that exit before a cascade's last tier by their tier's rule (not degraded,
// not stopped by a cost ceiling) also run on the last tier alone
// (RunOptions::first_tier), after their reply was handed to the transport, on a few
// shadow workers of their own: never on a request's critical path. Which ones: those
// whose key hashes below F (ShadowChosen, server/shadow.h), the key being the
// request's own id (the REST infer body's "id", example k of N > 1 "<id>/<k>"; the
// batch's ids in Run), else the example's input itself (a tensor's bytes; a chat
// request's record without its id): the same requests are chosen on every run and
// every server.
// A shadow run holds the generation its request ran on (a reload never mixes
// cascades). It waits in a bounded queue (max_queued runs waiting or running): a
// chosen example that finds it full, whose shadow run fails (a member failed) or is
// cancelled by a shutdown is skipped and counted, never waited for. Its cost is
// counted apart (coe_shadow_cost_total), never in the request's cost nor in
// coe_tier_cost_total (the members' own call counters, coe_member_calls_total, do
// count its calls: they were made).
// The exit answer and the last tier's agree when they match by the exiting tier's
// `match` (coe/rules.h AnswerMatch; a last tier that abstains does not agree), as
// `coe plan` computed the cascade file's calibrated_agreement. Per cascade and exiting
// tier, over a window of its latest `window` shadowed exits: the share agreed with its
// two-sided Clopper-Pearson interval at `confidence`, and the plan's level (the tier's
// calibrated_agreement; unknown when the file has none: no alarm). The tier's alarm
// rises when the window holds at least min_samples and the interval's upper bound is
// below the plan's level minus `margin` (then, at that confidence, the tier agrees
// less than planned by more than the margin: its traffic drifted), and clears when the
// bound is back at or above it; each change is a log line (ServerOptions::log).
// GET /coe/plan-health (open, like /metrics): {"generation", "shadow": F, "models":
// {NAME: {"share", "window", "confidence", "margin", "min_samples", "cost", "skipped",
// "tiers": [{"tier", "shadowed", "agreed", "window_n", "window_agreed", "agreement",
// "lower", "upper", "expected", "alarm"}]}}} for every served model of more than one
// tier (agreement and expected null when unknown). /metrics with F > 0: coe_shadow_
// requests_total, _agreed_total, _agreement, _agreement_lower, _agreement_upper,
// _expected_agreement, _alarm ({model, tier}), _cost_total, _skipped_total ({model}).
// A reload starts new monitors with the new generation (its own plan's levels): the
// series restart then (a counter reset), and the old generation's shadow runs still
// queued finish into its monitors, which are no longer shown.
//
// Thread safety: every method may be called from any thread; Start, Stop and Wait are
// serialized internally. Ownership: a Server shares ownership of its cascades; a
// replaced one lives until the last request holding it is answered.
#ifndef COE_SERVER_H_
#define COE_SERVER_H_

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "coe/cascade.h"
#include "coe/cascade_spec.h"
#include "coe/catalogue.h"
#include "coe/protocol.h"
#include "coe/request_log.h"
#include "coe/status.h"
#include "coe/tensor.h"

namespace coe {

enum class AccessLog { kOff, kText, kJson };

// A cascade and its catalogue to serve next (Server::Reload).
struct CascadeSource {
  CascadeSpec spec;
  Catalogue catalogue;
  // Where they came from, for messages (coe serve: "cascade FILE, catalogue FILE").
  std::string origin;
};

// What a reload loaded.
struct ReloadInfo {
  uint64_t generation = 0;                      // 1 for the server's first cascade, +1 per successful reload
  int64_t loaded_at = 0;                        // unix seconds
  std::string model;                            // the cascade's served name
  std::vector<std::string> models;              // every served model, the cascade first
  std::vector<std::vector<std::string>> tiers;  // the cascade's members, tier by tier
};

// Shadow verification (see above). Server::Create refuses values out of range, naming
// the field.
struct ShadowOptions {
  double share = 0;          // F in [0, 1]; 0: off
  int window = 500;          // shadowed exits judged per tier: the latest (>= 1)
  double confidence = 0.95;  // of the interval, in (0, 1)
  double margin = 0.05;      // the alarm: upper bound < expected - margin; in [0, 1)
  int min_samples = 50;      // no alarm on fewer in a window; in [1, window]
  int max_queued = 64;       // shadow runs waiting or running; a chosen example beyond is skipped (>= 1)
  int workers = 2;           // shadow runs at once (>= 1)
};

struct ServerOptions {
  std::string name;                   // the cascade's model name; "" = CascadeSpec::name, else "coe"
  bool serve_members = true;          // Create from a spec: also serve each member on its own
  int max_inflight = 64;              // infer/chat requests admitted at once (queued or running); more get 503
  size_t max_body_bytes = 32u << 20;  // larger request bodies (as received, and decoded) get 413
  // Dynamic batching (per served model): a run takes up to max_batch examples of
  // queued requests, waiting at most max_queue_delay_us for more; batch_workers runs
  // at once. max_batch <= 1: off (every request runs alone, max_inflight at once).
  int max_batch = 64;
  int64_t max_queue_delay_us = 0;
  int batch_workers = 2;
  // A request that cannot start within this (estimated from the queue ahead and the
  // measured pace, or found when a worker reaches it) gets 503 at once; 0 = no limit.
  int64_t queue_timeout_ms = 1000;
  int io_threads = 0;  // I/O threads; 0 = the cores (at most 4)
  // Load shedding for open traffic: an infer or chat request whose I/O-side wait (its
  // bytes' age in the kernel when read, and the I/O threads' recent delay) passes this
  // gets 503 at once, unparsed (a server out of CPU queues there, before its own
  // queues fill); 0 = never (the default, as Triton and Envoy: a closed-loop client
  // that waits for its answers is never shed). 20 suits public traffic.
  int max_io_wait_ms = 0;
  int max_connections = 4096;       // connections beyond get 503 and are closed
  int keep_alive_max_requests = 0;  // requests on one connection before it is closed; 0 = no cap
  int listen_backlog = 1024;        // connections the kernel holds before accept
  int keep_alive_timeout_s = 5;     // idle keep-alive connections close after this
  int header_timeout_ms = 10000;    // a request's header must arrive within this
  // A request's body must arrive within this of the client's time (else 408), and its
  // reply be taken within it.
  int io_timeout_s = 10;
  int retry_after_s = 1;  // the Retry-After of a 503
  AccessLog access_log = AccessLog::kOff;
  // The front door's key: when not empty, a request to a model route (/v1/... and
  // /v2/models/...) must carry `Authorization: Bearer <api_key>` (compared in constant
  // time), else it gets 401 (OpenAI's shape, code "invalid_api_key", on /v1; the
  // protocol's {"error"} on /v2) with `WWW-Authenticate: Bearer`. Health (/v2/health/...),
  // server metadata (/v2) and /metrics stay open: probes and scrapers carry no key.
  // Never logged. `coe serve --api-key-env NAME` reads it from the variable NAME.
  // Server::Run (in process: the gRPC front end's path) does not check it.
  std::string api_key;
  // The exact-request response cache of /v1/chat/completions, in bytes (0: off). See
  // "Response cache" above.
  size_t cache_bytes = 0;
  // The request log (coe/request_log.h; coe serve --log FILE): path "" = none. With a
  // path, Create opens it (its errors: a file that cannot be opened is refused before
  // anything is served), and every answered example of an infer request (REST), a
  // Server::Run (route "grpc": the gRPC front end's, or an in-process caller's) and a
  // chat request is a line; a request without an id gets one (NewRequestId) that its
  // response carries (the infer response's "id"; the gRPC response's id; a chat
  // completion always has one). Requests refused before or failing in their run (4xx,
  // 503, a cancelled run) are not logged; a run that ended without an answer is (a chat
  // 502: answer "", the members' errors). Metrics:
  // coe_log_lines_total, coe_log_dropped_total (queue full), coe_log_errors_total
  // (write errors). Shutdown and the destructor write what is queued.
  RequestLogOptions request_log;
  // Receives startup, reload and access-log lines (no trailing newline); null = stderr.
  // Called from I/O and worker threads, concurrently.
  std::function<void(const std::string&)> log;
  // What Reload() (POST /coe/reload, coe serve's SIGHUP) loads: coe serve's reads its
  // --cascade and --models files again. Null: Reload() is FailedPrecondition (and the
  // route 501). Called on the reloading thread, one reload at a time.
  std::function<StatusOr<CascadeSource>()> load;
  ShadowOptions shadow;  // off by default
};

struct ServedModel {
  std::string name;
  std::shared_ptr<const Cascade> cascade;
};

class Server {
 public:
  // Builds the cascade of `spec` over `catalogue` (Cascade::Create's errors) and the
  // per-member models. The cascade's name: options.name, else spec.name, else "coe".
  // InvalidArgument when a member's name equals the cascade's.
  static StatusOr<std::unique_ptr<Server>> Create(const CascadeSpec& spec, const Catalogue& catalogue,
                                                  const EngineOptions& engine, const ServerOptions& options);
  // Serves the given models. InvalidArgument for none, a null cascade, an empty or
  // repeated name, or options out of range (max_inflight < 1, max_body_bytes 0).
  static StatusOr<std::unique_ptr<Server>> Create(std::vector<ServedModel> models, const ServerOptions& options);
  ~Server();  // Stop() and Wait()
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds host:port (port 0 = an ephemeral port; see port()) and serves on background
  // threads; returns once the socket listens. Unavailable when the address cannot be
  // bound, FailedPrecondition when already serving. After Stop() and Wait(), Start may
  // be called again (same or another port).
  Status Start(const std::string& host, int port);
  // The bound port while serving (after Start), else 0.
  int port() const;
  // Stops accepting connections; requests already being handled finish and are
  // answered. Returns at once; safe to call from a signal-watching thread, and more
  // than once.
  void Stop();
  // Blocks until the server has stopped (after Stop) and every connection is closed:
  // in-flight requests are answered, idle keep-alive connections closed at once.
  void Wait();
  // A bounded stop (coe serve on SIGTERM): Stop(), then waits up to `grace_ms` for the
  // admitted requests (infer, chat and Run, so gRPC's too) to be answered. Those still
  // running then are cancelled: their runs start no further tier nor upstream call,
  // the HTTP calls of their members in flight are aborted, and they are answered 503
  // "server stopping: ..." (gRPC: UNAVAILABLE); requests arriving meanwhile get the
  // same. Returns as Wait() does. A gRPC front end's Stop (which waits for its calls)
  // runs on another thread meanwhile.
  void Shutdown(int grace_ms);

  // Whether it keeps a request log (ServerOptions::request_log).
  bool logs_requests() const;

  // Served model names, the cascade first.
  // The served models that answer /v1/chat/completions (their members read text).
  std::vector<std::string> chat_model_names() const;
  std::vector<std::string> model_names() const;
  // The /metrics page.
  std::string MetricsText() const;
  // The served models of the current generation, the cascade first (a copy: a reload
  // may replace them at any time).
  std::vector<ServedModel> models() const;
  // Runs `batch` on the served model `name` as an infer request does (admission,
  // batching, metrics): NotFound for an unknown model, InvalidArgument for a model
  // whose members read text (a chat model) or for options.max_tiers != 0 (runs are
  // batched), Unavailable when busy or cancelled by a Shutdown (the server's
  // cancellation flag replaces options.cancelled).
  StatusOr<RunResult> Run(const std::string& name, const InputBatch& batch, const RunOptions& options);

  // Replacement without downtime: builds the cascade of ServerOptions::load() (or of
  // `source`) as Create does (its served name: options.name, else the new spec's
  // name, else "coe"; and, with serve_members, its members) while the current one
  // serves, then swaps it in atomically. Requests admitted before the swap finish on
  // the cascade they started on (their batches, responses and metrics are its own);
  // those arriving after it start on the new one. The old cascade's backends are
  // destroyed (on a thread of the server's) once its last request is done.
  // Names: a model the new cascade no longer serves (another cascade name, a member
  // gone) is 404 for new requests; one it adds is served at once. The response cache
  // keys hold the generation, and a reload clears the cache: no answer of one
  // cascade is ever served for another.
  // Failure (a file that does not parse, a model file missing, a backend refused at
  // load, load unset): the current cascade keeps serving, the status says why (its
  // message starts "reload failed, still serving generation N: ORIGIN: "). Both
  // outcomes are logged (options.log) and counted (coe_reloads_total{outcome}; the
  // gauges coe_cascade_generation and coe_cascade_loaded_timestamp_seconds).
  // Reloads are serialized. Thread-safe; never call it from a signal handler (coe
  // serve takes SIGHUP with sigwait on its main thread).
  StatusOr<ReloadInfo> Reload();
  StatusOr<ReloadInfo> Reload(const CascadeSource& source);
  // The generation now serving (1 until the first successful reload).
  uint64_t generation() const;

  // Shadow verification: what GET /coe/plan-health answers (see above); and a wait
  // until every request whose reply was handed over before the call has queued its
  // shadow run (or skipped it) and, with `runs`, every shadow run queued has ended (for
  // tests and benches: replies never wait for shadow runs).
  std::string PlanHealthJson() const;
  void FlushShadow(bool runs = true);

 private:
  struct Impl;
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace coe

#endif  // COE_SERVER_H_
