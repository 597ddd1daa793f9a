#include "coe/evaluate.h"

#include <algorithm>
#include <cmath>

namespace coe {

StatusOr<std::vector<std::vector<int>>> ResolveMembers(const CascadeSpec& spec, const Recordings& rec) {
  std::vector<std::vector<int>> out;
  for (size_t t = 0; t < spec.tiers.size(); ++t) {
    const TierSpec& tier = spec.tiers[t];
    std::vector<int> idx;
    for (const std::string& name : tier.members) {
      int m = rec.ModelIndex(name);
      if (m < 0)
        return NotFoundError("cascade member '" + name + "' (tier " + std::to_string(t + 1) + ") has no column in " +
                             rec.source);
      if (tier.rule.min_score && t + 1 < spec.tiers.size() && !rec.models[m].has_scores())
        return FailedPreconditionError("tier " + std::to_string(t + 1) + " has a score rule but " + rec.source +
                                       " has no '" + name + "|score' or '" + name + "|p:<label>' columns");
      idx.push_back(m);
    }
    out.push_back(std::move(idx));
  }
  return out;
}

namespace {

// Replays every example; `sink(i, outcome)` sees each one.
template <typename Sink>
StatusOr<EvalResult> Replay(const CascadeSpec& spec, const Recordings& rec, const CostTable& costs, Sink sink) {
  COE_RETURN_IF_ERROR(ValidateCascade(spec, "cascade"));
  COE_ASSIGN_OR_RETURN(auto tiers, ResolveMembers(spec, rec));
  for (const auto& tier : tiers)
    for (int m : tier)
      if (std::isnan(costs.mean[m]))
        return FailedPreconditionError("model '" + rec.models[m].name +
                                       "' has no cost figure here (it is outside --only, or the "
                                       "cluster file has no throughput for it)");
  const int n = rec.num_examples();
  const int num_tiers = static_cast<int>(tiers.size());
  EvalResult r;
  r.examples = n;
  r.exits.assign(num_tiers, 0);
  const bool has_latency = !costs.latency_ms.empty();
  const bool has_homog = !costs.homogeneous.empty();
  std::vector<double> latencies;
  double sum_cost = 0, sum_lat = 0, sum_bytes = 0, sum_homog = 0, sum_transfer = 0;
  std::vector<MemberOutput> outs;
  std::vector<double> member_cost, member_lat;
  // Each tier compares answers by its `match` (free text needs the label names).
  static const LabelSet kNoLabels;
  std::vector<AnswerMatcher> matchers;
  for (const TierSpec& tier : spec.tiers) {
    if (!tier.match.exact() && !rec.labels)
      return FailedPreconditionError("a tier's match = \"" + tier.match.ToString() + "\" compares answers as text, " +
                                     rec.source + " has no label names");
    matchers.emplace_back(tier.match, rec.labels ? *rec.labels : kNoLabels);
  }
  for (int i = 0; i < n; ++i) {
    ExampleOutcome o;
    bool sent = false;     // input already sent over the link
    bool charged = false;  // its transfer to the cloud already paid
    for (int t = 0; t < num_tiers; ++t) {
      if (!charged) {
        const double transfer = TierTransfer(costs, tiers[t]);
        if (transfer > 0) {
          o.cost += transfer;
          if (has_homog) sum_homog += transfer;
          o.transfer_cost = transfer;
          charged = true;
        }
      }
      outs.clear();
      double tier_lat = 0;
      double first_send_ms = 0;
      if (costs.link && !sent) {
        for (int m : tiers[t]) {
          if (!costs.cloud[m]) continue;
          o.bytes_sent += costs.input_bytes[m];
          first_send_ms = costs.input_bytes[m] * 8.0 / costs.link->bandwidth_bits_per_s * 1000.0;
          sent = true;
          break;
        }
      }
      member_cost.clear();
      member_lat.clear();
      for (int m : tiers[t]) {
        outs.push_back(rec.Output(m, i));
        member_cost.push_back(costs.Cost(m, i));
        if (has_homog) sum_homog += costs.homogeneous[m];
        if (has_latency) {
          double lat = costs.latency_ms[m];
          if (costs.link && costs.cloud[m]) lat += costs.link->rtt_ms + first_send_ms;
          member_lat.push_back(lat);
        }
      }
      o.cost += TierCost(costs, member_cost);
      if (has_latency) tier_lat = TierTime(member_lat, costs.latency_mode, costs.cores);
      o.latency_ms += tier_lat;
      const TierVote v = TallyVotes(outs, &matchers[t]);
      const bool last = t + 1 == num_tiers;
      if (last || spec.tiers[t].rule.Exits(v)) {
        o.answer = v.plurality;
        o.exit_tier = t;
        o.vote = v;
        break;
      }
    }
    r.exits[o.exit_tier]++;
    if (o.answer == kAbstain) r.unanswered++;
    if (rec.has_truth() && rec.truth[i] != kAbstain) {
      o.labeled = true;
      o.correct = matchers[o.exit_tier].Same(o.answer, rec.truth[i]);
      r.labeled++;
      r.correct += o.correct;
    }
    sum_cost += o.cost;
    sum_lat += o.latency_ms;
    sum_bytes += o.bytes_sent;
    sum_transfer += o.transfer_cost;
    if (has_latency) latencies.push_back(o.latency_ms);
    sink(i, o);
  }
  r.accuracy = r.labeled ? static_cast<double>(r.correct) / r.labeled : 0.0;
  r.mean_cost = n ? sum_cost / n : 0.0;
  if (has_latency && n) {
    r.mean_latency_ms = sum_lat / n;
    const size_t k = std::min<size_t>(n - 1, static_cast<size_t>(std::ceil(0.99 * n)) - 1);
    std::nth_element(latencies.begin(), latencies.begin() + k, latencies.end());  // no full sort for one rank
    r.p99_latency_ms = latencies[k];
  }
  if (costs.link && n) r.mean_bytes_sent = sum_bytes / n;
  if (has_homog && n) r.mean_cost_homogeneous = sum_homog / n;
  if (costs.transfer_usd_per_byte > 0 && n) r.mean_transfer_cost = sum_transfer / n;
  return r;
}

}  // namespace

StatusOr<EvalResult> EvaluateCascade(const CascadeSpec& spec, const Recordings& rec, const CostTable& costs,
                                     std::vector<ExampleOutcome>* outcomes) {
  if (!outcomes) return Replay(spec, rec, costs, [](int, const ExampleOutcome&) {});
  outcomes->assign(rec.num_examples(), ExampleOutcome{});
  return Replay(spec, rec, costs, [&](int i, const ExampleOutcome& o) { (*outcomes)[i] = o; });
}

StatusOr<EvalResult> EvaluateCascadeAnswers(const CascadeSpec& spec, const Recordings& rec, const CostTable& costs,
                                            std::vector<int>* answers) {
  answers->assign(rec.num_examples(), kAbstain);
  return Replay(spec, rec, costs, [&](int i, const ExampleOutcome& o) { (*answers)[i] = o.answer; });
}

StatusOr<EvalResult> EvaluateCascadeCorrect(const CascadeSpec& spec, const Recordings& rec, const CostTable& costs,
                                            std::vector<uint8_t>* correct) {
  correct->assign(rec.num_examples(), 0);
  return Replay(spec, rec, costs, [&](int i, const ExampleOutcome& o) { (*correct)[i] = o.correct; });
}

StatusOr<std::vector<std::optional<double>>> AgreementWithLastTier(const CascadeSpec& spec, const Recordings& rec,
                                                                   const CostTable& costs) {
  // The last tier's answers (4 bytes an example), then one replay of the cascade that
  // counts as it goes: no outcome is kept (80 bytes an example; recordings may have
  // millions of rows, and `coe plan` peaks here otherwise).
  CascadeSpec last;
  last.tiers.push_back(spec.tiers.back());
  std::vector<int> last_answers;
  COE_RETURN_IF_ERROR(EvaluateCascadeAnswers(last, rec, costs, &last_answers).status());
  static const LabelSet kNoLabels;
  const size_t tiers = spec.tiers.size();
  std::vector<int> exits(tiers, 0), same(tiers, 0);
  std::vector<AnswerMatcher> matchers;
  for (const TierSpec& tier : spec.tiers) matchers.emplace_back(tier.match, rec.labels ? *rec.labels : kNoLabels);
  COE_RETURN_IF_ERROR(Replay(spec, rec, costs, [&](int i, const ExampleOutcome& o) {
                        if (static_cast<size_t>(o.exit_tier) + 1 == tiers) return;
                        ++exits[o.exit_tier];
                        // An abstaining last tier matches nothing (the exit answer is never an
                        // abstention).
                        same[o.exit_tier] +=
                            last_answers[i] != kAbstain && matchers[o.exit_tier].Same(o.answer, last_answers[i]);
                      }).status());
  std::vector<std::optional<double>> out(tiers);
  for (size_t t = 0; t + 1 < tiers; ++t)
    if (exits[t] > 0) out[t] = static_cast<double>(same[t]) / exits[t];
  return out;
}

}  // namespace coe
