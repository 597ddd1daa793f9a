// The search's Pareto frontier (planner/frontier.h). Uses no other planner file.
#include "planner/frontier.h"

#include <algorithm>

namespace coe::search {

void Frontier::Insert(const Candidate& c) {
  size_t k = std::upper_bound(cost_.begin(), cost_.end(), c.cost) - cost_.begin();
  if (k > 0) {
    Candidate& p = pts_[k - 1];
    if (p.correct > c.correct) return;
    if (p.correct == c.correct) {
      if (p.cost < c.cost) return;
      // Equal in both: the lower key stays.
      if (c.key < p.key) p = c;
      return;
    }
  }
  // c is on the frontier: drop the points it dominates (cost >= c.cost, correct <= c.correct).
  size_t first = k;
  while (first > 0 && cost_[first - 1] == c.cost && correct_[first - 1] <= c.correct) --first;
  size_t last = k;
  while (last < pts_.size() && correct_[last] <= c.correct) ++last;
  pts_.erase(pts_.begin() + first, pts_.begin() + last);
  cost_.erase(cost_.begin() + first, cost_.begin() + last);
  correct_.erase(correct_.begin() + first, correct_.begin() + last);
  pts_.insert(pts_.begin() + first, c);
  cost_.insert(cost_.begin() + first, c.cost);
  correct_.insert(correct_.begin() + first, c.correct);
  // need_ ascends with the count: lower it from c.correct down while c is cheaper.
  for (int j = c.correct; j >= 0 && need_[j] > c.cost; --j) need_[j] = c.cost;
}

}  // namespace coe::search
