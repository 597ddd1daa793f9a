#include "coe/record.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

#include "backends/registry.h"
#include "base/tokens.h"

namespace coe {

StatusOr<RunResult> RunInBatches(const Cascade& cascade, const InputBatch& inputs, int batch, const RunOptions& options,
                                 const BatchProgress& progress) {
  const int64_t n = inputs.size();
  const int64_t most = std::max(1, batch);
  if (n == 0) {
    COE_ASSIGN_OR_RETURN(RunResult r, cascade.Run(inputs, options));
    if (progress) progress(n, n);
    return r;
  }
  RunResult total;
  int64_t size = std::min(most, kFirstBatch);
  for (int64_t b = 0; b < n;) {
    const int64_t e = std::min(n, b + size);
    const auto t0 = std::chrono::steady_clock::now();
    COE_ASSIGN_OR_RETURN(RunResult r, cascade.Run(inputs.View(b, e), options));
    // Each call pays a tier's tail (one thread idle while another ends the tier's last
    // chunk) and the calls' joins: fast calls grow, slow ones (remote models) keep the
    // progress coming.
    if (std::chrono::steady_clock::now() - t0 < kGrowBelow) size = std::min(most, size * 2);
    if (b == 0) {
      total = std::move(r);
    } else {
      auto append = [](auto& dst, auto& src) { dst.insert(dst.end(), src.begin(), src.end()); };
      // Each run has its own labels past the cascade's (text answers): by name here.
      auto relabel = [&](int l) { return l == kAbstain ? kAbstain : total.labels.Intern(r.labels.name(l)); };
      for (int& a : r.answer) a = relabel(a);
      for (TierVote& v : r.vote) v.plurality = relabel(v.plurality);
      append(total.answer, r.answer);
      append(total.reply, r.reply);
      append(total.finish_reason, r.finish_reason);
      append(total.tokens_in, r.tokens_in);
      append(total.tokens_out, r.tokens_out);
      append(total.exit_tier, r.exit_tier);
      append(total.cost, r.cost);
      append(total.vote, r.vote);
      append(total.degraded, r.degraded);
      append(total.probs, r.probs);
      append(total.member_answers, r.member_answers);
      for (MemberFailure& f : r.failures) {
        f.example += static_cast<int>(b);
        total.failures.push_back(std::move(f));
      }
      for (size_t t = 0; t < r.tiers.size(); ++t) {
        total.tiers[t].reached += r.tiers[t].reached;
        total.tiers[t].exited += r.tiers[t].exited;
        total.tiers[t].seconds += r.tiers[t].seconds;
        total.tiers[t].cost += r.tiers[t].cost;
        total.tiers[t].tokens_in = AddTokens(total.tiers[t].tokens_in, r.tiers[t].tokens_in);
        total.tiers[t].tokens_out = AddTokens(total.tiers[t].tokens_out, r.tiers[t].tokens_out);
      }
      for (size_t m = 0; m < r.member_seconds.size(); ++m) {
        total.member_seconds[m] += r.member_seconds[m];
        total.member_examples[m] += r.member_examples[m];
      }
      total.seconds += r.seconds;
    }
    if (progress) progress(e, n);
    b = e;
  }
  return total;
}

StatusOr<RecordResult> RecordModels(const Catalogue& catalogue, const InputBatch& inputs,
                                    const RecordOptions& options) {
  for (const std::string& name : options.only)
    if (!catalogue.Find(name)) return InvalidArgumentError("--only: no model '" + name + "' in " + catalogue.source);
  std::vector<const ModelSpec*> specs;
  for (const ModelSpec& m : catalogue.models)
    if (options.only.empty() || std::find(options.only.begin(), options.only.end(), m.name) != options.only.end())
      specs.push_back(&m);
  if (specs.empty()) return InvalidArgumentError("no models to record in " + catalogue.source);
  RecordResult out;
  Recordings& rec = out.recordings;
  rec.source = "recorded";
  rec.ids = inputs.ids;
  if (rec.ids.empty())
    for (int64_t i = 0; i < inputs.size(); ++i) rec.ids.push_back(std::to_string(i));
  if (!inputs.truth.empty())
    for (const std::string& t : inputs.truth) rec.truth.push_back(out.labels.Intern(t));
  const int n = static_cast<int>(inputs.size());
  for (const ModelSpec* spec : specs) {
    CascadeSpec one;
    one.tiers.push_back(TierSpec{{spec->name}, {}});
    EngineOptions eo;
    eo.threads = options.threads;
    COE_ASSIGN_OR_RETURN(auto cascade, Cascade::Create(one, catalogue, eo));
    BatchProgress progress;
    if (options.progress) progress = [&](int64_t done, int64_t total) { options.progress(spec->name, done, total); };
    const auto t0 = std::chrono::steady_clock::now();
    COE_ASSIGN_OR_RETURN(RunResult r,
                         RunInBatches(*cascade, inputs, options.batch, RunOptions{.want_probs = true}, progress));
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    out.us_per_example[spec->name] = 1e6 * wall / std::max(1, n);
    // One example a call, as one request alone sees it: the median of up to 100 calls
    // on the first examples (at most ~0.3 s a model). Models that compute here only: a
    // remote or chat model's time is the network's, a recorded one's a table lookup.
    const BackendInfo& info = cascade->members()[0]->info();
    if (n > 0 && !info.waits && BackendTraitsOf(*spec).computes) {
      std::vector<double> ms;
      const auto m0 = std::chrono::steady_clock::now();
      for (int i = 0;
           i < 100 && (ms.size() < 5 || std::chrono::steady_clock::now() - m0 < std::chrono::milliseconds(300)); ++i) {
        const InputBatch one = inputs.Gather(std::vector<int>{i % n});
        const auto c0 = std::chrono::steady_clock::now();
        COE_ASSIGN_OR_RETURN(RunResult single, cascade->Run(one));
        ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - c0).count());
      }
      std::nth_element(ms.begin(), ms.begin() + ms.size() / 2, ms.end());
      out.ms_per_request[spec->name] = ms[ms.size() / 2];
    }
    ModelRecord mr;
    mr.name = spec->name;
    // Failed calls (no answer): their label stays empty and the error says why.
    mr.error.assign(n, "");
    for (const MemberFailure& f : r.failures) mr.error[f.example] = f.error;
    if (!r.reply.empty()) {
      // A chat model: text answers, the measured cost of each call, and a confidence
      // when the endpoint gave one (log-probabilities).
      // (The |score column is kept even when empty, so that recordings written in
      // parts have the same columns; a reader treats an empty column as none.)
      for (int i = 0; i < n; ++i) {
        mr.label.push_back(r.answer[i] == kAbstain ? kAbstain : out.labels.Intern(r.labels.name(r.answer[i])));
        mr.cost.push_back(r.cost[i]);
        mr.score.push_back(static_cast<float>(r.vote[i].mean_score));
      }
      rec.models.push_back(std::move(mr));
      continue;
    }
    const LabelSet& own = cascade->labels();
    std::vector<int> to_rec;
    for (int l = 0; l < own.size(); ++l) to_rec.push_back(out.labels.Intern(own.name(l)));
    mr.num_probs = out.labels.size();
    mr.probs.assign(static_cast<size_t>(n) * mr.num_probs, 0.0f);
    mr.score.assign(n, std::numeric_limits<float>::quiet_NaN());
    for (int i = 0; i < n; ++i) {
      mr.label.push_back(r.answer[i] == kAbstain ? kAbstain : to_rec[r.answer[i]]);
      if (r.answer[i] == kAbstain) continue;
      for (int l = 0; l < own.size(); ++l) mr.probs[static_cast<size_t>(i) * mr.num_probs + to_rec[l]] = r.probs[i][l];
      mr.score[i] = r.probs[i][r.answer[i]];
    }
    rec.models.push_back(std::move(mr));
  }
  // Models recorded earlier may have fewer probability columns than labels known now.
  for (ModelRecord& m : rec.models) {
    const int width = out.labels.size();
    if (m.probs.empty() || m.num_probs == width) continue;
    std::vector<float> wide(static_cast<size_t>(n) * width, 0.0f);
    for (int i = 0; i < n; ++i)
      for (int l = 0; l < m.num_probs; ++l)
        wide[static_cast<size_t>(i) * width + l] = m.probs[static_cast<size_t>(i) * m.num_probs + l];
    m.probs = std::move(wide);
    m.num_probs = width;
  }
  return out;
}

StatusOr<std::vector<Throughput>> MeasureThroughput(const Catalogue& catalogue, const InputBatch& inputs,
                                                    const std::vector<int>& batches, const RecordOptions& options) {
  const int64_t n = inputs.size();
  if (n == 0) return InvalidArgumentError("throughput: no inputs to measure on");
  for (int b : batches)
    if (b < 1) return InvalidArgumentError("throughput: batch " + std::to_string(b) + " (expected >= 1)");
  std::vector<Throughput> out;
  for (const ModelSpec& spec : catalogue.models) {
    if (!options.only.empty() && std::find(options.only.begin(), options.only.end(), spec.name) == options.only.end())
      continue;
    if (!BackendTraitsOf(spec).computes) continue;
    CascadeSpec one;
    one.tiers.push_back(TierSpec{{spec.name}, {}});
    EngineOptions eo;
    eo.threads = options.threads;
    COE_ASSIGN_OR_RETURN(auto cascade, Cascade::Create(one, catalogue, eo));
    if (cascade->members()[0]->info().waits) continue;
    Throughput t{spec.name, {}};
    for (int b : batches) {
      std::vector<int> rows(static_cast<size_t>(b));
      for (int i = 0; i < b; ++i) rows[i] = static_cast<int>(i % n);
      const InputBatch batch = inputs.Gather(rows);
      COE_RETURN_IF_ERROR(cascade->Run(batch).status());  // warm-up: buffers, plans, caches
      std::vector<double> seconds;
      const auto m0 = std::chrono::steady_clock::now();
      while (seconds.size() < 3 || std::chrono::steady_clock::now() - m0 < std::chrono::milliseconds(250)) {
        const auto c0 = std::chrono::steady_clock::now();
        COE_RETURN_IF_ERROR(cascade->Run(batch).status());
        seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - c0).count());
      }
      std::nth_element(seconds.begin(), seconds.begin() + seconds.size() / 2, seconds.end());
      t.points.emplace_back(b, b / std::max(1e-9, seconds[seconds.size() / 2]));
      if (options.progress) options.progress(spec.name + " throughput", b, batches.back());
    }
    out.push_back(std::move(t));
  }
  return out;
}

Catalogue MeasuredCatalogue(const Catalogue& catalogue, const RecordResult& recorded) {
  Catalogue out;
  out.source = "measured";
  for (const ModelRecord& m : recorded.recordings.models) {
    const ModelSpec* spec = catalogue.Find(m.name);
    ModelSpec s;
    s.name = m.name;
    if (spec) {
      s.costs = spec->costs;
      s.site = spec->site;
      s.input_bytes = spec->input_bytes;
      s.usd_per_mtok_in = spec->usd_per_mtok_in;  // prices say the recorded costs are dollars
      s.usd_per_mtok_out = spec->usd_per_mtok_out;
    }
    if (auto it = recorded.us_per_example.find(m.name); it != recorded.us_per_example.end())
      s.costs["latency_us"] = it->second;
    if (auto it = recorded.ms_per_request.find(m.name); it != recorded.ms_per_request.end())
      s.costs["latency_ms"] = it->second;
    out.models.push_back(std::move(s));
  }
  return out;
}

}  // namespace coe
