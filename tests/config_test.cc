// Catalogue, cascade, cluster and link parsing.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "coe/cascade_spec.h"
#include "coe/catalogue.h"
#include "coe/cost_model.h"
#include "testing.h"

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
      {"[models.a]\nfoo = \"bar\"\n", "cat.toml:2:7: unknown key 'foo' in model 'a'"},
      {"[models.a]\nusd = \n", "cat.toml:2:"},
      {"x = 1\n", "unknown top-level key 'x'"},
      {"[defaults]\n", "no [models.NAME]"},
      {"[models.\"a|b\"]\nusd = 1\n", "invalid model name"},
      {"[models.a]\nresize = 0\n", "key 'resize': expected the shorter side's length in pixels"},
      {"[models.a]\nresize = \"256\"\n", "key 'resize': expected the shorter side's length in pixels"},
      {"[models.a]\ninput_shape = [3, 224, 224]\nresize = 200\n", "key 'resize': 200 needs an input_shape"},
      {"[models.a]\ninput_shape = [784]\nresize = 256\n", "key 'resize': 256 needs an input_shape"},
      {"[models.a]\nbackend = \"onnx\"\nnetworks = 0\n", "key 'networks': expected a number of networks, 1 to 1024"},
      {"[models.a]\nbackend = \"onednn\"\nnetworks = 2\n",
       "model 'a': key 'networks' is read by backend \"onnx\" only (this model's backend is \"onednn\""},
      {"[defaults]\nnetworks = 2\n[models.a]\nusd = 1\n",
       "model 'a': key 'networks' is read by backend \"onnx\" only (this model's backend is not set"},
  };
  for (auto& [text, want] : cases) {
    auto c = ParseCatalogue(text, "cat.toml", "");
    ASSERT_FALSE(c.ok()) << text;
    EXPECT_NE(c.status().message().find(want), std::string::npos)
        << "got: " << c.status().message() << "\nwanted: " << want;
  }
}

// A key that is no setting is refused, never taken for a cost figure: a typo of the
// price of input tokens billed them at $0.
TEST(Catalogue, UnknownKeysAreErrorsWithTheClosestKnownKey) {
  const std::pair<const char*, const char*> cases[] = {
      {"[models.x]\nbackend = \"openai\"\nusd_per_mtok_input = 0.2361\n",
       "cat.toml:3:22: unknown key 'usd_per_mtok_input' in model 'x': did you mean 'usd_per_mtok_in'?"},
      {"[models.x]\nmax_token = 64\n",
       "cat.toml:2:13: unknown key 'max_token' in model 'x': did you mean 'max_tokens'?"},
      {"[models.x]\ntemprature = 0.5\n", "unknown key 'temprature' in model 'x': did you mean 'temperature'?"},
      {"[models.x]\nlatency = 3\n", "unknown key 'latency' in model 'x': did you mean 'latency_ms'?"},
      {"[defaults]\nbakend = \"onnx\"\n[models.x]\nusd = 1\n",
       "cat.toml:2:10: unknown key 'bakend' in [defaults]: did you mean 'backend'?"},
      {"[models.x]\nenergy_j = 3\n",
       "unknown key 'energy_j' in model 'x': a cost figure other than usd, macs, flops, latency_ms, latency_us, "
       "params goes in the costs table: costs = { energy_j = ... }"},
      {"[models.x]\nusd = 1\ncosts = { usd = 2 }\n", "model 'x': cost figure 'usd' is given twice"},
      {"[models.x]\ncosts = { energy_j = -3 }\n",
       "cat.toml:2:22: model 'x': key 'costs.energy_j': a cost figure must be >= 0"},
      {"[models.x]\ncosts = { energy_j = \"lots\" }\n", "key 'costs.energy_j': expected a number"},
      {"[models.x]\ncosts = 3\n", "model 'x': 'costs' must be a table of cost figures"},
  };
  for (auto& [text, want] : cases) {
    auto c = ParseCatalogue(text, "cat.toml", "");
    ASSERT_FALSE(c.ok()) << text;
    EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(c.status().message().find(want), std::string::npos)
        << "got: " << c.status().message() << "\nwanted: " << want;
  }
  // Cost figures of other names live in the costs table (inline or as a table), also in
  // [defaults]; a model's own figure overrides the default's.
  auto c = ParseCatalogue(
      "[defaults]\ncosts = { energy_j = 1, co2_g = 2 }\n[models.x]\nusd = 1\ncosts = { energy_j = 3 }\n"
      "[models.y]\nflops = 5\n[models.y.costs]\n\"gpu seconds\" = 0.5\n",
      "cat.toml", "");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->Find("x")->costs, (std::map<std::string, double>{{"usd", 1}, {"energy_j", 3}, {"co2_g", 2}}));
  EXPECT_EQ(c->Find("y")->costs,
            (std::map<std::string, double>{{"flops", 5}, {"energy_j", 1}, {"co2_g", 2}, {"gpu seconds", 0.5}}));
}

// kCatalogueSettings is the list the reader dispatches on: each listed key is handled
// (a value of the wrong type is a type error, not an unknown key nor an abort).
TEST(Catalogue, EveryListedSettingIsHandled) {
  for (std::string_view key : kCatalogueSettings) {
    auto c = ParseCatalogue("[models.x]\n" + std::string(key) + " = true\n", "cat.toml", "");
    ASSERT_FALSE(c.ok()) << key;
    EXPECT_EQ(c.status().message().find("unknown key"), std::string::npos) << c.status().message();
    EXPECT_NE(c.status().message().find("'" + std::string(key) + "'"), std::string::npos) << c.status().message();
  }
}

// Every catalogue the repository ships or keeps as data (and the shared data sets')
// uses only known keys.
TEST(Catalogue, EveryCatalogueInTheRepositoryReads) {
  namespace fs = std::filesystem;
  const fs::path src = testing::SourceDir();
  std::vector<fs::path> files;
  for (const char* dir : {"models", "examples", "deploy", "bench", "tests", "fuzz/corpus/toml"})
    for (const auto& e : fs::recursive_directory_iterator(src / dir))
      if (e.path().extension() == ".toml") files.push_back(e.path());
  if (const char* shared = std::getenv("COE_SHARED_DATA"); shared && fs::is_directory(shared))
    for (const auto& e : fs::recursive_directory_iterator(shared))
      if (e.path().extension() == ".toml") files.push_back(e.path());
  int catalogues = 0;
  for (const fs::path& f : files) {
    const std::string text = testing::ReadFile(f.string());
    // A catalogue has [models.NAME] tables and no [gpus.TYPE] or [devices.TYPE] (a
    // cluster) or [[tiers]].
    if (text.find("[models.") == std::string::npos || text.find("[gpus.") != std::string::npos ||
        text.find("[devices.") != std::string::npos || text.find("[[tiers]]") != std::string::npos)
      continue;
    const std::string name = f.filename().string();
    auto c = ReadCatalogue(f.string());
    if (name.rfind("err_", 0) == 0 || name.rfind("ub_", 0) == 0 || name.find("overflow") != std::string::npos) {
      // ... and still reach what they were made for (but the one made for unknown keys).
      if (!c.ok() && name.find("unknown_key") == std::string::npos) {
        EXPECT_EQ(c.status().message().find("unknown key"), std::string::npos) << c.status().message();
      }
      continue;  // fuzz inputs made to fail on something else
    }
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    ++catalogues;
  }
  EXPECT_GE(catalogues, 4);  // the zoo's, the LLM example's, the sites and the fuzz seed
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
  // Unknown keys were ignored: a misspelt pin left the model unpinned.
  const std::pair<const char*, const char*> bad[] = {
      {"[gpus.a]\nusd_per_hour = 1\n[models.m]\nthroughput = { a = 1.0 }\npinned = \"a\"\n",
       "cl.toml:5:10: unknown key 'pinned' in models.m: did you mean 'pin'?"},
      {"[gpus.a]\nusd_per_hour = 1\nmemory_gb = 80\n[models.m]\nthroughput = { a = 1.0 }\n",
       "cl.toml:3:13: unknown key 'memory_gb' in gpus.a (expected usd_per_hour)"},
      {"gpu = 1\n[gpus.a]\nusd_per_hour = 1\n[models.m]\nthroughput = { a = 1.0 }\n",
       "cl.toml:1:7: unknown key 'gpu' in the cluster file: did you mean 'gpus'?"},
      {"[gpus.a]\nusd_per_hour = 1\n[models.m]\nthroughput = { a = 1.0 }\npin = 1\n",
       "models.m: pin must be a device type's name"},
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

namespace coe {
namespace {

TEST(Catalogue, ToTomlReadsBackToTheSameModels) {
  const std::string text =
      "[defaults]\nbackend = \"onnx\"\ninput_shape = [1, 28, 28]\nlabels = [\"a\", \"b \\\"q\\\"\"]\n"
      "[models.small]\npath = \"/m/small.onnx\"\nmacs = 100\nusd = 1.5e-7\nscale = 0.5\nmean = 0.25\nstd = 2\n"
      "description = \"line one\"\ncosts = { energy_j = 3, \"gpu seconds\" = 0.5 }\nlatency_us = 2.5\nnetworks = 3\n"
      "[models.chat]\nbackend = \"openai\"\nurl = \"http://h:2/v1\"\nmodel = \"llama\"\napi_key_env = \"K\"\n"
      "system = \"s\"\nprompt = \"{question}\"\nanswer = \"number\"\nmax_tokens = 9\ntemperature = 0.5\n"
      "max_concurrency = 3\nusd_per_mtok_in = 0.2361\nusd_per_mtok_out = 0.5\nwire = \"json\"\nhedge_url = "
      "\"http://h:3\"\n"
      "hedge_ms = 20\nfallbacks = [\"http://h:4\", \"https://h5/v1\"]\n"
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
    EXPECT_EQ(x.networks, y.networks);
    EXPECT_EQ(x.timeout_ms, y.timeout_ms);
    EXPECT_EQ(x.retries, y.retries);
    EXPECT_EQ(x.max_response_mb, y.max_response_mb);
    EXPECT_EQ(x.wire, y.wire);
    EXPECT_EQ(x.hedge_url, y.hedge_url);
    EXPECT_EQ(x.hedge_ms, y.hedge_ms);
    EXPECT_EQ(x.model, y.model);
    EXPECT_EQ(x.api_key_env, y.api_key_env);
    EXPECT_EQ(x.system, y.system);
    EXPECT_EQ(x.prompt, y.prompt);
    EXPECT_EQ(x.answer, y.answer);
    EXPECT_EQ(x.max_tokens, y.max_tokens);
    EXPECT_EQ(x.temperature, y.temperature);
    EXPECT_EQ(x.max_concurrency, y.max_concurrency);
    EXPECT_EQ(x.usd_per_mtok_in, y.usd_per_mtok_in);
    EXPECT_EQ(x.usd_per_mtok_out, y.usd_per_mtok_out);
    EXPECT_EQ(x.fallbacks, y.fallbacks);
  }
  EXPECT_EQ(b->Find("chat")->fallbacks, (std::vector<std::string>{"http://h:4", "https://h5/v1"}));
  EXPECT_EQ(a->Find("small")->costs.at("gpu seconds"), 0.5);
  EXPECT_EQ(a->Find("small")->networks, 3);
  EXPECT_NE(written.find("costs = { energy_j = 3.0, \"gpu seconds\" = 0.5 }"), std::string::npos) << written;
  EXPECT_EQ(CatalogueToToml(*b, {"a comment\nwith a second line"}), written);  // a fixed point
  EXPECT_EQ(written.rfind("# a comment\n# with a second line\n", 0), 0u) << written;
}

}  // namespace
}  // namespace coe
