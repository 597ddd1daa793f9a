// Internal: the member sets of a search (planner/problem.h): every set of 1 to
// max_members models, with its "plurality is correct" mask and its rule options, each
// decided on every example through the engine's rule code (coe/rules.h).
#ifndef COE_PLANNER_MEMBER_SETS_H_
#define COE_PLANNER_MEMBER_SETS_H_

#include "base/thread_pool.h"
#include "coe/recordings.h"
#include "planner/problem.h"

namespace coe::search {

// Fills p.sets (smaller sets first) and p.after from the tables BuildProblem made, on
// `pool`. `rules`: the kinds of rule options (kRuleVote, ...); `grid`: score thresholds
// tried per set and rule kind. The result does not depend on the pool's size.
void BuildMemberSets(Problem& p, const Recordings& calib, int max_members, unsigned rules, int grid, ThreadPool& pool);

}  // namespace coe::search

#endif  // COE_PLANNER_MEMBER_SETS_H_
