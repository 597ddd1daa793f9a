// The Open Inference Protocol server: its life (create, start, stop), the admission
// of requests and the routing of every request, over the event-driven transport
// (server/http_transport.h, Boost.Beast), with dynamic batching per served model
// (server/batcher.h). The routes: infer_route.cc (infer), chat_route.cc (OpenAI).
#include <cctype>
#include <cmath>
#include <ctime>
#include <future>
#include <nlohmann/json.hpp>

#include "base/cores.h"
#include "protocol/oip.h"
#include "server/cascade_outputs.h"
#include "server/server_impl.h"

namespace coe {
namespace {

using json = nlohmann::json;

// A cascade member served on its own: forwards to the backend inside the full cascade
// (shared nets, one set of stats), which it keeps alive.
class SharedBackend : public Backend {
 public:
  SharedBackend(std::shared_ptr<const Cascade> owner, Backend* target) : owner_(std::move(owner)), target_(target) {}
  const BackendInfo& info() const override { return target_->info(); }
  Status Predict(const InputView& batch, std::vector<Prediction>* out) override { return target_->Predict(batch, out); }
  double EstimateCost(const InputView& examples, int64_t i) const override {
    return target_->EstimateCost(examples, i);
  }

 private:
  std::shared_ptr<const Cascade> owner_;
  Backend* target_;
};

bool IsOpenAiPath(const std::string& path) { return path.starts_with("/v1/"); }

// The routes ServerOptions::api_key guards: a model's (both protocols) and coe's own
// (POST /coe/reload). Health,
// server metadata, metrics and the plan's health stay open: probes and scrapers carry no key.
bool NeedsKey(const std::string& path) {
  if (path == "/coe/plan-health") return false;  // what /metrics shows too
  return path.starts_with("/v1/") || path.starts_with("/v2/models/") || path.starts_with("/coe/");
}

// The token of an `Authorization: Bearer <token>` header (the scheme in any case), or
// nullopt.
std::optional<std::string_view> BearerToken(const http::Request& request) {
  const std::string* h = request.Header("authorization");
  constexpr std::string_view kScheme = "bearer ";
  if (!h || h->size() < kScheme.size()) return std::nullopt;
  for (size_t i = 0; i < kScheme.size(); ++i)
    if (std::tolower(static_cast<unsigned char>((*h)[i])) != kScheme[i]) return std::nullopt;
  std::string_view token = std::string_view(*h).substr(kScheme.size());
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  return token;
}

// Whether `given` equals `secret` (not empty), in a time that depends on given's length
// only, so that timing tells a client nothing of the secret: every byte of `given` is
// compared (with the secret's byte at its place, the secret repeated), the lengths
// once, and the result is read once at the end (volatile: no early exit).
bool SameSecret(std::string_view given, std::string_view secret) {
  volatile unsigned char diff = static_cast<unsigned char>(given.size() != secret.size());
  for (size_t i = 0; i < given.size(); ++i)
    diff = diff | static_cast<unsigned char>(given[i] ^ secret[i % secret.size()]);
  return diff == 0;
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

HttpReply OpenAiError(int status, const std::string& message, bool model_not_found, const std::string& param) {
  return {status, "application/json", OpenAiErrorJson(status, Bounded(message), model_not_found, param)};
}

HttpReply OpenAiCodedError(int status, const std::string& message, std::string_view code, std::string_view param) {
  return {status, "application/json", OpenAiCodedErrorJson(status, Bounded(message), code, param)};
}

std::optional<http::Reply> Server::Impl::KeyRefusal(const http::Request& request) const {
  if (options.api_key.empty() || !NeedsKey(request.path)) return std::nullopt;
  const std::optional<std::string_view> token = BearerToken(request);
  if (token && SameSecret(*token, options.api_key)) return std::nullopt;
  const std::string why = token ? "incorrect API key provided (the server's is the value of the variable coe serve "
                                  "--api-key-env names)"
                                : "no API key provided: send the header 'Authorization: Bearer <key>'";
  http::Reply r =
      IsOpenAiPath(request.path) ? ToReply(OpenAiCodedError(401, why, "invalid_api_key", "")) : ErrorReply(401, why);
  r.headers.emplace_back("WWW-Authenticate", "Bearer");
  return r;
}

std::string Server::Impl::MetricsPage() const {
  const std::shared_ptr<const Generation> gen = Current();
  return metrics.Text(inflight.load(), static_cast<double>(io_wait_us.load()) * 1e-6, gen->members) +
         CacheText(cache ? cache->Stats() : CacheStats{}) + ReloadText(*gen) + LogMetrics() + ShadowText(*gen);
}

// After a response is written: counters and the access log.
void Server::Impl::Logged(const http::Request& req, const http::Reply& res, const std::string& model, double seconds) {
  Logged(req, res.status, res.body.size(), model, seconds);
}

void Server::Impl::Logged(const http::Request& req, int status, size_t bytes_out, const std::string& model,
                          double seconds) {
  if (status >= 400) metrics.CountError(status);
  if (!model.empty()) metrics.CountRequest(model, status, seconds);  // set once the request's model was found
  if (options.access_log == AccessLog::kOff) return;
  char ms[32];
  std::snprintf(ms, sizeof ms, "%.3f", seconds * 1e3);
  const std::string path = Bounded(req.path);
  if (options.access_log == AccessLog::kJson) {
    json j = {{"time", Now()},
              {"remote", req.remote},
              {"method", req.method},
              {"path", path},
              {"status", status},
              {"ms", std::round(seconds * 1e6) / 1e3},
              {"bytes_in", req.wire_bytes},
              {"bytes_out", bytes_out}};
    Log(j.dump(-1, ' ', false, json::error_handler_t::replace));
  } else {
    Log(Now() + " " + req.remote + " \"" + req.method + " " + path + "\" " + std::to_string(status) + " " + ms + "ms " +
        std::to_string(req.wire_bytes) + "B in " + std::to_string(bytes_out) + "B out");
  }
}

// A transport error (malformed request, limits, too many connections), shaped for
// the route it was meant for.
http::Reply Server::Impl::TransportError(int status, const std::string& path, const std::string& message) {
  metrics.CountError(status);
  http::Reply r = IsOpenAiPath(path) ? ToReply(OpenAiError(status, message)) : ErrorReply(status, message);
  if (options.access_log != AccessLog::kOff) {
    Log(Now() + " - \"" + Bounded(path) + "\" " + std::to_string(status) + " " + Bounded(message));
  }
  return r;
}

// Every request, on an I/O thread: answers cheap routes at once and passes infer and
// chat requests on (models never run on I/O threads).
void Server::Impl::Handle(http::Request&& request, http::Responder respond_raw) {
  const auto t0 = Clock::now();
  io_wait_us.store(request.io_wait_us, std::memory_order_relaxed);
  auto req = std::make_shared<http::Request>();
  req->method = request.method;
  req->path = request.path;
  req->remote = request.remote;
  req->wire_bytes = request.wire_bytes;
  auto model = std::make_shared<std::string>();  // the served model for metrics, once known
  http::Responder respond = [this, t0, req, model, respond_raw](http::Reply r) {
    if (r.stream)  // a streamed reply is logged as it ends, with its outcome and bytes
      r.stream->AtEnd([this, t0, req, model](int status, size_t bytes) {
        Logged(*req, status, bytes, *model, std::chrono::duration<double>(Clock::now() - t0).count());
      });
    else
      Logged(*req, r, *model, std::chrono::duration<double>(Clock::now() - t0).count());
    respond_raw(std::move(r));
  };
  const std::string& method = request.method;
  const std::string& path = request.path;
  auto not_found = [&] {
    const std::string what = "no route " + method + " " + path;
    respond(IsOpenAiPath(path) ? ToReply(OpenAiError(404, what)) : ErrorReply(404, what));
  };
  if (std::optional<http::Reply> refused = KeyRefusal(request)) return respond(std::move(*refused));
  if (method == "GET" || method == "HEAD") {
    if (path == "/v2/health/live") return respond(JsonReply("{\"live\":true}"));
    if (path == "/v2/health/ready") return respond(JsonReply("{\"ready\":true}"));
    if (path == "/v2")
      return respond(JsonReply("{\"name\":\"coe\",\"version\":\"0.1.0\",\"extensions\":[\"binary_tensor_data\"]}"));
    if (path == "/metrics") {
      http::Reply r = JsonReply(MetricsPage());
      r.content_type = "text/plain; version=0.0.4; charset=utf-8";
      return respond(std::move(r));
    }
    if (path == "/coe/plan-health") return respond(JsonReply(PlanHealth()));
    if (path == "/v1/models") return respond(ModelList(*Current()));
    if (path.starts_with("/v1/models/")) return respond(ModelRetrieve(*Current(), std::string_view(path).substr(11)));
  }
  if (method == "POST" && path == "/coe/reload") return ReloadRoute(request, respond);
  // The request's generation: it runs, is batched and answered by this one cascade.
  std::shared_ptr<const Generation> gen = Current();
  if (method == "POST" && path == "/v1/chat/completions")
    return ChatRoute(std::move(gen), std::move(request), respond, model);
  const ModelRoute route = ParseModelRoute(path);
  if (!route.ok) return not_found();
  const bool get = method == "GET" || method == "HEAD";
  if (get == (route.action == "infer") || (method != "POST" && !get)) return not_found();
  const ServedModel* m = gen->Find(route.name);
  if (!m) return respond(ErrorReply(404, "no model named '" + route.name + "'"));
  if (!route.version.empty() && route.version != "1")
    return respond(ErrorReply(404, "model '" + route.name + "' has no version '" + route.version + "' (only 1)"));
  if (route.action == "") return respond(JsonReply(MetadataJson(m->name, *m->cascade)));
  if (route.action == "ready") {
    std::string body = "{\"name\":";
    oip::AppendJsonString(&body, m->name);
    return respond(JsonReply(body + ",\"ready\":true}"));
  }
  *model = m->name;
  Infer(std::move(gen), *m, std::move(request), respond);
}

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() {
  Stop();
  Wait();
}

StatusOr<std::vector<ServedModel>> ServedModelsOf(const CascadeSpec& spec, const Catalogue& catalogue,
                                                  const EngineOptions& engine, const std::string& name,
                                                  bool serve_members) {
  COE_ASSIGN_OR_RETURN(std::unique_ptr<Cascade> built, Cascade::Create(spec, catalogue, engine));
  std::shared_ptr<const Cascade> cascade = std::move(built);
  std::vector<ServedModel> models = {{name, cascade}};
  if (!serve_members) return models;
  const std::vector<std::string> names = spec.AllMembers();
  const std::vector<Backend*> backends = cascade->members();
  for (size_t k = 0; k < names.size(); ++k) {
    if (names[k] == name)
      return InvalidArgumentError("the cascade is served as '" + name +
                                  "', which is also a member's name; give it another name");
    CascadeSpec one;
    one.name = names[k];
    one.input = spec.input;  // a member served alone reads chat requests as in the cascade
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
  return models;
}

std::string ServedName(const ServerOptions& options, const CascadeSpec& spec) {
  return !options.name.empty() ? options.name : !spec.name.empty() ? spec.name : "coe";
}

StatusOr<std::unique_ptr<Server>> Server::Create(const CascadeSpec& spec, const Catalogue& catalogue,
                                                 const EngineOptions& engine, const ServerOptions& options) {
  COE_ASSIGN_OR_RETURN(std::vector<ServedModel> models,
                       ServedModelsOf(spec, catalogue, engine, ServedName(options, spec), options.serve_members));
  COE_ASSIGN_OR_RETURN(std::unique_ptr<Server> server, Create(std::move(models), options));
  server->impl_->engine = engine;
  return server;
}

StatusOr<std::unique_ptr<Generation>> Server::Impl::Build(std::vector<ServedModel> served) {
  if (served.empty()) return InvalidArgumentError("a server needs at least one model");
  auto g = std::make_unique<Generation>();
  g->models = std::move(served);
  g->loaded_at = NowSeconds();
  static std::atomic<uint64_t> loads{0};  // of every server of this process
  std::map<std::string, bool> seen_member;
  for (const ServedModel& m : g->models) {
    if (m.name.empty() || m.name.find('/') != std::string::npos)
      return InvalidArgumentError("invalid model name '" + m.name + "' (empty, or holds '/')");
    if (!m.cascade) return InvalidArgumentError("model '" + m.name + "' has no cascade");
    if (!g->by_name.emplace(m.name, &m).second) return InvalidArgumentError("two models named '" + m.name + "'");
    g->loads[m.name] = ++loads;
    std::string refusal = ChatRefusal(m.name, *m.cascade);
    const std::vector<Backend*> ms = m.cascade->members();
    const bool reads_text = !ms.empty() && ms.front()->info().text_inputs;
    if (reads_text && !refusal.empty()) return InvalidArgumentError(refusal);  // a chat cascade no route can feed
    g->tensor_refusal[m.name] = TensorRefusal(m.name, *m.cascade, refusal.empty());
    g->chat_refusal[m.name] = std::move(refusal);
    for (Backend* b : m.cascade->members())
      if (!seen_member[b->info().name]) {
        seen_member[b->info().name] = true;
        g->members.push_back(b);
      }
  }
  for (const ServedModel& m : g->models) {
    const std::vector<TierSpec>& tiers = m.cascade->spec().tiers;
    if (tiers.size() < 2) continue;
    std::vector<double> expected;
    for (size_t k = 0; k + 1 < tiers.size(); ++k) expected.push_back(tiers[k].calibrated_agreement.value_or(NAN));
    g->shadow[m.name] = std::make_unique<ShadowMonitor>(options.shadow, std::move(expected));
  }
  BatchOptions bo;
  bo.max_batch = options.max_batch;
  bo.max_queue_delay_us = options.max_queue_delay_us;
  bo.queue_timeout_ms = options.queue_timeout_ms;
  bo.cancel_all = &cancel_all;
  // Without batching every request runs alone, as many at once as are admitted.
  bo.workers = options.max_batch > 1 ? options.batch_workers : options.max_inflight;
  for (const ServedModel& m : g->models) {
    const ServedModel* mp = &m;
    g->batchers[m.name] = std::make_unique<Batcher>(
        m.cascade, bo, [this, mp](const RunResult& r) { metrics.AddRun(mp->name, *mp->cascade, r); });
  }
  return g;
}

StatusOr<std::unique_ptr<Server>> Server::Create(std::vector<ServedModel> models, const ServerOptions& options) {
  if (models.empty()) return InvalidArgumentError("a server needs at least one model");
  if (options.max_inflight < 1) return InvalidArgumentError("max_inflight must be at least 1");
  if (options.max_body_bytes == 0) return InvalidArgumentError("max_body_bytes must be positive");
  if (options.max_batch < 0 || options.max_queue_delay_us < 0 || options.queue_timeout_ms < 0 ||
      options.batch_workers < 1 || options.max_connections < 1)
    return InvalidArgumentError(
        "max_batch, max_queue_delay_us and queue_timeout_ms must be >= 0, batch_workers and max_connections >= 1");
  COE_RETURN_IF_ERROR(CheckShadowOptions(options.shadow));
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  if (options.shadow.share > 0)
    impl->shadow_runner = std::make_unique<ShadowRunner>(options.shadow.max_queued, options.shadow.workers);
  if (options.cache_bytes > 0) impl->cache = std::make_unique<ResponseCache>(options.cache_bytes);
  if (!options.request_log.path.empty()) {
    Impl* im = impl.get();  // owns the log: outlives its reports
    COE_ASSIGN_OR_RETURN(impl->request_log,
                         RequestLog::Open(options.request_log, [im](const std::string& line) { im->Log(line); }));
  }
  COE_ASSIGN_OR_RETURN(std::unique_ptr<Generation> g, impl->Build(std::move(models)));
  g->number = 1;
  impl->Install(std::move(g));
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
  if (im.shadow_runner) im.shadow_runner->Cancel();  // shadow runs never hold a shutdown up
  Wait();
  if (im.request_log) im.request_log->Flush();  // what the answered requests queued is on disk
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

std::vector<ServedModel> Server::models() const { return impl_->Current()->models; }

StatusOr<RunResult> Server::Run(const std::string& name, const InputBatch& batch, const RunOptions& options) {
  Impl& im = *impl_;
  const std::shared_ptr<const Generation> gen = im.Current();  // held until answered
  auto it = gen->batchers.find(name);
  if (it == gen->batchers.end()) return NotFoundError("no model named '" + name + "'");
  if (const std::string& why = gen->tensor_refusal.at(name); !why.empty()) return InvalidArgumentError(why);
  std::string why;
  size_t bytes = batch.data.size() * sizeof(float);
  for (const std::string& r : batch.texts) bytes += r.size();
  std::shared_ptr<Impl::Slot> slot = im.Admit(nullptr, bytes, &why);
  if (!slot) return UnavailableError(why);
  RunOptions ro = options;
  ro.cancelled = slot->cancelled();
  // Shadow verification: chosen by the examples' ids (else their bytes).
  const ServedModel& m = *gen->Find(name);
  const std::shared_ptr<Impl::ShadowPick> shadow = im.PickShadow(*gen, m, batch.View(), batch.ids);
  ro.want_members = ro.want_members || im.request_log != nullptr;
  const auto t0 = Clock::now();
  std::promise<StatusOr<RunResult>> answer;
  Status s = it->second->Submit(batch, ro, [&answer](StatusOr<RunResult> r) { answer.set_value(std::move(r)); });
  if (!s.ok()) return s;
  StatusOr<RunResult> r = answer.get_future().get();
  if (!r.ok() && r.status().code() == StatusCode::kUnavailable) return UnavailableError(im.RunError(r.status()));
  if (r.ok() && im.request_log)
    im.LogRun(*gen->by_name.at(name), "grpc", batch.ids, batch, *r,
              std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  if (r.ok() && shadow) im.Shadow(gen, m, *shadow, *r, batch.ids);  // runs on a shadow worker, after this returns
  return r;
}

bool Server::logs_requests() const { return impl_->request_log != nullptr; }

std::vector<std::string> Server::model_names() const {
  std::vector<std::string> out;
  for (const ServedModel& m : impl_->Current()->models) out.push_back(m.name);
  return out;
}

std::vector<std::string> Server::chat_model_names() const {
  const std::shared_ptr<const Generation> gen = impl_->Current();
  std::vector<std::string> out;
  for (const ServedModel& m : gen->models)
    if (gen->chat_refusal.at(m.name).empty()) out.push_back(m.name);
  return out;
}

std::string Server::MetricsText() const { return impl_->MetricsPage(); }

}  // namespace coe
