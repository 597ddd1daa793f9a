// The cluster file, version 2 (issue 26): device types, throughput by batch size.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "coe/catalogue.h"
#include "coe/cost_model.h"
#include "coe/recordings.h"

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

}  // namespace
}  // namespace coe
