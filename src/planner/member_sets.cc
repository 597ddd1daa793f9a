// The member sets of a search and their rule options (planner/member_sets.h): tallies
// through TallyVotes(), exit masks through DeferralRule::Exits() as a vote count and the
// score kernel, score thresholds at quantiles. Uses planner/problem.h and masks.
#include "planner/member_sets.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <functional>
#include <numeric>

namespace coe::search {
namespace {

// One member set's tally on every example, in 9 bytes an example instead of a
// TierVote's 32 (recordings may have millions of rows). Of(count, score) rebuilds what
// DeferralRule::Exits reads exactly as TallyVotes made it; the plurality label itself
// is not kept (only whether there is one), since the correct mask is built at once.
struct Tallies {
  std::vector<uint8_t> votes;  // votes for the plurality; 0 when every member abstained
  std::vector<double> mean_score;
  int members = 0;
  std::vector<int> scratch;    // example indices for QuantileGrid
  std::vector<uint64_t> exit;  // an option's exit mask being built
  void Resize(int n, int m) {
    votes.resize(n);
    mean_score.resize(n);
    members = m;
  }
  void Set(int i, const TierVote& v) {
    votes[i] = static_cast<uint8_t>(v.plurality == kAbstain ? 0 : v.votes);
    mean_score[i] = v.mean_score;
  }
  // The fewest votes from which `rule`'s vote test passes (members + 1: never).
  // DeferralRule::Exits decides it, from the count alone: agreement grows with the
  // votes, and no votes never exits.
  int MinVotes(const DeferralRule& rule) const {
    const DeferralRule vote_part{rule.min_agreement, std::nullopt};
    int min_votes = members + 1;
    for (int v = members; v >= 0 && vote_part.Exits(Of(v, 0.0)); --v) min_votes = v;
    return min_votes;
  }
  TierVote Of(int count, double score) const {
    TierVote v;
    v.votes = count;
    v.plurality = v.votes > 0 ? 0 : kAbstain;  // a stand-in: Exits only asks whether there is one
    v.members = members;
    v.agreement = static_cast<double>(v.votes) / members;  // as TallyVotes computes it
    v.mean_score = score;
    return v;
  }
};

// The values at the j/(g+1) quantiles (j = 1..g) of values[idx[k]] (idx is reordered):
// each is the element a full sort would put at that index, found by nth_element on
// the part not yet ordered. Indices rather than a copy of the values: 4 bytes an
// example instead of 8 (recordings may have millions of rows).
std::vector<std::pair<double, double>> QuantileGrid(const std::vector<double>& values, std::vector<int>& idx, int g) {
  std::vector<std::pair<double, double>> out;  // (value, quantile level)
  if (idx.empty() || g <= 0) return out;
  auto less = [&](int a, int b) { return values[a] < values[b]; };
  size_t done = 0;  // idx[0, done) holds the smallest `done` values
  for (int j = 1; j <= g; ++j) {
    size_t at = static_cast<size_t>(std::floor(static_cast<double>(j) / (g + 1) * idx.size()));
    at = std::min(at, idx.size() - 1);
    if (at >= done) {
      std::nth_element(idx.begin() + done, idx.begin() + at, idx.end(), less);
      done = at + 1;
    }
    double v = values[idx[at]];
    if (v <= 0) continue;  // a rule of "score >= 0" is no rule
    if (out.empty() || out.back().first != v) out.emplace_back(v, static_cast<double>(j) / (g + 1));
  }
  return out;
}

// One member set: its "plurality is correct" mask and its tier options, decided on
// every example through the engine's rule code.
MemberSet BuildMemberSet(const Problem& p, const Recordings& calib, const std::vector<int>& comb, unsigned rules,
                         int grid, Tallies& votes, std::vector<MemberOutput>& outs, AnswerMatcher& matcher) {
  const std::vector<int>& models = p.model;
  MemberSet s;
  s.pos = comb;
  for (int q : comb) s.mask |= uint64_t{1} << q;
  s.max_pos = comb.back();
  for (int q : comb) s.transfer = std::max(s.transfer, p.transfer[q]);
  std::vector<double> figures;
  if (p.combine == TierCombine::kTime) {
    for (int q : comb) figures.push_back(p.fixed[q]);
    s.unit = TierTime(figures, p.latency_mode, p.cores);
  }
  if (p.has_budget) {
    figures.clear();
    for (int q : comb) figures.push_back(p.fixed2[q]);
    s.unit2 = p.budget->combine == TierCombine::kTime ? TierTime(figures, p.budget->latency_mode, p.budget->cores)
                                                      : std::accumulate(figures.begin(), figures.end(), 0.0);
  }
  s.correct.assign(p.words, 0);
  bool scores = true;
  for (int q : comb) scores &= calib.models[models[q]].has_scores();
  votes.Resize(p.n, static_cast<int>(comb.size()));
  for (int e = 0; e < static_cast<int>(p.position.size()); ++e) {
    const int i = p.position[e];
    if (i < 0) continue;
    outs.clear();
    for (int q : comb) outs.push_back(calib.Output(models[q], e));
    const TierVote v = TallyVotes(outs, &matcher);
    votes.Set(i, v);
    int t = calib.truth[e];
    if (t != kAbstain && matcher.Same(v.plurality, t)) SetBit(s.correct, i);
  }
  std::vector<Word>& exit = votes.exit;  // built here, copied only when new
  const MaskKernels& k = BestMaskKernels();
  auto add_option = [&](DeferralRule rule, double level = std::numeric_limits<double>::quiet_NaN()) {
    // DeferralRule::Exits reads a tally's vote count and mean score only: its vote test
    // as a count (MinVotes); its score test (mean_score >= min_score, NaN failing) done
    // by the kernel, 64 examples to a word.
    exit.assign(p.words, 0);
    k.exit_bits(votes.votes.data(), votes.mean_score.data(), p.n, votes.MinVotes(rule), rule.min_score.has_value(),
                rule.min_score.value_or(0.0), exit.data());
    for (const Option& prev : s.options)
      if (prev.exit == exit) return;  // same decisions: the same cascades
    s.options.push_back(Option{rule, level, exit});
  };
  const int n = static_cast<int>(comb.size());
  std::vector<double> thetas;
  for (int k = n / 2 + 1; k <= n; ++k) thetas.push_back(static_cast<double>(k) / n);
  if ((rules & kRuleVote) && n >= 2)
    for (double th : thetas) add_option(DeferralRule{th, std::nullopt});
  std::vector<int>& idx = votes.scratch;
  if ((rules & kRuleScore) && scores) {
    idx.clear();
    for (int i = 0; i < p.n; ++i)
      if (!std::isnan(votes.mean_score[i])) idx.push_back(i);
    for (auto [tau, level] : QuantileGrid(votes.mean_score, idx, grid))
      add_option(DeferralRule{std::nullopt, tau}, level);
  }
  if ((rules & kRuleVoteAndScore) && scores && n >= 2) {
    for (double th : thetas) {
      const int min_votes = votes.MinVotes(DeferralRule{th, std::nullopt});
      idx.clear();
      for (int i = 0; i < p.n; ++i)
        if (votes.votes[i] >= min_votes && !std::isnan(votes.mean_score[i])) idx.push_back(i);
      for (auto [tau, level] : QuantileGrid(votes.mean_score, idx, grid)) add_option(DeferralRule{th, tau}, level);
    }
  }
  return s;
}

}  // namespace

// Every member set of 1 to max_members positions, built on the pool.
void BuildMemberSets(Problem& p, const Recordings& calib, int max_members, unsigned rules, int grid, ThreadPool& pool) {
  max_members = std::min(max_members, p.num_models);
  std::vector<std::vector<int>> combos;
  std::vector<int> comb;
  std::function<void(int)> gen = [&](int start) {
    if (!comb.empty()) combos.push_back(comb);
    if (static_cast<int>(comb.size()) == max_members) return;
    for (int q = start; q < p.num_models; ++q) {
      comb.push_back(q);
      gen(q + 1);
      comb.pop_back();
    }
  };
  gen(0);
  // Smaller sets first: of cascades equal in accuracy and cost, the one found first is
  // kept, and with latency as the cost a member that runs beside a slower one is free;
  // listing smaller sets first keeps the cascade without it.
  std::stable_sort(combos.begin(), combos.end(), [](const auto& a, const auto& b) { return a.size() < b.size(); });
  p.sets.resize(combos.size());
  // One task a thread, each with its own scratch tallies, taking sets off a counter.
  std::atomic<size_t> next_combo{0};
  std::vector<std::function<void()>> tasks;
  for (int t = 0; t < pool.size(); ++t)
    tasks.push_back([&] {
      Tallies votes;
      std::vector<MemberOutput> outs;
      AnswerMatcher matcher(p.match, *p.labels);
      for (size_t c; (c = next_combo.fetch_add(1)) < combos.size();)
        p.sets[c] = BuildMemberSet(p, calib, combos[c], rules, grid, votes, outs, matcher);
    });
  pool.RunAll(std::move(tasks));
  p.after.assign(p.num_models + 1, {});
  for (int q = 0; q <= p.num_models; ++q)
    for (int si = 0; si < static_cast<int>(p.sets.size()); ++si)
      if (p.sets[si].max_pos >= q) p.after[q].push_back(Problem::SetRef{p.sets[si].mask, si});
}

}  // namespace coe::search
