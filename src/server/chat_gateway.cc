// The gateway around the OpenAI front door (chat_route.cc): the exact-request response
// cache, the per-request cost ceiling, and the model list (GET /v1/models[/{id}]).
#include <chrono>

#include "base/numbers.h"
#include "server/server_impl.h"

namespace coe {

// The cache keeps only the answers a request would get again: a request with an
// integer seed asks for a repeatable answer (whatever its temperature), and one whose
// members sample greedily gets one: its temperature is 0 or absent, and every member's
// catalogue temperature is 0 (the catalogue's default). The key: the served model's
// name and load (its cascade), then the canonical request.
std::string Server::Impl::CacheKey(const Generation& gen, const ServedModel& m, const CanonicalChatRequest& c) const {
  if (!cache || c.text.empty()) return "";
  bool greedy = !c.temperature || *c.temperature == 0;
  for (const Backend* b : m.cascade->members()) greedy = greedy && b->info().temperature == 0;
  if (!c.seed && !greedy) return "";
  return m.name + "\n" + std::to_string(gen.loads.at(m.name)) + "\n" + c.text;
}

// What the cascade answered before, under a new id: no call was made, so no tokens
// were used and nothing was paid.
HttpReply Server::Impl::FromCache(ChatReply reply, const ChatRequest& q, std::string id) {
  reply.id = std::move(id);
  reply.created = NowSeconds();
  reply.prompt_tokens = reply.completion_tokens = 0;
  reply.cost_usd = 0;
  reply.cached = true;
  return Render(reply, q);
}

// The deepest tier k whose tiers 1..k are estimated, together, to cost at most the
// ceiling on this request (Cascade::EstimateTierCosts: before any call, a chat
// member's prompt at 4 characters a token and its completion at max_tokens) is the
// last the run may reach. A ceiling below tier 1's estimate is refused.
std::optional<HttpReply> Server::Impl::Budget(const ServedModel& m, const InputBatch& batch, double ceiling,
                                              RunOptions* ro) const {
  const std::string field = "coe.max_cost_usd";
  if (m.cascade->cost_name() != "usd")
    return OpenAiError(400, "model '" + m.name + "' counts its cost in " + m.cascade->cost_name() +
                                ", not dollars: it takes no " + field);
  const std::vector<double> tiers = m.cascade->EstimateTierCosts(batch.View(), 0);
  double sum = 0;
  int fit = 0;
  while (fit < static_cast<int>(tiers.size()) && (sum += tiers[fit]) <= ceiling) ++fit;
  if (fit == 0)
    return OpenAiCodedError(400,
                            "the cost ceiling " + FormatDouble(ceiling) + " usd (" + field + ") is below tier 1 of '" +
                                m.name + "', estimated at " + FormatDouble(tiers[0]) +
                                " usd for this request (its members' prompts at 4 characters a token, their "
                                "completions at max_tokens): raise the ceiling to at least that",
                            "max_cost_too_low", field);
  ro->max_tiers = fit;
  return std::nullopt;
}

// The tier the ceiling stopped the run at (1-based), or 0: the run ended at the
// ceiling's last tier, before the cascade's, and that tier's rule would have deferred.
int Server::Impl::BudgetStop(const ServedModel& m, const RunOptions& ro, const RunResult& r) {
  const std::vector<TierSpec>& tiers = m.cascade->spec().tiers;
  if (ro.max_tiers <= 0 || ro.max_tiers >= static_cast<int>(tiers.size()) || r.exit_tier[0] + 1 != ro.max_tiers)
    return 0;
  return tiers[ro.max_tiers - 1].rule.Exits(r.vote[0]) ? 0 : ro.max_tiers;
}

// A chat request answered from the response cache, in the request log: no member was
// called (cost 0, no members).
void Server::Impl::LogCached(const ServedModel& m, const std::string& id, std::string record, const ChatReply& hit,
                             Clock::time_point t0) {
  RequestLogEntry e{.id = id, .model = m.name, .route = "chat"};
  if (!request_log->options().redact) e.text = std::move(record);
  e.answer = hit.answer;
  e.exit_tier = hit.exit_tier;
  e.cost_name = m.cascade->cost_name();
  e.ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  e.cached = true;
  request_log->Add(std::move(e));
}

http::Reply Server::Impl::ModelList(const Generation& gen) const {
  std::vector<std::string> names;
  for (const ServedModel& m : gen.models)
    if (gen.chat_refusal.at(m.name).empty()) names.push_back(m.name);
  return JsonReply(ModelListJson(names, started));
}

http::Reply Server::Impl::ModelRetrieve(const Generation& gen, std::string_view id) const {
  auto it = gen.chat_refusal.find(id);
  if (it == gen.chat_refusal.end() || !it->second.empty())
    return ToReply(
        OpenAiError(404, "no model named '" + std::string(id) + "' answers chat (see GET /v1/models)", true));
  return JsonReply(ModelJson(it->first, started));
}

}  // namespace coe
