// coe/rules.h: votes and deferral rules. The one implementation of the method's
// semantics, shared by the live engine, `coe eval` and the planner.
//
// Semantics (binding, see DESIGN.md):
//  - Each member of a tier gives, for one example, a label or an abstention, and
//    optionally a confidence for its label (`score`) or a probability per label.
//  - The plurality label is the label with most votes; abstentions vote for nothing;
//    a tie goes to the label of the tied voter listed last in the tier (tiers list
//    members in ascending cost, so the most expensive tied voter wins).
//  - agreement = votes for the plurality label / number of members (abstentions
//    count against agreement).
//  - mean_score = the members' mean probability for the plurality label. A member
//    with per-label probabilities contributes its probability for that label; a
//    member with only a confidence for its own label contributes that confidence
//    when it voted for the plurality label and 0 otherwise; an abstaining member
//    contributes 0. If some non-abstaining member has neither, mean_score is NaN
//    and no score rule can pass.
//  - A DeferralRule lets a tier exit when every condition it sets holds:
//    agreement >= min_agreement, mean_score >= min_score. A tier whose members all
//    abstain never exits. The last tier of a cascade always answers with its
//    plurality label (nothing, counted wrong, if all its members abstain).
//
// Thread safety: everything here is a pure function of its arguments.
#ifndef COE_RULES_H_
#define COE_RULES_H_

#include <cmath>
#include <limits>
#include <optional>
#include <span>
#include <string>

#include "coe/labels.h"
#include "coe/member_output.h"

namespace coe {

// The tally of one tier's votes on one example.
struct TierVote {
  int plurality = kAbstain;  // kAbstain when every member abstained
  int votes = 0;             // votes for `plurality`
  int members = 0;           // size of the tier, abstainers included
  double agreement = 0.0;    // votes / members
  double mean_score = std::numeric_limits<double>::quiet_NaN();
};

// Tallies the outputs of a tier's members, given in the tier's order.
TierVote TallyVotes(std::span<const MemberOutput> outputs);

struct DeferralRule {
  std::optional<double> min_agreement;  // vote rule: exit when agreement >= this
  std::optional<double> min_score;      // score rule: exit when mean_score >= this

  bool empty() const { return !min_agreement && !min_score; }
  // True when a non-final tier with this tally returns its plurality label.
  bool Exits(const TierVote& vote) const;
  // How reports show the rule: "unanimous", "agree>=2/3" (as a share of `members` when
  // given, else "agree>=0.667"), "score>=0.9", joined by " & "; "plurality" for an
  // empty rule.
  std::string ToString(int members = 0) const;
};

}  // namespace coe

#endif  // COE_RULES_H_
