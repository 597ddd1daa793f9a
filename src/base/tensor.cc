#include "coe/tensor.h"

#include <algorithm>
#include <cmath>

#include "coe/labels.h"

namespace coe {

std::string ShapeString(std::span<const int64_t> s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

InputView InputView::Sub(int64_t begin, int64_t end) const {
  InputView v = *this;
  const int64_t e = n ? static_cast<int64_t>(data.size()) / n : 0;
  if (!data.empty()) v.data = data.subspan(begin * e, (end - begin) * e);
  if (!ids.empty()) v.ids = ids.subspan(begin, end - begin);
  if (!texts.empty()) v.texts = texts.subspan(begin, end - begin);
  v.n = end - begin;
  return v;
}

InputBatch InputView::Gather(std::span<const int> rows) const {
  InputBatch out;
  if (example_shape) out.example_shape = *example_shape;
  const int64_t e = n ? static_cast<int64_t>(data.size()) / n : 0;
  if (!data.empty()) {
    out.data.reserve(rows.size() * e);
    for (int r : rows) out.data.insert(out.data.end(), data.begin() + r * e, data.begin() + (r + 1) * e);
  }
  if (!texts.empty())
    for (int r : rows) out.texts.push_back(texts[r]);
  if (!ids.empty())
    for (int r : rows) out.ids.push_back(ids[r]);
  return out;
}

InputBatch InputBatch::Gather(std::span<const int> rows) const {
  InputBatch out = View().Gather(rows);
  if (!truth.empty())
    for (int r : rows) out.truth.push_back(truth[r]);
  return out;
}

InputBatch InputBatch::Slice(int64_t begin, int64_t end) const {
  InputBatch out;
  out.example_shape = example_shape;
  const int64_t e = ExampleSize();
  if (!data.empty()) out.data.assign(data.begin() + begin * e, data.begin() + end * e);
  if (!texts.empty()) out.texts.assign(texts.begin() + begin, texts.begin() + end);
  if (!ids.empty()) out.ids.assign(ids.begin() + begin, ids.begin() + end);
  if (!truth.empty()) out.truth.assign(truth.begin() + begin, truth.begin() + end);
  return out;
}

int SoftmaxArgmax(std::span<const float> logits, std::vector<float>* probs) {
  probs->assign(logits.size(), 0.0f);
  if (logits.empty()) return kAbstain;
  float max = logits[0];
  int arg = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    if (!std::isfinite(logits[i])) return kAbstain;
    if (logits[i] > max) {
      max = logits[i];
      arg = static_cast<int>(i);
    }
  }
  double sum = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    (*probs)[i] = std::exp(logits[i] - max);
    sum += (*probs)[i];
  }
  for (float& p : *probs) p = static_cast<float>(p / sum);
  return arg;
}

}  // namespace coe
