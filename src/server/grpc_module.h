// Internal (server layer): the contract between the server and libcoe_grpc.so, the
// module that holds the gRPC front end (src/server/grpc_service.cc, the code protoc
// makes of proto/open_inference.proto, and Debian's gRPC, protobuf and absl).
//
// gRPC and what it loads (some 50 shared libraries) cost every process ~20 ms to map
// and relocate, so they live in a module that only `coe serve --grpc-port` loads
// (src/backends/module.h: its service "grpc" is a GrpcModuleTable). Of coe it links libcoe_base.so and its own copy of
// the (stateless) protocol layer, not the server: it sees the server through a GrpcHost (a served model's name,
// input shape and labels, and a call that runs a batch as Server::Run does), and the server sees it through
// GrpcService's virtual functions; no other symbol crosses.
#ifndef COE_SERVER_GRPC_MODULE_H_
#define COE_SERVER_GRPC_MODULE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "coe/cascade.h"
#include "coe/grpc.h"
#include "coe/labels.h"
#include "coe/status.h"
#include "coe/tensor.h"

namespace coe {

// A served model as gRPC shows it (ModelMetadata) and runs it (ModelInfer).
struct GrpcModel {
  std::string name;
  std::vector<int64_t> input_shape;  // empty = any
  LabelSet labels;
};

struct GrpcHost {
  // The served model `name` as the server serves it now (it may be reloaded at any
  // time: Server::Reload), or NotFound. Thread-safe; outlives the service.
  std::function<StatusOr<GrpcModel>(const std::string& name)> find;
  // Server::Run: admission, metrics, batching. Thread-safe; outlives the service.
  std::function<StatusOr<RunResult>(const std::string& name, const InputBatch& batch, const RunOptions& options)> run;
  // With a request log (Server::logs_requests): gives a request without an id one
  // (NewRequestId; its response carries it) and returns its `n` examples' log ids
  // (ExampleIds), which the run's batch carries to the log. Null: no log, ids as given.
  std::function<std::vector<std::string>(std::optional<std::string>* request_id, int64_t n)> log_ids;
};

// A listening gRPC server (GrpcFrontend's body).
class GrpcService {
 public:
  virtual ~GrpcService() = default;  // Stop()
  virtual int port() const = 0;
  virtual void Stop() = 0;  // idempotent, any thread
};

struct GrpcModuleTable {
  // GrpcFrontend::Start's contract, with the server as a GrpcHost.
  StatusOr<std::unique_ptr<GrpcService>> (*start)(const std::string& host, int port, GrpcHost server,
                                                  const GrpcOptions& options);
};

}  // namespace coe

#endif  // COE_SERVER_GRPC_MODULE_H_
