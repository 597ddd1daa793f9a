// Refitting score thresholds: each tier's min_score set to the value at its quantile
// level among the examples that pass the tier's vote test, on other recordings (or a
// part of them). Uses no other planner file (the rule code of coe/rules.h only).
#include "planner/refit.h"

#include <algorithm>
#include <cmath>

#include "coe/evaluate.h"
#include "coe/planner.h"
#include "coe/rules.h"

namespace coe {

StatusOr<CascadeSpec> RefitThresholds(const CascadeSpec& cascade, const std::vector<double>& levels,
                                      const Recordings& rec) {
  return RefitThresholdsOnRows(cascade, levels, rec, {});
}

StatusOr<CascadeSpec> RefitThresholdsOnRows(const CascadeSpec& cascade, const std::vector<double>& levels,
                                            const Recordings& rec, std::span<const int> rows) {
  CascadeSpec out = cascade;
  COE_ASSIGN_OR_RETURN(auto members, ResolveMembers(cascade, rec));
  std::vector<MemberOutput> outs;
  std::vector<double> vals;
  for (size_t t = 0; t < out.tiers.size() && t < levels.size(); ++t) {
    if (std::isnan(levels[t]) || !out.tiers[t].rule.min_score) continue;
    const DeferralRule vote_only{out.tiers[t].rule.min_agreement, std::nullopt};
    static const LabelSet kNoLabels;
    AnswerMatcher matcher(out.tiers[t].match, rec.labels ? *rec.labels : kNoLabels);
    vals.clear();
    const int n = rows.empty() ? rec.num_examples() : static_cast<int>(rows.size());
    for (int k = 0; k < n; ++k) {
      const int i = rows.empty() ? k : rows[k];
      outs.clear();
      for (int m : members[t]) outs.push_back(rec.Output(m, i));
      const TierVote v = TallyVotes(outs, &matcher);
      if (std::isnan(v.mean_score)) continue;
      if (vote_only.min_agreement && !vote_only.Exits(v)) continue;
      vals.push_back(v.mean_score);
    }
    if (vals.empty()) continue;  // no scores here: keep the threshold
    // The index QuantileGrid takes for this level.
    size_t idx = static_cast<size_t>(std::floor(levels[t] * vals.size()));
    idx = std::min(idx, vals.size() - 1);
    std::nth_element(vals.begin(), vals.begin() + idx, vals.end());
    out.tiers[t].rule.min_score = vals[idx];
  }
  return out;
}

}  // namespace coe
