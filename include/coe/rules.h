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
#include <string_view>
#include <vector>

#include "coe/labels.h"
#include "coe/member_output.h"
#include "coe/status.h"

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

// How a tier tells that two answers are the same (the `match` of a tier):
//  exact       the same label string (the default; what TallyVotes above does);
//  number      both hold a number and their last numbers are equal exactly, as decimals
//              (never through a double: "1,234.50" = "1234.5" = "1.2345e3", "-0" = "0",
//              but 12345678901234561 != 12345678901234562); numbers are read as a chat
//              model's answer = "number" reads them (an optional sign, digits with
//              optional thousands commas, a fraction, an exponent: 6.02e23); answers
//              without a number match only the same string;
//  jaccard:t   the Jaccard similarity of their sets of lower-cased word stems is >= t.
// Structured answers (a chat model's tool calls and JSON replies, which it gives as
// canonical JSON, protocol/json_text.h Canonical: an object or array) are the same
// only when equal, under every match: "number" must not equate two tool calls that end
// in the same number, nor jaccard two JSON objects with the same words. An answer is
// structured when it is a JSON object or array (IsStructuredAnswer).
// Free-text answers: answers are grouped in member order (an answer joins the first
// group whose first answer it matches); agreement = the largest group's size / members;
// a tie between groups goes to the group holding the last-listed voter; the answer is
// that of the winning group's last-listed member. mean_score counts a member's
// confidence in its own answer when it is in the winning group, 0 otherwise.
struct AnswerMatch {
  enum class Kind { kExact, kNumber, kJaccard };
  Kind kind = Kind::kExact;
  double threshold = 0;  // kJaccard: in (0, 1]

  // "exact", "number", "jaccard:0.6"; InvalidArgument otherwise.
  static StatusOr<AnswerMatch> Parse(std::string_view text);
  std::string ToString() const;
  bool exact() const { return kind == Kind::kExact; }
  // Whether answers `a` and `b` count as the same.
  bool Same(std::string_view a, std::string_view b) const;
};

// Whether `answer` is a JSON object or array (see AnswerMatch).
bool IsStructuredAnswer(std::string_view answer);

// AnswerMatch over the labels of a LabelSet, with each label's parsed form cached.
// Not thread-safe (one a thread); `labels` must outlive it and may grow meanwhile.
class AnswerMatcher {
 public:
  AnswerMatcher(const AnswerMatch& match, const LabelSet& labels);
  const AnswerMatch& match() const { return match_; }
  bool Same(int a, int b);

 private:
  struct Parsed {
    bool done = false;
    bool structured = false;  // IsStructuredAnswer
    bool has_number = false;
    std::string number;              // the canonical form of the last number (base/decimal.h)
    std::vector<std::string> stems;  // sorted, unique
  };
  const Parsed& Get(int label);
  AnswerMatch match_;
  const LabelSet& labels_;
  std::vector<Parsed> cache_;
};

// TallyVotes under `matcher` (exact matching when null).
TierVote TallyVotes(std::span<const MemberOutput> outputs, AnswerMatcher* matcher);

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
