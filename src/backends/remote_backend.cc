// Backend "remote": a model behind an Open Inference Protocol (KServe v2) REST endpoint:
// another `coe serve`, Triton, KServe, MLServer.
//
// Catalogue: url = "http://host:port[/prefix]", remote_model (default: the member's
// name), labels (required: answers are mapped to them), input_shape, timeout_ms, retries.
//
// Protocol: on first use (and after a 4xx) the backend reads the model's metadata
// (GET /v2/models/{m}) for its input name and datatype (FP32 only) and its outputs:
// "label" (BYTES) and "probabilities" (FP32) when present, else the first BYTES output
// and an FP32 output with one value per label. Each Predict is then ONE
// POST .../infer with all of its examples, asking for those outputs. Probability columns
// follow the response's "labels" parameter (what coe serve sends) or else the
// catalogue's label order; without a label output the answer is their argmax (softmax
// first when they do not look like probabilities).
//
// Failures: an attempt fails on a transport error or timeout, on HTTP 429/5xx (both
// retried: at most `retries` more attempts, with the backoff of every HTTP backend,
// backends/http_client.h: 50 ms x 2^k with jitter, at most 2 s, or the server's
// Retry-After up to that cap) or on another status or a malformed response (not
// retried). A failed call makes every example of it abstain with `error` set. One
// deadline, timeout_ms, bounds the whole call: every attempt's connect, send and
// receive and the waits between attempts (a wait takes at most half of the time left;
// with under 10 ms left there is no retry), and a response still arriving past it is
// cancelled: a hung server never holds an answer longer than timeout_ms. After 3 failed
// calls in a row the backend fails calls at once for 1 s (then tries again), so an
// unreachable cloud costs an edge nothing but the fallback.
//
// Wire: with wire = "auto" (the default) the backend asks the server (GET /v2) and,
// when it lists "binary_tensor_data", sends the input's values as raw little-endian
// bytes after the JSON and asks for the outputs the same way (Triton's binary tensor
// data extension, the Inference-Header-Content-Length header); wire = "binary" always,
// "json" never. To a coe server, whole values in [0, 255] (pixels) go as UINT8.
// Hedging: with hedge_url (another endpoint of the same model), a call that url has not
// answered within hedge_ms (0: at once when it fails) goes to hedge_url too, within the
// same deadline; the first answer wins and the other request is stopped in flight (its
// connection shut). hedge_url has its own metadata, wire and connections.
// Connections: kept alive, one httplib::Client per concurrent caller, pooled (the
// shared client of backends/http_client.h, one per endpoint).
// Stats: bytes_sent counts request bodies sent in full (an HTTP response or a read
// error followed), bytes_received every response body (metadata too); HTTP headers
// are not counted. Requests are not compressed ("Accept-Encoding: identity").
#include <httplib.h>

#include <charconv>
#include <chrono>
#include <cmath>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>

#include "backends/backends.h"
#include "backends/http_cancel.h"
#include "backends/http_client.h"
#include "base/numbers.h"
#include "protocol/oip.h"

namespace coe {
namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

constexpr int kBreakerFailures = 3;
constexpr auto kBreakerCooldown = std::chrono::seconds(1);

std::string UrlEncode(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~')
      out += static_cast<char>(c);
    else
      out += {'%', hex[c >> 4], hex[c & 15]};
  }
  return out;
}

// What the remote model takes and gives, from its metadata.
struct Schema {
  std::string input = "input";
  std::string label_output, probs_output;
  bool probs_are_named = false;  // the output is called "probabilities": no logits
  bool binary = false;           // send and ask for binary tensor data
  bool uint8_ok = false;         // the server (a coe) takes UINT8 pixel values for FP32 inputs
};

// One server of the model: its address, what it takes (read once), its connections.
struct Endpoint {
  Endpoint(http::Options options, const std::string& prefix_, const std::string& model)
      : host(options.host),
        prefix(prefix_),
        base(prefix_ + "/v2/models/" + UrlEncode(model)),
        client(std::move(options)) {}
  const std::string host, prefix, base;
  http::Client client;
  std::mutex mu;  // guards schema
  std::shared_ptr<const Schema> schema;
};

class RemoteBackend : public Backend {
 public:
  RemoteBackend(BackendInfo info, const ModelSpec& spec, std::string host, std::string prefix, std::string model,
                std::string hedge_host, std::string hedge_prefix)
      : info_(std::move(info)),
        model_(std::move(model)),
        wire_(spec.wire),
        timeout_(std::chrono::microseconds(static_cast<int64_t>(spec.timeout_ms * 1000))),
        hedge_delay_(std::chrono::microseconds(static_cast<int64_t>(spec.hedge_ms * 1000))) {
    auto options = [&](std::string h) {
      http::Options o;
      o.host = std::move(h);
      o.timeout_ms = spec.timeout_ms;
      o.retries = spec.retries;
      o.max_response_bytes = static_cast<uint64_t>(spec.max_response_mb * (1 << 20));
      o.headers = {{"Accept-Encoding", "identity"}, {"Accept", "application/json"}};
      o.decompress = false;
      o.name_host_in_errors = false;  // the errors name the endpoints (Where)
      o.count_bytes = &stats_;
      return o;
    };
    endpoints_.push_back(std::make_unique<Endpoint>(options(std::move(host)), prefix, model_));
    if (!hedge_host.empty())
      endpoints_.push_back(std::make_unique<Endpoint>(options(std::move(hedge_host)), hedge_prefix, model_));
  }

  const BackendInfo& info() const override { return info_; }

  Status Predict(const InputView& batch, std::vector<Prediction>* out) override {
    const int64_t n = batch.size();
    out->assign(n, Prediction{});
    stats_.calls++;
    stats_.examples += n;
    if (n == 0) return Status::Ok();
    if (!info_.input_shape.empty() && batch.shape() != info_.input_shape) {
      Fail(out, "wrong input shape", "input");
      return InvalidArgumentError("model '" + info_.name + "' takes inputs of shape " + ShapeString(info_.input_shape) +
                                  ", got " + ShapeString(batch.shape()));
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (failures_ >= kBreakerFailures && Clock::now() < open_until_) {
        stats_.errors++;
        Fail(out,
             "remote '" + info_.name + "' (" + Where() + "): " + std::to_string(failures_.load()) +
                 " calls in a row failed; the next try is within 1 s",
             "circuit_open");
        return Status::Ok();
      }
    }
    std::string kind;
    const std::string error = Call(batch, out, &kind);
    if (!error.empty() && IsCancelled(batch.cancelled)) {  // not the remote's failure: no breaker, no error count
      Fail(out, "remote '" + info_.name + "': " + error, "cancelled");
      return Status::Ok();
    }
    if (!error.empty()) {
      stats_.errors++;
      Fail(out, "remote '" + info_.name + "' (" + Where() + "): " + error, kind);
      if (failures_.fetch_add(1) + 1 >= kBreakerFailures) {
        std::lock_guard<std::mutex> lock(mu_);
        open_until_ = Clock::now() + kBreakerCooldown;
      }
      return Status::Ok();
    }
    failures_ = 0;
    for (const Prediction& p : *out) stats_.abstentions += p.label == kAbstain;
    return Status::Ok();
  }

 private:
  // The call failed: no example has an answer.
  void Fail(std::vector<Prediction>* out, const std::string& why, const std::string& kind) {
    for (Prediction& p : *out) p = Prediction::Failure(why, kind);
    stats_.abstentions += out->size();
  }

  std::string Where() const {
    std::string w = endpoints_[0]->host + endpoints_[0]->base;
    if (endpoints_.size() > 1) w += ", hedged to " + endpoints_[1]->host + endpoints_[1]->base;
    return w;
  }

  // One whole call, within one deadline; "" on success (with *out filled), else why it
  // failed (and *kind its class). With a hedge_url, url and hedge_url race (see the top
  // of this file).
  std::string Call(const InputView& batch, std::vector<Prediction>* out, std::string* kind) {
    const Clock::time_point deadline = Clock::now() + timeout_;
    if (endpoints_.size() < 2) return CallOn(*endpoints_[0], batch, out, deadline, nullptr, kind);
    std::vector<Prediction> outs[2];
    std::string errors[2], kinds[2];
    bool hedged = false;
    const int winner = http::Race(
        [&](int s, http::Stopper* stopper) {
          errors[s] = CallOn(*endpoints_[s], batch, &outs[s], deadline, stopper, &kinds[s]);
          return errors[s].empty();
        },
        hedge_delay_, deadline, &hedged);
    if (hedged) stats_.hedges++;
    if (winner >= 0) {
      if (winner == 1) stats_.hedge_wins++;
      *out = std::move(outs[winner]);
      return "";
    }
    *kind = hedged && kinds[0] != kinds[1] ? kinds[0] + "+" + kinds[1] : kinds[0];
    return hedged ? errors[0] + "; hedge_url: " + errors[1] : errors[0];
  }

  // The call on one endpoint; `stopper`: a side of a hedged call (may be stopped).
  std::string CallOn(Endpoint& ep, const InputView& batch, std::vector<Prediction>* out, Clock::time_point deadline,
                     http::Stopper* stopper, std::string* kind) {
    std::string error;
    std::shared_ptr<const Schema> schema = GetSchema(ep, deadline, stopper, &error, kind, batch.cancelled);
    if (!schema) return error;
    std::vector<uint8_t> bad_value;
    size_t json_size = 0;
    const std::string body = RequestBody(batch, *schema, &bad_value, &json_size);
    http::Response a = Send(ep, "POST", ep.base + "/infer", body, deadline, stopper, batch.cancelled, json_size);
    std::optional<size_t> response_json_size;
    if (a.ok) {
      auto it = a.headers.find("Inference-Header-Content-Length");
      if (it != a.headers.end()) {
        const std::string& v = it->second;
        size_t n = 0;
        auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
        if (ec != std::errc() || p != v.data() + v.size()) {
          a.ok = false;
          a.error = "bad Inference-Header-Content-Length '" + v.substr(0, 32) + "'";
          a.kind = "bad_response";
        }
        response_json_size = n;
      }
    }
    if (!a.ok) {
      if (!a.retryable) {
        std::lock_guard<std::mutex> lock(ep.mu);
        ep.schema.reset();  // the remote model may have changed: read its metadata again
      }
      *kind = a.kind;
      return a.error;
    }
    out->assign(static_cast<size_t>(batch.size()), Prediction{});
    error = Decode(a.body, response_json_size, batch.size(), *schema, out);
    if (!error.empty()) {
      *kind = "bad_response";
      return error;
    }
    for (int64_t i = 0; i < batch.size(); ++i)
      if (bad_value[i])
        (*out)[i] = Prediction{kAbstain, std::numeric_limits<float>::quiet_NaN(), {}, "input holds NaN or infinity"};
    return "";
  }

  // The cached schema, or the metadata read now; null with *error set on failure.
  std::shared_ptr<const Schema> GetSchema(Endpoint& ep, Clock::time_point deadline, http::Stopper* stopper,
                                          std::string* error, std::string* kind, const std::atomic<bool>* cancelled) {
    {
      std::lock_guard<std::mutex> lock(ep.mu);
      if (ep.schema) return ep.schema;
    }
    http::Response a = Send(ep, "GET", ep.base, "", deadline, stopper, cancelled);
    if (!a.ok) {
      *error = "metadata: " + a.error;
      *kind = a.kind;
      return nullptr;
    }
    *kind = "bad_response";  // for the errors below: the metadata is not usable
    StatusOr<ModelMetadata> meta = ParseModelMetadataJson(a.body);
    if (!meta.ok()) {
      *error = meta.status().message();
      return nullptr;
    }
    auto s = std::make_shared<Schema>();
    if (!meta->inputs.empty()) {
      const TensorMetadata& in = meta->inputs[0];
      if (!in.name.empty()) s->input = in.name;
      if (!in.datatype.empty() && in.datatype != "FP32") {
        *error = "the remote model's input '" + s->input + "' takes " + in.datatype + "; coe sends FP32";
        return nullptr;
      }
    }
    std::string first_bytes, scores;
    for (const TensorMetadata& o : meta->outputs) {
      if (o.datatype == "BYTES" && (o.name == "label" || first_bytes.empty())) first_bytes = o.name;
      if (o.datatype == "FP32") {
        const bool per_label =
            !o.shape.empty() && (o.shape.back() == -1 || o.shape.back() == static_cast<int64_t>(info_.labels.size()));
        if (o.name == "probabilities" || (scores.empty() && per_label)) scores = o.name;
      }
    }
    s->label_output = first_bytes;
    s->probs_output = scores;
    s->probs_are_named = scores == "probabilities";
    if (s->label_output.empty() && s->probs_output.empty()) {
      *error = "the remote model has no BYTES label output nor an FP32 output with one value per label";
      return nullptr;
    }
    // Binary tensors when asked for, or (auto) when the server lists the extension.
    if (wire_ != "json") {
      http::Response server = Send(ep, "GET", ep.prefix + "/v2", "", deadline, stopper, cancelled);
      ServerMetadata about;  // none when the server does not say
      if (server.ok)
        if (StatusOr<ServerMetadata> m = ParseServerMetadataJson(server.body); m.ok()) about = *m;
      for (const std::string& e : about.extensions) s->binary = s->binary || e == "binary_tensor_data";
      s->binary = s->binary || wire_ == "binary";
      s->uint8_ok = s->binary && about.name == "coe";
    }
    std::lock_guard<std::mutex> lock(ep.mu);
    ep.schema = s;
    return s;
  }

  // The infer request for `batch`, asking for the schema's outputs. In JSON, or (schema
  // `binary`) with the binary tensor data extension: JSON naming the input's byte count
  // (*json_size), then its values: one byte each when the server takes UINT8 and every
  // value is a whole number in [0, 255] (pixels: exact, a quarter of FP32's bytes), else
  // FP32; outputs asked for as binary data too. Non-finite values are sent as 0 and
  // their examples marked in *bad.
  // The request for `batch` (protocol/oip.h's codec): a non-finite value is sent as 0
  // and its example marked in *bad (it abstains); values that are all bytes go as UINT8
  // when the remote takes it and binary data is on.
  std::string RequestBody(const InputView& batch, const Schema& s, std::vector<uint8_t>* bad, size_t* json_size) const {
    const int64_t n = batch.size();
    const size_t per = n ? batch.data.size() / n : 0;
    bad->assign(n, 0);
    std::vector<float> finite;  // a copy only when a value is not finite
    for (size_t i = 0; i < batch.data.size(); ++i) {
      if (std::isfinite(batch.data[i])) continue;
      if (finite.empty()) finite.assign(batch.data.begin(), batch.data.end());
      finite[i] = 0.0f;
      (*bad)[i / per] = 1;
    }
    oip::OutgoingRequest q;
    q.input = s.input;
    q.shape = {n};
    for (int64_t d : batch.shape()) q.shape.push_back(d);
    q.values =
        finite.empty() ? std::span<const float>(batch.data.data(), batch.data.size()) : std::span<const float>(finite);
    q.binary = s.binary;
    q.uint8 = s.binary && s.uint8_ok;
    for (size_t i = 0; q.uint8 && i < q.values.size(); ++i) {
      const float v = q.values[i];
      q.uint8 = v >= 0 && v <= 255 && v == std::floor(v);
    }
    for (const std::string* o : {&s.label_output, &s.probs_output})
      if (!o->empty()) q.outputs.push_back(*o);
    return oip::EncodeInferRequestJson(q, json_size);
  }

  // Sends one request (http_client.h: with retries); json_size > 0: the body is binary
  // tensor data after that many bytes of JSON.
  http::Response Send(Endpoint& ep, const std::string& method, const std::string& path, const std::string& body,
                      Clock::time_point deadline, http::Stopper* stopper, const std::atomic<bool>* cancelled,
                      size_t json_size = 0) {
    http::Request r;
    r.method = method;
    r.path = path;
    r.cancelled = cancelled;
    r.stopper = stopper;
    if (method == "POST") {
      r.body = {std::string_view(body)};
      r.headers.emplace("Content-Type", json_size ? "application/octet-stream" : "application/json");
      if (json_size) r.headers.emplace("Inference-Header-Content-Length", std::to_string(json_size));
    }
    return ep.client.Send(r, deadline);
  }

  // Fills *out from an infer response; "" or why the response is unusable.
  std::string Decode(const std::string& body, std::optional<size_t> json_size, int64_t n, const Schema& s,
                     std::vector<Prediction>* out) const {
    oip::Message m;
    Status st = json_size ? oip::ParseMessage(body, *json_size, &m) : oip::ParseMessage(body, &m);
    if (!st.ok()) return "bad response: " + st.message();
    const oip::Tensor* label = nullptr;
    const oip::Tensor* probs = nullptr;
    for (const oip::Tensor& t : m.outputs) {
      if (!s.label_output.empty() && t.name == s.label_output) label = &t;
      if (!s.probs_output.empty() && t.name == s.probs_output) probs = &t;
    }
    if (!label && !probs) return "the response lacks the outputs asked for";
    if (label && label->strings.size() != static_cast<size_t>(n))
      return "output '" + label->name + "' has " + std::to_string(label->strings.size()) + " labels for " +
             std::to_string(n) + " examples";
    const int num_labels = static_cast<int>(info_.labels.size());
    std::vector<int> column;  // remote probability column -> our label index (or -1)
    if (probs) {
      if (probs->numbers.empty() || probs->numbers.size() % n != 0)
        return "output '" + probs->name + "' has " + std::to_string(probs->numbers.size()) + " values for " +
               std::to_string(n) + " examples";
      const size_t c = probs->numbers.size() / n;
      auto it = m.parameters.find("labels");
      json names = it == m.parameters.end() ? json() : json::parse(it->second, nullptr, false);
      if (names.is_array() && names.size() == c) {
        for (const json& name : names) {
          const auto f = name.is_string() ? std::find(info_.labels.begin(), info_.labels.end(), name.get<std::string>())
                                          : info_.labels.end();
          column.push_back(f == info_.labels.end() ? -1 : static_cast<int>(f - info_.labels.begin()));
        }
      } else if (c == static_cast<size_t>(num_labels)) {
        for (int l = 0; l < num_labels; ++l) column.push_back(l);
      } else {
        return "output '" + probs->name + "' has " + std::to_string(c) + " values per example, the catalogue lists " +
               std::to_string(num_labels) + " labels";
      }
    }
    for (int64_t i = 0; i < n; ++i) {
      Prediction& p = (*out)[i];
      if (probs) {
        const size_t c = column.size();
        std::vector<float> row(probs->numbers.begin() + i * c, probs->numbers.begin() + (i + 1) * c);
        double sum = 0;
        bool in_range = true;
        for (float v : row) sum += v, in_range &= std::isfinite(v) && v >= 0 && v <= 1;
        if (!label && !s.probs_are_named && (!in_range || std::fabs(sum - 1) > kProbabilitySumTolerance)) {
          // Scores of another server that are not probabilities: logits (softmax; a
          // non-finite one abstains).
          std::vector<float> soft;
          if (SoftmaxArgmax(row, &soft) == kAbstain) {
            p.error = "the remote model's scores are not finite";
            continue;
          }
          row = std::move(soft);
        } else if (!in_range) {
          // (A row may sum to less than 1: coe serve averages over a tier whose members
          // may abstain.)
          p.error = "the remote model's probabilities are not finite or outside [0,1]";
          continue;
        }
        p.probs.assign(num_labels, 0.0f);
        for (size_t l = 0; l < c && l < row.size(); ++l)
          if (column[l] >= 0) p.probs[column[l]] = row[l];
        if (!label) {
          const auto best = std::max_element(p.probs.begin(), p.probs.end());
          p.label = best != p.probs.end() && *best > 0 ? static_cast<int>(best - p.probs.begin()) : kAbstain;
        }
      }
      if (label) {
        const std::string& name = label->strings[i];
        const auto f = std::find(info_.labels.begin(), info_.labels.end(), name);
        if (name.empty())
          p.error = "the remote model gave no answer";
        else if (f == info_.labels.end())
          p.error = "the remote model answered '" + name + "', not a catalogue label";
        else
          p.label = static_cast<int>(f - info_.labels.begin());
      }
      if (p.label == kAbstain) {
        p.probs.clear();
        if (p.error.empty()) p.error = "the remote model gave no usable scores";
      } else if (!p.probs.empty()) {
        p.score = p.probs[p.label];
      }
    }
    return "";
  }

  const BackendInfo info_;
  const std::string model_, wire_;
  std::vector<std::unique_ptr<Endpoint>> endpoints_;  // url, then hedge_url
  const std::chrono::microseconds timeout_, hedge_delay_;
  std::atomic<int> failures_{0};  // failed calls in a row
  std::mutex mu_;                 // guards open_until_
  Clock::time_point open_until_{};
};

}  // namespace

StatusOr<std::unique_ptr<Backend>> CreateRemoteBackend(const ModelSpec& spec, const BackendOptions&) {
  const std::string what = "model '" + spec.name + "': ";
  if (spec.url.empty()) return InvalidArgumentError(what + "the remote backend needs a url");
  // "http://host:port/prefix" -> host part and path prefix.
  COE_ASSIGN_OR_RETURN(EndpointAddress url, http::CheckAddress(spec.name, "url", spec.url));
  EndpointAddress hedge;
  if (!spec.hedge_url.empty()) {
    COE_ASSIGN_OR_RETURN(hedge, http::CheckAddress(spec.name, "hedge_url", spec.hedge_url));
  }
  COE_RETURN_IF_ERROR(http::CheckHedge(spec));
  WarmHttplibForTsan();  // (TSan builds only) before any thread that calls this backend
  if (spec.labels.empty())
    return InvalidArgumentError(what + "the remote backend needs the model's labels in the catalogue");
  if (!(spec.timeout_ms > 0) || !std::isfinite(spec.timeout_ms))
    return InvalidArgumentError(what + "timeout_ms must be positive");
  if (spec.retries < 0 || spec.retries > 10) return InvalidArgumentError(what + "retries must be in [0, 10]");
  BackendInfo info;
  info.name = spec.name;
  info.kind = "remote";
  info.waits = true;
  info.labels = spec.labels;
  info.input_shape = spec.input_shape;
  info.gives_probabilities = true;
  return std::unique_ptr<Backend>(new RemoteBackend(std::move(info), spec, url.server, url.path,
                                                    spec.remote_model.empty() ? spec.name : spec.remote_model,
                                                    hedge.server, hedge.path));
}

}  // namespace coe
