#include "coe/cascade.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <mutex>
#include <numeric>
#include <system_error>
#include <thread>

#include "backends/registry.h"
#include "base/cores.h"
#include "base/thread_pool.h"
#include "base/tokens.h"

namespace coe {

namespace {

struct Member {
  std::unique_ptr<Backend> backend;
  double cost = 0;
  std::vector<int> to_global;  // backend label index -> Cascade label index
  bool identity = true;        // to_global is the identity on [0, labels)
};

}  // namespace

struct Cascade::Impl {
  CascadeSpec spec;
  LabelSet labels;
  std::vector<int64_t> input_shape;
  std::string cost_name;
  std::vector<Member> members;          // AllMembers() order
  std::vector<std::vector<int>> tiers;  // indices into members
  std::unique_ptr<ThreadPool> pool;
  std::unique_ptr<WaitingPool> waiting;  // for members that wait on other processes
  int chunk = 16;
};

Cascade::Cascade(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Cascade::~Cascade() = default;

const CascadeSpec& Cascade::spec() const { return impl_->spec; }
const LabelSet& Cascade::labels() const { return impl_->labels; }
const std::vector<int64_t>& Cascade::input_shape() const { return impl_->input_shape; }
const std::string& Cascade::cost_name() const { return impl_->cost_name; }
std::vector<double> Cascade::EstimateTierCosts(const InputView& examples, int64_t i) const {
  std::vector<double> out;
  for (const std::vector<int>& tier : impl_->tiers) {
    double sum = 0;
    for (int m : tier) {
      const Member& mem = impl_->members[m];
      const double e = mem.backend->EstimateCost(examples, i);
      sum += std::isnan(e) ? mem.cost : e;
    }
    out.push_back(sum);
  }
  return out;
}

std::vector<Backend*> Cascade::members() const {
  std::vector<Backend*> out;
  for (const Member& m : impl_->members) out.push_back(m.backend.get());
  return out;
}

StatusOr<std::unique_ptr<Cascade>> Cascade::Create(const CascadeSpec& spec, const Catalogue& catalogue,
                                                   const EngineOptions& options) {
  COE_RETURN_IF_ERROR(ValidateCascade(spec, "cascade"));
  std::vector<const ModelSpec*> specs;
  for (const std::string& name : spec.AllMembers()) {
    const ModelSpec* s = catalogue.Find(name);
    if (!s) return NotFoundError("cascade member '" + name + "' is not in the catalogue " + catalogue.source);
    specs.push_back(s);
  }
  std::string key = options.cost_key.empty() ? DefaultCostKey(specs) : options.cost_key;
  // Chat models measure their cost (tokens at their prices, in usd): they need no figure.
  auto measures_cost = [](const ModelSpec* s) { return BackendTraitsOf(*s).measures_cost; };
  if (key.empty() && std::all_of(specs.begin(), specs.end(), measures_cost)) key = "usd";
  std::vector<double> costs;
  for (const ModelSpec* s : specs) {
    const double* c = key.empty() ? nullptr : s->Cost(key);
    if (!key.empty() && !c && !(key == "usd" && measures_cost(s)))
      return InvalidArgumentError("model '" + s->name + "' has no '" + key + "' figure in " + catalogue.source);
    costs.push_back(c ? *c : 0.0);
  }
  const int threads = options.threads > 0 ? options.threads : AvailableCores();
  BackendOptions bo;
  bo.threads = threads;
  bo.messages = spec.input == ChatInput::kMessages;
  std::vector<std::unique_ptr<Backend>> backends;
  for (const ModelSpec* s : specs) {
    COE_ASSIGN_OR_RETURN(std::unique_ptr<Backend> b, CreateBackend(*s, bo));
    backends.push_back(std::move(b));
  }
  EngineOptions o = options;
  o.cost_key = key.empty() ? "none" : key;
  return FromBackends(spec, std::move(backends), std::move(costs), o);
}

StatusOr<std::unique_ptr<Cascade>> Cascade::FromBackends(const CascadeSpec& spec,
                                                         std::vector<std::unique_ptr<Backend>> backends,
                                                         std::vector<double> member_costs,
                                                         const EngineOptions& options) {
  COE_RETURN_IF_ERROR(ValidateCascade(spec, "cascade"));
  auto impl = std::make_unique<Impl>();
  impl->spec = spec;
  impl->cost_name = options.cost_key.empty() ? "cost" : options.cost_key;
  impl->chunk = std::max(1, options.chunk);
  const std::vector<std::string> names = spec.AllMembers();
  if (member_costs.size() != names.size()) return InvalidArgumentError("FromBackends: one cost per member expected");
  for (size_t k = 0; k < names.size(); ++k) {
    auto it = std::find_if(backends.begin(), backends.end(),
                           [&](const std::unique_ptr<Backend>& b) { return b && b->info().name == names[k]; });
    if (it == backends.end()) return NotFoundError("no backend for cascade member '" + names[k] + "'");
    Member m;
    m.backend = std::move(*it);
    m.cost = member_costs[k];
    const BackendInfo& info = m.backend->info();
    if (!info.input_shape.empty()) {
      if (impl->input_shape.empty()) {
        impl->input_shape = info.input_shape;
      } else if (impl->input_shape != info.input_shape) {
        return InvalidArgumentError("cascade members disagree on the input shape: '" + names[k] + "' takes " +
                                    ShapeString(info.input_shape) + ", an earlier member " +
                                    ShapeString(impl->input_shape));
      }
    }
    for (size_t l = 0; l < info.labels.size(); ++l) {
      int g = impl->labels.Intern(info.labels[l]);
      m.to_global.push_back(g);
      m.identity &= g == static_cast<int>(l);
    }
    impl->members.push_back(std::move(m));
  }
  int k = 0;
  for (const TierSpec& t : spec.tiers) {
    std::vector<int> idx;
    for (size_t j = 0; j < t.members.size(); ++j) idx.push_back(k++);
    impl->tiers.push_back(std::move(idx));
  }
  const int threads = options.threads > 0 ? options.threads : AvailableCores();
  impl->pool = std::make_unique<ThreadPool>(threads);
  impl->waiting = std::make_unique<WaitingPool>();
  return std::unique_ptr<Cascade>(new Cascade(std::move(impl)));
}

namespace {

using Clock = std::chrono::steady_clock;

bool Cancelled(const InputView& v) { return v.cancelled && v.cancelled->load(std::memory_order_relaxed); }

// The tiers a run goes through: all, or the first options.max_tiers.
size_t TiersToRun(const Cascade::Impl& im, const RunOptions& options) {
  return options.max_tiers > 0 ? std::min(im.tiers.size(), static_cast<size_t>(options.max_tiers)) : im.tiers.size();
}

// Every member of tier `t` on every example of `in`: the (member, chunk) pairs are
// tasks on the pool, enough of them to keep every thread busy even when few examples
// reach the tier (deep tiers get small batches), none larger than the chunk size.
// A member that waits on another process (BackendInfo::waits) runs its tasks on the
// waiting pool, a thread each (kept for reuse): a pool thread blocked on a network call would stall every
// other request's local members, and a tier's waiting members would run one after
// another instead of side by side.
// The tier's examples are `in` itself (tier 1) or its examples at `rows` (later tiers):
// then each task copies its own chunk's examples (in parallel, into a buffer that stays
// in cache, not one large copy on the calling thread first).
// preds[j][i] is member j's prediction for example i; a member's failure is an
// abstention. Adds each member's examples and seconds to *r.
std::vector<std::vector<Prediction>> RunTier(const Cascade::Impl& im, size_t t, const InputView& in,
                                             const std::vector<int>* rows, RunResult* r) {
  // Every example still active (rows are ascending): the examples are `in` itself, and
  // no task copies them (a chat request's record, megabytes, reaches tier 2 uncopied).
  if (rows && static_cast<int64_t>(rows->size()) == in.size()) rows = nullptr;
  const std::vector<int>& tier = im.tiers[t];
  const int m = static_cast<int>(rows ? rows->size() : in.size());
  std::vector<std::vector<Prediction>> preds(tier.size(), std::vector<Prediction>(m));
  std::vector<std::function<void()>> tasks, waiting;
  const int threads = im.pool->size();
  const int members = static_cast<int>(tier.size());
  const int num_chunks = std::max((m + im.chunk - 1) / im.chunk, (threads + members - 1) / members);
  const int chunk = std::max(1, (m + num_chunks - 1) / num_chunks);
  std::mutex mu;  // guards r->member_seconds, r->member_examples
  for (size_t j = 0; j < tier.size(); ++j) {
    const bool waits = im.members[tier[j]].backend->info().waits;
    for (int b = 0; b < m; b += chunk) {
      const int e = std::min(m, b + chunk);
      (waits ? waiting : tasks).push_back([&, j, b, e] {
        const Member& mem = im.members[tier[j]];
        std::vector<Prediction> got;
        InputBatch gathered;
        if (rows) gathered = in.Gather(std::span<const int>(rows->data() + b, e - b));
        InputView view = rows ? gathered.View() : in.Sub(b, e);
        view.cancelled = in.cancelled;
        view.tokens = in.tokens;  // set by Run for a streamed last tier only
        const auto t0 = Clock::now();
        // A cancelled run starts no more calls (its answers are not wanted). A backend's
        // exception (out of memory: no backend throws otherwise) fails its examples, on
        // a pool thread where it would end the process.
        Status s = UnavailableError("the run was cancelled");
        if (!Cancelled(in)) {
          try {
            s = mem.backend->Predict(view, &got);
          } catch (const std::exception& e) {
            s = UnavailableError(std::string("the member's call failed: ") + e.what());
          }
        }
        const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
        if (!s.ok() || static_cast<int>(got.size()) != e - b) {
          got.assign(e - b, Prediction::Failure(s.ok() ? "backend answered the wrong number of examples" : s.message(),
                                                s.ok() ? "runtime" : "input"));
        }
        std::move(got.begin(), got.end(), preds[j].begin() + b);  // each task its own slice
        std::lock_guard<std::mutex> lock(mu);
        r->member_seconds[tier[j]] += secs;
        r->member_examples[tier[j]] += e - b;
      });
    }
  }
  if (waiting.empty()) {
    im.pool->RunAll(std::move(tasks));
    return preds;
  }
  // Without pool tasks, this thread makes one of the waiting calls itself.
  std::function<void()> here;
  if (tasks.empty()) {
    here = std::move(waiting.back());
    waiting.pop_back();
  }
  im.waiting->Run(std::move(waiting), [&] {
    if (here)
      here();
    else
      im.pool->RunAll(std::move(tasks));
  });
  return preds;
}

// Decides tier `t` for each active example from its members' predictions, through
// TallyVotes and DeferralRule::Exits (coe/rules.h): pays the tier, records the answer
// of an example that exits (or reaches the last tier), remembers the plurality of one
// that defers (for a degraded fallback). Returns the examples that go on.
std::vector<int> DecideTier(const Cascade::Impl& im, size_t t, const std::vector<int>& active,
                            const std::vector<std::vector<Prediction>>& preds, const RunOptions& options,
                            std::vector<int>* fallback, RunResult* r) {
  const std::vector<int>& tier = im.tiers[t];
  const int num_labels = im.labels.size();             // probabilities cover the cascade's fixed labels
  const bool last = t + 1 == TiersToRun(im, options);  // a cost ceiling may stop before the cascade's last
  std::vector<int> next;
  std::vector<MemberOutput> outs;
  std::vector<std::vector<float>> remapped(tier.size());
  AnswerMatcher matcher(im.spec.tiers[t].match, r->labels);
  const bool texts = !r->reply.empty();
  for (size_t i = 0; i < active.size(); ++i) {
    const int ex = active[i];
    outs.clear();
    bool failed = false;
    for (size_t j = 0; j < tier.size(); ++j) {
      const Member& mem = im.members[tier[j]];
      const Prediction& p = preds[j][i];
      if (p.failed) {
        failed = true;
        r->failures.push_back(MemberFailure{ex, tier[j], p.error, p.failure_kind});
      }
      const double paid = std::isfinite(p.cost) ? p.cost : mem.cost;
      r->cost[ex] += paid;
      r->tiers[t].cost += paid;
      if (texts) {
        r->tokens_in[ex] = AddTokens(r->tokens_in[ex], p.tokens_in);  // saturating (base/tokens.h)
        r->tokens_out[ex] = AddTokens(r->tokens_out[ex], p.tokens_out);
        r->tiers[t].tokens_in = AddTokens(r->tiers[t].tokens_in, p.tokens_in);
        r->tiers[t].tokens_out = AddTokens(r->tiers[t].tokens_out, p.tokens_out);
      }
      MemberOutput o;
      if (mem.backend->info().open_labels)  // a text answer: a label of this run
        o.label = p.answer.empty() ? kAbstain : r->labels.Intern(p.answer);
      else
        o.label = p.label == kAbstain ? kAbstain : mem.to_global[p.label];
      o.score = p.score;
      if (!p.probs.empty()) {
        if (mem.identity) {
          o.probs = p.probs.data();
          o.num_probs = static_cast<int>(p.probs.size());
        } else {
          remapped[j].assign(num_labels, 0.0f);
          for (size_t l = 0; l < p.probs.size(); ++l) remapped[j][mem.to_global[l]] = p.probs[l];
          o.probs = remapped[j].data();
          o.num_probs = num_labels;
        }
      }
      outs.push_back(o);
      if (options.want_members)
        r->member_answers[ex].push_back(
            MemberAnswer{tier[j], o.label == kAbstain ? "" : r->labels.name(o.label), p.failed});
    }
    const TierVote v = TallyVotes(outs, &matcher);
    if (!last && !im.spec.tiers[t].rule.Exits(v)) {
      if (v.plurality != kAbstain) (*fallback)[ex] = v.plurality;
      next.push_back(ex);
      continue;
    }
    r->exit_tier[ex] = static_cast<int>(t);
    r->vote[ex] = v;
    r->answer[ex] = v.plurality;
    if (texts && v.plurality != kAbstain) {
      // The raw text of the member whose answer is returned (the last-listed of the
      // winning group, as TallyVotes picks it).
      for (size_t j = tier.size(); j-- > 0;)
        if (outs[j].label != kAbstain && matcher.Same(outs[j].label, v.plurality)) {
          r->reply[ex] = preds[j][i].text;
          r->finish_reason[ex] = preds[j][i].finish_reason;
          r->tool_calls[ex] = preds[j][i].tool_calls;
          r->logprobs[ex] = preds[j][i].logprobs;
          break;
        }
    }
    if (v.plurality == kAbstain && failed) {
      r->answer[ex] = (*fallback)[ex];
      r->degraded[ex] = 1;
    }
    if (options.want_probs) {
      std::vector<float>& pr = r->probs[ex];
      pr.assign(num_labels, 0.0f);
      for (const MemberOutput& o : outs) {
        if (o.probs) {
          for (int l = 0; l < o.num_probs; ++l) pr[l] += o.probs[l];
        } else if (o.label != kAbstain && o.label < num_labels) {
          pr[o.label] += 1.0f;
        }
      }
      for (float& x : pr) x /= static_cast<float>(outs.size());
    }
  }
  return next;
}

// Whether tier `t` of a run of `n` examples streams (RunOptions::tokens): the last
// tier the run goes through (a cost ceiling may stop before the cascade's), a single
// member, one example. Its member's answer is then the answer, so its text may go to
// the client before the call ends.
bool StreamsTier(const Cascade::Impl& im, size_t t, int n, const RunOptions& options) {
  return n == 1 && t + 1 == TiersToRun(im, options) && im.tiers[t].size() == 1;
}

}  // namespace

StatusOr<RunResult> Cascade::Run(const InputBatch& batch, const RunOptions& options) const {
  return Run(batch.View(), options);
}

StatusOr<RunResult> Cascade::Run(const InputView& batch, const RunOptions& options) const {
  const Impl& im = *impl_;
  const auto t_start = Clock::now();
  static const std::vector<int64_t> kNoShape;
  const std::vector<int64_t>& shape = batch.example_shape ? *batch.example_shape : kNoShape;
  if (!im.input_shape.empty() && shape != im.input_shape)
    return InvalidArgumentError("input examples have shape " + ShapeString(shape) + ", the cascade's models take " +
                                ShapeString(im.input_shape));
  const int n = static_cast<int>(batch.size());
  RunResult r;
  r.labels = im.labels;
  r.answer.assign(n, kAbstain);
  bool any_text = false;
  for (const Member& m : im.members) any_text |= m.backend->info().open_labels;
  if (any_text) {
    r.reply.assign(n, "");
    r.finish_reason.assign(n, "");
    r.tool_calls.assign(n, "");
    r.logprobs.assign(n, "");
    r.tokens_in.assign(n, 0);
    r.tokens_out.assign(n, 0);
  }
  r.exit_tier.assign(n, 0);
  r.cost.assign(n, 0.0);
  r.vote.assign(n, TierVote{});
  r.degraded.assign(n, 0);
  if (options.want_probs) r.probs.assign(n, {});
  if (options.want_members) r.member_answers.assign(n, {});
  r.tiers.assign(im.tiers.size(), TierStats{});
  r.member_examples.assign(im.members.size(), 0);
  r.member_seconds.assign(im.members.size(), 0.0);
  std::vector<int> fallback(n, kAbstain);  // deepest earlier plurality, for degraded answers
  std::vector<int> active(n);
  std::iota(active.begin(), active.end(), 0);
  InputView examples = batch;
  examples.cancelled = options.cancelled;
  auto cancelled = [&](size_t t) {
    return UnavailableError("the run was cancelled (its client went away or the server is stopping) at tier " +
                            std::to_string(t + 1));
  };
  const size_t first = static_cast<size_t>(std::max(0, options.first_tier));
  if (first >= TiersToRun(im, options))
    return InvalidArgumentError("first_tier " + std::to_string(options.first_tier) + " is not among the " +
                                std::to_string(TiersToRun(im, options)) + " tiers the run goes through");
  for (size_t t = first; t < TiersToRun(im, options) && !active.empty(); ++t) {
    if (Cancelled(examples)) return cancelled(t);
    const auto t_tier = Clock::now();
    // The first tier sees the batch itself; later tiers the examples that did not exit.
    InputView tier_in = examples;
    tier_in.tokens = StreamsTier(im, t, n, options) ? options.tokens : nullptr;
    const auto preds = RunTier(im, t, tier_in, t > first ? &active : nullptr, &r);
    // Predictions of a cancelled tier are not answers (aborted calls look like failures).
    if (Cancelled(examples)) return cancelled(t);
    std::vector<int> next = DecideTier(im, t, active, preds, options, &fallback, &r);
    r.tiers[t].reached = static_cast<int>(active.size());
    r.tiers[t].exited = static_cast<int>(active.size() - next.size());
    r.tiers[t].seconds = std::chrono::duration<double>(Clock::now() - t_tier).count();
    active = std::move(next);
  }
  // Tiers append their failures in turn: ordered by example, as the contract says.
  std::stable_sort(r.failures.begin(), r.failures.end(), [](const MemberFailure& a, const MemberFailure& b) {
    return a.example != b.example ? a.example < b.example : a.member < b.member;
  });
  r.seconds = std::chrono::duration<double>(Clock::now() - t_start).count();
  return r;
}

}  // namespace coe
