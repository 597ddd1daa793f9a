// Shadow verification in the server (coe/server.h): which answered examples get a
// shadow run of the last tier, the run itself on a shadow worker, its verdict in the
// generation's monitor, and GET /coe/plan-health and the coe_shadow_* series.
#include <cmath>
#include <string_view>

#include "server/server_impl.h"

namespace coe {

// Counted in shadow_pending from PickShadow until Shadow has posted its run (or the
// request ended without an answer): FlushShadow waits for both.
struct Server::Impl::ShadowPick {
  explicit ShadowPick(Impl* im) : im(im) {
    std::lock_guard<std::mutex> lock(im->shadow_mu);
    im->shadow_pending++;
  }
  ~ShadowPick() { Settle(); }
  ShadowPick(const ShadowPick&) = delete;
  ShadowPick& operator=(const ShadowPick&) = delete;
  void Settle() {
    if (settled.exchange(true)) return;
    std::lock_guard<std::mutex> lock(im->shadow_mu);
    if (--im->shadow_pending == 0) im->shadow_cv.notify_all();
  }
  Impl* const im;
  std::atomic<bool> settled{false};
  std::vector<int> rows;  // the chosen examples of the run
  InputBatch batch;       // their inputs
};

struct Server::Impl::ShadowJob {
  InputBatch batch;                  // the chosen examples
  std::vector<int> exit_tier;        // each one's, 0-based
  std::vector<std::string> answers;  // each one's exit answer
  std::vector<std::string> log_ids;  // each one's id in the request log (empty: no log)
};

namespace {

// Whether example i of `r` exited before the last tier by its tier's rule: not a
// degraded fallback, not a tier where a cost ceiling stopped the run.
bool ExitedByRule(const Cascade& c, const RunResult& r, size_t i) {
  const std::vector<TierSpec>& tiers = c.spec().tiers;
  const int t = r.exit_tier[i];
  return t + 1 < static_cast<int>(tiers.size()) && !r.degraded[i] && r.answer[i] != kAbstain &&
         tiers[t].rule.Exits(r.vote[i]);
}

// The bytes that choose example i when it has no id: its input as the members see it.
std::string_view ContentKey(const InputView& inputs, int64_t i) {
  if (!inputs.texts.empty()) return inputs.texts[i];
  const int64_t size = inputs.n > 0 ? static_cast<int64_t>(inputs.data.size()) / inputs.n : 0;
  return {reinterpret_cast<const char*>(inputs.data.data() + i * size), static_cast<size_t>(size) * sizeof(float)};
}

}  // namespace

std::vector<std::string> Server::Impl::ShadowKeys(const std::string& id, int64_t n) {
  if (id.empty()) return {};
  if (n == 1) return {id};
  std::vector<std::string> keys;
  for (int64_t k = 0; k < n; ++k) keys.push_back(id + "/" + std::to_string(k));
  return keys;
}

std::shared_ptr<Server::Impl::ShadowPick> Server::Impl::PickShadow(const Generation& gen, const ServedModel& m,
                                                                   const InputView& inputs,
                                                                   std::span<const std::string> keys) {
  if (!shadow_runner || !gen.shadow.contains(m.name)) return nullptr;
  std::vector<int> rows;
  for (int64_t i = 0; i < inputs.n; ++i) {
    const size_t k = static_cast<size_t>(i);
    const std::string_view key =
        k < keys.size() && !keys[k].empty() ? std::string_view(keys[k]) : ContentKey(inputs, i);
    if (ShadowChosen(key, options.shadow.share)) rows.push_back(static_cast<int>(i));
  }
  if (rows.empty()) return nullptr;
  auto pick = std::make_shared<ShadowPick>(this);
  pick->batch = inputs.Gather(rows);
  pick->rows = std::move(rows);
  return pick;
}

void Server::Impl::Shadow(const std::shared_ptr<const Generation>& gen, const ServedModel& m, ShadowPick& pick,
                          const RunResult& r, std::span<const std::string> log_ids) {
  struct Settled {  // however this ends: posted, skipped or nothing to run
    ShadowPick& pick;
    ~Settled() { pick.Settle(); }
  } settled{pick};
  ShadowMonitor* monitor = gen->shadow.at(m.name).get();
  auto job = std::make_shared<ShadowJob>();
  std::vector<int> exited;  // indices into pick.batch
  for (size_t j = 0; j < pick.rows.size(); ++j) {
    const size_t i = static_cast<size_t>(pick.rows[j]);
    if (i >= r.answer.size() || !ExitedByRule(*m.cascade, r, i)) continue;
    exited.push_back(static_cast<int>(j));
    job->exit_tier.push_back(r.exit_tier[i]);
    job->answers.push_back(r.labels.name(r.answer[i]));
    if (request_log && i < log_ids.size()) job->log_ids.push_back(log_ids[i]);
  }
  if (exited.empty()) return;
  job->batch = exited.size() == pick.rows.size() ? pick.batch : pick.batch.View().Gather(exited);
  const size_t n = exited.size();
  const bool posted = shadow_runner->Post(
      {.run = [this, gen, &m, job](const std::atomic<bool>& stop) { RunShadow(*gen, m, *job, stop); },
       .skip = [monitor, n] { monitor->Skipped(static_cast<int64_t>(n)); }});
  if (!posted) monitor->Skipped(static_cast<int64_t>(n));
}

void Server::Impl::RunShadow(const Generation& gen, const ServedModel& m, const ShadowJob& job,
                             const std::atomic<bool>& stop) {
  ShadowMonitor& monitor = *gen.shadow.at(m.name);
  const std::vector<TierSpec>& tiers = m.cascade->spec().tiers;
  RunOptions ro;
  ro.first_tier = static_cast<int>(tiers.size()) - 1;
  ro.cancelled = &stop;
  const bool logged = request_log && job.log_ids.size() == job.answers.size();
  ro.want_members = logged;
  const auto t0 = Clock::now();
  const StatusOr<RunResult> r = m.cascade->Run(job.batch, ro);
  const size_t n = job.answers.size();
  if (!r.ok()) return monitor.Skipped(static_cast<int64_t>(n));
  std::vector<uint8_t> failed(n, 0);
  for (const MemberFailure& f : r->failures) failed[f.example] = 1;
  std::vector<std::string> fields(n);  // the log lines' "shadow" fields
  for (size_t i = 0; i < n; ++i) {
    nlohmann::json field = {
        {"answer", nullptr}, {"exit_tier", job.exit_tier[i] + 1}, {"exit_answer", job.answers[i]}, {"agreed", nullptr}};
    if (failed[i] || r->degraded[i]) {  // no verdict from a last tier that could not answer
      monitor.Skipped(1);
    } else {
      // As `coe plan` computed calibrated_agreement: by the exiting tier's match, and a
      // last tier that abstains does not agree.
      const std::string answer = r->answer[i] == kAbstain ? "" : r->labels.name(r->answer[i]);
      const bool agreed = r->answer[i] != kAbstain && tiers[job.exit_tier[i]].match.Same(job.answers[i], answer);
      const std::string line = monitor.Add(m.name, job.exit_tier[i] + 1, agreed, r->cost[i]);
      if (!line.empty()) Log(line);
      field["answer"] = answer;
      field["agreed"] = agreed;
    }
    fields[i] = field.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  if (logged)
    LogRun(m, "shadow", job.log_ids, job.batch, *r,
           std::chrono::duration<double, std::milli>(Clock::now() - t0).count(), fields);
}

std::string Server::Impl::ShadowText(const Generation& gen) const {
  if (!shadow_runner) return "";
  std::map<std::string, nlohmann::json> health;
  for (const auto& [name, monitor] : gen.shadow) health[name] = monitor->Health();
  return ShadowMetricsText(health);
}

std::string Server::Impl::PlanHealth() const {
  const std::shared_ptr<const Generation> gen = Current();
  nlohmann::json models = nlohmann::json::object();
  for (const auto& [name, monitor] : gen->shadow) models[name] = monitor->Health();
  const nlohmann::json j = {
      {"generation", gen->number}, {"shadow", options.shadow.share}, {"models", std::move(models)}};
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string Server::PlanHealthJson() const { return impl_->PlanHealth(); }

void Server::FlushShadow(bool runs) {
  Impl& im = *impl_;
  if (!im.shadow_runner) return;
  {
    std::unique_lock<std::mutex> lock(im.shadow_mu);
    im.shadow_cv.wait(lock, [&] { return im.shadow_pending == 0; });
  }
  if (runs) im.shadow_runner->Flush();
}

}  // namespace coe
