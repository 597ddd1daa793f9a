// Internal (server layer): what a served cascade answers to an infer request, in one
// place for the REST API and the gRPC service: its outputs (name, type, shape, whether
// answered by default) and the response value built from a run (coe/protocol.h's
// InferResponse, which each codec writes). An output is added here and nowhere else.
//
// Compiled into the server and into the gRPC module (which links no server code).
//
// Thread safety: pure functions and constants.
#ifndef COE_SERVER_CASCADE_OUTPUTS_H_
#define COE_SERVER_CASCADE_OUTPUTS_H_

#include <string>
#include <vector>

#include "coe/cascade.h"
#include "coe/labels.h"
#include "coe/protocol.h"
#include "coe/status.h"

namespace coe {

// One output of a served cascade, for its metadata and its responses.
struct CascadeOutput {
  const char* name;
  OutputTensor::Type type;
  bool per_label;   // shape [N, labels] (else [N])
  bool by_default;  // answered when a request names no outputs
  // Appends the output's values for a run to `o` (shaped [N] already; a per-label
  // output adds its columns), `labels` the cascade's probability columns.
  void (*fill)(const RunResult& r, const LabelSet& labels, OutputTensor* o);
};

// Every output, in the order responses list them.
const std::vector<CascadeOutput>& CascadeOutputs();

// The outputs `q` asks for: indices into CascadeOutputs() with their binary flag, in
// the table's order. InvalidArgument naming an unknown or repeated output.
struct ChosenOutput {
  size_t index;
  bool binary;
};
StatusOr<std::vector<ChosenOutput>> ChooseOutputs(const InferRequest& q);

// Whether the run must keep probabilities for these outputs.
bool NeedsProbabilities(const std::vector<ChosenOutput>& chosen);

// The response to `q` for the cascade served as `model` that answered `r`, with
// `labels` the cascade's probability columns: every chosen output, the degraded_count
// parameter, and the labels parameter (a JSON array of the column names) when
// probabilities are answered. Non-finite probabilities are 0 (JSON cannot hold them).
InferResponse CascadeResponse(const std::string& model, const InferRequest& q, const std::vector<ChosenOutput>& chosen,
                              const RunResult& r, const LabelSet& labels);

// The metadata of the cascade served as `name`, taking examples of `input_shape` (empty
// = any) with `labels` probability columns: one FP32 input and every output above.
ModelMetadata CascadeMetadata(const std::string& name, const std::vector<int64_t>& input_shape, size_t labels);
// coe's server metadata; `http`: with the REST binding's extension (binary_tensor_data).
ServerMetadata CoeServerMetadata(bool http);

}  // namespace coe

#endif  // COE_SERVER_CASCADE_OUTPUTS_H_
