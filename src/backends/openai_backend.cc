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
// Streaming: a call given a TokenSink (InputView::tokens: the last tier's single member
// of a streamed chat request) asks for `stream: true` and passes the completion's
// pieces to the sink as they arrive (backends/chat_stream.h), reading the whole as a
// plain call does: the same answer, score, finish_reason and cost. It is retried as
// any call until its first bytes arrived, never after (they may have been passed on).
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
#include "backends/http_client.h"
#include "base/thread_pool.h"
#include "base/tokens.h"

namespace coe {
namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

class OpenAiBackend : public Backend {
 public:
  OpenAiBackend(BackendInfo info, const ModelSpec& spec, http::Options options, std::string path, AnswerReader reader)
      : info_(std::move(info)),
        spec_(spec),
        path_(std::move(path)),
        reader_(std::move(reader)),
        client_(std::move(options)),
        pool_(spec.max_concurrency) {}

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
    auto built = BuildChatBody(spec_, spec_.model.empty() ? info_.name : spec_.model, examples.texts[i]);
    if (!built.ok()) return 0;  // the call will fail on its input: nothing is sent, nothing paid
    return Usd(EstimatedTokens(spec_.system.size() + built->prompt_bytes), spec_.max_tokens);
  }

 private:
  // `cancelled`: the run's flag (InputView::cancelled): no attempt starts once it is
  // set, and the one in flight is aborted. `tokens`: the completion is streamed there
  // as it arrives (backends/chat_stream.h), and read whole all the same.
  Prediction Call(const std::string& record_text, const std::atomic<bool>* cancelled, TokenSink* tokens = nullptr) {
    Prediction p;
    // The request body: pieces of its own and views of the record, never a copy of a
    // message (backends/chat_body.h).
    auto built = BuildChatBody(spec_, spec_.model.empty() ? info_.name : spec_.model, record_text, info_.messages);
    if (!built.ok()) return Prediction::Failure(built.status().message(), "input");
    const size_t prompt_bytes = built->prompt_bytes;
    const auto deadline = Clock::now() + std::chrono::microseconds(static_cast<int64_t>(spec_.timeout_ms * 1000));
    http::Request request;
    request.method = "POST";
    request.path = path_;
    request.body = built->Views(record_text);
    request.headers = {{"Content-Type", "application/json"}};
    request.cancelled = cancelled;
    // Some servers bill a failed attempt: pay what its usage says.
    request.on_refused = [this, &p](const httplib::Response& res) {
      const json err_body = json::parse(res.body, nullptr, false);
      if (err_body.is_object() && err_body.contains("usage")) Pay(err_body, 0, 0, &p);
    };
    std::optional<ChatStreamReader> stream;
    std::string stream_fields;
    if (tokens) {
      stream.emplace(tokens);
      request.body = StreamingBody(std::move(request.body), &stream_fields);
      request.on_stream = [&stream](std::string_view piece) { return stream->Feed(piece); };
    }
    const http::Response a = client_.Send(request, deadline);
    if (stream && !stream->error().empty()) return Failed(std::move(p), stream->error(), "bad_response");
    if (!a.ok) return Failed(std::move(p), a.error, a.kind);
    auto streamed = stream && a.streamed ? stream->Completion() : StatusOr<json>(json::parse(a.body, nullptr, false));
    if (!streamed.ok()) return Failed(std::move(p), streamed.status().message(), "bad_response");
    const json res = std::move(*streamed);
    std::string why;
    if (!ReadChatReply(res, *built, reader_, &p, &why)) return Failed(std::move(p), why, "bad_response");
    Pay(res, spec_.system.size() + prompt_bytes, p.text.size(), &p);
    if (p.answer.empty()) return p;
    p.score = AnswerProbability(res, p.answer);
    return p;
  }

  // The call failed: no answer. What its attempts' usage said was paid stays paid.
  Prediction Failed(Prediction p, const std::string& why, const std::string& kind) {
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
  const std::string path_;
  const AnswerReader reader_;
  http::Client client_;  // at most max_concurrency requests in flight, from any caller
  ThreadPool pool_;      // max_concurrency workers for a batch's inputs
};

}  // namespace

StatusOr<std::unique_ptr<Backend>> CreateOpenAiBackend(const ModelSpec& spec, const BackendOptions& backend) {
  const std::string what = "model '" + spec.name + "': ";
  if (spec.url.empty()) return InvalidArgumentError(what + "a chat model needs url = \"http://host:port/v1\"");
  const size_t scheme_end = spec.url.find("://");
  const std::string scheme = scheme_end == std::string::npos ? "" : spec.url.substr(0, scheme_end);
  if (scheme != "http" && scheme != "https")
    return InvalidArgumentError(what + "url '" + spec.url + "' must start with http:// or https://");
  const size_t slash = spec.url.find('/', scheme_end + 3);
  const std::string host = spec.url.substr(0, slash);
  std::string prefix = slash == std::string::npos ? "" : spec.url.substr(slash);
  while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
  if (host.size() <= scheme_end + 3) return InvalidArgumentError(what + "url '" + spec.url + "' names no host");
  // httplib parses a URL with a function-local static regex inside its uninstrumented
  // library: built here, on the creating thread, before any thread that calls this
  // backend exists (ordered for ThreadSanitizer, which cannot see the library's guard).
  if (!httplib::Client(host).is_valid()) return InvalidArgumentError(what + "url '" + spec.url + "' is not valid");
  WarmHttplibForTsan();
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
  http::Options options;
  options.host = host;
  options.timeout_ms = spec.timeout_ms;
  options.retries = spec.retries;
  options.max_response_bytes = static_cast<uint64_t>(spec.max_response_mb * (1 << 20));
  options.max_connections = spec.max_concurrency;
  options.headers = {{"Accept", "application/json"}};
  if (!key.empty()) options.headers.emplace("Authorization", "Bearer " + key);
  return std::unique_ptr<Backend>(
      new OpenAiBackend(std::move(info), spec, std::move(options), prefix + "/chat/completions", std::move(*reader)));
}

}  // namespace coe
