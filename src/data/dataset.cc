#include "coe/dataset.h"

#include <zlib.h>

#include <algorithm>
#include <filesystem>
#include <cstring>
#include <fstream>
#include <unordered_map>

#include "coe/recordings.h"
#include "util/csv.h"
#include "util/numbers.h"

#ifdef COE_HAVE_ONNX
#include <opencv2/imgcodecs.hpp>
#endif

namespace coe {

namespace fs = std::filesystem;

Status ParseRange(const std::string& text, int64_t* begin, int64_t* end) {
  size_t colon = text.find(':');
  if (colon == std::string::npos)
    return InvalidArgumentError("--range '" + text + "': expected BEGIN:END (e.g. 50000:60000)");
  std::string a = text.substr(0, colon), b = text.substr(colon + 1);
  auto num = [&](const std::string& s, int64_t dflt, int64_t* out) -> Status {
    if (s.empty()) { *out = dflt; return Status::Ok(); }
    std::optional<double> v = ParseDouble(s);
    if (!v || *v < 0 || *v != static_cast<double>(static_cast<int64_t>(*v)))
      return InvalidArgumentError("--range '" + text + "': '" + s + "' is not a non-negative integer");
    *out = static_cast<int64_t>(*v);
    return Status::Ok();
  };
  COE_RETURN_IF_ERROR(num(a, 0, begin));
  COE_RETURN_IF_ERROR(num(b, -1, end));
  if (*end >= 0 && *end <= *begin) return InvalidArgumentError("--range '" + text + "' is empty");
  return Status::Ok();
}

namespace {

// Reads a whole file, gunzipping it when it is gzipped (zlib reads plain files as is).
StatusOr<std::string> ReadMaybeGzip(const std::string& path) {
  if (!fs::exists(path)) return NotFoundError("cannot open '" + path + "'");
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) return NotFoundError("cannot open '" + path + "'");
  std::string out;
  char buf[1 << 16];
  int n;
  while ((n = gzread(f, buf, sizeof buf)) > 0) out.append(buf, n);
  int err = 0;
  const char* msg = gzerror(f, &err);
  std::string what = (n < 0 && msg) ? msg : "";
  gzclose(f);
  if (n < 0) return InvalidArgumentError("'" + path + "' is corrupt (" + what + ")");
  return out;
}

uint32_t BigEndian(const std::string& s, size_t at) {
  return (static_cast<uint32_t>(static_cast<unsigned char>(s[at])) << 24) |
         (static_cast<uint32_t>(static_cast<unsigned char>(s[at + 1])) << 16) |
         (static_cast<uint32_t>(static_cast<unsigned char>(s[at + 2])) << 8) |
         static_cast<uint32_t>(static_cast<unsigned char>(s[at + 3]));
}

// Parses an IDX file of unsigned bytes: returns dims and the payload offset.
Status ParseIdx(const std::string& bytes, const std::string& path, std::vector<int64_t>* dims,
                size_t* offset) {
  if (bytes.size() < 4 || bytes[0] != 0 || bytes[1] != 0)
    return InvalidArgumentError("'" + path + "' is not an IDX file (bad magic number)");
  if (static_cast<unsigned char>(bytes[2]) != 0x08)
    return InvalidArgumentError("'" + path + "': only unsigned-byte IDX data is supported");
  const int nd = static_cast<unsigned char>(bytes[3]);
  if (nd < 1 || nd > 4 || bytes.size() < 4 + 4 * static_cast<size_t>(nd))
    return InvalidArgumentError("'" + path + "': bad IDX header");
  dims->clear();
  uint64_t total = 1;
  for (int d = 0; d < nd; ++d) {
    dims->push_back(BigEndian(bytes, 4 + 4 * d));
    total *= dims->back();
  }
  *offset = 4 + 4 * nd;
  if (bytes.size() - *offset < total)
    return InvalidArgumentError("'" + path + "' is truncated: the header promises " + std::to_string(total) +
                                " bytes of data, the file has " + std::to_string(bytes.size() - *offset));
  return Status::Ok();
}

std::string Stem(const std::string& path) {
  std::string s = fs::path(path).filename().string();
  for (const char* ext : {".gz", "-ubyte", ".idx"})
    if (s.size() > strlen(ext) && s.substr(s.size() - strlen(ext)) == ext) s.resize(s.size() - strlen(ext));
  return s;
}

bool IsImagePath(const std::string& p) {
  std::string ext = fs::path(p).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp" || ext == ".pgm" ||
         ext == ".ppm" || ext == ".tif" || ext == ".tiff" || ext == ".webp";
}

StatusOr<InputBatch> LoadIdx(const std::string& path, const DatasetOptions& o) {
  COE_ASSIGN_OR_RETURN(std::string bytes, ReadMaybeGzip(path));
  std::vector<int64_t> dims;
  size_t offset = 0;
  COE_RETURN_IF_ERROR(ParseIdx(bytes, path, &dims, &offset));
  if (dims.size() < 2) return InvalidArgumentError("'" + path + "' holds labels, not inputs");
  const int64_t count = dims[0];
  std::vector<int64_t> shape(dims.begin() + 1, dims.end());
  if (shape.size() == 2) shape.insert(shape.begin(), 1);  // [rows, cols] -> [1, rows, cols]
  InputBatch b;
  b.example_shape = shape;
  if (!o.expected_shape.empty() && shape != o.expected_shape) {
    std::string a, e;
    for (int64_t d : shape) a += (a.empty() ? "" : "x") + std::to_string(d);
    for (int64_t d : o.expected_shape) e += (e.empty() ? "" : "x") + std::to_string(d);
    return InvalidArgumentError("'" + path + "' holds examples of shape " + a + ", the models take " + e);
  }
  const int64_t begin = std::min(o.begin, count);
  const int64_t end = o.end < 0 ? count : std::min(o.end, count);
  if (end <= begin)
    return InvalidArgumentError("'" + path + "' has " + std::to_string(count) + " examples; the range is empty");
  const int64_t e = b.ExampleSize();
  b.data.resize((end - begin) * e);
  const unsigned char* src = reinterpret_cast<const unsigned char*>(bytes.data() + offset);
  for (int64_t k = 0; k < (end - begin) * e; ++k) b.data[k] = src[begin * e + k];
  const std::string stem = Stem(path);
  for (int64_t i = begin; i < end; ++i) b.ids.push_back(stem + "#" + std::to_string(i));
  if (!o.labels_path.empty()) {
    COE_ASSIGN_OR_RETURN(std::string lb, ReadMaybeGzip(o.labels_path));
    std::vector<int64_t> ldims;
    size_t loff = 0;
    COE_RETURN_IF_ERROR(ParseIdx(lb, o.labels_path, &ldims, &loff));
    if (ldims.size() != 1 || ldims[0] != count)
      return InvalidArgumentError("'" + o.labels_path + "' has " + std::to_string(ldims[0]) +
                                  " labels for " + std::to_string(count) + " examples in '" + path + "'");
    for (int64_t i = begin; i < end; ++i) {
      const int c = static_cast<unsigned char>(lb[loff + i]);
      if (!o.label_names.empty() && c >= static_cast<int>(o.label_names.size()))
        return InvalidArgumentError("'" + o.labels_path + "': label " + std::to_string(c) + " at index " +
                                    std::to_string(i) + " has no name (" +
                                    std::to_string(o.label_names.size()) + " labels)");
      b.truth.push_back(o.label_names.empty() ? std::to_string(c) : o.label_names[c]);
    }
  }
  return b;
}

#ifdef COE_HAVE_ONNX
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
  } else {
    files.push_back(path);
  }
  const int64_t count = static_cast<int64_t>(files.size());
  const int64_t begin = std::min(o.begin, count), end = o.end < 0 ? count : std::min(o.end, count);
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
    } catch (const cv::Exception& e) {
      return InvalidArgumentError("cannot read image '" + f + "' (" + e.what() + ")");
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
    LabelSet unused;
    COE_ASSIGN_OR_RETURN(std::string text, ReadFileToString(o.labels_path));
    COE_ASSIGN_OR_RETURN(auto rows, csv::Parse(text, o.labels_path));
    std::unordered_map<std::string, std::string> truth;
    for (size_t r = 0; r < rows.size(); ++r) {
      if (rows[r].fields.size() != 2)
        return InvalidArgumentError(o.labels_path + ":" + std::to_string(rows[r].line) + ": expected id,label");
      if (r == 0 && rows[r].fields[0] == "id") continue;
      truth[rows[r].fields[0]] = rows[r].fields[1];
    }
    for (const std::string& id : b.ids) {
      auto it = truth.find(id);
      b.truth.push_back(it == truth.end() ? "" : it->second);
    }
  }
  return b;
}
#endif

}  // namespace

StatusOr<InputBatch> LoadDataset(const std::string& path, const DatasetOptions& options) {
  if (!fs::exists(path)) return NotFoundError("input '" + path + "' does not exist");
  const bool images = fs::is_directory(path) || IsImagePath(path) || fs::path(path).extension() == ".txt";
  if (images) {
#ifdef COE_HAVE_ONNX
    return LoadImages(path, options);
#else
    return FailedPreconditionError("this coe was built without OpenCV: no image input");
#endif
  }
  return LoadIdx(path, options);
}

}  // namespace coe
