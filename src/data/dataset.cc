#include "coe/dataset.h"

#include <fcntl.h>
#include <libdeflate.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <unordered_map>

#include "base/csv.h"
#include "base/numbers.h"
#include "coe/files.h"
#include "coe/recordings.h"
#include "coe/request_log.h"

namespace coe {

namespace fs = std::filesystem;

Status ParseRange(const std::string& text, int64_t* begin, int64_t* end) {
  size_t colon = text.find(':');
  if (colon == std::string::npos)
    return InvalidArgumentError("--range '" + text + "': expected BEGIN:END (e.g. 50000:60000)");
  std::string a = text.substr(0, colon), b = text.substr(colon + 1);
  auto num = [&](const std::string& s, int64_t dflt, int64_t* out) -> Status {
    if (s.empty()) {
      *out = dflt;
      return Status::Ok();
    }
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

constexpr uintptr_t kHugePage = uintptr_t{2} << 20;

// Advises the whole 2 MiB pages inside [p, p + bytes) onto huge pages.
void AdviseHugePages(void* p, size_t bytes) {
  const uintptr_t begin = reinterpret_cast<uintptr_t>(p), end = begin + bytes;
  const uintptr_t first = (begin + kHugePage - 1) & ~(kHugePage - 1), last = end & ~(kHugePage - 1);
  if (last > first) ::madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
}

// Reserves room for `n` floats in `v` and asks the kernel to back it with huge pages
// (transparent huge pages are on "madvise" in Debian's kernels). 10,000 Fashion-MNIST
// images are 31 MB of floats: ~7,700 page faults on 4 KiB pages, which took ~0.1 s of a
// `coe run` process on a VM, against ~15 on 2 MiB pages. A hint: if the kernel declines,
// nothing changes.
void ReserveOnHugePages(std::vector<float>* v, size_t n) {
  v->reserve(n);
  AdviseHugePages(v->data(), n * sizeof(float));
}

struct FreeDeleter {
  void operator()(unsigned char* p) const { std::free(p); }
};
using HugeBuffer = std::unique_ptr<unsigned char[], FreeDeleter>;

// `bytes` of memory (uninitialized), advised onto huge pages as above when 2 MiB or more;
// null when out of memory.
HugeBuffer AllocateOnHugePages(size_t bytes) {
  if (bytes < kHugePage) return HugeBuffer(static_cast<unsigned char*>(std::malloc(std::max<size_t>(1, bytes))));
  const size_t rounded = (bytes + kHugePage - 1) / kHugePage * kHugePage;
  void* p = std::aligned_alloc(kHugePage, rounded);
  if (p) AdviseHugePages(p, rounded);
  return HugeBuffer(static_cast<unsigned char*>(p));
}

// Deflate's largest ratio of output to input (RFC 1951: a 258-byte match costs at least
// 2 bits, 1032:1): a gzip file yields at most this many times its size.
constexpr uint64_t kMaxDeflateRatio = 1032;

// An IDX file (MNIST format, unsigned bytes), plain or gzipped (zlib reads plain
// files as they are), read as a stream: the header, then exactly the payload it
// declares. Only the examples asked for are kept, and data past the declared payload
// is an error, so memory follows what is used, never what the file (or a lying
// header) says: a header's sizes are claims, checked against the file's size (plain)
// or what decompression yields (gzip) before anything is allocated for them.
//
// Once the header is read, a gzip file of one member that decompresses to exactly the
// declared header and payload (its size trailer says so, and libdeflate checks it with
// room for no more) is decompressed whole by libdeflate, ~3x zlib's speed (the 10,000
// Fashion-MNIST test images: 12 against 36-49 ms, on the critical path of a `coe run`),
// then read from memory alike. Anything else (several members, data past the payload, a
// truncated payload, corruption) streams through zlib, whose errors name the problem.
class IdxReader {
 public:
  ~IdxReader() {
    if (f_) gzclose(f_);
  }
  Status Open(const std::string& path) {
    path_ = path;
    if (!fs::exists(path)) return NotFoundError("cannot open '" + path + "'");
    if (fs::is_directory(path)) return InvalidArgumentError("'" + path + "' is a directory, not an IDX file");
    f_ = gzopen(path.c_str(), "rb");
    if (!f_) return NotFoundError("cannot open '" + path + "'");
    unsigned char magic[4];
    COE_ASSIGN_OR_RETURN(size_t got, Read(magic, 4));
    if (got < 4 || magic[0] != 0 || magic[1] != 0)
      return InvalidArgumentError("'" + path + "' is not an IDX file (bad magic number)");
    if (magic[2] != 0x08) return InvalidArgumentError("'" + path + "': only unsigned-byte IDX data is supported");
    const int nd = magic[3];
    if (nd < 1 || nd > 4)
      return InvalidArgumentError("'" + path + "': bad IDX header (" + std::to_string(nd) + " axes)");
    for (int d = 0; d < nd; ++d) {
      unsigned char b[4];
      COE_ASSIGN_OR_RETURN(got, Read(b, 4));
      if (got < 4) return InvalidArgumentError("'" + path + "': bad IDX header (truncated)");
      dims_.push_back((int64_t{b[0]} << 24) | (int64_t{b[1]} << 16) | (int64_t{b[2]} << 8) | int64_t{b[3]});
      if (dims_.back() == 0)
        return InvalidArgumentError("'" + path + "': IDX header field 'dimension " + std::to_string(d) + "'" +
                                    (d == 0 ? " (the number of examples) is 0: the file holds no examples"
                                            : " is 0: every size must be at least 1"));
    }
    std::error_code ec;
    file_size_ = fs::file_size(path, ec);
    if (ec) file_size_ = 0;
    // The header and the payload it declares, if under 4 GiB (a gzip trailer's limit).
    uint64_t size = 1;
    for (int64_t d : dims_) size = std::min<uint64_t>(size * static_cast<uint64_t>(d), uint64_t{1} << 32);
    size += 4 + 4 * dims_.size();
    if (!gzdirect(f_) && size < (uint64_t{1} << 32) && Inflate(path, size)) {
      gzclose(f_);
      f_ = nullptr;
      position_ = 4 + 4 * dims_.size();
    }
    return Status::Ok();
  }
  const std::vector<int64_t>& dims() const { return dims_; }
  uint64_t header_bytes() const { return 4 + 4 * dims_.size(); }
  // The payload bytes the file holds, when known before reading it: a plain file's size
  // less the header, or a gzip file decompressed whole; nullopt for a gzip stream.
  std::optional<uint64_t> payload_bytes() const {
    if (inflated_) return inflated_size_ - header_bytes();
    if (f_ && gzdirect(f_)) return file_size_ > header_bytes() ? file_size_ - header_bytes() : 0;
    return std::nullopt;
  }
  // The most payload bytes the file can yield: payload_bytes(), or for a gzip stream
  // what deflate can yield from the file's size.
  uint64_t max_payload_bytes() const {
    if (std::optional<uint64_t> known = payload_bytes()) return *known;
    return file_size_ > std::numeric_limits<uint64_t>::max() / kMaxDeflateRatio ? std::numeric_limits<uint64_t>::max()
                                                                                : file_size_ * kMaxDeflateRatio;
  }

  // Reads the payload of `count` items of `item` bytes each, handing the bytes of items
  // [begin, end) to `keep` (in order, in pieces); then checks that the file ends there.
  Status ReadPayload(int64_t count, int64_t item, int64_t begin, int64_t end,
                     const std::function<void(const unsigned char*, size_t)>& keep) {
    const uint64_t total = static_cast<uint64_t>(count) * static_cast<uint64_t>(item);  // both < 2^32 and 2^26
    const uint64_t skip = static_cast<uint64_t>(begin) * item, kept = static_cast<uint64_t>(end - begin) * item;
    uint64_t done = 0;
    char buf[1 << 16];
    auto truncated = [&] {
      return InvalidArgumentError("'" + path_ + "' is truncated: the header promises " + std::to_string(total) +
                                  " bytes of data, the file has " + std::to_string(done));
    };
    while (done < skip) {
      COE_ASSIGN_OR_RETURN(size_t got, Read(buf, std::min<uint64_t>(sizeof buf, skip - done)));
      if (got == 0) return truncated();
      done += got;
    }
    for (uint64_t k = 0; k < kept;) {
      COE_ASSIGN_OR_RETURN(size_t got, Read(buf, std::min<uint64_t>(sizeof buf, kept - k)));
      if (got == 0) return truncated();
      keep(reinterpret_cast<const unsigned char*>(buf), got);
      k += got;
      done += got;
    }
    while (done < total) {
      COE_ASSIGN_OR_RETURN(size_t got, Read(buf, std::min<uint64_t>(sizeof buf, total - done)));
      if (got == 0) return truncated();
      done += got;
    }
    COE_ASSIGN_OR_RETURN(size_t extra, Read(buf, 1));
    if (extra != 0)
      return InvalidArgumentError("'" + path_ + "' has data after the " + std::to_string(total) +
                                  " bytes its header declares (" + ShapeString(dims_) +
                                  "): not an IDX file, or corrupt");
    return Status::Ok();
  }

 private:
  // Decompresses the gzip file at `path` into inflated_ when it is one member of exactly
  // `size` bytes (its header's declared size), with no more memory than that; false (and
  // nothing kept) otherwise: the stream then says what is wrong (data past the payload, a
  // truncated payload, corruption).
  // The file is mapped (its pages populated at once), the result lands on huge pages: on
  // this VM page faults cost as much as the decompression.
  bool Inflate(const std::string& path, size_t size) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    struct stat st;
    const size_t n = ::fstat(fd, &st) == 0 ? static_cast<size_t>(st.st_size) : 0;
    void* map = n >= 18 ? ::mmap(nullptr, n, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0) : MAP_FAILED;
    ::close(fd);
    if (map == MAP_FAILED) return false;
    const auto* file = static_cast<const unsigned char*>(map);
    const unsigned char* tail = file + n - 4;
    const size_t trailer = tail[0] | (size_t{tail[1]} << 8) | (size_t{tail[2]} << 16) | (size_t{tail[3]} << 24);
    HugeBuffer out;
    libdeflate_decompressor* d = nullptr;
    // The trailer is a claim too: allocate only what deflate can yield from n bytes.
    bool ok = file[0] == 0x1f && file[1] == 0x8b && trailer == size && size / kMaxDeflateRatio <= n &&
              (out = AllocateOnHugePages(size)) && (d = libdeflate_alloc_decompressor()) != nullptr;
    if (ok) {
      size_t in_used = 0, out_used = 0;
      ok = libdeflate_gzip_decompress_ex(d, file, n, out.get(), size, &in_used, &out_used) == LIBDEFLATE_SUCCESS &&
           in_used == n && out_used == size;
    }
    if (d) libdeflate_free_decompressor(d);
    ::munmap(map, n);
    if (!ok) return false;
    inflated_ = std::move(out);
    inflated_size_ = size;
    return true;
  }

  StatusOr<size_t> Read(void* dst, uint64_t n) {
    if (inflated_) {
      const size_t got = std::min<uint64_t>(n, inflated_size_ - position_);
      std::memcpy(dst, inflated_.get() + position_, got);
      position_ += got;
      return got;
    }
    const int got = gzread(f_, dst, static_cast<unsigned>(n));
    if (got < 0) {
      int err = 0;
      const char* msg = gzerror(f_, &err);
      return InvalidArgumentError("'" + path_ + "' is corrupt (" + std::string(msg ? msg : "read error") + ")");
    }
    return static_cast<size_t>(got);
  }

  std::string path_;
  uint64_t file_size_ = 0;  // on disk (compressed, for a gzip file)
  gzFile f_ = nullptr;
  HugeBuffer inflated_;  // the whole file, decompressed (or null: f_ streams it)
  size_t inflated_size_ = 0, position_ = 0;
  std::vector<int64_t> dims_;
};

std::string Stem(const std::string& path) {
  std::string s = fs::path(path).filename().string();
  for (const char* ext : {".gz", "-ubyte", ".idx"})
    if (s.size() > strlen(ext) && s.substr(s.size() - strlen(ext)) == ext) s.resize(s.size() - strlen(ext));
  return s;
}

}  // namespace

namespace {

StatusOr<InputBatch> LoadIdx(const std::string& path, const DatasetOptions& o) {
  IdxReader in;
  COE_RETURN_IF_ERROR(in.Open(path));
  const std::vector<int64_t>& dims = in.dims();
  if (dims.size() < 2)
    return InvalidArgumentError("'" + path + "' holds labels (a 1-D IDX array of " + std::to_string(dims[0]) +
                                "), not inputs");
  const int64_t count = dims[0];
  std::vector<int64_t> shape(dims.begin() + 1, dims.end());
  if (shape.size() == 2) shape.insert(shape.begin(), 1);  // [rows, cols] -> [1, rows, cols]
  InputBatch b;
  b.example_shape = shape;
  int64_t e = 1;  // every size is in [1, 2^32): stop before the product can overflow
  for (int64_t d : shape)
    if ((e *= d) > kMaxExampleValues)
      return InvalidArgumentError("'" + path + "': examples of shape " + ShapeString(shape) + " have more than " +
                                  std::to_string(kMaxExampleValues) + " values (the most coe takes)");
  const uint64_t declared = static_cast<uint64_t>(count) * static_cast<uint64_t>(e);  // < 2^32 * 2^26
  if (std::optional<uint64_t> held = in.payload_bytes(); held && declared > *held)
    return InvalidArgumentError("'" + path + "' is truncated: its IDX header (dimension 0, the number of examples) " +
                                "claims " + std::to_string(count) + " examples of " + std::to_string(e) + " bytes (" +
                                std::to_string(declared) + " bytes of data), the file holds " + std::to_string(*held) +
                                " after its " + std::to_string(in.header_bytes()) + "-byte header");
  if (!o.expected_shape.empty() && shape != o.expected_shape) {
    std::string a, x;
    for (int64_t d : shape) a += (a.empty() ? "" : "x") + std::to_string(d);
    for (int64_t d : o.expected_shape) x += (x.empty() ? "" : "x") + std::to_string(d);
    return InvalidArgumentError("'" + path + "' holds examples of shape " + a + ", the models take " + x);
  }
  const int64_t begin = std::min(o.begin, count);
  const int64_t end = o.end < 0 ? count : std::min(o.end, count);
  if (end <= begin)
    return InvalidArgumentError("'" + path + "' has " + std::to_string(count) + " examples; the range is empty");
  // Pixels become floats as they are decompressed, into memory on huge pages: all of
  // them when the file is known to hold them; from a gzip stream, no more than deflate
  // can yield nor kStreamReserve (the vector grows as data really arrives).
  constexpr uint64_t kStreamReserve = uint64_t{1} << 24;
  uint64_t reserve = static_cast<uint64_t>(end - begin) * e;
  if (!in.payload_bytes()) reserve = std::min({reserve, in.max_payload_bytes(), kStreamReserve});
  ReserveOnHugePages(&b.data, static_cast<size_t>(reserve));
  COE_RETURN_IF_ERROR(in.ReadPayload(
      count, e, begin, end, [&](const unsigned char* src, size_t n) { b.data.insert(b.data.end(), src, src + n); }));
  const std::string stem = Stem(path);
  for (int64_t i = begin; i < end; ++i) b.ids.push_back(stem + "#" + std::to_string(i));
  if (!o.labels_path.empty()) {
    IdxReader lin;
    COE_RETURN_IF_ERROR(lin.Open(o.labels_path));
    if (lin.dims().size() != 1)
      return InvalidArgumentError("'" + o.labels_path + "' is not a label file: it holds a " +
                                  std::to_string(lin.dims().size()) + "-D IDX array " + ShapeString(lin.dims()) +
                                  "; labels are a 1-D array of one byte per example");
    if (lin.dims()[0] != count)
      return InvalidArgumentError("'" + o.labels_path + "' has " + std::to_string(lin.dims()[0]) + " labels for " +
                                  std::to_string(count) + " examples in '" + path + "'");
    std::string lb;
    COE_RETURN_IF_ERROR(lin.ReadPayload(count, 1, begin, end, [&](const unsigned char* src, size_t n) {
      lb.append(reinterpret_cast<const char*>(src), n);
    }));
    for (int64_t i = begin; i < end; ++i) {
      const int c = static_cast<unsigned char>(lb[i - begin]);
      if (!o.label_names.empty() && c >= static_cast<int>(o.label_names.size()))
        return InvalidArgumentError("'" + o.labels_path + "': label " + std::to_string(c) + " at index " +
                                    std::to_string(i) + " has no name (" + std::to_string(o.label_names.size()) +
                                    " labels)");
      b.truth.push_back(o.label_names.empty() ? std::to_string(c) : o.label_names[c]);
    }
  }
  return b;
}

}  // namespace

// JSONL: one JSON object a line, `id` (string or integer) and the fields of the
// members' prompt templates, and optionally `label`. Blank lines are skipped.
StatusOr<InputBatch> LoadJsonl(const std::string& path, const DatasetOptions& o) {
  if (!o.labels_path.empty())
    return InvalidArgumentError("'" + path + "' is JSONL: its truth is a field of each record, not a labels file ('" +
                                o.labels_path + "'); name the field with --label-field (default: label)");
  const std::string field = o.label_field.empty() ? "label" : o.label_field;
  COE_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  InputBatch b;
  std::unordered_map<std::string, int> seen;
  int64_t index = 0;
  bool any_label = false;
  std::vector<std::string> truth;
  size_t start = 0;
  for (int line = 1; start < text.size(); ++line) {
    size_t nl = text.find('\n', start);
    if (nl == std::string::npos) nl = text.size();
    std::string_view row(text.data() + start, nl - start);
    start = nl + 1;
    if (!row.empty() && row.back() == '\r') row.remove_suffix(1);
    if (row.find_first_not_of(" \t") == std::string_view::npos) continue;
    const std::string where = path + ":" + std::to_string(line);
    nlohmann::json j = nlohmann::json::parse(row, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return InvalidArgumentError(where + ": not JSON (one JSON object a line)");
    if (!j.is_object()) return InvalidArgumentError(where + ": not a JSON object (one object a line)");
    auto id = j.find("id");
    std::string id_text;
    if (id == j.end() || !(id->is_string() || id->is_number_integer()))
      return InvalidArgumentError(where + ": no \"id\" (a string or an integer)");
    id_text = id->is_string() ? id->get<std::string>() : std::to_string(id->get<int64_t>());
    if (id_text.empty()) return InvalidArgumentError(where + ": empty \"id\"");
    if (auto [it, fresh] = seen.emplace(id_text, line); !fresh)
      return InvalidArgumentError(where + ": duplicate id '" + id_text + "' (first at line " +
                                  std::to_string(it->second) + ")");
    const int64_t i = index++;
    if (i < o.begin || (o.end >= 0 && i >= o.end)) continue;
    std::string label;
    if (auto l = j.find(field); l != j.end() && !l->is_null()) {
      if (l->is_string())
        label = l->get<std::string>();
      else if (l->is_number())
        label = l->dump();
      else
        return InvalidArgumentError(where + ": \"" + field + "\" (the truth) must be a string or a number");
      any_label = true;
    }
    b.ids.push_back(id_text);
    b.texts.emplace_back(row);
    truth.push_back(label);
  }
  if (b.texts.empty()) return InvalidArgumentError("'" + path + "' has no examples (one JSON object a line)");
  if (!any_label && !o.label_field.empty())
    return InvalidArgumentError("'" + path + "': no record has the field '" + o.label_field +
                                "' that --label-field names");
  if (any_label) b.truth = std::move(truth);
  return b;
}

bool IsImageInput(const std::string& path) {
  std::error_code ec;
  return fs::is_directory(path, ec) || IsImagePath(path) || fs::path(path).extension() == ".txt";
}

StatusOr<InputBatch> LoadDataset(const std::string& path, const DatasetOptions& options) {
  if (!fs::exists(path)) return NotFoundError("input '" + path + "' does not exist");
  if (IsRequestLog(path)) {  // coe serve --log's (coe/request_log.h), whatever its extension
    if (!options.labels_path.empty() || !options.label_field.empty())
      return InvalidArgumentError("'" + path + "' is a request log of coe serve: it holds no truth (--labels, " +
                                  "--label-field)");
    return ReadRequestLog(path, options.expected_shape, options.begin, options.end, nullptr);
  }
  if (fs::path(path).extension() == ".jsonl") return LoadJsonl(path, options);
  if (!options.label_field.empty())
    return InvalidArgumentError("--label-field '" + options.label_field + "' is for JSONL inputs; '" + path +
                                "' takes its truth from a labels file (--labels)");
  if (IsImageInput(path)) {
    if (!options.image_loader)
      return FailedPreconditionError("'" + path +
                                     "' is an image input: reading images needs an image loader "
                                     "(coe::OpenCvImageLoader() of coe/backend.h, from libcoe_images.so)");
    return options.image_loader(path, options);
  }
  return LoadIdx(path, options);
}

}  // namespace coe
