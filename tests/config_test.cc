// Catalogue, cascade, cluster and link parsing.
#include <gtest/gtest.h>

#include "coe/cascade_spec.h"
#include "coe/catalogue.h"
#include "coe/cost_model.h"

namespace coe {
namespace {

TEST(Catalogue, DefaultsAndCosts) {
  auto c = ParseCatalogue(R"(
[defaults]
backend = "onnx"
input_shape = [1, 28, 28]
scale = 0.5
[models.a]
path = "a.onnx"
macs = 100
usd = 0.5
[models.b]
path = "/abs/b.onnx"
macs = 1000
site = "cloud"
)",
                          "cat.toml", "zoo");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_EQ(c->models.size(), 2u);
  const ModelSpec* a = c->Find("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->path, "zoo/a.onnx");
  EXPECT_EQ(a->backend, "onnx");
  EXPECT_EQ(*a->Cost("macs"), 100);
  EXPECT_EQ(a->Cost("scale"), nullptr);  // a setting, not a cost
  EXPECT_EQ(a->input_bytes, 4 * 28 * 28);
  EXPECT_EQ(c->Find("b")->path, "/abs/b.onnx");
  EXPECT_TRUE(c->Find("b")->is_cloud());
}

TEST(Catalogue, BadInput) {
  const std::pair<const char*, const char*> cases[] = {
      {"[models.a]\nusd = -1\n", "cat.toml:2:7: model 'a': key 'usd': a cost figure must be >= 0"},
      {"[models.a]\nsite = \"moon\"\n", "expected \"edge\" or \"cloud\""},
      {"[models.a]\nusd = nan\n", "finite"},
      {"[models.a]\ninput_shape = [1, -2]\n", "positive integers"},
      {"[models.a]\nfoo = \"bar\"\n", "unknown setting"},
      {"[models.a]\nusd = \n", "cat.toml:2:"},
      {"x = 1\n", "unknown top-level key 'x'"},
      {"[defaults]\n", "no [models.NAME]"},
      {"[models.\"a|b\"]\nusd = 1\n", "invalid model name"},
  };
  for (auto& [text, want] : cases) {
    auto c = ParseCatalogue(text, "cat.toml", "");
    ASSERT_FALSE(c.ok()) << text;
    EXPECT_NE(c.status().message().find(want), std::string::npos)
        << "got: " << c.status().message() << "\nwanted: " << want;
  }
}

TEST(Cascade, RoundTrip) {
  CascadeSpec s;
  s.name = "demo";
  s.tiers.push_back(TierSpec{{"a", "b", "c"}, DeferralRule{2.0 / 3, 0.123456789012345}});
  s.tiers.push_back(TierSpec{{"d"}, DeferralRule{std::nullopt, 0.9}});
  s.tiers.push_back(TierSpec{{"e"}, {}});
  std::string text = CascadeToToml(s, {"a comment"});
  auto back = ParseCascade(text, "c.toml");
  ASSERT_TRUE(back.ok()) << back.status().ToString() << "\n" << text;
  EXPECT_EQ(back->name, "demo");
  ASSERT_EQ(back->tiers.size(), 3u);
  EXPECT_EQ(back->tiers[0].members, s.tiers[0].members);
  EXPECT_EQ(*back->tiers[0].rule.min_agreement, 2.0 / 3);  // bit-exact
  EXPECT_EQ(*back->tiers[0].rule.min_score, 0.123456789012345);
  EXPECT_FALSE(back->tiers[1].rule.min_agreement.has_value());
  EXPECT_TRUE(back->tiers[2].rule.empty());
}

TEST(Cascade, BadInput) {
  const std::pair<const char*, const char*> cases[] = {
      {"[[tiers]]\nmembers = [\"a\"]\n[[tiers]]\nmembers = [\"b\"]\n", "tier 1 is not the last tier but has no rule"},
      {"[[tiers]]\nmembers = []\n", "tier 1 has no members"},
      {"[[tiers]]\nmembers = [\"a\"]\nmin_agreement = 1.0\n[[tiers]]\nmembers = [\"a\"]\n", "appears twice"},
      {"[[tiers]]\nmembers = [\"a\", \"b\"]\nmin_agreement = 1.5\n[[tiers]]\nmembers = [\"c\"]\n", "outside (0, 1]"},
      {"[[tiers]]\nmembers = \"a\"\n", "must be an array of strings"},
      {"[[tiers]]\nmembers = [\"a\"]\nthreshold = 2\n", "unknown key 'threshold'"},
      {"name = \"x\"\n", "no [[tiers]]"},
      {"[[tiers]\n", "c.toml:1:"},
  };
  for (auto& [text, want] : cases) {
    auto c = ParseCascade(text, "c.toml");
    ASSERT_FALSE(c.ok()) << text;
    EXPECT_NE(c.status().message().find(want), std::string::npos)
        << "got: " << c.status().message() << "\nwanted: " << want;
  }
}

TEST(Link, Parse) {
  auto l = LinkSpec::Parse("bandwidth=20Mbit,rtt=40ms");
  ASSERT_TRUE(l.ok());
  EXPECT_DOUBLE_EQ(l->bandwidth_bits_per_s, 20e6);
  EXPECT_DOUBLE_EQ(l->rtt_ms, 40);
  EXPECT_FALSE(LinkSpec::Parse("bandwidth=20Mbit").ok());
  EXPECT_FALSE(LinkSpec::Parse("bandwidth=fast,rtt=1ms").ok());
  EXPECT_FALSE(LinkSpec::Parse("bandwidth=0,rtt=1ms").ok());
}

TEST(Cluster, CheapestTypeAndHomogeneous) {
  auto c = ParseCluster(R"(
[gpus.big]
usd_per_hour = 4.0
[gpus.small]
usd_per_hour = 0.5
[models.a]
throughput = { big = 1000.0, small = 500.0 }
[models.b]
throughput = { big = 100.0, small = 5.0 }
pin = "big"
)",
                        "cl.toml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  auto cat = ParseCatalogue("[models.a]\nusd=1\n[models.b]\nusd=2\n", "cat", "");
  LabelSet labels;
  auto rec = ParseRecordings("id,label,a,b\n1,x,x,x\n", "r.csv", &labels, nullptr);
  ASSERT_TRUE(cat.ok() && rec.ok());
  CostOptions opt;
  opt.cluster = *c;
  auto t = BuildCostTable(*rec, *cat, opt);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_DOUBLE_EQ(t->fixed[0], 0.5 / (3600 * 500));  // small is cheaper per example
  EXPECT_DOUBLE_EQ(t->fixed[1], 4.0 / (3600 * 100));  // pinned to big
  EXPECT_EQ(t->homogeneous_gpu, "big");
  EXPECT_DOUBLE_EQ(t->homogeneous[0], 4.0 / (3600 * 1000));
  EXPECT_FALSE(ParseCluster("[gpus.a]\nusd_per_hour = 1\n[models.m]\nthroughput = { b = 1.0 }\n", "x").ok());
}

}  // namespace
}  // namespace coe

namespace coe {
namespace {

TEST(Catalogue, ToTomlReadsBackToTheSameModels) {
  const std::string text =
      "[defaults]\nbackend = \"onnx\"\ninput_shape = [1, 28, 28]\nlabels = [\"a\", \"b \\\"q\\\"\"]\n"
      "[models.small]\npath = \"/m/small.onnx\"\nmacs = 100\nusd = 1.5e-7\nscale = 0.5\nmean = 0.25\nstd = 2\n"
      "description = \"line one\"\n"
      "[models.\"big model\"]\nbackend = \"remote\"\nurl = \"http://h:1/v2\"\nremote_model = \"b\"\nsite = \"cloud\"\n"
      "timeout_ms = 250\nretries = 4\nmax_response_mb = 3\ninput_bytes = 99\nflops = 2e12\n";
  auto a = ParseCatalogue(text, "a.toml", "");
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  const std::string written = CatalogueToToml(*a, {"a comment\nwith a second line"});
  auto b = ParseCatalogue(written, "b.toml", "");
  ASSERT_TRUE(b.ok()) << b.status().ToString() << "\n" << written;
  ASSERT_EQ(a->models.size(), b->models.size());
  for (size_t m = 0; m < a->models.size(); ++m) {
    const ModelSpec &x = a->models[m], &y = b->models[m];
    EXPECT_EQ(x.name, y.name);
    EXPECT_EQ(x.costs, y.costs);
    EXPECT_EQ(x.site, y.site);
    EXPECT_EQ(x.backend, y.backend);
    EXPECT_EQ(x.path, y.path);
    EXPECT_EQ(x.url, y.url);
    EXPECT_EQ(x.remote_model, y.remote_model);
    EXPECT_EQ(x.description, y.description);
    EXPECT_EQ(x.input_shape, y.input_shape);
    EXPECT_EQ(x.input_bytes, y.input_bytes);
    EXPECT_EQ(x.labels, y.labels);
    EXPECT_EQ(x.scale, y.scale);
    EXPECT_EQ(x.mean, y.mean);
    EXPECT_EQ(x.std, y.std);
    EXPECT_EQ(x.timeout_ms, y.timeout_ms);
    EXPECT_EQ(x.retries, y.retries);
    EXPECT_EQ(x.max_response_mb, y.max_response_mb);
  }
  EXPECT_EQ(written.rfind("# a comment\n# with a second line\n", 0), 0u) << written;
}

}  // namespace
}  // namespace coe
