// libcoe_grpc.so: the Open Inference Protocol over gRPC (Debian's gRPC 1.51,
// synchronous API). gRPC's own thread pool runs the handlers, bounded by a resource
// quota, and each handler calls the host's run (Server::Run, which applies the
// server's admission and metrics). See src/server/grpc_module.h.
#include <grpcpp/grpcpp.h>

#include <bit>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <map>
#include <mutex>

#include "backends/module.h"
#include "open_inference.grpc.pb.h"
#include "protocol/oip.h"
#include "server/grpc_module.h"

namespace coe {
namespace {

namespace pb = ::inference;

// Status -> gRPC status; the message is cut to kMaxErrorMessageBytes (it travels in a
// trailer, where a long one would be refused by the client's header limit).
grpc::Status ToGrpc(const Status& s) {
  grpc::StatusCode code = grpc::StatusCode::UNKNOWN;
  switch (s.code()) {
    case StatusCode::kOk:
      return grpc::Status::OK;
    case StatusCode::kInvalidArgument:
      code = grpc::StatusCode::INVALID_ARGUMENT;
      break;
    case StatusCode::kNotFound:
      code = grpc::StatusCode::NOT_FOUND;
      break;
    case StatusCode::kFailedPrecondition:
      code = grpc::StatusCode::FAILED_PRECONDITION;
      break;
    case StatusCode::kUnavailable:
      code = grpc::StatusCode::UNAVAILABLE;
      break;
    case StatusCode::kDeadlineExceeded:
      code = grpc::StatusCode::DEADLINE_EXCEEDED;
      break;
    case StatusCode::kResourceExhausted:
      code = grpc::StatusCode::RESOURCE_EXHAUSTED;
      break;
    case StatusCode::kInternal:
      code = grpc::StatusCode::INTERNAL;
      break;
  }
  std::string message = s.message();
  if (message.size() > kMaxErrorMessageBytes) {
    size_t cut = kMaxErrorMessageBytes - 3;
    while (cut > 0 && (static_cast<unsigned char>(message[cut]) & 0xC0) == 0x80) --cut;  // keep UTF-8 whole
    message = message.substr(0, cut) + "...";
  }
  return grpc::Status(code, message);
}

// Little-endian element codecs of raw contents, written with shifts so that they hold
// on any host byte order.
void PutU32(std::string* out, uint32_t v) {
  const char b[4] = {static_cast<char>(v), static_cast<char>(v >> 8), static_cast<char>(v >> 16),
                     static_cast<char>(v >> 24)};
  out->append(b, 4);
}
uint32_t GetU32(const char* p) {
  const auto* b = reinterpret_cast<const unsigned char*>(p);
  return uint32_t{b[0]} | uint32_t{b[1]} << 8 | uint32_t{b[2]} << 16 | uint32_t{b[3]} << 24;
}

// An infer request, decoded: the batch and what to answer, and how.
struct Decoded {
  InputBatch batch;
  bool raw = false;  // the input came in raw_input_contents: answer raw too
  bool want_label = true, want_exit_tier = true, want_degraded = true, want_probabilities = false;
};

// Reads the outputs a request names.
Status DecodeOutputs(const pb::ModelInferRequest& q, Decoded* d) {
  if (q.outputs().empty()) return Status::Ok();
  d->want_label = d->want_exit_tier = d->want_degraded = d->want_probabilities = false;
  for (const auto& o : q.outputs()) {
    if (o.name() == "label")
      d->want_label = true;
    else if (o.name() == "exit_tier")
      d->want_exit_tier = true;
    else if (o.name() == "degraded")
      d->want_degraded = true;
    else if (o.name() == "probabilities")
      d->want_probabilities = true;
    else
      return InvalidArgumentError("unknown output '" + o.name() +
                                  "' (the model has label, exit_tier, degraded, probabilities)");
  }
  return Status::Ok();
}

// The example shape of an input of shape `shape` for a model taking `input_shape`
// (empty = any), with the same rules and messages as the REST API (ParseInferRequest).
StatusOr<std::vector<int64_t>> ExampleShape(const std::string& name, const std::vector<int64_t>& shape,
                                            const std::vector<int64_t>& input_shape) {
  const std::vector<int64_t> rest(shape.begin() + 1, shape.end());
  if (input_shape.empty()) return rest;
  int64_t want = 1;
  for (int64_t d : input_shape) want *= d;
  if (rest == input_shape || (rest.size() == 1 && rest[0] == want)) return input_shape;
  std::vector<int64_t> full = {-1}, flat = {-1, want};
  full.insert(full.end(), input_shape.begin(), input_shape.end());
  return InvalidArgumentError(name + " has shape " + ShapeString(shape) + ", the model takes " + ShapeString(full) +
                              " or " + ShapeString(flat));
}

StatusOr<Decoded> DecodeInfer(const pb::ModelInferRequest& q, const std::vector<int64_t>& input_shape) {
  Decoded d;
  // No parameter is honoured over gRPC (tensors come and go raw or typed as sent): one
  // would be ignored, so it is refused, naming it.
  auto refuse = [](const auto& params, const std::string& where) -> Status {
    if (params.empty()) return Status::Ok();
    std::string names;
    for (const auto& [key, value] : params) names += (names.empty() ? "" : ", ") + key.substr(0, 64);
    return InvalidArgumentError("parameters of " + where + " (" + names + ") are not honoured over gRPC");
  };
  COE_RETURN_IF_ERROR(refuse(q.parameters(), "the request"));
  for (int i = 0; i < q.inputs_size(); ++i)
    COE_RETURN_IF_ERROR(refuse(q.inputs(i).parameters(), "inputs[" + std::to_string(i) + "]"));
  for (int i = 0; i < q.outputs_size(); ++i)
    COE_RETURN_IF_ERROR(refuse(q.outputs(i).parameters(), "outputs[" + std::to_string(i) + "]"));
  if (q.inputs().empty()) return InvalidArgumentError("the request has no inputs");
  if (q.inputs_size() != 1)
    return InvalidArgumentError("the model takes one input tensor, the request has " + std::to_string(q.inputs_size()));
  if (q.raw_input_contents_size() > 1)
    return InvalidArgumentError("raw_input_contents has " + std::to_string(q.raw_input_contents_size()) +
                                " entries for the request's 1 input");
  const pb::ModelInferRequest::InferInputTensor& t = q.inputs(0);
  const std::string name = "input '" + t.name() + "'";
  const bool fp32 = t.datatype() == "FP32";
  if (t.datatype().empty()) return InvalidArgumentError(name + " has no datatype");
  if (!fp32 && t.datatype() != "UINT8")
    return InvalidArgumentError(name + " has datatype " + t.datatype() + ", the model takes FP32 (or UINT8)");
  if (t.shape().empty()) return InvalidArgumentError(name + " has no shape [batch, ...]");
  const std::vector<int64_t> shape(t.shape().begin(), t.shape().end());
  int64_t elements = 1;
  for (int64_t dim : shape)
    if (dim < 0 || __builtin_mul_overflow(elements, dim, &elements) || elements > (int64_t{1} << 40))
      return InvalidArgumentError(name + " has an impossible shape " + ShapeString(shape));
  COE_ASSIGN_OR_RETURN(d.batch.example_shape, ExampleShape(name, shape, input_shape));
  if (shape[0] > 0 && d.batch.ExampleSize() == 0)
    return InvalidArgumentError(name + " has examples of no values (shape " + ShapeString(shape) + ")");
  const auto& c = t.contents();
  std::vector<float>& out = d.batch.data;
  d.raw = q.raw_input_contents_size() == 1;
  if (d.raw) {
    if (c.fp32_contents_size() || c.uint_contents_size())
      return InvalidArgumentError(name + " has both contents and raw_input_contents");
    const std::string& bytes = q.raw_input_contents(0);
    const uint64_t want = static_cast<uint64_t>(elements) * (fp32 ? 4 : 1);
    if (bytes.size() != want)
      return InvalidArgumentError("raw_input_contents[0] holds " + std::to_string(bytes.size()) + " bytes; " + name +
                                  " of shape " + ShapeString(shape) + " " + t.datatype() + " needs " +
                                  std::to_string(want));
    out.resize(elements);
    for (int64_t i = 0; i < elements; ++i)
      out[i] = fp32 ? std::bit_cast<float>(GetU32(bytes.data() + 4 * i)) : static_cast<unsigned char>(bytes[i]);
  } else if (fp32) {
    if (static_cast<uint64_t>(c.fp32_contents_size()) != static_cast<uint64_t>(elements))
      return InvalidArgumentError(name + " has shape " + ShapeString(shape) + " (" + std::to_string(elements) +
                                  " values) but contents.fp32_contents holds " +
                                  std::to_string(c.fp32_contents_size()));
    out.assign(c.fp32_contents().begin(), c.fp32_contents().end());
  } else {
    if (static_cast<uint64_t>(c.uint_contents_size()) != static_cast<uint64_t>(elements))
      return InvalidArgumentError(name + " has shape " + ShapeString(shape) + " (" + std::to_string(elements) +
                                  " values) but contents.uint_contents holds " +
                                  std::to_string(c.uint_contents_size()));
    out.resize(elements);
    for (int64_t i = 0; i < elements; ++i) {
      const uint32_t v = c.uint_contents(static_cast<int>(i));
      if (v > 255)
        return InvalidArgumentError(name + " is UINT8 but element " + std::to_string(i) + " is " + std::to_string(v));
      out[i] = static_cast<float>(v);
    }
  }
  if (fp32)
    for (int64_t i = 0; i < elements; ++i)
      if (!std::isfinite(out[i]))
        return InvalidArgumentError(name + ": element " + std::to_string(i) + " is not a finite number");
  COE_RETURN_IF_ERROR(DecodeOutputs(q, &d));
  return d;
}

// The response's outputs, typed or raw (see the header for the layout).
void EncodeResponse(const Decoded& d, const RunResult& r, const LabelSet& labels, pb::ModelInferResponse* res) {
  const size_t n = r.answer.size();
  auto add = [&](const char* name, const char* type, std::vector<int64_t> shape) {
    pb::ModelInferResponse::InferOutputTensor* o = res->add_outputs();
    o->set_name(name);
    o->set_datatype(type);
    for (int64_t s : shape) o->add_shape(s);
    return o;
  };
  const int64_t N = static_cast<int64_t>(n);
  if (d.want_label) {
    auto* o = add("label", "BYTES", {N});
    std::string* raw = d.raw ? res->add_raw_output_contents() : nullptr;
    for (size_t i = 0; i < n; ++i) {
      const std::string& s = r.labels.name(r.answer[i]);
      if (raw) {
        PutU32(raw, static_cast<uint32_t>(s.size()));
        *raw += s;
      } else {
        o->mutable_contents()->add_bytes_contents(s);
      }
    }
  }
  if (d.want_exit_tier) {
    auto* o = add("exit_tier", "INT32", {N});
    std::string* raw = d.raw ? res->add_raw_output_contents() : nullptr;
    for (size_t i = 0; i < n; ++i) {
      const int32_t tier = r.exit_tier[i] + 1;
      if (raw)
        PutU32(raw, static_cast<uint32_t>(tier));
      else
        o->mutable_contents()->add_int_contents(tier);
    }
  }
  if (d.want_degraded) {
    auto* o = add("degraded", "BOOL", {N});
    std::string* raw = d.raw ? res->add_raw_output_contents() : nullptr;
    for (size_t i = 0; i < n; ++i) {
      if (raw)
        raw->push_back(r.degraded[i] ? 1 : 0);
      else
        o->mutable_contents()->add_bool_contents(r.degraded[i] != 0);
    }
  }
  if (d.want_probabilities) {
    const size_t c = labels.size();
    auto* o = add("probabilities", "FP32", {N, static_cast<int64_t>(c)});
    std::string* raw = d.raw ? res->add_raw_output_contents() : nullptr;
    for (size_t i = 0; i < n; ++i)
      for (size_t l = 0; l < c; ++l) {
        float p = i < r.probs.size() && l < r.probs[i].size() ? r.probs[i][l] : 0.0f;
        if (!std::isfinite(p)) p = 0.0f;  // as REST, whose JSON cannot hold NaN
        if (raw)
          PutU32(raw, std::bit_cast<uint32_t>(p));
        else
          o->mutable_contents()->add_fp32_contents(p);
      }
  }
  size_t degraded = 0;
  for (uint8_t x : r.degraded) degraded += x;
  auto& params = *res->mutable_parameters();
  params["degraded_count"].set_int64_param(static_cast<int64_t>(degraded));
  if (d.want_probabilities) {
    std::string names = "[";
    for (int l = 0; l < labels.size(); ++l) {
      if (l) names += ',';
      oip::AppendJsonString(&names, labels.name(l));
    }
    params["labels"].set_string_param(names + "]");
  }
}

void SetTensor(pb::ModelMetadataResponse::TensorMetadata* t, const char* name, const char* type,
               std::vector<int64_t> shape) {
  t->set_name(name);
  t->set_datatype(type);
  for (int64_t s : shape) t->add_shape(s);
}

class Service final : public pb::GRPCInferenceService::Service {
 public:
  explicit Service(GrpcHost host) : host_(std::move(host)) {
    for (const GrpcModel& m : host_.models) by_name_[m.name] = &m;
  }

  grpc::Status ServerLive(grpc::ServerContext*, const pb::ServerLiveRequest*, pb::ServerLiveResponse* res) override {
    res->set_live(true);
    return grpc::Status::OK;
  }
  grpc::Status ServerReady(grpc::ServerContext*, const pb::ServerReadyRequest*, pb::ServerReadyResponse* res) override {
    res->set_ready(true);
    return grpc::Status::OK;
  }
  grpc::Status ServerMetadata(grpc::ServerContext*, const pb::ServerMetadataRequest*,
                              pb::ServerMetadataResponse* res) override {
    res->set_name("coe");
    res->set_version("0.1.0");
    return grpc::Status::OK;
  }
  grpc::Status ModelReady(grpc::ServerContext*, const pb::ModelReadyRequest* q, pb::ModelReadyResponse* res) override {
    return Guarded([&]() -> Status {
      COE_RETURN_IF_ERROR(Find(q->name(), q->version()).status());
      res->set_ready(true);
      return Status::Ok();
    });
  }
  grpc::Status ModelMetadata(grpc::ServerContext*, const pb::ModelMetadataRequest* q,
                             pb::ModelMetadataResponse* res) override {
    return Guarded([&]() -> Status {
      COE_ASSIGN_OR_RETURN(const GrpcModel* m, Find(q->name(), q->version()));
      res->set_name(m->name);
      res->add_versions("1");
      res->set_platform("coe");
      std::vector<int64_t> shape = {-1};
      shape.insert(shape.end(), m->input_shape.begin(), m->input_shape.end());
      if (m->input_shape.empty()) shape.push_back(-1);
      SetTensor(res->add_inputs(), "input", "FP32", shape);
      SetTensor(res->add_outputs(), "label", "BYTES", {-1});
      SetTensor(res->add_outputs(), "exit_tier", "INT32", {-1});
      SetTensor(res->add_outputs(), "degraded", "BOOL", {-1});
      SetTensor(res->add_outputs(), "probabilities", "FP32", {-1, static_cast<int64_t>(m->labels.size())});
      return Status::Ok();
    });
  }
  grpc::Status ModelInfer(grpc::ServerContext*, const pb::ModelInferRequest* q, pb::ModelInferResponse* res) override {
    return Guarded([&]() -> Status {
      COE_ASSIGN_OR_RETURN(const GrpcModel* m, Find(q->model_name(), q->model_version()));
      COE_ASSIGN_OR_RETURN(Decoded d, DecodeInfer(*q, m->input_shape));
      RunOptions ro;
      ro.want_probs = d.want_probabilities;
      COE_ASSIGN_OR_RETURN(RunResult r, host_.run(m->name, d.batch, ro));
      res->set_model_name(m->name);
      res->set_model_version("1");
      if (!q->id().empty()) res->set_id(q->id());
      EncodeResponse(d, r, m->labels, res);
      return Status::Ok();
    });
  }

 private:
  StatusOr<const GrpcModel*> Find(const std::string& name, const std::string& version) const {
    auto it = by_name_.find(name);
    if (it == by_name_.end()) return NotFoundError("no model named '" + name + "'");
    if (!version.empty() && version != "1")
      return NotFoundError("model '" + name + "' has no version '" + version + "' (only 1)");
    return it->second;
  }
  // No exception leaves a handler (gRPC would answer UNKNOWN without coe's words).
  template <typename F>
  static grpc::Status Guarded(F&& f) {
    try {
      return ToGrpc(f());
    } catch (const std::exception& e) {
      return ToGrpc(InternalError(std::string("internal error: ") + e.what()));
    }
  }

  const GrpcHost host_;
  std::map<std::string, const GrpcModel*, std::less<>> by_name_;  // constant after construction
};

class Listening final : public GrpcService {
 public:
  Listening(GrpcOptions options, std::unique_ptr<Service> service, std::unique_ptr<grpc::Server> server, int port)
      : options_(options), service_(std::move(service)), server_(std::move(server)), port_(port) {}
  ~Listening() override { Stop(); }

  int port() const override { return port_; }

  void Stop() override {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) return;
    stopped_ = true;
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(options_.shutdown_grace_s));
    server_->Wait();
  }

 private:
  const GrpcOptions options_;
  const std::unique_ptr<Service> service_;  // outlives server_
  const std::unique_ptr<grpc::Server> server_;
  const int port_;
  std::mutex mu_;  // serializes Stop
  bool stopped_ = false;
};

StatusOr<std::unique_ptr<GrpcService>> StartGrpc(const std::string& host, int port, GrpcHost server,
                                                 const GrpcOptions& options) {
  if (port < 0 || port > 65535) return InvalidArgumentError("gRPC port " + std::to_string(port) + " is out of range");
  if (options.max_message_bytes == 0 || options.max_message_bytes > (size_t{1} << 31) - 1)
    return InvalidArgumentError("max_message_bytes must be in 1..2^31-1");
  if (options.max_concurrent_calls < 1) return InvalidArgumentError("max_concurrent_calls must be at least 1");
  auto service = std::make_unique<Service>(std::move(server));
  grpc::ServerBuilder builder;
  const std::string address =
      (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
  int bound = 0;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &bound);
  builder.RegisterService(service.get());
  builder.SetMaxReceiveMessageSize(static_cast<int>(options.max_message_bytes));
  builder.SetMaxSendMessageSize(static_cast<int>(options.max_message_bytes));
  // The synchronous server's threads (pollers included) come from this quota: a call
  // beyond it is answered RESOURCE_EXHAUSTED, never queued without bound.
  grpc::ResourceQuota quota("coe-grpc");
  quota.SetMaxThreads(options.max_concurrent_calls + 2);
  builder.SetResourceQuota(quota);
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MIN_POLLERS, 1);
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS, 2);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, options.max_concurrent_calls);
  // One server per port: gRPC's default SO_REUSEPORT would let a second one share it.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  std::unique_ptr<grpc::Server> listening = builder.BuildAndStart();
  if (!listening || bound <= 0)
    return UnavailableError("cannot listen for gRPC on " + address +
                            " (address in use, or not an address of this machine)");
  return std::unique_ptr<GrpcService>(new Listening(options, std::move(service), std::move(listening), bound));
}

}  // namespace
}  // namespace coe

namespace {
const coe::GrpcModuleTable kGrpc{.start = &coe::StartGrpc};
const coe::ModuleService kServices[] = {{"grpc", &kGrpc}};
const coe::ModuleExports kExports{.name = "grpc", .services = kServices, .num_services = 1};
}  // namespace

extern "C" const coe::ModuleExports* coe_module() { return &kExports; }
