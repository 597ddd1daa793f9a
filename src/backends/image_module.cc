// libcoe_images.so: image input, through OpenCV's image codecs (see backends/module.h).
#include <algorithm>
#include <cmath>
#include <cstdint>
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

// PIL's bilinear resampling of 8-bit images (Pillow's Resample.c, which torchvision's
// Resize calls on a PIL image), reproduced to the bit: per output pixel, the input
// pixels under a triangle filter widened by the downscaling factor (so it antialiases),
// weights normalised then held as fixed-point numbers of 22 fraction bits, a horizontal
// pass then a vertical one, each rounded to 8 bits.
constexpr int kPrecisionBits = 32 - 8 - 2;

struct Taps {
  int size = 0;            // weights per output pixel
  std::vector<int> first;  // each output pixel's first input pixel
  std::vector<int> count;  // and how many it reads
  std::vector<int32_t> k;  // size weights per output pixel, fixed-point
};

Taps BilinearTaps(int in, int out) {
  const double scale = static_cast<double>(in) / out, filterscale = std::max(scale, 1.0), support = filterscale;
  Taps t;
  t.size = static_cast<int>(std::ceil(support)) * 2 + 1;
  t.k.assign(static_cast<size_t>(out) * t.size, 0);
  std::vector<double> w(t.size);
  for (int xx = 0; xx < out; ++xx) {
    const double center = (xx + 0.5) * scale;
    int xmin = static_cast<int>(center - support + 0.5), xmax = static_cast<int>(center + support + 0.5);
    xmin = std::max(xmin, 0);
    xmax = std::min(xmax, in) - xmin;
    double sum = 0;
    for (int x = 0; x < xmax; ++x) {
      const double d = std::abs((x + xmin - center + 0.5) / filterscale);
      w[x] = d < 1.0 ? 1.0 - d : 0.0;
      sum += w[x];
    }
    for (int x = 0; x < xmax; ++x) {
      const double v = sum != 0.0 ? w[x] / sum : w[x];
      t.k[static_cast<size_t>(xx) * t.size + x] =
          static_cast<int32_t>(v < 0 ? -0.5 + v * (1 << kPrecisionBits) : 0.5 + v * (1 << kPrecisionBits));
    }
    t.first.push_back(xmin);
    t.count.push_back(std::max(xmax, 0));
  }
  return t;
}

uint8_t Clip8(int32_t v) {
  if (v >= (1 << kPrecisionBits << 8)) return 255;
  if (v <= 0) return 0;
  return static_cast<uint8_t>(v >> kPrecisionBits);
}

// `img` (8-bit, any channels) resized to w x h as PIL's Image.resize(BILINEAR) does.
cv::Mat PilBilinear(const cv::Mat& img, int w, int h) {
  const int ch = img.channels();
  cv::Mat cur = img;
  if (w != cur.cols) {
    const Taps t = BilinearTaps(cur.cols, w);
    cv::Mat out(cur.rows, w, cur.type());
    for (int y = 0; y < cur.rows; ++y) {
      const uint8_t* in = cur.ptr<uint8_t>(y);
      uint8_t* o = out.ptr<uint8_t>(y);
      for (int xx = 0; xx < w; ++xx)
        for (int c = 0; c < ch; ++c) {
          int32_t ss = 1 << (kPrecisionBits - 1);
          const int32_t* k = &t.k[static_cast<size_t>(xx) * t.size];
          for (int x = 0; x < t.count[xx]; ++x) ss += in[(t.first[xx] + x) * ch + c] * k[x];
          o[xx * ch + c] = Clip8(ss);
        }
    }
    cur = out;
  }
  if (h != cur.rows) {
    const Taps t = BilinearTaps(cur.rows, h);
    cv::Mat out(h, cur.cols, cur.type());
    for (int yy = 0; yy < h; ++yy) {
      uint8_t* o = out.ptr<uint8_t>(yy);
      const int32_t* k = &t.k[static_cast<size_t>(yy) * t.size];
      for (int i = 0; i < cur.cols * ch; ++i) {
        int32_t ss = 1 << (kPrecisionBits - 1);
        for (int y = 0; y < t.count[yy]; ++y) ss += cur.ptr<uint8_t>(t.first[yy] + y)[i] * k[y];
        o[i] = Clip8(ss);
      }
    }
    cur = out;
  }
  return cur;
}

// torchvision's Resize(size) then CenterCrop((h, w)) of a PIL image: the shorter side to
// `size` (the longer in proportion, rounded down), then the centre, its offsets rounded
// half to even (Python's round).
cv::Mat ResizeAndCrop(const cv::Mat& img, int64_t size, int h, int w) {
  const bool wide = img.cols > img.rows;
  const int64_t shorter = wide ? img.rows : img.cols, longer = wide ? img.cols : img.rows;
  const int64_t scaled = static_cast<int64_t>(static_cast<double>(size) * static_cast<double>(longer) / shorter);
  const int ow = static_cast<int>(wide ? scaled : size), oh = static_cast<int>(wide ? size : scaled);
  cv::Mat resized = PilBilinear(img, ow, oh);
  const int top = static_cast<int>(std::nearbyint((oh - h) / 2.0)),
            left = static_cast<int>(std::nearbyint((ow - w) / 2.0));
  return resized(cv::Rect(left, top, w, h)).clone();
}

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
    if (o.resize > 0) {
      if (o.resize < h || o.resize < w)
        return InvalidArgumentError("images resized to " + std::to_string(o.resize) + " cannot be cropped to " +
                                    std::to_string(w) + "x" + std::to_string(h));
      img = ResizeAndCrop(img, o.resize, h, w);
    }
    if (img.rows != h || img.cols != w)
      return InvalidArgumentError("image '" + f + "' is " + std::to_string(img.cols) + "x" + std::to_string(img.rows) +
                                  ", the models take " + std::to_string(w) + "x" + std::to_string(h) +
                                  " (the catalogue's `resize` resizes and centre-crops images)");
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
