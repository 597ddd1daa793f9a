// coe/catalogue.h: the model catalogue (TOML): what each model costs and how to run it.
//
//   [defaults]              # optional; every key here is inherited by each model
//   backend = "onnx"
//   [models.NAME]
//   usd = 0.0004            # cost figures, each a number >= 0: usd, macs, flops,
//   flops = 3.9e6           #   latency_ms, latency_us, params (kCostKeyOrder)
//   costs = { energy_j = 3 }  # cost figures of any other name (also written as a
//                           #   [models.NAME.costs] table); `--cost energy_j` counts it
//   site = "edge"           # or "cloud": reached over the link (see cost_model.h)
//   backend = "onednn"      # how to run it live: onednn (ONNX on oneDNN) | onnx (ONNX on
//                           #   OpenCV DNN) | recorded | remote | openai
//   path = "m.onnx"         # onnx model or recordings file, relative to the catalogue
//   url = "http://host:8000"  # remote endpoint (Open Inference Protocol)
//   remote_model = "name"   # model name at the remote endpoint (default: NAME)
//   input_shape = [1, 28, 28]  # one example's shape, batch axis excluded
//   input_bytes = 3136      # bytes of one input on the wire (default: 4 x elements)
//   labels = ["a", "b"]     # class names, in output order
//   scale = 0.0039          # preprocessing: x * scale, then (x - mean) / std
//   mean = 0.0              # or one per channel (input_shape[0]): [0.485, 0.456, 0.406]
//   std = 1.0
//   resize = 256            # images: shorter side to 256, centre cropped to input_shape
//   networks = 2            # onnx: the most OpenCV networks (copies of the weights) for
//                           # concurrent calls (default: one a thread within 1 GiB of files)
//   timeout_ms = 5000       # remote: per-call deadline, retries included
//   retries = 2             # remote: retries after the first try
//   max_response_mb = 32    # remote: a larger response is a failure (read no further)
//   wire = "auto"           # remote: "binary" tensors (the binary tensor data extension)
//                           # when the server lists it in GET /v2 (auto), always, or "json"
//   hedge_url = "http://host2:8000"  # remote, openai: another endpoint of the same model:
//   hedge_ms = 50           # asked too when url has not answered within hedge_ms (0: only
//                           # when url failed); the first answer wins, the other is cancelled
//
// A chat model (backend = "openai": any OpenAI-compatible chat-completions endpoint):
//   url = "http://127.0.0.1:8080/v1"  # the API's base
//   model = "llama-3.1-8b"  # its model name (default: NAME)
//   api_key_env = "OPENAI_API_KEY"   # the environment variable holding the key (never
//                           # written to files, logs, errors or metrics)
//   system = "You answer multiple-choice questions."
//   prompt = "Question: {question}\nAnswer with one letter."  # over an input's fields
//   answer = "choice"       # choice (a letter A-J) | number | label | regex=RE | text
//                           # number: the last number, exact (never through a double),
//                           #   canonical: "1,234.50" -> "1234.5", "-0" -> "0", "1.5e3" ->
//                           #   "1500"; regex=RE: the first match (its group 1 if it has
//                           #   one) of a completion of at most 16 KiB; a longer one is
//                           #   no answer (std::regex recurses per character). Every other
//                           #   mode reads any completion up to max_response_mb in linear time
//   max_tokens = 256, temperature = 0.0, timeout_ms, retries, max_concurrency = 8
//                           # max_tokens and temperature are defaults: a chat request's own
//                           # value (`coe serve`) is sent instead, unless pinned:
//   pin = ["temperature"]   # these catalogue values win over a request's (of kPinnable);
//                           # the response says which were overridden (coe/server.h)
//   usd_per_mtok_in = 0.18, usd_per_mtok_out = 0.18   # the price of its tokens: a call
//                           # costs its response's usage at these prices; a response
//                           # without usage, or with a token count that is not an integer
//                           # from 0 to 2^40, is estimated (a token for 4 characters) and
//                           # counted in estimated costs; token sums stop at 2^62 - 1
//   samples = 3             # k completions that vote as k members NAME#1 .. NAME#k
//   fallbacks = ["http://host2:8080", "https://host3/v1"]  # other endpoints of the same
//                           # model, asked in order when url (retries spent) failed to
//                           # connect, timed out, or answered 429 or 5xx; never after
//                           # another 4xx (a bad request fails the same everywhere).
//                           # Same headers and key as url; an address without a path
//                           # takes url's (/v1). All within the call's one deadline.
//                           # hedge_url (without a path: url's) races url and its
//                           # fallbacks: the side of url walks url then the fallbacks,
//                           # the hedge side asks hedge_url alone. Each must be an
//                           # http(s) address, none twice, none url itself; chat models only
//
// Every other key is an error, never a cost figure or a silent default: "cat.toml:3:1:
// unknown key 'usd_per_mtok_input' in model 'x': did you mean 'usd_per_mtok_in'?" (a
// typo of a price would have billed those tokens at $0). A cost figure both given as a
// key and in `costs` of the same table is an error.
//
// Errors: InvalidArgument naming the file, the model and the key for malformed TOML,
// a wrong type, a negative or non-finite cost, an unknown site, an unknown key.
// Thread safety: an immutable value once read.
#ifndef COE_CATALOGUE_H_
#define COE_CATALOGUE_H_

#include <algorithm>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "coe/status.h"

namespace coe {

struct ModelSpec {
  std::string name;
  std::map<std::string, double> costs;  // numeric cost figures by key
  std::string site = "edge";
  std::string backend;
  std::string path;  // resolved against the catalogue's folder
  std::string url;
  std::string remote_model;
  std::vector<int64_t> input_shape;
  double input_bytes = 0;  // 0 = unknown
  std::vector<std::string> labels;
  // Preprocessing (onnx, onednn): x * scale, then (x - mean[c]) / std[c] for the value's
  // channel c, the first dimension of input_shape (NCHW); one value serves every channel.
  double scale = 1.0;
  std::vector<double> mean = {0.0}, std = {1.0};
  // Images read from files (PNG, JPEG, ...): their shorter side resized to this many
  // pixels (bilinear, as torchvision's Resize on a PIL image), then the centre cropped to
  // input_shape's height and width; 0 = taken as they are (they must be that size).
  int64_t resize = 0;
  // backend "onnx": the most OpenCV networks (each its own copy of the weights: OpenCV
  // cannot share them, nor run one network on two threads at once) that serve
  // concurrent calls; 0 = as many as threads while their weights together stay within
  // kOnnxNetworksBytes (at least one). Another backend refuses the key.
  int networks = 0;
  double timeout_ms = 10000;
  int retries = 2;
  double max_response_mb = 32;
  std::string wire = "auto";  // remote: auto | json | binary
  std::string hedge_url;      // remote: a second endpoint of the same model ("" = none)
  double hedge_ms = 0;        // remote: ask hedge_url too after this long (0: when url failed)
  // backend "openai" (see above).
  std::string model, api_key_env, system, prompt;
  std::string answer = "choice";
  int max_tokens = 256;
  double temperature = 0;
  std::vector<std::string> pin;  // of kPinnable: the catalogue's value wins over a request's
  int max_concurrency = 8;
  int sample = 0;  // of `samples = k`: this member is NAME#sample (1..k); 0 = no samples
  double usd_per_mtok_in = 0, usd_per_mtok_out = 0;
  std::vector<std::string> fallbacks;  // openai: other endpoints of the model, in order
  std::string description;

  bool is_cloud() const { return site == "cloud"; }
  // The figure named `key`, if the model has it.
  const double* Cost(std::string_view key) const;
};

// A model's preprocessing of one example's values (ModelSpec scale, mean, std): out =
// in * a[c] + b[c] for channel c of `a.size()` equal parts of the example. Inline: the
// backend modules use it without linking the data layer.
struct Preprocess {
  std::vector<float> a, b;
  void Apply(const float* in, int64_t per_example, float* out) const {
    const int64_t channels = static_cast<int64_t>(a.size()), plane = per_example / channels;
    for (int64_t c = 0; c < channels; ++c) {
      const float ac = a[c], bc = b[c];
      for (int64_t k = c * plane; k < (c + 1) * plane; ++k) out[k] = in[k] * ac + bc;
    }
  }
};
inline Preprocess PreprocessOf(const ModelSpec& m) {
  Preprocess p;
  const size_t channels = std::max(m.mean.size(), m.std.size());
  for (size_t c = 0; c < channels; ++c) {
    const double mean = m.mean.size() == 1 ? m.mean[0] : m.mean[c];
    const double std = m.std.size() == 1 ? m.std[0] : m.std[c];
    p.a.push_back(static_cast<float>(m.scale / std));
    p.b.push_back(static_cast<float>(-mean / std));
  }
  return p;
}

struct Catalogue {
  std::string source;
  std::vector<ModelSpec> models;

  // The model named `name`, or null. Points into this object.
  const ModelSpec* Find(std::string_view name) const;
};

// The fields a chat model's prompt template names ("{question}" -> "question"; "{{"
// and "}}" are literal braces). InvalidArgument naming the character of a malformed
// template.
StatusOr<std::vector<std::string>> PromptFields(const std::string& prompt);

// The cost figure counted when the user names none, the same for every command
// (`coe plan`, `eval`, `run`, `serve`): the first of usd, macs, flops, latency_ms,
// latency_us, params that every model in `models` has; "" when none. (`coe plan` and
// `eval` prefer the recordings' own |cost columns when every model has one.)
std::string DefaultCostKey(const std::vector<const ModelSpec*>& models);
inline constexpr const char* kCostKeyOrder[] = {"usd", "macs", "flops", "latency_ms", "latency_us", "params"};
// The request parameters a chat model may pin (`pin`): those the catalogue sets.
inline constexpr std::string_view kPinnable[] = {"temperature", "max_tokens"};
// The settings a model (or [defaults]) takes besides the cost figures above: every
// other key is refused.
// clang-format off
inline constexpr std::string_view kCatalogueSettings[] = {
    "site", "backend", "path", "url", "remote_model", "description",               // where and how
    "input_shape", "input_bytes", "labels", "scale", "mean", "std", "resize",      // inputs, outputs
    "networks",                                                                    // onnx
    "timeout_ms", "retries", "max_response_mb", "wire", "hedge_url", "hedge_ms",   // remote
    "model", "api_key_env", "system", "prompt", "answer", "max_tokens",            // chat (openai)
    "max_concurrency", "samples", "temperature", "usd_per_mtok_in", "usd_per_mtok_out", "pin", "fallbacks",
    "costs"};                                                                      // other cost figures
// clang-format on

// The weights the onnx backend's networks of one model may hold together when the
// catalogue sets no `networks` (the model file's size counts for each).
inline constexpr int64_t kOnnxNetworksBytes = int64_t{1} << 30;

// An endpoint's address as the catalogue gives it (url, hedge_url, fallbacks):
// "http(s)://host[:port][/path]", split into its server and its path.
struct EndpointAddress {
  std::string server;  // "http://host:port": scheme, host and port
  std::string path;    // "/v1", or "" (no trailing '/')
};
// `url` split; with `base`, an address without a path takes base's (a chat model's
// fallbacks and hedge_url take url's). InvalidArgument (the caller names the model and
// the key) when it does not start with http:// or https://, names no host, holds user
// info ("name:secret@": never sent, so refused; the message shows it as "***@") or a
// query or fragment. So an address as parsed holds no credentials: logs and metrics
// may show it.
StatusOr<EndpointAddress> ParseEndpointAddress(const std::string& url, const EndpointAddress* base = nullptr);

StatusOr<Catalogue> ReadCatalogue(const std::string& path);
// `base_dir` resolves relative paths ("" = current directory).
StatusOr<Catalogue> ParseCatalogue(std::string_view text, const std::string& source, const std::string& base_dir);

// The catalogue as TOML that ParseCatalogue reads back to the same models (paths as
// they are held: resolved; cost figures not in kCostKeyOrder in a costs table).
// `comment` lines go first, as TOML comments.
std::string CatalogueToToml(const Catalogue& catalogue, const std::vector<std::string>& comment = {});

}  // namespace coe

#endif  // COE_CATALOGUE_H_
