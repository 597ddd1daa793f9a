// coe/workflow.h: what the commands do, as a library (workflow layer, above the engine
// and the planner). The `coe` command, the Python package and the server are adapters:
// they parse their arguments, call one workflow, and print or return its result.
//
// Recording (`coe record`): every chosen catalogue model on every input, written to a
// recordings CSV (coe/recordings.h) and, beside it, the catalogue to plan them with.
//
//  - Failures are never answers. A call that failed (Prediction::failed: unreachable,
//    timed out, an HTTP error) is written as an empty label with the cause in the
//    model's `|error` cell, which every reader refuses, so nothing plans on it; it is
//    counted and named in the result (RecordFileResult::failures) and the command exits
//    non-zero. An abstention (the model answered, unreadably) is an answer: an empty
//    label with no error.
//  - Resuming: when the output exists (and `overwrite` is false), its rows are kept and
//    only what is missing is recorded: inputs with no row, and every failed call of the
//    rows there (a row that is complete again replaces its failed one). The file must
//    hold the same models with the same columns and only ids of these inputs; otherwise
//    InvalidArgument says so (record into a new file, or overwrite). A last row cut off
//    by an interrupted write (the file does not end in a line break) is dropped, with a
//    warning, and recorded again.
//  - Crash safety: with a model that waits on another process (remote, chat), inputs go
//    in parts of kRecordPart, and each part is in the file before the next starts (new
//    rows appended; a file whose rows change is replaced atomically), so an interrupted,
//    paid run loses at most a part. Local models are recorded in one part.
//  - Measured cost figures: `<out>.models.toml` holds the catalogue's cost figures with,
//    per model, `latency_us` (wall time per example in bulk) and `latency_ms` (one example
//    a call, local models only) measured over the calls made now; a model with no call
//    now keeps the figures the file beside the output had (never a made-up 0).
//
// Thread safety: each function may be called from any thread; what it builds is its own.
// Errors: the catalogue's, the inputs', the engine's, the files' (naming the path).
#ifndef COE_WORKFLOW_H_
#define COE_WORKFLOW_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "coe/backend.h"
#include "coe/cascade.h"
#include "coe/catalogue.h"
#include "coe/status.h"
#include "coe/tensor.h"

namespace coe {

inline constexpr int64_t kRecordPart = 256;

struct RecordFileOptions {
  std::vector<std::string> only;  // record these catalogue models (empty = all)
  int threads = 0;                // engine threads (0 = the cores)
  int batch = 32768;              // most examples per engine call
  bool overwrite = false;         // start a new file even when `out` exists
  std::string data_name;          // what the inputs are (a path), for the file's comments
  // Called after each model's engine call and each part: what is being done, the inputs
  // done of those to do, and the dollars spent by the calls so far (chat models).
  std::function<void(const std::string& what, int64_t done, int64_t total, double usd)> progress;
};

// The failed calls of one model with one cause (a record's, or a run's).
struct FailureGroup {
  std::string model;
  std::string error;     // the backend's message: the upstream's status and text
  int64_t count = 0;     // calls that failed so
  std::string first_id;  // the first input it happened on
};

struct RecordFileResult {
  std::string recordings;  // the CSV written
  std::string catalogue;   // the measured catalogue written beside it
  std::vector<std::string> models;
  int64_t inputs = 0;                            // inputs given
  int64_t kept = 0;                              // inputs whose rows were complete in the file already
  int64_t recorded = 0;                          // inputs on which a call was made now
  int64_t calls = 0;                             // model calls made now (one a model and input)
  int64_t failed = 0;                            // of those, the calls that failed (written as failures)
  std::vector<FailureGroup> failures;            // by model and cause, most frequent first
  double usd = 0;                                // what the calls made now cost (chat models)
  std::map<std::string, double> us_per_example;  // measured now, by model
  std::vector<std::string> warnings;
};

// Records `inputs` (ids, truth, tensors or JSON records) into `out`; see above.
StatusOr<RecordFileResult> RecordToFile(const Catalogue& catalogue, const InputBatch& inputs, const std::string& out,
                                        const RecordFileOptions& options);

// The result as JSON (what `coe record --json` prints).
std::string RecordFileResultJson(const RecordFileResult& r);

// "3 calls of model 'gpt' failed: chat model 'gpt': HTTP 401: invalid api key (first
// on input 'q7')", one line a cause, most frequent first; empty when nothing failed.
std::vector<std::string> FailureLines(const std::vector<FailureGroup>& failures);

// A run's failed calls (RunResult::failures) grouped by model and cause, most frequent
// first; `ids` names the inputs (by index when empty).
std::vector<FailureGroup> GroupFailures(const RunResult& run, const std::vector<Backend*>& members,
                                        const std::vector<std::string>& ids);

// Every chat model (of `only`, or all) must find its prompt's fields in every input
// record: InvalidArgument naming the file (`path`), the record, its id and the model.
Status CheckPromptFields(const Catalogue& catalogue, const std::vector<std::string>& only, const InputBatch& inputs,
                         const std::string& path);

// `<csv without .csv>.models.toml`: where the measured catalogue of a recordings file goes.
std::string MeasuredCataloguePath(const std::string& csv);

}  // namespace coe

#endif  // COE_WORKFLOW_H_
