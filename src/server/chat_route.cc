// The OpenAI front door of `coe serve`: POST /v1/chat/completions and GET /v1/models.
#include <chrono>
#include <cmath>
#include <set>

#include "base/numbers.h"
#include "base/tokens.h"
#include "protocol/json_text.h"
#include "protocol/oip.h"
#include "server/server_impl.h"

namespace coe {

// Why a cascade cannot answer chat requests ("" when it can): every member must read
// text; in template mode its prompt template may use only {input} (the user message),
// in messages mode it must read conversations.
std::string ChatRefusal(const std::string& name, const Cascade& c) {
  const bool messages = c.spec().input == ChatInput::kMessages;
  for (Backend* b : c.members()) {
    const BackendInfo& info = b->info();
    if (!info.text_inputs) return "model '" + name + "' takes tensors (member '" + info.name + "'), not chat messages";
    if (info.messages != messages)
      return "model '" + name + "': member '" + info.name + "' reads " + (info.messages ? "messages" : "templates") +
             ", the cascade's input is \"" + ChatInputName(c.spec().input) + "\"";
    for (const std::string& f : info.fields)
      if (f != "input")
        return "model '" + name + "': member '" + info.name + "' fills its prompt template with {" + f +
               "}; a cascade served over /v1/chat/completions may use only {input}, the user message (or set "
               "input = \"messages\" in the cascade file: every member then gets the whole conversation)";
  }
  return "";
}

namespace {

// The 400 of a request a template-mode cascade would not show its members whole.
std::string TemplateRefusal(const std::string& model, const ChatRequest& q) {
  return "model '" + model + "' reads one user message (its cascade has input = \"template\": each member's " +
         "catalogue prompt is filled with that message), and this request also carries " + q.beyond_user +
         ", which its members would never see. To serve conversations, set input = \"messages\" in the cascade " +
         "file: every member then gets the whole conversation";
}

// The request's value of a pinned parameter `name` ("max_tokens" also stands for
// max_completion_tokens), with the name the request gave it; null when it gave none.
const std::pair<std::string, std::string_view>* Given(const ChatRequest& q, const std::string& name) {
  for (const auto& p : q.parameters)
    if (p.first == name || (name == "max_tokens" && p.first == "max_completion_tokens")) return &p;
  return nullptr;
}

// The parameters of `q` that members of `c` pin to another value: parameter (as the
// request names it) -> member -> the value sent.
std::map<std::string, std::map<std::string, std::string>> Pinned(const Cascade& c, const ChatRequest& q) {
  std::map<std::string, std::map<std::string, std::string>> out;
  for (Backend* b : c.members())
    for (const auto& [name, value] : b->info().pinned)
      if (const auto* given = Given(q, name);
          given && json_text::Canonical(given->second) != json_text::Canonical(value))
        out[given->first][b->info().name] = value;
  return out;
}

}  // namespace

// The 502 of a chat request no tier answered: the upstreams' own words when calls
// failed, else that the members answered but nothing could be read from them.
HttpReply Server::Impl::NoAnswer(const ServedModel& m, const RunResult& r) {
  if (r.failures.empty())
    return OpenAiError(502, "no tier of '" + m.name +
                                "' gave a readable answer: the last tier's members answered, but no answer could be "
                                "read from their completions (the catalogue's `answer` mode)");
  std::string why;
  std::set<std::string> seen;
  for (const MemberFailure& f : r.failures)
    if (seen.insert(f.error).second) why += (why.empty() ? "" : "; ") + f.error;
  return OpenAiError(502, "no tier of '" + m.name + "' could answer: " + std::to_string(r.failures.size()) +
                              " member call(s) failed: " + why);
}

namespace {

// The request with its cost ceiling from its body and from its coe-max-cost-usd header
// (`header`): either, or both when they are the same.
StatusOr<ChatRequest> WithCeiling(ChatRequest q, std::optional<double> header) {
  if (!header) return q;
  if (q.max_cost_usd && *q.max_cost_usd != *header)
    return InvalidArgumentError("the cost ceiling is given twice, differently: coe.max_cost_usd " +
                                FormatDouble(*q.max_cost_usd) + " in the body and " + FormatDouble(*header) +
                                " in the coe-max-cost-usd header; give one");
  q.max_cost_usd = header;
  return q;
}

}  // namespace

std::pair<std::string, std::string> PinnedHeader(const ChatReply& reply) {
  if (reply.pinned.empty()) return {};
  std::string names;
  for (const auto& [name, _] : reply.pinned) names += (names.empty() ? "" : ", ") + name;
  return {"coe-pinned", names};
}

bool SingleMemberFailed(const Cascade& c, const RunResult& r) {
  const std::vector<TierSpec>& tiers = c.spec().tiers;
  const int t = r.exit_tier[0];
  int first = 0;  // the tier's first member, in AllMembers() order
  for (int k = 0; k < t; ++k) first += static_cast<int>(tiers[k].members.size());
  if (tiers[t].members.size() != 1) return false;
  for (const MemberFailure& f : r.failures)
    if (f.member == first) return true;
  return false;
}

std::string Server::Impl::NewChatId() {
  return "chatcmpl-coe-" + std::to_string(started) + "-" + std::to_string(++chat_count);
}

int64_t Server::Impl::NowSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

HttpReply Server::Impl::Render(const ChatReply& reply, const ChatRequest& q) {
  if (q.stream) return {200, "text/event-stream", ChatCompletionEvents(reply, q.include_usage)};
  return {200, "application/json", ChatCompletionJson(reply)};
}

// POST /v1/chat/completions, request in, response out (server_impl.h).
HttpReply Server::Impl::Chat(const std::shared_ptr<const Generation>& gen_ptr, std::string body,
                             std::optional<double> header_ceiling, std::string* model_name,
                             const std::atomic<bool>* cancelled, ChatStream* stream,
                             std::function<void()>* after_reply) {
  const Generation& gen = *gen_ptr;
  std::string param;
  auto q = ParseChatRequest(body, &param);
  if (q.ok()) {
    q = WithCeiling(std::move(*q), header_ceiling);
    if (!q.ok()) param = "coe";
  }
  if (!q.ok()) return OpenAiError(400, q.status().message(), false, param);
  // The cache's canonical request, while the body is here (not for large ones: it would be held besides it).
  const CanonicalChatRequest canonical =
      cache && body.size() < kLargeBytes ? CanonicalizeChatRequest(body, q->max_cost_usd) : CanonicalChatRequest{};
  const ServedModel* found = gen.Find(q->model);
  if (!found) return OpenAiError(404, "no model named '" + q->model + "' (see GET /v1/models)", true, "model");
  const ServedModel& m = *found;
  *model_name = m.name;
  if (const std::string& why = gen.chat_refusal.at(m.name); !why.empty()) return OpenAiError(400, why, false, "model");
  const bool messages = m.cascade->spec().input == ChatInput::kMessages;
  if (!messages && !q->beyond_user.empty()) return OpenAiError(400, TemplateRefusal(m.name, *q), false, "messages");
  const std::string cache_key = CacheKey(gen, m, canonical);
  const auto t0 = Clock::now();
  const std::string id = NewChatId();
  // A hit needs the members' record only for its log line (an identical request was
  // answered before, so its record was valid).
  if (!cache_key.empty())
    if (std::optional<ChatReply> hit = cache->Get(cache_key)) {
      if (request_log)
        if (auto record = ChatRecordJson(*q, id, messages); record.ok()) LogCached(m, id, std::move(*record), *hit, t0);
      return FromCache(std::move(*hit), *q, id);
    }
  auto record = ChatRecordJson(*q, id, messages);
  if (!record.ok()) return OpenAiError(400, record.status().message(), false, "messages");
  // Shadow verification: chosen by the record without its id (the request's content).
  std::shared_ptr<ShadowPick> shadow;
  if (after_reply && shadow_runner && gen.shadow.contains(m.name)) {
    const StatusOr<std::string> key = ChatRecordJson(*q, "", messages);
    const std::string& text = *record;
    if (key.ok()) shadow = PickShadow(gen, m, InputView{.texts = {&text, 1}, .n = 1}, {&*key, 1});
  }
  ChatReply reply;
  reply.pinned = Pinned(*m.cascade, *q);
  const bool logprobs = q->logprobs;
  ChatRequest framing;  // what Render needs of q, whose views point into the body, given back next
  framing.stream = q->stream;
  framing.include_usage = q->include_usage;
  framing.max_cost_usd = q->max_cost_usd;
  q = ChatRequest{};
  std::string().swap(body);
  InputBatch batch;
  batch.texts.push_back(std::move(*record));
  batch.ids.push_back(id);
  RunOptions ro{.want_members = request_log != nullptr, .cancelled = cancelled};
  if (framing.max_cost_usd)
    if (std::optional<HttpReply> refused = Budget(m, batch, *framing.max_cost_usd, &ro)) return std::move(*refused);
  const int64_t created = NowSeconds();
  if (framing.stream && stream) {  // the last tier may stream: the head of its reply
    stream->Start(ChatReply{.id = id, .model = m.name, .created = created}, framing.include_usage, PinnedHeader(reply));
    ro.tokens = stream;
  }
  auto r = m.cascade->Run(batch, ro);
  if (!r.ok()) {
    HttpReply e = OpenAiError(RunErrorCode(r.status(), cancelled), RunError(r.status()));
    if (e.status == 503) e.retry_after_s = options.retry_after_s;
    return e;
  }
  metrics.AddRun(m.name, *m.cascade, *r);
  LogRun(m, "chat", batch.ids, batch, *r, std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  // The last tier streamed: its member's failure cannot fall back any more.
  if (stream && stream->opened() && SingleMemberFailed(*m.cascade, *r))
    return OpenAiError(502, "the streamed completion failed after its first bytes: " + r->failures.back().error);
  if (r->answer[0] == kAbstain) return NoAnswer(m, *r);
  reply.id = id;
  reply.model = m.name;
  reply.created = created;
  reply.content = r->reply.empty() ? "" : r->reply[0];
  if (!r->finish_reason.empty() && !r->finish_reason[0].empty()) reply.finish_reason = r->finish_reason[0];
  if (!r->tool_calls.empty()) reply.tool_calls = r->tool_calls[0];
  if (logprobs && !r->logprobs.empty()) reply.logprobs = r->logprobs[0];
  // In [0, kTokenCap] (base/tokens.h): their sum, total_tokens, fits too.
  reply.prompt_tokens = r->tokens_in.empty() ? 0 : ClampTokens(r->tokens_in[0]);
  reply.completion_tokens = r->tokens_out.empty() ? 0 : ClampTokens(r->tokens_out[0]);
  reply.answer = r->answer[0] == kAbstain ? "" : r->labels.name(r->answer[0]);
  reply.exit_tier = r->exit_tier[0] + 1;
  reply.votes = r->vote[0].votes;
  reply.members = r->vote[0].members;
  reply.cost_usd = r->cost[0];
  reply.degraded = r->degraded[0] != 0;
  reply.max_cost_usd = framing.max_cost_usd;
  reply.budget_tier = BudgetStop(m, ro, *r);
  if (!cache_key.empty() && !reply.degraded) cache->Put(cache_key, reply);
  if (shadow)
    *after_reply = [this, gen_ptr, &m, shadow, r = std::make_shared<RunResult>(std::move(*r)), id] {
      Shadow(gen_ptr, m, *shadow, *r, {&id, 1});
    };
  if (stream && stream->opened()) {  // its content went as it came: the rest of the events
    reply.content.clear();
    return {200, "text/event-stream", ChatFinalEvents(reply, framing.include_usage)};
  }
  HttpReply out = Render(reply, framing);
  if (!reply.pinned.empty()) out.headers.push_back(PinnedHeader(reply));
  return out;
}

void Server::Impl::ChatRoute(std::shared_ptr<const Generation> gen, http::Request&& request, http::Responder respond,
                             std::shared_ptr<std::string> model) {
  std::optional<double> ceiling;  // the coe-max-cost-usd header's
  if (const std::string* h = request.Header("coe-max-cost-usd")) {
    ceiling = ParseDouble(*h);
    if (!ceiling || !std::isfinite(*ceiling) || *ceiling < 0)
      return respond(ToReply(OpenAiCodedError(
          400, "the coe-max-cost-usd header must be a number >= 0 (dollars), not '" + Bounded(*h) + "'", "",
          "coe-max-cost-usd")));
  }
  std::string why;
  std::shared_ptr<Slot> slot = Admit(std::move(request.cancelled), request.body.size(), &why);
  if (!slot) return respond(Busy(why, true));
  const std::atomic<bool>* cancelled = slot->cancelled();  // lives as long as `respond`
  // The body is shared: OffIo's task is copied, its captures with it.
  OffIo([this, gen = std::move(gen), body = std::make_shared<std::string>(std::move(request.body)), ceiling, model,
         cancelled, respond = Releasing(std::move(slot), respond)] {
    ChatStream stream(&respond);
    // Out of memory once the stream opened: its status went, the stream ends with an error.
    const http::Responder unless_streamed = [&](http::Reply r) {
      if (!stream.opened()) respond(std::move(r));
    };
    OutOfMemoryIs503(
        [&] {
          std::function<void()> after_reply;
          HttpReply reply = Chat(gen, std::move(*body), ceiling, model.get(), cancelled, &stream, &after_reply);
          if (stream.opened())
            stream.End(reply);
          else
            respond(ToReply(std::move(reply)));
          if (after_reply) after_reply();
        },
        unless_streamed, true);
  });
}

bool ChatStream::Text(std::string_view piece) {
  if (!stream_) {  // the first piece: the reply's head goes now, its status final
    stream_ = std::make_shared<http::ReplyStream>();
    http::Reply head;
    head.content_type = "text/event-stream";
    // No cache; a proxy in front (nginx) passes each event on as it comes.
    head.headers = {{"Cache-Control", "no-cache"}, {"X-Accel-Buffering", "no"}};
    if (!header_.first.empty()) head.headers.push_back(header_);
    head.stream = stream_;
    (*respond_)(std::move(head));
    if (!stream_->Write(ChatRoleEvent(head_, include_usage_))) return false;
  }
  return stream_->Write(ChatContentEvent(head_, piece, include_usage_));
}

void ChatStream::End(const HttpReply& reply) {
  // A 200's body is the last events; an error (the run failed, the member failed after
  // its first bytes, no readable answer) ends the stream with an error event.
  stream_->Finish(reply.status, reply.status == 200 ? reply.body : ChatErrorEvent(reply.body));
}

ChatStream::~ChatStream() {
  if (stream_)  // not ended (an exception, out of memory): the client is told, the request's place given back
    stream_->Finish(500, ChatErrorEvent(OpenAiErrorJson(500, "the server failed while streaming the reply")));
}

}  // namespace coe
