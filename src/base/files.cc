#include "coe/files.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace coe {

StatusOr<std::string> ReadFileToString(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return InvalidArgumentError("'" + path + "' is a directory, not a file");
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFoundError("cannot open '" + path + "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return InternalError("error reading '" + path + "'");
  return ss.str();
}

Status WriteStringToFile(const std::string& path, std::string_view text) {
  std::FILE* fp = std::fopen(path.c_str(), "wb");
  if (!fp) return InvalidArgumentError("cannot write '" + path + "': " + std::strerror(errno));
  const bool wrote = std::fwrite(text.data(), 1, text.size(), fp) == text.size();
  const int saved = errno;
  const bool closed = std::fclose(fp) == 0;
  if (!wrote || !closed)
    return InvalidArgumentError("cannot write '" + path + "': " + std::strerror(wrote ? errno : saved));
  return Status::Ok();
}

Status AppendStringToFile(const std::string& path, std::string_view text) {
  std::FILE* fp = std::fopen(path.c_str(), "ab");
  if (!fp) return InvalidArgumentError("cannot write '" + path + "': " + std::strerror(errno));
  const bool wrote = std::fwrite(text.data(), 1, text.size(), fp) == text.size() && std::fflush(fp) == 0;
  const int saved = errno;
  const bool closed = std::fclose(fp) == 0;
  if (!wrote || !closed)
    return InvalidArgumentError("cannot write '" + path + "': " + std::strerror(wrote ? errno : saved));
  return Status::Ok();
}

Status ReplaceFile(const std::string& path, std::string_view text) {
  const std::string tmp = path + ".coe-tmp";
  COE_RETURN_IF_ERROR(WriteStringToFile(tmp, text));
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    std::remove(tmp.c_str());
    return InvalidArgumentError("cannot replace '" + path + "': " + why);
  }
  return Status::Ok();
}

bool IsImagePath(const std::string& p) {
  std::string ext = std::filesystem::path(p).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp" || ext == ".pgm" || ext == ".ppm" ||
         ext == ".tif" || ext == ".tiff" || ext == ".webp";
}

}  // namespace coe
