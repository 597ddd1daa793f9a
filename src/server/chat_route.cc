// The OpenAI front door of `coe serve`: POST /v1/chat/completions and GET /v1/models.
#include <chrono>
#include <set>

#include "base/tokens.h"
#include "protocol/oip.h"
#include "server/server_impl.h"

namespace coe {

// Why a cascade cannot answer chat requests ("" when it can): every member must read
// text, and its prompt template may use only {input} (the last user message).
std::string ChatRefusal(const std::string& name, const Cascade& c) {
  for (Backend* b : c.members()) {
    const BackendInfo& info = b->info();
    if (!info.text_inputs) return "model '" + name + "' takes tensors (member '" + info.name + "'), not chat messages";
    for (const std::string& f : info.fields)
      if (f != "input")
        return "model '" + name + "': member '" + info.name + "' fills its prompt template with {" + f +
               "}; a cascade served over /v1/chat/completions may use only {input}, the last user message";
  }
  return "";
}

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

// POST /v1/chat/completions, request in, response out (no transport here): the last
// user message fills every member's {input}, the cascade runs, and the reply is the
// winning member's completion with usage summed over every call made.
// The request's memory: its body, then the message (its JSON text, never decoded),
// then the record; each given back once the next is made.
HttpReply Server::Impl::Chat(std::string body, std::string* model_name, const std::atomic<bool>* cancelled,
                             ChatStream* stream) {
  auto q = ParseChatRequest(body);
  std::string().swap(body);
  if (!q.ok()) return OpenAiError(400, q.status().message());
  auto it = by_name.find(q->model);
  if (it == by_name.end()) return OpenAiError(404, "no model named '" + q->model + "' (see GET /v1/models)", true);
  const ServedModel& m = *it->second;
  *model_name = m.name;
  if (const std::string& why = chat_refusal.at(m.name); !why.empty()) return OpenAiError(400, why);
  InputBatch batch;
  const uint64_t n = ++chat_count;
  const std::string id = "chatcmpl-coe-" + std::to_string(started) + "-" + std::to_string(n);
  std::string record = "{\"id\":";
  oip::AppendJsonString(&record, id);
  record += ",\"input\":\"";
  record.reserve(record.size() + q->input_json.size() + 2);
  record += q->input_json;
  record += "\"}";
  std::string().swap(q->input_json);
  batch.texts.push_back(std::move(record));
  batch.ids.push_back(id);
  const int64_t created =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  if (q->stream && stream) stream->Start(ChatReply{.id = id, .model = m.name, .created = created}, q->include_usage);
  auto r = m.cascade->Run(batch, RunOptions{.cancelled = cancelled, .tokens = q->stream ? stream : nullptr});
  if (!r.ok()) {
    HttpReply e = OpenAiError(RunErrorCode(r.status(), cancelled), RunError(r.status()));
    if (e.status == 503) e.retry_after_s = options.retry_after_s;
    return e;
  }
  metrics.AddRun(m.name, *m.cascade, *r);
  if (stream && stream->opened()) {  // the last tier streamed: its failure cannot fall back any more
    if (!r->failures.empty() && r->failures.back().member + 1 == static_cast<int>(m.cascade->members().size()))
      return OpenAiError(502, "the streamed completion failed after its first bytes: " + r->failures.back().error);
  }
  if (r->answer[0] == kAbstain) return NoAnswer(m, *r);
  ChatReply reply;
  reply.id = id;
  reply.model = m.name;
  reply.created = created;
  reply.content = r->reply.empty() ? "" : r->reply[0];
  if (!r->finish_reason.empty() && !r->finish_reason[0].empty()) reply.finish_reason = r->finish_reason[0];
  // In [0, kTokenCap] (base/tokens.h): their sum, total_tokens, fits too.
  reply.prompt_tokens = r->tokens_in.empty() ? 0 : ClampTokens(r->tokens_in[0]);
  reply.completion_tokens = r->tokens_out.empty() ? 0 : ClampTokens(r->tokens_out[0]);
  reply.answer = r->answer[0] == kAbstain ? "" : r->labels.name(r->answer[0]);
  reply.exit_tier = r->exit_tier[0] + 1;
  reply.votes = r->vote[0].votes;
  reply.members = r->vote[0].members;
  reply.cost_usd = r->cost[0];
  reply.degraded = r->degraded[0] != 0;
  if (stream && stream->opened()) return {200, "text/event-stream", ChatFinalEvents(reply, q->include_usage)};
  if (q->stream) return {200, "text/event-stream", ChatCompletionEvents(reply, q->include_usage)};
  return {200, "application/json", ChatCompletionJson(reply)};
}

void Server::Impl::ChatRoute(http::Request&& request, http::Responder respond, std::shared_ptr<std::string> model) {
  std::string why;
  std::shared_ptr<Slot> slot = Admit(std::move(request.cancelled), request.body.size(), &why);
  if (!slot) return respond(Busy(why, true));
  const std::atomic<bool>* cancelled = slot->cancelled();  // lives as long as `respond`
  // The body is shared: OffIo's task is copied, its captures with it.
  OffIo([this, body = std::make_shared<std::string>(std::move(request.body)), model, cancelled,
         respond = Releasing(std::move(slot), respond)] {
    ChatStream stream(&respond);
    // Out of memory once the stream opened: its status went, the stream ends with an error.
    const http::Responder unless_streamed = [&](http::Reply r) {
      if (!stream.opened()) respond(std::move(r));
    };
    OutOfMemoryIs503(
        [&] {
          HttpReply reply = Chat(std::move(*body), model.get(), cancelled, &stream);
          if (stream.opened())
            stream.End(reply);
          else
            respond(ToReply(std::move(reply)));
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

http::Reply Server::Impl::ModelList() const {
  std::vector<std::string> names;
  for (const ServedModel& m : models)
    if (chat_refusal.at(m.name).empty()) names.push_back(m.name);
  return JsonReply(ModelListJson(names, started));
}

}  // namespace coe
