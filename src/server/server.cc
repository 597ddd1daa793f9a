// The Open Inference Protocol server: its life (create, start, reload, stop) and the
// admission of requests, over the event-driven transport (server/http_transport.h,
// Boost.Beast), with dynamic batching per served model (server/batcher.h). The routing
// of every request: routes.cc; the routes: infer_route.cc (infer), chat_route.cc (OpenAI).
#include <future>

#include "base/cores.h"
#include "server/server_impl.h"

namespace coe {
namespace {

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

// Why a cascade cannot answer infer requests (tensors), "" when it can: a member reads
// text. A chat cascade is named with its route.
std::string TensorRefusal(const std::string& name, const Cascade& c, bool serves_chat) {
  if (serves_chat) return "model '" + name + "' takes chat messages (POST /v1/chat/completions), not tensors";
  for (Backend* b : c.members())
    if (b->info().text_inputs)
      return "model '" + name + "': member '" + b->info().name + "' takes text (JSON records), not tensors";
  return "";
}

}  // namespace

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
