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
#include "protocol/oip_proto.h"
#include "server/cascade_outputs.h"
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

class Service final : public pb::GRPCInferenceService::Service {
 public:
  explicit Service(GrpcHost host) : host_(std::move(host)) {}

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
    oip::ServerMetadataToProto(CoeServerMetadata(/*http=*/false), res);
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
      COE_ASSIGN_OR_RETURN(const GrpcModel m, Find(q->name(), q->version()));
      oip::ModelMetadataToProto(CascadeMetadata(m.name, m.input_shape, m.labels.size()), res);
      return Status::Ok();
    });
  }
  grpc::Status ModelInfer(grpc::ServerContext*, const pb::ModelInferRequest* q, pb::ModelInferResponse* res) override {
    return Guarded([&]() -> Status {
      COE_ASSIGN_OR_RETURN(const GrpcModel m, Find(q->model_name(), q->model_version()));
      COE_ASSIGN_OR_RETURN(InferRequest req, oip::InferRequestFromProto(*q, m.input_shape));
      COE_ASSIGN_OR_RETURN(std::vector<ChosenOutput> chosen, ChooseOutputs(req));
      RunOptions ro;
      ro.want_probs = NeedsProbabilities(chosen);
      if (host_.log_ids) req.batch.ids = host_.log_ids(&req.id, req.batch.size());  // logged: by these ids
      COE_ASSIGN_OR_RETURN(RunResult r, host_.run(m.name, req.batch, ro));
      // The labels of the run's own cascade (a reload may have swapped it since Find).
      oip::InferResponseToProto(CascadeResponse(m.name, req, chosen, r, r.labels), req.raw, res);
      return Status::Ok();
    });
  }

 private:
  StatusOr<GrpcModel> Find(const std::string& name, const std::string& version) const {
    COE_ASSIGN_OR_RETURN(GrpcModel m, host_.find(name));
    if (!version.empty() && version != "1")
      return NotFoundError("model '" + name + "' has no version '" + version + "' (only 1)");
    return m;
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
