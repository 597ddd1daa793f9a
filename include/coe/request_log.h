// coe/request_log.h: the request log of `coe serve --log FILE` (data layer): what every
// served request was, as its members saw it, and what they and the cascade answered;
// and reading such a log back as inputs (`coe record --data FILE`).
//
// The format: JSON Lines, one object a served example (an infer request of N examples
// writes N lines; a chat request one), UTF-8, keys in this order:
//   coe_request_log  1: the format's version, and its marker (see IsRequestLog)
//   id               the request's id (OIP "id", gRPC id), else one the server made and
//                    returned (the infer response's "id", the chat completion's "id");
//                    example k of a request of N > 1 examples: "<id>/<k>" (0-based)
//   time             when the answer was given, UTC, "2026-12-07T09:23:03.123Z"
//   model            the served model
//   route            "infer" (REST), "grpc" (Server::Run: the gRPC front end's, or an
//                    in-process caller's) or "chat"
//   input            text inputs (chat): the cascade's record, the JSON text every member
//                    got (coe/protocol.h ChatRecordJson), as a JSON string whose value is
//                    that text byte for byte. Tensor inputs: {"shape": [1, 28, 28],
//                    "fp32": "<hash>"}, the example's FP32 values, whose bytes
//                    (little-endian, row-major) are the side file
//                    FILE.tensors/<hash>.bin, written once per distinct hash; <hash> is
//                    the 16 hex digits of the 64-bit FNV-1a hash of those bytes.
//                    Absent with redact (no input text, no tensor, no side file).
//   answer           the cascade's answer ("" when unanswered)
//   exit_tier        the tier that answered, 1-based
//   members          every member of every reached tier, in the cascade's order:
//                    {"name", "answer"} (answer "" = abstained), and "error" instead of
//                    "answer" for a member whose call failed (no answer)
//   cost             what the example cost, in the served cascade's cost unit (cost_name)
//   cost_name        that unit ("usd", "macs", ...)
//   ms               milliseconds from the request's start (admitted, parsed) to its answer
//   degraded         true when a failing member forced a fallback answer
//   cached           (chat, only when true) answered from the response cache: no member
//                    was called, `members` is empty
//   ...              more fields a later writer adds (RequestLogEntry::extra), after these
// For example (an infer request of one image, tier 1 unanimous):
//   {"coe_request_log":1,"id":"r-1","time":"2026-12-07T09:23:03.123Z","model":"fashion",
//    "route":"infer","input":{"shape":[1,28,28],"fp32":"6f1c0d2a9e3b4c55"},"answer":"boot",
//    "exit_tier":1,"members":[{"name":"linear","answer":"boot"},{"name":"mlp256x2",
//    "answer":"boot"}],"cost":242840,"cost_name":"macs","ms":0.412,"degraded":false}
//
// Size and rotation: FILE's bound counts its lines and the side files written into
// FILE.tensors/ for them. Before a line (and its side file) would take FILE past
// max_bytes, FILE and FILE.tensors/ become FILE.1 and FILE.1.tensors/ (FILE.1 becomes
// FILE.2, ..., FILE.<keep> and its folder are removed) and new ones start; so at most
// (keep + 1) x max_bytes are kept, side files included (a single line longer than
// max_bytes is written alone into a fresh file). A side file is written once per log
// file: a later file writes it again when one of its lines needs it.
//
// Writing never blocks a request for long: Add() queues the entry (at most queue_lines
// entries and queue_bytes of inputs wait) and a writer thread formats and writes it. A
// full queue drops the entry and counts it (dropped(); coe_log_dropped_total). A write
// error (disk full, a removed folder) is counted (write_errors(); coe_log_errors_total)
// and said through `report` once per run of failures (again after a write succeeded);
// the request is answered regardless. Never a crash.
//
// Reading (`coe record --data FILE`, `coe run --data FILE`): a file is a request log
// when it begins with the bytes {"coe_request_log": (its first line is a JSON object
// whose first key is the marker, as the writer writes every line; IsRequestLog checks
// it, and coe/dataset.h LoadDataset then reads it with ReadRequestLog, whatever its
// extension). Side files are looked for in <path>.tensors/ (a rotated FILE.<k>'s in
// FILE.<k>.tensors/).
// Every line becomes an input with the line's id: text inputs their record, tensor
// inputs the bytes of their side file. Recording member M on them makes the same calls
// M got when served (a chat member gets byte-identical requests), so its recorded
// answers are the ones the log says M gave (for deterministic models). The logged
// answers are not reused as recordings: every member is called again.
//
// Thread safety: Add() and the counters may be called from any thread at once; Flush
// and the destructor from any thread (not concurrently with each other's destruction).
// Ownership: a RequestLog owns its writer thread and files.
#ifndef COE_REQUEST_LOG_H_
#define COE_REQUEST_LOG_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "coe/status.h"
#include "coe/tensor.h"

namespace coe {

struct RequestLogOptions {
  std::string path;                 // FILE; "" = no log
  uint64_t max_bytes = 100u << 20;  // FILE's size bound (coe serve --log-max-mb, default 100)
  int keep = 5;                     // rotated files FILE.1 .. FILE.<keep> (--log-keep); 0: none kept
  bool redact = false;              // only ids and answers: no input (--log-redact)
  size_t queue_lines = 4096;        // entries waiting for the writer; more are dropped
  size_t queue_bytes = 256u << 20;  // bytes of their inputs; more are dropped
  // Test hook, called on the writer thread before each entry is written (null: none).
  std::function<void()> before_write;
};

// One member's part in a logged example.
struct LoggedMember {
  std::string name;
  std::string answer;  // "" = abstained
  std::string error;   // not empty: the call failed (no answer); `answer` is then ""
};

// One served example.
struct RequestLogEntry {
  std::string id, model, route;
  std::string text;            // a text input's record (chat), or ""
  std::vector<int64_t> shape;  // a tensor input's shape (one example)
  std::vector<float> tensor;   // and its values
  std::string answer;
  int exit_tier = 0;  // 1-based
  std::vector<LoggedMember> members;
  double cost = 0;
  std::string cost_name;
  double ms = 0;
  bool degraded = false;
  bool cached = false;
  // More fields, written after the others in this order: name -> JSON text of the value
  // (e.g. {"shadow", "{\"answer\":\"boot\",\"agreed\":true}"}). Names must not repeat
  // the fields above.
  std::vector<std::pair<std::string, std::string>> extra;
};

class RequestLog {
 public:
  // Opens (appends to) options.path, creating it, and starts the writer. InvalidArgument
  // for no path, max_bytes 0, keep < 0 or a queue of 0; Unavailable naming the path and
  // the system's reason when the file cannot be opened for writing (FILE.tensors/ is
  // made at the first tensor input; failing then, it is a write error). `report` gets
  // the lines about write errors (null: stderr).
  static StatusOr<std::unique_ptr<RequestLog>> Open(const RequestLogOptions& options,
                                                    std::function<void(const std::string&)> report = nullptr);
  ~RequestLog();  // writes what is queued, then closes
  RequestLog(const RequestLog&) = delete;
  RequestLog& operator=(const RequestLog&) = delete;

  // Queues `entry` (never waits on the disk); false when the queue is full and it was
  // dropped (counted).
  bool Add(RequestLogEntry entry);
  // Waits until every entry queued before the call is written and flushed.
  void Flush();

  uint64_t written() const;       // lines written
  uint64_t dropped() const;       // entries dropped (queue full)
  uint64_t write_errors() const;  // entries lost to write errors
  const RequestLogOptions& options() const;

  struct Impl;

 private:
  explicit RequestLog(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// "6f1c0d2a9e3b4c55": the 64-bit FNV-1a hash of `values`' bytes, as 16 hex digits.
std::string TensorHash(std::span<const float> values);

// Whether `path` is a request log: a file that begins with {"coe_request_log": (see
// above). False for a missing or unreadable file.
bool IsRequestLog(const std::string& path);

// A request log's examples [begin, end) (end -1: to the end) as inputs: ids, and texts
// (chat records) or tensors with `expected_shape` (empty: as logged). InvalidArgument
// naming the file and line for a line that is not a log line, a redacted line (no
// input), text and tensor inputs mixed, shapes that differ; NotFound naming the id and
// hash for a missing side file (and InvalidArgument for one of the wrong size or
// hash). An id seen again with the same input is skipped; with another input it
// becomes "<id>~<line>" (said in *warnings).
StatusOr<InputBatch> ReadRequestLog(const std::string& path, const std::vector<int64_t>& expected_shape, int64_t begin,
                                    int64_t end, std::vector<std::string>* warnings);

// The log ids of a request's `n` examples: {request_id} for one, else
// "<request_id>/<k>", k = 0 .. n-1.
std::vector<std::string> ExampleIds(const std::string& request_id, int64_t n);

// A new request id unique in this process and, with high probability, across
// processes: "coe-<start time in µs, hex>-<pid>-<counter>".
std::string NewRequestId();

}  // namespace coe

#endif  // COE_REQUEST_LOG_H_
