#include "common.h"

#include <malloc.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "base/cores.h"
#include "base/words.h"
#include "coe/workflow.h"

namespace coe::app {

int ExitCode(const Status& s) {
  switch (s.code()) {
    case StatusCode::kOk:
      return 0;
    case StatusCode::kInvalidArgument:
    case StatusCode::kNotFound:
    case StatusCode::kFailedPrecondition:
      return 2;
    default:
      return 1;
  }
}

int Fail(const std::string& cmd, const Status& s) {
  std::fprintf(stderr, "coe %s: error: %s\n", cmd.c_str(), PrintableText(s.message()).c_str());
  return ExitCode(s);
}

void PrintWarnings(const std::vector<std::string>& warnings, bool quiet) {
  if (quiet) return;
  for (const std::string& w : warnings) std::fprintf(stderr, "warning: %s\n", PrintableText(w).c_str());
}

std::string CsvField(const std::string& field) {
  if (field.find_first_of(",\"\r\n") == std::string::npos) return field;
  std::string out = "\"";
  for (char c : field) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

void WarnAboutCascade(const CascadeSpec& spec, const Catalogue& catalogue, bool quiet) {
  PrintWarnings(CascadeCostWarnings(spec, catalogue, ""), quiet);
}

void KeepModelBuffers() {
  mallopt(M_MMAP_THRESHOLD, 64 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
}

void HeapOnHugePages(int threads) {
  if ((threads > 0 ? threads : AvailableCores()) <= 8) mallopt(M_ARENA_MAX, 1);
  mallopt(M_TOP_PAD, 256 << 20);       // the heap's next growth reserves 256 MiB (untouched: no memory yet)
  void* probe = std::malloc(1 << 20);  // ... which this makes now
  char* const top = static_cast<char*>(sbrk(0));
  constexpr uintptr_t kPage = 4096;
  char* const start = reinterpret_cast<char*>(reinterpret_cast<uintptr_t>(probe) & ~(kPage - 1));
  if (probe && top != reinterpret_cast<char*>(-1) && start < top) madvise(start, top - start, MADV_HUGEPAGE);
  std::free(probe);
}

void CostFlags::Add(CLI::App* cmd) {
  cmd->add_option("--cost", key,
                  "cost figure: a catalogue key (usd, macs, flops, latency_ms, ...) or 'recorded' "
                  "(the |cost columns); default: |cost columns when present, else the first "
                  "catalogue key of usd, macs, flops, latency_ms, latency_us, params (as coe run)");
  cmd->add_option("--latency", latency, "latency of a tier's members: parallel or sequential")
      ->check(CLI::IsMember({"parallel", "sequential"}));
  cmd->add_option("--cores", cores,
                  "cores a tier's parallel members share, for latency: 0 = a core each (the tier takes its "
                  "slowest member), N, or auto (the cores this process may use); fewer cores than members "
                  "queue them, slowest first")
      ->capture_default_str();
  cmd->add_option("--cluster", cluster,
                  "cluster TOML (device prices, throughput by batch): cost = rental dollars per example, each "
                  "model on its cheapest device type, fully batched");
  qps_flag =
      cmd->add_option("--qps", qps,
                      "with --cluster: the traffic rate (examples/s) reports price the cascade at, per example at "
                      "the batch each tier sees and provisioned on whole devices");
  utilisation_flag =
      cmd->add_option("--utilisation", utilisation, "with --qps: the share of each device's throughput used")
          ->capture_default_str();
  cmd->add_option("--baseline-type", baseline_type,
                  "with --qps: also price the best single model (and the cascade) on this device type alone");
  cmd->add_option("--link", link,
                  "edge/cloud link, e.g. bandwidth=20Mbit,rtt=40ms: cloud models pay bytes and latency");
}

Status CostFlags::BuildServing(CostOptions* o) const {
  const bool has_qps = qps_flag && qps_flag->count() > 0;
  const bool has_utilisation = utilisation_flag && utilisation_flag->count() > 0;
  if (!has_qps && !has_utilisation && baseline_type.empty()) return Status::Ok();
  if (!o->cluster) return InvalidArgumentError("--qps, --utilisation and --baseline-type need --cluster FILE");
  if (!has_qps) return InvalidArgumentError("--utilisation and --baseline-type price a traffic rate: give --qps");
  if (!(qps > 0) || !std::isfinite(qps))
    return InvalidArgumentError("--qps: expected the traffic rate, a positive number of examples per second");
  if (!(utilisation > 0 && utilisation <= 1))
    return InvalidArgumentError("--utilisation: expected a share of each device's throughput, in (0, 1]");
  if (!baseline_type.empty() && !o->cluster->devices.count(baseline_type)) {
    std::vector<std::string_view> types;
    for (const auto& [type, d] : o->cluster->devices) types.push_back(type);
    const std::string near = ClosestWord(baseline_type, types);
    return InvalidArgumentError("--baseline-type: '" + baseline_type + "' is not a device type of " + cluster +
                                (near.empty() ? "" : ": did you mean '" + near + "'?"));
  }
  o->serving = ServingOptions{.qps = qps, .utilisation = utilisation, .baseline_type = baseline_type};
  return Status::Ok();
}

StatusOr<CostOptions> CostFlags::Build() const {
  CostOptions o;
  o.key = key;
  o.latency = latency == "sequential" ? LatencyMode::kSequential : LatencyMode::kParallel;
  o.require_latency = !latency.empty();
  if (cores == "auto") {
    o.cores = -1;
  } else {
    char* end = nullptr;
    const long c = std::strtol(cores.c_str(), &end, 10);
    if (cores.empty() || *end || c < 0 || c > 4096)
      return InvalidArgumentError("--cores: '" + cores + "' (expected 0, a count of cores, or auto)");
    o.cores = static_cast<int>(c);
  }
  if (!cluster.empty()) {
    COE_ASSIGN_OR_RETURN(ClusterSpec c, ReadCluster(cluster));
    o.cluster = std::move(c);
  }
  COE_RETURN_IF_ERROR(BuildServing(&o));
  if (!link.empty()) {
    COE_ASSIGN_OR_RETURN(LinkSpec l, LinkSpec::Parse(link));
    o.link = l;
  }
  return o;
}

}  // namespace coe::app
