#include "coe/catalogue.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <set>

#include "base/numbers.h"
#include "base/toml.h"
#include "base/words.h"
#include "coe/files.h"
#include "coe/tensor.h"

namespace coe {

const double* ModelSpec::Cost(std::string_view key) const {
  auto it = costs.find(std::string(key));
  return it == costs.end() ? nullptr : &it->second;
}

const ModelSpec* Catalogue::Find(std::string_view name) const {
  for (const ModelSpec& m : models)
    if (m.name == name) return &m;
  return nullptr;
}

StatusOr<Catalogue> ReadCatalogue(const std::string& path) {
  COE_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  std::string dir = std::filesystem::path(path).parent_path().string();
  return ParseCatalogue(text, path, dir);
}

namespace {

// A TOML key: bare when it can be (energy_j), else quoted ("gpu seconds").
std::string TomlKey(const std::string& key) {
  const bool bare = !key.empty() && std::all_of(key.begin(), key.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
  return bare ? key : TomlQuote(key);
}

bool IsCostKey(std::string_view key) {
  return std::find(std::begin(kCostKeyOrder), std::end(kCostKeyOrder), key) != std::end(kCostKeyOrder);
}

// A key that is no setting and no cost figure: an error with the closest known key
// (usd_per_mtok_input -> usd_per_mtok_in), or where a cost figure of another name goes.
Status UnknownKey(const std::string& key, const toml::node& v, const std::string& where, const std::string& scope) {
  std::vector<std::string_view> known(std::begin(kCatalogueSettings), std::end(kCatalogueSettings));
  known.insert(known.end(), std::begin(kCostKeyOrder), std::end(kCostKeyOrder));
  const std::string near = ClosestWord(key, known);
  std::string msg = where + ": unknown key '" + key + "' in " + scope;
  if (!near.empty()) msg += ": did you mean '" + near + "'?";
  if (v.is_number()) {
    std::string figures;
    for (const char* k : kCostKeyOrder) figures += (figures.empty() ? "" : ", ") + std::string(k);
    const std::string where_costs = "goes in the costs table: costs = { " + TomlKey(key) + " = ... }";
    msg += near.empty() ? ": a cost figure other than " + figures + " " + where_costs
                        : " (a cost figure of another name " + where_costs + ")";
  } else if (near.empty()) {
    msg += " (see coe/catalogue.h for the keys a model takes)";
  }
  return InvalidArgumentError(msg);
}

// One key's value, read as a setting: messages "<file:line:col>: <scope>: key '<key>': ...".
struct Setting {
  const std::string& key;
  const toml::node& v;
  std::string where;         // file:line:column of the value
  const std::string& scope;  // "model 'x'" or "[defaults]"

  Status Bad(const std::string& what) const {
    return InvalidArgumentError(where + ": " + scope + ": key '" + key + "': " + what);
  }
  Status Str(std::string* out) const {
    auto s = v.value<std::string>();
    if (!s) return Bad("expected a string");
    *out = *s;
    return Status::Ok();
  }
  // A number, or (per_channel) an array of them: one per channel.
  Status Nums(std::vector<double>* out) const {
    if (const toml::array* a = v.as_array()) {
      if (a->empty()) return Bad("expected a number or an array of one per channel");
      out->clear();
      for (const toml::node& e : *a) {
        auto d = e.value<double>();
        if (!d || !std::isfinite(*d)) return Bad("expected finite numbers, one per channel");
        out->push_back(*d);
      }
      return Status::Ok();
    }
    out->assign(1, 0.0);
    return Num(&(*out)[0]);
  }
  Status Num(double* out) const {
    auto d = v.value<double>();
    if (!d) return Bad("expected a number");
    if (!std::isfinite(*d)) return Bad("expected a finite number");
    *out = *d;
    return Status::Ok();
  }
};

// One cost figure: a finite number >= 0. `shown` is how messages name it (a key of
// the model, or costs.NAME).
Status ApplyCost(ModelSpec& m, const std::string& key, const toml::node& v, const std::string& where,
                 const std::string& scope, const std::string& shown) {
  const Setting s{shown, v, where, scope};
  if (key.empty()) return s.Bad("a cost figure needs a name");
  double d = 0;
  COE_RETURN_IF_ERROR(s.Num(&d));
  if (d < 0) return s.Bad("a cost figure must be >= 0");
  m.costs[key] = d;
  return Status::Ok();
}

// The costs table: cost figures of any name. One table (a model's or [defaults]) may
// not give a figure both here and as a key of its own.
Status ApplyCosts(ModelSpec& m, const toml::node& v, const toml::table& owner, const std::string& source,
                  const std::string& scope) {
  const toml::table* t = v.as_table();
  if (!t)
    return InvalidArgumentError(TomlWhere(source, v) + ": " + scope + ": 'costs' must be a table of cost " +
                                "figures (costs = { energy_j = 3 } or [models.NAME.costs])");
  for (auto&& [k, cv] : *t) {
    const std::string key(k.str());
    if (owner.contains(key))
      return InvalidArgumentError(TomlWhere(source, cv) + ": " + scope + ": cost figure '" + key +
                                  "' is given twice (as a key and in costs)");
    COE_RETURN_IF_ERROR(ApplyCost(m, key, cv, TomlWhere(source, cv), scope, "costs." + key));
  }
  return Status::Ok();
}

// The settings of a chat model (backend = "openai").
Status ApplyChatKey(ModelSpec& m, const Setting& s, int& samples) {
  const std::string& key = s.key;
  auto bad = [&](const std::string& what) { return s.Bad(what); };
  auto str = [&](std::string* out) { return s.Str(out); };
  auto num = [&](double* out) { return s.Num(out); };
  if (key == "model") return str(&m.model);
  if (key == "api_key_env") return str(&m.api_key_env);
  if (key == "system") return str(&m.system);
  if (key == "prompt") return str(&m.prompt);
  if (key == "answer") {
    COE_RETURN_IF_ERROR(str(&m.answer));
    const bool regex = m.answer.rfind("regex=", 0) == 0 && m.answer.size() > 6;
    if (!regex && m.answer != "choice" && m.answer != "number" && m.answer != "label" && m.answer != "text")
      return bad("expected choice, number, label, text or regex=RE");
    return Status::Ok();
  }
  if (key == "max_tokens" || key == "max_concurrency" || key == "samples") {
    double r = 0;
    COE_RETURN_IF_ERROR(num(&r));
    const double hi = key == "samples" ? 64 : key == "max_concurrency" ? 1024 : 1 << 20;
    if (r < 1 || r > hi || r != std::floor(r)) return bad("expected an integer in [1, " + FormatDouble(hi) + "]");
    (key == "max_tokens" ? m.max_tokens : key == "max_concurrency" ? m.max_concurrency : samples) = static_cast<int>(r);
    return Status::Ok();
  }
  if (key == "temperature") {
    COE_RETURN_IF_ERROR(num(&m.temperature));
    if (m.temperature < 0 || m.temperature > 2) return bad("expected a number in [0, 2]");
    return Status::Ok();
  }
  if (key == "pin") {
    const toml::array* a = s.v.as_array();
    if (!a) return bad("expected an array of parameter names (temperature, max_tokens)");
    m.pin.clear();
    for (const toml::node& e : *a) {
      auto name = e.value<std::string>();
      if (!name || std::find(std::begin(kPinnable), std::end(kPinnable), *name) == std::end(kPinnable))
        return bad("expected parameters the catalogue sets: temperature, max_tokens");
      if (std::find(m.pin.begin(), m.pin.end(), *name) != m.pin.end()) return bad("'" + *name + "' is pinned twice");
      m.pin.push_back(*name);
    }
    return Status::Ok();
  }
  if (key == "fallbacks") {
    const toml::array* a = s.v.as_array();
    if (!a) return bad("expected an array of addresses, e.g. [\"http://host2:8080\"]");
    m.fallbacks.clear();
    for (const toml::node& e : *a) {
      auto url = e.value<std::string>();
      if (!url) return bad("expected an array of strings (addresses such as \"http://host2:8080\")");
      auto address = ParseEndpointAddress(*url);
      if (!address.ok()) return bad(address.status().message());
      m.fallbacks.push_back(*url);
    }
    return Status::Ok();
  }
  if (key == "usd_per_mtok_in" || key == "usd_per_mtok_out") {
    double price = 0;
    COE_RETURN_IF_ERROR(num(&price));
    if (price < 0) return bad("a price must be >= 0");
    (key == "usd_per_mtok_in" ? m.usd_per_mtok_in : m.usd_per_mtok_out) = price;
    return Status::Ok();
  }
  std::fprintf(stderr, "coe: catalogue key '%s' is listed as a chat setting but has no handler\n", key.c_str());
  std::abort();  // a broken invariant: kChatSettings and this function disagree
}

constexpr std::string_view kChatSettings[] = {
    "model",   "api_key_env", "system",          "prompt",           "answer", "max_tokens", "max_concurrency",
    "samples", "temperature", "usd_per_mtok_in", "usd_per_mtok_out", "pin",    "fallbacks"};

// What a model's fallbacks (their values checked one by one as read) mean together: a
// chat model's, each another endpoint than url and than the others (an address
// without a path takes url's, so "http://h:1" is "http://h:1/v1" when url has /v1).
// `value`: the fallbacks node, for its place in the file.
Status CheckFallbacks(const ModelSpec& m, const toml::node& value, const std::string& source,
                      const std::string& scope) {
  const std::string key = "fallbacks";
  const Setting s{key, value, TomlWhere(source, value), scope};
  if (m.backend != "openai")
    return s.Bad(
        "only a chat model (backend = \"openai\") takes fallbacks; a remote model fails over to its "
        "hedge_url with hedge_ms = 0");
  auto url = ParseEndpointAddress(m.url);
  if (!url.ok()) return Status::Ok();                                            // the backend names a bad url
  std::map<std::string, std::string> seen = {{url->server + url->path, m.url}};  // address -> as written
  for (const std::string& f : m.fallbacks) {
    auto a = ParseEndpointAddress(f, &*url);
    if (!a.ok()) return s.Bad(a.status().message());
    const auto [it, added] = seen.emplace(a->server + a->path, f);
    if (added) continue;
    const std::string same =
        it->second == f ? "" : " (an address without a path takes url's: it is '" + it->second + "')";
    if (a->server == url->server && a->path == url->path)
      return s.Bad("'" + f + "' is url itself" + same + ": a fallback is another endpoint of the model");
    return s.Bad("'" + f + "' is listed twice" + same);
  }
  return Status::Ok();
}

// One key of a model's table (or of [defaults], `scope`): a setting, a cost figure, or
// the costs table; anything else is an unknown key.
Status ApplyKey(ModelSpec& m, const std::string& key, const toml::node& v, const toml::table& owner,
                const std::string& source, const std::string& scope, const std::string& base_dir, int& samples) {
  const std::string where = TomlWhere(source, v);
  if (IsCostKey(key)) return ApplyCost(m, key, v, where, scope, key);
  if (std::find(std::begin(kCatalogueSettings), std::end(kCatalogueSettings), key) == std::end(kCatalogueSettings))
    return UnknownKey(key, v, where, scope);
  if (key == "costs") return ApplyCosts(m, v, owner, source, scope);
  if (std::find(std::begin(kChatSettings), std::end(kChatSettings), key) != std::end(kChatSettings))
    return ApplyChatKey(m, Setting{key, v, where, scope}, samples);
  const Setting s{key, v, where, scope};
  auto bad = [&](const std::string& what) { return s.Bad(what); };
  auto str = [&](std::string* out) { return s.Str(out); };
  auto num = [&](double* out) { return s.Num(out); };
  if (key == "site") {
    COE_RETURN_IF_ERROR(str(&m.site));
    if (m.site != "edge" && m.site != "cloud") return bad("expected \"edge\" or \"cloud\"");
  } else if (key == "backend") {
    COE_RETURN_IF_ERROR(str(&m.backend));
  } else if (key == "path") {
    COE_RETURN_IF_ERROR(str(&m.path));
    std::filesystem::path p(m.path);
    if (p.is_relative() && !base_dir.empty()) m.path = (std::filesystem::path(base_dir) / p).string();
  } else if (key == "url") {
    COE_RETURN_IF_ERROR(str(&m.url));
  } else if (key == "hedge_url") {
    COE_RETURN_IF_ERROR(str(&m.hedge_url));
  } else if (key == "hedge_ms") {
    COE_RETURN_IF_ERROR(num(&m.hedge_ms));
    if (m.hedge_ms < 0 || m.hedge_ms > 3.6e6) return bad("expected milliseconds in [0, 3600000]");
  } else if (key == "remote_model") {
    COE_RETURN_IF_ERROR(str(&m.remote_model));
  } else if (key == "description") {
    COE_RETURN_IF_ERROR(str(&m.description));
  } else if (key == "input_shape") {
    const toml::array* a = v.as_array();
    if (!a) return bad("expected an array of positive integers");
    m.input_shape.clear();
    int64_t values = 1;
    for (const toml::node& e : *a) {
      std::optional<int64_t> d = TomlInteger(e);
      if (!d || *d <= 0) return bad("expected an array of positive integers");
      m.input_shape.push_back(*d);
      if (*d > kMaxExampleValues || (values *= *d) > kMaxExampleValues)
        return bad("an example of this shape has more than " + std::to_string(kMaxExampleValues) +
                   " values (the most coe takes)");
    }
    if (m.input_shape.empty() || m.input_shape.size() > kMaxExampleDims)
      return bad("expected 1 to " + std::to_string(kMaxExampleDims) + " axes (one example, batch axis excluded)");
  } else if (key == "labels") {
    const toml::array* a = v.as_array();
    if (!a) return bad("expected an array of strings");
    m.labels.clear();
    std::set<std::string> seen;
    for (const toml::node& e : *a) {
      auto s = e.value<std::string>();
      if (!s || s->empty()) return bad("expected an array of non-empty strings");
      if (!seen.insert(*s).second) return bad("label '" + *s + "' is listed twice");
      m.labels.push_back(*s);
    }
  } else if (key == "scale") {
    COE_RETURN_IF_ERROR(num(&m.scale));
  } else if (key == "mean") {
    COE_RETURN_IF_ERROR(s.Nums(&m.mean));
  } else if (key == "std") {
    COE_RETURN_IF_ERROR(s.Nums(&m.std));
    for (double d : m.std)
      if (d == 0) return bad("std must not be 0");
  } else if (key == "resize") {
    std::optional<int64_t> r = TomlInteger(v);
    if (!r || *r <= 0 || *r > 65536) return bad("expected the shorter side's length in pixels, 1 to 65536");
    m.resize = *r;
  } else if (key == "networks") {
    std::optional<int64_t> r = TomlInteger(v);
    if (!r || *r <= 0 || *r > 1024) return bad("expected a number of networks, 1 to 1024");
    m.networks = static_cast<int>(*r);
  } else if (key == "input_bytes") {
    COE_RETURN_IF_ERROR(num(&m.input_bytes));
    if (m.input_bytes < 0) return bad("must be >= 0");
  } else if (key == "timeout_ms") {
    COE_RETURN_IF_ERROR(num(&m.timeout_ms));
    if (m.timeout_ms <= 0) return bad("must be > 0");
  } else if (key == "max_response_mb") {
    COE_RETURN_IF_ERROR(num(&m.max_response_mb));
    if (m.max_response_mb <= 0 || m.max_response_mb > 65536) return bad("expected a size in (0, 65536] MiB");
  } else if (key == "wire") {
    COE_RETURN_IF_ERROR(str(&m.wire));
    if (m.wire != "auto" && m.wire != "json" && m.wire != "binary") return bad("expected auto, json or binary");
  } else if (key == "retries") {
    double r = 0;
    COE_RETURN_IF_ERROR(num(&r));
    if (r < 0 || r > 10 || r != std::floor(r)) return bad("expected an integer in [0,10]");
    m.retries = static_cast<int>(r);
  } else {
    std::fprintf(stderr, "coe: catalogue key '%s' is listed in kCatalogueSettings but has no handler\n", key.c_str());
    std::abort();  // a broken invariant: kCatalogueSettings and ApplyKey disagree
  }
  return Status::Ok();
}

}  // namespace

StatusOr<Catalogue> ParseCatalogue(std::string_view text, const std::string& source, const std::string& base_dir) {
  COE_ASSIGN_OR_RETURN(toml::table root, ParseToml(text, source));
  Catalogue cat;
  cat.source = source;
  for (auto&& [k, v] : root) {
    std::string key(k.str());
    if (key != "defaults" && key != "models") {
      return InvalidArgumentError(TomlWhere(source, v) + ": unknown top-level key '" + key +
                                  "' (expected [defaults] and [models.NAME] tables)");
    }
  }
  const toml::table* defaults = root["defaults"].as_table();
  if (root.contains("defaults") && !defaults) return InvalidArgumentError(source + ": 'defaults' must be a table");
  const toml::table* models = root["models"].as_table();
  if (!models || models->empty()) return InvalidArgumentError(source + ": no [models.NAME] tables");
  for (auto&& [k, v] : *models) {
    ModelSpec m;
    m.name = std::string(k.str());
    const toml::table* t = v.as_table();
    const std::string where = TomlWhere(source, v);
    if (!t) return InvalidArgumentError(where + ": models." + m.name + " must be a table");
    if (m.name.empty() || m.name.find('|') != std::string::npos || m.name == "id" || m.name == "label") {
      return InvalidArgumentError(where + ": invalid model name '" + m.name +
                                  "' (must be non-empty, without '|', not 'id' or 'label')");
    }
    int samples = 1;
    if (defaults) {
      for (auto&& [dk, dv] : *defaults)
        COE_RETURN_IF_ERROR(ApplyKey(m, std::string(dk.str()), dv, *defaults, source, "[defaults]", base_dir, samples));
    }
    const std::string scope = "model '" + m.name + "'";
    for (auto&& [mk, mv] : *t)
      COE_RETURN_IF_ERROR(ApplyKey(m, std::string(mk.str()), mv, *t, source, scope, base_dir, samples));
    if (m.networks > 0 && m.backend != "onnx")
      return InvalidArgumentError(where + ": model '" + m.name + "': key 'networks' is read by backend \"onnx\" only" +
                                  " (this model's backend is " +
                                  (m.backend.empty() ? std::string("not set") : "\"" + m.backend + "\"") +
                                  "; onednn's copies share one set of weights)");
    const toml::node* fallbacks = t->get("fallbacks");
    if (!fallbacks && defaults) fallbacks = defaults->get("fallbacks");
    if (fallbacks && !m.fallbacks.empty()) COE_RETURN_IF_ERROR(CheckFallbacks(m, *fallbacks, source, scope));
    if (samples > 1) {
      // k completions vote as k members NAME#1 .. NAME#k (recordings get k columns).
      if (m.model.empty()) m.model = m.name;
      const std::string base = m.name;
      for (int k = 1; k <= samples; ++k) {
        ModelSpec one = m;
        one.name = base + "#" + std::to_string(k);
        one.sample = k;
        cat.models.push_back(std::move(one));
      }
      continue;
    }
    for (const auto& [key, values] : {std::pair<const char*, const std::vector<double>&>{"mean", m.mean},
                                      std::pair<const char*, const std::vector<double>&>{"std", m.std}})
      if (values.size() > 1 && (m.input_shape.empty() || m.input_shape[0] != static_cast<int64_t>(values.size())))
        return InvalidArgumentError(where + ": model '" + m.name + "': key '" + key +
                                    "': " + std::to_string(values.size()) + " values, one per channel, but " +
                                    (m.input_shape.empty() ? std::string("the model has no input_shape")
                                                           : "input_shape's first dimension (channels) is " +
                                                                 std::to_string(m.input_shape[0])));
    if (m.resize > 0 && (m.input_shape.size() != 3 || m.resize < m.input_shape[1] || m.resize < m.input_shape[2]))
      return InvalidArgumentError(where + ": model '" + m.name + "': key 'resize': " + std::to_string(m.resize) +
                                  " needs an input_shape of [channels, height, width] no taller or wider than it "
                                  "(the centre of the resized image is cropped to that size)");
    if (m.input_bytes == 0 && !m.input_shape.empty()) {
      double elems = 1;
      for (int64_t d : m.input_shape) elems *= static_cast<double>(d);
      m.input_bytes = 4 * elems;  // FP32 on the wire
      if (!std::isfinite(m.input_bytes)) {
        return InvalidArgumentError(where + ": model '" + m.name +
                                    "': key 'input_shape': too many elements (set input_bytes)");
      }
    }
    cat.models.push_back(std::move(m));
  }
  return cat;
}

StatusOr<std::vector<std::string>> PromptFields(const std::string& t) {
  std::vector<std::string> fields;
  for (size_t i = 0; i < t.size(); ++i) {
    if (t[i] == '{' && i + 1 < t.size() && t[i + 1] == '{') {
      ++i;
      continue;
    }
    if (t[i] == '}' && i + 1 < t.size() && t[i + 1] == '}') {
      ++i;
      continue;
    }
    if (t[i] == '}') return InvalidArgumentError("a lone '}' at character " + std::to_string(i + 1) + " (write }})");
    if (t[i] != '{') continue;
    const size_t end = t.find('}', i);
    if (end == std::string::npos)
      return InvalidArgumentError("an unclosed '{' at character " + std::to_string(i + 1) + " (write {{ for a brace)");
    const std::string name = t.substr(i + 1, end - i - 1);
    if (name.empty() || name.find('{') != std::string::npos)
      return InvalidArgumentError("an empty or nested field at character " + std::to_string(i + 1));
    if (std::find(fields.begin(), fields.end(), name) == fields.end()) fields.push_back(name);
    i = end;
  }
  return fields;
}

StatusOr<EndpointAddress> ParseEndpointAddress(const std::string& url, const EndpointAddress* base) {
  const size_t scheme_end = url.find("://");
  const std::string scheme = scheme_end == std::string::npos ? "" : url.substr(0, scheme_end);
  if (scheme != "http" && scheme != "https")
    return InvalidArgumentError("'" + url + "' must start with http:// or https://");
  const size_t host = scheme_end + 3;
  const size_t query = std::min(url.find_first_of("?#"), url.size());
  const size_t slash = std::min(url.find('/', host), query);
  const size_t at = url.substr(host, slash - host).rfind('@');  // user info ends at the host's last '@'
  // Errors show neither user info nor a query (either may hold a secret).
  const size_t after_user = at == std::string::npos ? host : host + at + 1;
  const std::string shown = url.substr(0, host) + (at == std::string::npos ? "" : "***@") +
                            url.substr(after_user, query - after_user) +
                            (query < url.size() ? url.substr(query, 1) + "..." : "");
  // A user name or password would be shown wherever the address is (errors, metrics),
  // and httplib would take it for part of the host.
  if (at != std::string::npos)
    return InvalidArgumentError("'" + shown + "' holds a user name or password, which coe never sends (a chat " +
                                "model's key comes from api_key_env)");
  if (query < url.size())
    return InvalidArgumentError("'" + shown + "' has a query or fragment: an address is http(s)://host[:port][/path]");
  EndpointAddress a;
  a.server = url.substr(0, slash);
  a.path = url.substr(slash);
  while (!a.path.empty() && a.path.back() == '/') a.path.pop_back();
  if (a.server.size() <= host) return InvalidArgumentError("'" + url + "' names no host");
  if (base && a.path.empty()) a.path = base->path;
  return a;
}

std::string DefaultCostKey(const std::vector<const ModelSpec*>& models) {
  for (const char* k : kCostKeyOrder) {
    bool all = !models.empty();
    for (const ModelSpec* m : models) all &= m->Cost(k) != nullptr;
    if (all) return k;
  }
  return "";
}

std::string CatalogueToToml(const Catalogue& catalogue, const std::vector<std::string>& comment) {
  std::string out;
  for (const std::string& line : comment) out += TomlCommentLines(line);
  const ModelSpec defaults;
  auto number = [&](const char* key, double v) { out += std::string(key) + " = " + TomlNumber(v) + "\n"; };
  auto string = [&](const char* key, const std::string& v) {
    if (!v.empty()) out += std::string(key) + " = " + TomlQuote(v) + "\n";
  };
  for (const ModelSpec& m : catalogue.models) {
    out += "\n[models." + TomlQuote(m.name) + "]\n";
    std::string other;  // cost figures of other names, in the costs table
    for (const auto& [key, value] : m.costs) {
      if (IsCostKey(key))
        out += key + " = " + TomlNumber(value) + "\n";
      else
        other += (other.empty() ? "costs = { " : ", ") + TomlKey(key) + " = " + TomlNumber(value);
    }
    if (!other.empty()) out += other + " }\n";
    string("site", m.site);
    string("backend", m.backend);
    string("path", m.path);
    string("url", m.url);
    string("remote_model", m.remote_model);
    string("description", m.description);
    if (!m.input_shape.empty()) {
      out += "input_shape = [";
      for (size_t d = 0; d < m.input_shape.size(); ++d) out += (d ? ", " : "") + std::to_string(m.input_shape[d]);
      out += "]\n";
    }
    if (m.input_bytes > 0) number("input_bytes", m.input_bytes);
    if (!m.labels.empty()) {
      out += "labels = [";
      for (size_t l = 0; l < m.labels.size(); ++l) out += (l ? ", " : "") + TomlQuote(m.labels[l]);
      out += "]\n";
    }
    if (m.scale != defaults.scale) number("scale", m.scale);
    if (m.resize != defaults.resize) out += "resize = " + std::to_string(m.resize) + "\n";
    if (m.networks != defaults.networks) out += "networks = " + std::to_string(m.networks) + "\n";
    for (const auto& [key, values, fallback] :
         {std::tuple<const char*, const std::vector<double>&, const std::vector<double>&>{"mean", m.mean,
                                                                                          defaults.mean},
          std::tuple<const char*, const std::vector<double>&, const std::vector<double>&>{"std", m.std,
                                                                                          defaults.std}}) {
      if (values == fallback) continue;
      if (values.size() == 1) {
        number(key, values[0]);
        continue;
      }
      out += std::string(key) + " = [";
      for (size_t c = 0; c < values.size(); ++c) out += (c ? ", " : "") + TomlNumber(values[c]);
      out += "]\n";
    }
    if (m.timeout_ms != defaults.timeout_ms) number("timeout_ms", m.timeout_ms);
    if (m.retries != defaults.retries) out += "retries = " + std::to_string(m.retries) + "\n";
    if (m.max_response_mb != defaults.max_response_mb) number("max_response_mb", m.max_response_mb);
    if (m.wire != defaults.wire) string("wire", m.wire);
    string("hedge_url", m.hedge_url);
    if (m.hedge_ms != defaults.hedge_ms) number("hedge_ms", m.hedge_ms);
    string("model", m.model);
    string("api_key_env", m.api_key_env);
    string("system", m.system);
    string("prompt", m.prompt);
    if (m.answer != defaults.answer) string("answer", m.answer);
    if (m.max_tokens != defaults.max_tokens) out += "max_tokens = " + std::to_string(m.max_tokens) + "\n";
    if (m.temperature != defaults.temperature) number("temperature", m.temperature);
    if (!m.pin.empty()) {
      out += "pin = [";
      for (size_t k = 0; k < m.pin.size(); ++k) out += (k ? ", " : "") + TomlQuote(m.pin[k]);
      out += "]\n";
    }
    if (m.max_concurrency != defaults.max_concurrency)
      out += "max_concurrency = " + std::to_string(m.max_concurrency) + "\n";
    if (m.usd_per_mtok_in != 0) number("usd_per_mtok_in", m.usd_per_mtok_in);
    if (m.usd_per_mtok_out != 0) number("usd_per_mtok_out", m.usd_per_mtok_out);
    if (!m.fallbacks.empty()) {
      out += "fallbacks = [";
      for (size_t f = 0; f < m.fallbacks.size(); ++f) out += (f ? ", " : "") + TomlQuote(m.fallbacks[f]);
      out += "]\n";
    }
  }
  return out;
}

}  // namespace coe
