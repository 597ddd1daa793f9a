#include "coe/recordings.h"

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <unordered_map>

#include "base/csv.h"
#include "base/numbers.h"

namespace coe {

int Recordings::num_labeled() const {
  int n = 0;
  for (int t : truth) n += t != kAbstain;
  return n;
}

int Recordings::ModelIndex(std::string_view name) const {
  for (size_t m = 0; m < models.size(); ++m)
    if (models[m].name == name) return static_cast<int>(m);
  return -1;
}

MemberOutput Recordings::Output(int m, int i) const {
  const ModelRecord& r = models[m];
  MemberOutput o;
  o.label = r.label[i];
  if (!r.score.empty()) o.score = r.score[i];
  if (!r.probs.empty()) {
    o.probs = r.probs.data() + static_cast<size_t>(i) * r.num_probs;
    o.num_probs = r.num_probs;
  }
  return o;
}

namespace {

enum class ColumnKind { kIgnored, kId, kTruth, kLabel, kCost, kScore, kProb, kError };

struct Column {
  ColumnKind kind = ColumnKind::kIgnored;
  int model = -1;
  int prob_label = -1;  // for kProb: label index
};

// Names example `i` in messages: "<source>:<line>" when the source lines are known (a
// CSV's), else "<source>: example <i> (id '<id>')" (counted from 0, as arrays are).
class ExampleNames {
 public:
  ExampleNames(const Recordings& rec, std::span<const int> lines) : rec_(rec), lines_(lines) {}
  std::string operator()(size_t i) const {
    if (!lines_.empty()) return rec_.source + ":" + std::to_string(lines_[i]);
    std::string s = rec_.source + ": example " + std::to_string(i);
    if (i < rec_.ids.size()) s += " (id '" + rec_.ids[i] + "')";
    return s;
  }
  // How a message refers back to an earlier example: "line 2" or "example 0".
  std::string Earlier(size_t i) const {
    return lines_.empty() ? "example " + std::to_string(i) : "line " + std::to_string(lines_[i]);
  }

 private:
  const Recordings& rec_;
  std::span<const int> lines_;
};

// Ids must be unique (unless options allow repeats). Found by sorting 64-bit hashes
// of the ids, not with a hash map of strings: 16 bytes an id instead of ~80.
template <typename Warn>
Status CheckIds(const Recordings& rec, const ExampleNames& name, const RecordingsReadOptions& options, Warn warn) {
  const size_t n = rec.ids.size();
  std::vector<std::pair<uint64_t, uint32_t>> hashed(n);
  for (size_t i = 0; i < n; ++i) hashed[i] = {std::hash<std::string>{}(rec.ids[i]), static_cast<uint32_t>(i)};
  std::sort(hashed.begin(), hashed.end());
  // For each row whose id appeared earlier: (row, first row with that id).
  std::vector<std::pair<uint32_t, uint32_t>> repeats;
  for (size_t a = 0; a < n;) {
    size_t b = a + 1;
    while (b < n && hashed[b].first == hashed[a].first) ++b;
    for (size_t x = a + 1; x < b; ++x)
      for (size_t y = a; y < x; ++y)
        if (rec.ids[hashed[x].second] == rec.ids[hashed[y].second]) {
          repeats.emplace_back(hashed[x].second, hashed[y].second);
          break;
        }
    a = b;
  }
  std::sort(repeats.begin(), repeats.end());
  for (const auto& [row, first] : repeats) {
    const std::string what = "duplicate id '" + rec.ids[row] + "' (first at " + name.Earlier(first) + ")";
    if (!options.allow_duplicate_ids)
      return InvalidArgumentError(name(row) + ": column 'id': " + what +
                                  "; if the rows are distinct examples, pass --allow-duplicate-ids");
    warn(name(row) + ": " + what + " kept as a distinct example");
  }
  return Status::Ok();
}

// A float as it reads back (FormatDouble of the float's double shows its binary noise).
std::string FormatFloat(float v) {
  char buf[32];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return ec == std::errc() ? std::string(buf, p) : "nan";
}

// The columns' sizes, the model names and the label indices' range: what every later
// check and every reader of the recordings relies on.
Status CheckShape(const Recordings& rec) {
  const std::string& src = rec.source;
  const size_t n = static_cast<size_t>(rec.num_examples());
  if (n == 0) return InvalidArgumentError(src + ": no examples (an empty split)");
  auto sized = [&](size_t got, size_t want, const std::string& what) -> Status {
    if (got == want) return Status::Ok();
    return InvalidArgumentError(src + ": " + what + ": " + std::to_string(got) + " values for " + std::to_string(n) +
                                " examples");
  };
  if (!rec.truth.empty()) COE_RETURN_IF_ERROR(sized(rec.truth.size(), n, "column 'label'"));
  const int num_labels = rec.labels ? rec.labels->size() : std::numeric_limits<int>::max();
  std::set<std::string_view> names;
  for (const ModelRecord& m : rec.models) {
    if (m.name.empty() || m.name.find('|') != std::string::npos || m.name == "id" || m.name == "label")
      return InvalidArgumentError(src + ": model name '" + m.name +
                                  "' cannot name a column of recordings (it must be non-empty, without '|', "
                                  "not 'id' or 'label')");
    if (!names.insert(m.name).second) return InvalidArgumentError(src + ": model '" + m.name + "' appears twice");
    const std::string col = "column '" + m.name;
    COE_RETURN_IF_ERROR(sized(m.label.size(), n, col + "'"));
    if (!m.cost.empty()) COE_RETURN_IF_ERROR(sized(m.cost.size(), n, col + "|cost'"));
    if (!m.score.empty()) COE_RETURN_IF_ERROR(sized(m.score.size(), n, col + "|score'"));
    if (!m.error.empty()) COE_RETURN_IF_ERROR(sized(m.error.size(), n, col + "|error'"));
    if (m.probs.empty()) continue;
    if (m.num_probs < 1 || m.num_probs > num_labels)
      return InvalidArgumentError(src + ": model '" + m.name + "': " + std::to_string(m.num_probs) +
                                  " probability columns for " + std::to_string(num_labels) + " labels");
    COE_RETURN_IF_ERROR(sized(m.probs.size() / m.num_probs, n, col + "|p:' columns"));
    if (m.probs.size() % m.num_probs != 0) COE_RETURN_IF_ERROR(sized(m.probs.size(), n * m.num_probs, col + "|p:'"));
  }
  return Status::Ok();
}

// Failed calls (|error cells): never with an answer, and (unless allowed) none at all:
// a failed call is not an answer, so nothing may plan on it. All are counted, the first
// named, with how to retry them.
Status CheckFailures(const Recordings& rec, const ExampleNames& name, const RecordingsReadOptions& options) {
  int64_t failures = 0;
  std::string first;
  for (size_t i = 0; i < static_cast<size_t>(rec.num_examples()); ++i)
    for (const ModelRecord& m : rec.models) {
      if (m.error.empty() || m.error[i].empty()) continue;
      if (m.label[i] != kAbstain)
        return InvalidArgumentError(name(i) + ": column '" + m.name +
                                    "|error': the model has both an answer and an error; a failed call has no answer");
      if (failures++ == 0)
        first = name(i) + ": model '" + m.name + "' has no answer for id '" + (i < rec.ids.size() ? rec.ids[i] : "?") +
                "': its call failed (" + m.error[i] + ")";
    }
  if (failures == 0 || options.allow_failures) return Status::Ok();
  return InvalidArgumentError(first + (failures > 1 ? ", and " + std::to_string(failures - 1) + " more" : "") +
                              ". A failed call is not an answer: run `coe record` again with the same --out to "
                              "retry the failed calls");
}

// The values of example `i`: ids, label indices, costs, scores and probabilities.
Status CheckExample(const Recordings& rec, size_t i, const ExampleNames& name) {
  const int num_labels = rec.labels ? rec.labels->size() : std::numeric_limits<int>::max();
  auto bad = [&](const std::string& column, const std::string& what) {
    return InvalidArgumentError(name(i) + ": column '" + column + "': " + what);
  };
  auto label_ok = [&](int l) { return l == kAbstain || (l >= 0 && l < num_labels); };
  if (!rec.ids.empty() && rec.ids[i].empty()) return bad("id", "empty id");
  if (!rec.truth.empty() && !label_ok(rec.truth[i]))
    return bad("label", "label index " + std::to_string(rec.truth[i]) + " names no label");
  for (const ModelRecord& m : rec.models) {
    if (!label_ok(m.label[i])) return bad(m.name, "label index " + std::to_string(m.label[i]) + " names no label");
    if (!m.cost.empty()) {
      const double c = m.cost[i];
      if (!std::isfinite(c)) return bad(m.name + "|cost", "cost " + FormatDouble(c) + " is not finite");
      if (c < 0) return bad(m.name + "|cost", "negative cost " + FormatDouble(c));
    }
    if (!m.score.empty()) {
      const float s = m.score[i];  // NaN: no score for this example
      if (!std::isnan(s) && !(s >= 0 && s <= 1))
        return bad(m.name + "|score", "score " + FormatFloat(s) + " is outside [0,1]");
    }
    if (m.probs.empty()) continue;
    double sum = 0;
    for (int l = 0; l < m.num_probs; ++l) {
      const float p = m.probs[i * m.num_probs + l];
      if (!(p >= 0 && p <= 1))
        return bad(m.name + "|p:" + (rec.labels ? rec.labels->name(l) : "#" + std::to_string(l)),
                   "probability " + FormatFloat(p) + " is outside [0,1]");
      sum += p;
    }
    if (sum != 0 && std::fabs(sum - 1) > kProbabilitySumTolerance)
      return InvalidArgumentError(name(i) + ": model '" + m.name + "': its |p: columns sum to " + FormatDouble(sum) +
                                  ", not 1 (within " + FormatDouble(kProbabilitySumTolerance) + ")");
  }
  return Status::Ok();
}

// ReadRows' state while it reads: the recordings being built column by column, what
// each column of the file holds, and how often each label was read.
class RowsBuilder {
 public:
  RowsBuilder(const std::string& source, LabelSet* labels, std::vector<std::string>* warnings,
              const RecordingsReadOptions& options)
      : source_(source), labels_(labels), warnings_(warnings), options_(options) {
    rec_.source = source;
    rec_.labels = labels;
  }

  // What every column holds, from the header row: id, label and model columns first,
  // so that suffixed columns can refer to a model whatever the column order.
  Status ReadHeader(const csv::Row& header) {
    header_ = &header;
    where_header_ = source_ + ":" + std::to_string(header.line);
    cols_.assign(header.fields.size(), Column{});
    COE_RETURN_IF_ERROR(ReadPlainColumns());
    ReadSuffixedColumns();
    const int num_labels_after_header = labels_->size();
    const size_t models = rec_.models.size();
    has_cost_.assign(models, 0);
    has_score_.assign(models, 0);
    has_probs_.assign(models, 0);
    has_error_.assign(models, 0);
    for (const Column& col : cols_) {
      if (col.kind == ColumnKind::kError) has_error_[col.model] = 1;
      if (col.kind == ColumnKind::kCost) has_cost_[col.model] = 1;
      if (col.kind == ColumnKind::kScore) has_score_[col.model] = 1;
      if (col.kind == ColumnKind::kProb) has_probs_[col.model] = 1;
    }
    // Probability columns are dense per model over the labels known after the header.
    for (size_t m = 0; m < models; ++m)
      if (has_probs_[m]) rec_.models[m].num_probs = num_labels_after_header;
    return Status::Ok();
  }

  // Room for `n` examples in every column.
  void Reserve(size_t n) {
    rec_.ids.reserve(n);
    if (has_truth_) rec_.truth.reserve(n);
    for (size_t m = 0; m < rec_.models.size(); ++m) {
      ModelRecord& mr = rec_.models[m];
      mr.label.reserve(n);
      if (has_cost_[m]) mr.cost.reserve(n);
      if (has_score_[m]) mr.score.reserve(n);
      if (has_probs_[m]) mr.probs.reserve(n * mr.num_probs);
      if (has_error_[m]) mr.error.reserve(n);
    }
  }

  // One data row: every column gets a value (defaults first), then the row's cells.
  Status AddRow(const csv::Row& row) {
    const size_t i = rec_.ids.size();
    const std::string where = source_ + ":" + std::to_string(row.line);
    if (row.fields.size() != header_->fields.size()) {
      return InvalidArgumentError(where + ": row has " + std::to_string(row.fields.size()) +
                                  " fields, the header has " + std::to_string(header_->fields.size()));
    }
    if (has_truth_) rec_.truth.push_back(kAbstain);
    for (size_t m = 0; m < rec_.models.size(); ++m) {
      ModelRecord& mr = rec_.models[m];
      mr.label.push_back(kAbstain);
      if (has_cost_[m]) mr.cost.push_back(0.0);
      if (has_score_[m]) mr.score.push_back(std::numeric_limits<float>::quiet_NaN());
      if (has_probs_[m]) mr.probs.resize(mr.probs.size() + mr.num_probs, 0.0f);
      if (has_error_[m]) mr.error.emplace_back();
    }
    for (size_t c = 0; c < cols_.size(); ++c) COE_RETURN_IF_ERROR(ReadCell(where, c, row.fields[c], i));
    return Status::Ok();
  }

  // Labels that differ only in case or surrounding spaces are likely one class.
  void WarnLabelsAlike() {
    std::map<std::string, std::vector<int>> alike;
    for (size_t l = 0; l < uses_.size(); ++l)
      if (uses_[l] > 0) alike[NormalizeLabel(labels_->name(static_cast<int>(l)))].push_back(static_cast<int>(l));
    for (const auto& [norm, group] : alike) {
      if (group.size() < 2) continue;
      std::string list;
      for (int l : group)
        list += (list.empty() ? "'" : ", '") + labels_->name(l) + "' (" + std::to_string(uses_[l]) + ")";
      Warn(source_ + ": labels " + list +
           " differ only in case or surrounding spaces and count as different "
           "classes; --normalize-labels makes them one");
    }
  }

  Recordings& recordings() { return rec_; }

 private:
  int Intern(std::string_view name) {
    const int l = options_.normalize_labels ? labels_->Intern(NormalizeLabel(name)) : labels_->Intern(name);
    if (l >= 0) {
      if (static_cast<size_t>(l) >= uses_.size()) uses_.resize(l + 1, 0);
      uses_[l]++;
    }
    return l;
  }

  void Warn(const std::string& w) {
    if (warnings_) warnings_->push_back(w);
  }

  // Pass 1: the id, label and model columns.
  Status ReadPlainColumns() {
    const std::vector<std::string>& fields = header_->fields;
    std::map<std::string, int> seen;
    for (size_t c = 0; c < fields.size(); ++c) {
      const std::string& name = fields[c];
      if (name.empty()) {
        return InvalidArgumentError(where_header_ + ": column " + std::to_string(c + 1) + " has an empty name");
      }
      if (!seen.emplace(name, static_cast<int>(c)).second) {
        return InvalidArgumentError(where_header_ + ": duplicate column '" + name + "'");
      }
      if (name == "id") {
        cols_[c].kind = ColumnKind::kId;
      } else if (name == "label") {
        cols_[c].kind = ColumnKind::kTruth;
      } else if (name.find('|') == std::string::npos) {
        cols_[c].kind = ColumnKind::kLabel;
        cols_[c].model = static_cast<int>(rec_.models.size());
        rec_.models.push_back(ModelRecord{.name = name});
      }
    }
    if (seen.find("id") == seen.end()) {
      return InvalidArgumentError(where_header_ + ": no 'id' column (header: " + (fields.empty() ? "" : fields[0]) +
                                  ",...)");
    }
    has_truth_ = seen.count("label") > 0;
    return Status::Ok();
  }

  // Pass 2: the suffixed columns (<model>|cost, |score, |error, |p:<label>).
  void ReadSuffixedColumns() {
    for (size_t c = 0; c < header_->fields.size(); ++c) {
      const std::string& name = header_->fields[c];
      size_t bar = name.find('|');
      if (bar == std::string::npos) continue;
      std::string model = name.substr(0, bar), kind = name.substr(bar + 1);
      int m = rec_.ModelIndex(model);
      if (m < 0) {
        Warn(where_header_ + ": ignoring column '" + name + "' (no model column '" + model + "')");
        continue;
      }
      cols_[c].model = m;
      if (kind == "cost") {
        cols_[c].kind = ColumnKind::kCost;
      } else if (kind == "score") {
        cols_[c].kind = ColumnKind::kScore;
      } else if (kind == "error") {
        cols_[c].kind = ColumnKind::kError;
      } else if (kind.rfind("p:", 0) == 0 && kind.size() > 2) {
        cols_[c].kind = ColumnKind::kProb;
        cols_[c].prob_label = Intern(kind.substr(2));
      } else {
        cols_[c].model = -1;
        Warn(where_header_ + ": ignoring column '" + name + "' (unknown kind '" + kind + "')");
      }
    }
  }

  // Cell `f` of column `c` of example `i`, parsed; its value is checked by
  // ValidateRecordings, the one set of rules for recordings however they were built.
  Status ReadCell(const std::string& where, size_t c, const std::string& f, size_t i) {
    const Column& col = cols_[c];
    auto bad = [&](const std::string& what) {
      return InvalidArgumentError(where + ": column '" + header_->fields[c] + "': " + what);
    };
    auto number = [&](const char* what) -> StatusOr<double> {
      std::optional<double> v = ParseDouble(f);
      if (!v) return bad(std::string("'") + f + "' is not a number (" + what + ")");
      if (!std::isfinite(*v)) return bad(std::string("'") + f + "' is not finite (" + what + ")");
      return *v;
    };
    switch (col.kind) {
      case ColumnKind::kIgnored:
        break;
      case ColumnKind::kId:
        rec_.ids.push_back(f);
        break;
      case ColumnKind::kTruth:
        rec_.truth[i] = Intern(f);
        break;
      case ColumnKind::kLabel:
        rec_.models[col.model].label[i] = Intern(f);
        break;
      case ColumnKind::kCost: {
        if (f.empty()) return bad("empty cost");
        COE_ASSIGN_OR_RETURN(double v, number("a cost"));
        rec_.models[col.model].cost[i] = v;
        break;
      }
      case ColumnKind::kScore: {
        if (f.empty()) break;                               // no confidence for this example
        COE_ASSIGN_OR_RETURN(double v, number("a score"));  // "nan" is no empty cell
        rec_.models[col.model].score[i] = static_cast<float>(v);
        break;
      }
      case ColumnKind::kProb: {
        if (f.empty()) break;
        COE_ASSIGN_OR_RETURN(double v, number("a probability"));
        ModelRecord& mr = rec_.models[col.model];
        mr.probs[i * mr.num_probs + col.prob_label] = static_cast<float>(v);
        break;
      }
      case ColumnKind::kError:
        rec_.models[col.model].error[i] = f;
        break;
    }
    return Status::Ok();
  }

  const std::string& source_;
  LabelSet* labels_;
  std::vector<std::string>* warnings_;
  const RecordingsReadOptions& options_;
  Recordings rec_;
  const csv::Row* header_ = nullptr;  // ReadHeader's: outlives the builder's use
  std::string where_header_;          // "<source>:<line of the header>"
  std::vector<Column> cols_;          // by column of the file
  bool has_truth_ = false;
  std::vector<uint8_t> has_cost_, has_score_, has_probs_, has_error_;  // by model
  std::vector<int64_t> uses_;  // by label index: cells holding it, for WarnLabelsAlike
};

// Builds Recordings from a stream of CSV rows, column by column, so that a large file
// is never held as text or as rows: memory is the columns themselves.
StatusOr<Recordings> ReadRows(csv::Reader& reader, size_t expected_rows, LabelSet* labels,
                              std::vector<std::string>* warnings, const RecordingsReadOptions& options) {
  const std::string& source = reader.source();
  csv::Row header;
  COE_ASSIGN_OR_RETURN(bool any, reader.Next(&header));
  if (!any) return InvalidArgumentError(source + ": empty file (no header row)");
  RowsBuilder builder(source, labels, warnings, options);
  COE_RETURN_IF_ERROR(builder.ReadHeader(header));
  builder.Reserve(expected_rows);
  std::vector<int> lines;  // line of each row, for messages about duplicate ids
  lines.reserve(expected_rows);
  csv::Row row;
  for (;;) {
    COE_ASSIGN_OR_RETURN(bool more, reader.Next(&row));
    if (!more) break;
    COE_RETURN_IF_ERROR(builder.AddRow(row));
    lines.push_back(row.line);
  }
  Recordings& rec = builder.recordings();
  if (rec.ids.empty()) return InvalidArgumentError(source + ": no data rows (an empty split)");
  COE_RETURN_IF_ERROR(ValidateRecordings(&rec, options, warnings, lines));
  builder.WarnLabelsAlike();
  if (!options.keep_ids) {
    rec.examples_without_ids = static_cast<int>(rec.ids.size());
    std::vector<std::string>().swap(rec.ids);
  }
  return std::move(rec);
}

}  // namespace

Status ValidateRecordings(Recordings* rec, const RecordingsReadOptions& options, std::vector<std::string>* warnings,
                          std::span<const int> lines) {
  COE_RETURN_IF_ERROR(CheckShape(*rec));
  if (!lines.empty() && lines.size() != static_cast<size_t>(rec->num_examples()))
    return InvalidArgumentError(rec->source + ": " + std::to_string(lines.size()) + " source lines for " +
                                std::to_string(rec->num_examples()) + " examples");
  const ExampleNames name(*rec, lines);
  for (size_t i = 0; i < static_cast<size_t>(rec->num_examples()); ++i)
    COE_RETURN_IF_ERROR(CheckExample(*rec, i, name));
  COE_RETURN_IF_ERROR(CheckFailures(*rec, name, options));
  COE_RETURN_IF_ERROR(CheckIds(*rec, name, options, [&](const std::string& w) {
    if (warnings) warnings->push_back(w);
  }));
  // A |score column with no score at all is no score column.
  for (ModelRecord& m : rec->models)
    if (!m.score.empty() && std::all_of(m.score.begin(), m.score.end(), [](float v) { return std::isnan(v); }))
      m.score.clear();
  return Status::Ok();
}

StatusOr<Recordings> ReadRecordings(const std::string& path, LabelSet* labels, std::vector<std::string>* warnings,
                                    const RecordingsReadOptions& options) {
  if (std::filesystem::is_directory(path))
    return InvalidArgumentError("'" + path + "' is a directory, not a recordings CSV file");
  COE_ASSIGN_OR_RETURN(size_t lines, csv::CountLines(path));
  COE_ASSIGN_OR_RETURN(std::unique_ptr<csv::Reader> reader, csv::Reader::Open(path));
  return ReadRows(*reader, lines, labels, warnings, options);
}

StatusOr<Recordings> ParseRecordings(std::string_view text, const std::string& source, LabelSet* labels,
                                     std::vector<std::string>* warnings, const RecordingsReadOptions& options) {
  csv::Reader reader(text, source);
  return ReadRows(reader, std::count(text.begin(), text.end(), '\n'), labels, warnings, options);
}

std::vector<std::string> DropModels(Recordings* rec, const std::function<bool(const std::string&)>& keep) {
  std::vector<std::string> dropped;
  std::vector<ModelRecord> kept;
  for (ModelRecord& m : rec->models) {
    if (keep(m.name))
      kept.push_back(std::move(m));
    else
      dropped.push_back(m.name);
  }
  rec->models = std::move(kept);
  return dropped;
}

Recordings SelectRows(const Recordings& rec, std::span<const int> rows) {
  Recordings out;
  out.source = rec.source;
  out.labels = rec.labels;
  for (int r : rows) {
    if (!rec.ids.empty()) out.ids.push_back(rec.ids[r]);
    if (rec.has_truth()) out.truth.push_back(rec.truth[r]);
  }
  if (rec.ids.empty()) out.examples_without_ids = static_cast<int>(rows.size());
  for (const ModelRecord& m : rec.models) {
    ModelRecord o;
    o.name = m.name;
    o.num_probs = m.num_probs;
    for (int r : rows) {
      o.label.push_back(m.label[r]);
      if (!m.score.empty()) o.score.push_back(m.score[r]);
      if (!m.cost.empty()) o.cost.push_back(m.cost[r]);
      if (!m.error.empty()) o.error.push_back(m.error[r]);
      if (!m.probs.empty())
        o.probs.insert(o.probs.end(), m.probs.begin() + static_cast<size_t>(r) * m.num_probs,
                       m.probs.begin() + static_cast<size_t>(r + 1) * m.num_probs);
    }
    out.models.push_back(std::move(o));
  }
  return out;
}

std::string RecordingsToCsv(const Recordings& rec, const LabelSet& labels) {
  std::string out = "id";
  if (rec.has_truth()) out += ",label";
  for (const ModelRecord& m : rec.models) out += "," + csv::Escape(m.name);
  for (const ModelRecord& m : rec.models) {
    if (!m.cost.empty()) out += "," + csv::Escape(m.name + "|cost");
    if (!m.score.empty()) out += "," + csv::Escape(m.name + "|score");
    for (int l = 0; l < (m.probs.empty() ? 0 : m.num_probs); ++l)
      out += "," + csv::Escape(m.name + "|p:" + labels.name(l));
    if (!m.error.empty()) out += "," + csv::Escape(m.name + "|error");
  }
  out += "\n";
  char buf[32];
  for (int i = 0; i < rec.num_examples(); ++i) {
    out += csv::Escape(rec.ids[i]);
    if (rec.has_truth()) out += "," + csv::Escape(labels.name(rec.truth[i]));
    for (const ModelRecord& m : rec.models) out += "," + csv::Escape(labels.name(m.label[i]));
    for (const ModelRecord& m : rec.models) {
      if (!m.cost.empty()) out += "," + FormatDouble(m.cost[i]);
      const bool answered = m.label[i] != kAbstain;
      if (!m.score.empty()) {
        out += ",";
        if (answered && !std::isnan(m.score[i])) {
          std::snprintf(buf, sizeof buf, "%.9g", m.score[i]);
          out += buf;
        }
      }
      for (int l = 0; l < (m.probs.empty() ? 0 : m.num_probs); ++l) {
        if (!answered) {  // no distribution: the readers take empty cells as none
          out += ",";
          continue;
        }
        std::snprintf(buf, sizeof buf, ",%.9g", m.probs[static_cast<size_t>(i) * m.num_probs + l]);
        out += buf;
      }
      if (!m.error.empty()) out += "," + csv::Escape(m.error[i]);
    }
    out += "\n";
  }
  return out;
}

}  // namespace coe
