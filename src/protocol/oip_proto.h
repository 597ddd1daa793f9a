// Internal (protocol layer): the Open Inference Protocol's protobuf codec, the gRPC
// twin of the JSON codec (coe/protocol.h, oip.h). Requests end in the same checks
// (oip::RequestFromMessage) and responses start from the same value (InferResponse),
// so REST and gRPC differ only in the encoding. Compiled into the gRPC module, which
// holds protobuf (src/server/grpc_module.h).
//
// Thread safety: pure functions.
#ifndef COE_PROTOCOL_OIP_PROTO_H_
#define COE_PROTOCOL_OIP_PROTO_H_

#include <cstdint>
#include <vector>

#include "coe/protocol.h"
#include "coe/status.h"
#include "open_inference.pb.h"

namespace coe::oip {

// The request `q` for a model taking examples of `input_shape` (empty = any), or
// InvalidArgument naming what is wrong: as ParseInferRequest, and for what only
// protobuf has: raw_input_contents of the wrong size, typed contents of the wrong
// count or type, both at once, a parameter (none is honoured over gRPC). `raw` is set
// when the input came in raw_input_contents.
StatusOr<InferRequest> InferRequestFromProto(const ::inference::ModelInferRequest& q,
                                             const std::vector<int64_t>& input_shape);

// `r` into `out` (model name, version, id, parameters, outputs): typed contents, or
// raw_output_contents (one entry per output, little-endian; BYTES elements each a
// 4-byte length and its bytes) when `raw`.
void InferResponseToProto(const InferResponse& r, bool raw, ::inference::ModelInferResponse* out);

// Metadata into the gRPC responses (the JSON codec's twins: coe/protocol.h).
void ModelMetadataToProto(const ModelMetadata& m, ::inference::ModelMetadataResponse* out);
void ServerMetadataToProto(const ServerMetadata& m, ::inference::ServerMetadataResponse* out);

}  // namespace coe::oip

#endif  // COE_PROTOCOL_OIP_PROTO_H_
