// Backend "openai": a chat model behind any OpenAI-compatible chat-completions endpoint
// (OpenAI, vLLM, llama.cpp server, Ollama, Together, ...). See coe/catalogue.h for its
// settings.
//
// One example is one call (POST {url}/chat/completions): the prompt template filled
// with the example's fields (InputBatch::texts), the answer read from the
// completion by the `answer` mode, the cost from the response's `usage` at the
// catalogue's prices. Calls of one Predict run at once, at most `max_concurrency` in
// flight to the endpoint whatever the callers (a pool of that many workers).
//
// Failures: an attempt fails on a transport error, HTTP 429/5xx (retried, with the
// backoff of every HTTP backend, backends/http_client.h: 50 ms x 2^k with jitter, at
// most 2 s, or the server's Retry-After up to that cap) or another status or a
// malformed response (not retried). All attempts of a call share one deadline,
// `timeout_ms` (a wait takes at most half of the time left); a response over
// `max_response_mb` (default 32) is refused as it arrives (not retried); with
// max_concurrency requests in flight, another waits for a connection until the
// deadline. A call that fails is the example's abstention (error set). What is
// paid: every attempt that returned `usage`; a response without `usage`, or with a
// figure that is no token count (not an integer from 0 to kMaxUsageTokens, 2^40:
// base/tokens.h), is counted at an estimate (a token for 4 characters of prompt and
// completion) and counted in BackendStats::estimated_costs, never as free. Token sums
// saturate at kTokenCap.
//
// Other endpoints of the model (coe/catalogue.h): `fallbacks` are asked in order, each
// with its own retries, when the one before ended on a failure another endpoint may
// not repeat (no connection, a timeout, HTTP 429 or 5xx: http::Response::retryable),
// all within the call's one deadline; a refusal such as 400 or 401, a malformed or too
// large response, and cancellation end the call there. An answer from a fallback is
// an ordinary answer. With `hedge_url`, the call races (http::Race): side 0 walks url
// and the fallbacks, side 1, started when side 0 has not answered within hedge_ms (0:
// when it failed, as a fallback would be), asks hedge_url alone; the first answer
// wins and the other side is stopped in flight. A side stopped after its response had
// arrived was answered, and is paid: the call's cost and tokens count both, and
// BackendStats::hedges_paid_twice counts it. BackendStats::endpoints counts each
// endpoint's calls by outcome (coe serve's coe_upstream_calls_total).
//
// Streaming: a call given a TokenSink (InputView::tokens: the last tier's single member
// of a streamed chat request) asks for `stream: true` and passes the completion's
// pieces to the sink as they arrive (backends/chat_stream.h), reading the whole as a
// plain call does: the same answer, score, finish_reason and cost. It is retried, or
// walks on to a fallback, as any call until its first bytes arrived, never after (they
// may have been passed on). Hedged, the sink is the first side's to stream (or to
// answer): the other side's pieces are refused, and its answer is not taken, so that
// what the client saw is the answer's text.
//
// The API key is read once, from the environment variable `api_key_env` names, and is
// never written anywhere (errors name the variable, not its value).
#include <httplib.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <optional>

#include "backends/answer_reader.h"
#include "backends/backends.h"
#include "backends/chat_body.h"
#include "backends/chat_reply.h"
#include "backends/chat_stream.h"
#include "backends/http_cancel.h"
#include "backends/http_client.h"
#include "base/thread_pool.h"
#include "base/tokens.h"

namespace coe {
namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

// One endpoint of the model: its connections, its request path, its counters.
struct ChatEndpoint {
  ChatEndpoint(http::Options options, std::string path_, std::string label_, EndpointStats* stats_)
      : client(std::move(options)), path(std::move(path_)), label(std::move(label_)), stats(stats_) {}
  http::Client client;      // at most max_concurrency requests in flight, from any caller
  const std::string path;   // ".../chat/completions"
  const std::string label;  // how errors name it: "url http://h:1/v1", "fallback ...", "hedge_url ..."
  EndpointStats* stats;     // in the backend's BackendStats::endpoints
};

// One call's request, as every endpoint gets it.
struct UpstreamCall {
  const ChatBody* built = nullptr;
  std::vector<std::string_view> body;
  size_t chars_in = 0;  // system and prompt, for a cost estimate
  Clock::time_point deadline;
  const std::atomic<bool>* cancelled = nullptr;
  TokenSink* tokens = nullptr;  // streamed to, or null
  std::atomic<int> owner{-1};   // the side the sink is given to (-1: none yet)
};

// A side's view of the call's sink: the first side to stream takes it; the other's
// pieces are refused (its call stops reading).
class SideSink : public TokenSink {
 public:
  SideSink(UpstreamCall* q, int side) : q_(q), side_(side) {}
  // Gives the sink to this side unless another has it.
  bool Claim() {
    int none = -1;
    return q_->owner.compare_exchange_strong(none, side_) || none == side_;
  }
  bool Text(std::string_view piece) override { return Claim() && q_->tokens->Text(piece); }

 private:
  UpstreamCall* const q_;
  const int side_;
};

// What one side of a call (its endpoints in order) came to.
struct Side {
  Prediction p;           // the answer (or nothing); cost and tokens: what this side paid
  bool answered = false;  // an endpoint gave a usable completion
  bool walk_on = false;   // not answered, and another endpoint may answer (retryable)
  int endpoint = -1;      // the one that answered
  int tried = 0;          // endpoints asked
  std::string error, kind;
};

// Adds what `from` paid to *to (cost NaN: nothing).
void AddPaid(const Prediction& from, Prediction* to) {
  if (!std::isnan(from.cost)) to->cost = (std::isnan(to->cost) ? 0.0 : to->cost) + from.cost;
  to->tokens_in = AddTokens(to->tokens_in, from.tokens_in);
  to->tokens_out = AddTokens(to->tokens_out, from.tokens_out);
}

class OpenAiBackend : public Backend {
 public:
  // `addresses`: url, the fallbacks, then hedge_url when `hedge`.
  OpenAiBackend(BackendInfo info, const ModelSpec& spec, const http::Options& options,
                const std::vector<EndpointAddress>& addresses, bool hedge, AnswerReader reader)
      : info_(std::move(info)),
        spec_(spec),
        reader_(std::move(reader)),
        chain_(addresses.size() - (hedge ? 1 : 0)),
        hedge_(hedge),
        hedge_delay_(std::chrono::microseconds(static_cast<int64_t>(spec.hedge_ms * 1000))),
        pool_(spec.max_concurrency) {
    for (size_t e = 0; e < addresses.size(); ++e) {
      const std::string shown = addresses[e].server + addresses[e].path;  // no credentials (ParseEndpointAddress)
      EndpointStats* stats = &stats_.endpoints.emplace_back(shown);
      http::Options o = options;
      o.host = addresses[e].server;
      o.name_host_in_errors = addresses.size() == 1;  // else each error is named by its endpoint
      const std::string label = e == 0 ? "url" : e < chain_ ? "fallback" : "hedge_url";
      endpoints_.push_back(std::make_unique<ChatEndpoint>(std::move(o), addresses[e].path + "/chat/completions",
                                                          label + " " + shown, stats));
    }
  }

  const BackendInfo& info() const override { return info_; }

  Status Predict(const InputView& batch, std::vector<Prediction>* out) override {
    const int64_t n = batch.size();
    out->assign(n, Prediction{});
    stats_.calls++;
    stats_.examples += n;
    if (n == 0) return Status::Ok();
    if (static_cast<int64_t>(batch.texts.size()) != n) {
      for (Prediction& p : *out) p = Prediction::Failure("a chat model needs text inputs (JSONL records)", "input");
      stats_.abstentions += n;
      return InvalidArgumentError("model '" + info_.name +
                                  "' is a chat model: its inputs are JSON records (a .jsonl "
                                  "file or the chat API), not tensors");
    }
    if (n == 1) {  // one input (the chat front door): on this thread, no handoff
      (*out)[0] = Call(batch.texts[0], batch.cancelled, batch.tokens);
    } else {
      std::vector<std::function<void()>> tasks;
      for (int64_t i = 0; i < n; ++i)
        tasks.push_back([this, &batch, out, i] { (*out)[i] = Call(batch.texts[i], batch.cancelled); });
      pool_.RunAll(std::move(tasks));
    }
    uint64_t abstained = 0;
    for (const Prediction& p : *out) abstained += p.answer.empty();
    stats_.abstentions += abstained;
    return Status::Ok();
  }

  // The prompt's characters as Pay estimates them, the completion at max_tokens.
  double EstimateCost(const InputView& examples, int64_t i) const override {
    if (i < 0 || i >= static_cast<int64_t>(examples.texts.size())) return NAN;
    auto built =
        BuildChatBody(spec_, spec_.model.empty() ? info_.name : spec_.model, examples.texts[i], info_.messages);
    if (!built.ok()) return 0;  // the call will fail on its input: nothing is sent, nothing paid
    return Usd(EstimatedTokens(spec_.system.size() + built->prompt_bytes), spec_.max_tokens);
  }

 private:
  // `cancelled`: the run's flag (InputView::cancelled): no attempt starts once it is
  // set, and the one in flight is aborted. `tokens`: the completion is streamed there
  // as it arrives (backends/chat_stream.h), and read whole all the same.
  Prediction Call(const std::string& record_text, const std::atomic<bool>* cancelled, TokenSink* tokens = nullptr) {
    // The request body: pieces of its own and views of the record, never a copy of a
    // message (backends/chat_body.h).
    auto built = BuildChatBody(spec_, spec_.model.empty() ? info_.name : spec_.model, record_text, info_.messages);
    if (!built.ok()) return Prediction::Failure(built.status().message(), "input");
    UpstreamCall q;
    q.built = &*built;
    q.body = built->Views(record_text);
    std::string stream_fields;
    if (tokens) q.body = StreamingBody(std::move(q.body), &stream_fields);
    q.tokens = tokens;
    q.chars_in = spec_.system.size() + built->prompt_bytes;
    q.deadline = Clock::now() + std::chrono::microseconds(static_cast<int64_t>(spec_.timeout_ms * 1000));
    q.cancelled = cancelled;
    if (!hedge_) {
      Side side = Walk(0, chain_, 0, q, nullptr);
      if (!side.answered) return Failed(std::move(side.p), side.error, side.kind, cancelled);
      endpoints_[side.endpoint]->stats->ok++;
      return std::move(side.p);
    }
    return Hedged(q);
  }

  // The call raced between url (and its fallbacks) and hedge_url (see the top).
  Prediction Hedged(UpstreamCall& q) {
    Side sides[2];
    std::atomic<bool> no_failover{false};  // side 0 ended on what hedge_url would repeat
    bool started = false;
    const int winner = http::Race(
        [&](int s, http::Stopper* stopper) {
          if (s == 1 && no_failover.load()) return false;
          sides[s] = s == 0 ? Walk(0, chain_, 0, q, stopper) : Walk(chain_, chain_ + 1, 1, q, stopper);
          if (s == 0 && !sides[0].answered && !sides[0].walk_on) no_failover = true;
          return sides[s].answered;
        },
        hedge_delay_, q.deadline, &started);
    if (sides[1].tried > 0) stats_.hedges++;
    if (winner < 0) {
      AddPaid(sides[1].p, &sides[0].p);
      if (sides[1].tried == 0) return Failed(std::move(sides[0].p), sides[0].error, sides[0].kind, q.cancelled);
      const std::string kind = sides[0].kind == sides[1].kind ? sides[0].kind : sides[0].kind + "+" + sides[1].kind;
      return Failed(std::move(sides[0].p), sides[0].error + "; " + sides[1].error, kind, q.cancelled);
    }
    if (winner == 1) stats_.hedge_wins++;
    Side& won = sides[winner];
    Side& lost = sides[1 - winner];
    endpoints_[won.endpoint]->stats->ok++;
    if (lost.answered) {  // its response arrived before it was stopped: paid too
      endpoints_[lost.endpoint]->stats->late++;
      stats_.hedges_paid_twice++;
    }
    AddPaid(lost.p, &won.p);
    return std::move(won.p);
  }

  // Asks endpoints [first, last) in turn, each with its retries, while the one before
  // failed in a way the next may not repeat (see the top); `stopper`: a race's side,
  // `side_index` its index (0 unhedged).
  Side Walk(size_t first, size_t last, int side_index, UpstreamCall& q, http::Stopper* stopper) {
    Side side;
    SideSink sink(&q, side_index);
    std::optional<ChatStreamReader> stream;
    http::Request request;
    request.method = "POST";
    request.body = q.body;
    request.headers = {{"Content-Type", "application/json"}};
    request.cancelled = q.cancelled;
    request.stopper = stopper;
    // Some servers bill a failed attempt: pay what its usage says.
    request.on_refused = [this, &side](const httplib::Response& res) {
      const json err_body = json::parse(res.body, nullptr, false);
      if (err_body.is_object() && err_body.contains("usage")) Pay(err_body, 0, 0, &side.p);
    };
    for (size_t e = first; e < last; ++e) {
      ChatEndpoint& ep = *endpoints_[e];
      request.path = ep.path;
      side.tried++;
      if (q.tokens) {
        stream.emplace(&sink);
        request.on_stream = [&stream](std::string_view piece) { return stream->Feed(piece); };
      }
      const http::Response a = ep.client.Send(request, q.deadline);
      std::string why = a.error, kind = a.kind;
      if (stream && !stream->error().empty()) {
        why = stream->error();
        kind = "bad_response";
      } else if (a.ok) {
        why = Read(a, stream ? &*stream : nullptr, *q.built, q.chars_in, &side.p);
        if (why.empty() && q.tokens && !sink.Claim()) {  // the other side's text went to the client
          why = "the other side of the race was streaming";
          kind = "stopped";
        } else if (why.empty()) {
          side.answered = true;
          side.endpoint = static_cast<int>(e);
          return side;
        } else {
          kind = "bad_response";
        }
      }
      (kind == "stopped" ? ep.stats->stopped : kind == "cancelled" ? ep.stats->cancelled : ep.stats->failed)++;
      if (endpoints_.size() > 1) why = ep.label + ": " + why;
      side.error += (side.error.empty() ? "" : "; ") + why;
      side.kind = kind;
      side.walk_on = !a.ok && a.retryable && !a.streamed && Clock::now() < q.deadline;
      if (!side.walk_on) break;
    }
    return side;
  }

  // Reads a 200 response (streamed: as `stream` read it) of the request `built` into
  // *p, paying its usage; "" or why it is no completion.
  std::string Read(const http::Response& a, const ChatStreamReader* stream, const ChatBody& built, size_t chars_in,
                   Prediction* p) {
    auto read = stream && a.streamed ? stream->Completion() : StatusOr<json>(json::parse(a.body, nullptr, false));
    if (!read.ok()) return read.status().message();
    const json res = std::move(*read);
    std::string why;
    if (!ReadChatReply(res, built, reader_, p, &why)) return why;
    Pay(res, chars_in, p->text.size(), p);
    if (!p->answer.empty()) p->score = AnswerProbability(res, p->answer);
    return "";
  }

  // The call failed: no answer. What its attempts' usage said was paid stays paid.
  Prediction Failed(Prediction p, const std::string& why, std::string kind, const std::atomic<bool>* cancelled) {
    if (IsCancelled(cancelled)) kind = "cancelled";
    if (kind != "cancelled") stats_.errors++;  // a cancelled call is not the model's failure
    p.error = "chat model '" + info_.name + "': " + why;
    p.failed = true;
    p.failure_kind = kind;
    if (std::isnan(p.cost)) p.cost = 0;  // no attempt returned usage: nothing paid
    return p;
  }

  // Adds the cost of a response to *p: its usage at the prices, or an estimate from
  // the characters sent and received when it has none or an implausible one (a figure
  // that is not an integer in [0, kMaxUsageTokens]).
  void Pay(const json& res, size_t chars_in, size_t chars_out, Prediction* p) {
    int64_t in = 0, out = 0;
    bool have = false;
    if (auto u = res.find("usage"); u != res.end() && u->is_object()) {
      auto num = [&](const char* k) -> int64_t {
        auto it = u->find(k);
        if (it == u->end() || !it->is_number_integer()) return -1;
        if (it->is_number_unsigned()) {  // past int64_t too, e.g. 2^64 - 1
          const uint64_t v = it->get<uint64_t>();
          return v <= static_cast<uint64_t>(kMaxUsageTokens) ? static_cast<int64_t>(v) : -1;
        }
        const int64_t v = it->get<int64_t>();
        return v >= 0 && v <= kMaxUsageTokens ? v : -1;
      };
      in = num("prompt_tokens");
      out = num("completion_tokens");
      have = in >= 0 && out >= 0;
    }
    if (!have) {
      in = EstimatedTokens(chars_in);
      out = EstimatedTokens(chars_out);
      stats_.estimated_costs++;
    }
    const double usd = Usd(in, out);
    p->cost = (std::isnan(p->cost) ? 0.0 : p->cost) + usd;
    p->tokens_in = AddTokens(p->tokens_in, in);
    p->tokens_out = AddTokens(p->tokens_out, out);
    AddTokens(&stats_.tokens_in, in);
    AddTokens(&stats_.tokens_out, out);
    stats_.usd.fetch_add(usd, std::memory_order_relaxed);
  }

  // Tokens of a text of `chars` characters, estimated without a tokenizer: 4 a token.
  static int64_t EstimatedTokens(size_t chars) { return static_cast<int64_t>((chars + 3) / 4); }
  double Usd(int64_t in, int64_t out) const {
    return (in * spec_.usd_per_mtok_in + out * spec_.usd_per_mtok_out) / 1e6;
  }

  // The probability of the answer's token, from the response's log-probabilities when
  // it has them (the last token holding the answer); NaN otherwise.
  static float AnswerProbability(const json& res, const std::string& answer) {
    const json& c0 = res["choices"][0];
    if (!c0.contains("logprobs") || !c0["logprobs"].is_object()) return NAN;
    const json& content = c0["logprobs"]["content"];
    if (!content.is_array()) return NAN;
    for (size_t k = content.size(); k-- > 0;) {
      const json& t = content[k];
      if (!t.is_object() || !t.contains("token") || !t["token"].is_string() || !t.contains("logprob") ||
          !t["logprob"].is_number())
        continue;
      if (t["token"].get<std::string>().find(answer) != std::string::npos)
        return static_cast<float>(std::exp(std::min(0.0, t["logprob"].get<double>())));
    }
    return NAN;
  }

  const BackendInfo info_;
  const ModelSpec spec_;
  const AnswerReader reader_;
  std::vector<std::unique_ptr<ChatEndpoint>> endpoints_;  // url, fallbacks, then hedge_url
  const size_t chain_;                                    // url and the fallbacks
  const bool hedge_;                                      // the last endpoint is hedge_url
  const std::chrono::microseconds hedge_delay_;
  ThreadPool pool_;  // max_concurrency workers for a batch's inputs
};

}  // namespace

StatusOr<std::unique_ptr<Backend>> CreateOpenAiBackend(const ModelSpec& spec, const BackendOptions& backend) {
  const std::string what = "model '" + spec.name + "': ";
  if (spec.url.empty()) return InvalidArgumentError(what + "a chat model needs url = \"http://host:port/v1\"");
  // The addresses: url, the fallbacks, hedge_url (the last two without a path take url's).
  std::vector<EndpointAddress> addresses;
  COE_ASSIGN_OR_RETURN(EndpointAddress url, http::CheckAddress(spec.name, "url", spec.url));
  addresses.push_back(url);
  for (const std::string& f : spec.fallbacks) {  // (ParseCatalogue refused duplicates and url itself)
    COE_ASSIGN_OR_RETURN(EndpointAddress a, http::CheckAddress(spec.name, "fallbacks", f, &url));
    addresses.push_back(std::move(a));
  }
  if (!spec.hedge_url.empty()) {
    COE_ASSIGN_OR_RETURN(EndpointAddress hedge, http::CheckAddress(spec.name, "hedge_url", spec.hedge_url, &url));
    addresses.push_back(std::move(hedge));
  }
  COE_RETURN_IF_ERROR(http::CheckHedge(spec));
  WarmHttplibForTsan();  // (TSan builds only) before any thread that calls this backend
  // In messages mode the conversation is the prompt: a template is not needed, nor used.
  if (spec.prompt.empty() && !backend.messages)
    return InvalidArgumentError(what + "a chat model needs a prompt template, e.g. prompt = \"{question}\"");
  auto fields = PromptFields(spec.prompt);
  if (!fields.ok()) return fields.status().WithPrefix(what + "prompt");
  if (backend.messages) fields->clear();
  std::string key;
  if (!spec.api_key_env.empty()) {
    const char* v = std::getenv(spec.api_key_env.c_str());
    if (!v || !*v)
      return FailedPreconditionError(what + "api_key_env names the environment variable " + spec.api_key_env +
                                     ", which is not set");
    key = v;
  }
  auto reader = AnswerReader::Create(spec.answer, spec.labels);
  if (!reader.ok()) return reader.status().WithPrefix("model '" + spec.name + "'");
  if (!(spec.timeout_ms > 0)) return InvalidArgumentError(what + "timeout_ms must be positive");
  BackendInfo info;
  info.name = spec.name;
  info.kind = "openai";
  info.labels = spec.labels;
  info.open_labels = true;
  info.text_inputs = true;
  info.fields = *fields;
  info.messages = backend.messages;
  info.pinned = PinnedParameters(spec);
  info.cost_unit = "usd";
  info.temperature = spec.temperature;
  info.waits = true;
  http::Options options;  // each endpoint's, with its host
  options.timeout_ms = spec.timeout_ms;
  options.retries = spec.retries;
  options.max_response_bytes = static_cast<uint64_t>(spec.max_response_mb * (1 << 20));
  options.max_connections = spec.max_concurrency;
  options.headers = {{"Accept", "application/json"}};
  if (!key.empty()) options.headers.emplace("Authorization", "Bearer " + key);
  return std::unique_ptr<Backend>(
      new OpenAiBackend(std::move(info), spec, options, addresses, !spec.hedge_url.empty(), std::move(*reader)));
}

}  // namespace coe
