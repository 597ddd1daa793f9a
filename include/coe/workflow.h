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
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "coe/backend.h"
#include "coe/cascade.h"
#include "coe/cascade_spec.h"
#include "coe/catalogue.h"
#include "coe/cost_model.h"
#include "coe/evaluate.h"
#include "coe/planner.h"
#include "coe/record.h"
#include "coe/recordings.h"
#include "coe/report.h"
#include "coe/status.h"
#include "coe/tensor.h"

namespace coe {

// Where a long workflow says how far it is: what it is doing, the share done (0 to 1)
// and a short detail ("2048/10000", "$0.12"). Called on the workflow's thread.
using ProgressSink = std::function<void(const std::string& what, double fraction, const std::string& detail)>;

// The failed calls of one model with one cause (a record's, or a run's).
struct FailureGroup {
  std::string model;
  std::string error;     // the backend's message: the upstream's status and text
  int64_t count = 0;     // calls that failed so
  std::string first_id;  // the first input it happened on
};

// ---------------------------------------------------------------- inputs

// Where inputs come from: what `--data`, `--labels`, `--label-field`, `--range` and
// `--normalize-labels` say.
struct InputSpec {
  std::string data;               // an IDX file, an image, a folder or .txt list of images, or .jsonl records
  std::string labels;             // the truth: an IDX label file, or a CSV of id,label (images)
  std::string label_field;        // JSONL: the record field holding the truth (default: label)
  std::string range;              // "A:B": examples [A, B) only
  bool normalize_labels = false;  // match true labels to the models' ignoring case and spaces
};

// Reads the inputs with one example's `shape` and the models' `label_names` (for IDX
// labels; empty for chat models, whose answers are open). True labels that no model
// gives count as wrong answers: mapped when `normalize_labels` finds them, else named
// with their counts in *warnings. Errors: the dataset's (coe/dataset.h).
// Images are resized to `resize` (DatasetOptions::resize).
StatusOr<InputBatch> LoadInputs(const InputSpec& spec, const std::vector<int64_t>& shape,
                                const std::vector<std::string>& label_names, std::vector<std::string>* warnings,
                                int64_t resize = 0);

// As above, with the shape, labels and image resizing of `first`, the model the inputs
// are read for (the others must resize images alike: InvalidArgument naming the one
// that does not, among `others`). Images fed to a model without preprocessing (scale 1,
// mean 0, std 1: raw 0-255 pixels) get a warning saying what an ImageNet model takes.
StatusOr<InputBatch> LoadInputsFor(const InputSpec& spec, const ModelSpec& first,
                                   const std::vector<const ModelSpec*>& others, std::vector<std::string>* warnings);

// ---------------------------------------------------------------- run

// One live run in figures: what `coe run` prints, and (JSON) what `coe report` reads.
struct RunSummary {
  std::string cascade;    // the cascade, in one line
  std::string cost_name;  // the unit of `mean_cost`
  int64_t examples = 0, labeled = 0, correct = 0;
  int64_t degraded = 0;    // answered with a fallback because a member failed
  int64_t unanswered = 0;  // no tier had an answer
  double accuracy = 0;     // correct / labeled (0 when nothing is labeled)
  double mean_cost = 0, seconds = 0, throughput = 0;
  std::vector<int64_t> exits;  // examples per tier (0-based index; tier t + 1)
  int64_t failed_calls = 0;    // member calls with no answer
  std::vector<FailureGroup> failures;
  std::vector<std::string> warnings;
};

// The figures of `run` (a run of `cascade` over `inputs`, taking `seconds`): an answer
// is right when the answering tier's `match` says it is the truth.
RunSummary Summarize(const Cascade& cascade, const InputBatch& inputs, const RunResult& run, double seconds);
// `coe run --json`: {examples, labeled, correct, accuracy (null when unlabeled), cost,
// cost_name, exits, seconds, examples_per_second, degraded, unanswered, cascade,
// failed_calls, failures [{model, error, count, first_id}], warnings}. `coe report`
// reads examples, exits, accuracy, cost and seconds of it back (RenderHtmlReport,
// coe/report.h), checked; a test runs `coe run --json` into it.
std::string RunSummaryJson(const RunSummary& summary);
// The table `coe run` prints.
std::string RunSummaryText(const RunSummary& summary);
// `coe run --out`: id,answer,exit_tier,agreement,cost,degraded[,label], a row an input.
std::string PredictionsCsv(const InputBatch& inputs, const RunResult& run);

struct LiveRunOptions {
  int threads = 0;       // engine threads (0 = the cores)
  int batch = 32768;     // most examples per engine call
  int chunk = 0;         // examples per model call (0 = the engine's)
  std::string cost_key;  // the catalogue figure counted as cost ("" = the default)
  ProgressSink progress;
};

struct LiveRun {
  std::unique_ptr<Cascade> cascade;
  InputBatch inputs;
  RunResult result;
  RunSummary summary;  // failures and warnings (estimated chat costs, unknown labels) included
};

// `coe run`: builds `spec`'s cascade from `catalogue` while another thread reads the
// inputs (with the first member's shape and labels), checks chat models' prompt fields,
// and runs it over the inputs in growing calls (coe/record.h RunInBatches). A failed
// member call is a failure in the summary, not an error of the run.
StatusOr<LiveRun> RunLive(const CascadeSpec& spec, const Catalogue& catalogue, const InputSpec& inputs,
                          const LiveRunOptions& options);

// ---------------------------------------------------------------- plan and eval

// What `coe plan` (and coe.plan()) asks of the planner, in the command's words.
struct PlanRequest {
  std::string goal = "match-best";        // match-best | accuracy=X | budget=X | max-accuracy
  std::string rules;                      // rule kinds (coe/planner.h ParseRuleKinds); "" = all supported
  std::string score_grid = "auto";        // quantiles tried as score thresholds: auto or 1-100
  std::string select = "noninferiority";  // match-best's guard
  SelectOptions select_options;
  std::string match = "exact";  // how every tier compares answers
  // Label-free planning (--reference): a model of the recordings, or "plurality" (coe/
  // planner.h ReferenceAnswers), whose answers stand in for the truth of both splits;
  // their label columns, if any, are only reported (ReportRow's true accuracies). ""
  // plans on the labels. ε and the confidence are select_options.epsilon and alpha.
  std::string reference;
  std::string objective = "cost";  // cost | latency
  double max_cost = -1;            // with objective latency: a bound on the mean cost (-1: none)
  double max_latency_ms = -1;      // with objective cost: a bound on the mean latency (-1: none)
  int max_tiers = 3, max_members = 3;
  int threads = 0;
  std::vector<std::string> only;  // search only these models
  bool prune = true;
  CostOptions cost;        // the cost model
  std::string cost_words;  // the cost model in words, for reports ("" = its figure's name)
  ProgressSink progress;
};

struct PlanOutcome {
  PlanResult plan;
  PlanReport report;         // the figures every output of a plan shows
  std::string goal;          // as Goal::ToString writes it
  std::string cost_name;     // what "cost" is
  std::string calib_source;  // the calibration file, if read from one
};

// Plans over recordings in memory (`test` may be null): the search, match-best's guard
// and the report beside the baselines. InvalidArgument names the flag of a bad word.
// The chosen cascade's non-final tiers get their calibrated_agreement with the last
// tier on `calib` (coe/cascade_spec.h), which ChosenCascadeToml writes. With a
// reference the splits are copied once to take its answers as their truth; a
// reference missing from a split is NotFound (ReferenceAnswers).
StatusOr<PlanOutcome> PlanRecordings(const Recordings& calib, const Recordings* test, const Catalogue& catalogue,
                                     const PlanRequest& request);

struct PlanFiles {
  std::string calib, test, models;  // test may be ""
  RecordingsReadOptions read;
};
// `coe plan`: reads the files (columns naming no model of the catalogue are dropped,
// with a warning) and plans.
StatusOr<PlanOutcome> PlanFromFiles(const PlanFiles& files, const PlanRequest& request,
                                    std::vector<std::string>* warnings);
// The chosen cascade as the TOML `coe plan --out` writes, saying how it was chosen.
std::string ChosenCascadeToml(const PlanOutcome& outcome);

struct EvalOutcome {
  CascadeSpec cascade;
  EvalResult result;
  std::string cost_name;
  std::optional<EvalServing> serving;  // with a cluster and --qps
};
// `coe eval`: a cascade replayed over recordings, costs by `cost_options`. Warnings
// (ignored columns, tiers out of cost order) go to *warnings, also when it fails.
StatusOr<EvalOutcome> EvalRecordings(const CascadeSpec& spec, const Recordings& recordings, const Catalogue& catalogue,
                                     const CostOptions& cost_options, std::vector<std::string>* warnings);
StatusOr<EvalOutcome> EvalFromFiles(const std::string& cascade, const std::string& recordings,
                                    const std::string& models, const RecordingsReadOptions& read,
                                    const CostOptions& cost_options, std::vector<std::string>* warnings);

// Drops the recordings' columns that name no model of the catalogue, with a warning each
// (a `notes` column, say).
void DropUnknownModels(Recordings* rec, const Catalogue& catalogue, std::vector<std::string>* warnings);
// Tiers whose members cost less than an earlier tier's, by the catalogue figure
// `cost_key` ("" = the default figure): CascadeWarnings (coe/cascade_spec.h).
std::vector<std::string> CascadeCostWarnings(const CascadeSpec& spec, const Catalogue& catalogue,
                                             const std::string& cost_key);

// ---------------------------------------------------------------- demo

struct DemoOptions {
  std::string models;    // the catalogue (default: the bundled zoo's)
  std::string data_dir;  // Debian's dataset-fashion-mnist
  std::string work;      // where the recordings and the cascade go
  std::string goal = "match-best";
  int threads = 0;
  std::function<void(const std::string&)> say;  // a line of what is happening
  ProgressSink progress;
};

struct DemoResult {
  std::string recordings, cascade_file;  // written
  uint64_t searched = 0;                 // cascades the planner searched
  double search_seconds = 0;
  CascadeSpec cascade;  // chosen
  std::string best_single;
  RunSummary single, cascaded;  // live on the test split
};

// `coe demo`: records every zoo model on the calibration split (the last 10,000
// training images), plans (cost: multiply-adds), and runs the chosen cascade and the
// best single model live on the 10,000 test images.
StatusOr<DemoResult> RunDemo(const DemoOptions& options);
std::string DemoResultJson(const DemoResult& result);
std::string DemoResultText(const DemoResult& result);

// ---------------------------------------------------------------- record

inline constexpr int64_t kRecordPart = 256;

struct RecordFileOptions {
  std::vector<std::string> only;  // record these catalogue models (empty = all)
  int threads = 0;                // engine threads (0 = the cores)
  int batch = 32768;              // most examples per engine call
  bool overwrite = false;         // start a new file even when `out` exists
  std::string data_name;          // what the inputs are (a path), for the file's comments
  // --throughput-batches: after recording, each computing model's throughput at these
  // batch sizes (MeasureThroughput), written as a cluster file (version 2) with one
  // device type, `device`, to <out>.throughput.toml; its price is left for the user.
  std::vector<int> throughput_batches;
  std::string device = "this_cpu";
  // After each model's engine call and each part: inputs done of those to do, and the
  // dollars the calls so far cost (chat models).
  ProgressSink progress;
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
  std::vector<Throughput> throughput;            // with throughput_batches
  std::string throughput_file;                   // where they were written
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
