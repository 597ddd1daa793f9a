// Shared by the tests: where the sources and the `coe` binary are, and running `coe`.
// Paths come from the environment ctest sets (COE_SOURCE_DIR, COE_BINARY), else from
// the build tree the test binary lives in: nothing is compiled in.
#ifndef COE_TESTS_TESTING_H_
#define COE_TESTS_TESTING_H_

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "coe/paths.h"

namespace coe::testing {

inline std::string SourceDir() {
  if (const char* e = std::getenv("COE_SOURCE_DIR"); e && *e) return e;
  return BuildTreeSourceDir();
}

inline std::string CoeBinary() {
  if (const char* e = std::getenv("COE_BINARY"); e && *e) return e;
  return ExecutableDir() + "/coe";
}

inline std::string ZooDir() { return SourceDir() + "/models/zoo/"; }

// The shared data sets (RouterBench recordings, ...): COE_SHARED_DATA, else ../shared/data
// beside the sources.
inline std::string SharedDataDir() {
  if (const char* e = std::getenv("COE_SHARED_DATA"); e && *e) return e;
  return SourceDir() + "/../shared/data";
}

struct Proc {
  int code = -1;
  std::string out;
};

// Runs `coe ARGS` through the shell; `out` gets stdout, and stderr too unless
// `with_stderr` is false (then stderr is dropped).
inline Proc RunCoe(const std::string& args, bool with_stderr = true) {
  const std::string cmd = CoeBinary() + " " + args + (with_stderr ? " 2>&1" : " 2>/dev/null");
  Proc r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// The rows of a CSV file without quoted fields, by their first field (the header row
// skipped).
inline std::map<std::string, std::vector<std::string>> CsvRowsById(const std::string& path) {
  std::map<std::string, std::vector<std::string>> rows;
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  while (std::getline(in, line)) {
    std::vector<std::string> f;
    std::stringstream ss(line);
    for (std::string x; std::getline(ss, x, ',');) f.push_back(x);
    if (!f.empty()) rows[f[0]] = f;
  }
  return rows;
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace coe::testing

#endif  // COE_TESTS_TESTING_H_
