// Internal: how many cores this process may really use.
#ifndef COE_BASE_CORES_H_
#define COE_BASE_CORES_H_

namespace coe {

// The cores this process may run on: the CPUs of its affinity mask (taskset, a
// cpuset), further bounded by a cgroup v2 CPU quota (a container's CPU limit, as
// Kubernetes sets it: cpu.max "200000 100000" is 2), rounded up; at least 1.
// std::thread::hardware_concurrency() counts the machine's CPUs whatever the limits,
// so threads sized by it contend for fewer cores than they think.
int AvailableCores();

}  // namespace coe

#endif  // COE_BASE_CORES_H_
