// coe/backend.h: how a cascade member runs. One narrow interface; each backend is a
// small plug-in (onednn: ONNX on oneDNN; onnx: ONNX on OpenCV DNN; recorded: replays a
// recordings CSV; remote: an Open Inference Protocol endpoint; openai: a chat model).
//
// Contract of Backend::Predict:
//  - It answers every example of the batch: out->size() == batch.size() on return.
//  - Two ways an example gets no label, kept apart:
//    * an *abstention*: the model answered, but nothing could be read from it (a NaN
//      output, a completion with no readable answer, a label outside the catalogue's):
//      label kAbstain, `error` may say why, `failed` false. It is the member's answer:
//      recordings hold it as an empty cell, and it votes for nothing.
//    * a *failure*: there is no answer at all (the call failed: unreachable, timed out,
//      an HTTP error, a response that is not one, a runtime exception): label
//      kAbstain, `failed` true, `error` names the cause with the upstream's own status
//      and text. It is never recorded as an answer (coe record retries it), it is
//      counted and named (RunResult::failures, metrics), and an example left without
//      an answer by it is degraded (coe/cascade.h).
//    Either way one example's trouble never fails the call.
//  - A non-OK Status means nothing was answered at all and is reserved for misuse
//    (a batch of the wrong shape). The engine turns it into failures of every example.
//  - Labels are the backend's own indices into info().labels.
// Thread safety: Predict may be called from several threads at once (a backend that
// cannot run concurrently serializes internally).
// Ownership: CreateBackend returns an owned backend; it keeps no pointer to the
// ModelSpec it was made from.
#ifndef COE_BACKEND_H_
#define COE_BACKEND_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <limits>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "coe/catalogue.h"
#include "coe/dataset.h"
#include "coe/labels.h"
#include "coe/status.h"
#include "coe/tensor.h"

namespace coe {

struct Prediction {
  int label = kAbstain;                                   // index into BackendInfo::labels
  float score = std::numeric_limits<float>::quiet_NaN();  // probability of `label`
  std::vector<float> probs;                               // one per label, or empty
  std::string error;                                      // why the member abstained or failed, when it did
  // The call failed (no answer; see the contract above), as opposed to an abstention.
  bool failed = false;
  // For a failure: a short class for metrics ("http_401", "timeout", "connect",
  // "bad_response", "too_large", "busy", "input", "runtime"); "" otherwise.
  std::string failure_kind;
  // Backends with open labels (BackendInfo::open_labels: a chat model's answers) give
  // the answer as text here ("" = abstain) instead of `label`.
  std::string answer;
  std::string text;  // the raw output the answer was read from, if any
  // A chat model's reply beyond its text, as JSON text ("" = none): its message's
  // tool_calls (then the answer is the calls' canonical form, see openai_backend.cc),
  // and its choice's logprobs when the record asked for them (kept for the client).
  std::string tool_calls, logprobs;
  // Why the model stopped producing `text`, as its endpoint says ("stop", "length",
  // "tool_calls", "content_filter", ...); "" when it does not say.
  std::string finish_reason;
  // What this example cost, when the backend measures it (a chat model: its tokens at
  // its prices, every attempt that returned usage, on any endpoint; a hedged call whose
  // both responses arrived pays both); NaN = the catalogue's figure.
  double cost = std::numeric_limits<double>::quiet_NaN();
  int64_t tokens_in = 0, tokens_out = 0;

  // A failure (see the contract): no answer; `why` and `kind` say what happened.
  static Prediction Failure(std::string why, std::string kind) {
    Prediction p;
    p.error = std::move(why);
    p.failed = true;
    p.failure_kind = std::move(kind);
    return p;
  }
};

struct BackendInfo {
  std::string name;                  // the model's catalogue name
  std::string kind;                  // "onnx", "recorded", "remote"
  std::vector<std::string> labels;   // class names in output order
  std::vector<int64_t> input_shape;  // one example's shape; empty = any
  bool gives_probabilities = false;
  bool open_labels = false;  // answers as text (Prediction::answer), not indices
  // Predict mostly waits on another process (remote, chat models): the engine calls it
  // on threads of its own, never on the compute pool, so that waiting members of many
  // concurrent requests do not hold the cores that local models need (and each other).
  bool waits = false;
  bool text_inputs = false;         // reads InputBatch::texts (JSON objects)
  std::vector<std::string> fields;  // text inputs: the record fields it needs
  // Text inputs: reads a record's `messages` (a conversation), not its fields
  // (BackendOptions::messages).
  bool messages = false;
  // Request parameters whose value the catalogue fixes for this member, by name, as
  // JSON text ({"temperature": "0"}): a record's own value is not sent (a chat model's
  // `pin`, and its sample's seed).
  std::map<std::string, std::string> pinned;
  std::string cost_unit;  // what Prediction::cost counts ("usd"), if it does
  // A chat model's sampling temperature, as its catalogue sets it (0 there by default);
  // 0 for every other backend (their answers are not drawn at random).
  double temperature = 0;
};

// One endpoint of a member that calls several (a chat model: url, each of its
// fallbacks, hedge_url, in that order): its calls by how they ended there. One call
// counts once per endpoint it reached, however many attempts (retries) it made there.
struct EndpointStats {
  explicit EndpointStats(std::string a) : address(std::move(a)) {}
  const std::string address;           // "http://host:port/v1": no user info, query or key
  std::atomic<uint64_t> ok{0};         // it answered, and its answer is the call's
  std::atomic<uint64_t> failed{0};     // no answer: refused, timed out, an HTTP error, unusable
  std::atomic<uint64_t> stopped{0};    // the slower side of a hedged call, stopped in flight
  std::atomic<uint64_t> late{0};       // answered after the other side had won: paid, unused
  std::atomic<uint64_t> cancelled{0};  // the run was cancelled (its client went away)
};

// Counters a backend keeps (for /metrics and reports). Monotonic; relaxed atomics.
struct BackendStats {
  std::atomic<uint64_t> calls{0};
  std::atomic<uint64_t> examples{0};
  std::atomic<uint64_t> abstentions{0};
  std::atomic<uint64_t> bytes_sent{0};
  std::atomic<uint64_t> bytes_received{0};
  std::atomic<uint64_t> errors{0};
  // Members with a hedge_url (remote, chat): calls hedged (or failed over) to it, and
  // those it answered first; chat calls whose both sides' responses arrived before the
  // slower was stopped: both paid (the call's cost counts both).
  std::atomic<uint64_t> hedges{0}, hedge_wins{0}, hedges_paid_twice{0};
  // Chat models: tokens used, dollars spent, and calls whose cost was estimated
  // because the response had no usage.
  std::atomic<uint64_t> tokens_in{0}, tokens_out{0}, estimated_costs{0};
  std::atomic<double> usd{0};
  // Per endpoint (chat models), listed when the backend is made and never changed
  // after: any thread may read it while calls count.
  std::deque<EndpointStats> endpoints;
};

class Backend {
 public:
  virtual ~Backend() = default;
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;

  virtual const BackendInfo& info() const = 0;
  virtual Status Predict(const InputView& batch, std::vector<Prediction>* out) = 0;
  // What a call on example `i` of `examples` is expected to cost, before it is made,
  // in Prediction::cost's unit; NaN (the default) when the backend does not measure
  // its cost (its catalogue figure is the cost). A chat model: its prompt at 4
  // characters a token (the estimate of a reply without usage) and its completion at
  // max_tokens (the most it may be billed), at its prices. Thread-safe; no call made.
  virtual double EstimateCost(const InputView& examples, int64_t i) const {
    (void)examples;
    (void)i;
    return std::numeric_limits<double>::quiet_NaN();
  }
  BackendStats& stats() { return stats_; }

 protected:
  Backend() = default;
  BackendStats stats_;
};

struct BackendOptions {
  int threads = 1;  // concurrent Predict calls the backend should be ready for
  // Chat models: a record is a conversation (its `messages`, sent whole) rather than
  // the fields of the prompt template (a cascade's input = "messages").
  bool messages = false;
};

// Builds the backend `spec.backend` names ("onnx" when empty and a path ends in .onnx,
// "remote" when a url is set). Errors name the model and the file: NotFound for a
// missing model file, InvalidArgument for a corrupt one or a wrong output shape,
// FailedPrecondition for a backend this build lacks.
StatusOr<std::unique_ptr<Backend>> CreateBackend(const ModelSpec& spec, const BackendOptions& options);

// The image decoder of the OpenCV image module (libcoe_images.so, loaded on first use), for
// DatasetOptions::image_loader. FailedPrecondition naming the paths tried when this
// build or installation lacks the module.
StatusOr<ImageLoader> OpenCvImageLoader();

}  // namespace coe

#endif  // COE_BACKEND_H_
