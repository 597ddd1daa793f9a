// Shared by the `coe` subcommands: loading inputs and reporting errors.
#ifndef COE_APPS_COMMON_H_
#define COE_APPS_COMMON_H_

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "coe/cascade_spec.h"
#include "coe/catalogue.h"
#include "coe/cost_model.h"
#include "coe/recordings.h"
#include "coe/status.h"

namespace coe::app {

// Exit codes: 0 success, 1 failure, 2 bad input (flags, files), 3 the plan's goal is
// not met (the nearest point is reported).
inline constexpr int kExitGoalNotMet = 3;
int ExitCode(const Status& s);
// Prints "coe <cmd>: error: <message>" and returns the exit code.
int Fail(const std::string& cmd, const Status& s);
void PrintWarnings(const std::vector<std::string>& warnings, bool quiet);
// `field` as one CSV field (quoted when it holds a comma, quote or line break).
std::string CsvField(const std::string& field);
// For commands that run models (run, serve, record, demo): blocks up to 64 MiB stay in
// malloc's heap when freed (main() maps those of 1 MiB or more on their own, for the
// planner's peak memory). A model's forward pass allocates and frees the same large
// buffers at every call; each new mapping is zeroed page by page by the kernel: on the
// zoo cascade that was a fifth of `coe run`'s time (1.29 s against 1.09 s).
void KeepModelBuffers();
// For commands that run a batch of inputs once (run, record, demo): the heap on
// transparent huge pages (Debian's kernels grant them to memory advised so). A 4 KiB page
// fault cost ~12 us on this 2-core VM, and a `coe run` of the zoo cascade took ~8,800 of
// them (a quarter of its 0.4 s): now ~1,900. With `threads` (0: the cores) up to 8, every
// thread allocates from that one heap (M_ARENA_MAX 1); with more, threads keep their own
// arenas (on 4 KiB pages), since one lock would be contended. Call before any thread starts.
void HeapOnHugePages(int threads);
// Prints CascadeWarnings for `spec`, costs by the catalogue's default cost figure.
void WarnAboutCascade(const CascadeSpec& spec, const Catalogue& catalogue, bool quiet);

// The cost flags every reporting command shares.
struct CostFlags {
  std::string key;
  std::string latency;  // "" = parallel, reported when every model has a latency figure
  std::string cluster;
  std::string link;
  std::string cores = "0";  // parallel latency: cores the members share; 0 = a core each, auto
  double qps = 0;           // with a cluster: the traffic rate the reports price
  double utilisation = 0.7;
  std::string baseline_type;
  CLI::Option *qps_flag = nullptr, *utilisation_flag = nullptr;  // given on the command line?
  void Add(CLI::App* cmd);
  StatusOr<CostOptions> Build() const;
  Status BuildServing(CostOptions* o) const;  // --qps, --utilisation, --baseline-type
};

}  // namespace coe::app

#endif  // COE_APPS_COMMON_H_
