#include "protocol/oip_proto.h"

#include <bit>
#include <string>

#include "protocol/oip.h"

namespace coe::oip {
namespace {

namespace pb = ::inference;

// No parameter is honoured over gRPC (tensors come and go raw or typed as sent): one
// would be ignored, so it is refused, naming it.
template <typename Map>
Status RefuseParameters(const Map& params, const std::string& where) {
  if (params.empty()) return Status::Ok();
  std::string names;
  for (const auto& [key, value] : params) names += (names.empty() ? "" : ", ") + key.substr(0, 64);
  return InvalidArgumentError("parameters of " + where + " (" + names + ") are not honoured over gRPC");
}

// The input tensor's values from raw or typed contents into `t`, checking what only
// protobuf can get wrong (sizes and counts of each encoding).
Status ReadContents(const pb::ModelInferRequest& q, const std::vector<int64_t>& input_shape, Tensor* t) {
  const pb::ModelInferRequest::InferInputTensor& in = q.inputs(0);
  const std::string name = "input '" + in.name() + "'";
  const bool fp32 = in.datatype() == "FP32", uint8 = in.datatype() == "UINT8";
  if (!fp32 && !uint8) return Status::Ok();  // RequestFromMessage names the datatype
  COE_ASSIGN_OR_RETURN(const int64_t elements, ShapeElements(name, t->shape));
  // The model's shape first: a wrong shape says what the model takes, whatever the bytes.
  COE_RETURN_IF_ERROR(ExampleShapeFor(name, t->shape, input_shape).status());
  const auto& c = in.contents();
  t->has_data = true;
  if (q.raw_input_contents_size() == 1) {
    if (c.fp32_contents_size() || c.uint_contents_size())
      return InvalidArgumentError(name + " has both contents and raw_input_contents");
    const std::string& bytes = q.raw_input_contents(0);
    const uint64_t want = static_cast<uint64_t>(elements) * (fp32 ? 4 : 1);
    if (bytes.size() != want)
      return InvalidArgumentError("raw_input_contents[0] holds " + std::to_string(bytes.size()) + " bytes; " + name +
                                  " of shape " + ShapeString(t->shape) + " " + in.datatype() + " needs " +
                                  std::to_string(want));
    t->numbers.resize(elements);
    for (int64_t i = 0; i < elements; ++i)
      t->numbers[i] =
          fp32 ? std::bit_cast<float>(ReadU32Le(bytes.data() + 4 * i)) : static_cast<unsigned char>(bytes[i]);
    return Status::Ok();
  }
  const int64_t given = fp32 ? c.fp32_contents_size() : c.uint_contents_size();
  if (given != elements)
    return InvalidArgumentError(name + " has shape " + ShapeString(t->shape) + " (" + std::to_string(elements) +
                                " values) but contents." + (fp32 ? "fp32_contents" : "uint_contents") + " holds " +
                                std::to_string(given));
  if (fp32) {
    t->numbers.assign(c.fp32_contents().begin(), c.fp32_contents().end());
    return Status::Ok();
  }
  t->numbers.resize(elements);
  for (int64_t i = 0; i < elements; ++i) {
    const uint32_t v = c.uint_contents(static_cast<int>(i));
    if (v > 255)
      return InvalidArgumentError(name + " is UINT8 but element " + std::to_string(i) + " is " + std::to_string(v));
    t->numbers[i] = static_cast<float>(v);
  }
  return Status::Ok();
}

}  // namespace

StatusOr<InferRequest> InferRequestFromProto(const pb::ModelInferRequest& q, const std::vector<int64_t>& input_shape) {
  COE_RETURN_IF_ERROR(RefuseParameters(q.parameters(), "the request"));
  for (int i = 0; i < q.inputs_size(); ++i)
    COE_RETURN_IF_ERROR(RefuseParameters(q.inputs(i).parameters(), "inputs[" + std::to_string(i) + "]"));
  for (int i = 0; i < q.outputs_size(); ++i)
    COE_RETURN_IF_ERROR(RefuseParameters(q.outputs(i).parameters(), "outputs[" + std::to_string(i) + "]"));
  if (q.inputs().empty()) return InvalidArgumentError("the request has no inputs");
  if (q.raw_input_contents_size() > 1)
    return InvalidArgumentError("raw_input_contents has " + std::to_string(q.raw_input_contents_size()) +
                                " entries for the request's 1 input");
  Message m;
  if (!q.id().empty()) m.id = q.id();
  for (const auto& in : q.inputs()) {
    Tensor& t = m.inputs.emplace_back();
    t.name = in.name();
    t.datatype = in.datatype();
    t.shape.assign(in.shape().begin(), in.shape().end());
    t.has_shape = !t.shape.empty();
  }
  if (m.inputs.size() == 1 && m.inputs[0].has_shape) COE_RETURN_IF_ERROR(ReadContents(q, input_shape, &m.inputs[0]));
  for (const auto& o : q.outputs()) m.outputs.emplace_back().name = o.name();
  COE_ASSIGN_OR_RETURN(InferRequest req, RequestFromMessage(std::move(m), input_shape));
  req.raw = q.raw_input_contents_size() == 1;
  return req;
}

void InferResponseToProto(const InferResponse& r, bool raw, pb::ModelInferResponse* out) {
  using T = OutputTensor::Type;
  out->set_model_name(r.model_name);
  out->set_model_version(r.model_version);
  if (r.id) out->set_id(*r.id);
  auto& params = *out->mutable_parameters();
  for (const auto& [key, value] : r.int_parameters) params[key].set_int64_param(value);
  for (const auto& [key, value] : r.string_parameters) params[key].set_string_param(value);
  for (const OutputTensor& o : r.outputs) {
    pb::ModelInferResponse::InferOutputTensor* t = out->add_outputs();
    t->set_name(o.name);
    t->set_datatype(DatatypeName(o.type));
    for (int64_t d : o.shape) t->add_shape(d);
    std::string* bytes = raw ? out->add_raw_output_contents() : nullptr;
    auto* c = t->mutable_contents();
    switch (o.type) {
      case T::kBytes:
        for (const std::string& s : o.bytes) {
          if (bytes) {
            AppendU32Le(bytes, static_cast<uint32_t>(s.size()));
            *bytes += s;
          } else {
            c->add_bytes_contents(s);
          }
        }
        break;
      case T::kInt32:
        for (int32_t v : o.int32) bytes ? AppendU32Le(bytes, static_cast<uint32_t>(v)) : c->add_int_contents(v);
        break;
      case T::kBool:
        for (uint8_t v : o.bools) bytes ? bytes->push_back(v ? 1 : 0) : c->add_bool_contents(v != 0);
        break;
      case T::kFp32:
        for (float v : o.fp32) bytes ? AppendU32Le(bytes, std::bit_cast<uint32_t>(v)) : c->add_fp32_contents(v);
        break;
    }
    if (bytes) t->clear_contents();
  }
}

void ModelMetadataToProto(const ModelMetadata& m, pb::ModelMetadataResponse* out) {
  out->set_name(m.name);
  for (const std::string& v : m.versions) out->add_versions(v);
  out->set_platform(m.platform);
  auto add = [](const TensorMetadata& t, pb::ModelMetadataResponse::TensorMetadata* to) {
    to->set_name(t.name);
    to->set_datatype(t.datatype);
    for (int64_t d : t.shape) to->add_shape(d);
  };
  for (const TensorMetadata& t : m.inputs) add(t, out->add_inputs());
  for (const TensorMetadata& t : m.outputs) add(t, out->add_outputs());
}

void ServerMetadataToProto(const ServerMetadata& m, pb::ServerMetadataResponse* out) {
  out->set_name(m.name);
  out->set_version(m.version);
  for (const std::string& e : m.extensions) out->add_extensions(e);
}

}  // namespace coe::oip
