// Internal: the search's Pareto frontier of cascades found so far (accuracy against
// cost), with the lookups that prune the search. Each searcher thread owns one; their
// points are merged into one at the end (planner/search.cc).
#ifndef COE_PLANNER_FRONTIER_H_
#define COE_PLANNER_FRONTIER_H_

#include <cstdint>
#include <limits>
#include <vector>

#include "planner/problem.h"

namespace coe::search {

struct Step {
  int set = 0;
  int option = -1;  // -1: final tier
};

struct Candidate {
  int correct = 0;
  double cost = 0;   // summed over examples
  double cost2 = 0;  // the budget's figure, summed over examples
  uint64_t key = 0;  // deterministic tie-break: lower wins
  int depth = 0;
  Step path[kMaxTiers];
};

// Pareto frontier in (cost strictly ascending, correct strictly ascending). Besides
// the points it keeps, for every count k of examples answered right, the least cost
// of a point reaching k or more (need_[k]), so that the questions of the search (a
// few per cascade evaluated) are a lookup each: 8 bytes an example a searcher.
class Frontier {
 public:
  // `max_correct`: no point reaches more.
  explicit Frontier(int max_correct) : need_(max_correct + 2, std::numeric_limits<double>::infinity()) {}

  // StrictlyDominates(correct, cost): a point with correct >= `correct` and cost <=
  // `cost` exists and is not equal in both, so nothing reaching at most `correct` at no
  // less than `cost` can be on the frontier. It holds exactly when a point reaching
  // more costs no more, or one reaching at least as many costs less.
  bool StrictlyDominates(int correct, double cost) const { return cost >= need_[correct + 1] || cost > need_[correct]; }

  // True when a point with correct >= `correct` and cost <= `cost` exists.
  bool Covers(int correct, double cost) const { return need_[correct] <= cost; }

  // Offers `c`: kept when no point dominates it (of two equal in both, the lower key),
  // and the points it dominates dropped.
  void Insert(const Candidate& c);

  const std::vector<Candidate>& points() const { return pts_; }

 private:
  std::vector<Candidate> pts_;
  std::vector<double> cost_;  // pts_[k].cost
  std::vector<int> correct_;  // pts_[k].correct
  std::vector<double> need_;  // [k]: the least cost of a point with correct >= k
};

}  // namespace coe::search

#endif  // COE_PLANNER_FRONTIER_H_
