#include "coe/recordings.h"

#include <fstream>
#include <map>
#include <sstream>
#include <unordered_map>

#include "util/csv.h"
#include "util/numbers.h"

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

StatusOr<std::string> ReadFileToString(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFoundError("cannot open '" + path + "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return InternalError("error reading '" + path + "'");
  return ss.str();
}

StatusOr<Recordings> ReadRecordings(const std::string& path, LabelSet* labels,
                                    std::vector<std::string>* warnings,
                                    const RecordingsReadOptions& options) {
  COE_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  return ParseRecordings(text, path, labels, warnings, options);
}

namespace {

enum class ColumnKind { kIgnored, kId, kTruth, kLabel, kCost, kScore, kProb };

struct Column {
  ColumnKind kind = ColumnKind::kIgnored;
  int model = -1;
  int prob_label = -1;  // for kProb: label index
};

}  // namespace

StatusOr<Recordings> ParseRecordings(std::string_view text, const std::string& source,
                                     LabelSet* labels, std::vector<std::string>* warnings,
                                     const RecordingsReadOptions& options) {
  COE_ASSIGN_OR_RETURN(std::vector<csv::Row> rows, csv::Parse(text, source));
  if (rows.empty()) return InvalidArgumentError(source + ": empty file (no header row)");
  const csv::Row& header = rows[0];
  const std::string where_header = source + ":" + std::to_string(header.line);

  Recordings rec;
  rec.source = source;
  std::vector<Column> cols(header.fields.size());
  std::map<std::string, int> seen;
  auto warn = [&](const std::string& w) {
    if (warnings) warnings->push_back(w);
  };

  // Pass 1: the id, label and model columns, so that suffixed columns can refer to a
  // model whatever the column order.
  for (size_t c = 0; c < header.fields.size(); ++c) {
    const std::string& name = header.fields[c];
    if (name.empty()) {
      return InvalidArgumentError(where_header + ": column " + std::to_string(c + 1) +
                                  " has an empty name");
    }
    if (!seen.emplace(name, static_cast<int>(c)).second) {
      return InvalidArgumentError(where_header + ": duplicate column '" + name + "'");
    }
    if (name == "id") {
      cols[c].kind = ColumnKind::kId;
    } else if (name == "label") {
      cols[c].kind = ColumnKind::kTruth;
    } else if (name.find('|') == std::string::npos) {
      cols[c].kind = ColumnKind::kLabel;
      cols[c].model = static_cast<int>(rec.models.size());
      rec.models.push_back(ModelRecord{.name = name});
    }
  }
  if (seen.find("id") == seen.end()) {
    return InvalidArgumentError(where_header + ": no 'id' column (header: " +
                                (header.fields.empty() ? "" : header.fields[0]) + ",...)");
  }
  int num_truth_cols = seen.count("label") ? 1 : 0;
  // Pass 2: suffixed columns.
  for (size_t c = 0; c < header.fields.size(); ++c) {
    const std::string& name = header.fields[c];
    size_t bar = name.find('|');
    if (bar == std::string::npos) continue;
    std::string model = name.substr(0, bar), kind = name.substr(bar + 1);
    int m = rec.ModelIndex(model);
    if (m < 0) {
      warn(where_header + ": ignoring column '" + name + "' (no model column '" + model + "')");
      continue;
    }
    cols[c].model = m;
    if (kind == "cost") {
      cols[c].kind = ColumnKind::kCost;
    } else if (kind == "score") {
      cols[c].kind = ColumnKind::kScore;
    } else if (kind.rfind("p:", 0) == 0 && kind.size() > 2) {
      cols[c].kind = ColumnKind::kProb;
      cols[c].prob_label = labels->Intern(kind.substr(2));
    } else {
      cols[c].model = -1;
      warn(where_header + ": ignoring column '" + name + "' (unknown kind '" + kind + "')");
    }
  }

  const size_t n = rows.size() - 1;
  if (n == 0) return InvalidArgumentError(source + ": no data rows (an empty split)");
  rec.ids.reserve(n);
  if (num_truth_cols) rec.truth.assign(n, kAbstain);
  for (size_t c = 0; c < cols.size(); ++c) {
    if (cols[c].model < 0) continue;
    ModelRecord& mr = rec.models[cols[c].model];
    switch (cols[c].kind) {
      case ColumnKind::kLabel: mr.label.assign(n, kAbstain); break;
      case ColumnKind::kCost: mr.cost.assign(n, 0.0); break;
      case ColumnKind::kScore: mr.score.assign(n, std::numeric_limits<float>::quiet_NaN()); break;
      default: break;
    }
  }
  const int num_labels_after_header = labels->size();
  // Probability columns are dense per model over the labels known after the header.
  for (size_t c = 0; c < cols.size(); ++c) {
    if (cols[c].kind != ColumnKind::kProb) continue;
    ModelRecord& mr = rec.models[cols[c].model];
    if (mr.probs.empty()) {
      mr.num_probs = num_labels_after_header;
      mr.probs.assign(n * mr.num_probs, 0.0f);
    }
  }

  std::unordered_map<std::string, int> ids;  // id -> line of its first row
  ids.reserve(n * 2);
  for (size_t r = 1; r < rows.size(); ++r) {
    const csv::Row& row = rows[r];
    const size_t i = r - 1;
    const std::string where = source + ":" + std::to_string(row.line);
    if (row.fields.size() != header.fields.size()) {
      return InvalidArgumentError(where + ": row has " + std::to_string(row.fields.size()) +
                                  " fields, the header has " +
                                  std::to_string(header.fields.size()));
    }
    for (size_t c = 0; c < cols.size(); ++c) {
      const std::string& f = row.fields[c];
      const Column& col = cols[c];
      auto bad = [&](const std::string& what) {
        return InvalidArgumentError(where + ": column '" + header.fields[c] + "': " + what);
      };
      auto number = [&](const char* what) -> StatusOr<double> {
        std::optional<double> v = ParseDouble(f);
        if (!v) return bad(std::string("'") + f + "' is not a number (" + what + ")");
        if (!std::isfinite(*v)) return bad(std::string("'") + f + "' is not finite (" + what + ")");
        return *v;
      };
      switch (col.kind) {
        case ColumnKind::kIgnored: break;
        case ColumnKind::kId:
          if (f.empty()) return bad("empty id");
          if (auto [it, fresh] = ids.emplace(f, row.line); !fresh) {
            const std::string first = " (first at line " + std::to_string(it->second) + ")";
            if (!options.allow_duplicate_ids)
              return bad("duplicate id '" + f + "'" + first +
                         "; if the rows are distinct examples, pass --allow-duplicate-ids");
            warn(where + ": duplicate id '" + f + "'" + first + " kept as a distinct example");
          }
          rec.ids.push_back(f);
          break;
        case ColumnKind::kTruth: rec.truth[i] = labels->Intern(f); break;
        case ColumnKind::kLabel: rec.models[col.model].label[i] = labels->Intern(f); break;
        case ColumnKind::kCost: {
          if (f.empty()) return bad("empty cost");
          COE_ASSIGN_OR_RETURN(double v, number("a cost"));
          if (v < 0) return bad("negative cost " + f);
          rec.models[col.model].cost[i] = v;
          break;
        }
        case ColumnKind::kScore: {
          if (f.empty()) break;  // no confidence for this example
          COE_ASSIGN_OR_RETURN(double v, number("a score"));
          if (v < 0 || v > 1) return bad("score " + f + " is outside [0,1]");
          rec.models[col.model].score[i] = static_cast<float>(v);
          break;
        }
        case ColumnKind::kProb: {
          if (f.empty()) break;
          COE_ASSIGN_OR_RETURN(double v, number("a probability"));
          if (v < 0 || v > 1) return bad("probability " + f + " is outside [0,1]");
          ModelRecord& mr = rec.models[col.model];
          mr.probs[i * mr.num_probs + col.prob_label] = static_cast<float>(v);
          break;
        }
      }
    }
  }
  return rec;
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
  }
  out += "\n";
  char buf[32];
  for (int i = 0; i < rec.num_examples(); ++i) {
    out += csv::Escape(rec.ids[i]);
    if (rec.has_truth()) out += "," + csv::Escape(labels.name(rec.truth[i]));
    for (const ModelRecord& m : rec.models) out += "," + csv::Escape(labels.name(m.label[i]));
    for (const ModelRecord& m : rec.models) {
      if (!m.cost.empty()) out += "," + FormatDouble(m.cost[i]);
      if (!m.score.empty()) {
        out += ",";
        if (!std::isnan(m.score[i])) {
          std::snprintf(buf, sizeof buf, "%.9g", m.score[i]);
          out += buf;
        }
      }
      for (int l = 0; l < (m.probs.empty() ? 0 : m.num_probs); ++l) {
        std::snprintf(buf, sizeof buf, ",%.9g", m.probs[static_cast<size_t>(i) * m.num_probs + l]);
        out += buf;
      }
    }
    out += "\n";
  }
  return out;
}

}  // namespace coe
