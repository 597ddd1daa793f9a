#include "server/cascade_outputs.h"

#include <cmath>
#include <set>

#include "protocol/oip.h"

namespace coe {

namespace {

// The outputs' values (CascadeOutput::fill), one per example of the run.
void Labels(const RunResult& r, const LabelSet&, OutputTensor* o) {
  for (int a : r.answer) o->bytes.push_back(r.labels.name(a));
}
void ExitTiers(const RunResult& r, const LabelSet&, OutputTensor* o) {
  for (int t : r.exit_tier) o->int32.push_back(t + 1);  // 1-based
}
void Degraded(const RunResult& r, const LabelSet&, OutputTensor* o) {
  for (uint8_t d : r.degraded) o->bools.push_back(d ? 1 : 0);
}
void Agreement(const RunResult& r, const LabelSet&, OutputTensor* o) {  // the answering tier's vote share
  for (const auto& v : r.vote) o->fp32.push_back(static_cast<float>(v.agreement));
}
void Probabilities(const RunResult& r, const LabelSet& labels, OutputTensor* o) {
  const size_t n = r.answer.size(), columns = labels.size();
  o->shape.push_back(static_cast<int64_t>(columns));
  o->fp32.reserve(n * columns);
  for (size_t i = 0; i < n; ++i)
    for (size_t l = 0; l < columns; ++l) {
      const float p = i < r.probs.size() && l < r.probs[i].size() ? r.probs[i][l] : 0.0f;
      o->fp32.push_back(std::isfinite(p) ? p : 0.0f);
    }
}

}  // namespace

const std::vector<CascadeOutput>& CascadeOutputs() {
  using T = OutputTensor::Type;
  static const std::vector<CascadeOutput> outputs = {
      {"label", T::kBytes, false, true, Labels},        {"exit_tier", T::kInt32, false, true, ExitTiers},
      {"degraded", T::kBool, false, true, Degraded},    {"probabilities", T::kFp32, true, false, Probabilities},
      {"agreement", T::kFp32, false, false, Agreement},
  };
  return outputs;
}

StatusOr<std::vector<ChosenOutput>> ChooseOutputs(const InferRequest& q) {
  const std::vector<CascadeOutput>& all = CascadeOutputs();
  std::vector<ChosenOutput> chosen;
  if (q.outputs.empty()) {
    for (size_t k = 0; k < all.size(); ++k)
      if (all[k].by_default) chosen.push_back({k, q.binary_output});
    return chosen;
  }
  std::set<size_t> seen;
  for (const InferRequest::Output& o : q.outputs) {
    size_t k = 0;
    while (k < all.size() && o.name != all[k].name) ++k;
    if (k == all.size()) {
      std::string names;
      for (const CascadeOutput& c : all) names += (names.empty() ? "" : ", ") + std::string(c.name);
      return InvalidArgumentError("unknown output '" + o.name.substr(0, 64) + "' (the model has " + names + ")");
    }
    if (!seen.insert(k).second) return InvalidArgumentError("output '" + o.name + "' is asked for twice");
    chosen.push_back({k, o.binary});
  }
  std::sort(chosen.begin(), chosen.end(),
            [](const ChosenOutput& a, const ChosenOutput& b) { return a.index < b.index; });
  return chosen;
}

bool NeedsProbabilities(const std::vector<ChosenOutput>& chosen) {
  for (const ChosenOutput& c : chosen)
    if (CascadeOutputs()[c.index].per_label) return true;
  return false;
}

InferResponse CascadeResponse(const std::string& model, const InferRequest& q, const std::vector<ChosenOutput>& chosen,
                              const RunResult& r, const LabelSet& labels) {
  InferResponse res;
  res.model_name = model;
  res.id = q.id;
  int64_t degraded = 0;
  for (uint8_t d : r.degraded) degraded += d;
  res.int_parameters.emplace_back("degraded_count", degraded);
  if (NeedsProbabilities(chosen)) {
    std::string names = "[";
    for (int l = 0; l < labels.size(); ++l) {
      if (l) names += ',';
      oip::AppendJsonString(&names, labels.name(l));
    }
    res.string_parameters.emplace_back("labels", names + "]");
  }
  for (const ChosenOutput& c : chosen) {
    const CascadeOutput& out = CascadeOutputs()[c.index];
    OutputTensor o{.name = out.name, .type = out.type, .shape = {static_cast<int64_t>(r.answer.size())}};
    out.fill(r, labels, &o);
    o.binary = c.binary;
    res.outputs.push_back(std::move(o));
  }
  return res;
}

ModelMetadata CascadeMetadata(const std::string& name, const std::vector<int64_t>& input_shape, size_t labels) {
  ModelMetadata m{name, "coe", {"1"}, {}, {}};
  std::vector<int64_t> shape = {-1};
  shape.insert(shape.end(), input_shape.begin(), input_shape.end());
  if (input_shape.empty()) shape.push_back(-1);
  m.inputs.push_back({"input", "FP32", shape});
  for (const CascadeOutput& o : CascadeOutputs()) {
    std::vector<int64_t> dims = {-1};
    if (o.per_label) dims.push_back(static_cast<int64_t>(labels));
    m.outputs.push_back({o.name, DatatypeName(o.type), dims});
  }
  return m;
}

ServerMetadata CoeServerMetadata(bool http) {
  ServerMetadata m{"coe", "0.1.0", {}};
  if (http) m.extensions.push_back("binary_tensor_data");
  return m;
}

}  // namespace coe
