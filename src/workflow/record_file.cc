// `coe record` as a library: models over inputs into a recordings file that resumes,
// where failed calls are written as failures (never as answers) and retried.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <unordered_map>

#include "backends/registry.h"
#include "base/cores.h"
#include "coe/files.h"
#include "coe/record.h"
#include "coe/recordings.h"
#include "coe/workflow.h"

namespace coe {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// The recordings being built: the rows the file had (in its order), then the new ones
// (in input order). Every model's columns are the ones RecordModels gives it.
struct Table {
  LabelSet labels;
  Recordings rec;
  std::unordered_map<std::string, int> row_of;  // id -> row
  bool truth = false;                           // has a label column
};

// A model that measures each call's cost (a chat model): its recordings have |cost
// columns and no probabilities.
bool MeasuresCost(const Catalogue& cat, const std::string& model) {
  const ModelSpec* s = cat.Find(model);
  return s && BackendTraitsOf(*s).measures_cost;
}

// An empty table for `models`.
void StartTable(const std::vector<std::string>& models, const InputBatch& inputs, Table* t) {
  t->truth = !inputs.truth.empty();
  for (const std::string& m : models) t->rec.models.push_back(ModelRecord{.name = m});
}

// Widens every model's probabilities to the labels known now (zeros for the new ones).
void Widen(Table* t) {
  const int width = t->labels.size();
  const size_t rows = t->rec.ids.size();
  for (ModelRecord& m : t->rec.models) {
    if (m.probs.empty() && m.num_probs == 0) continue;
    if (m.num_probs == width) continue;
    std::vector<float> wide(rows * width, 0.0f);
    for (size_t i = 0; i < rows && m.num_probs > 0; ++i)
      std::copy_n(m.probs.begin() + i * m.num_probs, m.num_probs, wide.begin() + i * width);
    m.probs = std::move(wide);
    m.num_probs = width;
  }
}

// A row for input `i`, every model's cells empty (filled as the models are recorded).
void AddRow(const Catalogue& cat, const InputBatch& inputs, int i, Table* t) {
  Recordings& rec = t->rec;
  const std::string id = inputs.ids[i];
  t->row_of[id] = static_cast<int>(rec.ids.size());
  rec.ids.push_back(id);
  if (t->truth) rec.truth.push_back(inputs.truth.empty() ? kAbstain : t->labels.Intern(inputs.truth[i]));
  for (ModelRecord& m : rec.models) {
    m.label.push_back(kAbstain);
    m.score.push_back(std::numeric_limits<float>::quiet_NaN());
    m.error.emplace_back();
    if (MeasuresCost(cat, m.name)) {
      m.cost.push_back(0.0);
    } else {  // (Widen keeps num_probs at the labels known, before rows are added)
      if (m.num_probs == 0) m.num_probs = t->labels.size();
      m.probs.resize(rec.ids.size() * m.num_probs, 0.0f);
    }
  }
}

// Model `m`'s recording of the inputs at `rows` (RecordModels' output, its own labels)
// into the table's rows for them.
void Merge(const ModelRecord& got, const LabelSet& got_labels, const InputBatch& inputs, const std::vector<int>& rows,
           int m, Table* t) {
  ModelRecord& dst = t->rec.models[m];
  std::vector<int> to_table(got_labels.size());
  for (int l = 0; l < got_labels.size(); ++l) to_table[l] = t->labels.Intern(got_labels.name(l));
  Widen(t);
  for (size_t k = 0; k < rows.size(); ++k) {
    const int r = t->row_of.at(inputs.ids[rows[k]]);
    dst.label[r] = got.label[k] == kAbstain ? kAbstain : to_table[got.label[k]];
    dst.score[r] = got.score.empty() ? std::numeric_limits<float>::quiet_NaN() : got.score[k];
    dst.error[r] = got.error.empty() ? "" : got.error[k];
    if (!dst.cost.empty()) dst.cost[r] = got.cost.empty() ? 0.0 : got.cost[k];
    if (dst.num_probs > 0) {
      std::fill_n(dst.probs.begin() + static_cast<size_t>(r) * dst.num_probs, dst.num_probs, 0.0f);
      for (int l = 0; l < got.num_probs; ++l)
        dst.probs[static_cast<size_t>(r) * dst.num_probs + to_table[l]] =
            got.probs[static_cast<size_t>(k) * got.num_probs + l];
    }
  }
}

// The rows of an existing output, to resume. The file's last row is dropped when an
// interrupted write cut it off.
Status LoadExisting(const Catalogue& cat, const std::vector<std::string>& models, const InputBatch& inputs,
                    const std::string& out, Table* t, std::vector<std::string>* warnings, bool* cut_off) {
  COE_ASSIGN_OR_RETURN(std::string text, ReadFileToString(out));
  if (!text.empty() && text.back() != '\n') {
    const size_t cut = text.rfind('\n');
    if (cut == std::string::npos)
      return InvalidArgumentError(out +
                                  ": the file holds no whole line (an interrupted write?); pass --overwrite "
                                  "to record into it anew");
    warnings->push_back(out + ": its last row was cut off (an interrupted write): it is recorded again");
    text.resize(cut + 1);
    *cut_off = true;
  }
  RecordingsReadOptions ro;
  ro.allow_failures = true;
  auto existing = ParseRecordings(text, out, &t->labels, warnings, ro);
  if (!existing.ok())
    return existing.status().WithPrefix(
        "cannot resume (pass --overwrite to record into it anew, or choose "
        "another --out)");
  Recordings& rec = *existing;
  std::vector<std::string> have;
  for (const ModelRecord& m : rec.models) have.push_back(m.name);
  if (have != models) {
    auto list = [](const std::vector<std::string>& v) {
      std::string s;
      for (const std::string& x : v) s += (s.empty() ? "" : ", ") + x;
      return s;
    };
    return InvalidArgumentError(out + " holds recordings of " + list(have) + ", not of " + list(models) +
                                ": record into a new file, choose the same models (--only) to resume, or pass "
                                "--overwrite");
  }
  std::unordered_map<std::string, int> input_of;
  for (size_t i = 0; i < inputs.ids.size(); ++i) input_of.emplace(inputs.ids[i], static_cast<int>(i));
  for (const std::string& id : rec.ids)
    if (!input_of.count(id))
      return InvalidArgumentError(out + " holds id '" + id +
                                  "', which is not among these inputs: record into a new file, or pass --overwrite");
  // Bring the rows to the columns this record writes (files of older versions had no
  // |error column, say).
  const size_t n = rec.ids.size();
  t->truth = rec.has_truth() || !inputs.truth.empty();
  if (!rec.has_truth() && t->truth)
    for (size_t r = 0; r < n; ++r) rec.truth.push_back(t->labels.Intern(inputs.truth[input_of[rec.ids[r]]]));
  for (ModelRecord& m : rec.models) {
    if (m.error.empty()) m.error.assign(n, "");
    if (m.score.empty()) m.score.assign(n, std::numeric_limits<float>::quiet_NaN());
    if (MeasuresCost(cat, m.name)) {
      if (m.cost.empty()) m.cost.assign(n, 0.0);
      m.probs.clear();
      m.num_probs = 0;
    } else {
      m.cost.clear();
      if (m.probs.empty()) {
        m.num_probs = t->labels.size();
        m.probs.assign(n * m.num_probs, 0.0f);
      }
    }
  }
  for (size_t r = 0; r < n; ++r) t->row_of[rec.ids[r]] = static_cast<int>(r);
  rec.labels = &t->labels;
  t->rec = std::move(rec);
  return Status::Ok();
}

std::string FirstLine(const std::string& text) { return text.substr(0, text.find('\n') + 1); }

// What the file says now: new rows appended, or (its rows changed, or its columns) the
// whole table written anew.
Status WritePart(const Table& t, const std::string& out, const std::vector<int>& new_rows, bool rewrite,
                 std::string* file_header) {
  const std::string all_header = FirstLine(RecordingsToCsv(SelectRows(t.rec, std::vector<int>{0}), t.labels));
  if (rewrite || file_header->empty() || all_header != *file_header) {
    *file_header = all_header;
    return ReplaceFile(out, RecordingsToCsv(t.rec, t.labels));
  }
  if (new_rows.empty()) return Status::Ok();
  std::string csv = RecordingsToCsv(SelectRows(t.rec, new_rows), t.labels);
  csv.erase(0, csv.find('\n') + 1);
  return AppendStringToFile(out, csv);
}

// The catalogue to plan the recordings with: the catalogue's figures, latency measured
// now, or (a model with no call now) as the old file beside the output had it.
Status WriteMeasured(const Catalogue& cat, const std::vector<std::string>& models, const RecordFileOptions& o,
                     const std::map<std::string, double>& us, const std::map<std::string, double>& ms,
                     const std::string& path) {
  RecordResult measured;
  for (const std::string& m : models) measured.recordings.models.push_back(ModelRecord{.name = m});
  measured.us_per_example = us;
  measured.ms_per_request = ms;
  Catalogue out = MeasuredCatalogue(cat, measured);
  auto old = fs::exists(path) ? ReadCatalogue(path) : StatusOr<Catalogue>(NotFoundError(path));
  bool chat = false;
  for (ModelSpec& s : out.models) {
    chat |= MeasuresCost(cat, s.name);
    const ModelSpec* before = old.ok() ? old->Find(s.name) : nullptr;
    if (!before || us.count(s.name)) continue;
    for (const char* key : {"latency_us", "latency_ms"})
      if (const double* v = before->Cost(key)) s.costs[key] = *v;
  }
  std::vector<std::string> comment = {
      "cost figures for the recordings of " + (o.data_name.empty() ? std::string("the inputs") : o.data_name) +
          ", written by coe record",
      "latency_us: measured here, wall time per example in bulk with all threads",
      "latency_ms: measured here, one example a call (median): what latency reports and --objective latency use"};
  if (chat) comment.push_back("chat models: the cost of each call is in the recordings' |cost columns");
  return WriteStringToFile(path, CatalogueToToml(out, comment));
}

// A recordings path without its .csv: what the files written beside it are named after.
std::string CsvBase(const std::string& csv) {
  std::string base = csv;
  if (base.size() > 4 && base.substr(base.size() - 4) == ".csv") base.resize(base.size() - 4);
  return base;
}

Status CheckDeviceName(const std::string& device) {
  const bool ok = !device.empty() && std::all_of(device.begin(), device.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
  });
  if (!ok) return InvalidArgumentError("--device: '" + device + "' (expected letters, digits, _ or -)");
  return Status::Ok();
}

// --throughput-batches: the measured curves as a version-2 cluster file of one device
// type, whose price only the user knows (the file says so, and reading it refuses a
// device with none).
Status WriteThroughput(const Catalogue& cat, const InputBatch& inputs, const std::string& out,
                       const RecordFileOptions& o, RecordFileResult* res) {
  RecordOptions ro;
  ro.only = res->models;
  ro.threads = o.threads;
  if (o.progress)
    ro.progress = [&](const std::string& what, int64_t done, int64_t total) {
      o.progress("measuring " + what, static_cast<double>(done) / std::max<int64_t>(1, total),
                 "batch " + std::to_string(done));
    };
  COE_ASSIGN_OR_RETURN(res->throughput, MeasureThroughput(cat, inputs, o.throughput_batches, ro));
  for (const std::string& m : res->models)
    if (std::none_of(res->throughput.begin(), res->throughput.end(), [&](const Throughput& t) { return t.model == m; }))
      res->warnings.push_back("--throughput-batches: model '" + m +
                              "' does not compute on this machine (a remote, chat or recorded model): not measured");
  if (res->throughput.empty())
    return InvalidArgumentError("--throughput-batches: no model of " + cat.source +
                                " computes on this machine, so there is nothing to measure");
  res->throughput_file = CsvBase(out) + ".throughput.toml";
  const int threads = o.threads > 0 ? o.threads : AvailableCores();  // as the engine counts them
  std::string toml = "# Throughput measured by coe record on this machine (" + std::to_string(threads) +
                     " threads) on " + (o.data_name.empty() ? std::string("the inputs") : o.data_name) +
                     ":\n# examples/s by batch size, the median of calls of exactly that many examples.\n"
                     "# A cluster file (version 2) for coe plan --cluster, once the device has its price.\n\n"
                     "[devices." +
                     o.device + "]\nkind = \"cpu\"\ncores = " + std::to_string(threads) +
                     "\n# usd_per_hour = ?   <- this machine's hourly price: coe cannot know it, and refuses the file "
                     "without it\n";
  for (const Throughput& t : res->throughput) {
    toml += "\n[models.\"" + t.model + "\".throughput]\n" + o.device + " = { ";
    for (size_t k = 0; k < t.points.size(); ++k) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%s%d = %.6g", k ? ", " : "", t.points[k].first, t.points[k].second);
      toml += buf;
    }
    toml += " }\n";
  }
  return WriteStringToFile(res->throughput_file, toml);
}

// The parts to record: inputs with no row, or with a failed call in theirs.
struct Work {
  std::vector<int> inputs;                 // in input order
  std::vector<std::vector<uint8_t>> todo;  // [model][k]: model runs on inputs[k]
};

Work PlanWork(const InputBatch& inputs, const Table& t, int64_t* kept) {
  Work w;
  w.todo.resize(t.rec.models.size());
  *kept = 0;
  for (int i = 0; i < static_cast<int>(inputs.ids.size()); ++i) {
    auto it = t.row_of.find(inputs.ids[i]);
    bool any = it == t.row_of.end();  // no row: every model runs
    std::vector<uint8_t> need(t.rec.models.size(), 1);
    if (it != t.row_of.end())
      for (size_t m = 0; m < need.size(); ++m) {
        need[m] = !t.rec.models[m].error[it->second].empty();  // a failed call is retried
        any = any || need[m];
      }
    if (!any) {
      ++*kept;
      continue;
    }
    w.inputs.push_back(i);
    for (size_t m = 0; m < need.size(); ++m) w.todo[m].push_back(need[m]);
  }
  return w;
}

}  // namespace

std::string MeasuredCataloguePath(const std::string& csv) { return CsvBase(csv) + ".models.toml"; }

Status CheckPromptFields(const Catalogue& cat, const std::vector<std::string>& only, const InputBatch& in,
                         const std::string& path) {
  for (const ModelSpec& m : cat.models) {
    if (!BackendTraitsOf(m).text_inputs || (!only.empty() && std::find(only.begin(), only.end(), m.name) == only.end()))
      continue;
    COE_ASSIGN_OR_RETURN(std::vector<std::string> fields, PromptFields(m.prompt));
    for (size_t i = 0; i < in.texts.size(); ++i) {
      const json j = json::parse(in.texts[i], nullptr, false);
      for (const std::string& field : fields)
        if (!j.is_object() || !j.contains(field) || j[field].is_null())
          return InvalidArgumentError(path + ": the input with id '" + in.ids[i] + "' (record " +
                                      std::to_string(i + 1) + ") has no field '" + field + "', which model '" + m.name +
                                      "''s prompt names");
    }
  }
  return Status::Ok();
}

namespace {

// What the parts of a recording add up, by model: time and examples of the parts
// without a failed call, ms per request, and the failed calls grouped by error.
struct PartTotals {
  std::map<std::string, double> seconds, ms;
  std::map<std::string, int64_t> examples;
  std::map<std::pair<std::string, std::string>, FailureGroup> failures;
};

// Records model `m` (of res->models) on the inputs `rows`, merges its answers into `t`,
// and counts its calls, dollars and failures into `res` and `totals`.
Status RecordModelPart(const Catalogue& cat, const InputBatch& inputs, const std::vector<int>& rows, size_t m,
                       bool one_part, const RecordFileOptions& o, Table* t, RecordFileResult* res, PartTotals* totals) {
  const std::string& model_name = res->models[m];
  RecordOptions ro;
  ro.only = {model_name};
  ro.threads = o.threads;
  ro.batch = o.batch;
  if (o.progress && one_part)  // one part: a bar a model
    ro.progress = [&](const std::string& model, int64_t done, int64_t total) {
      o.progress("recording " + model, static_cast<double>(done) / std::max<int64_t>(1, total),
                 std::to_string(done) + "/" + std::to_string(total));
    };
  const auto t0 = std::chrono::steady_clock::now();
  StatusOr<RecordResult> recorded = RecordModels(cat, inputs.Gather(rows), ro);
  RecordResult got;
  if (recorded.ok()) {
    got = std::move(*recorded);
  } else {
    // The model cannot record here (it does not load, or refuses these inputs): each of
    // its calls failed with the reason, so the other models are recorded, this one is
    // named at the end, and recording again retries it.
    ModelRecord refused;
    refused.name = model_name;
    refused.label.assign(rows.size(), kAbstain);
    refused.error.assign(rows.size(), "not recorded: " + recorded.status().ToString());
    got.recordings.models.push_back(std::move(refused));
  }
  const ModelRecord& mr = got.recordings.models[0];
  // A part with a failed call measures no latency: a refused connection is not the
  // model's time (the model keeps the figure it had, or none).
  if (std::all_of(mr.error.begin(), mr.error.end(), [](const std::string& e) { return e.empty(); })) {
    totals->seconds[model_name] += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    totals->examples[model_name] += static_cast<int64_t>(rows.size());
    for (const auto& [name, v] : got.ms_per_request) totals->ms[name] = v;
  }
  Merge(mr, got.labels, inputs, rows, static_cast<int>(m), t);
  res->calls += static_cast<int64_t>(rows.size());
  for (double c : mr.cost) res->usd += c;
  for (size_t k = 0; k < mr.error.size(); ++k) {
    if (mr.error[k].empty()) continue;
    ++res->failed;
    FailureGroup& f = totals->failures[{model_name, mr.error[k]}];
    if (f.count++ == 0) {
      f.model = model_name;
      f.error = mr.error[k];
      f.first_id = inputs.ids[rows[k]];
    }
  }
  return Status::Ok();
}

}  // namespace

StatusOr<RecordFileResult> RecordToFile(const Catalogue& cat, const InputBatch& given, const std::string& out,
                                        const RecordFileOptions& o) {
  for (const std::string& name : o.only)
    if (!cat.Find(name)) return InvalidArgumentError("--only: no model '" + name + "' in " + cat.source);
  if (!o.throughput_batches.empty()) COE_RETURN_IF_ERROR(CheckDeviceName(o.device));
  RecordFileResult res;
  for (const ModelSpec& m : cat.models)
    if (o.only.empty() || std::find(o.only.begin(), o.only.end(), m.name) != o.only.end()) res.models.push_back(m.name);
  if (res.models.empty()) return InvalidArgumentError("no models to record in " + cat.source + " (check --only)");
  if (given.size() == 0) return InvalidArgumentError(o.data_name + " has no inputs");
  const InputBatch* in = &given;
  InputBatch with_ids;
  if (given.ids.empty()) {  // ids are what resuming matches rows by
    with_ids = given;
    for (int64_t i = 0; i < given.size(); ++i) with_ids.ids.push_back(std::to_string(i));
    in = &with_ids;
  }
  const InputBatch& inputs = *in;
  if (!inputs.texts.empty()) COE_RETURN_IF_ERROR(CheckPromptFields(cat, o.only, inputs, o.data_name));
  res.recordings = out;
  res.catalogue = MeasuredCataloguePath(out);
  res.inputs = inputs.size();
  Table t;
  std::string file_header;
  if (!o.overwrite && fs::exists(out)) {
    bool cut_off = false;
    COE_RETURN_IF_ERROR(LoadExisting(cat, res.models, inputs, out, &t, &res.warnings, &cut_off));
    COE_ASSIGN_OR_RETURN(std::string text, ReadFileToString(out));
    if (!cut_off) file_header = FirstLine(text);  // else the first write replaces the file
  } else {
    StartTable(res.models, inputs, &t);
  }
  t.rec.source = out;
  t.rec.labels = &t.labels;
  // The truth's labels, then each model's own, interned before any row is recorded, so
  // that the |p: columns come in the same order however the inputs are split.
  for (const std::string& l : inputs.truth) t.labels.Intern(l);
  for (const std::string& m : res.models)
    for (const std::string& l : cat.Find(m)->labels) t.labels.Intern(l);
  Widen(&t);
  Work w = PlanWork(inputs, t, &res.kept);
  bool waits = false;
  for (const std::string& m : res.models) {
    const ModelSpec* s = cat.Find(m);
    waits |= BackendTraitsOf(*s).waits;
  }
  const size_t part = waits ? static_cast<size_t>(kRecordPart) : std::max<size_t>(1, w.inputs.size());
  PartTotals totals;
  for (size_t b = 0; b < w.inputs.size(); b += part) {
    const size_t e = std::min(w.inputs.size(), b + part);
    Widen(&t);  // labels the last part's answers added
    std::vector<int> new_rows;
    bool repaired = false;
    for (size_t k = b; k < e; ++k) {
      if (t.row_of.count(inputs.ids[w.inputs[k]])) {
        repaired = true;
        continue;
      }
      new_rows.push_back(static_cast<int>(t.rec.ids.size()));
      AddRow(cat, inputs, w.inputs[k], &t);
    }
    for (size_t m = 0; m < res.models.size(); ++m) {
      std::vector<int> rows;
      for (size_t k = b; k < e; ++k)
        if (w.todo[m][k]) rows.push_back(w.inputs[k]);
      if (rows.empty()) continue;
      COE_RETURN_IF_ERROR(RecordModelPart(cat, inputs, rows, m, part >= w.inputs.size(), o, &t, &res, &totals));
    }
    res.recorded += static_cast<int64_t>(e - b);
    COE_RETURN_IF_ERROR(WritePart(t, out, new_rows, repaired, &file_header));
    if (o.progress && part < w.inputs.size()) {
      char usd[32];
      std::snprintf(usd, sizeof usd, ", $%.4g", res.usd);
      o.progress("recording " + std::to_string(res.models.size()) + " model(s)",
                 static_cast<double>(e) / static_cast<double>(w.inputs.size()),
                 std::to_string(e) + "/" + std::to_string(w.inputs.size()) + (res.usd > 0 ? usd : ""));
    }
  }
  // Nothing to record: the file still says what it did (older versions' columns, or a
  // cut-off row, are brought up to date).
  if (w.inputs.empty() && (file_header.empty() || !res.warnings.empty() ||
                           file_header != FirstLine(RecordingsToCsv(SelectRows(t.rec, std::vector<int>{0}), t.labels))))
    COE_RETURN_IF_ERROR(ReplaceFile(out, RecordingsToCsv(t.rec, t.labels)));
  for (const auto& [m, s] : totals.seconds) res.us_per_example[m] = 1e6 * s / std::max<int64_t>(1, totals.examples[m]);
  for (auto& [key, f] : totals.failures) res.failures.push_back(std::move(f));
  std::stable_sort(res.failures.begin(), res.failures.end(),
                   [](const FailureGroup& a, const FailureGroup& b) { return a.count > b.count; });
  COE_RETURN_IF_ERROR(WriteMeasured(cat, res.models, o, res.us_per_example, totals.ms, res.catalogue));
  if (!o.throughput_batches.empty()) COE_RETURN_IF_ERROR(WriteThroughput(cat, inputs, out, o, &res));
  return res;
}

std::vector<FailureGroup> GroupFailures(const RunResult& run, const std::vector<Backend*>& members,
                                        const std::vector<std::string>& ids) {
  std::map<std::pair<int, std::string>, FailureGroup> groups;
  for (const MemberFailure& f : run.failures) {
    FailureGroup& g = groups[{f.member, f.error}];
    if (g.count++ > 0) continue;
    g.model = members[f.member]->info().name;
    g.error = f.error;
    g.first_id = ids.empty() ? std::to_string(f.example) : ids[f.example];
  }
  std::vector<FailureGroup> out;
  for (auto& [key, g] : groups) out.push_back(std::move(g));
  std::stable_sort(out.begin(), out.end(),
                   [](const FailureGroup& a, const FailureGroup& b) { return a.count > b.count; });
  return out;
}

std::vector<std::string> FailureLines(const std::vector<FailureGroup>& failures) {
  std::vector<std::string> lines;
  for (const FailureGroup& f : failures)
    lines.push_back(std::to_string(f.count) + (f.count == 1 ? " call" : " calls") + " of model '" + f.model +
                    "' failed: " + f.error + " (first on input '" + f.first_id + "')");
  return lines;
}

std::string RecordFileResultJson(const RecordFileResult& r) {
  json failures = json::array();
  for (const FailureGroup& f : r.failures)
    failures.push_back({{"model", f.model}, {"error", f.error}, {"count", f.count}, {"first_id", f.first_id}});
  json j = {{"recordings", r.recordings},
            {"catalogue", r.catalogue},
            {"models", r.models},
            {"inputs", r.inputs},
            {"kept", r.kept},
            {"recorded", r.recorded},
            {"calls", r.calls},
            {"failed_calls", r.failed},
            {"failures", failures},
            {"usd", r.usd},
            {"us_per_example", r.us_per_example},
            {"warnings", r.warnings}};
  if (!r.throughput_file.empty()) {
    json t = json::object();
    for (const Throughput& m : r.throughput) {
      json curve = json::object();
      for (const auto& [batch, rate] : m.points) curve[std::to_string(batch)] = rate;
      t[m.model] = curve;
    }
    j["throughput"] = t;
    j["throughput_file"] = r.throughput_file;
  }
  return j.dump(2, ' ', false, json::error_handler_t::replace);
}

}  // namespace coe
