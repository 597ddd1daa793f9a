#include "server/metrics.h"

#include <cstdio>

#include "base/tokens.h"

namespace coe {
namespace {

std::string Escape(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"')
      out += '\\', out += c;
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string Num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

void Header(std::string* out, const char* name, const char* type, const char* help) {
  *out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

void Line(std::string* out, const std::string& name, const std::string& labels, const std::string& value) {
  *out += name + (labels.empty() ? "" : "{" + labels + "}") + " " + value + "\n";
}

std::string L(const char* k, const std::string& v) { return std::string(k) + "=\"" + Escape(v) + "\""; }

void WriteHistogram(std::string* out, const char* name, const std::string& labels, const Histogram& h) {
  uint64_t cumulative = 0;
  const std::string sep = labels.empty() ? "" : labels + ",";
  for (size_t b = 0; b <= kLatencyBuckets.size(); ++b) {
    cumulative += h.counts[b];
    char le[32] = "+Inf";
    if (b < kLatencyBuckets.size()) std::snprintf(le, sizeof le, "%g", kLatencyBuckets[b]);
    Line(out, std::string(name) + "_bucket", sep + L("le", le), std::to_string(cumulative));
  }
  Line(out, std::string(name) + "_sum", labels, Num(h.sum));
  Line(out, std::string(name) + "_count", labels, std::to_string(h.count));
}

// Per endpoint of the members that call several (chat models: url, fallbacks,
// hedge_url): bounded, the endpoints are the catalogue's, shown without credentials.
void WriteEndpoints(std::string* out, const std::vector<Backend*>& members) {
  struct Outcome {
    const char* name;
    std::atomic<uint64_t> EndpointStats::*count;
  };
  static const Outcome kOutcomes[] = {{"ok", &EndpointStats::ok},
                                      {"failed", &EndpointStats::failed},
                                      {"stopped", &EndpointStats::stopped},
                                      {"late", &EndpointStats::late},
                                      {"cancelled", &EndpointStats::cancelled}};
  bool any = false;
  for (Backend* b : members) any |= !b->stats().endpoints.empty();
  if (!any) return;
  Header(out, "coe_upstream_calls_total", "counter",
         "Calls of a member to each of its endpoints (url, fallbacks, hedge_url), by outcome: ok (it answered the "
         "call), failed (no answer: refused, timed out, an HTTP error, unusable), stopped (the slower side of a "
         "hedged call), late (answered after the other side won: paid, unused), cancelled (the client went away).");
  for (Backend* b : members)
    for (const EndpointStats& e : b->stats().endpoints)
      for (const Outcome& o : kOutcomes)
        Line(out, "coe_upstream_calls_total",
             L("member", b->info().name) + "," + L("endpoint", e.address) + "," + L("outcome", o.name),
             std::to_string((e.*o.count).load(std::memory_order_relaxed)));
}

}  // namespace

void Histogram::Observe(double seconds) {
  size_t b = 0;
  while (b < kLatencyBuckets.size() && seconds > kLatencyBuckets[b]) ++b;
  counts[b]++;
  sum += seconds;
  count++;
}

std::string CacheText(const CacheStats& s) {
  std::string out;
  Header(&out, "coe_cache_hits_total", "counter",
         "Chat requests answered from the response cache (coe serve --cache-mb): no upstream call, cost 0.");
  Line(&out, "coe_cache_hits_total", "", std::to_string(s.hits));
  Header(&out, "coe_cache_misses_total", "counter",
         "Cacheable chat requests (temperature 0, or a seed) the response cache did not hold.");
  Line(&out, "coe_cache_misses_total", "", std::to_string(s.misses));
  Header(&out, "coe_cache_evictions_total", "counter", "Replies the response cache dropped (least recently used).");
  Line(&out, "coe_cache_evictions_total", "", std::to_string(s.evictions));
  Header(&out, "coe_cache_bytes", "gauge",
         "Bytes the response cache holds: its keys, its replies, 256 a reply for the bookkeeping.");
  Line(&out, "coe_cache_bytes", "", std::to_string(s.bytes));
  Header(&out, "coe_cache_entries", "gauge", "Replies the response cache holds.");
  Line(&out, "coe_cache_entries", "", std::to_string(s.entries));
  Header(&out, "coe_cache_capacity_bytes", "gauge", "The response cache's bound (--cache-mb; 0: off).");
  Line(&out, "coe_cache_capacity_bytes", "", std::to_string(s.capacity));
  return out;
}

void Metrics::CountRequest(const std::string& model, int code, double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  requests_[{model, std::to_string(code)}]++;
  if (code == 200) request_seconds_[model].Observe(seconds);
}

void Metrics::CountError(int code) {
  std::lock_guard<std::mutex> lock(mu_);
  errors_[std::to_string(code)]++;
}

void Metrics::AddRun(const std::string& model, const Cascade& cascade, const RunResult& r) {
  const std::vector<Backend*> members = cascade.members();
  std::lock_guard<std::mutex> lock(mu_);
  examples_[model] += r.answer.size();
  runs_[model]++;
  uint64_t degraded = 0, unanswered = 0;
  for (size_t i = 0; i < r.answer.size(); ++i) {
    degraded += r.degraded[i];
    unanswered += r.answer[i] == kAbstain;
  }
  degraded_[model] += degraded;
  cost_unit_[model] = cascade.cost_name();
  unanswered_[model] += unanswered;
  std::vector<uint64_t> answered(r.tiers.size(), 0);
  for (size_t i = 0; i < r.answer.size(); ++i)
    if (r.answer[i] != kAbstain) answered[r.exit_tier[i]]++;
  for (const MemberFailure& f : r.failures)
    member_failures_[{members[f.member]->info().name, f.kind.empty() ? "unknown" : f.kind}]++;
  for (size_t t = 0; t < r.tiers.size(); ++t) {
    const std::string tier = std::to_string(t + 1);
    exits_[{model, tier}] += answered[t];
    tier_cost_[{model, tier}] += r.tiers[t].cost;
    if (r.tiers[t].tokens_in || r.tiers[t].tokens_out) {
      uint64_t& in = tier_tokens_in_[{model, tier}];
      uint64_t& out = tier_tokens_out_[{model, tier}];
      in = AddTokens(in, r.tiers[t].tokens_in);  // saturating (base/tokens.h)
      out = AddTokens(out, r.tiers[t].tokens_out);
    }
    if (t + 1 < r.tiers.size()) deferred_[{model, tier}] += r.tiers[t].reached - r.tiers[t].exited;
  }
  for (size_t m = 0; m < members.size() && m < r.member_examples.size(); ++m)
    if (r.member_examples[m] > 0) member_seconds_[members[m]->info().name].Observe(r.member_seconds[m]);
}

std::string Metrics::Text(int64_t inflight, double io_wait_seconds, const std::vector<Backend*>& members) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  Header(&out, "coe_requests_total", "counter", "Infer requests by model and HTTP status code.");
  for (const auto& [k, v] : requests_)
    Line(&out, "coe_requests_total", L("model", k.first) + "," + L("code", k.second), std::to_string(v));
  Header(&out, "coe_errors_total", "counter", "HTTP responses with status >= 400, on any route, by code.");
  for (const auto& [k, v] : errors_) Line(&out, "coe_errors_total", L("code", k), std::to_string(v));
  Header(&out, "coe_inflight_requests", "gauge", "Infer requests being handled now.");
  Line(&out, "coe_inflight_requests", "", std::to_string(inflight));
  Header(&out, "coe_io_wait_seconds", "gauge",
         "How long the last request waited in the kernel before being read (over --max-io-wait-ms, infer requests are "
         "shed with 503).");
  Line(&out, "coe_io_wait_seconds", "", Num(io_wait_seconds));
  Header(&out, "coe_request_duration_seconds", "histogram", "Wall time of successful infer requests, by model.");
  for (const auto& [k, h] : request_seconds_) WriteHistogram(&out, "coe_request_duration_seconds", L("model", k), h);
  Header(&out, "coe_examples_total", "counter", "Examples answered, by model.");
  for (const auto& [k, v] : examples_) Line(&out, "coe_examples_total", L("model", k), std::to_string(v));
  Header(&out, "coe_runs_total", "counter",
         "Cascade runs, by model: with dynamic batching one run answers several requests "
         "(coe_examples_total / coe_runs_total is the mean batch).");
  for (const auto& [k, v] : runs_) Line(&out, "coe_runs_total", L("model", k), std::to_string(v));
  Header(&out, "coe_exits_total", "counter",
         "Examples answered by each tier (1-based); an example no tier answered counts in "
         "coe_unanswered_examples_total instead.");
  for (const auto& [k, v] : exits_)
    Line(&out, "coe_exits_total", L("model", k.first) + "," + L("tier", k.second), std::to_string(v));
  Header(&out, "coe_deferred_total", "counter",
         "Examples a tier deferred to the next (deferral rate = deferred / reached).");
  for (const auto& [k, v] : deferred_)
    Line(&out, "coe_deferred_total", L("model", k.first) + "," + L("tier", k.second), std::to_string(v));
  Header(&out, "coe_tier_cost_total", "counter",
         "What each tier's members cost over the examples that reached it, in the unit named by `unit` "
         "(usd: dollars billed by chat models).");
  for (const auto& [k, v] : tier_cost_)
    Line(&out, "coe_tier_cost_total",
         L("model", k.first) + "," + L("tier", k.second) + "," + L("unit", cost_unit_.at(k.first)), Num(v));
  Header(&out, "coe_tier_tokens_total", "counter", "Tokens of the chat calls each tier made, by kind (in, out).");
  for (const auto& [k, v] : tier_tokens_in_) {
    const std::string l = L("model", k.first) + "," + L("tier", k.second);
    Line(&out, "coe_tier_tokens_total", l + "," + L("kind", "in"), std::to_string(v));
    Line(&out, "coe_tier_tokens_total", l + "," + L("kind", "out"), std::to_string(tier_tokens_out_.at(k)));
  }
  Header(&out, "coe_degraded_examples_total", "counter", "Examples answered with a fallback because a member failed.");
  for (const auto& [k, v] : degraded_) Line(&out, "coe_degraded_examples_total", L("model", k), std::to_string(v));
  Header(&out, "coe_unanswered_examples_total", "counter", "Examples no tier answered.");
  for (const auto& [k, v] : unanswered_) Line(&out, "coe_unanswered_examples_total", L("model", k), std::to_string(v));
  Header(&out, "coe_member_failures_total", "counter",
         "Examples a member had no answer for because its call failed, by member and cause (reason: http_<status>, "
         "timeout, connect, bad_response, too_large, busy, input, runtime, circuit_open).");
  for (const auto& [k, v] : member_failures_)
    Line(&out, "coe_member_failures_total", L("member", k.first) + "," + L("reason", k.second), std::to_string(v));
  Header(&out, "coe_member_latency_seconds", "histogram",
         "Seconds a member spent on one request (its chunks summed), by member.");
  for (const auto& [k, h] : member_seconds_) WriteHistogram(&out, "coe_member_latency_seconds", L("member", k), h);
  struct Counter {
    const char* name;
    const char* help;
    std::atomic<uint64_t> BackendStats::*field;
  };
  static const Counter kCounters[] = {
      {"coe_member_calls_total", "Predict calls per member.", &BackendStats::calls},
      {"coe_member_examples_total", "Examples given to each member.", &BackendStats::examples},
      {"coe_member_abstentions_total", "Examples each member abstained on.", &BackendStats::abstentions},
      {"coe_member_errors_total", "Failed member calls (remote: failed requests).", &BackendStats::errors},
      {"coe_remote_bytes_sent_total", "Request body bytes a member sent to its remote endpoint.",
       &BackendStats::bytes_sent},
      {"coe_remote_bytes_received_total", "Response body bytes a member received from its remote endpoint.",
       &BackendStats::bytes_received},
      {"coe_remote_hedges_total",
       "Calls a member (remote or chat) sent to its hedge_url too (the first url was slow or failed).",
       &BackendStats::hedges},
      {"coe_remote_hedge_wins_total", "Hedged calls the hedge_url answered first.", &BackendStats::hedge_wins},
      {"coe_remote_hedges_paid_twice_total",
       "Hedged chat calls whose both responses arrived before the slower was stopped: both paid (the call's cost "
       "counts both).",
       &BackendStats::hedges_paid_twice},
  };
  for (const Counter& c : kCounters) {
    Header(&out, c.name, "counter", c.help);
    for (Backend* b : members)
      Line(&out, c.name, L("member", b->info().name),
           std::to_string((b->stats().*c.field).load(std::memory_order_relaxed)));
  }
  WriteEndpoints(&out, members);
  // Chat members: tokens and dollars, from the members' own statistics.
  std::vector<Backend*> chat;
  for (Backend* b : members)
    if (b->info().cost_unit == "usd") chat.push_back(b);
  if (!chat.empty()) {
    Header(&out, "coe_member_tokens_total", "counter", "Tokens of each chat member's calls, by kind (in, out).");
    for (Backend* b : chat) {
      const BackendStats& st = b->stats();
      Line(&out, "coe_member_tokens_total", L("member", b->info().name) + "," + L("kind", "in"),
           std::to_string(st.tokens_in.load(std::memory_order_relaxed)));
      Line(&out, "coe_member_tokens_total", L("member", b->info().name) + "," + L("kind", "out"),
           std::to_string(st.tokens_out.load(std::memory_order_relaxed)));
    }
    Header(&out, "coe_member_usd_total", "counter",
           "Dollars each chat member was billed (usage x its prices; estimated when a response had no usage).");
    for (Backend* b : chat)
      Line(&out, "coe_member_usd_total", L("member", b->info().name),
           Num(b->stats().usd.load(std::memory_order_relaxed)));
    Header(&out, "coe_member_estimated_costs_total", "counter",
           "Chat calls whose cost was estimated because the response had no usage, or a token count that is "
           "not an integer from 0 to 2^40.");
    for (Backend* b : chat)
      Line(&out, "coe_member_estimated_costs_total", L("member", b->info().name),
           std::to_string(b->stats().estimated_costs.load(std::memory_order_relaxed)));
  }
  return out;
}

}  // namespace coe
