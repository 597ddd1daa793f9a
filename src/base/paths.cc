#include "coe/paths.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace coe {

namespace fs = std::filesystem;

std::string ExecutableDir() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? "" : exe.parent_path().string();
}

std::string BuildTreeSourceDir() {
  const std::string dir = ExecutableDir();
  if (dir.empty()) return "";
  std::ifstream cache(fs::path(dir) / "CMakeCache.txt");
  const std::string key = "coe_SOURCE_DIR:STATIC=";
  for (std::string line; std::getline(cache, line);)
    if (line.rfind(key, 0) == 0) return line.substr(key.size());
  return "";
}

std::string BundledZooCatalogue() {
  if (const char* env = std::getenv("COE_ZOO"); env && *env) return env;
  const std::string source = BuildTreeSourceDir();
  if (!source.empty()) return (fs::path(source) / "models" / "zoo" / "catalogue.toml").string();
  return (fs::path(COE_INSTALL_DATADIR) / "coe" / "zoo" / "catalogue.toml").string();
}

}  // namespace coe
