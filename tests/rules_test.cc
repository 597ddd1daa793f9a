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
