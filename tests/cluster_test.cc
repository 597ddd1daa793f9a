// The cluster file, version 2 (issue 26): device types, throughput by batch size.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "coe/catalogue.h"
#include "coe/cost_model.h"
#include "coe/evaluate.h"
#include "coe/planner.h"
#include "coe/recordings.h"
#include "coe/report.h"
#include "testing.h"

namespace coe {
namespace {

constexpr const char* kV2 = R"(
max_delay_ms = 20
[devices.gpu]
usd_per_hour = 2.0
kind = "gpu"
memory_gb = 24
[devices.cpu]
usd_per_hour = 0.2
kind = "cpu"
cores = 8
[models.small.throughput]
gpu = { 1 = 40.0, 8 = 200.0, 64 = 800.0 }
cpu = { 1 = 10.0 }
[models.big.throughput]
gpu = { 4 = 20.0, 32 = 100.0 }
)";

StatusOr<CostTable> Table(const ClusterSpec& c) {
  auto cat = ParseCatalogue("[models.small]\nmacs=1\n[models.big]\nmacs=2\n", "cat", "");
  LabelSet labels;
  auto rec = ParseRecordings("id,label,small,big\n1,x,x,x\n", "r.csv", &labels, nullptr);
  if (!cat.ok() || !rec.ok()) return InternalError("fixture");
  CostOptions opt;
  opt.cluster = c;
  return BuildCostTable(*rec, *cat, opt);
}

TEST(ClusterV2, DevicesAndThroughputTables) {
  auto c = ParseCluster(kV2, "cl.toml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->max_delay_ms, 20);
  EXPECT_FALSE(c->devices.at("gpu").cpu);
  EXPECT_EQ(c->devices.at("gpu").memory_gb, 24);
  EXPECT_TRUE(c->devices.at("cpu").cpu);
  EXPECT_EQ(c->devices.at("cpu").cores, 8);
  const ThroughputCurve& s = c->models.at("small").throughput.at("gpu");
  EXPECT_DOUBLE_EQ(s.At(1), 40);
  EXPECT_DOUBLE_EQ(s.At(8), 200);
  EXPECT_DOUBLE_EQ(s.At(4.5), 40 + (200 - 40) * 3.5 / 7);  // linear between given batches
  EXPECT_DOUBLE_EQ(s.At(36), 200 + (800 - 200) * 28.0 / 56);
  EXPECT_DOUBLE_EQ(s.At(500), 800);  // flat beyond the largest
  const ThroughputCurve& b = c->models.at("big").throughput.at("gpu");
  EXPECT_DOUBLE_EQ(b.At(2), 2.0 / 4 * 20);  // below the smallest: batch / b0 * t(b0)
  // The planning figure: each model on its cheapest type at its table's best throughput;
  // big cannot run on the cpu, which is not an error.
  auto t = Table(*c);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_DOUBLE_EQ(t->fixed[0], std::min(2.0 / (3600 * 800), 0.2 / (3600 * 10)));
  EXPECT_DOUBLE_EQ(t->fixed[1], 2.0 / (3600 * 100));
}

// A model with no throughput on the dearest type used to fail the whole run ("needed
// for the homogeneous-cluster figure"); now it cannot run there, and the dearest-type
// figure is left out.
TEST(ClusterV2, AModelMissingATypeIsNotAnError) {
  auto c = ParseCluster(
      "[gpus.big]\nusd_per_hour = 4.0\n[gpus.small]\nusd_per_hour = 0.5\n"
      "[models.small]\nthroughput = { big = 1000.0, small = 500.0 }\n"
      "[models.big]\nthroughput = { small = 5.0 }\n",
      "cl.toml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  auto t = Table(*c);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_DOUBLE_EQ(t->fixed[1], 0.5 / (3600 * 5));
  EXPECT_TRUE(t->homogeneous.empty());
}

// The example's two forms describe one cluster: version 1 still reads, and gives the
// same planning figures as version 2's tables at their best batch.
TEST(ClusterV2, TheExampleReadsInBothForms) {
  auto v1 = ReadCluster(coe::testing::SourceDir() + "/examples/routerbench/cluster.toml");
  auto v2 = ReadCluster(coe::testing::SourceDir() + "/examples/routerbench/cluster_v2.toml");
  ASSERT_TRUE(v1.ok()) << v1.status().ToString();
  ASSERT_TRUE(v2.ok()) << v2.status().ToString();
  ASSERT_EQ(v1->devices.size(), v2->devices.size());
  for (const auto& [type, d] : v1->devices) EXPECT_EQ(d.usd_per_hour, v2->devices.at(type).usd_per_hour) << type;
  ASSERT_EQ(v1->models.size(), v2->models.size());
  for (const auto& [name, m] : v1->models) {
    ASSERT_EQ(m.throughput.size(), v2->models.at(name).throughput.size()) << name;
    for (const auto& [type, curve] : m.throughput) {
      ASSERT_EQ(curve.points.size(), 1u);
      EXPECT_EQ(curve.At(1), curve.At(1000)) << "a version-1 figure holds at every batch";
      EXPECT_EQ(curve.Peak(), v2->models.at(name).throughput.at(type).Peak()) << name << " on " << type;
    }
  }
}

TEST(ClusterV2, EveryKeyChecked) {
  const std::string dev = "[devices.a100]\nusd_per_hour = 1\n";
  const std::string model = "[models.m.throughput]\na100 = { 1 = 5.0 }\n";
  const std::pair<std::string, const char*> bad[] = {
      {"[devices.a100]\nusd_per_hour = 1\nkidn = \"gpu\"\n" + model,
       "cl.toml:3:8: unknown key 'kidn' in devices.a100: did you mean 'kind'?"},
      {"[devices.a100]\nusd_per_hour = 1\nkind = \"tpu\"\n" + model,
       "cl.toml:3:8: devices.a100.kind: expected \"gpu\" or \"cpu\""},
      {"[devices.c]\nusd_per_hour = 1\nkind = \"cpu\"\n" + dev + model, "devices.c: a cpu device needs cores"},
      {dev + "cores = 4\n" + model, "devices.a100: cores is for kind = \"cpu\" devices"},
      {"[devices.a100]\nusd_per_hour = 0\n" + model, "devices.a100: expected usd_per_hour = a positive number"},
      {"[devices.a100]\nusd_per_hourr = 1\n" + model, "did you mean 'usd_per_hour'?"},
      {dev + "[models.m.throughput]\na100 = { 0 = 5.0 }\n", "models.m.throughput.a100: batch '0'"},
      {dev + "[models.m.throughput]\na100 = { x = 5.0 }\n", "models.m.throughput.a100: batch 'x'"},
      {dev + "[models.m.throughput]\na100 = { 2 = -1.0 }\n", "models.m.throughput.a100 at batch 2: expected"},
      {dev + "[models.m.throughput]\na100 = {}\n", "models.m.throughput.a100: expected a positive number"},
      {dev + "[models.m.throughput]\na10 = 3.0\n",
       "cl.toml:4:7: models.m.throughput: unknown device type 'a10': did you mean 'a100'?"},
      {dev + "[gpus.b]\nusd_per_hour = 1\n" + model, "both [gpus.TYPE] (version 1) and [devices.TYPE]"},
      {"max_delay = 5\n" + dev + model, "unknown key 'max_delay' in the cluster file: did you mean 'max_delay_ms'?"},
      {"max_delay_ms = 0\n" + dev + model, "cl.toml:1:16: expected max_delay_ms = a positive number"},
      {dev + "[models.m]\nthroughput = { a100 = { 1 = 5.0 } }\npin = \"b\"\n", "pinned to 'b'"},
  };
  for (auto& [text, want] : bad) {
    auto b = ParseCluster(text, "cl.toml");
    ASSERT_FALSE(b.ok()) << text;
    EXPECT_NE(b.status().message().find(want), std::string::npos)
        << "got: " << b.status().message() << "\nwanted: " << want;
  }
}

// Provisioned: one model at Q examples/s on whole devices of its cheapest type at the
// batch its batcher fills (Q x max_delay_ms / 1000 = 20): ceil(Q / (t(20) x 0.7))
// devices times the price; per example: the table's interpolation at that batch.
TEST(ClusterServing, OneModelProvisionedAndPerExample) {
  auto c = ParseCluster(kV2, "cl.toml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  const double q = 1000, t20 = 200 + (800 - 200) * (20.0 - 8) / (64 - 8);
  const double reach[] = {1.0};
  auto s = ServeCascade(*c, {{"small"}}, reach, ServingOptions{.qps = q, .utilisation = 0.7});
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  ASSERT_EQ(s->tiers.size(), 1u);
  const TierServing& t = s->tiers[0];
  EXPECT_DOUBLE_EQ(t.batch, 20);
  EXPECT_EQ(t.type, "gpu");  // 5 gpus at $2 beat 143 cpus at $0.2
  EXPECT_EQ(t.devices, static_cast<int>(std::ceil(q / (t20 * 0.7))));
  EXPECT_EQ(t.devices, 5);
  EXPECT_DOUBLE_EQ(s->usd_per_hour, 5 * 2.0);
  EXPECT_DOUBLE_EQ(s->usd_per_example, 2.0 / (3600 * t20));
  // At 10 examples/s the batcher fills no batch: batch 1, where the cpu is cheaper per
  // example (0.2 / 10 < 2 / 40) and one cpu (10 / (10 x 0.7) -> 2 devices, $0.4/h)
  // beats one gpu ($2/h).
  auto slow = ServeCascade(*c, {{"small"}}, reach, ServingOptions{.qps = 10, .utilisation = 0.7});
  ASSERT_TRUE(slow.ok());
  EXPECT_DOUBLE_EQ(slow->tiers[0].batch, 1);
  EXPECT_DOUBLE_EQ(slow->usd_per_example, 0.2 / (3600 * 10));
  EXPECT_EQ(slow->tiers[0].type, "cpu");
  EXPECT_EQ(slow->tiers[0].devices, 2);
  EXPECT_DOUBLE_EQ(slow->usd_per_hour, 2 * 0.2);
  // On a named type: the gpu, whatever is cheaper.
  auto on_gpu = ServeCascade(*c, {{"small"}}, reach, ServingOptions{.qps = 10, .utilisation = 0.7}, "gpu");
  ASSERT_TRUE(on_gpu.ok());
  EXPECT_EQ(on_gpu->tiers[0].devices, 1);
  EXPECT_DOUBLE_EQ(on_gpu->usd_per_example, 2.0 / (3600 * 40));
}

// examples/cluster/: the public ladder and the measured zoo read, and the README's
// figures of the ladder hold (the span in multiply-adds and in dollars per image).
TEST(ClusterV2, TheClusterExamplesRead) {
  const std::string dir = coe::testing::SourceDir() + "/examples/cluster/";
  auto ladder = ReadCluster(dir + "imagenet_ladder.toml");
  ASSERT_TRUE(ladder.ok()) << ladder.status().ToString();
  auto cat = ReadCatalogue(dir + "imagenet_ladder.models.toml");
  ASSERT_TRUE(cat.ok()) << cat.status().ToString();
  EXPECT_EQ(ladder->devices.size(), 4u);
  ASSERT_EQ(ladder->models.size(), 7u);
  double lo = 1e300, hi = 0, lo_macs = 1e300, hi_macs = 0;
  for (const auto& [name, m] : ladder->models) {
    EXPECT_EQ(m.throughput.size(), 4u) << name;
    ASSERT_NE(cat->Find(name), nullptr) << name;
    double best = 1e300;
    for (const auto& [type, curve] : m.throughput)
      best = std::min(best, ladder->devices.at(type).usd_per_hour / (3600 * curve.Peak()));
    lo = std::min(lo, best);
    hi = std::max(hi, best);
    lo_macs = std::min(lo_macs, *cat->Find(name)->Cost("macs"));
    hi_macs = std::max(hi_macs, *cat->Find(name)->Cost("macs"));
  }
  EXPECT_NEAR(hi_macs / lo_macs, 1027, 1);
  EXPECT_NEAR(hi / lo, 51, 0.5);
  auto zoo = ReadCluster(dir + "zoo_cpu.toml");
  ASSERT_TRUE(zoo.ok()) << zoo.status().ToString();
  auto zoo_cat = ReadCatalogue(coe::testing::ZooDir() + "catalogue.toml");
  ASSERT_TRUE(zoo_cat.ok());
  EXPECT_TRUE(zoo->devices.at("this_cpu").cpu);
  for (const ModelSpec& m : zoo_cat->models)
    EXPECT_EQ(zoo->models.at(m.name).throughput.at("this_cpu").points.size(), 5u);
}

// [transfer] usd_per_gb: an example's input is paid for once, at the first tier with a
// cloud member, the same in EvaluateCascade and in the planner's search (exact).
TEST(ClusterTransfer, PaidOnceAtTheFirstCloudTier) {
  auto c = ParseCluster(std::string(kV2) + "[models.mid.throughput]\ngpu = { 1 = 30.0, 64 = 300.0 }\n" +
                            "[transfer]\nusd_per_gb = 0.09\n",
                        "cl.toml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_DOUBLE_EQ(c->transfer_usd_per_gb, 0.09);
  auto cat = ParseCatalogue(
      "[models.small]\nmacs=1\n[models.mid]\nmacs=3\nsite=\"cloud\"\ninput_bytes=1e6\n"
      "[models.big]\nmacs=9\nsite=\"cloud\"\ninput_bytes=2e6\n",
      "cat", "");
  ASSERT_TRUE(cat.ok()) << cat.status().ToString();
  std::string csv = "id,label,small,mid,big\n";
  for (int i = 0; i < 240; ++i) {
    const std::string t(1, "xyz"[i % 3]), other(1, "xyz"[(i + 1) % 3]), third(1, "xyz"[(i + 2) % 3]);
    csv += std::to_string(i) + "," + t + "," + (i % 4 == 0 ? other : t) + "," + (i % 7 == 0 ? third : t) + "," +
           (i % 23 == 0 ? other : t) + "\n";
  }
  LabelSet labels;
  auto rec = ParseRecordings(csv, "r.csv", &labels, nullptr);
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();
  CostOptions opt;
  opt.cluster = *c;
  auto costs = BuildCostTable(*rec, *cat, opt);
  ASSERT_TRUE(costs.ok()) << costs.status().ToString();
  const double per_byte = 0.09 / 1e9;
  // small (edge) -> mid (cloud) -> big (cloud): the input goes once, as mid's 1 MB.
  CascadeSpec spec;
  spec.tiers = {TierSpec{{"small"}, {}}, TierSpec{{"mid"}, {}}, TierSpec{{"big"}, {}}};
  spec.tiers[0].rule.min_agreement = spec.tiers[1].rule.min_agreement = 1.0;
  std::vector<ExampleOutcome> outs;
  auto r = EvaluateCascade(spec, *rec, *costs, &outs);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  // One-member tiers always exit: every example ends at tier 1 and pays no transfer.
  EXPECT_EQ(r->exits[0], 240);
  EXPECT_DOUBLE_EQ(r->mean_transfer_cost.value_or(-1), 0);
  spec.tiers = {TierSpec{{"small", "mid"}, {}}, TierSpec{{"big"}, {}}};
  spec.tiers[0].rule.min_agreement = 1.0;
  r = EvaluateCascade(spec, *rec, *costs, &outs);
  ASSERT_TRUE(r.ok());
  // Tier 1 has a cloud member: every example pays mid's transfer once, none big's.
  EXPECT_NEAR(*r->mean_transfer_cost, 1e6 * per_byte, 1e-18);
  for (const ExampleOutcome& o : outs) EXPECT_NEAR(o.transfer_cost, 1e6 * per_byte, 1e-18);
  // The planner's costs are EvaluateCascade's on every frontier point, transfer included.
  PlannerOptions po;
  auto plan = Plan(*rec, *costs, Goal{}, po);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  bool any_transfer = false;
  for (const OperatingPoint& p : plan->frontier) {
    auto e = EvaluateCascade(p.cascade, *rec, *costs);
    ASSERT_TRUE(e.ok());
    EXPECT_NEAR(p.cost, e->mean_cost, 1e-12 * e->mean_cost) << p.cascade.ToString();
    any_transfer |= e->mean_transfer_cost.value_or(0) > 0;
  }
  EXPECT_TRUE(any_transfer);
  // A cloud model without an input size cannot be priced: refused, naming it.
  auto no_size = ParseCatalogue("[models.small]\nmacs=1\n[models.mid]\nmacs=3\nsite=\"cloud\"\n[models.big]\nmacs=9\n",
                                "cat2", "");
  ASSERT_TRUE(no_size.ok());
  auto refused = BuildCostTable(*rec, *no_size, opt);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("cloud model 'mid' no input size"), std::string::npos)
      << refused.status().message();
  // The price is checked.
  for (const char* bad : {"[transfer]\nusd_per_gb = -1\n", "[transfer]\nusd_per_gbb = 1\n", "transfer = 3\n"}) {
    auto b = ParseCluster(std::string(kV2) + bad, "cl.toml");
    EXPECT_FALSE(b.ok()) << bad;
  }
}

// A later tier sees only the share that reaches it, in smaller batches.
TEST(ClusterServing, LaterTiersSeeTheirShare) {
  auto c = ParseCluster(kV2, "cl.toml");
  ASSERT_TRUE(c.ok());
  const double reach[] = {1.0, 0.25};
  auto s = ServeCascade(*c, {{"small"}, {"big"}}, reach, ServingOptions{.qps = 1000, .utilisation = 0.5});
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  const TierServing& t2 = s->tiers[1];
  EXPECT_DOUBLE_EQ(t2.rate, 250);
  EXPECT_DOUBLE_EQ(t2.batch, 5);
  const double big5 = 20 + (100 - 20) * (5.0 - 4) / (32 - 4);
  EXPECT_EQ(t2.devices, static_cast<int>(std::ceil(250 / (big5 * 0.5))));
  EXPECT_DOUBLE_EQ(t2.usd_per_example, 2.0 / (3600 * big5));
  EXPECT_DOUBLE_EQ(s->usd_per_example, s->tiers[0].usd_per_example + 0.25 * t2.usd_per_example);
  EXPECT_DOUBLE_EQ(s->usd_per_hour, s->tiers[0].usd_per_hour + t2.usd_per_hour);
  // big cannot run on the cpu: a named type it lacks is refused, naming it.
  auto cpu = ServeCascade(*c, {{"small"}, {"big"}}, reach, ServingOptions{.qps = 1000, .utilisation = 0.5}, "cpu");
  ASSERT_FALSE(cpu.ok());
  EXPECT_NE(cpu.status().message().find("model 'big' cannot run on device type 'cpu'"), std::string::npos)
      << cpu.status().message();
}

// coe plan --cluster --qps: plans on dollars per example, and every report names the
// traffic rate and the baseline type, with both views; the JSON reads back.
TEST(ClusterServing, PlanReportsBothViews) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("coe_cluster_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir / name) << text;
    return (dir / name).string();
  };
  std::string csv = "id,label,small,big\n";
  for (int i = 0; i < 200; ++i) {
    const std::string t(1, "xy"[i % 2]), other(1, "xy"[(i + 1) % 2]);
    csv += std::to_string(i) + "," + t + "," + (i % 5 == 0 ? other : t) + "," + (i % 17 == 0 ? other : t) + "\n";
  }
  const std::string r = write("r.csv", csv), cat = write("cat.toml", "[models.small]\nmacs=1\n[models.big]\nmacs=9\n");
  const std::string cl = write("cl.toml", kV2);
  const std::string base = "plan --calib " + r + " --test " + r + " --models " + cat + " --cluster " + cl;
  const std::string args = base + " --qps 1000 --baseline-type gpu";
  auto json = coe::testing::RunCoe(args + " --json", /*with_stderr=*/false);
  ASSERT_EQ(json.code, 0) << json.out;
  const nlohmann::json doc = nlohmann::json::parse(json.out);
  EXPECT_NE(doc["cost"].get<std::string>().find("usd per example on cluster"), std::string::npos);
  // Planned on dollars: never dearer per example than the best model alone.
  EXPECT_LE(doc["chosen"]["calib"]["cost"].get<double>(), doc["best_single_cost"].get<double>());
  ASSERT_TRUE(doc.contains("cluster"));
  EXPECT_EQ(doc["cluster"]["qps"], 1000);
  EXPECT_EQ(doc["cluster"]["baseline_type"], "gpu");
  EXPECT_EQ(doc["cluster"]["utilisation"], 0.7);
  EXPECT_GT(doc["cluster"]["chosen"]["usd_per_hour"].get<double>(), 0);
  EXPECT_GT(doc["cluster"]["best"]["usd_per_example"].get<double>(), 0);
  // The catalogue has macs: the report says what a plan on them would have chosen.
  ASSERT_TRUE(doc.contains("other_cost_plan")) << json.out;
  EXPECT_EQ(doc["other_cost_plan"]["key"], "macs");
  EXPECT_GT(doc["other_cost_plan"]["saving"].get<double>(), 0);
  auto html = RenderHtmlReport({"plan.json", json.out}, {});
  ASSERT_TRUE(html.ok()) << html.status().ToString();
  for (const char* want : {"Dollars on the cluster", "CLUSTER COST at 1000 examples/s", "PLANNED ON macs INSTEAD"})
    EXPECT_NE(html->find(want), std::string::npos) << want;
  auto read = PlanReportFromJson(json.out, "plan.json");
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(PlanReportToJson(*read), json.out);
  auto text = coe::testing::RunCoe(args, /*with_stderr=*/false);
  ASSERT_EQ(text.code, 0) << text.out;
  for (const char* want : {"CLUSTER COST at 1000 examples/s", "70% utilisation", "per example: chosen $",
                           "provisioned: chosen $", "baseline type gpu: ", "alone on its cheapest type"})
    EXPECT_NE(text.out.find(want), std::string::npos) << want << "\n" << text.out;
  // Flags checked.
  auto typo = coe::testing::RunCoe(base + " --qps 1000 --baseline-type gpux");
  EXPECT_NE(typo.code, 0);
  EXPECT_NE(typo.out.find("--baseline-type: 'gpux' is not a device type of " + cl + ": did you mean 'gpu'?"),
            std::string::npos)
      << typo.out;
  // coe eval prices a cascade at the rate too: big alone at 1000/s fills batches of 20
  // (max_delay_ms 20): ceil(1000 / (throughput(20) x 0.7)) gpus.
  const std::string big = write("big.toml", "[[tiers]]\nmembers = [\"big\"]\n");
  auto eval = coe::testing::RunCoe(
      "eval --cascade " + big + " --data " + r + " --models " + cat + " --cluster " + cl + " --qps 1000 --json",
      /*with_stderr=*/false);
  ASSERT_EQ(eval.code, 0) << eval.out;
  const nlohmann::json e = nlohmann::json::parse(eval.out);
  ASSERT_TRUE(e.contains("serving")) << eval.out;
  const double big20 = 20 + (100 - 20) * (20.0 - 4) / (32 - 4);
  EXPECT_EQ(e["serving"]["cascade"]["tiers"][0]["devices"], static_cast<int>(std::ceil(1000 / (big20 * 0.7))));
  EXPECT_DOUBLE_EQ(e["serving"]["cascade"]["usd_per_hour"].get<double>(), std::ceil(1000 / (big20 * 0.7)) * 2.0);
  EXPECT_EQ(e["serving"]["qps"], 1000);
  auto eval_text = coe::testing::RunCoe("eval --cascade " + big + " --data " + r + " --models " + cat + " --cluster " +
                                        cl + " --qps 1000 --baseline-type cpu");
  ASSERT_EQ(eval_text.code, 0) << eval_text.out;
  EXPECT_NE(eval_text.out.find("served   at 1000 examples/s"), std::string::npos) << eval_text.out;
  EXPECT_NE(eval_text.out.find("on cpu: model 'big' cannot run on device type 'cpu'"), std::string::npos)
      << eval_text.out;
  // A rate of 0 is not "no rate": refused, as is a utilisation with no rate to price.
  auto zero = coe::testing::RunCoe(base + " --qps 0");
  EXPECT_NE(zero.code, 0);
  EXPECT_NE(zero.out.find("--qps: expected the traffic rate"), std::string::npos) << zero.out;
  auto no_rate = coe::testing::RunCoe(base + " --utilisation 0.5");
  EXPECT_NE(no_rate.code, 0);
  EXPECT_NE(no_rate.out.find("give --qps"), std::string::npos) << no_rate.out;
  auto no_cluster = coe::testing::RunCoe("plan --calib " + r + " --models " + cat + " --qps 10");
  EXPECT_NE(no_cluster.code, 0);
  EXPECT_NE(no_cluster.out.find("need --cluster FILE"), std::string::npos) << no_cluster.out;
  fs::remove_all(dir);
}

// Planned with --qps, the chosen cascade is never dearer provisioned than the best
// single model alone: at 1 example/s the two-tier cascade needs a cpu and a gpu where
// big alone needs one gpu, so big is the plan; at 1000/s the cascade saves.
TEST(ClusterServing, NeverDearerOnTheBillThanTheBestAlone) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("coe_cluster_bill_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir / name) << text;
    return (dir / name).string();
  };
  std::string csv = "id,label,small,big,mid\n";
  for (int i = 0; i < 300; ++i) {
    // small and mid are wrong with different answers: when they agree they are right.
    const std::string t(1, "xyz"[i % 3]), other(1, "xyz"[(i + 1) % 3]), third(1, "xyz"[(i + 2) % 3]);
    csv += std::to_string(i) + "," + t + "," + (i % 4 == 0 ? other : t) + "," + (i % 23 == 0 ? other : t) + "," +
           (i % 7 == 0 ? third : t) + "\n";
  }
  const std::string r = write("r.csv", csv);
  const std::string cat = write("cat.toml", "[models.small]\nmacs=1\n[models.big]\nmacs=9\n[models.mid]\nmacs=3\n");
  const std::string cl =
      write("cl.toml", std::string(kV2) + "[models.mid.throughput]\ngpu = { 1 = 30.0, 64 = 300.0 }\n");
  int replaced = 0, kept = 0;
  for (double q : {0.5, 1.0, 10.0, 100.0, 1000.0, 1e5}) {
    auto run = coe::testing::RunCoe("plan --calib " + r + " --test " + r + " --models " + cat + " --cluster " + cl +
                                        " --qps " + std::to_string(q) + " --json",
                                    /*with_stderr=*/false);
    ASSERT_EQ(run.code, 0) << run.out;
    const nlohmann::json doc = nlohmann::json::parse(run.out);
    const nlohmann::json& v = doc["cluster"];
    EXPECT_LE(v["chosen"]["usd_per_hour"].get<double>(), v["best"]["usd_per_hour"].get<double>()) << "qps " << q;
    if (v.contains("replaced")) {
      ++replaced;
      EXPECT_EQ(doc["chosen"]["cascade"], "{big}") << "qps " << q;
      bool warned = false;
      for (const auto& w : doc["warnings"])
        warned |= w.get<std::string>().find("the plan is big alone") != std::string::npos;
      EXPECT_TRUE(warned) << run.out;
    } else if (doc["chosen"]["cascade"] != "{big}") {
      ++kept;
    }
  }
  EXPECT_GT(replaced, 0);  // low rates: whole devices round the cascade's bill up
  EXPECT_GT(kept, 0);      // high rates: the cascade is the cheaper bill
  fs::remove_all(dir);
}

// coe record --throughput-batches measures each model at those batch sizes and writes a
// cluster file whose device has no price until the user gives it one.
TEST(ClusterRecord, ThroughputByBatchBecomesAClusterFile) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("coe_cluster_rec_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string f = "/usr/share/datasets/fashion-mnist/";
  const std::string out = (dir / "r.csv").string();
  auto run = coe::testing::RunCoe(
      "record --models " + coe::testing::ZooDir() + "catalogue.toml --only linear,mlp32 --data " + f +
          "t10k-images-idx3-ubyte.gz --range 0:100 --out " + out + " --throughput-batches 1,16,128 --device box --json",
      /*with_stderr=*/false);
  ASSERT_EQ(run.code, 0) << run.out;
  const nlohmann::json doc = nlohmann::json::parse(run.out);
  const std::string file = (dir / "r.throughput.toml").string();
  EXPECT_EQ(doc["throughput_file"], file);
  const std::string text = coe::testing::ReadFile(file);
  auto unpriced = ParseCluster(text, file);
  ASSERT_FALSE(unpriced.ok());
  EXPECT_NE(unpriced.status().message().find("usd_per_hour"), std::string::npos) << unpriced.status().message();
  std::string priced = text;
  priced.replace(priced.find("cores = "), 0, "usd_per_hour = 0.1\n");
  auto c = ParseCluster(priced, file);
  ASSERT_TRUE(c.ok()) << c.status().ToString() << "\n" << priced;
  ASSERT_TRUE(c->devices.count("box"));
  EXPECT_TRUE(c->devices.at("box").cpu);
  for (const char* m : {"linear", "mlp32"}) {
    ASSERT_TRUE(doc["throughput"].contains(m)) << run.out;
    const auto& curve = c->models.at(m).throughput.at("box");
    for (int b : {1, 16, 128}) {
      const double measured = doc["throughput"][m][std::to_string(b)].get<double>();
      EXPECT_GT(measured, 0);
      EXPECT_NEAR(curve.At(b), measured, 1e-5 * measured) << m << " batch " << b;  // the file keeps 6 digits
    }
  }
  auto bad = coe::testing::RunCoe("record --models " + coe::testing::ZooDir() + "catalogue.toml --only linear --data " +
                                  f + "t10k-images-idx3-ubyte.gz --range 0:10 --out " + out +
                                  " --throughput-batches 1 --device 'a b'");
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.out.find("--device: 'a b'"), std::string::npos) << bad.out;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace coe
