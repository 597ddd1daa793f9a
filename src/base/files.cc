#include "coe/files.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace coe {

StatusOr<std::string> ReadFileToString(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    return InvalidArgumentError("'" + path + "' is a directory, not a file");
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFoundError("cannot open '" + path + "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return InternalError("error reading '" + path + "'");
  return ss.str();
}

bool IsImagePath(const std::string& p) {
  std::string ext = std::filesystem::path(p).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp" || ext == ".pgm" || ext == ".ppm" ||
         ext == ".tif" || ext == ".tiff" || ext == ".webp";
}

}  // namespace coe
