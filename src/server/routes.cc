// The routing of every request of `coe serve`: paths, the front door's key, error
// replies in each protocol's shape, the access log, and the dispatch to the routes
// (infer_route.cc, chat_route.cc) and to the server's own pages (health, metadata,
// metrics). The server's life is server.cc.
#include <cctype>
#include <cmath>
#include <ctime>
#include <nlohmann/json.hpp>

#include "server/cascade_outputs.h"
#include "server/server_impl.h"

namespace coe {
namespace {

using json = nlohmann::json;

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
  r.body = EncodeErrorJson(Bounded(message));
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
    if (path == "/v2/health/live") return respond(JsonReply(EncodeHealthJson("live", true)));
    if (path == "/v2/health/ready") return respond(JsonReply(EncodeHealthJson("ready", true)));
    if (path == "/v2") return respond(JsonReply(EncodeServerMetadataJson(CoeServerMetadata(/*http=*/true))));
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
  if (route.action == "")
    return respond(JsonReply(
        EncodeModelMetadataJson(CascadeMetadata(m->name, m->cascade->input_shape(), m->cascade->labels().size()))));
  if (route.action == "ready") {
    return respond(JsonReply(EncodeModelReadyJson(m->name, true)));
  }
  *model = m->name;
  Infer(std::move(gen), *m, std::move(request), respond);
}

}  // namespace coe
