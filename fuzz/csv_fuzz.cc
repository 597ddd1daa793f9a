// libFuzzer target for the CSV readers: coe::csv::Parse and coe::ParseRecordings.
//
// Checks, beyond "no crash, leak, hang or sanitizer report":
//  - errors are InvalidArgument with a message naming the source;
//  - csv::Parse: rows start on increasing lines, every row has a field, and writing the
//    rows back with csv::Escape parses to the same rows;
//  - ParseRecordings (with and without allow_duplicate_ids, with a fresh and with a
//    pre-filled LabelSet): the result is structurally sound (per-model vectors have one
//    entry per example, label indices are valid, scores and probabilities in [0,1],
//    costs finite and >= 0, ids unique unless allowed), and RecordingsToCsv ->
//    ParseRecordings gives the same examples, ids, truth, labels per model, costs,
//    scores and probabilities, with no warnings; a second round trip is a fixed point.
// A violated invariant abort()s with a message on stderr.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "base/csv.h"
#include "coe/labels.h"
#include "coe/recordings.h"
#include "coe/status.h"

namespace {

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "csv_fuzz: invariant violated: %s\n", what.c_str());
  std::abort();
}

void Check(bool ok, const std::string& what) {
  if (!ok) Fail(what);
}

void CheckError(const coe::Status& s, const std::string& source) {
  Check(!s.ok(), "error status expected");
  Check(s.code() == coe::StatusCode::kInvalidArgument, "bad input must give InvalidArgument, got " + s.ToString());
  Check(s.message().find(source) != std::string::npos, "error message does not name the source: " + s.message());
}

void CheckCsvRoundTrip(const std::vector<coe::csv::Row>& rows) {
  int last_line = 0;
  // A BOM first, so that a first field that itself starts with BOM bytes survives.
  std::string text = "\xEF\xBB\xBF";
  std::vector<const coe::csv::Row*> kept;
  for (const coe::csv::Row& row : rows) {
    Check(row.line > last_line, "row lines must increase");
    last_line = row.line;
    Check(!row.fields.empty(), "a row without fields");
    // A row of one empty field is written as a blank line, which the reader skips.
    if (row.fields.size() == 1 && row.fields[0].empty()) continue;
    for (size_t f = 0; f < row.fields.size(); ++f) {
      if (f) text += ",";
      text += coe::csv::Escape(row.fields[f]);
    }
    text += "\n";
    kept.push_back(&row);
  }
  auto again = coe::csv::Parse(text, "escaped");
  if (!again.ok()) Fail("escaped rows do not parse: " + again.status().ToString());
  Check(again->size() == kept.size(), "escaped rows parse to a different row count");
  for (size_t r = 0; r < kept.size(); ++r)
    Check((*again)[r].fields == kept[r]->fields, "escaped row " + std::to_string(r) + " differs");
}

// Structural invariants that users of a Recordings rely on.
void CheckRecordings(const coe::Recordings& rec, const coe::LabelSet& labels, bool allow_duplicate_ids) {
  const size_t n = rec.ids.size();
  Check(n > 0, "no examples but OK");
  for (const std::string& id : rec.ids) Check(!id.empty(), "empty id");
  if (!allow_duplicate_ids) {
    std::vector<std::string> sorted = rec.ids;
    std::sort(sorted.begin(), sorted.end());
    Check(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end(), "duplicate ids");
  }
  auto valid_label = [&](int l) { return l == coe::kAbstain || (l >= 0 && l < labels.size()); };
  Check(rec.truth.empty() || rec.truth.size() == n, "truth size");
  for (int t : rec.truth) Check(valid_label(t), "truth label index out of range");
  for (size_t m = 0; m < rec.models.size(); ++m) {
    const coe::ModelRecord& mr = rec.models[m];
    Check(!mr.name.empty() && mr.name.find('|') == std::string::npos && mr.name != "id" && mr.name != "label",
          "bad model name '" + mr.name + "'");
    Check(rec.ModelIndex(mr.name) == static_cast<int>(m), "model names not unique");
    Check(mr.label.size() == n, "label size");
    for (int l : mr.label) Check(valid_label(l), "model label index out of range");
    Check(mr.score.empty() || mr.score.size() == n, "score size");
    for (float s : mr.score) Check(std::isnan(s) || (s >= 0 && s <= 1), "score outside [0,1]");
    Check(mr.cost.empty() || mr.cost.size() == n, "cost size");
    for (double c : mr.cost) Check(std::isfinite(c) && c >= 0, "bad cost");
    if (mr.probs.empty()) {
      Check(mr.num_probs == 0, "num_probs without probs");
    } else {
      Check(mr.num_probs > 0 && mr.num_probs <= labels.size(), "num_probs out of range");
      Check(mr.probs.size() == n * static_cast<size_t>(mr.num_probs), "probs size");
      for (float p : mr.probs) Check(p >= 0 && p <= 1, "probability outside [0,1]");
    }
    for (size_t i = 0; i < n; ++i) {
      coe::MemberOutput o = rec.Output(static_cast<int>(m), static_cast<int>(i));
      Check(o.label == mr.label[i], "Output label");
      if (o.probs) (void)o.ProbabilityOf(o.label == coe::kAbstain ? 0 : o.label);
    }
  }
}

bool SameFloat(float a, float b) { return (std::isnan(a) && std::isnan(b)) || a == b; }

// `b` was read back from RecordingsToCsv(a): same data, by label name.
void CheckSame(const coe::Recordings& a, const coe::Recordings& b, const coe::LabelSet& labels) {
  Check(a.num_examples() == b.num_examples(), "round trip: number of examples differs");
  Check(a.ids == b.ids, "round trip: ids differ");
  Check(a.has_truth() == b.has_truth(), "round trip: truth column differs");
  for (size_t i = 0; i < a.truth.size(); ++i)
    Check(labels.name(a.truth[i]) == labels.name(b.truth[i]), "round trip: truth differs");
  Check(a.models.size() == b.models.size(), "round trip: number of models differs");
  for (size_t m = 0; m < a.models.size(); ++m) {
    const coe::ModelRecord& x = a.models[m];
    const coe::ModelRecord& y = b.models[m];
    const std::string what = "round trip: model '" + x.name + "': ";
    Check(x.name == y.name, what + "name differs");
    for (size_t i = 0; i < x.label.size(); ++i)
      Check(labels.name(x.label[i]) == labels.name(y.label[i]), what + "labels differ");
    Check(x.cost == y.cost, what + "costs differ");
    Check(x.score.size() == y.score.size(), what + "scores differ");
    for (size_t i = 0; i < x.score.size(); ++i) Check(SameFloat(x.score[i], y.score[i]), what + "scores differ");
    Check(x.probs.empty() == y.probs.empty(), what + "probabilities differ");
    if (x.probs.empty()) continue;
    // Labels interned after the first header widen the rows read back; they are 0.
    Check(y.num_probs >= x.num_probs, what + "fewer probabilities");
    for (size_t i = 0; i < x.label.size(); ++i)
      for (int l = 0; l < y.num_probs; ++l) {
        float px = l < x.num_probs ? x.probs[i * x.num_probs + l] : 0.0f;
        Check(px == y.probs[i * y.num_probs + l], what + "probabilities differ");
      }
  }
}

void FuzzRecordings(std::string_view text, const coe::RecordingsReadOptions& options, bool prefill) {
  coe::LabelSet labels;
  if (prefill) {
    labels.Intern("A");
    labels.Intern("B");
  }
  std::vector<std::string> warnings;
  auto rec = coe::ParseRecordings(text, "in.csv", &labels, &warnings, options);
  if (!rec.ok()) {
    CheckError(rec.status(), "in.csv");
    return;
  }
  CheckRecordings(*rec, labels, options.allow_duplicate_ids);

  const std::string csv1 = coe::RecordingsToCsv(*rec, labels);
  std::vector<std::string> warnings2;
  auto back = coe::ParseRecordings(csv1, "out.csv", &labels, &warnings2, options);
  if (!back.ok()) Fail("RecordingsToCsv output does not parse: " + back.status().ToString());
  CheckRecordings(*back, labels, options.allow_duplicate_ids);
  CheckSame(*rec, *back, labels);
  for (const std::string& w : warnings2) Check(w.find("duplicate id") != std::string::npos, "round trip warns: " + w);

  const std::string csv2 = coe::RecordingsToCsv(*back, labels);
  auto back2 = coe::ParseRecordings(csv2, "out2.csv", &labels, nullptr, options);
  if (!back2.ok()) Fail("second round trip does not parse: " + back2.status().ToString());
  Check(coe::RecordingsToCsv(*back2, labels) == csv2, "second round trip is not a fixed point");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  auto rows = coe::csv::Parse(text, "in.csv");
  if (rows.ok()) {
    CheckCsvRoundTrip(*rows);
  } else {
    CheckError(rows.status(), "in.csv");
  }

  FuzzRecordings(text, {}, /*prefill=*/false);
  FuzzRecordings(text, coe::RecordingsReadOptions{.allow_duplicate_ids = true}, /*prefill=*/false);
  FuzzRecordings(text, {}, /*prefill=*/true);
  return 0;
}
