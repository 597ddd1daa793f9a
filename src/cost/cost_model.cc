#include "coe/cost_model.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <initializer_list>
#include <limits>

#include "base/cores.h"
#include "base/numbers.h"
#include "base/toml.h"
#include "base/words.h"
#include "coe/files.h"

namespace coe {

StatusOr<LinkSpec> LinkSpec::Parse(const std::string& text) {
  LinkSpec link;
  bool have_bw = false, have_rtt = false;
  for (const std::string& item : SplitCommas(text)) {
    if (item.empty()) continue;
    size_t eq = item.find('=');
    if (eq == std::string::npos) return InvalidArgumentError("--link: '" + item + "' is not key=value");
    std::string key = item.substr(0, eq), val = item.substr(eq + 1);
    size_t num_end = 0;
    while (num_end < val.size() && (std::isdigit(static_cast<unsigned char>(val[num_end])) || val[num_end] == '.' ||
                                    val[num_end] == 'e' || val[num_end] == '-'))
      ++num_end;
    std::optional<double> num = ParseDouble(val.substr(0, num_end));
    std::string unit = val.substr(num_end);
    if (unit.size() > 2 && unit.substr(unit.size() - 2) == "/s") unit.resize(unit.size() - 2);
    if (unit.size() > 3 && unit.substr(unit.size() - 3) == "bps") unit = unit.substr(0, unit.size() - 3) + "bit";
    if (!num || !std::isfinite(*num) || *num < 0)
      return InvalidArgumentError("--link: '" + item + "': expected a non-negative number");
    if (key == "bandwidth") {
      double mult = 0;
      if (unit.empty())
        return InvalidArgumentError("--link: '" + item +
                                    "': give the bandwidth's unit (bit, kbit, Mbit, Gbit), "
                                    "e.g. bandwidth=20Mbit");
      if (unit == "bit")
        mult = 1;
      else if (unit == "kbit" || unit == "Kbit")
        mult = 1e3;
      else if (unit == "Mbit")
        mult = 1e6;
      else if (unit == "Gbit")
        mult = 1e9;
      else
        return InvalidArgumentError("--link: bandwidth unit '" + unit + "' (use bit, kbit, Mbit, Gbit)");
      link.bandwidth_bits_per_s = *num * mult;
      if (link.bandwidth_bits_per_s <= 0) return InvalidArgumentError("--link: bandwidth must be > 0");
      if (!std::isfinite(link.bandwidth_bits_per_s))
        return InvalidArgumentError("--link: '" + item + "': bandwidth out of range");
      have_bw = true;
    } else if (key == "rtt") {
      if (unit.empty())
        return InvalidArgumentError("--link: '" + item + "': give the round trip's unit (us, ms, s), e.g. rtt=40ms");
      if (unit == "ms")
        link.rtt_ms = *num;
      else if (unit == "s")
        link.rtt_ms = *num * 1000;
      else if (unit == "us")
        link.rtt_ms = *num / 1000;
      else
        return InvalidArgumentError("--link: rtt unit '" + unit + "' (use us, ms, s)");
      if (!std::isfinite(link.rtt_ms)) return InvalidArgumentError("--link: '" + item + "': rtt out of range");
      have_rtt = true;
    } else {
      return InvalidArgumentError("--link: unknown key '" + key + "' (expected bandwidth, rtt)");
    }
  }
  if (!have_bw || !have_rtt)
    return InvalidArgumentError("--link: expected bandwidth=...,rtt=... (e.g. bandwidth=20Mbit,rtt=40ms)");
  return link;
}

std::string LinkSpec::ToString() const {
  char buf[96];
  std::snprintf(buf, sizeof buf, "%.4g Mbit/s, RTT %.4g ms", bandwidth_bits_per_s / 1e6, rtt_ms);
  return buf;
}

namespace {

// Per model: the mean cost over the examples (NaN costs stay NaN: the model is outside
// --only).
void ComputeMeans(CostTable* t) {
  t->mean.assign(t->num_models, 0.0);
  for (int m = 0; m < t->num_models; ++m) {
    if (!t->is_per_example()) {
      t->mean[m] = t->fixed[m];
      continue;
    }
    double sum = 0;
    for (int i = 0; i < t->num_examples; ++i) sum += t->Cost(m, i);
    if (!std::isfinite(sum)) {  // finite costs whose sum overflows: average as we go
      sum = 0;
      for (int i = 0; i < t->num_examples; ++i) sum += t->Cost(m, i) / t->num_examples;
      t->mean[m] = sum;
      continue;
    }
    t->mean[m] = t->num_examples ? sum / t->num_examples : 0.0;
  }
}

}  // namespace

double TierTime(std::span<const double> ms, LatencyMode mode, int cores) {
  double total = 0, slowest = 0;
  for (double x : ms) {
    total += x;
    slowest = std::max(slowest, x);
  }
  if (mode == LatencyMode::kSequential || cores == 1) return total;
  if (cores <= 0 || cores >= static_cast<int>(ms.size())) return slowest;
  std::vector<double> sorted(ms.begin(), ms.end());
  std::sort(sorted.begin(), sorted.end(), std::greater<>());
  std::vector<double> load(cores, 0.0);
  for (double x : sorted) *std::min_element(load.begin(), load.end()) += x;
  return *std::max_element(load.begin(), load.end());
}

double TierCost(const CostTable& costs, std::span<const double> member_costs) {
  if (costs.combine == TierCombine::kTime) return TierTime(member_costs, costs.latency_mode, costs.cores);
  double sum = 0;
  for (double c : member_costs) sum += c;
  return sum;
}

double TierTransfer(const CostTable& costs, std::span<const int> members) {
  double bytes = 0;
  if (costs.transfer_usd_per_byte <= 0) return 0;
  for (int m : members)
    if (costs.cloud[m]) bytes = std::max(bytes, costs.input_bytes[m]);
  return bytes * costs.transfer_usd_per_byte;
}

StatusOr<CostTable> LatencyCost(const CostTable& costs) {
  if (costs.link)
    return InvalidArgumentError(
        "--objective latency with --link: the input's transfer depends on the tiers before, which a per-tier "
        "cost cannot say; plan on latency without --link, or on cost with --link for the report");
  if (costs.latency_ms.size() != static_cast<size_t>(costs.num_models))
    return InvalidArgumentError(
        "--objective latency needs latency_ms or latency_us for every model (coe record measures them)");
  CostTable t = costs;
  t.per_example.clear();
  t.fixed = costs.latency_ms;
  ComputeMeans(&t);
  t.combine = TierCombine::kTime;
  t.homogeneous.clear();
  t.transfer_usd_per_byte = 0;  // a time: the transfer's dollars are not in it
  std::string how = costs.latency_mode == LatencyMode::kSequential ? "members one after another"
                    : costs.cores > 0 ? "members in parallel on " + std::to_string(costs.cores) +
                                            (costs.cores == 1 ? " core" : " cores")
                                      : "members in parallel";
  t.name = "latency_ms (" + how + ")";
  return t;
}

CostTable SelectRows(const CostTable& costs, std::span<const int> rows) {
  CostTable t = costs;
  t.num_examples = static_cast<int>(rows.size());
  if (costs.is_per_example()) {
    t.per_example.clear();
    t.per_example.reserve(rows.size() * costs.num_models);
    for (int r : rows)
      t.per_example.insert(t.per_example.end(), costs.per_example.begin() + static_cast<size_t>(r) * costs.num_models,
                           costs.per_example.begin() + static_cast<size_t>(r + 1) * costs.num_models);
  }
  ComputeMeans(&t);
  return t;
}

namespace {

constexpr double kNoCost = std::numeric_limits<double>::quiet_NaN();

// Whether the plan needs model `name`'s cost (every model, unless --only).
bool Needed(const CostOptions& options, const std::string& name) {
  return options.only.empty() || std::find(options.only.begin(), options.only.end(), name) != options.only.end();
}

// Dollars per example on a cluster: on each model's cheapest device type (or its
// pinned one) at its table's best throughput, and on the most expensive type for the
// "dearest type" figure (left out when a needed model cannot run there).
Status ClusterCosts(const ClusterSpec& c, const std::vector<const ModelSpec*>& specs, const CostOptions& options,
                    CostTable* t) {
  double top_price = -1;
  for (auto& [type, d] : c.devices)
    if (d.usd_per_hour > top_price) {
      top_price = d.usd_per_hour;
      t->homogeneous_gpu = type;
    }
  bool all_on_top = true;
  for (const ModelSpec* s : specs) {
    auto it = c.models.find(s->name);
    if (it == c.models.end() && !Needed(options, s->name)) {
      t->fixed.push_back(kNoCost);
      t->homogeneous.push_back(kNoCost);
      continue;
    }
    if (it == c.models.end()) return NotFoundError(c.source + ": no throughput for model '" + s->name + "'");
    const ClusterSpec::Model& cm = it->second;
    double best = std::numeric_limits<double>::infinity();
    for (auto& [type, curve] : cm.throughput) {
      if (!cm.pin.empty() && type != cm.pin) continue;
      best = std::min(best, c.devices.at(type).usd_per_hour / (3600.0 * curve.Peak()));
    }
    t->fixed.push_back(best);
    auto h = cm.throughput.find(t->homogeneous_gpu);
    all_on_top &= h != cm.throughput.end();
    t->homogeneous.push_back(h == cm.throughput.end() ? kNoCost : top_price / (3600.0 * h->second.Peak()));
  }
  if (!all_on_top) t->homogeneous.clear();
  t->name = "usd per example on cluster " + c.source + " (each model on its cheapest device type, fully batched)";
  return Status::Ok();
}

// The cost figure to plan on: --cost, else "recorded" when every needed model has a
// |cost column, else the catalogue figure every needed model has.
StatusOr<std::string> CostKey(const Recordings& rec, const Catalogue& catalogue,
                              const std::vector<const ModelSpec*>& specs, const CostOptions& options) {
  if (!options.key.empty()) return options.key;
  bool all_recorded = true;
  for (const ModelRecord& m : rec.models) all_recorded &= !m.cost.empty() || !Needed(options, m.name);
  if (all_recorded) return std::string("recorded");
  std::vector<const ModelSpec*> used;
  for (const ModelSpec* s : specs)
    if (Needed(options, s->name)) used.push_back(s);
  std::string key = DefaultCostKey(used);
  if (key.empty())
    return InvalidArgumentError(catalogue.source +
                                ": no cost figure (usd, macs, flops, latency_ms, "
                                "latency_us, params) shared by every model and no |cost columns in " +
                                rec.source + "; pass --cost KEY");
  return key;
}

// Per-example costs from the recordings' |cost columns.
Status RecordedCosts(const Recordings& rec, const std::vector<const ModelSpec*>& specs, const CostOptions& options,
                     CostTable* t) {
  for (const ModelRecord& m : rec.models)
    if (m.cost.empty() && Needed(options, m.name))
      return InvalidArgumentError(rec.source + ": no '" + m.name + "|cost' column for --cost recorded");
  t->per_example.resize(static_cast<size_t>(t->num_examples) * t->num_models);
  for (int m = 0; m < t->num_models; ++m)
    for (int i = 0; i < t->num_examples; ++i)
      t->per_example[static_cast<size_t>(i) * t->num_models + m] =
          rec.models[m].cost.empty() ? kNoCost : rec.models[m].cost[i];
  // Priced chat models record what each call was billed, in dollars.
  bool all_chat = true;
  for (const ModelSpec* s : specs)
    if (Needed(options, s->name) && s->usd_per_mtok_in == 0 && s->usd_per_mtok_out == 0) all_chat = false;
  t->name = all_chat ? "usd (recorded per example)" : "cost per example (recorded |cost columns)";
  return Status::Ok();
}

// A fixed figure per model: the catalogue's `key`.
Status CatalogueCosts(const Catalogue& catalogue, const std::vector<const ModelSpec*>& specs, const std::string& key,
                      const CostOptions& options, CostTable* t) {
  for (const ModelSpec* s : specs) {
    const double* v = s->Cost(key);
    if (!v && !Needed(options, s->name)) {
      t->fixed.push_back(kNoCost);
      continue;
    }
    if (!v)
      return InvalidArgumentError(catalogue.source + ": model '" + s->name + "' has no '" + key +
                                  "' figure (asked for by --cost)");
    t->fixed.push_back(*v);
  }
  t->name = key + " (catalogue)";
  return Status::Ok();
}

// The recorded or catalogue figure CostKey names.
Status FigureCosts(const Recordings& rec, const Catalogue& catalogue, const std::vector<const ModelSpec*>& specs,
                   const CostOptions& options, CostTable* t) {
  StatusOr<std::string> key = CostKey(rec, catalogue, specs, options);
  if (!key.ok()) return key.status();
  if (*key == "recorded") return RecordedCosts(rec, specs, options, t);
  return CatalogueCosts(catalogue, specs, *key, options, t);
}

// Deployment figures: latency mode, cores, link, each model's latency, site and input size.
Status DeploymentFigures(const Catalogue& catalogue, const std::vector<const ModelSpec*>& specs,
                         const CostOptions& options, CostTable* t) {
  t->latency_mode = options.latency;
  t->cores = options.cores < 0 ? AvailableCores() : options.cores;
  t->link = options.link;
  bool all_latency = true;
  for (const ModelSpec* s : specs) {
    const double* ms = s->Cost("latency_ms");
    const double* us = s->Cost("latency_us");
    if (ms)
      t->latency_ms.push_back(*ms);
    else if (us)
      t->latency_ms.push_back(*us / 1000.0);
    else
      all_latency = false;
    t->cloud.push_back(s->is_cloud());
    t->input_bytes.push_back(s->input_bytes);
  }
  if (!all_latency && options.require_latency)
    return InvalidArgumentError(std::string("--latency ") +
                                (options.latency == LatencyMode::kSequential ? "sequential" : "parallel") +
                                " needs latency_ms or latency_us for every model in " + catalogue.source +
                                " (coe record writes measured latency_us beside its recordings)");
  if (!all_latency) {
    t->latency_ms.clear();
    if (options.link) t->latency_ms.assign(t->num_models, 0.0);  // link time alone
  }
  return Status::Ok();
}

}  // namespace

StatusOr<CostTable> BuildCostTable(const Recordings& rec, const Catalogue& catalogue, const CostOptions& options) {
  CostTable t;
  t.num_models = static_cast<int>(rec.models.size());
  t.num_examples = rec.num_examples();
  std::vector<const ModelSpec*> specs;
  for (const ModelRecord& m : rec.models) {
    const ModelSpec* s = catalogue.Find(m.name);
    if (!s)
      return NotFoundError(rec.source + ": model column '" + m.name + "' is not in the catalogue " + catalogue.source);
    specs.push_back(s);
  }
  if (options.cluster) {
    COE_RETURN_IF_ERROR(ClusterCosts(*options.cluster, specs, options, &t));
    t.cluster = options.cluster;
    t.serving = options.serving;
  } else {
    COE_RETURN_IF_ERROR(FigureCosts(rec, catalogue, specs, options, &t));
  }
  ComputeMeans(&t);
  COE_RETURN_IF_ERROR(DeploymentFigures(catalogue, specs, options, &t));
  if (options.cluster && options.cluster->transfer_usd_per_gb > 0) {
    for (const ModelSpec* s : specs)
      if (s->is_cloud() && s->input_bytes <= 0 &&
          (options.only.empty() || std::find(options.only.begin(), options.only.end(), s->name) != options.only.end()))
        return InvalidArgumentError(options.cluster->source + ": [transfer] prices the inputs sent to the cloud, and " +
                                    catalogue.source + " gives cloud model '" + s->name +
                                    "' no input size (set input_bytes, or input_shape)");
    t.transfer_usd_per_byte = options.cluster->transfer_usd_per_gb / 1e9;
  }
  return t;
}

}  // namespace coe
