#include "coe/rules.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace coe {

TierVote TallyVotes(std::span<const MemberOutput> outputs) {
  TierVote v;
  v.members = static_cast<int>(outputs.size());
  if (outputs.empty()) return v;
  // Tiers are small (a handful of members): quadratic counting beats a map. Scanning
  // from the last member backwards and keeping the first label that reaches a
  // strictly larger count implements "a tie goes to the tied voter listed last".
  const int n = v.members;
  for (int i = n - 1; i >= 0; --i) {
    const int label = outputs[i].label;
    if (label == kAbstain) continue;
    int count = 0;
    for (int j = 0; j < n; ++j) count += outputs[j].label == label;
    if (count > v.votes) {
      v.votes = count;
      v.plurality = label;
    }
  }
  v.agreement = static_cast<double>(v.votes) / n;
  if (v.plurality == kAbstain) return v;
  double sum = 0.0;
  for (const MemberOutput& o : outputs) sum += o.ProbabilityOf(v.plurality);
  v.mean_score = sum / n;  // NaN propagates when a member has no probabilities
  return v;
}

bool DeferralRule::Exits(const TierVote& vote) const {
  if (vote.plurality == kAbstain) return false;
  // Thresholds such as 2/3 are written to cascade files with 17 significant digits;
  // the tolerance keeps k/n >= k/n true after that round trip.
  if (min_agreement && vote.agreement < *min_agreement - 1e-12) return false;
  if (min_score && !(vote.mean_score >= *min_score)) return false;  // NaN fails
  return true;
}

std::string DeferralRule::ToString(int members) const {
  if (empty()) return "plurality";
  std::string s;
  char buf[64];
  if (min_agreement) {
    if (*min_agreement >= 1 - 1e-12) {
      s += "unanimous";
    } else if (members > 0) {
      const int k = static_cast<int>(std::ceil(*min_agreement * members - 1e-9));
      std::snprintf(buf, sizeof buf, "agree>=%d/%d", std::max(k, 0), members);
      s += buf;
    } else {
      std::snprintf(buf, sizeof buf, "agree>=%.3g", *min_agreement);
      s += buf;
    }
  }
  if (min_score) {
    std::snprintf(buf, sizeof buf, "%sscore>=%.4g", s.empty() ? "" : " & ", *min_score);
    s += buf;
  }
  return s;
}

}  // namespace coe
