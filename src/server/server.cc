// The Open Inference Protocol server (cpp-httplib, Debian's libcpp-httplib-dev).
#include "coe/server.h"

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <ctime>
#include <deque>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "protocol/oip.h"
#include "server/metrics.h"

namespace coe {
namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

// Per HTTP worker thread (one connection at a time): when the current request began,
// and whether the connection is an overflow one, handled on the accepting thread.
thread_local Clock::time_point t_start;
thread_local bool t_started = false;
thread_local bool t_overflow = false;
thread_local std::string t_chat_model;  // the served model a chat request named

// httplib's own pool queues accepted connections without bound. This one runs
// `workers` threads and lets at most `max_pending` connections wait for one; a
// connection beyond that is handled at once on the accepting thread, where every
// request is refused with 503 (see t_overflow), and meanwhile nothing new is accepted.
class AdmissionQueue : public httplib::TaskQueue {
 public:
  AdmissionQueue(size_t workers, size_t max_pending) : max_pending_(max_pending) {
    for (size_t i = 0; i < workers; ++i) threads_.emplace_back([this] { Loop(); });
  }
  void enqueue(std::function<void()> fn) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (pending_.size() < max_pending_) {
        pending_.push_back(std::move(fn));
        cv_.notify_one();
        return;
      }
    }
    t_overflow = true;
    fn();
    t_overflow = false;
  }
  void shutdown() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (std::thread& t : threads_) t.join();
  }

 private:
  void Loop() {
    for (;;) {
      std::function<void()> fn;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return stop_ || !pending_.empty(); });
        if (pending_.empty()) return;  // stopping and drained
        fn = std::move(pending_.front());
        pending_.pop_front();
      }
      fn();
    }
  }
  const size_t max_pending_;
  std::mutex mu_;
  std::condition_variable cv_;  // guarded by mu_: pending_, stop_
  std::deque<std::function<void()>> pending_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

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

void SetError(httplib::Response& res, int code, const std::string& message) {
  res.status = code;
  std::string body = "{\"error\":";
  oip::AppendJsonString(&body, message);
  res.set_content(body + "}", "application/json");
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
  return {status, "application/json", OpenAiErrorJson(status, message, model_not_found)};
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

std::string MetadataJson(const std::string& name, const Cascade& c) {
  json shape = json::array({-1});
  for (int64_t d : c.input_shape()) shape.push_back(d);
  if (c.input_shape().empty()) shape.push_back(-1);
  json j = {{"name", name},
            {"versions", {"1"}},
            {"platform", "coe"},
            {"inputs", {{{"name", "input"}, {"datatype", "FP32"}, {"shape", shape}}}},
            {"outputs",
             {{{"name", "label"}, {"datatype", "BYTES"}, {"shape", {-1}}},
              {{"name", "exit_tier"}, {"datatype", "INT32"}, {"shape", {-1}}},
              {{"name", "degraded"}, {"datatype", "BOOL"}, {"shape", {-1}}},
              {{"name", "probabilities"}, {"datatype", "FP32"}, {"shape", {-1, c.labels().size()}}}}}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string InferResponseJson(const std::string& model, const InferRequest& q, const RunResult& r,
                              const LabelSet& labels) {
  const size_t n = r.answer.size();
  const std::string N = std::to_string(n);
  size_t degraded = 0;
  for (uint8_t d : r.degraded) degraded += d;
  std::string s = "{\"model_name\":";
  oip::AppendJsonString(&s, model);
  s += ",\"model_version\":\"1\"";
  if (q.id) {
    s += ",\"id\":";
    oip::AppendJsonString(&s, *q.id);
  }
  s += ",\"parameters\":{\"degraded_count\":" + std::to_string(degraded);
  if (q.want_probabilities) {
    s += ",\"labels\":";
    oip::AppendJsonString(&s, json(labels.names()).dump(-1, ' ', false, json::error_handler_t::replace));
  }
  s += "},\"outputs\":[";
  bool first = true;
  auto open = [&](const char* name, const char* type, const std::string& shape) {
    s += first ? "" : ",";
    first = false;
    s += std::string("{\"name\":\"") + name + "\",\"datatype\":\"" + type + "\",\"shape\":[" + shape + "],\"data\":[";
  };
  if (q.want_label) {
    open("label", "BYTES", N);
    for (size_t i = 0; i < n; ++i) {
      if (i) s += ',';
      oip::AppendJsonString(&s, r.labels.name(r.answer[i]));
    }
    s += "]}";
  }
  if (q.want_exit_tier) {
    open("exit_tier", "INT32", N);
    for (size_t i = 0; i < n; ++i) s += (i ? "," : "") + std::to_string(r.exit_tier[i] + 1);
    s += "]}";
  }
  if (q.want_degraded) {
    open("degraded", "BOOL", N);
    for (size_t i = 0; i < n; ++i) s += std::string(i ? "," : "") + (r.degraded[i] ? "true" : "false");
    s += "]}";
  }
  if (q.want_probabilities) {
    const size_t c = labels.size();
    open("probabilities", "FP32", N + "," + std::to_string(c));
    for (size_t i = 0; i < n; ++i) {
      for (size_t l = 0; l < c; ++l) {
        if (i || l) s += ',';
        const float p = i < r.probs.size() && l < r.probs[i].size() ? r.probs[i][l] : 0.0f;
        oip::AppendFloat(&s, std::isfinite(p) ? p : 0.0f);
      }
    }
    s += "]}";
  }
  return s + "]}";
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

// The model an infer path "/v2/models/{name}[/versions/{v}]/infer" names, or "".
std::string InferPathModel(const std::string& path) {
  constexpr std::string_view kPrefix = "/v2/models/", kSuffix = "/infer";
  if (!path.starts_with(kPrefix) || !path.ends_with(kSuffix) || path.size() <= kPrefix.size() + kSuffix.size())
    return "";
  return path.substr(kPrefix.size(), path.find('/', kPrefix.size()) - kPrefix.size());
}

}  // namespace

struct Server::Impl {
  ServerOptions options;
  std::vector<ServedModel> models;
  std::map<std::string, const ServedModel*, std::less<>> by_name;
  std::map<std::string, std::string, std::less<>> chat_refusal;  // by model: ChatRefusal, "" = serves chat
  std::vector<Backend*> members;                                 // one per distinct member name
  Metrics metrics;
  std::atomic<int64_t> inflight{0};
  std::atomic<uint64_t> chat_count{0};
  const int64_t started =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();

  std::mutex mu;       // guards http, listener
  std::mutex wait_mu;  // serializes Wait()
  std::unique_ptr<httplib::Server> http;
  std::thread listener;
  std::atomic<bool> listener_done{false};
  std::atomic<int> port{0};

  void Log(const std::string& line) const {
    if (options.log)
      options.log(line);
    else
      std::fprintf(stderr, "%s\n", line.c_str());
  }

  // The model a route names, or null after answering 404.
  const ServedModel* Model(const httplib::Request& req, httplib::Response& res) const {
    const std::string name = req.matches[1];
    auto it = by_name.find(name);
    if (it == by_name.end()) {
      SetError(res, 404, "no model named '" + name + "'");
      return nullptr;
    }
    if (req.matches.size() > 2 && req.matches[2].matched && req.matches[2] != "1") {
      SetError(res, 404, "model '" + name + "' has no version '" + std::string(req.matches[2]) + "' (only 1)");
      return nullptr;
    }
    return it->second;
  }

  void Infer(const httplib::Request& req, httplib::Response& res) {
    const ServedModel* m = Model(req, res);
    if (!m) return;
    auto busy = [&](const std::string& why) {
      SetError(res, 503, why);
      res.set_header("Retry-After", std::to_string(options.retry_after_s));
    };
    if (t_overflow) {
      busy("server overloaded: too many connections");
      res.set_header("Connection", "close");
      return;
    }
    struct Slot {
      std::atomic<int64_t>& n;
      ~Slot() { n--; }
    } slot{inflight};
    if (++inflight > options.max_inflight) {
      busy("server busy: more than " + std::to_string(options.max_inflight) + " requests in flight");
      return;
    }
    auto q = ParseInferRequest(req.body, m->cascade->input_shape());
    if (!q.ok()) return SetError(res, 400, q.status().message());
    RunOptions ro;
    ro.want_probs = q->want_probabilities;
    auto r = m->cascade->Run(q->batch, ro);
    if (!r.ok()) return SetError(res, HttpCode(r.status()), r.status().message());
    metrics.AddRun(m->name, *m->cascade, *r);
    res.set_content(InferResponseJson(m->name, *q, *r, m->cascade->labels()), "application/json");
  }

  // POST /v1/chat/completions, request in, response out (no HTTP library here): the
  // last user message fills every member's {input}, the cascade runs, and the reply is
  // the winning member's completion with usage summed over every call made.
  HttpReply Chat(const std::string& body) {
    auto q = ParseChatRequest(body);
    if (!q.ok()) return OpenAiError(400, q.status().message());
    auto it = by_name.find(q->model);
    if (it == by_name.end()) return OpenAiError(404, "no model named '" + q->model + "' (see GET /v1/models)", true);
    const ServedModel& m = *it->second;
    t_chat_model = m.name;
    if (const std::string& why = chat_refusal.at(m.name); !why.empty()) return OpenAiError(400, why);
    if (t_overflow) {
      HttpReply r = OpenAiError(503, "server overloaded: too many connections");
      r.retry_after_s = options.retry_after_s;
      r.close = true;
      return r;
    }
    struct Slot {
      std::atomic<int64_t>& n;
      ~Slot() { n--; }
    } slot{inflight};
    if (++inflight > options.max_inflight) {
      HttpReply r =
          OpenAiError(503, "server busy: more than " + std::to_string(options.max_inflight) + " requests in flight");
      r.retry_after_s = options.retry_after_s;
      return r;
    }
    InputBatch batch;
    const uint64_t n = ++chat_count;
    const std::string id = "chatcmpl-coe-" + std::to_string(started) + "-" + std::to_string(n);
    batch.records.push_back(json{{"id", id}, {"input", q->input}}.dump(-1, ' ', false, json::error_handler_t::replace));
    batch.ids.push_back(id);
    auto r = m.cascade->Run(batch, RunOptions{});
    if (!r.ok()) return OpenAiError(HttpCode(r.status()), r.status().message());
    metrics.AddRun(m.name, *m.cascade, *r);
    if (r->answer[0] == kAbstain && r->degraded[0])
      return OpenAiError(502, "no tier of '" + m.name +
                                  "' could answer: its members' calls failed (unreachable, timed out or erroring "
                                  "endpoints; see coe_member_errors_total in /metrics)");
    ChatReply reply;
    reply.id = id;
    reply.model = m.name;
    reply.created =
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    reply.content = r->reply.empty() ? "" : r->reply[0];
    reply.prompt_tokens = r->tokens_in.empty() ? 0 : r->tokens_in[0];
    reply.completion_tokens = r->tokens_out.empty() ? 0 : r->tokens_out[0];
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
  void Logged(const httplib::Request& req, const httplib::Response& res) {
    const double seconds = t_started ? std::chrono::duration<double>(Clock::now() - t_start).count() : 0.0;
    t_started = false;
    if (res.status >= 400) metrics.CountError(res.status);
    const std::string name = req.method != "POST"                 ? ""
                             : req.path == "/v1/chat/completions" ? t_chat_model
                                                                  : InferPathModel(req.path);
    t_chat_model.clear();
    if (!name.empty()) metrics.CountRequest(by_name.count(name) ? name : "", res.status, seconds);
    if (options.access_log == AccessLog::kOff) return;
    char ms[32];
    std::snprintf(ms, sizeof ms, "%.3f", seconds * 1e3);
    if (options.access_log == AccessLog::kJson) {
      json j = {{"time", Now()},
                {"remote", req.remote_addr},
                {"method", req.method},
                {"path", req.path},
                {"status", res.status},
                {"ms", std::round(seconds * 1e6) / 1e3},
                {"bytes_in", req.body.size()},
                {"bytes_out", res.body.size()}};
      Log(j.dump(-1, ' ', false, json::error_handler_t::replace));
    } else {
      Log(Now() + " " + req.remote_addr + " \"" + req.method + " " + req.path + "\" " + std::to_string(res.status) +
          " " + ms + "ms " + std::to_string(req.body.size()) + "B in " + std::to_string(res.body.size()) + "B out");
    }
  }

  void Routes(httplib::Server& h) {
    using Req = const httplib::Request&;
    using Res = httplib::Response&;
    h.set_pre_routing_handler([](Req, Res) {
      t_start = Clock::now();
      t_started = true;
      return httplib::Server::HandlerResponse::Unhandled;
    });
    h.set_error_handler([this](Req req, Res res) {
      if (!res.body.empty()) return;  // a handler's own error
      std::string message;
      switch (res.status) {
        case 404:
          message = "no route " + req.method + " " + req.path;
          break;
        case 413:
          message = "request body larger than " + std::to_string(options.max_body_bytes) + " bytes";
          break;
        default:
          message = "HTTP " + std::to_string(res.status) + " for " + req.method + " " + req.path;
      }
      if (IsOpenAiPath(req.path))
        res.set_content(OpenAiErrorJson(res.status, message), "application/json");
      else
        SetError(res, res.status, message);
    });
    h.set_exception_handler([](Req req, Res res, std::exception_ptr ep) {
      std::string what = "unknown exception";
      try {
        if (ep) std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {
      }
      if (IsOpenAiPath(req.path)) {
        res.status = 500;
        res.set_content(OpenAiErrorJson(500, "internal error: " + what), "application/json");
      } else {
        SetError(res, 500, "internal error: " + what);
      }
    });
    h.set_logger([this](Req req, const httplib::Response& res) { Logged(req, res); });

    auto json_reply = [](Res res, const std::string& body) { res.set_content(body, "application/json"); };
    h.Get("/v2/health/live", [=](Req, Res res) { json_reply(res, "{\"live\":true}"); });
    h.Get("/v2/health/ready", [=](Req, Res res) { json_reply(res, "{\"ready\":true}"); });
    h.Get("/v2", [=](Req, Res res) { json_reply(res, "{\"name\":\"coe\",\"version\":\"0.1.0\",\"extensions\":[]}"); });
    h.Get(R"(/v2/models/([^/]+)(?:/versions/([^/]+))?)", [=, this](Req req, Res res) {
      if (const ServedModel* m = Model(req, res)) json_reply(res, MetadataJson(m->name, *m->cascade));
    });
    h.Get(R"(/v2/models/([^/]+)(?:/versions/([^/]+))?/ready)", [=, this](Req req, Res res) {
      if (const ServedModel* m = Model(req, res)) {
        std::string body = "{\"name\":";
        oip::AppendJsonString(&body, m->name);
        json_reply(res, body + ",\"ready\":true}");
      }
    });
    h.Post(R"(/v2/models/([^/]+)(?:/versions/([^/]+))?/infer)", [this](Req req, Res res) { Infer(req, res); });
    h.Post("/v1/chat/completions", [this](Req req, Res res) {
      HttpReply r = Chat(req.body);
      res.status = r.status;
      if (r.retry_after_s > 0) res.set_header("Retry-After", std::to_string(r.retry_after_s));
      if (r.close) res.set_header("Connection", "close");
      if (r.content_type == "text/event-stream") res.set_header("Cache-Control", "no-cache");
      res.set_content(std::move(r.body), r.content_type);
    });
    h.Get("/v1/models", [this](Req, Res res) {
      std::vector<std::string> names;
      for (const ServedModel& m : models)
        if (chat_refusal.at(m.name).empty()) names.push_back(m.name);
      res.set_content(ModelListJson(names, started), "application/json");
    });
    h.Get("/metrics", [this](Req, Res res) {
      res.set_content(metrics.Text(inflight.load(), members), "text/plain; version=0.0.4; charset=utf-8");
    });
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
    impl->chat_refusal[m.name] = std::move(refusal);
    for (Backend* b : m.cascade->members())
      if (!seen_member[b->info().name]) {
        seen_member[b->info().name] = true;
        impl->members.push_back(b);
      }
  }
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

Status Server::Start(const std::string& host, int port) {
  Impl& im = *impl_;
  std::lock_guard<std::mutex> lock(im.mu);
  if (im.http) return FailedPreconditionError("the server is already serving on port " + std::to_string(im.port));
  if (port < 0 || port > 65535) return InvalidArgumentError("port " + std::to_string(port) + " is out of range");
  auto http = std::make_unique<httplib::Server>();
  const ServerOptions& o = im.options;
  const size_t workers = o.http_threads > 0 ? o.http_threads : o.max_inflight + 8;
  // httplib builds the queue (its worker threads) inside listen, after is_running() is
  // true and before it accepts: Start returns once the queue exists, so a client that
  // connects at once is accepted without waiting for thread creation (slow under TSan).
  auto queue_ready = std::make_shared<std::atomic<bool>>(false);
  http->new_task_queue = [workers, queue_ready] {
    auto* q = new AdmissionQueue(workers, workers);
    *queue_ready = true;
    return q;
  };
  http->set_payload_max_length(o.max_body_bytes);
  http->set_tcp_nodelay(true);
  // SO_REUSEADDR only: a restarted server may take its port at once, but unlike
  // httplib's default (SO_REUSEPORT too) a second server cannot share it.
  // httplib (as Debian builds it) listens with a backlog of 5: a burst of new
  // connections overflows it and waits out SYN retransmits (1 s, 3 s). The socket it
  // binds is the last one given to this callback; listen() again raises the backlog.
  auto listen_fd = std::make_shared<socket_t>(INVALID_SOCKET);
  http->set_socket_options([listen_fd](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    *listen_fd = sock;
  });
  http->set_keep_alive_max_count(static_cast<size_t>(std::max(1, o.keep_alive_max_requests)));
  http->set_keep_alive_timeout(o.keep_alive_timeout_s);
  http->set_read_timeout(o.io_timeout_s, 0);
  http->set_write_timeout(o.io_timeout_s, 0);
  im.Routes(*http);
  const int bound = port == 0 ? http->bind_to_any_port(host) : (http->bind_to_port(host, port) ? port : -1);
  if (bound <= 0)
    return UnavailableError("cannot listen on " + host + ":" + std::to_string(port) +
                            " (address in use, or not an address of this machine)");
  if (*listen_fd != INVALID_SOCKET) ::listen(*listen_fd, std::max(1, o.listen_backlog));
  im.listener_done = false;
  httplib::Server* h = http.get();
  im.listener = std::thread([h, &im] {
    h->listen_after_bind();
    im.listener_done = true;
  });
  // Stop() only works once the accept loop runs: wait for it.
  while (!(h->is_running() && *queue_ready) && !im.listener_done)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  im.http = std::move(http);
  im.port = bound;
  return Status::Ok();
}

int Server::port() const { return impl_->port; }

void Server::Stop() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  if (impl_->http) impl_->http->stop();
}

void Server::Wait() {
  Impl& im = *impl_;
  std::lock_guard<std::mutex> wait_lock(im.wait_mu);
  std::thread t;
  {
    std::lock_guard<std::mutex> lock(im.mu);
    t = std::move(im.listener);
  }
  if (!t.joinable()) return;
  t.join();
  std::lock_guard<std::mutex> lock(im.mu);
  im.http.reset();
  im.port = 0;
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

const std::vector<ServedModel>& Server::models() const { return impl_->models; }

StatusOr<RunResult> Server::Run(const std::string& name, const InputBatch& batch, const RunOptions& options) {
  Impl& im = *impl_;
  auto it = im.by_name.find(name);
  if (it == im.by_name.end()) return NotFoundError("no model named '" + name + "'");
  struct Slot {
    std::atomic<int64_t>& n;
    ~Slot() { n--; }
  } slot{im.inflight};
  if (++im.inflight > im.options.max_inflight)
    return UnavailableError("server busy: more than " + std::to_string(im.options.max_inflight) +
                            " requests in flight");
  const ServedModel& m = *it->second;
  auto r = m.cascade->Run(batch, options);
  if (r.ok()) im.metrics.AddRun(m.name, *m.cascade, *r);
  return r;
}

std::string Server::MetricsText() const { return impl_->metrics.Text(impl_->inflight.load(), impl_->members); }

}  // namespace coe
