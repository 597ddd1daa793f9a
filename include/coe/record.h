// coe/record.h: running models over a data set, for recordings and for live runs in
// batches (engine layer). What `coe record`, `coe run` and `coe demo` do, as a library.
//
// Thread safety: each function may be called from any thread; the cascades it builds
// are its own.
#ifndef COE_RECORD_H_
#define COE_RECORD_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "coe/cascade.h"
#include "coe/catalogue.h"
#include "coe/recordings.h"
#include "coe/status.h"
#include "coe/tensor.h"

namespace coe {

// Called after each batch with the examples done and the total.
using BatchProgress = std::function<void(int64_t done, int64_t total)>;

// Runs `cascade` over `inputs` in consecutive batches of at most `batch` examples (one
// Run each, so memory stays bounded) and joins the results. The first batch has
// min(batch, kFirstBatch) examples; after a call that took under kGrowBelow the next
// is twice as large (up to `batch`), so fast models run in few large calls and slow
// ones still report progress often. Answers do not depend on the batches (see
// coe/cascade.h). Errors: Cascade::Run's.
inline constexpr int64_t kFirstBatch = 2048;
inline constexpr std::chrono::milliseconds kGrowBelow{100};
StatusOr<RunResult> RunInBatches(const Cascade& cascade, const InputBatch& inputs, int batch,
                                 const RunOptions& options = {}, const BatchProgress& progress = nullptr);

struct RecordOptions {
  std::vector<std::string> only;  // record these catalogue models (empty = all)
  int threads = 0;                // engine threads (0 = the cores)
  int batch = 2048;               // examples per engine call
  // Called with the model being recorded, after each of its batches.
  std::function<void(const std::string& model, int64_t done, int64_t total)> progress;
};

struct RecordResult {
  // Every model's label, score and probabilities per example, and (ModelRecord::error)
  // why its call failed where it did: a failed call's label is empty, never an answer.
  Recordings recordings;
  LabelSet labels;                               // what the recordings' label indices mean
  std::map<std::string, double> us_per_example;  // measured wall time, by model
  // The median time of a call with one example (one request alone), by model: models
  // that compute here only (not remote, chat or recorded ones).
  std::map<std::string, double> ms_per_request;
};

// Runs every chosen catalogue model on `inputs` (whose ids and truth, if any, become
// the recordings'). InvalidArgument when `only` selects nothing or names an unknown
// model; the engine's errors otherwise.
StatusOr<RecordResult> RecordModels(const Catalogue& catalogue, const InputBatch& inputs, const RecordOptions& options);

// Throughput by batch size (issue 26): for each chosen catalogue model that computes
// here (not remote, chat or recorded ones), calls of exactly b examples (the inputs
// taken in turn, from the first) for each b in `batches`, one warm-up call then at least
// 3 and until 0.25 s have passed; examples/s = b / the median call. With
// `options.threads` engine threads, as `coe record` runs them. InvalidArgument for a
// batch < 1 or no inputs.
struct Throughput {
  std::string model;
  std::vector<std::pair<int, double>> points;  // (batch, examples/s), in `batches` order
};
StatusOr<std::vector<Throughput>> MeasureThroughput(const Catalogue& catalogue, const InputBatch& inputs,
                                                    const std::vector<int>& batches, const RecordOptions& options);

// A catalogue for planning on `recorded`: each recorded model's cost figures and site
// from `catalogue`, plus as measured `latency_us` (wall time per example in bulk, with
// every thread) and `latency_ms` (one example a call), for the models `recorded` has
// them for. It says nothing of how to run them.
Catalogue MeasuredCatalogue(const Catalogue& catalogue, const RecordResult& recorded);

}  // namespace coe

#endif  // COE_RECORD_H_
