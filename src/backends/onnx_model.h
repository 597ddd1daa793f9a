// Internal: a reader of the ONNX files coe runs without OpenCV (the onednn backend).
//
// ONNX is a protobuf message (onnx.proto3, ModelProto). This reads the protobuf wire
// format directly, with bounds checked at every step, and keeps what an inference graph
// of float tensors needs: the graph's nodes (op type, inputs, outputs, attributes), its
// initializers as float arrays, and its input and output names. Anything else (doc
// strings, value_info, metadata) is skipped. A truncated or corrupt file is an
// InvalidArgument naming the file and what was wrong, never a crash.
#ifndef COE_BACKENDS_ONNX_MODEL_H_
#define COE_BACKENDS_ONNX_MODEL_H_

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "coe/status.h"

namespace coe::onnx {

struct FloatTensor {
  std::vector<int64_t> dims;
  std::vector<float> data;  // row-major; int64 tensors (shapes, pads) are converted
  bool integer = false;     // of an integer or bool type in the file (Div truncates)
  int64_t size() const {
    int64_t n = 1;
    for (int64_t d : dims) n *= d;
    return n;
  }
};

struct Attribute {
  std::string name;
  int64_t i = 0;
  float f = 0;
  std::string s;
  std::vector<int64_t> ints;
  std::vector<float> floats;
  bool has_tensor = false;
  FloatTensor t;
};

struct Node {
  std::string op_type, name, domain;
  std::vector<std::string> inputs, outputs;
  std::vector<Attribute> attributes;

  const Attribute* Find(std::string_view attribute) const;
  int64_t Int(std::string_view attribute, int64_t fallback) const;
  float Float(std::string_view attribute, float fallback) const;
  std::vector<int64_t> Ints(std::string_view attribute, std::vector<int64_t> fallback = {}) const;
};

struct Model {
  int64_t ir_version = 0;
  int64_t opset = 0;  // of the default domain ("" or "ai.onnx")
  std::vector<Node> nodes;
  std::map<std::string, FloatTensor> initializers;
  std::vector<std::string> inputs;  // graph inputs that are not initializers
  std::vector<int64_t> input_dims;  // the first input's declared shape, -1 where symbolic (empty: none declared)
  std::vector<std::string> outputs;
};

// When the graph's output is a Softmax over the last (class) axis of its one input,
// drops it: the output is then that input (the logits). Returns whether it did.
bool StripFinalSoftmax(Model* m);

// Parses `bytes` (the file's contents); `where` names it in errors.
StatusOr<Model> ParseModel(std::string_view bytes, const std::string& where);
StatusOr<Model> ReadModel(const std::string& path);

}  // namespace coe::onnx

#endif  // COE_BACKENDS_ONNX_MODEL_H_
