// cluster_cost: dollars on real hardware (issue 26). Does a cascade's saving in
// multiply-adds become a saving in the money a team pays for devices, and is it over 3x?
//
// 1. The zoo on this CPU (real answers, real figures): records the bundled zoo on the
//    calibration split (Fashion-MNIST training images 50000-59999) and the 10,000 test
//    images as `coe record --throughput-batches 1,8,64,512,4096` does, prices this
//    machine as examples/cluster/zoo_cpu.toml prices it, and plans (match-best, the
//    default guard) with --cluster at each traffic rate: the chosen cascade's test
//    accuracy, and its savings against the best single model in multiply-adds, in
//    dollars per example (at the batch each tier sees at that rate) and in the
//    provisioned bill (whole devices at 70% utilisation); then the same for the cascade
//    a plan on multiply-adds chooses.
// 2. The ImageNet ladder on public figures (examples/cluster/imagenet_ladder.toml, timm's
//    benchmark tables and public rental prices): two-tier cascades ending in ViT-L/16, at
//    deferral shares d, against ViT-L/16 alone: savings in multiply-adds, in dollars per
//    example fully batched (as the planner prices a model), and per example and
//    provisioned at --qps and at 12.5 x --qps; and the largest d at which each is 3x.
// 3. A proxy for ImageNet answers, which this machine does not have: the zoo's recorded
//    answers with seven zoo models standing in for the seven ladder models in the same
//    order of multiply-adds, planned on the ladder's public dollars. It shows what the
//    planner does with the ladder's compressed dollar range, not ImageNet accuracy.
//
//   build/cluster_cost [--work DIR] [--rates 100,1000,10000,100000,1000000] [--qps 20000]
#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "coe/catalogue.h"
#include "coe/cost_model.h"
#include "coe/evaluate.h"
#include "coe/files.h"
#include "coe/paths.h"
#include "coe/workflow.h"

namespace {

namespace fs = std::filesystem;
using namespace coe;

constexpr const char* kFashion = "/usr/share/datasets/fashion-mnist/";

std::string ExampleDir() {
  for (std::string dir : {std::string("examples/cluster"), std::string("../examples/cluster")})
    if (fs::exists(dir + "/imagenet_ladder.toml")) return dir;
  return "";
}

std::vector<double> Numbers(const std::string& list) {
  std::vector<double> out;
  std::stringstream ss(list);
  for (std::string x; std::getline(ss, x, ',');) out.push_back(std::atof(x.c_str()));
  return out;
}

StatusOr<RecordFileResult> Record(const Catalogue& cat, const InputSpec& spec, const std::string& out,
                                  bool throughput) {
  std::vector<std::string> warnings;
  COE_ASSIGN_OR_RETURN(InputBatch in, LoadInputs(spec, cat.models[0].input_shape, cat.models[0].labels, &warnings));
  RecordFileOptions o;
  o.overwrite = true;
  o.data_name = spec.data;
  if (throughput) o.throughput_batches = {1, 8, 64, 512, 4096};
  return RecordToFile(cat, in, out, o);
}

// Mean cost of `spec` on `rec` under the catalogue's multiply-adds.
StatusOr<double> MeanMacs(const CascadeSpec& spec, const Recordings& rec, const Catalogue& cat) {
  CostOptions co;
  co.key = "macs";
  COE_ASSIGN_OR_RETURN(CostTable t, BuildCostTable(rec, cat, co));
  COE_ASSIGN_OR_RETURN(EvalResult r, EvaluateCascade(spec, rec, t));
  return r.mean_cost;
}

CascadeSpec One(const std::string& m) {
  CascadeSpec s;
  s.tiers.push_back(TierSpec{{m}, {}});
  return s;
}

// One plan at one rate, as a table row.
Status PlanRow(const Recordings& calib, const Recordings& test, const Catalogue& cat, const ClusterSpec& cluster,
               double qps) {
  PlanRequest req;
  req.cost.cluster = cluster;
  req.cost.serving = ServingOptions{.qps = qps, .utilisation = 0.7};
  COE_ASSIGN_OR_RETURN(PlanOutcome out, PlanRecordings(calib, &test, cat, req));
  const PlanReport& r = out.report;
  const ClusterView& v = *r.cluster;
  COE_ASSIGN_OR_RETURN(double macs, MeanMacs(r.chosen.cascade, test, cat));
  COE_ASSIGN_OR_RETURN(double best_macs, MeanMacs(One(r.best_single), test, cat));
  const double per_example = v.best.usd_per_example / v.chosen.usd_per_example;
  const double provisioned = v.best.usd_per_hour / v.chosen.usd_per_hour;
  double best_acc = 0;
  for (const ReportRow& b : r.baselines)
    if (b.name == r.best_single && b.test) best_acc = b.test->accuracy;
  std::printf("%10.6g  %6.2f%% %6.2f%%  %6.2fx  %7.2fx  %7.2fx  %9.4g  %s  %s\n", qps, 100 * r.chosen.test->accuracy,
              100 * best_acc, best_macs / macs, per_example, provisioned, v.chosen.usd_per_hour,
              provisioned >= 3 ? "yes" : "no ", r.chosen.cascade.ToString().c_str());
  if (r.other_cost_plan && !r.other_cost_plan->same)
    std::printf(
        "%10s  planned on macs instead: %.2fx in macs, %.2fx in dollars per example (calibration, fully "
        "batched): %s\n",
        "", r.other_cost_plan->saving_on_key, r.other_cost_plan->saving, r.other_cost_plan->cascade.c_str());
  if (!v.replaced.empty())
    std::printf("%10s  (the search chose %s; provisioned it cost more than %s alone)\n", "", v.replaced.c_str(),
                r.best_single.c_str());
  return Status::Ok();
}

void PlanHeader() {
  std::printf("%10s  %7s %7s  %7s  %8s  %8s  %9s  %s\n", "examples/s", "acc", "best", "macs", "$/example", "$/hour",
              "bill $/h", ">3x  chosen");
}

// Part 1.
Status Zoo(const std::string& work, const std::string& examples, const std::vector<double>& rates,
           Recordings* calib_out, Recordings* test_out, LabelSet* labels) {
  COE_ASSIGN_OR_RETURN(Catalogue zoo, ReadCatalogue(BundledZooCatalogue()));
  std::printf("1. THE ZOO ON THIS CPU: recording %zu models (calibration 10,000 images, test 10,000)...\n",
              zoo.models.size());
  const std::string calib_csv = work + "/calib.csv", test_csv = work + "/test.csv";
  COE_ASSIGN_OR_RETURN(RecordFileResult rc, Record(zoo,
                                                   {.data = std::string(kFashion) + "train-images-idx3-ubyte.gz",
                                                    .labels = std::string(kFashion) + "train-labels-idx1-ubyte.gz",
                                                    .range = "50000:60000"},
                                                   calib_csv, true));
  COE_ASSIGN_OR_RETURN(RecordFileResult rt, Record(zoo,
                                                   {.data = std::string(kFashion) + "t10k-images-idx3-ubyte.gz",
                                                    .labels = std::string(kFashion) + "t10k-labels-idx1-ubyte.gz"},
                                                   test_csv, false));
  std::printf("   throughput measured by coe record (examples/s on %s):\n   %-14s", rc.throughput_file.c_str(),
              "model");
  for (const auto& [b, x] : rc.throughput[0].points) std::printf(" %10s", ("batch " + std::to_string(b)).c_str());
  for (const Throughput& t : rc.throughput) {
    std::printf("\n   %-14s", t.model.c_str());
    for (const auto& [b, x] : t.points) std::printf(" %10.4g", x);
  }
  // This machine's price, as the example prices it.
  COE_ASSIGN_OR_RETURN(ClusterSpec example, ReadCluster(examples + "/zoo_cpu.toml"));
  COE_ASSIGN_OR_RETURN(std::string measured, ReadFileToString(rc.throughput_file));
  char price[96];
  std::snprintf(price, sizeof price, "usd_per_hour = %.17g\n", example.devices.at("this_cpu").usd_per_hour);
  measured.insert(measured.find("cores = "), price);
  COE_ASSIGN_OR_RETURN(ClusterSpec cluster, ParseCluster(measured, rc.throughput_file));
  std::printf("\n   priced at $%g/h (examples/cluster/zoo_cpu.toml's this_cpu)\n\n",
              example.devices.at("this_cpu").usd_per_hour);
  COE_ASSIGN_OR_RETURN(Catalogue measured_cat, ReadCatalogue(rc.catalogue));
  COE_ASSIGN_OR_RETURN(*calib_out, ReadRecordings(calib_csv, labels, nullptr));
  COE_ASSIGN_OR_RETURN(*test_out, ReadRecordings(rt.recordings, labels, nullptr));
  std::printf(
      "   savings against the best single model on the test split (acc: the chosen's, best: the best "
      "model's)\n");
  PlanHeader();
  for (double q : rates) COE_RETURN_IF_ERROR(PlanRow(*calib_out, *test_out, measured_cat, cluster, q));
  return Status::Ok();
}

// Part 2: at `qps` images/s, and fully batched (every tier at its table's batch, which is
// how the planner prices a model).
Status Ladder(const std::string& examples, double qps) {
  COE_ASSIGN_OR_RETURN(ClusterSpec c, ReadCluster(examples + "/imagenet_ladder.toml"));
  COE_ASSIGN_OR_RETURN(Catalogue cat, ReadCatalogue(examples + "/imagenet_ladder.models.toml"));
  const std::string top = "vit_large_patch16_224";
  auto macs = [&](const std::string& m) { return *cat.Find(m)->Cost("macs"); };
  const ServingOptions at_rate{.qps = qps, .utilisation = 0.7}, batched{.qps = 1e12, .utilisation = 0.7};
  std::printf("\n2. THE IMAGENET LADDER ON PUBLIC FIGURES (%s): two tiers, the second %s, at %g images/s\n",
              c.source.c_str(), top.c_str(), qps);
  const double one[] = {1.0};
  COE_ASSIGN_OR_RETURN(Serving alone, ServeCascade(c, {{top}}, one, at_rate));
  COE_ASSIGN_OR_RETURN(Serving alone_full, ServeCascade(c, {{top}}, one, batched));
  std::printf("   %s alone: $%.4g per image fully batched; at %g/s $%.4g per image, %d x %s = $%.4g/h\n", top.c_str(),
              alone_full.usd_per_example, qps, alone.usd_per_example, alone.tiers[0].devices,
              alone.tiers[0].type.c_str(), alone.usd_per_hour);
  std::printf("   savings against it when a share d of the images reaches %s\n", top.c_str());
  std::printf("   %-38s %5s  %7s  %9s  %9s  %9s  %s\n", "tier 1", "d", "macs", "$ batched", "$/image", "$/hour",
              "tier 2's batch");
  const std::vector<std::vector<std::string>> firsts = {{"mobilenetv3_small_100"},
                                                        {"mobilenetv3_large_100"},
                                                        {"efficientnet_b0"},
                                                        {"mobilenetv3_large_100", "efficientnet_b0"},
                                                        {"resnet50"}};
  for (const auto& first : firsts) {
    double first_macs = 0;
    std::string name;
    for (const std::string& m : first) {
      first_macs += macs(m);
      name += (name.empty() ? "" : "+") + m;
    }
    double batch = 0;
    auto at = [&](double d) -> StatusOr<std::array<double, 4>> {
      const double reach[] = {1.0, d};
      COE_ASSIGN_OR_RETURN(Serving s, ServeCascade(c, {first, {top}}, reach, at_rate));
      COE_ASSIGN_OR_RETURN(Serving full, ServeCascade(c, {first, {top}}, reach, batched));
      batch = s.tiers[1].batch;
      return std::array<double, 4>{macs(top) / (first_macs + d * macs(top)),
                                   alone_full.usd_per_example / full.usd_per_example,
                                   alone.usd_per_example / s.usd_per_example, alone.usd_per_hour / s.usd_per_hour};
    };
    for (double d : {0.05, 0.1, 0.2, 0.3, 0.5}) {
      COE_ASSIGN_OR_RETURN(auto s, at(d));
      std::printf("   %-38s %5.2f  %6.2fx  %8.2fx  %8.2fx  %8.2fx  %.4g\n", name.c_str(), d, s[0], s[1], s[2], s[3],
                  batch);
    }
    // The largest deferral share still 3x, in each unit (a scan: the bill is a step function).
    double most[4] = {-1, -1, -1, -1};
    for (int k = 0; k <= 1000; ++k) {
      COE_ASSIGN_OR_RETURN(auto s, at(k / 1000.0));
      for (int u = 0; u < 4; ++u)
        if (s[u] >= 3) most[u] = k / 1000.0;
    }
    auto show = [](double d) { return d < 0 ? std::string("never") : "d <= " + std::to_string(d).substr(0, 5); };
    std::printf("   %-38s 3x while: macs %s, $ batched %s, $/image %s, $/hour %s\n", name.c_str(),
                show(most[0]).c_str(), show(most[1]).c_str(), show(most[2]).c_str(), show(most[3]).c_str());
  }
  return Status::Ok();
}

// Part 3.
Status Proxy(const std::string& examples, Recordings calib, Recordings test, double qps) {
  const std::map<std::string, std::string> as = {
      {"linear", "mobilenetv3_small_100"},      {"mlp32", "mobilenetv3_large_100"},
      {"cnn_tiny", "efficientnet_b0"},          {"cnn8_16", "resnet50"},
      {"cnn_small", "convnext_tiny"},           {"cnn_medium", "vit_base_patch16_224"},
      {"resnet_small", "vit_large_patch16_224"}};
  COE_ASSIGN_OR_RETURN(ClusterSpec c, ReadCluster(examples + "/imagenet_ladder.toml"));
  COE_ASSIGN_OR_RETURN(Catalogue cat, ReadCatalogue(examples + "/imagenet_ladder.models.toml"));
  for (Recordings* r : {&calib, &test}) {
    std::erase_if(r->models, [&](const ModelRecord& m) { return !as.count(m.name); });
    for (ModelRecord& m : r->models) m.name = as.at(m.name);
  }
  std::printf(
      "\n3. PROXY: the zoo's answers as the ladder's models, priced on the ladder's public figures "
      "(not ImageNet accuracy)\n  ");
  for (const auto& [zoo, ladder] : as) std::printf(" %s=%s", zoo.c_str(), ladder.c_str());
  std::printf("\n");
  PlanHeader();
  for (double q : {qps / 10, qps, qps * 10}) COE_RETURN_IF_ERROR(PlanRow(calib, test, cat, c, q));
  return Status::Ok();
}

int Main(int argc, char** argv) {
  std::string work = (fs::temp_directory_path() / "coe_cluster_cost").string();
  std::vector<double> rates = {100, 1000, 10000, 100000, 1000000};
  double qps = 20000;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--work") {
      work = argv[i + 1];
    } else if (flag == "--rates") {
      rates = Numbers(argv[i + 1]);
    } else if (flag == "--qps") {
      qps = std::atof(argv[i + 1]);
    } else {
      std::fprintf(stderr, "cluster_cost: unknown flag '%s'\n", argv[i]);
      return 2;
    }
  }
  const std::string examples = ExampleDir();
  if (examples.empty()) {
    std::fprintf(stderr, "cluster_cost: run from the checkout or build/ (examples/cluster/ not found)\n");
    return 2;
  }
  fs::create_directories(work);
  Recordings calib, test;
  LabelSet labels;
  Status s = Zoo(work, examples, rates, &calib, &test, &labels);
  if (s.ok()) s = Ladder(examples, qps);
  if (s.ok()) s = Ladder(examples, qps * 12.5);
  if (s.ok()) s = Proxy(examples, calib, test, qps);
  if (!s.ok()) {
    std::fprintf(stderr, "cluster_cost: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Main(argc, argv); }
