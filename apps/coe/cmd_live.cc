// `coe record`, `coe run` and `coe demo`: flags in, one workflow (coe/workflow.h) called,
// its result printed.
#include <cstdio>
#include <memory>

#include "coe/cascade_spec.h"
#include "coe/catalogue.h"
#include "coe/files.h"
#include "coe/paths.h"
#include "coe/workflow.h"
#include "commands.h"
#include "common.h"
#include "progress.h"

namespace coe::app {

namespace {

constexpr const char* kFashionDir = "/usr/share/datasets/fashion-mnist";

struct DataFlags {
  InputSpec in;
  int threads = 0, batch = 32768, chunk = 0;
  void Add(CLI::App* cmd) {
    cmd->add_option("--data", in.data,
                    "inputs: an IDX file (.gz ok), an image, a folder of images, a .txt list of images, or a .jsonl "
                    "file of JSON records for chat models (an \"id\" and the fields their prompts name)")
        ->required();
    cmd->add_option("--labels", in.labels, "true labels: an IDX label file, or a CSV of id,label for images");
    cmd->add_option("--label-field", in.label_field,
                    "JSONL inputs: the record field holding the true answer (default: label, when present)");
    cmd->add_option("--range", in.range, "use examples [A, B) only, e.g. 50000:60000");
    cmd->add_option("--threads", threads, "worker threads (default: the cores)");
    cmd->add_option("--batch", batch,
                    "most examples per engine call (calls start at 2048 and double while one takes under 0.1 s)")
        ->capture_default_str();
    cmd->add_option("--chunk", chunk, "examples per model call (one engine task; default: the engine's)")
        ->check(CLI::Range(1, 1 << 20));
    cmd->add_flag("--normalize-labels", in.normalize_labels,
                  "match true labels to the models' ignoring case and surrounding spaces");
  }
};

// A progress bar on the terminal for a workflow's ProgressSink: a new bar whenever what
// it does changes. Quiet with --json or when stderr is not a terminal.
class Bars {
 public:
  explicit Bars(bool quiet) : quiet_(quiet) {}
  ProgressSink Sink() {
    return [this](const std::string& what, double fraction, const std::string& detail) {
      if (what != what_) {
        what_ = what;
        bar_ = std::make_unique<Progress>(what, !quiet_);
      }
      bar_->Update(fraction, detail);
    };
  }
  void Done() { bar_.reset(); }

 private:
  bool quiet_;
  std::string what_;
  std::unique_ptr<Progress> bar_;
};

// Failed calls: named, and the command fails (after writing what it could).
int ReportFailures(const char* cmd, const std::vector<FailureGroup>& failures, int64_t failed,
                   const std::string& retry) {
  if (failed == 0) return 0;
  std::fprintf(stderr, "coe %s: error: %lld model %s failed (no answer)%s\n", cmd, static_cast<long long>(failed),
               failed == 1 ? "call" : "calls", retry.c_str());
  for (const std::string& line : FailureLines(failures)) std::fprintf(stderr, "  %s\n", line.c_str());
  return 1;
}

// ---------------------------------------------------------------- record

struct RecordFlags {
  std::string models, out, device = "this_cpu";
  std::vector<std::string> only;
  std::vector<int> throughput_batches;
  bool json = false, overwrite = false;
  DataFlags data;
};

int RunRecord(const RecordFlags& f) {
  KeepModelBuffers();
  HeapOnHugePages(f.data.threads);
  const char* cmd = "record";
  auto cat = ReadCatalogue(f.models);
  if (!cat.ok()) return Fail(cmd, cat.status());
  // The inputs, read with the shape and labels of the first model recorded.
  const ModelSpec* first = nullptr;
  for (const ModelSpec& m : cat->models)
    if (f.only.empty() || std::find(f.only.begin(), f.only.end(), m.name) != f.only.end()) {
      first = &m;
      break;
    }
  if (!first) return Fail(cmd, InvalidArgumentError("no models to record (check --only)"));
  std::vector<const ModelSpec*> recorded;
  for (const ModelSpec& m : cat->models)
    if (f.only.empty() || std::find(f.only.begin(), f.only.end(), m.name) != f.only.end()) recorded.push_back(&m);
  std::vector<std::string> warnings;
  auto inputs = LoadInputsFor(f.data.in, *first, recorded, &warnings);
  if (!inputs.ok()) return Fail(cmd, inputs.status());
  PrintWarnings(warnings, f.json);
  RecordFileOptions o;
  o.only = f.only;
  o.threads = f.data.threads;
  o.batch = f.data.batch;
  o.overwrite = f.overwrite;
  o.data_name = f.data.in.data;
  o.throughput_batches = f.throughput_batches;
  o.device = f.device;
  Bars bars(f.json);
  o.progress = bars.Sink();
  auto r = RecordToFile(*cat, *inputs, f.out, o);
  bars.Done();
  if (!r.ok()) return Fail(cmd, r.status());
  PrintWarnings(r->warnings, f.json);
  if (f.json) {
    std::printf("%s\n", RecordFileResultJson(*r).c_str());
  } else {
    std::printf("recorded %lld inputs x %zu models -> %s", static_cast<long long>(r->recorded), r->models.size(),
                r->recordings.c_str());
    if (r->kept > 0) std::printf(" (%lld inputs were there already)", static_cast<long long>(r->kept));
    if (r->usd > 0) std::printf(", $%.4g", r->usd);
    if (r->failed > 0)  // not "recorded" whole: say how much of it is answers
      std::printf(": %lld of %lld calls answered, %lld failed", static_cast<long long>(r->calls - r->failed),
                  static_cast<long long>(r->calls), static_cast<long long>(r->failed));
    std::printf("\nmeasured cost figures -> %s\n", r->catalogue.c_str());
    for (const auto& [m, us] : r->us_per_example) std::printf("  %-16s %10.2f us/example\n", m.c_str(), us);
    if (!r->throughput_file.empty()) {
      std::printf("throughput (examples/s) by batch -> %s\n  %-16s", r->throughput_file.c_str(), "model");
      for (int b : f.throughput_batches) std::printf(" %11s", ("batch " + std::to_string(b)).c_str());
      for (const Throughput& t : r->throughput) {
        std::printf("\n  %-16s", t.model.c_str());
        for (const auto& [batch, rate] : t.points) std::printf(" %11.5g", rate);
      }
      std::printf("\n");
    }
  }
  return ReportFailures(cmd, r->failures, r->failed,
                        ": not recorded as answers; run the same command again to retry them (the rest is kept)");
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
  LiveRunOptions o;
  o.threads = f.data.threads;
  o.batch = f.data.batch;
  o.chunk = f.data.chunk;
  o.cost_key = f.cost;
  Bars bars(f.json);
  o.progress = bars.Sink();
  auto run = RunLive(*spec, *cat, f.data.in, o);
  bars.Done();
  if (!run.ok()) return Fail(cmd, run.status());
  const RunSummary& s = run->summary;
  PrintWarnings(s.warnings, f.json);
  if (!f.out.empty())
    if (Status ws = WriteStringToFile(f.out, PredictionsCsv(run->inputs, run->result)); !ws.ok()) return Fail(cmd, ws);
  if (f.json) {
    std::printf("%s\n", RunSummaryJson(s).c_str());
  } else {
    std::fputs(RunSummaryText(s).c_str(), stdout);
    if (!f.out.empty()) std::printf("wrote      %s\n", f.out.c_str());
  }
  return ReportFailures(cmd, s.failures, s.failed_calls, "");
}

// ---------------------------------------------------------------- demo

struct DemoFlags {
  DemoOptions o{.models = BundledZooCatalogue(), .data_dir = kFashionDir, .work = "coe-demo"};
  bool json = false;
};

int RunDemoCommand(const DemoFlags& f) {
  KeepModelBuffers();
  HeapOnHugePages(f.o.threads);
  DemoOptions o = f.o;
  o.say = [&](const std::string& s) {
    if (f.json) return;
    std::printf("%s\n", s.c_str());
    std::fflush(stdout);
  };
  Bars bars(f.json);
  o.progress = bars.Sink();
  auto d = RunDemo(o);
  bars.Done();
  if (!d.ok()) return Fail("demo", d.status());
  std::fputs((f.json ? DemoResultJson(*d) + "\n" : DemoResultText(*d)).c_str(), stdout);
  return 0;
}

}  // namespace

void AddLiveCommands(CLI::App& app) {
  auto rf = std::make_shared<RecordFlags>();
  CLI::App* record = app.add_subcommand("record", "run every catalogue model on inputs; write recordings for coe plan");
  record->add_option("--models", rf->models, "model catalogue (TOML)")->required();
  record
      ->add_option("--out", rf->out,
                   "recordings to write (CSV); cost figures go to <out>.models.toml. An existing file of the same "
                   "models is resumed: only inputs it lacks, and its failed calls, are recorded")
      ->required();
  record->add_option("--only", rf->only, "record only these models (comma list)")->delimiter(',');
  record->add_flag("--overwrite", rf->overwrite, "record into --out anew instead of resuming it");
  record->add_flag("--json", rf->json, "print a JSON summary");
  record
      ->add_option("--throughput-batches", rf->throughput_batches,
                   "after recording, measure each model's examples/s at these batch sizes (comma list, e.g. "
                   "1,16,256,4096) and write them as a cluster file (version 2) to <out>.throughput.toml")
      ->delimiter(',')
      ->check(CLI::Range(1, 65536));
  record->add_option("--device", rf->device, "with --throughput-batches: the device type's name in that file")
      ->capture_default_str();
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
  demo->add_option("--models", df->o.models, "model catalogue")->capture_default_str();
  demo->add_option("--data-dir", df->o.data_dir, "Fashion-MNIST IDX files (Debian's dataset-fashion-mnist)")
      ->capture_default_str();
  demo->add_option("--work", df->o.work, "folder for the recordings and the cascade")->capture_default_str();
  demo->add_option("--goal", df->o.goal, "planning goal")->capture_default_str();
  demo->add_option("--threads", df->o.threads, "worker threads (default: the cores)");
  demo->add_flag("--json", df->json, "print the result as JSON");
  demo->callback([df]() { throw CLI::RuntimeError(RunDemoCommand(*df)); });
}

}  // namespace coe::app
