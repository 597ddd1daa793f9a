// coe/cascade.h: running a cascade live (engine layer).
//
// A batch enters tier 1; every member of the tier runs on it at once (the batch is cut
// into chunks, and every (member, chunk) pair is a task on a thread pool); the
// examples that did not exit are gathered into a smaller batch for the next tier.
// Decisions use TallyVotes() and DeferralRule::Exits() from coe/rules.h, the code the
// planner and `coe eval` use, so a live run and a replay of its recordings agree.
//
// Failures: a member failing on an example (no answer; Prediction::failed) votes for
// nothing, as an abstention does, and is listed in RunResult::failures with its cause.
// When the answering tier has no answer and some member of it failed (not merely
// abstained), the example gets the answer of the deepest earlier tier that had one and
// is marked degraded; if no tier had one, it is unanswered (and degraded). An example
// whose members all abstained (answered, but unreadably) is unanswered, not degraded.
//
// Determinism: answers are a pure function of (input, cascade, models). The labels,
// exit tiers, votes, costs and probabilities of a Run do not depend on the number of
// threads, the chunk size, the batch an example arrives in, other concurrent Runs, or
// timing (a backend's own failures aside: a remote member that times out abstains).
// tests/backend_conformance_test.cc checks every backend for this bit for bit, and
// the ThreadSanitizer lane (scripts/test.sh --tsan) checks the sharing.
//
// Thread safety: Run() may be called from many threads at once (the server does); a
// Cascade is immutable after Create. Shared state, and what guards it: the thread
// pool's queue (its mutex); per-Run results (each task writes its own disjoint slice;
// per-member timings under a per-Run mutex); backends (each is safe for concurrent
// Predict: the onnx backend leases one cv::dnn::Net per call and reads its output
// before giving it back; the remote backend's connection pool, schema and circuit
// breaker sit under its mutex; statistics are relaxed atomics).
// Ownership: a Cascade owns its backends and its thread pool.
#ifndef COE_CASCADE_H_
#define COE_CASCADE_H_

#include <memory>
#include <string>
#include <vector>

#include "coe/backend.h"
#include "coe/cascade_spec.h"
#include "coe/catalogue.h"
#include "coe/labels.h"
#include "coe/status.h"
#include "coe/tensor.h"

namespace coe {

struct EngineOptions {
  int threads = 0;  // pool size; 0 = the cores this process may use
  // Examples per task (one model call). Small: OpenCV DNN runs the zoo's conv nets
  // fastest at 8-16 examples a call and up to 1.7x slower at 256, and oneDNN is within
  // 5-10% of its best from 8 on (bench/model_batch); `coe run` of the zoo cascade on
  // 10,000 images took 1.36 s at 16, 2.36 s at 256 (on OpenCV).
  int chunk = 16;
  std::string cost_key;  // catalogue figure counted as cost ("" = first of macs, flops, usd, ...)
};

struct TierStats {
  int reached = 0;     // examples that entered the tier
  int exited = 0;      // examples it answered
  double seconds = 0;  // wall time of the tier
  // What the tier's members cost over the examples that reached it (the cascade's
  // cost unit), and the tokens of their calls (chat models).
  double cost = 0;
  int64_t tokens_in = 0, tokens_out = 0;
};

// A member call that failed on one example (Prediction::failed): there is no answer.
struct MemberFailure {
  int example = 0;    // index into the run's batch
  int member = 0;     // index into Cascade::members() (AllMembers() order)
  std::string error;  // the backend's message: the upstream's own status and text
  std::string kind;   // Prediction::failure_kind ("http_401", "timeout", ...)
  friend bool operator==(const MemberFailure&, const MemberFailure&) = default;
};

// One reached member's answer on one example (RunOptions::want_members).
struct MemberAnswer {
  int member = 0;       // index into Cascade::members() (AllMembers() order)
  std::string answer;   // its label or text answer; "" = abstained, or failed
  bool failed = false;  // the call failed (no answer; RunResult::failures says why)
  friend bool operator==(const MemberAnswer&, const MemberAnswer&) = default;
};

struct RunResult {
  // The labels of this run: the cascade's (Cascade::labels(), same indices) and then
  // every text answer a member with open labels gave (a chat model's).
  LabelSet labels;
  std::vector<int> answer;  // per example: index into `labels`, or kAbstain
  // The tier that answered, 0-based here; every user-facing output (the CLI's tables,
  // `coe run --out`, JSON reports, the server's `exit_tier`, metrics) counts from 1.
  std::vector<int> exit_tier;
  // Per example: the cost of every member of every reached tier, each the member's
  // measured cost when its backend reports one (a chat model's tokens) else its
  // cost_key figure.
  std::vector<double> cost;
  std::vector<TierVote> vote;     // the answering tier's tally
  std::vector<uint8_t> degraded;  // 1 when a failure forced a fallback answer
  // Every failed member call of every reached tier, sorted by (example, member).
  std::vector<MemberFailure> failures;
  // Per example, the answering tier's mean probability per label (labels().size()
  // values; members without probabilities count as one-hot); filled when asked.
  std::vector<std::vector<float>> probs;
  // Per example, when a member gives raw text (a chat model's completion): that of
  // the member whose answer was returned (the winning group's last-listed), and the
  // tokens of every call made for the example.
  std::vector<std::string> reply;
  std::vector<std::string> finish_reason;  // of that member's call, as its endpoint said
  // That member's tool calls and logprobs (Prediction::tool_calls, logprobs), "" = none.
  std::vector<std::string> tool_calls, logprobs;
  std::vector<int64_t> tokens_in, tokens_out;
  // Per example, when RunOptions::want_members: every member of every tier it reached,
  // tiers in turn, each tier's in its order (what the request log writes).
  std::vector<std::vector<MemberAnswer>> member_answers;
  std::vector<TierStats> tiers;
  // Per member (in AllMembers() order): predictions it made and seconds spent in them.
  std::vector<uint64_t> member_examples;
  std::vector<double> member_seconds;
  double seconds = 0;
};

struct RunOptions {
  bool want_probs = false;
  bool want_members = false;  // fill RunResult::member_answers
  // When set (true) while the run goes on, the run is cancelled: no tier starts after
  // it is seen, backends see it in InputView::cancelled (the HTTP ones abort their
  // calls in flight), and Run returns Unavailable. The server sets it when a client
  // goes away or a shutdown's grace period ends. Null: never. Must outlive the Run.
  const std::atomic<bool>* cancelled = nullptr;
  // Runs at most the first max_tiers tiers (0 or more than the cascade has: all); the
  // last of them decides as the cascade's last tier does: its plurality answers, and
  // when it has none and a member failed, the degraded fallback. A request's cost
  // ceiling sets it (coe serve: the deepest tier it can pay for, by EstimateTierCosts).
  int max_tiers = 0;
  // Starts at this tier (0-based; 0: the first): every example is given to tier
  // first_tier, the earlier tiers are not run nor paid. A shadow run of the last tier
  // (coe serve --shadow) sets it to the last tier's index. Must be below the tiers the
  // run goes through (else Run is InvalidArgument).
  int first_tier = 0;
  // Streaming (a chat request's `stream: true`): when the run is one example and it
  // reaches the last tier, and that tier has a single member (no vote to wait for),
  // that member's call gets this sink (InputView::tokens) and a backend that can
  // stream passes its completion to it as it arrives. Nothing else about the run
  // changes: answers, exit tiers, votes, costs and failures are those of the run
  // without it. Null: no streaming. Must outlive the Run.
  TokenSink* tokens = nullptr;
};

class Cascade {
 public:
  // Builds every member's backend from the catalogue. Errors: the spec's own
  // (ValidateCascade), NotFound for a member missing from the catalogue, the
  // backends' (CreateBackend), InvalidArgument when members disagree on input shape
  // or a member lacks the cost figure.
  static StatusOr<std::unique_ptr<Cascade>> Create(const CascadeSpec& spec, const Catalogue& catalogue,
                                                   const EngineOptions& options);
  // The same with given backends (members by name) and per-member costs: for tests
  // and fault injection. Every member of `spec` must have a backend.
  static StatusOr<std::unique_ptr<Cascade>> FromBackends(const CascadeSpec& spec,
                                                         std::vector<std::unique_ptr<Backend>> backends,
                                                         std::vector<double> member_costs,
                                                         const EngineOptions& options);
  ~Cascade();
  Cascade(const Cascade&) = delete;
  Cascade& operator=(const Cascade&) = delete;

  // Runs `batch` through the cascade. Error only for misuse: a batch whose example
  // shape differs from input_shape() (InvalidArgument naming both shapes), and for a
  // run cancelled by options.cancelled (Unavailable).
  StatusOr<RunResult> Run(const InputBatch& batch, const RunOptions& options = {}) const;
  // The same on a view of a batch's examples, without copying them (coe run's batches).
  StatusOr<RunResult> Run(const InputView& examples, const RunOptions& options = {}) const;

  const CascadeSpec& spec() const;
  const LabelSet& labels() const;                   // union of the members' labels
  const std::vector<int64_t>& input_shape() const;  // empty = any
  const std::string& cost_name() const;
  // Before running: what each tier's members are expected to cost on example `i` of
  // `examples`, one sum per tier, in the cost unit: each member's
  // Backend::EstimateCost, or its cost figure when that is NaN. No call is made.
  std::vector<double> EstimateTierCosts(const InputView& examples, int64_t i) const;
  // Members in AllMembers() order, for stats.
  std::vector<Backend*> members() const;

  struct Impl;  // the engine's state (src/engine/cascade.cc); opaque

 private:
  explicit Cascade(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace coe

#endif  // COE_CASCADE_H_
