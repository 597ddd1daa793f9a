#include "base/cores.h"

#include <sched.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <string>
#include <thread>

namespace coe {
namespace {

// The CPU quota of this process's cgroup (v2), in cores, or 0 when there is none.
double CgroupQuota() {
  // /proc/self/cgroup: "0::/path" under cgroup v2.
  std::ifstream self("/proc/self/cgroup");
  std::string line, path;
  while (std::getline(self, line))
    if (line.rfind("0::", 0) == 0) path = line.substr(3);
  // The quota of the process's own cgroup, or of an ancestor's, whichever is least.
  double least = 0;
  for (;;) {
    std::ifstream max("/sys/fs/cgroup" + path + "/cpu.max");
    std::string quota;
    double period = 0;
    if (max >> quota >> period && quota != "max" && period > 0) {
      const double cores = std::stod(quota) / period;
      if (cores > 0 && (least == 0 || cores < least)) least = cores;
    }
    if (path.empty() || path == "/") break;
    const size_t slash = path.find_last_of('/');
    path = slash == 0 || slash == std::string::npos ? "" : path.substr(0, slash);
  }
  return least;
}

}  // namespace

int AvailableCores() {
  int n = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) n = std::max(1, CPU_COUNT(&set));
  try {
    if (const double q = CgroupQuota(); q > 0) n = std::min(n, std::max(1, static_cast<int>(std::ceil(q))));
  } catch (...) {  // an unreadable quota: no bound
  }
  return n;
}

}  // namespace coe
