// coe/evaluate.h: replaying a cascade over recordings, one example at a time,
// through the rule code of coe/rules.h. This is what `coe eval` runs, what the
// planner's reports use on held-out splits, and the reference the planner's
// bit-packed search is tested against.
//
// Thread safety: pure functions.
#ifndef COE_EVALUATE_H_
#define COE_EVALUATE_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "coe/cascade_spec.h"
#include "coe/cost_model.h"
#include "coe/recordings.h"
#include "coe/status.h"

namespace coe {

// One example's path through a cascade.
struct ExampleOutcome {
  int answer = kAbstain;  // label index; kAbstain when the answering tier all abstained
  int exit_tier = 0;      // 0-based tier that answered
  double cost = 0;
  double latency_ms = 0;
  double bytes_sent = 0;     // input bytes sent over the link to cloud members
  double transfer_cost = 0;  // of `cost`: sending the input to the cloud (CostTable::transfer_usd_per_byte)
  TierVote vote;             // the answering tier's tally
  bool labeled = false;      // the example has a truth
  // Labeled, and the answer is the truth by the answering tier's `match` (what
  // EvalResult::correct counts): every figure built on outcomes reads this, never
  // `answer == truth`, so that --match number or jaccard holds everywhere.
  bool correct = false;
};

struct EvalResult {
  int examples = 0;
  int labeled = 0;         // examples with a known truth
  int correct = 0;         // labeled examples answered correctly
  double accuracy = 0;     // correct / labeled (0 when nothing is labeled)
  double mean_cost = 0;    // per example, every example counted
  std::vector<int> exits;  // examples answered by each tier
  int unanswered = 0;      // the answering tier all abstained
  // Present when the cost table has latencies / a link / a cluster:
  std::optional<double> mean_latency_ms;
  std::optional<double> p99_latency_ms;
  std::optional<double> mean_bytes_sent;
  std::optional<double> mean_cost_homogeneous;
  std::optional<double> mean_transfer_cost;  // of mean_cost, with a transfer price
};

// Maps the spec's member names to `rec`'s model indices, checking that every member
// exists (NotFound naming the member and the file) and that tiers with a score rule
// have members with scores (FailedPrecondition otherwise).
StatusOr<std::vector<std::vector<int>>> ResolveMembers(const CascadeSpec& spec, const Recordings& rec);

// Replays `spec` over every example of `rec`. `costs` must be built for `rec`.
// When `outcomes` is not null it receives one entry per example.
StatusOr<EvalResult> EvaluateCascade(const CascadeSpec& spec, const Recordings& rec, const CostTable& costs,
                                     std::vector<ExampleOutcome>* outcomes = nullptr);
// The same, keeping only each example's answer (label index, or kAbstain): 4 bytes
// an example. Whether an answer is right is the tier's match, not `==`: see below.
StatusOr<EvalResult> EvaluateCascadeAnswers(const CascadeSpec& spec, const Recordings& rec, const CostTable& costs,
                                            std::vector<int>* answers);
// The same, keeping only ExampleOutcome::correct (1 or 0) for each example: 1 byte an
// example, for paired comparisons of cascades over large recordings.
StatusOr<EvalResult> EvaluateCascadeCorrect(const CascadeSpec& spec, const Recordings& rec, const CostTable& costs,
                                            std::vector<uint8_t>* correct);

// For each tier of `spec` but the last, its calibrated agreement with the last tier on
// `rec` (TierSpec::calibrated_agreement, coe/cascade_spec.h): of the examples that exit
// at that tier, the share on which the last tier alone answers the same by that tier's
// match; none for a tier no example exits at. The last tier's entry is always none.
// Errors: EvaluateCascade's.
StatusOr<std::vector<std::optional<double>>> AgreementWithLastTier(const CascadeSpec& spec, const Recordings& rec,
                                                                   const CostTable& costs);

}  // namespace coe

#endif  // COE_EVALUATE_H_
