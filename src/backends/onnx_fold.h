// Internal: ONNX nodes computed at load from constant inputs (the onednn module).
//
// An exporter writes a model's shape arithmetic as nodes: torch's `x.view(b, c, -1)`
// becomes Shape -> Gather -> Unsqueeze -> Concat -> Reshape, a Swin's attention mask
// ConstantOfShape, Range, ScatterND, Equal, Where on shapes known once the batch size is.
// The compiler (onednn_graph.cc) compiles a graph for one batch size, so every such value
// is known then: Fold computes a node whose inputs all are, on the host, by ONNX's rules
// (broadcasting, integer division truncating, negative indices and axes), so that only
// the tensors that depend on the input image become oneDNN steps.
//
// Values are FloatTensor (onnx_model.h): integers (shapes, indices) are held as floats,
// exact up to 2^24, which every shape a classifier has is well within.
#ifndef COE_BACKENDS_ONNX_FOLD_H_
#define COE_BACKENDS_ONNX_FOLD_H_

#include <string>
#include <vector>

#include "backends/onnx_model.h"
#include "coe/status.h"

namespace coe::onnx {

// Whether Fold computes nodes of `op_type`.
bool Folds(const std::string& op_type);

// The outputs of `n` (of the default domain, in a model of `opset`) from its inputs, all
// known: `inputs[k]` is input k, nullptr when absent. InvalidArgument naming the node
// for inputs its operator cannot take (shapes that do not broadcast, an index out of
// range, a result above 2^26 values).
StatusOr<std::vector<FloatTensor>> Fold(const Node& n, const std::vector<const FloatTensor*>& inputs, int64_t opset);

// Shape's output for a tensor of `dims` (its start and end attributes applied).
FloatTensor ShapeOf(const Node& n, const std::vector<int64_t>& dims);

}  // namespace coe::onnx

#endif  // COE_BACKENDS_ONNX_FOLD_H_
