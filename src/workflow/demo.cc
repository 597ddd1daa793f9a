// `coe demo` as a library: the whole method on the bundled Fashion-MNIST zoo.
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "coe/cost_model.h"
#include "coe/files.h"
#include "coe/planner.h"
#include "coe/recordings.h"
#include "coe/workflow.h"
#include "core/cascade_json.h"

namespace coe {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Step 2: plans on the recordings (cost: multiply-adds) and writes the cascade file.
Status PlanOnRecordings(const DemoOptions& o, const Catalogue& cat, DemoResult* d) {
  COE_ASSIGN_OR_RETURN(Goal goal, Goal::Parse(o.goal));
  LabelSet labels;
  COE_ASSIGN_OR_RETURN(Recordings calib, ReadRecordings(d->recordings, &labels, nullptr));
  CostOptions co;
  co.key = "macs";
  COE_ASSIGN_OR_RETURN(CostTable costs, BuildCostTable(calib, cat, co));
  PlannerOptions po;
  po.threads = o.threads;
  if (o.progress) po.progress = [&](double x) { o.progress("searching cascades", x, ""); };
  COE_ASSIGN_OR_RETURN(PlanResult plan, Plan(calib, costs, goal, po));
  d->cascade = plan.chosen.cascade;
  d->best_single = plan.best_single;
  d->searched = plan.space_size;
  d->search_seconds = plan.seconds;
  d->cascade_file = o.work + "/cascade.toml";
  return WriteStringToFile(d->cascade_file, CascadeToToml(d->cascade, {"planned by coe demo on " + d->recordings}));
}

}  // namespace

StatusOr<DemoResult> RunDemo(const DemoOptions& o) {
  auto say = [&](const std::string& s) {
    if (o.say) o.say(s);
  };
  COE_ASSIGN_OR_RETURN(Catalogue cat, ReadCatalogue(o.models));
  std::error_code ec;
  fs::create_directories(o.work, ec);
  if (ec) return InvalidArgumentError("cannot create '" + o.work + "': " + ec.message());
  DemoResult d;
  // 1. Record every model on the calibration split (the last 10,000 training images).
  InputSpec calib{.data = o.data_dir + "/train-images-idx3-ubyte.gz",
                  .labels = o.data_dir + "/train-labels-idx1-ubyte.gz",
                  .range = "50000:60000"};
  say("1/3 recording " + std::to_string(cat.models.size()) + " models on the calibration split (" + calib.data +
      ", images 50000-59999)");
  if (cat.models.empty()) return InvalidArgumentError(o.models + " holds no models");
  std::vector<std::string> warnings;
  COE_ASSIGN_OR_RETURN(InputBatch calib_inputs,
                       LoadInputs(calib, cat.models[0].input_shape, cat.models[0].labels, &warnings));
  RecordFileOptions ro;
  ro.threads = o.threads;
  ro.overwrite = true;  // the demo records anew each time
  ro.data_name = calib.data;
  ro.progress = o.progress;
  d.recordings = o.work + "/calib.csv";
  COE_ASSIGN_OR_RETURN(RecordFileResult recorded, RecordToFile(cat, calib_inputs, d.recordings, ro));
  if (recorded.failed > 0)
    return UnavailableError(std::to_string(recorded.failed) +
                            " model calls failed while recording: " + FailureLines(recorded.failures)[0]);
  // 2. Plan.
  say("2/3 planning (goal " + o.goal + ", cost: multiply-adds) over the recordings");
  COE_RETURN_IF_ERROR(PlanOnRecordings(o, cat, &d));
  char buf[512];
  std::snprintf(buf, sizeof buf, "    searched %llu cascades in %.2f s; chosen: %s",
                static_cast<unsigned long long>(d.searched), d.search_seconds, d.cascade.ToString().c_str());
  say(buf);
  // 3. Run the cascade and the best single model live on the test split.
  InputSpec test{.data = o.data_dir + "/t10k-images-idx3-ubyte.gz",
                 .labels = o.data_dir + "/t10k-labels-idx1-ubyte.gz"};
  say("3/3 running live on the test split (" + test.data + ")");
  CascadeSpec single;
  single.tiers.push_back(TierSpec{{d.best_single}, {}});
  LiveRunOptions lo;
  lo.threads = o.threads;
  lo.cost_key = "macs";
  for (auto [spec, out, what] : {std::tuple{&single, &d.single, "running the best single model"},
                                 std::tuple{&d.cascade, &d.cascaded, "running the cascade"}}) {
    if (o.progress)
      lo.progress = [&, what = what](const std::string&, double x, const std::string& detail) {
        o.progress(what, x, detail);
      };
    COE_ASSIGN_OR_RETURN(LiveRun run, RunLive(*spec, cat, test, lo));
    *out = std::move(run.summary);
  }
  return d;
}

std::string DemoResultJson(const DemoResult& d) {
  json j;
  j["cascade"] = CascadeTiersJson(d.cascade);
  j["cascade_text"] = d.cascade.ToString();
  j["best_single"] = d.best_single;
  j["single"] = json::parse(RunSummaryJson(d.single));
  j["cascade_run"] = json::parse(RunSummaryJson(d.cascaded));
  j["macs_ratio"] = d.single.mean_cost / std::max(1e-300, d.cascaded.mean_cost);
  j["throughput_ratio"] = d.cascaded.throughput / std::max(1e-300, d.single.throughput);
  j["files"] = {{"recordings", d.recordings}, {"cascade", d.cascade_file}};
  return j.dump(2, ' ', false, json::error_handler_t::replace);
}

std::string DemoResultText(const DemoResult& d) {
  const RunSummary& a = d.single;
  const RunSummary& b = d.cascaded;
  std::string out;
  char buf[512];
  std::snprintf(buf, sizeof buf, "\n%-40s %10s %14s %14s\n", "on the 10,000 test images", "accuracy", "mean MACs",
                "images/s");
  out += buf;
  const std::string single_name = "best single: " + d.best_single;
  const std::string cascade_name = "cascade (" + std::to_string(d.cascade.tiers.size()) + " tiers)";
  for (const auto& [name, s] : {std::pair{&single_name, &a}, std::pair{&cascade_name, &b}}) {
    std::snprintf(buf, sizeof buf, "%-40s %9.2f%% %14.0f %14.0f\n", name->c_str(), 100 * s->accuracy, s->mean_cost,
                  s->throughput);
    out += buf;
  }
  out += "\ncascade " + d.cascade.ToString() + "\nexits per tier:";
  for (int64_t e : b.exits) {
    std::snprintf(buf, sizeof buf, " %.1f%%", 100.0 * e / std::max<int64_t>(1, b.examples));
    out += buf;
  }
  std::snprintf(buf, sizeof buf, "\n%.2fx fewer multiply-adds, %.2fx the throughput, accuracy %+.2f points\n",
                a.mean_cost / std::max(1e-300, b.mean_cost), b.throughput / std::max(1e-300, a.throughput),
                100 * (b.accuracy - a.accuracy));
  out += buf;
  out += "files: " + d.recordings + " (recordings), " + d.cascade_file + " (cascade)\n";
  return out;
}

}  // namespace coe
