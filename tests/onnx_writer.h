// A protobuf writer for hand-made ONNX graphs in tests (onednn_test, the onnx
// backend's memory test).
#ifndef COE_TESTS_ONNX_WRITER_H_
#define COE_TESTS_ONNX_WRITER_H_

#include <cstdint>
#include <string>
#include <vector>

namespace coe {

struct Proto {
  std::string out;
  void Varint(uint64_t v) {
    while (v >= 0x80) {
      out.push_back(static_cast<char>((v & 0x7f) | 0x80));
      v >>= 7;
    }
    out.push_back(static_cast<char>(v));
  }
  Proto& Int(uint32_t field, int64_t v) {
    Varint(field << 3);
    Varint(static_cast<uint64_t>(v));
    return *this;
  }
  Proto& Bytes(uint32_t field, const std::string& b) {
    Varint((field << 3) | 2);
    Varint(b.size());
    out += b;
    return *this;
  }
};

inline std::string Tensor(const std::string& name, std::vector<int64_t> dims, const std::vector<float>& data) {
  Proto t;
  for (int64_t d : dims) t.Int(1, d);
  t.Int(2, 1);  // FLOAT
  t.Bytes(8, name);
  t.Bytes(9, std::string(reinterpret_cast<const char*>(data.data()), data.size() * sizeof(float)));
  return t.out;
}

inline std::string NodeProto(const std::string& op, std::vector<std::string> in, const std::string& out) {
  Proto n;
  for (const std::string& i : in) n.Bytes(1, i);
  n.Bytes(2, out).Bytes(4, op);
  return n.out;
}

// A graph input or output: float [N, dims...] (OpenCV's importer wants the types).
inline std::string FloatValueInfo(const std::string& name, const std::vector<int64_t>& dims) {
  Proto shape;
  shape.Bytes(1, Proto().Bytes(2, "N").out);
  for (int64_t d : dims) shape.Bytes(1, Proto().Int(1, d).out);
  Proto tensor_type;
  tensor_type.Int(1, 1).Bytes(2, shape.out);
  return Proto().Bytes(1, name).Bytes(2, Proto().Bytes(1, tensor_type.out).out).out;
}

}  // namespace coe

#endif  // COE_TESTS_ONNX_WRITER_H_
