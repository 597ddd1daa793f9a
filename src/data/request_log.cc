// The request log's writer (coe/request_log.h): a bounded queue that request threads
// fill without waiting, and one thread that formats the lines, writes the side files
// and rotates the log at its size bound.
#include "coe/request_log.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <deque>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

namespace coe {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;  // keys in the order written: the marker first

namespace {

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string UtcNow() {
  const auto t = std::chrono::system_clock::now();
  const std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  const int ms =
      static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count() % 1000);
  char buf[80];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
  return buf;
}

size_t EntryBytes(const RequestLogEntry& e) { return e.text.size() + e.tensor.size() * sizeof(float) + 256; }

// The line of `e` (with its newline); `hash` is the tensor's, when it has one.
std::string FormatLine(const RequestLogEntry& e, bool redact, const std::string& hash) {
  json j = json::object();
  j["coe_request_log"] = 1;
  j["id"] = e.id;
  j["time"] = UtcNow();
  j["model"] = e.model;
  j["route"] = e.route;
  if (!redact) {
    if (!e.shape.empty())
      j["input"] = {{"shape", e.shape}, {"fp32", hash}};
    else
      j["input"] = e.text;
  }
  j["answer"] = e.answer;
  j["exit_tier"] = e.exit_tier;
  json members = json::array();
  for (const LoggedMember& m : e.members) {
    if (m.error.empty())
      members.push_back({{"name", m.name}, {"answer", m.answer}});
    else
      members.push_back({{"name", m.name}, {"error", m.error}});
  }
  j["members"] = std::move(members);
  j["cost"] = e.cost;
  j["cost_name"] = e.cost_name;
  j["ms"] = std::round(e.ms * 1e3) / 1e3;
  j["degraded"] = e.degraded;
  if (e.cached) j["cached"] = true;
  std::string line = Dump(j);
  // The extra fields go in as their JSON text, after the others.
  line.pop_back();  // '}'
  for (const auto& [name, value] : e.extra) {
    line += ",";
    line += Dump(json(name));
    line += ":";
    line += value;
  }
  line += "}\n";
  return line;
}

}  // namespace

std::string TensorHash(std::span<const float> values) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a, 64 bits
  const auto* p = reinterpret_cast<const unsigned char*>(values.data());
  for (size_t i = 0; i < values.size() * sizeof(float); ++i) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

std::vector<std::string> ExampleIds(const std::string& request_id, int64_t n) {
  if (n == 1) return {request_id};
  std::vector<std::string> ids;
  for (int64_t k = 0; k < n; ++k) ids.push_back(request_id + "/" + std::to_string(k));
  return ids;
}

std::string NewRequestId() {
  static const std::string prefix = [] {
    char buf[64];
    const auto us =
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch());
    std::snprintf(buf, sizeof buf, "coe-%llx-%d-", static_cast<unsigned long long>(us.count()),
                  static_cast<int>(::getpid()));
    return std::string(buf);
  }();
  static std::atomic<uint64_t> counter{0};
  return prefix + std::to_string(++counter);
}

struct RequestLog::Impl {
  RequestLogOptions options;
  std::function<void(const std::string&)> report;

  std::mutex mu;                 // guards the queue and the counts below
  std::condition_variable cv;    // the queue has entries, or stop
  std::condition_variable done;  // entries were written
  std::deque<RequestLogEntry> queue;
  size_t queued_bytes = 0;
  uint64_t accepted = 0, finished = 0;  // entries queued, entries the writer is done with
  bool stop = false;

  std::atomic<uint64_t> written{0}, dropped{0}, errors{0};

  // The writer thread's own (no lock): the open file, its size, the side files known.
  std::FILE* file = nullptr;
  uint64_t size = 0;
  bool failing = false;
  std::set<std::string> hashes;
  std::thread writer;

  void Say(const std::string& line) const {
    if (report)
      report(line);
    else
      std::fprintf(stderr, "%s\n", line.c_str());
  }

  // A write failed (`why`): counted, and said once until a write succeeds again.
  void Failed(const std::string& why) {
    ++errors;
    if (!failing)
      Say("request log " + options.path + ": " + why +
          "; log lines are lost until it can be written (counted in coe_log_errors_total)");
    failing = true;
  }

  // FILE and its side folder FILE.tensors become FILE.1 and FILE.1.tensors (FILE.k
  // FILE.(k+1), FILE.<keep> and its folder removed), and new ones start.
  void Rotate() {
    if (file) std::fclose(file);
    file = nullptr;
    const std::string& p = options.path;
    auto name = [&p](int k) { return k == 0 ? p : p + "." + std::to_string(k); };
    std::error_code ec;
    fs::remove(name(options.keep), ec);
    fs::remove_all(name(options.keep) + ".tensors", ec);
    for (int k = options.keep - 1; k >= 0; --k) {
      if (fs::exists(name(k), ec)) fs::rename(name(k), name(k + 1), ec);
      if (ec) Failed("cannot rotate: " + ec.message());
      ec.clear();
      if (fs::exists(name(k) + ".tensors", ec)) fs::rename(name(k) + ".tensors", name(k + 1) + ".tensors", ec);
      if (ec) Failed("cannot rotate: " + ec.message());
      ec.clear();
    }
    size = 0;
    hashes.clear();
  }

  // The side file of a tensor input, once per hash: written beside, then renamed, so
  // that a reader never sees a partial one.
  bool WriteSide(const RequestLogEntry& e, const std::string& hash) {
    if (hashes.count(hash)) return true;
    const fs::path dir = options.path + ".tensors";
    const fs::path side = dir / (hash + ".bin");
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (!fs::exists(side, ec)) {
      const std::string tmp = side.string() + ".tmp" + std::to_string(::getpid());
      std::FILE* f = std::fopen(tmp.c_str(), "wb");
      const size_t bytes = e.tensor.size() * sizeof(float);
      bool ok = f && std::fwrite(e.tensor.data(), 1, bytes, f) == bytes;
      const int err = errno;
      ok = (f && std::fclose(f) == 0) && ok;
      if (!ok || std::rename(tmp.c_str(), side.c_str()) != 0) {
        Failed("cannot write the side file " + side.string() + ": " + std::strerror(ok ? errno : err));
        std::remove(tmp.c_str());
        return false;
      }
      size += bytes;
    }
    hashes.insert(hash);
    return true;
  }

  void Write(const RequestLogEntry& e) {
    std::string hash;
    const bool side = !e.shape.empty() && !options.redact;
    if (side) hash = TensorHash(e.tensor);
    const std::string line = FormatLine(e, options.redact, hash);
    // The bound counts the line and the side file it adds to FILE.tensors.
    const uint64_t adds = line.size() + (side && !hashes.count(hash) ? e.tensor.size() * sizeof(float) : 0);
    if (size > 0 && size + adds > options.max_bytes) Rotate();
    if (side && !WriteSide(e, hash)) return;
    if (!file) file = std::fopen(options.path.c_str(), "ab");
    if (!file) return Failed(std::string("cannot open: ") + std::strerror(errno));
    if (std::fwrite(line.data(), 1, line.size(), file) != line.size())
      return Failed(std::string("cannot write: ") + std::strerror(errno));
    size += line.size();
    ++written;
    if (failing) {
      failing = false;
      Say("request log " + options.path + ": lines are written again");
    }
  }

  void Loop() {
    std::unique_lock<std::mutex> lock(mu);
    while (true) {
      cv.wait(lock, [&] { return stop || !queue.empty(); });
      if (queue.empty()) return;  // stopped, all written
      std::deque<RequestLogEntry> batch;
      batch.swap(queue);
      queued_bytes = 0;
      lock.unlock();
      for (const RequestLogEntry& e : batch) {
        if (options.before_write) options.before_write();
        Write(e);
      }
      if (file && std::fflush(file) != 0) Failed(std::string("cannot write: ") + std::strerror(errno));
      lock.lock();
      finished += batch.size();
      done.notify_all();
    }
  }
};

RequestLog::RequestLog(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

StatusOr<std::unique_ptr<RequestLog>> RequestLog::Open(const RequestLogOptions& options,
                                                       std::function<void(const std::string&)> report) {
  if (options.path.empty()) return InvalidArgumentError("the request log needs a file (--log FILE)");
  if (options.max_bytes == 0) return InvalidArgumentError("--log-max-mb must be more than 0");
  if (options.keep < 0) return InvalidArgumentError("--log-keep must be 0 or more");
  if (options.queue_lines == 0 || options.queue_bytes == 0)
    return InvalidArgumentError("the request log's queue must hold at least one entry");
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->report = std::move(report);
  impl->file = std::fopen(options.path.c_str(), "ab");
  if (!impl->file)
    return UnavailableError("cannot open the request log '" + options.path + "' for writing: " + std::strerror(errno) +
                            " (check --log: its folder must exist and be writable)");
  std::error_code ec;
  impl->size = fs::file_size(options.path, ec);
  if (ec) impl->size = 0;
  // Appending: the side files FILE.tensors holds already count, and are not written again.
  for (fs::directory_iterator it(options.path + ".tensors", ec), end; !ec && it != end; it.increment(ec))
    if (it->path().extension() == ".bin" && it->is_regular_file(ec)) {
      impl->size += it->file_size(ec);
      impl->hashes.insert(it->path().stem().string());
    }
  Impl* im = impl.get();
  impl->writer = std::thread([im] { im->Loop(); });
  return std::unique_ptr<RequestLog>(new RequestLog(std::move(impl)));
}

RequestLog::~RequestLog() {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stop = true;
  }
  impl_->cv.notify_all();
  impl_->writer.join();
  if (impl_->file) std::fclose(impl_->file);
}

bool RequestLog::Add(RequestLogEntry entry) {
  Impl& im = *impl_;
  const size_t bytes = EntryBytes(entry);
  {
    std::lock_guard<std::mutex> lock(im.mu);
    if (im.queue.size() >= im.options.queue_lines ||
        (!im.queue.empty() && im.queued_bytes + bytes > im.options.queue_bytes)) {
      ++im.dropped;
      return false;
    }
    im.queued_bytes += bytes;
    im.queue.push_back(std::move(entry));
    ++im.accepted;
  }
  im.cv.notify_one();
  return true;
}

void RequestLog::Flush() {
  Impl& im = *impl_;
  std::unique_lock<std::mutex> lock(im.mu);
  const uint64_t target = im.accepted;
  im.done.wait(lock, [&] { return im.finished >= target; });
}

uint64_t RequestLog::written() const { return impl_->written.load(); }
uint64_t RequestLog::dropped() const { return impl_->dropped.load(); }
uint64_t RequestLog::write_errors() const { return impl_->errors.load(); }
const RequestLogOptions& RequestLog::options() const { return impl_->options; }

}  // namespace coe
