// GrpcFrontend: the server's side of libcoe_grpc.so (src/server/grpc_module.h). The
// module is loaded by the first Start; `coe` itself does not link gRPC. Built whether or
// not gRPC is: without the module, Start says so (FailedPrecondition).
#include "backends/registry.h"
#include "coe/grpc.h"
#include "coe/request_log.h"
#include "server/grpc_module.h"

namespace coe {

struct GrpcFrontend::Impl {
  std::unique_ptr<GrpcService> service;
};

GrpcFrontend::GrpcFrontend(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

GrpcFrontend::~GrpcFrontend() { Stop(); }

StatusOr<std::unique_ptr<GrpcFrontend>> GrpcFrontend::Start(const std::string& host, int port, Server* server,
                                                            const GrpcOptions& options) {
  if (!server) return InvalidArgumentError("the gRPC front end needs a server");
  COE_ASSIGN_OR_RETURN(const void* table, LoadModuleService("grpc", "grpc"));
  const auto* module = static_cast<const GrpcModuleTable*>(table);
  GrpcHost h;
  h.find = [server](const std::string& name) -> StatusOr<GrpcModel> {
    for (const ServedModel& m : server->models())
      if (m.name == name) return GrpcModel{m.name, m.cascade->input_shape(), m.cascade->labels()};
    return NotFoundError("no model named '" + name + "'");
  };
  h.run = [server](const std::string& name, const InputBatch& batch, const RunOptions& options) {
    return server->Run(name, batch, options);
  };
  if (server->logs_requests())
    h.log_ids = [](std::optional<std::string>* id, int64_t n) {
      if (!*id || (*id)->empty()) *id = NewRequestId();
      return ExampleIds(**id, n);
    };
  auto impl = std::make_unique<Impl>();
  COE_ASSIGN_OR_RETURN(impl->service, module->start(host, port, std::move(h), options));
  return std::unique_ptr<GrpcFrontend>(new GrpcFrontend(std::move(impl)));
}

int GrpcFrontend::port() const { return impl_->service->port(); }

void GrpcFrontend::Stop() { impl_->service->Stop(); }

}  // namespace coe
