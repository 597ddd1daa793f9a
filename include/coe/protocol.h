// coe/protocol.h: the Open Inference Protocol (KServe v2) messages coe reads (protocol
// layer). The server decodes requests with it and the remote backend builds them;
// both share one JSON reader (src/protocol/oip.h) that reads tensor data straight into
// floats, so a float written by coe reads back bit-identical.
//
// Thread safety: pure functions.
#ifndef COE_PROTOCOL_H_
#define COE_PROTOCOL_H_

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "coe/status.h"
#include "coe/tensor.h"

namespace coe {

// An infer request, decoded.
struct InferRequest {
  std::optional<std::string> id;
  InputBatch batch;  // example_shape: the model's input_shape (the request's when any)
  bool want_label = true, want_exit_tier = true, want_degraded = true, want_probabilities = false;
};

// Decodes an Open Inference Protocol infer request body for a model taking examples of
// `input_shape` (empty = any shape). Never throws; every malformed, ill-typed or
// inconsistent body is InvalidArgument with a message fit for the client. On success
// the batch holds N * prod(input_shape) finite FP32 values.
StatusOr<InferRequest> ParseInferRequest(std::string_view body, const std::vector<int64_t>& input_shape);

}  // namespace coe

#endif  // COE_PROTOCOL_H_
