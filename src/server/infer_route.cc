// The Open Inference Protocol's infer route of `coe serve`: POST /v2/models/NAME/infer,
// decoded off the I/O threads when large, batched (server/batcher.h).
#include <charconv>
#include <optional>

#include "protocol/oip.h"
#include "server/cascade_outputs.h"
#include "server/server_impl.h"

namespace coe {
namespace {

// An infer response as an HTTP reply: JSON, or JSON and binary data.
http::Reply InferReply(const InferResponse& res) {
  std::string tail;
  http::Reply reply;
  reply.body = EncodeInferResponseJson(res, &tail);
  if (!tail.empty()) {
    reply.headers.emplace_back("Inference-Header-Content-Length", std::to_string(reply.body.size()));
    reply.content_type = "application/octet-stream";
    reply.body += tail;
  }
  return reply;
}

}  // namespace

void Server::Impl::Infer(std::shared_ptr<const Generation> gen, const ServedModel& m, http::Request&& req,
                         const http::Responder& respond_raw) {
  if (const std::string& why = gen->tensor_refusal.at(m.name); !why.empty()) return respond_raw(ErrorReply(400, why));
  std::string why;
  std::shared_ptr<Slot> slot = Admit(std::move(req.cancelled), req.body.size(), &why);
  if (!slot) return respond_raw(Busy(why, false));
  const std::atomic<bool>* cancelled = slot->cancelled();  // lives as long as `respond`
  const http::Responder respond = Releasing(std::move(slot), respond_raw);
  const size_t size = req.body.size();
  // The binary tensor data extension: the JSON's length, when binary data follows it.
  std::optional<size_t> json_size;
  if (const std::string* h = req.Header("inference-header-content-length")) {
    size_t v = 0;
    auto [p, ec] = std::from_chars(h->data(), h->data() + h->size(), v);
    if (ec != std::errc() || p != h->data() + h->size())
      return respond(ErrorReply(400, "Inference-Header-Content-Length must be a byte count"));
    json_size = v;
  }
  // Shared: OffIo's task is copied, its captures with it. `m` lives in `gen`, held
  // by the task and then by `done` until the answer is sent.
  auto work = [this, gen = std::move(gen), &m, body = std::make_shared<std::string>(std::move(req.body)), json_size,
               respond, cancelled] {
    auto q = ParseInferRequest(*body, m.cascade->input_shape(), json_size);
    std::string().swap(*body);  // decoded: given back before the run
    if (!q.ok()) return respond(ErrorReply(400, q.status().message()));
    auto chosen = ChooseOutputs(*q);
    if (!chosen.ok()) return respond(ErrorReply(400, chosen.status().message()));
    RunOptions ro;
    ro.want_probs = NeedsProbabilities(*chosen);
    ro.want_members = request_log != nullptr;
    ro.cancelled = cancelled;
    InputBatch batch = std::move(q->batch);
    // Shadow verification: the examples chosen by the request's own id (else their
    // bytes), before the log gives an id-less request one.
    std::shared_ptr<ShadowPick> shadow =
        PickShadow(*gen, m, batch.View(), q->id && !q->id->empty() ? ShadowKeys(*q->id, batch.size()) : ShadowKeys());
    // Logged: the request's id (one made when it gave none: its response carries it),
    // and its examples as the members get them.
    std::shared_ptr<const InputBatch> logged;
    if (request_log) {
      if (!q->id || q->id->empty()) q->id = NewRequestId();
      auto copy = std::make_shared<InputBatch>();
      copy->ids = ExampleIds(*q->id, batch.size());
      copy->example_shape = batch.example_shape;
      if (!request_log->options().redact) copy->data = batch.data;
      logged = std::move(copy);
    }
    auto meta = std::make_shared<InferRequest>(std::move(*q));
    auto done = [this, gen, &m, meta, chosen = std::move(*chosen), respond, cancelled, logged, t0 = Clock::now(),
                 shadow = std::move(shadow)](StatusOr<RunResult> r) {
      if (!r.ok()) {
        const int code = RunErrorCode(r.status(), cancelled);
        return respond(code == 503 ? Busy(RunError(r.status()), false) : ErrorReply(code, r.status().message()));
      }
      if (logged)
        LogRun(m, "infer", logged->ids, *logged, *r,
               std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      OutOfMemoryIs503([&] { respond(InferReply(CascadeResponse(m.name, *meta, chosen, *r, m.cascade->labels()))); },
                       respond, false);
      if (shadow) Shadow(gen, m, *shadow, *r, logged ? std::span(logged->ids) : std::span<const std::string>());
    };
    Status s = gen->batchers.at(m.name)->Submit(std::move(batch), ro, std::move(done));
    if (!s.ok()) respond(Busy(s.message(), false));
  };
  auto guarded = [this, work = std::move(work), respond] { OutOfMemoryIs503(work, respond, false); };
  // A small body is decoded here (microseconds); a large one off the I/O threads.
  if (size <= (64u << 10)) return guarded();
  OffIo(guarded);
}

}  // namespace coe
