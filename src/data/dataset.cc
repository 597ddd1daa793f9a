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

#include "backends/plugin.h"

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

}  // namespace

bool IsImagePath(const std::string& p) {
  std::string ext = fs::path(p).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp" || ext == ".pgm" ||
         ext == ".ppm" || ext == ".tif" || ext == ".tiff" || ext == ".webp";
}

namespace {

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


}  // namespace

StatusOr<InputBatch> LoadDataset(const std::string& path, const DatasetOptions& options) {
  if (!fs::exists(path)) return NotFoundError("input '" + path + "' does not exist");
  const bool images = fs::is_directory(path) || IsImagePath(path) || fs::path(path).extension() == ".txt";
  if (images) {
    COE_ASSIGN_OR_RETURN(const OpenCvPlugin* plugin, LoadOpenCvPlugin());
    return plugin->load_images(path, options);
  }
  return LoadIdx(path, options);
}

}  // namespace coe
