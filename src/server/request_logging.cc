// The server's side of the request log (coe/request_log.h): a run's examples as log
// entries, and the log's metrics.
#include <cinttypes>

#include "server/server_impl.h"

namespace coe {

void Server::Impl::LogRun(const ServedModel& m, const char* route, const std::vector<std::string>& ids,
                          const InputBatch& inputs, const RunResult& r, double ms,
                          std::span<const std::string> shadow) {
  if (!request_log) return;
  const bool redact = request_log->options().redact;
  const std::vector<Backend*> members = m.cascade->members();
  for (size_t i = 0; i < r.answer.size(); ++i) {
    RequestLogEntry e;
    e.id = i < ids.size() ? ids[i] : NewRequestId();
    e.model = m.name;
    e.route = route;
    if (!redact && i < inputs.texts.size()) {
      e.text = inputs.texts[i];
    } else if (inputs.texts.empty()) {
      e.shape = inputs.example_shape;
      if (!redact) {
        const std::span<const float> x = inputs.Example(static_cast<int64_t>(i));
        e.tensor.assign(x.begin(), x.end());
      }
    }
    e.answer = r.answer[i] == kAbstain ? "" : r.labels.name(r.answer[i]);
    e.exit_tier = r.exit_tier[i] + 1;
    if (i < r.member_answers.size())
      for (const MemberAnswer& a : r.member_answers[i]) {
        LoggedMember lm{.name = members[a.member]->info().name, .answer = a.answer};
        if (a.failed) {
          lm.error = "failed";
          for (const MemberFailure& f : r.failures)
            if (f.example == static_cast<int>(i) && f.member == a.member) lm.error = f.error;
        }
        e.members.push_back(std::move(lm));
      }
    e.cost = r.cost[i];
    e.cost_name = m.cascade->cost_name();
    e.ms = ms;
    e.degraded = r.degraded[i] != 0;
    if (i < shadow.size()) e.extra.emplace_back("shadow", shadow[i]);
    request_log->Add(std::move(e));
  }
}

std::string Server::Impl::LogMetrics() const {
  if (!request_log) return "";
  auto counter = [](const char* name, const char* help, uint64_t v) {
    return std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " counter\n" + name + " " +
           std::to_string(v) + "\n";
  };
  return counter("coe_log_lines_total", "Request log lines written.", request_log->written()) +
         counter("coe_log_dropped_total", "Request log lines dropped because the log's queue was full.",
                 request_log->dropped()) +
         counter("coe_log_errors_total", "Request log lines lost to write errors.", request_log->write_errors());
}

}  // namespace coe
