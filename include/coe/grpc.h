// The Open Inference Protocol over gRPC (server layer), beside the REST
// server (Debian's gRPC, libgrpc++-dev; the service is proto/open_inference.proto,
// package `inference`, service GRPCInferenceService, KServe's message names and field
// numbers).
//
// A GrpcFrontend serves the models of a Server: ServerLive, ServerReady, ModelReady,
// ServerMetadata, ModelMetadata and ModelInfer. Inference goes through Server::Run
// only (the server's admission, metrics and, later, batching), and the messages carry
// what the REST API's do (coe/server.h), so both transports give the same answers:
//   ModelMetadata: platform "coe", version "1"; input "input" FP32 [-1, ...input_shape];
//     outputs label BYTES [-1], exit_tier INT32 [-1], degraded BOOL [-1],
//     probabilities FP32 [-1, C].
//   ModelInfer request: exactly one input (any name), shape [N, ...input_shape] or
//     [N, prod(input_shape)], datatype
//       FP32   elements in contents.fp32_contents or in raw_input_contents[0]
//              (N * prod * 4 bytes, little-endian IEEE 754); every value finite;
//       UINT8  elements in contents.uint_contents (each <= 255) or raw (N * prod bytes);
//              each byte becomes the float of its value, 0..255, unscaled: exactly
//              what coe's dataset reader makes of IDX image bytes (src/data/dataset.cc),
//              the models' own preprocessing (the catalogue's scale/mean/std) follows.
//     model_version "" or "1". `outputs` names the outputs wanted (none: label,
//     exit_tier, degraded); `parameters` are ignored; `id` is echoed.
//   ModelInfer response: the outputs asked for, in the order label, exit_tier,
//     degraded, probabilities; their elements in `contents` (bytes_contents,
//     int_contents, bool_contents, fp32_contents) when the input came typed, else in
//     raw_output_contents, one entry per output in that order (as Triton answers raw
//     requests raw): INT32 and FP32 little-endian, BOOL one byte 0/1, BYTES each element
//     a 4-byte little-endian length then its bytes. Parameters: "degraded_count"
//     (int64_param) and, with probabilities, "labels" (string_param: the C class
//     names as the text of a JSON array), as REST's.
// Errors are gRPC statuses carrying coe's message (at most kMaxErrorMessageBytes):
// INVALID_ARGUMENT (bad input, unknown output, a chat model: it takes no tensors),
// NOT_FOUND (unknown model or version), UNAVAILABLE (more than the server's
// max_inflight requests running), RESOURCE_EXHAUSTED (a message over
// max_message_bytes, or every call slot taken), INTERNAL (engine failure).
//
// Thread safety: gRPC runs the handlers on its own threads, at most
// max_concurrent_calls at once; they share only the Server (itself thread-safe) and
// this object's constant fields. Start/Stop/port may be called from any thread; Stop
// is idempotent. Ownership: `server` is not owned and must outlive the GrpcFrontend.
#ifndef COE_GRPC_H_
#define COE_GRPC_H_

#include <cstddef>
#include <memory>
#include <string>

#include "coe/server.h"
#include "coe/status.h"

namespace coe {

struct GrpcOptions {
  size_t max_message_bytes = 32u << 20;  // larger requests (and responses) are refused
  int max_concurrent_calls = 64;         // calls handled at once; more get RESOURCE_EXHAUSTED
  int shutdown_grace_s = 5;              // Stop(): calls still running after this are cancelled
};

// The longest error message sent to a client (longer ones are cut, marked "...").
inline constexpr size_t kMaxErrorMessageBytes = 1024;

class GrpcFrontend {
 public:
  // Listens on host:port (port 0 = an ephemeral port; see port()) and serves until
  // Stop. InvalidArgument for a port out of range or options out of range (
  // max_message_bytes 0 or over 2 GiB, max_concurrent_calls < 1), Unavailable when the
  // address cannot be bound, FailedPrecondition (naming the paths tried) when
  // libcoe_grpc.so, which holds the implementation (server/grpc_module.h), cannot be
  // loaded.
  static StatusOr<std::unique_ptr<GrpcFrontend>> Start(const std::string& host, int port, Server* server,
                                                       const GrpcOptions& options);
  ~GrpcFrontend();  // Stop()
  GrpcFrontend(const GrpcFrontend&) = delete;
  GrpcFrontend& operator=(const GrpcFrontend&) = delete;

  // The bound port (also after Stop).
  int port() const;
  // Refuses new calls, lets running ones finish (cancelled after shutdown_grace_s) and
  // joins gRPC's threads. Safe to call more than once and from any thread.
  void Stop();

  struct Impl;

 private:
  explicit GrpcFrontend(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace coe

#endif  // COE_GRPC_H_
