// The cluster file (versions 1 and 2) and throughput tables by batch size.
#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <limits>

#include "base/numbers.h"
#include "base/toml.h"
#include "base/words.h"
#include "coe/cost_model.h"
#include "coe/files.h"

namespace coe {

double ThroughputCurve::At(double batch) const {
  const auto& [b0, t0] = points.front();
  if (batch <= b0) return batch / b0 * t0;
  for (size_t i = 1; i < points.size(); ++i) {
    const auto& [b1, t1] = points[i];
    if (batch <= b1) {
      const auto& [ba, ta] = points[i - 1];
      return ta + (t1 - ta) * (batch - ba) / (b1 - ba);
    }
  }
  return points.back().second;
}

double ThroughputCurve::Peak() const {
  double best = 0;
  for (const auto& p : points) best = std::max(best, p.second);
  return best;
}

StatusOr<ClusterSpec> ReadCluster(const std::string& path) {
  COE_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  return ParseCluster(text, path);
}

namespace {

// Every key of `t` is one of `known`: another (a typo of `pin`, say) would be ignored
// silently. The error names the closest known key.
Status CheckClusterKeys(const toml::table& t, std::initializer_list<std::string_view> known, const std::string& source,
                        const std::string& scope) {
  for (auto&& [k, v] : t) {
    const std::string key(k.str());
    if (std::find(known.begin(), known.end(), key) != known.end()) continue;
    std::string list;
    for (std::string_view n : known) list += (list.empty() ? "" : ", ") + std::string(n);
    const std::string near = ClosestWord(key, known);
    return InvalidArgumentError(TomlWhere(source, v) + ": unknown key '" + key + "' in " + scope +
                                (near.empty() ? " (expected " + list + ")" : ": did you mean '" + near + "'?"));
  }
  return Status::Ok();
}

// A positive finite number at `node`, else InvalidArgument naming `where` and `what`.
StatusOr<double> Positive(const toml::node* node, const std::string& where, const std::string& what) {
  std::optional<double> x = node ? node->value<double>() : std::nullopt;
  if (!x || !std::isfinite(*x) || *x <= 0) return InvalidArgumentError(where + ": expected " + what);
  return *x;
}

// One device type: [gpus.T] (version 1: usd_per_hour only) or [devices.T].
StatusOr<ClusterSpec::Device> ParseDevice(const toml::node& v, const std::string& type, bool v1,
                                          const std::string& source) {
  const std::string scope = (v1 ? "gpus." : "devices.") + type;
  const std::string where = TomlWhere(source, v) + ": " + scope;
  const toml::table* t = v.as_table();
  if (!t) return InvalidArgumentError(where + ": expected a table with usd_per_hour = a positive number");
  if (v1) {
    COE_RETURN_IF_ERROR(CheckClusterKeys(*t, {"usd_per_hour"}, source, scope));
  } else {
    COE_RETURN_IF_ERROR(CheckClusterKeys(*t, {"usd_per_hour", "kind", "cores", "memory_gb"}, source, scope));
  }
  ClusterSpec::Device d;
  COE_ASSIGN_OR_RETURN(d.usd_per_hour, Positive(t->get("usd_per_hour"), where, "usd_per_hour = a positive number"));
  if (v1) return d;
  std::optional<std::string> kind = (*t)["kind"].value<std::string>();
  if (t->contains("kind") && (!kind || (*kind != "gpu" && *kind != "cpu")))
    return InvalidArgumentError(TomlWhere(source, *t->get("kind")) + ": " + scope +
                                ".kind: expected \"gpu\" or \"cpu\"");
  d.cpu = kind && *kind == "cpu";
  if (d.cpu || t->contains("cores")) {
    const toml::node* node = t->get("cores");
    const int64_t cores = node ? TomlInteger(*node).value_or(0) : 0;
    if (!d.cpu || cores < 1 || cores > 1 << 20)
      return InvalidArgumentError(where + (d.cpu ? ": a cpu device needs cores = a positive integer"
                                                 : ": cores is for kind = \"cpu\" devices"));
    d.cores = static_cast<int>(cores);
  }
  if (t->contains("memory_gb")) {
    COE_ASSIGN_OR_RETURN(d.memory_gb, Positive(t->get("memory_gb"), where, "memory_gb = a positive number"));
  }
  return d;
}

// A throughput: one number (the same at every batch) or { batch = examples/s, ... }.
StatusOr<ThroughputCurve> ParseCurve(const toml::node& v, const std::string& where, double usd_per_hour) {
  ThroughputCurve c;
  const std::string what = "a positive number of examples/s, or a table { batch = examples/s, ... }";
  if (const toml::table* t = v.as_table()) {
    if (t->empty()) return InvalidArgumentError(where + ": expected " + what);
    for (auto&& [k, x] : *t) {
      const std::string key(k.str());
      std::optional<double> b = ParseDouble(key);
      if (!b || *b < 1 || *b > 1e9 || *b != std::floor(*b))
        return InvalidArgumentError(where + ": batch '" + key + "': expected a batch size, a whole number >= 1");
      COE_ASSIGN_OR_RETURN(double tp, Positive(&x, where + " at batch " + key, "a positive number of examples/s"));
      c.points.emplace_back(*b, tp);
    }
    std::sort(c.points.begin(), c.points.end());
  } else {
    COE_ASSIGN_OR_RETURN(double tp, Positive(&v, where, what));
    c.points.emplace_back(1.0, tp);
  }
  // The cost per example, usd_per_hour / (3600 throughput), must be a finite number at
  // every batch the table prices (the smallest is batch 1, scaled from the first point).
  for (double tp : {c.At(1.0), c.Peak()})
    if (!std::isfinite(usd_per_hour / (3600.0 * tp)))
      return InvalidArgumentError(where +
                                  ": throughput too small for its usd_per_hour (the cost per example overflows)");
  return c;
}

StatusOr<ClusterSpec::Model> ParseClusterModel(const toml::node& v, const std::string& name, const ClusterSpec& c,
                                               const std::string& source) {
  const toml::table* t = v.as_table();
  const std::string where = TomlWhere(source, v) + ": models." + name;
  const toml::table* tp = t ? (*t)["throughput"].as_table() : nullptr;
  if (!tp || tp->empty()) return InvalidArgumentError(where + ": expected throughput = { TYPE = examples/s, ... }");
  COE_RETURN_IF_ERROR(CheckClusterKeys(*t, {"throughput", "pin"}, source, "models." + name));
  if (t->contains("pin") && !(*t)["pin"].is_string())
    return InvalidArgumentError(TomlWhere(source, *t->get("pin")) + ": models." + name +
                                ": pin must be a device type's name (a string)");
  std::vector<std::string_view> types;
  for (auto& [type, d] : c.devices) types.push_back(type);
  ClusterSpec::Model m;
  for (auto&& [g, tv] : *tp) {
    const std::string type(g.str());
    auto d = c.devices.find(type);
    if (d == c.devices.end()) {
      const std::string near = ClosestWord(type, types);
      return InvalidArgumentError(TomlWhere(source, tv) + ": models." + name + ".throughput: unknown device type '" +
                                  type + "'" + (near.empty() ? "" : ": did you mean '" + near + "'?"));
    }
    COE_ASSIGN_OR_RETURN(
        m.throughput[type],
        ParseCurve(tv, TomlWhere(source, tv) + ": models." + name + ".throughput." + type, d->second.usd_per_hour));
  }
  if (auto pin = (*t)["pin"].value<std::string>()) {
    if (!m.throughput.count(*pin))
      return InvalidArgumentError(where + ": pinned to '" + *pin + "' but has no throughput there");
    m.pin = *pin;
  }
  return m;
}

}  // namespace

StatusOr<ClusterSpec> ParseCluster(std::string_view text, const std::string& source) {
  COE_ASSIGN_OR_RETURN(toml::table root, ParseToml(text, source));
  ClusterSpec c;
  c.source = source;
  COE_RETURN_IF_ERROR(
      CheckClusterKeys(root, {"devices", "gpus", "models", "max_delay_ms", "transfer"}, source, "the cluster file"));
  if (root.contains("gpus") && root.contains("devices"))
    return InvalidArgumentError(source + ": both [gpus.TYPE] (version 1) and [devices.TYPE] (version 2) tables; " +
                                "use [devices.TYPE] only");
  const bool v1 = root.contains("gpus");
  const toml::table* devices = root[v1 ? "gpus" : "devices"].as_table();
  if (!devices || devices->empty()) return InvalidArgumentError(source + ": no [devices.TYPE] tables");
  for (auto&& [k, v] : *devices) {
    const std::string type(k.str());
    COE_ASSIGN_OR_RETURN(c.devices[type], ParseDevice(v, type, v1, source));
  }
  if (const toml::node* delay = root.get("max_delay_ms")) {
    COE_ASSIGN_OR_RETURN(
        c.max_delay_ms, Positive(delay, TomlWhere(source, *delay), "max_delay_ms = a positive number of milliseconds"));
  }
  if (const toml::node* transfer = root.get("transfer")) {
    const toml::table* t = transfer->as_table();
    const std::string where = TomlWhere(source, *transfer) + ": transfer";
    if (!t) return InvalidArgumentError(where + ": expected a table [transfer] with usd_per_gb = a number >= 0");
    COE_RETURN_IF_ERROR(CheckClusterKeys(*t, {"usd_per_gb"}, source, "transfer"));
    const toml::node* price = t->get("usd_per_gb");
    std::optional<double> x = price ? price->value<double>() : std::nullopt;
    if (!x || !std::isfinite(*x) || *x < 0)
      return InvalidArgumentError(where +
                                  ": expected usd_per_gb = a number >= 0 (dollars per GB of input sent to "
                                  "the cloud)");
    c.transfer_usd_per_gb = *x;
  }
  const toml::table* models = root["models"].as_table();
  if (!models) return InvalidArgumentError(source + ": no [models.NAME] tables");
  for (auto&& [k, v] : *models) {
    const std::string name(k.str());
    COE_ASSIGN_OR_RETURN(c.models[name], ParseClusterModel(v, name, c, source));
  }
  return c;
}

namespace {

// The throughput table of `model` on `type` when the model may run there (it has one and
// is not pinned elsewhere), else null.
const ThroughputCurve* CurveOn(const ClusterSpec::Model& m, const std::string& type) {
  if (!m.pin.empty() && m.pin != type) return nullptr;
  auto it = m.throughput.find(type);
  return it == m.throughput.end() ? nullptr : &it->second;
}

// Dollars per example of `m` at `batch` on `only_type`, or on its cheapest type.
double UsdPerExample(const ClusterSpec& c, const ClusterSpec::Model& m, double batch, const std::string& only_type) {
  double best = std::numeric_limits<double>::infinity();
  for (const auto& [type, d] : c.devices) {
    if (!only_type.empty() && type != only_type) continue;
    if (const ThroughputCurve* curve = CurveOn(m, type))
      best = std::min(best, d.usd_per_hour / (3600.0 * curve->At(batch)));
  }
  return best;
}

// Whole devices of `type` for `members` sharing them at `rate`, or 0 when one cannot run there.
int DevicesOn(const std::vector<const ClusterSpec::Model*>& members, const std::string& type, double rate, double batch,
              double utilisation) {
  double need = 0;
  for (const ClusterSpec::Model* m : members) {
    const ThroughputCurve* curve = CurveOn(*m, type);
    if (!curve) return 0;
    need += rate / (curve->At(batch) * utilisation);
  }
  const double devices = std::max(1.0, std::ceil(need));
  return devices < 1e9 ? static_cast<int>(devices) : 1000000000;
}

// Provisions one tier: the cheapest type every member can run on (`only_type` when
// given), else each member on its own cheapest type.
void Provision(const ClusterSpec& c, const std::vector<const ClusterSpec::Model*>& members,
               const std::string& only_type, double utilisation, TierServing* tier) {
  tier->usd_per_hour = std::numeric_limits<double>::infinity();
  for (const auto& [type, d] : c.devices) {
    if (!only_type.empty() && type != only_type) continue;
    const int n = DevicesOn(members, type, tier->rate, tier->batch, utilisation);
    if (n > 0 && n * d.usd_per_hour < tier->usd_per_hour) {
      tier->usd_per_hour = n * d.usd_per_hour;
      tier->devices = n;
      tier->type = type;
    }
  }
  if (tier->devices > 0 || members.size() < 2) return;
  tier->usd_per_hour = 0;
  tier->type.clear();
  for (const ClusterSpec::Model* m : members) {
    TierServing alone = *tier;
    Provision(c, {m}, only_type, utilisation, &alone);
    tier->usd_per_hour += alone.usd_per_hour;
    tier->devices += alone.devices;
    tier->type += (tier->type.empty() ? "" : "+") + alone.type;
  }
}

}  // namespace

StatusOr<Serving> ServeCascade(const ClusterSpec& c, const std::vector<std::vector<std::string>>& tiers,
                               std::span<const double> reach, const ServingOptions& options,
                               const std::string& only_type) {
  if (reach.size() != tiers.size()) return InvalidArgumentError("ServeCascade: one reach share per tier");
  Serving s;
  for (size_t k = 0; k < tiers.size(); ++k) {
    TierServing tier;
    tier.members = tiers[k];
    tier.rate = options.qps * reach[k];
    tier.batch = std::max(1.0, tier.rate * c.max_delay_ms / 1000.0);
    std::vector<const ClusterSpec::Model*> members;
    for (const std::string& name : tiers[k]) {
      auto it = c.models.find(name);
      if (it == c.models.end()) return NotFoundError(c.source + ": no throughput for model '" + name + "'");
      if (!only_type.empty() && !CurveOn(it->second, only_type))
        return FailedPreconditionError("model '" + name + "' cannot run on device type '" + only_type + "' (" +
                                       c.source + " gives it no throughput there" +
                                       (it->second.pin.empty() ? "" : ", or it is pinned elsewhere") + ")");
      members.push_back(&it->second);
      tier.usd_per_example += UsdPerExample(c, it->second, tier.batch, only_type);
    }
    Provision(c, members, only_type, options.utilisation, &tier);
    s.usd_per_example += reach[k] * tier.usd_per_example;
    s.usd_per_hour += tier.usd_per_hour;
    s.tiers.push_back(std::move(tier));
  }
  return s;
}

}  // namespace coe
