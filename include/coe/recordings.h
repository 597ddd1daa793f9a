// coe/recordings.h: per-example outputs of many models on one data set.
//
// Recordings are the planner's input and `coe record`'s output. On disk they are a
// CSV with a header row:
//   id            unique example id (required)
//   label         the true label (optional; empty = unknown)
//   <model>       the model's predicted label (empty = abstain); one column a model
//   <model>|cost  per-example cost of that model (>= 0; overrides the catalogue)
//   <model>|score the model's confidence in its own label, in [0,1]
//   <model>|p:<label>  the model's probability for <label>, in [0,1]
//   <model>|error why the model's call failed on this example (`coe record` writes it):
//                 a failed call is not an answer, so its label cell is empty and the
//                 readers refuse the file (naming the model, id and error, and that
//                 re-running `coe record` with the same --out retries those calls)
//                 unless RecordingsReadOptions::allow_failures is set
// A `|`-suffixed column of an unknown model or kind is ignored with a warning. Every
// plain column is a model's; the commands drop, with a warning, those that name no
// model of their catalogue (DropModels). Labels compare as exact strings.
//
// Errors: ReadRecordings returns InvalidArgument for malformed input (a ragged row,
// a bad number, no `id` column, no data rows) and for any rule of ValidateRecordings
// (a negative cost, a score outside [0,1], a duplicate id, ...) with
// "<file>:<line>: column '<name>': ..." in the message.
//
// Thread safety: a Recordings is an immutable value once built; concurrent reads are safe.
#ifndef COE_RECORDINGS_H_
#define COE_RECORDINGS_H_

#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "coe/labels.h"
#include "coe/member_output.h"
#include "coe/status.h"

namespace coe {

struct ModelRecord {
  std::string name;
  std::vector<int> label;    // per example; kAbstain for an abstention
  std::vector<float> score;  // per example, or empty when the file has no |score
  std::vector<double> cost;  // per example, or empty when the file has no |cost
  // Probabilities, row-major [example][label] with num_probs labels per row, or empty.
  std::vector<float> probs;
  int num_probs = 0;
  // Per example: why the model's call failed ("" = it answered or abstained), or empty
  // when the recordings say nothing of failures (no |error column).
  std::vector<std::string> error;

  bool has_scores() const { return !score.empty() || !probs.empty(); }
};

struct Recordings {
  std::string source;  // file name, for messages
  // The names behind the label indices: the LabelSet the reader interned into (not
  // owned: it must outlive these recordings). Needed to compare free-text answers
  // (AnswerMatch other than exact); null for hand-built recordings.
  const LabelSet* labels = nullptr;
  std::vector<std::string> ids;     // one per example
  std::vector<int> truth;           // one per example (kAbstain = unknown); empty if no column
  std::vector<ModelRecord> models;  // in column order

  int num_examples() const { return static_cast<int>(!ids.empty() ? ids.size() : examples_without_ids); }
  // The number of examples when `ids` was dropped after reading (keep_ids = false).
  int examples_without_ids = 0;
  bool has_truth() const { return !truth.empty(); }
  int num_labeled() const;
  // Index of the model named `name`, or -1.
  int ModelIndex(std::string_view name) const;
  // Model `m`'s output on example `i`. Points into this object: valid while it lives.
  MemberOutput Output(int m, int i) const;
};

struct RecordingsReadOptions {
  // Keep rows whose id repeats an earlier row's as distinct examples (with a warning)
  // instead of failing. Some published data sets reuse ids for different questions.
  bool allow_duplicate_ids = false;
  // Check the ids, then drop them: a planner needs no ids, and on a file of millions
  // of rows they are a large share of the memory.
  bool keep_ids = true;
  // Compare labels after NormalizeLabel ("Cat " and "cat" are one class). Without it,
  // labels that differ only so are kept apart, with a warning giving their counts.
  bool normalize_labels = false;
  // Read |error cells into ModelRecord::error instead of refusing the file (for
  // `coe record`, which retries those calls).
  bool allow_failures = false;
};

// The rules every Recordings keeps, however it was built: ReadRecordings applies them
// to what it parsed and the Python package to arrays (coe.Recordings(...)), so the
// two cannot differ.
//  - at least one example; every column has one value per example (num_probs per
//    example for probabilities, 1 <= num_probs <= labels->size());
//  - model names can name a CSV column: non-empty, without '|', not "id" or "label",
//    each once;
//  - ids are non-empty and unique; with options.allow_duplicate_ids a repeat is a
//    warning instead (the rows stay distinct examples);
//  - label indices are kAbstain or name a label of `labels` (when set);
//  - costs are finite and >= 0;
//  - scores are in [0,1], or NaN: no score for that example (a CSV's empty cell);
//  - probabilities are in [0,1], and one example's sum to 1 within 0.01 or are all 0:
//    none for that example (a CSV's empty cells).
// Normalizes one thing: a score column with no score at all is dropped.
// `lines` is each example's source line (a CSV's); messages then name an example
// "<source>:<line>", else "<source>: example <i> (id '<id>')" with i counted from 0.
// Returns InvalidArgument "<example>: column '<name>': <what>" (or "<source>: ..." for
// a column's size or a model name) for the first broken rule, in example order;
// warnings are appended to `warnings` when it is not null.
Status ValidateRecordings(Recordings* rec, const RecordingsReadOptions& options, std::vector<std::string>* warnings,
                          std::span<const int> lines = {});

// Reads recordings from a CSV file. Labels are interned into `labels`, which the
// caller shares between splits so that label indices agree. Warnings (ignored
// columns) are appended to `warnings` when it is not null.
StatusOr<Recordings> ReadRecordings(const std::string& path, LabelSet* labels, std::vector<std::string>* warnings,
                                    const RecordingsReadOptions& options = {});
// The same, from text; `source` names it in messages.
StatusOr<Recordings> ParseRecordings(std::string_view text, const std::string& source, LabelSet* labels,
                                     std::vector<std::string>* warnings, const RecordingsReadOptions& options = {});

// The examples `rows` of `rec` (in that order), every column kept; label indices are
// unchanged (they still refer to the caller's LabelSet).
Recordings SelectRows(const Recordings& rec, std::span<const int> rows);

// Drops the models `keep` rejects (with their |cost, |score and |p: columns); returns
// their names. For recordings holding columns that name no model of the catalogue.
std::vector<std::string> DropModels(Recordings* rec, const std::function<bool(const std::string&)>& keep);

// Serializes recordings as CSV (the format above). Scores, costs, probabilities and
// failures are written when present; `labels` gives the label names. An example a model
// abstained on (or failed on) has empty score and probability cells.
std::string RecordingsToCsv(const Recordings& rec, const LabelSet& labels);

}  // namespace coe

#endif  // COE_RECORDINGS_H_
