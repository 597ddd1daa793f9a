// The planner's goals and option words: rule kinds, goals and guards as text and back,
// the score grid's default, and the choice of an operating point on a frontier for a
// goal (coe/planner.h). Uses no other planner file.
#include <algorithm>
#include <cmath>

#include "base/numbers.h"
#include "base/words.h"
#include "coe/planner.h"

namespace coe {

StatusOr<unsigned> ParseRuleKinds(const std::string& text) {
  unsigned kinds = 0;
  for (const std::string& item : SplitCommas(text)) {
    if (item == "vote")
      kinds |= kRuleVote;
    else if (item == "score")
      kinds |= kRuleScore;
    else if (item == "vote+score" || item == "score+vote")
      kinds |= kRuleVoteAndScore;
    else if (item == "all")
      kinds |= kRuleVote | kRuleScore | kRuleVoteAndScore;
    else
      return InvalidArgumentError("--rules: unknown rule kind '" + item + "' (expected vote, score, vote+score, all)");
  }
  return kinds;
}

std::string RuleKindsToString(unsigned kinds) {
  std::string s;
  auto add = [&](const char* k) { s += s.empty() ? k : std::string(",") + k; };
  if (kinds & kRuleVote) add("vote");
  if (kinds & kRuleScore) add("score");
  if (kinds & kRuleVoteAndScore) add("vote+score");
  return s;
}

StatusOr<Goal> Goal::Parse(const std::string& text) {
  Goal g;
  auto value = [&](const std::string& prefix) -> Status {
    std::optional<double> v = ParseDouble(text.substr(prefix.size()));
    if (!v || !std::isfinite(*v) || *v < 0)
      return InvalidArgumentError("--goal: '" + text + "': expected a non-negative number after '" + prefix + "'");
    g.value = *v;
    return Status::Ok();
  };
  if (text == "match-best") {
    g.kind = Kind::kMatchBest;
  } else if (text == "max-accuracy") {
    g.kind = Kind::kMaxAccuracy;
  } else if (text.rfind("accuracy=", 0) == 0) {
    g.kind = Kind::kAccuracy;
    COE_RETURN_IF_ERROR(value("accuracy="));
    if (g.value > 1) return InvalidArgumentError("--goal: accuracy must be in [0,1], e.g. accuracy=0.9");
  } else if (text.rfind("budget=", 0) == 0) {
    g.kind = Kind::kBudget;
    COE_RETURN_IF_ERROR(value("budget="));
  } else {
    return InvalidArgumentError("--goal: '" + text + "' (expected match-best, accuracy=X, budget=X or max-accuracy)");
  }
  return g;
}

std::string Goal::ToString() const {
  switch (kind) {
    case Kind::kMatchBest:
      return "match-best";
    case Kind::kMaxAccuracy:
      return "max-accuracy";
    case Kind::kAccuracy:
      return "accuracy=" + FormatDouble(value);
    case Kind::kBudget:
      return "budget=" + FormatDouble(value);
  }
  return "";
}

const OperatingPoint* ChooseOperatingPoint(const std::vector<OperatingPoint>& frontier, const Goal& goal, int labeled,
                                           int best_single_correct, bool* goal_met) {
  *goal_met = true;
  if (frontier.empty()) return nullptr;
  const OperatingPoint* most_accurate = &frontier.back();
  auto least_cost_reaching = [&](int target) -> const OperatingPoint* {
    for (const OperatingPoint& p : frontier)
      if (p.correct >= target) return &p;
    *goal_met = false;
    return most_accurate;
  };
  switch (goal.kind) {
    case Goal::Kind::kMatchBest:
      return least_cost_reaching(best_single_correct);
    case Goal::Kind::kAccuracy:
      return least_cost_reaching(static_cast<int>(std::ceil(goal.value * labeled - 1e-9)));
    case Goal::Kind::kMaxAccuracy:
      return most_accurate;
    case Goal::Kind::kBudget: {
      const OperatingPoint* best = nullptr;
      for (const OperatingPoint& p : frontier)
        if (p.cost <= goal.value * (1 + 1e-12)) best = &p;
      if (!best) {
        *goal_met = false;
        return &frontier.front();
      }
      return best;
    }
  }
  return nullptr;
}

int AutoScoreGrid(int labeled) { return std::clamp(labeled / 200, 2, 8); }

StatusOr<Guard> ParseGuard(const std::string& text) {
  if (text == "none") return Guard::kNone;
  if (text == "mcnemar") return Guard::kMcNemar;
  if (text == "noninferiority") return Guard::kNonInferiority;
  if (text == "holdout") return Guard::kHoldout;
  if (text == "cv") return Guard::kCrossValidation;
  return InvalidArgumentError("--select: '" + text + "' (expected none, mcnemar, noninferiority, holdout or cv)");
}

std::string GuardName(Guard guard) {
  switch (guard) {
    case Guard::kNone:
      return "none";
    case Guard::kMcNemar:
      return "mcnemar";
    case Guard::kNonInferiority:
      return "noninferiority";
    case Guard::kHoldout:
      return "holdout";
    case Guard::kCrossValidation:
      return "cv";
  }
  return "";
}

}  // namespace coe
