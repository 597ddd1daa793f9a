// `coe record`, `coe run` and `coe demo`: running real models.
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <future>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "coe/cascade.h"
#include "coe/cascade_spec.h"
#include "coe/dataset.h"
#include "coe/files.h"
#include "coe/paths.h"
#include "coe/planner.h"
#include "coe/record.h"
#include "coe/recordings.h"
#include "coe/report.h"
#include "commands.h"
#include "common.h"
#include "progress.h"

namespace coe::app {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kFashionDir = "/usr/share/datasets/fashion-mnist";

struct DataFlags {
  std::string data, labels, range;
  int threads = 0, batch = 32768, chunk = 0;
  bool normalize_labels = false;
  void Add(CLI::App* cmd) {
    cmd->add_option("--data", data, "inputs: an IDX file (.gz ok), an image, a folder of images, or a .txt list")
        ->required();
    cmd->add_option("--labels", labels, "true labels: an IDX label file, or a CSV of id,label for images");
    cmd->add_option("--range", range, "use examples [A, B) only, e.g. 50000:60000");
    cmd->add_option("--threads", threads, "worker threads (default: the cores)");
    cmd->add_option("--batch", batch,
                    "most examples per engine call (calls start at 2048 and double while one takes under 0.1 s)")
        ->capture_default_str();
    cmd->add_option("--chunk", chunk, "examples per model call (one engine task; default: the engine's)")
        ->check(CLI::Range(1, 1 << 20));
    cmd->add_flag("--normalize-labels", normalize_labels,
                  "match true labels to the models' ignoring case and surrounding spaces");
  }
};

// Warnings (true labels no model gives) are printed, or added to *warnings when given.
StatusOr<InputBatch> LoadInputs(const DataFlags& f, const std::vector<int64_t>& shape,
                                const std::vector<std::string>& label_names,
                                std::vector<std::string>* warnings = nullptr) {
  DatasetOptions o;
  if (IsImageInput(f.data)) {
    COE_ASSIGN_OR_RETURN(o.image_loader, OpenCvImageLoader());
  }
  o.expected_shape = shape;
  o.labels_path = f.labels;
  o.label_names = label_names;
  if (!f.range.empty()) COE_RETURN_IF_ERROR(ParseRange(f.range, &o.begin, &o.end));
  COE_ASSIGN_OR_RETURN(InputBatch b, LoadDataset(f.data, o));
  // True labels no model gives count as wrong answers: map them (--normalize-labels)
  // or say so, with counts.
  std::map<std::string, std::string> by_norm;
  for (const std::string& l : label_names) by_norm.emplace(NormalizeLabel(l), l);
  std::map<std::string, int> unknown;
  if (label_names.empty()) return b;  // open labels (chat models): any answer may be right
  for (std::string& t : b.truth) {
    if (t.empty() || std::find(label_names.begin(), label_names.end(), t) != label_names.end()) continue;
    auto it = f.normalize_labels ? by_norm.find(NormalizeLabel(t)) : by_norm.end();
    if (it != by_norm.end())
      t = it->second;
    else
      unknown[t]++;
  }
  if (!unknown.empty()) {
    std::string list;
    for (const auto& [t, n] : unknown) list += (list.empty() ? "'" : ", '") + t + "' (" + std::to_string(n) + ")";
    std::vector<std::string> w = {"true labels " + list + " are no model's label: those examples count as wrong" +
                                  (f.normalize_labels ? "" : " (--normalize-labels ignores case and spaces)")};
    if (warnings)
      warnings->insert(warnings->end(), w.begin(), w.end());
    else
      PrintWarnings(w, false);
  }
  return b;
}

// A cascade ready to run and its inputs.
struct Prepared {
  std::unique_ptr<Cascade> cascade;
  InputBatch inputs;
};

// Creates the cascade while another thread loads the inputs, so that decoding them
// (~50 ms for 10,000 images) overlaps reading and compiling the models. The inputs are
// read with the shape and labels the catalogue gives the first member; when the
// cascade's own differ (a remote member's metadata), they are read again with those.
// The cascade's error, if any, comes first, as when the two ran one after the other.
StatusOr<Prepared> CreateWhileLoading(const CascadeSpec& spec, const Catalogue& cat, const EngineOptions& eo,
                                      const DataFlags& df) {
  const ModelSpec* first =
      spec.tiers.empty() || spec.tiers[0].members.empty() ? nullptr : cat.Find(spec.tiers[0].members[0]);
  std::future<StatusOr<InputBatch>> early;
  std::vector<std::string> early_warnings;  // printed only if this load is the one used
  if (first && !first->input_shape.empty() && !first->labels.empty())
    early = std::async(std::launch::async, [&df, first, &early_warnings] {
      return LoadInputs(df, first->input_shape, first->labels, &early_warnings);
    });
  auto cascade = Cascade::Create(spec, cat, eo);
  if (early.valid()) early.wait();  // the loader reads `df` and `first`: it ends before they may go
  if (!cascade.ok()) return cascade.status();
  Prepared p{std::move(*cascade), {}};
  if (early.valid() && p.cascade->input_shape() == first->input_shape && p.cascade->labels().names() == first->labels) {
    COE_ASSIGN_OR_RETURN(p.inputs, early.get());
    PrintWarnings(early_warnings, false);
  } else {
    COE_ASSIGN_OR_RETURN(p.inputs, LoadInputs(df, p.cascade->input_shape(), p.cascade->labels().names()));
  }
  return p;
}

// Runs `cascade` over `inputs` in batches (coe/record.h), showing progress.
StatusOr<RunResult> RunBatched(const Cascade& cascade, const InputBatch& inputs, int batch, Progress* progress) {
  return RunInBatches(cascade, inputs, batch, {}, [&](int64_t done, int64_t total) {
    progress->Update(static_cast<double>(done) / total, std::to_string(done) + "/" + std::to_string(total));
  });
}

// Summary figures of one live run.
struct LiveSummary {
  int64_t examples = 0, labeled = 0, correct = 0, degraded = 0, unanswered = 0;
  double accuracy = 0, mean_cost = 0, seconds = 0, throughput = 0;
  std::vector<int> exits;
};

LiveSummary Summarize(const Cascade& c, const InputBatch& in, const RunResult& r, double wall) {
  LiveSummary s;
  s.examples = in.size();
  s.exits.assign(c.spec().tiers.size(), 0);
  for (int64_t i = 0; i < s.examples; ++i) {
    s.exits[r.exit_tier[i]]++;
    s.mean_cost += r.cost[i];
    s.degraded += r.degraded[i];
    s.unanswered += r.answer[i] == kAbstain;
    if (!in.truth.empty() && !in.truth[i].empty()) {
      s.labeled++;
      // Right when the answering tier's match says the answer is the truth.
      s.correct +=
          r.answer[i] != kAbstain && c.spec().tiers[r.exit_tier[i]].match.Same(r.labels.name(r.answer[i]), in.truth[i]);
    }
  }
  s.mean_cost /= std::max<int64_t>(1, s.examples);
  s.accuracy = s.labeled ? static_cast<double>(s.correct) / s.labeled : 0;
  s.seconds = wall;
  s.throughput = wall > 0 ? s.examples / wall : 0;
  return s;
}

json SummaryJson(const LiveSummary& s) {
  json j;
  j["examples"] = s.examples;
  j["labeled"] = s.labeled;
  j["correct"] = s.correct;
  j["accuracy"] = s.labeled ? json(s.accuracy) : json();
  j["cost"] = s.mean_cost;
  j["exits"] = s.exits;
  j["seconds"] = s.seconds;
  j["examples_per_second"] = s.throughput;
  j["degraded"] = s.degraded;
  j["unanswered"] = s.unanswered;
  return j;
}

// ---------------------------------------------------------------- record

struct RecordFlags {
  std::string models, out;
  std::vector<std::string> only;
  bool json = false;
  DataFlags data;
};

std::string MeasuredPath(const std::string& csv) {
  std::string base = csv;
  if (base.size() > 4 && base.substr(base.size() - 4) == ".csv") base.resize(base.size() - 4);
  return base + ".models.toml";
}

// Records the chosen catalogue models on the inputs of `df`, a progress bar per model.
StatusOr<RecordResult> Record(const Catalogue& cat, const std::vector<std::string>& only, const DataFlags& df,
                              bool quiet) {
  const ModelSpec* first = nullptr;
  for (const ModelSpec& m : cat.models)
    if (only.empty() || std::find(only.begin(), only.end(), m.name) != only.end()) {
      first = &m;
      break;
    }
  if (!first) return InvalidArgumentError("no models to record (check --only)");
  COE_ASSIGN_OR_RETURN(InputBatch inputs, LoadInputs(df, first->input_shape, first->labels));
  RecordOptions ro;
  ro.only = only;
  ro.threads = df.threads;
  ro.batch = df.batch;
  std::unique_ptr<Progress> progress;
  std::string current;
  ro.progress = [&](const std::string& model, int64_t done, int64_t total) {
    if (model != current) {
      current = model;
      progress = std::make_unique<Progress>("recording " + model, !quiet);
    }
    progress->Update(static_cast<double>(done) / total, std::to_string(done) + "/" + std::to_string(total));
  };
  COE_ASSIGN_OR_RETURN(RecordResult r, RecordModels(cat, inputs, ro));
  r.recordings.source = df.data;
  return r;
}

// Writes the recordings and, beside them, the catalogue to plan them with.
Status WriteRecorded(const Catalogue& cat, const RecordResult& r, const std::string& csv, const std::string& data) {
  COE_RETURN_IF_ERROR(WriteStringToFile(csv, RecordingsToCsv(r.recordings, r.labels)));
  return WriteStringToFile(MeasuredPath(csv),
                           CatalogueToToml(MeasuredCatalogue(cat, r),
                                           {"cost figures for the recordings of " + data + ", written by coe record",
                                            "latency_us: measured here, wall time per example in bulk with all "
                                            "threads",
                                            "latency_ms: measured here, one example a call (median): what "
                                            "latency reports and --objective latency use"}));
}

std::string Dollars(double usd) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", usd);
  return buf;
}

// Every chat model's prompt fields must be in every input record: an error naming the
// file, line (the record's position) and model otherwise.
Status CheckPromptFields(const Catalogue& cat, const std::vector<std::string>& only, const InputBatch& in,
                         const std::string& path) {
  for (const ModelSpec& m : cat.models) {
    if (m.backend != "openai" || (!only.empty() && std::find(only.begin(), only.end(), m.name) == only.end())) continue;
    COE_ASSIGN_OR_RETURN(std::vector<std::string> fields, PromptFields(m.prompt));
    for (size_t i = 0; i < in.records.size(); ++i) {
      const json j = json::parse(in.records[i], nullptr, false);
      for (const std::string& field : fields)
        if (!j.is_object() || !j.contains(field) || j[field].is_null())
          return InvalidArgumentError(path + ": the input with id '" + in.ids[i] + "' (record " +
                                      std::to_string(i + 1) + ") has no field '" + field + "', which model '" + m.name +
                                      "''s prompt names");
    }
  }
  return Status::Ok();
}

// `coe record` on text inputs (JSONL, for chat models): recorded a batch at a time and
// appended to the output as it goes, so an interrupted, paid run loses at most a
// batch; a re-run skips the ids the output already holds.
int RunRecordText(const RecordFlags& f, const Catalogue& cat) {
  const char* cmd = "record";
  auto inputs = LoadInputs(f.data, {}, {});
  if (!inputs.ok()) return Fail(cmd, inputs.status());
  if (Status s = CheckPromptFields(cat, f.only, *inputs, f.data.data); !s.ok()) return Fail(cmd, s);
  std::vector<std::string> names;
  for (const ModelSpec& m : cat.models)
    if (f.only.empty() || std::find(f.only.begin(), f.only.end(), m.name) != f.only.end()) names.push_back(m.name);
  if (names.empty()) return Fail(cmd, InvalidArgumentError("no models to record (check --only)"));
  std::set<std::string> done;
  bool have_file = false;
  if (fs::exists(f.out)) {
    LabelSet seen_labels;
    auto existing = ReadRecordings(f.out, &seen_labels, nullptr);
    if (!existing.ok()) return Fail(cmd, existing.status().WithPrefix("resuming"));
    std::vector<std::string> have;
    for (const ModelRecord& m : existing->models) have.push_back(m.name);
    if (have != names)
      return Fail(cmd, InvalidArgumentError(f.out + " holds recordings of other models; record into a new file, or "
                                                    "with the same models (--only) to resume"));
    done.insert(existing->ids.begin(), existing->ids.end());
    have_file = true;
  }
  std::vector<int> todo;
  for (int i = 0; i < static_cast<int>(inputs->ids.size()); ++i)
    if (!done.count(inputs->ids[i])) todo.push_back(i);
  if (!f.json && !done.empty())
    std::fprintf(stderr, "coe record: resuming %s: %zu of %zu inputs recorded already\n", f.out.c_str(),
                 inputs->ids.size() - todo.size(), inputs->ids.size());
  RecordOptions ro;
  ro.only = f.only;
  ro.threads = f.data.threads;
  ro.batch = f.data.batch;
  Progress progress("recording " + std::to_string(names.size()) + " chat model(s)", !f.json);
  std::map<std::string, double> seconds;
  std::map<std::string, std::string> usd;
  const int batch = std::max(1, std::min(f.data.batch, 256));
  double spent = 0;
  for (size_t b = 0; b < todo.size(); b += batch) {
    const std::vector<int> part(todo.begin() + b, todo.begin() + std::min(todo.size(), b + batch));
    const InputBatch chunk = inputs->Gather(part);
    auto r = RecordModels(cat, chunk, ro);
    if (!r.ok()) return Fail(cmd, r.status());
    std::string csv = RecordingsToCsv(r->recordings, r->labels);
    if (have_file) csv.erase(0, csv.find('\n') + 1);  // the header is there already
    std::FILE* fp = std::fopen(f.out.c_str(), have_file ? "ab" : "wb");
    if (!fp || std::fwrite(csv.data(), 1, csv.size(), fp) != csv.size() || std::fflush(fp) != 0 || std::fclose(fp) != 0)
      return Fail(cmd, InvalidArgumentError("cannot write '" + f.out + "': " + std::strerror(errno)));
    have_file = true;
    for (const auto& [m, us] : r->us_per_example) seconds[m] += us * 1e-6 * part.size();
    for (const ModelRecord& m : r->recordings.models)
      for (double c : m.cost) spent += c;
    progress.Update(static_cast<double>(b + part.size()) / todo.size(),
                    std::to_string(b + part.size()) + "/" + std::to_string(todo.size()) + ", $" + Dollars(spent));
  }
  progress.Done();
  if (!have_file) return Fail(cmd, InvalidArgumentError(f.data.data + " has no inputs"));
  // The catalogue to plan with: cost comes from the recordings' |cost columns.
  RecordResult measured;
  for (const std::string& m : names) {
    ModelRecord mr;
    mr.name = m;
    measured.recordings.models.push_back(mr);
    measured.us_per_example[m] = todo.empty() ? 0 : 1e6 * seconds[m] / todo.size();
  }
  const std::string cat_path = MeasuredPath(f.out);
  if (Status s = WriteStringToFile(cat_path, CatalogueToToml(MeasuredCatalogue(cat, measured),
                                                             {"written by coe record for " + f.out +
                                                              ": the cost of each call is in its |cost columns"}));
      !s.ok())
    return Fail(cmd, s);
  if (f.json) {
    json j = {{"recordings", f.out},
              {"catalogue", cat_path},
              {"recorded", todo.size()},
              {"skipped", inputs->ids.size() - todo.size()},
              {"usd", spent}};
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("recorded %zu inputs x %zu models (%zu already there) -> %s, $%s\n", todo.size(), names.size(),
                inputs->ids.size() - todo.size(), f.out.c_str(), Dollars(spent).c_str());
  }
  return 0;
}

int RunRecord(const RecordFlags& f) {
  KeepModelBuffers();
  HeapOnHugePages(f.data.threads);
  const char* cmd = "record";
  auto cat = ReadCatalogue(f.models);
  if (!cat.ok()) return Fail(cmd, cat.status());
  if (fs::path(f.data.data).extension() == ".jsonl") return RunRecordText(f, *cat);
  auto r = Record(*cat, f.only, f.data, f.json);
  if (!r.ok()) return Fail(cmd, r.status());
  const std::string measured = MeasuredPath(f.out);
  if (Status s = WriteRecorded(*cat, *r, f.out, f.data.data); !s.ok()) return Fail(cmd, s);
  if (f.json) {
    json j;
    j["recordings"] = f.out;
    j["catalogue"] = measured;
    j["examples"] = r->recordings.num_examples();
    j["us_per_example"] = r->us_per_example;
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("recorded %d examples x %zu models -> %s\nmeasured cost figures -> %s\n", r->recordings.num_examples(),
                r->recordings.models.size(), f.out.c_str(), measured.c_str());
    for (const auto& [m, us] : r->us_per_example) std::printf("  %-16s %10.2f us/example\n", m.c_str(), us);
  }
  return 0;
}

// ---------------------------------------------------------------- run

struct RunFlags {
  std::string cascade, models, out, cost;
  bool json = false;
  DataFlags data;
};

int RunRun(const RunFlags& f) {
  KeepModelBuffers();
  HeapOnHugePages(f.data.threads);
  const char* cmd = "run";
  auto spec = ReadCascade(f.cascade);
  if (!spec.ok()) return Fail(cmd, spec.status());
  auto cat = ReadCatalogue(f.models);
  if (!cat.ok()) return Fail(cmd, cat.status());
  WarnAboutCascade(*spec, *cat, f.json);
  EngineOptions eo;
  eo.threads = f.data.threads;
  if (f.data.chunk > 0) eo.chunk = f.data.chunk;
  eo.cost_key = f.cost;
  auto prepared = CreateWhileLoading(*spec, *cat, eo, f.data);
  if (!prepared.ok()) return Fail(cmd, prepared.status());
  std::unique_ptr<Cascade>* cascade = &prepared->cascade;
  InputBatch* inputs = &prepared->inputs;
  if (!inputs->records.empty())
    if (Status s = CheckPromptFields(*cat, spec->AllMembers(), *inputs, f.data.data); !s.ok()) return Fail(cmd, s);
  Progress progress("running", !f.json);
  const auto t0 = std::chrono::steady_clock::now();
  auto r = RunBatched(**cascade, *inputs, f.data.batch, &progress);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  progress.Done();
  if (!r.ok()) return Fail(cmd, r.status());
  LiveSummary s = Summarize(**cascade, *inputs, *r, wall);
  // Chat responses without usage (or with an implausible one) were paid at an
  // estimate: say so.
  for (Backend* b : (*cascade)->members())
    if (uint64_t n = b->stats().estimated_costs.load(); n > 0)
      PrintWarnings({"model '" + b->info().name + "': " + std::to_string(n) +
                     " response(s) had no usage, or a token count that is not an integer from 0 to 2^40; their "
                     "cost is estimated (a token for 4 characters)"},
                    false);
  if (!f.out.empty()) {
    std::string csv =
        "id,answer,exit_tier,agreement,cost,degraded" + std::string(inputs->truth.empty() ? "" : ",label") + "\n";
    char buf[96];
    for (int64_t i = 0; i < inputs->size(); ++i) {
      std::snprintf(buf, sizeof buf, ",%d,%.4g,%.17g,%d", r->exit_tier[i] + 1, r->vote[i].agreement, r->cost[i],
                    r->degraded[i]);
      csv += CsvField(inputs->ids.empty() ? std::to_string(i) : inputs->ids[i]) + "," +
             CsvField(r->labels.name(r->answer[i])) + buf;
      if (!inputs->truth.empty()) csv += "," + CsvField(inputs->truth[i]);
      csv += "\n";
    }
    if (Status ws = WriteStringToFile(f.out, csv); !ws.ok()) return Fail(cmd, ws);
  }
  if (f.json) {
    json j = SummaryJson(s);
    j["cascade"] = spec->ToString();
    j["cost_name"] = (*cascade)->cost_name();
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("cascade    %s\n", spec->ToString().c_str());
  std::printf("examples   %lld in %.3f s: %.0f examples/s\n", static_cast<long long>(s.examples), s.seconds,
              s.throughput);
  if (s.labeled)
    std::printf("accuracy   %.2f%% (%lld/%lld)\n", 100 * s.accuracy, static_cast<long long>(s.correct),
                static_cast<long long>(s.labeled));
  std::printf("mean cost  %.4g %s per example\n", s.mean_cost, (*cascade)->cost_name().c_str());
  std::printf("exits      ");
  for (size_t t = 0; t < s.exits.size(); ++t)
    std::printf("%stier %zu: %d (%.1f%%)", t ? ", " : "", t + 1, s.exits[t],
                100.0 * s.exits[t] / std::max<int64_t>(1, s.examples));
  std::printf("\n");
  if (s.degraded)
    std::printf("degraded   %lld (a failing member forced a fallback answer)\n", static_cast<long long>(s.degraded));
  if (!f.out.empty()) std::printf("wrote      %s\n", f.out.c_str());
  return 0;
}

// ---------------------------------------------------------------- demo

struct DemoFlags {
  std::string models = BundledZooCatalogue(), data_dir = kFashionDir, work = "coe-demo", goal = "match-best";
  int threads = 0;
  bool json = false;
};

int RunDemo(const DemoFlags& f) {
  KeepModelBuffers();
  HeapOnHugePages(f.threads);
  const char* cmd = "demo";
  auto cat = ReadCatalogue(f.models);
  if (!cat.ok()) return Fail(cmd, cat.status());
  std::error_code ec;
  fs::create_directories(f.work, ec);
  if (ec) return Fail(cmd, InvalidArgumentError("cannot create '" + f.work + "': " + ec.message()));
  auto say = [&](const std::string& s) {
    if (!f.json) std::printf("%s\n", s.c_str());
    std::fflush(stdout);
  };
  // 1. Record every model on the calibration split (the last 10,000 training images).
  DataFlags calib;
  calib.data = f.data_dir + "/train-images-idx3-ubyte.gz";
  calib.labels = f.data_dir + "/train-labels-idx1-ubyte.gz";
  calib.range = "50000:60000";
  calib.threads = f.threads;
  say("1/3 recording " + std::to_string(cat->models.size()) + " models on the calibration split (" + calib.data +
      ", images 50000-59999)");
  auto recorded = Record(*cat, {}, calib, f.json);
  if (!recorded.ok()) return Fail(cmd, recorded.status());
  const std::string calib_csv = f.work + "/calib.csv";
  if (Status s = WriteRecorded(*cat, *recorded, calib_csv, calib.data); !s.ok()) return Fail(cmd, s);
  // 2. Plan on the recordings (cost: multiply-adds).
  say("2/3 planning (goal " + f.goal + ", cost: multiply-adds) over the recordings");
  auto goal = Goal::Parse(f.goal);
  if (!goal.ok()) return Fail(cmd, goal.status());
  CostOptions co;
  co.key = "macs";
  auto costs = BuildCostTable(recorded->recordings, *cat, co);
  if (!costs.ok()) return Fail(cmd, costs.status());
  PlannerOptions po;
  po.threads = f.threads;
  Progress plan_progress("searching cascades", !f.json);
  po.progress = [&](double x) { plan_progress.Update(x); };
  auto plan = Plan(recorded->recordings, *costs, *goal, po);
  plan_progress.Done();
  if (!plan.ok()) return Fail(cmd, plan.status());
  const std::string cascade_path = f.work + "/cascade.toml";
  if (Status s =
          WriteStringToFile(cascade_path, CascadeToToml(plan->chosen.cascade, {"planned by coe demo on " + calib_csv}));
      !s.ok())
    return Fail(cmd, s);
  char buf[512];
  std::snprintf(buf, sizeof buf, "    searched %llu cascades in %.2f s; chosen: %s",
                static_cast<unsigned long long>(plan->space_size), plan->seconds,
                plan->chosen.cascade.ToString().c_str());
  say(buf);
  // 3. Run the cascade and the best single model live on the test split.
  DataFlags test;
  test.data = f.data_dir + "/t10k-images-idx3-ubyte.gz";
  test.labels = f.data_dir + "/t10k-labels-idx1-ubyte.gz";
  test.threads = f.threads;
  say("3/3 running live on the test split (" + test.data + ")");
  CascadeSpec single;
  single.tiers.push_back(TierSpec{{plan->best_single}, {}});
  struct Row {
    std::string name;
    CascadeSpec spec;
    LiveSummary s;
  };
  std::vector<Row> rows = {{"best single model", single, {}}, {"cascade", plan->chosen.cascade, {}}};
  for (Row& row : rows) {
    EngineOptions eo;
    eo.threads = f.threads;
    eo.cost_key = "macs";
    auto prepared = CreateWhileLoading(row.spec, *cat, eo, test);
    if (!prepared.ok()) return Fail(cmd, prepared.status());
    std::unique_ptr<Cascade>* cascade = &prepared->cascade;
    InputBatch* inputs = &prepared->inputs;
    Progress progress("running " + row.name, !f.json);
    const auto t0 = std::chrono::steady_clock::now();
    auto r = RunBatched(**cascade, *inputs, test.batch, &progress);
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    progress.Done();
    if (!r.ok()) return Fail(cmd, r.status());
    row.s = Summarize(**cascade, *inputs, *r, wall);
  }
  const LiveSummary& a = rows[0].s;
  const LiveSummary& b = rows[1].s;
  if (f.json) {
    json j;
    j["cascade"] = TierSpecsJson(plan->chosen.cascade);
    j["cascade_text"] = plan->chosen.cascade.ToString();
    j["best_single"] = plan->best_single;
    j["single"] = SummaryJson(a);
    j["cascade_run"] = SummaryJson(b);
    j["macs_ratio"] = a.mean_cost / std::max(1e-300, b.mean_cost);
    j["throughput_ratio"] = b.throughput / std::max(1e-300, a.throughput);
    j["files"] = {{"recordings", calib_csv}, {"cascade", cascade_path}};
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("\n%-40s %10s %14s %14s\n", "on the 10,000 test images", "accuracy", "mean MACs", "images/s");
  for (const Row& row : rows) {
    std::string label = row.name == "cascade" ? "cascade (" + std::to_string(row.spec.tiers.size()) + " tiers)"
                                              : "best single: " + plan->best_single;
    std::printf("%-40s %9.2f%% %14.0f %14.0f\n", label.c_str(), 100 * row.s.accuracy, row.s.mean_cost,
                row.s.throughput);
  }
  std::printf("\ncascade %s\n", plan->chosen.cascade.ToString().c_str());
  std::printf("exits per tier:");
  for (size_t t = 0; t < b.exits.size(); ++t)
    std::printf(" %.1f%%", 100.0 * b.exits[t] / std::max<int64_t>(1, b.examples));
  std::printf("\n%.2fx fewer multiply-adds, %.2fx the throughput, accuracy %+.2f points\n",
              a.mean_cost / std::max(1e-300, b.mean_cost), b.throughput / std::max(1e-300, a.throughput),
              100 * (b.accuracy - a.accuracy));
  std::printf("files: %s (recordings), %s (cascade)\n", calib_csv.c_str(), cascade_path.c_str());
  return 0;
}

}  // namespace

json TierSpecsJson(const CascadeSpec& spec) {
  json tiers = json::array();
  for (size_t t = 0; t < spec.tiers.size(); ++t) {
    const bool last = t + 1 == spec.tiers.size();
    json j;
    j["members"] = spec.tiers[t].members;
    j["min_agreement"] = (!last && spec.tiers[t].rule.min_agreement) ? json(*spec.tiers[t].rule.min_agreement) : json();
    j["min_score"] = (!last && spec.tiers[t].rule.min_score) ? json(*spec.tiers[t].rule.min_score) : json();
    tiers.push_back(j);
  }
  return tiers;
}

void AddLiveCommands(CLI::App& app) {
  auto rf = std::make_shared<RecordFlags>();
  CLI::App* record = app.add_subcommand("record", "run every catalogue model on inputs; write recordings for coe plan");
  record->add_option("--models", rf->models, "model catalogue (TOML)")->required();
  record->add_option("--out", rf->out, "recordings to write (CSV); cost figures go to <out>.models.toml")->required();
  record->add_option("--only", rf->only, "record only these models (comma list)")->delimiter(',');
  record->add_flag("--json", rf->json, "print a JSON summary");
  rf->data.Add(record);
  record->callback([rf]() { throw CLI::RuntimeError(RunRecord(*rf)); });

  auto uf = std::make_shared<RunFlags>();
  CLI::App* run = app.add_subcommand("run", "run a cascade live on inputs: accuracy, exits, cost, throughput");
  run->add_option("--cascade", uf->cascade, "cascade (TOML)")->required();
  run->add_option("--models", uf->models, "model catalogue (TOML)")->required();
  run->add_option("--out", uf->out, "write predictions (CSV: id,answer,exit_tier,agreement,cost,degraded[,label])");
  run->add_option("--cost", uf->cost,
                  "catalogue figure counted as cost (default: the first of usd, macs, flops, latency_ms, latency_us, "
                  "params every member has, as coe plan)");
  run->add_flag("--json", uf->json, "print the summary as JSON");
  uf->data.Add(run);
  run->callback([uf]() { throw CLI::RuntimeError(RunRun(*uf)); });

  auto df = std::make_shared<DemoFlags>();
  CLI::App* demo =
      app.add_subcommand("demo", "the whole method on the bundled Fashion-MNIST zoo: record, plan, run live");
  demo->add_option("--models", df->models, "model catalogue")->capture_default_str();
  demo->add_option("--data-dir", df->data_dir, "Fashion-MNIST IDX files (Debian's dataset-fashion-mnist)")
      ->capture_default_str();
  demo->add_option("--work", df->work, "folder for the recordings and the cascade")->capture_default_str();
  demo->add_option("--goal", df->goal, "planning goal")->capture_default_str();
  demo->add_option("--threads", df->threads, "worker threads (default: the cores)");
  demo->add_flag("--json", df->json, "print the result as JSON");
  demo->callback([df]() { throw CLI::RuntimeError(RunDemo(*df)); });
}

}  // namespace coe::app
