// Label-free planning (coe/planner.h): the answers that stand in for the truth (the
// Clopper-Pearson bound match-best puts on the disagreement with them is
// base/binomial.h's). Uses no other planner file.
#include "coe/planner.h"
#include "coe/rules.h"

namespace coe {

StatusOr<std::vector<int>> ReferenceAnswers(const Recordings& rec, const std::string& reference,
                                            const AnswerMatch& match) {
  const int n = rec.num_examples();
  if (reference != kPluralityReference) {
    const int m = rec.ModelIndex(reference);
    if (m < 0) {
      std::string models;
      for (const ModelRecord& r : rec.models) models += (models.empty() ? "" : ", ") + r.name;
      return NotFoundError("--reference '" + reference + "': no model of that name in " + rec.source +
                           " (its models: " + (models.empty() ? "none" : models) + "; or --reference " +
                           kPluralityReference + ", the plurality of them all)");
    }
    return rec.models[m].label;
  }
  if (rec.ModelIndex(kPluralityReference) >= 0)
    return InvalidArgumentError("--reference plurality: " + rec.source +
                                " has a model named 'plurality'; rename its column to plan against it");
  if (!match.exact() && !rec.labels)
    return InvalidArgumentError("--match " + match.ToString() + " compares answers as text; " + rec.source +
                                " has no label names");
  static const LabelSet kNoLabels;
  AnswerMatcher matcher(match, rec.labels ? *rec.labels : kNoLabels);
  std::vector<int> out(n, kAbstain);
  std::vector<MemberOutput> outs;
  for (int i = 0; i < n; ++i) {
    outs.clear();
    for (int m = 0; m < static_cast<int>(rec.models.size()); ++m) outs.push_back(rec.Output(m, i));
    out[i] = TallyVotes(outs, &matcher).plurality;
  }
  return out;
}

}  // namespace coe
