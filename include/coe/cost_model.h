// coe/cost_model.h: what a model's answer costs, and the deployment figures
// (latency, bytes over an edge/cloud link, GPU rental) that reports show.
//
// Cost of an example under a cascade = the sum, over every tier it reached, of the
// cost of every member of that tier (members running in parallel are all paid).
// Which figure is "cost" is chosen by CostOptions:
//   key ""         per-example `<model>|cost` columns when the recordings have them for
//                  every model, else the first of usd, flops, macs, latency_ms, params
//                  that every model has in the catalogue;
//   key "recorded" the `|cost` columns (an error if missing);
//   key K          the catalogue figure K of every model;
//   cluster        device rental (overrides key): a model's cost per example is
//                  usd_per_hour / (3600 * throughput) on the cheapest device type it can
//                  run on (or the one it is pinned to), at the best throughput of its
//                  table (the batch a fully loaded device runs). The "dearest type"
//                  figure runs every model on the single most expensive type instead; it
//                  is left out when some model has no throughput there.
//                  ServeCascade (below) prices a cascade at a traffic rate instead.
// Latency (from the catalogue's latency_ms, or latency_us / 1000) of a reached tier is
// its slowest member's (parallel) or the sum of its members' (sequential), plus, for a
// cloud member, the link: one round trip per call, and the transfer of the input
// (input_bytes) on the first cloud tier an example reaches, when the input is sent.
// Parallel members may share `cores` cores (0: a core each): the tier then takes the
// longest any core works when the members go, slowest first, each to the core free
// soonest (TierTime below); one core is the sequential sum.
//
// Latency as the cost (LatencyCost): the planner can minimise mean latency instead of
// the cost figure; the table's `combine` then says a tier's members combine by
// TierTime, not by their sum.
//
// Cluster file (TOML), version 2:
//   max_delay_ms = 50                 # optional: how long a tier's batcher waits (> 0)
//   [devices.A100]
//   usd_per_hour = 3.67
//   kind = "gpu"                      # or "cpu" (then cores = N, required)
//   memory_gb = 80                    # optional, checked, not yet used (no model states its need)
//   [models.NAME]
//   pin = "A100"                      # optional
//   [models.NAME.throughput]          # examples per second by batch size
//   A100 = { 1 = 40.0, 8 = 210.0, 64 = 900.0 }
//   T4 = 310.0                        # one figure: the same at every batch
//   [transfer]                        # optional
//   usd_per_gb = 0.09                 # sending an input from the edge to the cloud
// A device type a model has no throughput for is one it cannot run on. Version 1
// (still read, same results): [gpus.TYPE] usd_per_hour = X, and throughput = { TYPE =
// examples/s }. Every key is checked: an unknown one is refused with the closest known.
//
// Thread safety: immutable values once built.
#ifndef COE_COST_MODEL_H_
#define COE_COST_MODEL_H_

#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "coe/catalogue.h"
#include "coe/recordings.h"
#include "coe/status.h"

namespace coe {

struct LinkSpec {
  double bandwidth_bits_per_s = 0;  // > 0
  double rtt_ms = 0;                // >= 0
  // Parses "bandwidth=20Mbit,rtt=40ms" (units: bit, kbit, Mbit, Gbit [/s]; ms, s).
  static StatusOr<LinkSpec> Parse(const std::string& text);
  std::string ToString() const;
};

// A model's throughput on one device type, by batch size.
struct ThroughputCurve {
  std::vector<std::pair<double, double>> points;  // (batch >= 1, examples/s > 0), batch ascending
  // Examples per second at `batch` (> 0): linear between the given batches, the largest
  // batch's figure beyond it, and below the smallest batch b0, batch / b0 * t(b0) (a
  // batch takes the same time however full it is).
  double At(double batch) const;
  double max_batch() const { return points.back().first; }
  double Peak() const;  // the best figure of the table
};

struct ClusterSpec {
  std::string source;
  struct Device {
    double usd_per_hour = 0;
    bool cpu = false;
    int cores = 0;         // cpu only
    double memory_gb = 0;  // 0 = not given
  };
  std::map<std::string, Device> devices;  // by type
  double max_delay_ms = 50;
  // [transfer] usd_per_gb: dollars per GB (1e9 bytes) of input sent from the edge to
  // the cloud. An example's input is sent once, when it first reaches a tier with a
  // cloud member (catalogue `site`), and costs the largest input_bytes among that
  // tier's cloud members x this price. 0: transfers are free.
  double transfer_usd_per_gb = 0;
  struct Model {
    std::map<std::string, ThroughputCurve> throughput;  // by device type
    std::string pin;                                    // "" = cheapest
  };
  std::map<std::string, Model> models;
};
StatusOr<ClusterSpec> ReadCluster(const std::string& path);
StatusOr<ClusterSpec> ParseCluster(std::string_view text, const std::string& source);

// Serving a cascade at a traffic rate on a cluster: the two cost views of reports.
// Tier k is reached by reach[k] of the examples, so it sees rate = qps x reach[k]
// examples/s. Batching: each tier's dynamic batcher waits at most max_delay_ms, so it
// runs batches of max(1, rate x max_delay_ms / 1000) examples (a fraction is a mean;
// beyond a table's largest batch the throughput stays flat).
//   Per example: every member of a tier at that batch, each on its cheapest type (or
//     its pin): usd_per_hour / (3600 x throughput(batch)); the cascade's figure is the
//     sum over tiers of reach[k] x the tier's.
//   Provisioned: each tier on whole devices of one type, the members sharing them:
//     devices = max(1, ceil(sum over members of rate / (throughput(batch) x
//     utilisation))) (a deployed tier has at least one device), on the type with the
//     lowest hourly bill among those every member can run on (and is not pinned off);
//     when there is none, each member on its own cheapest devices. The bill is the sum
//     of devices x usd_per_hour over tiers.
struct ServingOptions {
  double qps = 0;             // examples per second entering the first tier (> 0)
  double utilisation = 0.7;   // of each device, in (0, 1]
  std::string baseline_type;  // "" = none: also price the best single model on this type
};

struct TierServing {
  std::vector<std::string> members;
  double rate = 0;   // examples/s reaching the tier
  double batch = 1;  // the batch its batcher fills
  std::string type;  // the device type(s) provisioned ("A+B": members apart)
  int devices = 0;
  double usd_per_hour = 0;     // the tier's provisioned bill
  double usd_per_example = 0;  // per example reaching the tier
};

struct Serving {
  std::vector<TierServing> tiers;
  double usd_per_example = 0;  // per example entering the cascade
  double usd_per_hour = 0;     // the provisioned bill
  // Of those, the inputs sent to the cloud (ClusterSpec::transfer_usd_per_gb), which
  // ServeCascade leaves at 0: reports add them from the cascade's replay.
  double transfer_usd_per_example = 0, transfer_usd_per_hour = 0;
};

// Prices `tiers` (member names, each in `c`) reached by `reach` (one share per tier)
// at `options`. With `only_type`, every tier is provisioned on that type (per-example
// figures too): FailedPrecondition naming the model when one cannot run there.
// NotFound when a member has no throughput in `c`.
StatusOr<Serving> ServeCascade(const ClusterSpec& c, const std::vector<std::vector<std::string>>& tiers,
                               std::span<const double> reach, const ServingOptions& options,
                               const std::string& only_type = "");

enum class LatencyMode { kParallel, kSequential };

// The time of a tier whose members take `ms` each: the sum (sequential), the slowest
// (parallel, cores == 0 or cores >= members), or the makespan of the members, slowest
// first, each on the core free soonest (parallel on fewer cores than members).
double TierTime(std::span<const double> ms, LatencyMode mode, int cores);

// How a tier's members' figures make the tier's: every member paid (compute, dollars)
// or the time until the last answers (latency).
enum class TierCombine { kSum, kTime };

struct CostOptions {
  std::string key;  // see above
  LatencyMode latency = LatencyMode::kParallel;
  // Parallel latency: the members share this many cores (0 = a core each; -1 = the
  // cores this process may use).
  int cores = 0;
  // The user asked for a latency mode: then every model needs a latency figure
  // (InvalidArgument otherwise) instead of latency going unreported.
  bool require_latency = false;
  std::optional<ClusterSpec> cluster;
  std::optional<ServingOptions> serving;  // with a cluster: --qps and what goes with it
  std::optional<LinkSpec> link;
  // When not empty, only these models need cost figures (cluster throughput, catalogue
  // key); the others get a NaN cost, and EvaluateCascade refuses cascades that use them.
  std::vector<std::string> only;
};

// Per-model, per-example figures aligned with one Recordings (model m = rec.models[m]).
struct CostTable {
  std::string name;  // what "cost" is, e.g. "usd (recorded per example)"
  int num_models = 0;
  int num_examples = 0;
  std::vector<double> fixed;                // per model, when costs are not per example
  std::vector<double> per_example;          // row-major [example][model], or empty
  std::vector<double> mean;                 // per model: mean cost over the examples
  TierCombine combine = TierCombine::kSum;  // kTime: by TierTime(latency_mode, cores)
  // On a cluster: the per-model cost with every model on the most expensive device type
  // (empty without a cluster, or when some needed model cannot run on that type).
  std::vector<double> homogeneous;
  std::string homogeneous_gpu;
  // The cluster and traffic the costs came from, for ServeCascade in reports.
  std::optional<ClusterSpec> cluster;
  std::optional<ServingOptions> serving;
  // Deployment figures.
  LatencyMode latency_mode = LatencyMode::kParallel;
  int cores = 0;                    // see CostOptions
  std::vector<double> latency_ms;   // per model; empty when some model lacks one
  std::vector<bool> cloud;          // per model
  std::vector<double> input_bytes;  // per model
  std::optional<LinkSpec> link;
  // Dollars per byte of input sent to the cloud (the cluster's transfer price; 0 =
  // free): added to an example's cost once, at the first tier with a cloud member
  // (EvaluateCascade and the planner's search alike), as ClusterSpec says.
  double transfer_usd_per_byte = 0;

  bool is_per_example() const { return !per_example.empty(); }
  double Cost(int m, int i) const {
    return per_example.empty() ? fixed[m] : per_example[static_cast<size_t>(i) * num_models + m];
  }
};

// Builds the table for `rec`'s models. Every model of `rec` must be in `catalogue`
// (NotFound naming the model and both files otherwise).
StatusOr<CostTable> BuildCostTable(const Recordings& rec, const Catalogue& catalogue, const CostOptions& options);

// `costs` with latency as the cost: each model's latency_ms, a tier's by TierTime.
// InvalidArgument when some model has no latency figure, or with a link (the input
// transfer depends on the tiers before, which a per-tier cost cannot say).
StatusOr<CostTable> LatencyCost(const CostTable& costs);

// The cost of one tier from its members' costs: their sum, or their TierTime.
double TierCost(const CostTable& costs, std::span<const double> member_costs);

// What sending an example's input to a tier of `members` (model indices) costs when it
// has not been sent yet: the largest input_bytes of its cloud members x the transfer
// price; 0 when it has none or transfers are free.
double TierTransfer(const CostTable& costs, std::span<const int> members);

// The table for the examples `rows` of the recordings `costs` was built for (as
// SelectRows on them), means recomputed.
CostTable SelectRows(const CostTable& costs, std::span<const int> rows);

}  // namespace coe

#endif  // COE_COST_MODEL_H_
