// The OpenAI front door of `coe serve`: POST /v1/chat/completions and GET /v1/models.
#include <chrono>
#include <set>

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

// POST /v1/chat/completions, request in, response out (server_impl.h).
HttpReply Server::Impl::Chat(std::string body, std::string* model_name, const std::atomic<bool>* cancelled) {
  std::string param;
  auto q = ParseChatRequest(body, &param);
  if (!q.ok()) return OpenAiError(400, q.status().message(), false, param);
  auto it = by_name.find(q->model);
  if (it == by_name.end())
    return OpenAiError(404, "no model named '" + q->model + "' (see GET /v1/models)", true, "model");
  const ServedModel& m = *it->second;
  *model_name = m.name;
  if (const std::string& why = chat_refusal.at(m.name); !why.empty()) return OpenAiError(400, why, false, "model");
  const bool messages = m.cascade->spec().input == ChatInput::kMessages;
  if (!messages && !q->beyond_user.empty()) return OpenAiError(400, TemplateRefusal(m.name, *q), false, "messages");
  const uint64_t n = ++chat_count;
  const std::string id = "chatcmpl-coe-" + std::to_string(started) + "-" + std::to_string(n);
  auto record = ChatRecordJson(*q, id, messages);
  if (!record.ok()) return OpenAiError(400, record.status().message(), false, "messages");
  ChatReply reply;
  reply.pinned = Pinned(*m.cascade, *q);
  const bool logprobs = q->logprobs, stream = q->stream, include_usage = q->include_usage;
  q = ChatRequest{};  // its views point into the body, given back next
  std::string().swap(body);
  InputBatch batch;
  batch.texts.push_back(std::move(*record));
  batch.ids.push_back(id);
  auto r = m.cascade->Run(batch, RunOptions{.cancelled = cancelled});
  if (!r.ok()) {
    HttpReply e = OpenAiError(RunErrorCode(r.status(), cancelled), RunError(r.status()));
    if (e.status == 503) e.retry_after_s = options.retry_after_s;
    return e;
  }
  metrics.AddRun(m.name, *m.cascade, *r);
  if (r->answer[0] == kAbstain) return NoAnswer(m, *r);
  reply.id = id;
  reply.model = m.name;
  reply.created =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
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
  HttpReply out = stream ? HttpReply{200, "text/event-stream", ChatCompletionEvents(reply, include_usage)}
                         : HttpReply{200, "application/json", ChatCompletionJson(reply)};
  if (!reply.pinned.empty()) {
    std::string names;
    for (const auto& [name, _] : reply.pinned) names += (names.empty() ? "" : ", ") + name;
    out.headers.emplace_back("coe-pinned", names);
  }
  return out;
}

void Server::Impl::ChatRoute(http::Request&& request, http::Responder respond, std::shared_ptr<std::string> model) {
  std::string why;
  std::shared_ptr<Slot> slot = Admit(std::move(request.cancelled), request.body.size(), &why);
  if (!slot) return respond(Busy(why, true));
  const std::atomic<bool>* cancelled = slot->cancelled();  // lives as long as `respond`
  // The body is shared: OffIo's task is copied, its captures with it.
  OffIo([this, body = std::make_shared<std::string>(std::move(request.body)), model, cancelled,
         respond = Releasing(std::move(slot), respond)] {
    OutOfMemoryIs503([&] { respond(ToReply(Chat(std::move(*body), model.get(), cancelled))); }, respond, true);
  });
}

http::Reply Server::Impl::ModelList() const {
  std::vector<std::string> names;
  for (const ServedModel& m : models)
    if (chat_refusal.at(m.name).empty()) names.push_back(m.name);
  return JsonReply(ModelListJson(names, started));
}

}  // namespace coe
