// Backend "recorded": answers from a recordings CSV, looking examples up by id.
#include <algorithm>
#include <unordered_map>

#include "backends/backends.h"
#include "coe/recordings.h"

namespace coe {
namespace {

class RecordedBackend : public Backend {
 public:
  RecordedBackend(BackendInfo info, Recordings rec, LabelSet labels, int model)
      : info_(std::move(info)), rec_(std::move(rec)), labels_(std::move(labels)), model_(model) {
    for (int i = 0; i < rec_.num_examples(); ++i) row_.emplace(rec_.ids[i], i);
    // Recording label index -> this backend's label index.
    to_own_.assign(labels_.size(), kAbstain);
    for (size_t l = 0; l < info_.labels.size(); ++l) {
      int r = labels_.Find(info_.labels[l]);
      if (r != kAbstain) to_own_[r] = static_cast<int>(l);
    }
  }

  const BackendInfo& info() const override { return info_; }

  Status Predict(const InputView& batch, std::vector<Prediction>* out) override {
    const int64_t n = batch.size();
    out->assign(n, Prediction{});
    stats_.calls++;
    stats_.examples += n;
    if (n > 0 && !info_.input_shape.empty() && batch.shape() != info_.input_shape) {
      for (Prediction& p : *out) p = Prediction::Failure("wrong input shape", "input");
      stats_.abstentions += n;
      return InvalidArgumentError("model '" + info_.name + "' (recorded) takes inputs of shape " +
                                  ShapeString(info_.input_shape) + ", got " + ShapeString(batch.shape()));
    }
    if (static_cast<int64_t>(batch.ids.size()) != n) {
      for (Prediction& p : *out) p = Prediction::Failure("the recorded backend needs example ids", "input");
      stats_.abstentions += n;
      return Status::Ok();
    }
    const ModelRecord& m = rec_.models[model_];
    for (int64_t i = 0; i < n; ++i) {
      Prediction& p = (*out)[i];
      auto it = row_.find(batch.ids[i]);
      if (it == row_.end()) {
        p = Prediction::Failure("no recording for id '" + batch.ids[i] + "'", "input");
        stats_.abstentions++;
        continue;
      }
      const int r = it->second;
      const int l = m.label[r];
      p.label = l == kAbstain ? kAbstain : to_own_[l];
      if (p.label == kAbstain) {
        stats_.abstentions++;
        continue;
      }
      if (!m.score.empty()) p.score = m.score[r];
      if (!m.probs.empty()) {
        p.probs.assign(info_.labels.size(), 0.0f);
        for (int k = 0; k < m.num_probs; ++k)
          if (to_own_[k] != kAbstain) p.probs[to_own_[k]] = m.probs[static_cast<size_t>(r) * m.num_probs + k];
        if (m.score.empty()) p.score = p.probs[p.label];
      }
    }
    return Status::Ok();
  }

 private:
  BackendInfo info_;
  Recordings rec_;
  LabelSet labels_;
  int model_;
  std::unordered_map<std::string, int> row_;
  std::vector<int> to_own_;
};

}  // namespace

StatusOr<std::unique_ptr<Backend>> CreateRecordedBackend(const ModelSpec& spec, const BackendOptions&) {
  if (spec.path.empty())
    return InvalidArgumentError("model '" + spec.name + "': the recorded backend needs path = \"recordings.csv\"");
  LabelSet labels;
  COE_ASSIGN_OR_RETURN(Recordings rec, ReadRecordings(spec.path, &labels, nullptr));
  const std::string column = spec.remote_model.empty() ? spec.name : spec.remote_model;
  int m = rec.ModelIndex(column);
  if (m < 0) return NotFoundError("model '" + spec.name + "': no column '" + column + "' in " + spec.path);
  BackendInfo info;
  info.name = spec.name;
  info.kind = "recorded";
  info.input_shape = spec.input_shape;
  info.labels = spec.labels.empty() ? labels.names() : spec.labels;
  info.gives_probabilities = !rec.models[m].probs.empty();
  for (int l : rec.models[m].label)
    if (l != kAbstain && std::find(info.labels.begin(), info.labels.end(), labels.name(l)) == info.labels.end())
      return InvalidArgumentError("model '" + spec.name + "': " + spec.path + " has label '" + labels.name(l) +
                                  "', which the catalogue's labels do not list");
  return std::unique_ptr<Backend>(new RecordedBackend(std::move(info), std::move(rec), std::move(labels), m));
}

}  // namespace coe
