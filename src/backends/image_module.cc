// libcoe_images.so: image input, through OpenCV's image codecs (see backends/module.h).
#include <algorithm>
#include <filesystem>
#include <opencv2/imgcodecs.hpp>
#include <unordered_map>

#include "backends/module.h"
#include "base/csv.h"
#include "coe/files.h"
#include "coe/recordings.h"

namespace coe {
namespace fs = std::filesystem;
namespace {

StatusOr<InputBatch> LoadImages(const std::string& path, const DatasetOptions& o) {
  std::vector<std::string> files;
  if (fs::is_directory(path)) {
    for (const auto& e : fs::directory_iterator(path))
      if (e.is_regular_file() && IsImagePath(e.path().string())) files.push_back(e.path().string());
    std::sort(files.begin(), files.end());
    if (files.empty()) return InvalidArgumentError("'" + path + "' holds no image files");
  } else if (fs::path(path).extension() == ".txt") {
    COE_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
    std::string dir = fs::path(path).parent_path().string();
    size_t start = 0;
    while (start < text.size()) {
      size_t nl = text.find('\n', start);
      if (nl == std::string::npos) nl = text.size();
      std::string line = text.substr(start, nl - start);
      start = nl + 1;
      while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
      if (line.empty()) continue;
      fs::path p(line);
      files.push_back(p.is_relative() && !dir.empty() ? (fs::path(dir) / p).string() : line);
    }
    if (files.empty()) return InvalidArgumentError("'" + path + "' lists no images (one path per line)");
  } else {
    files.push_back(path);
  }
  const int64_t count = static_cast<int64_t>(files.size());
  const int64_t begin = std::min(o.begin, count), end = o.end < 0 ? count : std::min(o.end, count);
  if (end <= begin)
    return InvalidArgumentError("'" + path + "' has " + std::to_string(count) + " images; the range is empty");
  InputBatch b;
  if (o.expected_shape.size() != 3)
    return InvalidArgumentError("reading images needs the models' input_shape [channels, height, width]");
  b.example_shape = o.expected_shape;
  const int c = static_cast<int>(o.expected_shape[0]), h = static_cast<int>(o.expected_shape[1]),
            w = static_cast<int>(o.expected_shape[2]);
  if (c != 1 && c != 3) return InvalidArgumentError("images need 1 or 3 channels in input_shape");
  for (int64_t i = begin; i < end; ++i) {
    const std::string& f = files[i];
    if (!fs::exists(f)) return NotFoundError("image '" + f + "' does not exist");
    cv::Mat img;
    try {
      img = cv::imread(f, c == 1 ? cv::IMREAD_GRAYSCALE : cv::IMREAD_COLOR);
    } catch (const std::exception& e) {
      return InvalidArgumentError("cannot read image '" + f + "' (" + e.what() + ")");
    } catch (...) {
      return InvalidArgumentError("cannot read image '" + f + "'");
    }
    if (img.empty()) return InvalidArgumentError("cannot read image '" + f + "' (not an image OpenCV can decode)");
    if (img.rows != h || img.cols != w)
      return InvalidArgumentError("image '" + f + "' is " + std::to_string(img.cols) + "x" + std::to_string(img.rows) +
                                  ", the models take " + std::to_string(w) + "x" + std::to_string(h));
    for (int ch = 0; ch < c; ++ch)
      for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x)
          b.data.push_back(c == 1 ? img.at<unsigned char>(y, x)
                                  : img.at<cv::Vec3b>(y, x)[2 - ch]);  // BGR -> RGB planes
    b.ids.push_back(fs::path(f).filename().string());
  }
  if (!o.labels_path.empty()) {
    COE_ASSIGN_OR_RETURN(std::string text, ReadFileToString(o.labels_path));
    COE_ASSIGN_OR_RETURN(auto rows, csv::Parse(text, o.labels_path));
    std::unordered_map<std::string, std::string> truth;
    for (size_t r = 0; r < rows.size(); ++r) {
      if (rows[r].fields.size() != 2)
        return InvalidArgumentError(o.labels_path + ":" + std::to_string(rows[r].line) + ": expected id,label");
      if (r == 0 && rows[r].fields[0] == "id") continue;
      truth[rows[r].fields[0]] = rows[r].fields[1];
    }
    // An image's label: by its file name, else by the name without its extension
    // (labels often omit it), which must then name one image only.
    std::unordered_map<std::string, int> stems;
    for (const std::string& id : b.ids) stems[fs::path(id).stem().string()]++;
    for (const std::string& id : b.ids) {
      auto it = truth.find(id);
      if (it == truth.end()) {
        const std::string stem = fs::path(id).stem().string();
        it = truth.find(stem);
        if (it != truth.end() && stems[stem] > 1)
          return InvalidArgumentError(o.labels_path + ": id '" + stem + "' matches " + std::to_string(stems[stem]) +
                                      " images by their names without extension (" + id +
                                      ", ...): give the file names");
      }
      if (it == truth.end())
        return InvalidArgumentError(o.labels_path + " has no label for image '" + id +
                                    "' (ids match the file name, or the name without its extension)");
      b.truth.push_back(it->second);
    }
  }
  return b;
}

}  // namespace
}  // namespace coe

namespace {
const coe::ModuleExports kExports{.name = "images", .load_images = &coe::LoadImages};
}  // namespace

extern "C" const coe::ModuleExports* coe_module() { return &kExports; }
