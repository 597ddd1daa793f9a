#include "coe/rules.h"

#include <gtest/gtest.h>

#include <vector>

namespace coe {
namespace {

MemberOutput Vote(int label, float score = std::numeric_limits<float>::quiet_NaN()) {
  MemberOutput o;
  o.label = label;
  o.score = score;
  return o;
}

TEST(TallyVotes, PluralityAndAgreement) {
  std::vector<MemberOutput> v = {Vote(1), Vote(2), Vote(1)};
  TierVote t = TallyVotes(v);
  EXPECT_EQ(t.plurality, 1);
  EXPECT_EQ(t.votes, 2);
  EXPECT_EQ(t.members, 3);
  EXPECT_DOUBLE_EQ(t.agreement, 2.0 / 3);
}

TEST(TallyVotes, TieGoesToTheTiedVoterListedLast) {
  EXPECT_EQ(TallyVotes(std::vector<MemberOutput>{Vote(0), Vote(1)}).plurality, 1);
  EXPECT_EQ(TallyVotes(std::vector<MemberOutput>{Vote(1), Vote(0)}).plurality, 0);
  // 2-2 tie: the last voter (index 3) votes 0.
  EXPECT_EQ(TallyVotes(std::vector<MemberOutput>{Vote(0), Vote(1), Vote(1), Vote(0)}).plurality, 0);
  // A non-tied later voter does not matter: 1 has two votes.
  EXPECT_EQ(TallyVotes(std::vector<MemberOutput>{Vote(1), Vote(1), Vote(2)}).plurality, 1);
  // The tie-break skips abstainers listed last.
  EXPECT_EQ(TallyVotes(std::vector<MemberOutput>{Vote(3), Vote(4), Vote(kAbstain)}).plurality, 4);
}

TEST(TallyVotes, AbstentionsCountAgainstAgreement) {
  TierVote t = TallyVotes(std::vector<MemberOutput>{Vote(2), Vote(kAbstain)});
  EXPECT_EQ(t.plurality, 2);
  EXPECT_DOUBLE_EQ(t.agreement, 0.5);
  DeferralRule unanimous{1.0, std::nullopt};
  EXPECT_FALSE(unanimous.Exits(t));
}

TEST(TallyVotes, AllAbstainNeverExits) {
  TierVote t = TallyVotes(std::vector<MemberOutput>{Vote(kAbstain), Vote(kAbstain)});
  EXPECT_EQ(t.plurality, kAbstain);
  EXPECT_EQ(t.votes, 0);
  EXPECT_FALSE((DeferralRule{0.01, std::nullopt}).Exits(t));
}

TEST(TallyVotes, MeanScoreFromConfidences) {
  // Member 2 votes otherwise: contributes 0; the abstainer contributes 0.
  TierVote t = TallyVotes(std::vector<MemberOutput>{Vote(1, 0.9f), Vote(2, 0.8f), Vote(1, 0.7f), Vote(kAbstain)});
  EXPECT_EQ(t.plurality, 1);
  EXPECT_NEAR(t.mean_score, (0.9 + 0.0 + 0.7 + 0.0) / 4, 1e-6);
}

TEST(TallyVotes, MeanScoreFromProbabilities) {
  float p0[3] = {0.1f, 0.6f, 0.3f};
  float p1[3] = {0.2f, 0.2f, 0.6f};
  MemberOutput a = Vote(1), b = Vote(2);
  a.probs = p0;
  a.num_probs = 3;
  b.probs = p1;
  b.num_probs = 3;
  TierVote t = TallyVotes(std::vector<MemberOutput>{a, b});
  EXPECT_EQ(t.plurality, 2);  // tie -> last
  EXPECT_NEAR(t.mean_score, (0.3 + 0.6) / 2, 1e-6);
}

TEST(TallyVotes, MissingScoreMakesScoreRuleFail) {
  TierVote t = TallyVotes(std::vector<MemberOutput>{Vote(1, 0.99f), Vote(1)});
  EXPECT_TRUE(std::isnan(t.mean_score));
  EXPECT_FALSE((DeferralRule{std::nullopt, 0.5}).Exits(t));
  EXPECT_TRUE((DeferralRule{1.0, std::nullopt}).Exits(t));
}

TEST(DeferralRule, CombinedRulesBothMustHold) {
  TierVote t = TallyVotes(std::vector<MemberOutput>{Vote(1, 0.9f), Vote(1, 0.6f)});
  EXPECT_TRUE((DeferralRule{1.0, 0.75}).Exits(t));
  EXPECT_FALSE((DeferralRule{1.0, 0.76}).Exits(t));
  TierVote u = TallyVotes(std::vector<MemberOutput>{Vote(1, 0.99f), Vote(2, 0.99f)});
  EXPECT_FALSE((DeferralRule{1.0, 0.1}).Exits(u));
}

TEST(DeferralRule, ThresholdRoundTripOfTwoThirds) {
  TierVote t = TallyVotes(std::vector<MemberOutput>{Vote(1), Vote(1), Vote(2)});
  EXPECT_TRUE((DeferralRule{0.66666666666666663, std::nullopt}).Exits(t));
  EXPECT_FALSE((DeferralRule{0.67, std::nullopt}).Exits(t));
}

}  // namespace
}  // namespace coe

namespace coe {
namespace {

TEST(AnswerMatch, ParsesAndCompares) {
  EXPECT_TRUE(AnswerMatch::Parse("exact")->exact());
  EXPECT_EQ(AnswerMatch::Parse("number")->kind, AnswerMatch::Kind::kNumber);
  EXPECT_DOUBLE_EQ(AnswerMatch::Parse("jaccard:0.6")->threshold, 0.6);
  for (const char* bad : {"jaccard:0", "jaccard:1.5", "jaccard:", "fuzzy", ""})
    EXPECT_FALSE(AnswerMatch::Parse(bad).ok()) << bad;
  const AnswerMatch number = *AnswerMatch::Parse("number");
  EXPECT_TRUE(number.Same("42", "42.0"));
  EXPECT_TRUE(number.Same("so the answer is 1,234", "1234"));
  EXPECT_FALSE(number.Same("42", "43"));
  // Equal exactly, as decimals (no longer within 1e-6 relative, which made up
  // agreement between different answers: issue 22).
  EXPECT_FALSE(number.Same("100000000", "100000001"));
  const AnswerMatch jac = *AnswerMatch::Parse("jaccard:0.6");
  EXPECT_TRUE(jac.Same("Red apples.", "a red apple"));  // {red, apple} both
  EXPECT_FALSE(jac.Same("red apple", "green pear"));
  EXPECT_TRUE(jac.Same("boxes", "box"));      // -es after x
  EXPECT_TRUE(jac.Same("berries", "berry"));  // -ies -> -y
  EXPECT_TRUE(jac.Same("walking", "walk"));
}

TEST(AnswerMatch, TextTiersGroupInMemberOrder) {
  LabelSet labels;
  const int a = labels.Intern("42"), b = labels.Intern("41"), c = labels.Intern("42.0");
  AnswerMatcher num(*AnswerMatch::Parse("number"), labels);
  // {42, 42.0} against {41}: agreement 2/3; the answer is the group's last-listed.
  TierVote t = TallyVotes(std::vector<MemberOutput>{Vote(a, 0.9f), Vote(b, 0.8f), Vote(c, 0.6f)}, &num);
  EXPECT_EQ(t.plurality, c);
  EXPECT_EQ(t.votes, 2);
  EXPECT_DOUBLE_EQ(t.agreement, 2.0 / 3);
  EXPECT_NEAR(t.mean_score, (0.9 + 0.6) / 3, 1e-6);  // the losing member counts 0
  // A tie between groups goes to the group holding the last-listed voter.
  EXPECT_EQ(TallyVotes(std::vector<MemberOutput>{Vote(a), Vote(b)}, &num).plurality, b);
  EXPECT_EQ(TallyVotes(std::vector<MemberOutput>{Vote(b), Vote(a), Vote(kAbstain)}, &num).plurality, a);
  // Exact matching through the matcher is TallyVotes itself.
  AnswerMatcher exact(AnswerMatch{}, labels);
  const std::vector<MemberOutput> v = {Vote(a), Vote(c), Vote(a)};
  EXPECT_EQ(TallyVotes(v, &exact).plurality, TallyVotes(v).plurality);
  EXPECT_EQ(TallyVotes(v, &exact).votes, 2);
  EXPECT_EQ(TallyVotes(v, &num).votes, 3);
  // Every member abstains: no answer, no agreement.
  EXPECT_EQ(TallyVotes(std::vector<MemberOutput>{Vote(kAbstain), Vote(kAbstain)}, &num).plurality, kAbstain);
}

}  // namespace
}  // namespace coe

namespace coe {
namespace {

// Numbers agree when they are equal exactly, as decimals (issue 22): within 1e-6
// relative, 12345678901234561 and 12345678901234562 agreed, and the old reader's
// "1.23456789012346e+16" agreed with "2e+16" (both read as their last number, 16).
TEST(AnswerMatch, NumbersAreEqualExactly) {
  const AnswerMatch number = *AnswerMatch::Parse("number");
  EXPECT_FALSE(number.Same("12345678901234561", "12345678901234562"));
  EXPECT_TRUE(number.Same("12345678901234561", "the answer is 12,345,678,901,234,561"));
  EXPECT_TRUE(number.Same("1,234.50", "1234.5"));
  EXPECT_TRUE(number.Same("-0", "0"));
  EXPECT_TRUE(number.Same("1e-05", "0.00001"));
  EXPECT_TRUE(number.Same("1.23456789012346e+16", "12345678901234600"));
  EXPECT_FALSE(number.Same("1.23456789012346e+16", "2e+16"));
  EXPECT_FALSE(number.Same("0.1", "0.10000000000000001"));
  EXPECT_TRUE(number.Same(".5", "0.5"));
  EXPECT_TRUE(number.Same("no number", "no number"));  // without numbers: the same string
  EXPECT_FALSE(number.Same("no number", "none"));
  EXPECT_FALSE(number.Same("7", "seven"));
}

TEST(AnswerMatch, TheAnswerIsAMembersOwnText) {
  LabelSet labels;
  const int a = labels.Intern("12345678901234561"), b = labels.Intern("12345678901234562"),
            c = labels.Intern("12345678901234561.0");
  AnswerMatcher num(*AnswerMatch::Parse("number"), labels);
  TierVote t = TallyVotes(std::vector<MemberOutput>{Vote(a), Vote(b)}, &num);
  EXPECT_EQ(t.votes, 1);
  EXPECT_DOUBLE_EQ(t.agreement, 0.5);
  EXPECT_FALSE((DeferralRule{1.0, std::nullopt}).Exits(t));
  t = TallyVotes(std::vector<MemberOutput>{Vote(a), Vote(c), Vote(b)}, &num);
  EXPECT_EQ(t.votes, 2);
  EXPECT_EQ(labels.name(t.plurality), "12345678901234561.0");  // the group's last-listed member's text
}

}  // namespace
}  // namespace coe
