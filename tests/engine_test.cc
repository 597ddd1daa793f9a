// The live engine: real ONNX models, the recorded backend, fault injection, bad input.
#include <gtest/gtest.h>
#include <sched.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "base/cores.h"
#include "coe/cascade.h"
#include "coe/dataset.h"
#include "coe/record.h"
#include "fault_backends.h"
#include "testing.h"

namespace coe {
namespace {

namespace fs = std::filesystem;

const std::string kZoo = testing::ZooDir();
const std::string kData = testing::SourceDir() + "/tests/data/";
const char* kFashion = "/usr/share/datasets/fashion-mnist/";
const char* kLabels =
    "labels = [\"tshirt\", \"trouser\", \"pullover\", \"dress\", \"coat\", \"sandal\", \"shirt\", "
    "\"sneaker\", \"bag\", \"boot\"]\n";

std::string Write(const fs::path& p, const std::string& text) {
  std::ofstream(p) << text;
  return p.string();
}

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("coe_engine_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  Catalogue ZooCatalogue(const std::string& extra = "") {
    std::string text = std::string("[defaults]\nbackend = \"onnx\"\ninput_shape = [1, 28, 28]\n") + kLabels +
                       "scale = 0.00392156862745098\nmean = 0.2860\nstd = 0.3530\n"
                       "[models.linear]\npath = \"" +
                       kZoo +
                       "linear.onnx\"\nmacs = 7840\n"
                       "[models.mlp256x2]\npath = \"" +
                       kZoo +
                       "mlp256x2.onnx\"\nmacs = 235000\n"
                       "[models.cnn8_16]\npath = \"" +
                       kZoo + "cnn8_16.onnx\"\nmacs = 290000\n" + extra;
    auto c = ParseCatalogue(text, "zoo.toml", "");
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return *c;
  }

  InputBatch TestImages(int64_t n) {
    DatasetOptions o;
    o.expected_shape = {1, 28, 28};
    o.end = n;
    o.labels_path = std::string(kFashion) + "t10k-labels-idx1-ubyte.gz";
    o.label_names = {"tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"};
    auto b = LoadDataset(std::string(kFashion) + "t10k-images-idx3-ubyte.gz", o);
    EXPECT_TRUE(b.ok()) << b.status().ToString();
    return *b;
  }

  fs::path dir_;
};

CascadeSpec TwoTier() {
  CascadeSpec s;
  s.tiers.push_back(TierSpec{{"linear", "mlp256x2"}, DeferralRule{1.0, std::nullopt}});
  s.tiers.push_back(TierSpec{{"cnn8_16"}, {}});
  return s;
}

TEST_F(EngineTest, RunsRealModelsAndDefersOnlyDisagreements) {
  Catalogue cat = ZooCatalogue();
  EngineOptions eo;
  eo.threads = 2;
  eo.chunk = 64;
  auto c = Cascade::Create(TwoTier(), cat, eo);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  InputBatch in = TestImages(500);
  auto r = (*c)->Run(in);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  int correct = 0;
  for (int i = 0; i < 500; ++i) {
    ASSERT_NE(r->answer[i], kAbstain);
    correct += (*c)->labels().name(r->answer[i]) == in.truth[i];
    // Tier 1 exits exactly when both agree; tier 2 costs are added on top.
    if (r->exit_tier[i] == 0) {
      EXPECT_EQ(r->vote[i].votes, 2);
      EXPECT_DOUBLE_EQ(r->cost[i], 7840 + 235000);
    } else {
      EXPECT_DOUBLE_EQ(r->cost[i], 7840 + 235000 + 290000);
    }
    EXPECT_EQ(r->degraded[i], 0);
  }
  EXPECT_GT(correct, 400);  // the zoo's small models are ~85-90% accurate
  EXPECT_EQ(r->tiers[0].reached, 500);
  EXPECT_EQ(r->tiers[1].reached, 500 - r->tiers[0].exited);
  EXPECT_GT(r->tiers[0].exited, 350);
  // The same batch in other chunk sizes and thread counts gives the same answers.
  eo.threads = 1;
  eo.chunk = 7;
  auto c2 = Cascade::Create(TwoTier(), cat, eo);
  ASSERT_TRUE(c2.ok());
  auto r2 = (*c2)->Run(in);
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ(r2->answer, r->answer);
  EXPECT_EQ(r2->exit_tier, r->exit_tier);
  // A view of some of the examples (no copy) answers them as the whole batch did, and
  // as a copy of them does, probabilities included.
  RunOptions probs{.want_probs = true};
  auto whole = (*c)->Run(in, probs);
  ASSERT_TRUE(whole.ok());
  for (auto [b, e] : std::vector<std::pair<int, int>>{{0, 500}, {123, 389}, {499, 500}}) {
    auto v = (*c)->Run(in.View(b, e), probs);
    auto copy = (*c)->Run(in.Slice(b, e), probs);
    ASSERT_TRUE(v.ok() && copy.ok()) << v.status().ToString();
    ASSERT_EQ(v->answer.size(), static_cast<size_t>(e - b));
    EXPECT_EQ(v->answer, copy->answer);
    EXPECT_EQ(v->exit_tier, copy->exit_tier);
    EXPECT_EQ(v->cost, copy->cost);
    EXPECT_EQ(v->probs, copy->probs);
    EXPECT_EQ(v->answer, std::vector<int>(whole->answer.begin() + b, whole->answer.begin() + e));
    EXPECT_EQ(v->probs, std::vector<std::vector<float>>(whole->probs.begin() + b, whole->probs.begin() + e));
  }
}

// A run stopped at a tier (RunOptions::max_tiers, a request's cost ceiling in coe
// serve) goes no further: that tier decides every example as a last tier does (a tie
// to the member listed last) and only the tiers reached are paid. A stop at or past the
// last tier is no stop. Before any call, a cascade of models that do not measure their
// cost estimates each tier at its members' catalogue figures.
TEST_F(EngineTest, ARunStoppedAtATierDecidesThereAsTheLastDoes) {
  Catalogue cat = ZooCatalogue();
  auto c = Cascade::Create(TwoTier(), cat, EngineOptions{.threads = 2});
  CascadeSpec mlp;
  mlp.tiers.push_back(TierSpec{{"mlp256x2"}, {}});
  auto last_listed = Cascade::Create(mlp, cat, EngineOptions{.threads = 2});
  ASSERT_TRUE(c.ok() && last_listed.ok());
  InputBatch in = TestImages(300);
  auto all = (*c)->Run(in);
  auto stopped = (*c)->Run(in, RunOptions{.max_tiers = 1});
  auto mlp_alone = (*last_listed)->Run(in);
  ASSERT_TRUE(all.ok() && stopped.ok() && mlp_alone.ok());
  int disagreed = 0;
  for (int i = 0; i < 300; ++i) {
    EXPECT_EQ(stopped->exit_tier[i], 0);
    EXPECT_DOUBLE_EQ(stopped->cost[i], 7840 + 235000);
    if (all->exit_tier[i] == 0) {
      EXPECT_EQ(stopped->answer[i], all->answer[i]);
    } else {  // the two disagreed: mlp256x2, listed last, wins the tie
      ++disagreed;
      EXPECT_EQ(stopped->vote[i].votes, 1);
      EXPECT_EQ(stopped->labels.name(stopped->answer[i]), mlp_alone->labels.name(mlp_alone->answer[i]));
    }
  }
  EXPECT_GT(disagreed, 10);
  EXPECT_EQ(stopped->tiers[1].reached, 0);
  for (int past : {2, 9}) {
    auto r = (*c)->Run(in, RunOptions{.max_tiers = past});
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->answer, all->answer);
    EXPECT_EQ(r->exit_tier, all->exit_tier);
  }
  EXPECT_EQ((*c)->EstimateTierCosts(in.View(), 0), (std::vector<double>{7840 + 235000, 290000}));
}

// A run started at a tier (RunOptions::first_tier, coe serve's shadow run of the last
// tier) gives every example to that tier: the answers of that tier alone, only it
// paid, the earlier tiers not reached. A start past the tiers run is refused.
TEST_F(EngineTest, ARunStartedAtATierIsThatTierAlone) {
  Catalogue cat = ZooCatalogue();
  auto c = Cascade::Create(TwoTier(), cat, EngineOptions{.threads = 2});
  CascadeSpec cnn;
  cnn.tiers.push_back(TierSpec{{"cnn8_16"}, {}});
  auto alone = Cascade::Create(cnn, cat, EngineOptions{.threads = 2});
  ASSERT_TRUE(c.ok() && alone.ok());
  InputBatch in = TestImages(200);
  auto last = (*c)->Run(in, RunOptions{.first_tier = 1});
  auto expected = (*alone)->Run(in);
  ASSERT_TRUE(last.ok() && expected.ok()) << last.status().ToString();
  for (int i = 0; i < 200; ++i) {
    EXPECT_EQ(last->exit_tier[i], 1);
    EXPECT_EQ(last->labels.name(last->answer[i]), expected->labels.name(expected->answer[i]));
    EXPECT_EQ(last->cost[i], expected->cost[i]);
  }
  EXPECT_EQ(last->tiers[0].reached, 0);
  EXPECT_EQ(last->tiers[1].reached, 200);
  EXPECT_EQ((*c)->Run(in, RunOptions{.first_tier = 2}).status().message(),
            "first_tier 2 is not among the 2 tiers the run goes through");
  EXPECT_EQ((*c)->Run(in, RunOptions{.max_tiers = 1, .first_tier = 1}).status().code(), StatusCode::kInvalidArgument);
}

// RunInBatches joins its calls into what one Run gives, whatever their sizes: at most
// `batch` examples a call, the first min(batch, kFirstBatch), each next as large as the
// last or twice as large (calls under kGrowBelow grow; which do depends on the machine,
// so only that pattern is checked).
TEST_F(EngineTest, BatchesJoinIntoOneRun) {
  Catalogue cat = ZooCatalogue();
  const int64_t n = 10000;
  InputBatch in = TestImages(n);
  auto c = Cascade::Create(TwoTier(), cat, EngineOptions{});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  auto whole = (*c)->Run(in);
  ASSERT_TRUE(whole.ok());
  for (int batch : {1000, 2048, 5000, 32768}) {
    std::vector<int64_t> done;
    auto r = RunInBatches(**c, in, batch, {}, [&](int64_t d, int64_t total) {
      EXPECT_EQ(total, n);
      done.push_back(d);
    });
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->answer, whole->answer) << batch;
    EXPECT_EQ(r->exit_tier, whole->exit_tier) << batch;
    EXPECT_EQ(r->cost, whole->cost) << batch;
    EXPECT_EQ(r->degraded, whole->degraded) << batch;
    ASSERT_EQ(r->tiers.size(), whole->tiers.size());
    for (size_t t = 0; t < r->tiers.size(); ++t) {
      EXPECT_EQ(r->tiers[t].reached, whole->tiers[t].reached) << batch << " tier " << t;
      EXPECT_EQ(r->tiers[t].exited, whole->tiers[t].exited) << batch << " tier " << t;
      // Every call's cost joins in (the zoo's costs are whole multiply-adds: exact sums).
      EXPECT_EQ(r->tiers[t].cost, whole->tiers[t].cost) << batch << " tier " << t;
    }
    ASSERT_FALSE(done.empty());
    EXPECT_EQ(done.back(), n);
    int64_t prev = 0, last = 0;
    for (int64_t d : done) {
      const int64_t size = d - prev;
      EXPECT_LE(size, batch);
      if (prev == 0)
        EXPECT_EQ(size, std::min<int64_t>({batch, kFirstBatch, n})) << batch;
      else if (d < n)
        EXPECT_TRUE(size == last || size == std::min<int64_t>(batch, 2 * last)) << batch << ": " << size;
      else
        EXPECT_LE(size, std::min<int64_t>(batch, 2 * last)) << batch;
      last = size;
      prev = d;
    }
  }
}

// An IDX file reads the same examples whichever way it is stored: gzip of one member
// (decompressed whole by libdeflate), two members or plain (streamed by zlib); a corrupt
// gzip file is an error naming it, on either path.
TEST_F(EngineTest, IdxFilesReadAlikeEveryWayTheyAreStored) {
  const std::string gz = std::string(kFashion) + "t10k-images-idx3-ubyte.gz";
  std::string raw;
  {
    gzFile f = gzopen(gz.c_str(), "rb");
    ASSERT_NE(f, nullptr);
    char buf[1 << 16];
    for (int n; (n = gzread(f, buf, sizeof buf)) > 0;) raw.append(buf, n);
    gzclose(f);
  }
  ASSERT_EQ(raw.size(), 16u + 10000u * 784u);
  auto write_gz = [&](const fs::path& p, const std::vector<std::pair<size_t, size_t>>& members) {
    std::ofstream out(p, std::ios::binary);
    for (auto [from, n] : members) {  // each member a gzip stream of its own
      const fs::path part = dir_ / "part.gz";
      gzFile f = gzopen(part.c_str(), "wb1");
      gzwrite(f, raw.data() + from, static_cast<unsigned>(n));
      gzclose(f);
      std::ifstream in(part, std::ios::binary);
      out << in.rdbuf();
    }
    return p.string();
  };
  const std::string two = write_gz(dir_ / "two-idx3-ubyte.gz", {{0, 1000000}, {1000000, raw.size() - 1000000}});
  const std::string plain = Write(dir_ / "plain-idx3-ubyte", raw);
  DatasetOptions o;
  o.expected_shape = {1, 28, 28};
  o.begin = 17;
  o.end = 9000;
  auto a = LoadDataset(gz, o), b = LoadDataset(two, o), c = LoadDataset(plain, o);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok()) << a.status().ToString() << b.status().ToString() << c.status().ToString();
  ASSERT_EQ(a->size(), 9000 - 17);
  EXPECT_EQ(a->data, b->data);
  EXPECT_EQ(a->data, c->data);
  for (int64_t i = 0; i < 784; ++i)
    ASSERT_EQ(a->data[i], static_cast<float>(static_cast<unsigned char>(raw[16 + 17 * 784 + i])));
  // One byte of the compressed data changed: libdeflate refuses it, zlib names it.
  std::string bytes;
  {
    std::ifstream in(gz, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  bytes[bytes.size() / 2] ^= 0x5a;
  const std::string bad = Write(dir_ / "bad-idx3-ubyte.gz", bytes);
  auto d = LoadDataset(bad, o);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("bad-idx3-ubyte.gz"), std::string::npos) << d.status().message();
}

TEST_F(EngineTest, WrongInputShapeIsAnError) {
  auto c = Cascade::Create(TwoTier(), ZooCatalogue(), EngineOptions{});
  ASSERT_TRUE(c.ok());
  InputBatch bad;
  bad.example_shape = {1, 32, 32};
  bad.data.assign(2 * 32 * 32, 0.0f);
  auto r = (*c)->Run(bad);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("[1, 32, 32]"), std::string::npos) << r.status().message();
  DatasetOptions o;
  o.expected_shape = {1, 32, 32};
  auto d = LoadDataset(std::string(kFashion) + "t10k-images-idx3-ubyte.gz", o);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("1x28x28"), std::string::npos) << d.status().message();
}

TEST_F(EngineTest, BadModelFilesAreClearErrors) {
  auto missing =
      Cascade::Create(TwoTier(), ZooCatalogue("[models.x]\npath = \"/nope/x.onnx\"\nmacs = 1\n"), EngineOptions{});
  ASSERT_TRUE(missing.ok());  // x is not a member
  CascadeSpec with_x;
  with_x.tiers.push_back(TierSpec{{"x"}, {}});
  auto m = Cascade::Create(with_x, ZooCatalogue("[models.x]\npath = \"/nope/x.onnx\"\nmacs = 1\n"), EngineOptions{});
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), StatusCode::kNotFound);
  EXPECT_NE(m.status().message().find("/nope/x.onnx"), std::string::npos);

  const std::string corrupt = Write(dir_ / "corrupt.onnx", "this is not a protobuf \x01\x02\x03");
  auto cc =
      Cascade::Create(with_x, ZooCatalogue("[models.x]\npath = \"" + corrupt + "\"\nmacs = 1\n"), EngineOptions{});
  ASSERT_FALSE(cc.ok());
  EXPECT_EQ(cc.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(cc.status().message().find("corrupt.onnx"), std::string::npos) << cc.status().message();

  auto seven = Cascade::Create(with_x, ZooCatalogue("[models.x]\npath = \"" + kData + "seven_class.onnx\"\nmacs = 1\n"),
                               EngineOptions{});
  ASSERT_FALSE(seven.ok());
  EXPECT_NE(seven.status().message().find("outputs 7 classes but the catalogue lists 10 labels"), std::string::npos)
      << seven.status().message();
}

TEST_F(EngineTest, NanOutputIsAnAbstention) {
  Catalogue cat = ZooCatalogue("[models.nan]\npath = \"" + kData + "nan_model.onnx\"\nmacs = 1\n");
  CascadeSpec s;
  s.tiers.push_back(TierSpec{{"nan", "linear"}, DeferralRule{1.0, std::nullopt}});
  s.tiers.push_back(TierSpec{{"mlp256x2"}, {}});
  auto c = Cascade::Create(s, cat, EngineOptions{});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  auto r = (*c)->Run(TestImages(50));
  ASSERT_TRUE(r.ok());
  for (int i = 0; i < 50; ++i) {
    EXPECT_EQ(r->exit_tier[i], 1);  // the NaN member never agrees: every example defers
    EXPECT_NE(r->answer[i], kAbstain);
  }
  CascadeSpec alone;
  alone.tiers.push_back(TierSpec{{"nan"}, {}});
  auto a = Cascade::Create(alone, cat, EngineOptions{});
  ASSERT_TRUE(a.ok());
  auto ra = (*a)->Run(TestImages(5));
  ASSERT_TRUE(ra.ok());
  // A non-finite output is the model's answer, unreadable: an abstention, not a failed
  // call (backend.h). The example is unanswered, but nothing failed: not degraded, and
  // no failure is listed (a failure would be retried by coe record, forever).
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(ra->answer[i], kAbstain);
    EXPECT_EQ(ra->degraded[i], 0);
  }
  EXPECT_TRUE(ra->failures.empty());
  auto direct = CreateBackend(*cat.Find("nan"), BackendOptions{});
  ASSERT_TRUE(direct.ok());
  std::vector<Prediction> got;
  ASSERT_TRUE((*direct)->Predict(TestImages(3).View(), &got).ok());
  for (const Prediction& p : got) {
    EXPECT_FALSE(p.failed);
    EXPECT_EQ(p.error, "non-finite output");
  }
}

TEST_F(EngineTest, UnreadableImagesAreErrors) {
  Write(dir_ / "bad.png", "not a png at all");
  DatasetOptions o;
  o.expected_shape = {1, 28, 28};
  auto no_loader = LoadDataset((dir_ / "bad.png").string(), o);
  EXPECT_EQ(no_loader.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(no_loader.status().message().find("OpenCvImageLoader"), std::string::npos);
  o.image_loader = *OpenCvImageLoader();
  auto r = LoadDataset((dir_ / "bad.png").string(), o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("bad.png"), std::string::npos) << r.status().message();
  auto missing = LoadDataset((dir_ / "none.png").string(), o);
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  Write(dir_ / "trunc.idx", std::string("\0\0\x08\x03\0\0\0\x05\0\0\0\x1c\0\0\0\x1c", 16) + "short");
  auto t = LoadDataset((dir_ / "trunc.idx").string(), o);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("truncated"), std::string::npos) << t.status().message();
}

using testing::FaultyBackend;

TEST_F(EngineTest, FailuresAreAbstentionsAndDegradeToEarlierAnswers) {
  Catalogue cat = ZooCatalogue();
  auto make = [&](const std::string& name) {
    auto b = CreateBackend(*cat.Find(name), BackendOptions{});
    EXPECT_TRUE(b.ok());
    return std::move(*b);
  };
  InputBatch in = TestImages(200);
  CascadeSpec s = TwoTier();
  // Default threads and chunking: answers must not depend on them, so the runs below
  // differ only by the injected faults.
  const EngineOptions defaults;
  // Reference without faults.
  std::vector<std::unique_ptr<Backend>> ok;
  for (auto n : {"linear", "mlp256x2", "cnn8_16"}) ok.push_back(make(n));
  auto ref = Cascade::FromBackends(s, std::move(ok), {1, 2, 3}, defaults);
  ASSERT_TRUE(ref.ok());
  auto rr = (*ref)->Run(in);
  ASSERT_TRUE(rr.ok());
  // The last tier is dead (abstains on everything) or broken (answers nothing with an
  // error status): deferred examples fall back to tier 1's plurality, degraded.
  for (auto mode : {FaultyBackend::Mode::kDead, FaultyBackend::Mode::kBroken}) {
    std::vector<std::unique_ptr<Backend>> dead;
    dead.push_back(make("linear"));
    dead.push_back(make("mlp256x2"));
    dead.push_back(std::make_unique<FaultyBackend>(make("cnn8_16"), mode));
    auto dc = Cascade::FromBackends(s, std::move(dead), {1, 2, 3}, defaults);
    ASSERT_TRUE(dc.ok());
    auto dr = (*dc)->Run(in);
    ASSERT_TRUE(dr.ok());
    int degraded = 0;
    for (int i = 0; i < 200; ++i) {
      if (rr->exit_tier[i] == 0) {
        EXPECT_EQ(dr->answer[i], rr->answer[i]);
        EXPECT_EQ(dr->degraded[i], 0);
      } else {
        EXPECT_EQ(dr->degraded[i], 1);
        EXPECT_NE(dr->answer[i], kAbstain);  // tier 1 had a plurality (the last-listed voter)
        EXPECT_DOUBLE_EQ(dr->cost[i], 6);    // the dead tier is still paid
        ++degraded;
      }
    }
    EXPECT_GT(degraded, 0);
    // Every failed call is listed, by example, with its cause: the examples that reached
    // the dead tier, member 2 (a broken backend's status becomes every example's failure).
    std::vector<MemberFailure> want;
    for (int i = 0; i < 200; ++i)
      if (rr->exit_tier[i] == 1)
        want.push_back(MemberFailure{
            i, 2, mode == FaultyBackend::Mode::kDead ? "injected: dead backend" : "injected: broken backend",
            mode == FaultyBackend::Mode::kDead ? "connect" : "input"});
    EXPECT_EQ(dr->failures, want);
    // The same when the run is cut into calls: the examples' indices are the batch's.
    auto joined = RunInBatches(**dc, in, 64);
    ASSERT_TRUE(joined.ok());
    EXPECT_EQ(joined->failures, want);
  }
  // A member failing on odd ids has no answer there: tier 1 cannot be unanimous on them.
  std::vector<std::unique_ptr<Backend>> flaky;
  flaky.push_back(std::make_unique<FaultyBackend>(make("linear"), FaultyBackend::Mode::kFailOdd));
  flaky.push_back(make("mlp256x2"));
  flaky.push_back(make("cnn8_16"));
  auto fc = Cascade::FromBackends(s, std::move(flaky), {1, 2, 3}, defaults);
  ASSERT_TRUE(fc.ok());
  auto fr = (*fc)->Run(in);
  ASSERT_TRUE(fr.ok());
  // On odd ids tier 2 answers alone: its answer is cnn8_16's own.
  CascadeSpec last_only;
  last_only.tiers.push_back(TierSpec{{"cnn8_16"}, {}});
  std::vector<std::unique_ptr<Backend>> last;
  last.push_back(make("cnn8_16"));
  auto lc = Cascade::FromBackends(last_only, std::move(last), {3}, defaults);
  ASSERT_TRUE(lc.ok());
  auto lr = (*lc)->Run(in);
  ASSERT_TRUE(lr.ok());
  int odd = 0;
  for (int i = 0; i < 200; ++i) {
    if ((in.ids[i].back() - '0') % 2 == 1) {
      EXPECT_EQ(fr->exit_tier[i], 1);
      EXPECT_EQ(fr->answer[i], lr->answer[i]);
      EXPECT_DOUBLE_EQ(fr->cost[i], 6);
      ++odd;
    } else {
      EXPECT_EQ(fr->answer[i], rr->answer[i]);
      EXPECT_EQ(fr->exit_tier[i], rr->exit_tier[i]);
    }
    EXPECT_EQ(fr->degraded[i], 0);  // tier 2 answered: the failure forced no fallback
  }
  EXPECT_EQ(odd, 100);
  ASSERT_EQ(fr->failures.size(), 100u);  // listed all the same
  for (const MemberFailure& f : fr->failures) {
    EXPECT_EQ((in.ids[f.example].back() - '0') % 2, 1);
    EXPECT_EQ(f.member, 0);
    EXPECT_EQ(f.error, "injected failure");
  }
}

// The default thread counts follow the cores this process may use (taskset, a
// cpuset, a container's CPU quota), not the machine's.
TEST(Cores, TheAffinityMaskBoundsTheCores) {
  const int all = AvailableCores();
  EXPECT_GE(all, 1);
  EXPECT_LE(all, static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  cpu_set_t saved;
  ASSERT_EQ(sched_getaffinity(0, sizeof saved, &saved), 0);
  int first = 0;
  while (first < CPU_SETSIZE && !CPU_ISSET(first, &saved)) ++first;
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(first, &one);
  ASSERT_EQ(sched_setaffinity(0, sizeof one, &one), 0);
  EXPECT_EQ(AvailableCores(), 1);
  ASSERT_EQ(sched_setaffinity(0, sizeof saved, &saved), 0);
  EXPECT_EQ(AvailableCores(), all);
}

}  // namespace
}  // namespace coe
