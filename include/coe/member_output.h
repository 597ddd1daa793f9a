// coe/member_output.h: one cascade member's answer for one example, as the rule code
// (coe/rules.h) reads it (base layer).
//
// One concept, two forms: a backend answers with a Prediction (coe/backend.h), which
// owns its probabilities and uses the backend's own label indices; the engine and the
// recordings hand the rules a MemberOutput, a non-owning view in the cascade's (or the
// recordings') label indices.
#ifndef COE_MEMBER_OUTPUT_H_
#define COE_MEMBER_OUTPUT_H_

#include <cmath>
#include <limits>

#include "coe/labels.h"

namespace coe {

struct MemberOutput {
  int label = kAbstain;  // index into the LabelSet, or kAbstain
  // Confidence in `label`, in [0,1]; NaN when the member gives none.
  float score = std::numeric_limits<float>::quiet_NaN();
  // Probability per label index (num_probs entries), or null. Not owned: it must
  // outlive the call it is passed to. Labels >= num_probs have probability 0.
  const float* probs = nullptr;
  int num_probs = 0;

  // The member's probability for `label_index`: its probability for it when it has
  // probabilities; else its confidence if it voted for it, 0 if it voted otherwise;
  // 0 for an abstention; NaN when it voted but gives neither.
  double ProbabilityOf(int label_index) const {
    if (label == kAbstain) return 0.0;
    if (probs != nullptr) return label_index < num_probs ? probs[label_index] : 0.0;
    if (std::isnan(score)) return std::numeric_limits<double>::quiet_NaN();
    return label == label_index ? static_cast<double>(score) : 0.0;
  }
};

}  // namespace coe

#endif  // COE_MEMBER_OUTPUT_H_
