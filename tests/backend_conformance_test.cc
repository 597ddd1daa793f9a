// One conformance suite for every backend (as ggml's test-backend-ops): onnx and
// onednn (several zoo models), recorded, remote over loopback, and the fault-injecting wrappers all
// pass the same checks of the backend.h contract:
//  - the same labels and bit-identical probabilities whatever the batch size (1, 7,
//    256, 2048), the number of nets/threads the backend was made for (1, 2, 8), the
//    chunking (random chunk sizes), over 20 repetitions, and with 8 concurrent callers;
//  - a batch of the wrong shape is an error status, and every example abstains;
//  - a failing example abstains with `error` set and leaves the others untouched;
//  - statistics add up to what the callers saw.
// The reference is made in calls of 100 examples (a batch size none of the checks
// uses) on a backend made for one thread.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <thread>

#include "backends/registry.h"
#include "coe/backend.h"
#include "coe/dataset.h"
#include "coe/recordings.h"
#include "coe/server.h"
#include "fault_backends.h"
#include "testing.h"

namespace coe {
namespace {

namespace fs = std::filesystem;
using testing::FaultyBackend;

constexpr int kExamples = 2048;
const char* const kLabelsToml =
    "labels = [\"tshirt\", \"trouser\", \"pullover\", \"dress\", \"coat\", \"sandal\", \"shirt\", "
    "\"sneaker\", \"bag\", \"boot\"]\n";

std::string ZooModelToml(const std::string& model, const std::string& backend = "onnx") {
  return std::string("[defaults]\ninput_shape = [1, 28, 28]\n") + kLabelsToml +
         "scale = 0.00392156862745098\nmean = 0.2860\nstd = 0.3530\n[models." + model + "]\nbackend = \"" + backend +
         "\"\npath = \"" + testing::ZooDir() + model + ".onnx\"\nmacs = 1\n";
}

ModelSpec SpecOf(const std::string& toml, const std::string& model) {
  auto c = ParseCatalogue(toml, "conformance.toml", "");
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return *c->Find(model);
}

std::unique_ptr<Backend> MakeOrDie(const ModelSpec& spec, int threads) {
  auto b = CreateBackend(spec, BackendOptions{.threads = threads});
  EXPECT_TRUE(b.ok()) << b.status().ToString();
  return b.ok() ? std::move(*b) : nullptr;
}

const InputBatch& Images() {
  static const InputBatch* images = [] {
    DatasetOptions o;
    o.expected_shape = {1, 28, 28};
    o.end = kExamples;
    auto b = LoadDataset("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz", o);
    EXPECT_TRUE(b.ok()) << b.status().ToString();
    return new InputBatch(std::move(*b));
  }();
  return *images;
}

// What is under test, and how much of the suite it can afford.
struct Subject {
  std::function<std::unique_ptr<Backend>(int threads)> make;
  std::vector<int> batch_sizes = {1, 7, 256, 2048};
  int examples = kExamples;    // examples in the batch-size check (batch 1: at most 64)
  int chunked_examples = 256;  // examples in the threads/chunking checks
  // Makes example `i` of `b` one the backend must abstain on; false if it has none.
  std::function<bool(InputBatch& b, int i)> spoil;
  // The spoiled example has no answer at all (a failure), rather than an unreadable one
  // (an abstention): a recorded backend has no recording of an unknown id.
  bool spoil_fails = false;
  // True when the backend abstains on example `i` of the clean batch.
  std::function<bool(const InputBatch& b, int i)> abstains = [](const InputBatch&, int) { return false; };
  bool errors_every_call = false;  // `errors` counts every call (a dead backend)
  // The product backend inside a fault-injecting wrapper, whose statistics must add up too.
  std::function<Backend*(Backend*)> inner = [](Backend*) -> Backend* { return nullptr; };
};

bool SpoilWithNan(InputBatch& b, int i) {
  const int64_t e = b.ExampleSize();
  for (int64_t k = 0; k < e; k += 97) b.data[i * e + k] = std::nanf("");
  return true;
}

bool OddId(const InputBatch& b, int i) { return (b.ids[i].back() - '0') % 2 == 1; }

// A server on loopback serving mlp32, for the remote backend; started once.
struct Loopback {
  std::unique_ptr<Server> server;
  Loopback() {
    CascadeSpec spec;
    spec.name = "cascade";
    spec.tiers.push_back(TierSpec{{"mlp32"}, {}});
    auto cat = ParseCatalogue(ZooModelToml("mlp32"), "loopback.toml", "");
    EXPECT_TRUE(cat.ok());
    ServerOptions o;
    o.log = [](const std::string&) {};
    auto s = Server::Create(spec, *cat, EngineOptions{}, o);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    server = std::move(*s);
    Status st = server->Start("127.0.0.1", 0);
    EXPECT_TRUE(st.ok()) << st.ToString();
  }
};

// Recordings of the zoo's linear model on the images, written once.
const std::string& RecordingsFile() {
  static const std::string* path = [] {
    auto onnx = MakeOrDie(SpecOf(ZooModelToml("linear"), "linear"), 1);
    std::vector<Prediction> got;
    EXPECT_TRUE(onnx->Predict(Images().View(), &got).ok());
    LabelSet labels;
    for (const std::string& l : onnx->info().labels) labels.Intern(l);
    Recordings rec;
    rec.ids = Images().ids;
    ModelRecord m;
    m.name = "linear";
    m.num_probs = labels.size();
    for (const Prediction& p : got) {
      m.label.push_back(p.label);
      m.probs.insert(m.probs.end(), p.probs.begin(), p.probs.end());
    }
    rec.models.push_back(std::move(m));
    auto* p = new std::string(
        (fs::temp_directory_path() / ("coe_conformance_" + std::to_string(::getpid()) + ".csv")).string());
    std::ofstream(*p) << RecordingsToCsv(rec, labels);
    return p;
  }();
  return *path;
}

Subject MakeSubject(const std::string& name) {
  Subject s;
  if (name.rfind("onnx_", 0) == 0 || name.rfind("onednn_", 0) == 0) {
    const size_t cut = name.find('_');
    const std::string model = name.substr(cut + 1);
    const ModelSpec spec = SpecOf(ZooModelToml(model, name.substr(0, cut)), model);
    s.make = [spec](int threads) { return MakeOrDie(spec, threads); };
    s.spoil = SpoilWithNan;
    if (model == "resnet_small") {  // 20M multiply-adds an image: a lighter load
      s.batch_sizes = {1, 256};
      s.examples = 256;
      s.chunked_examples = 32;
    }
  } else if (name == "recorded") {
    const ModelSpec spec =
        SpecOf(std::string("[defaults]\ninput_shape = [1, 28, 28]\n") + kLabelsToml +
                   "[models.linear]\nbackend = \"recorded\"\npath = \"" + RecordingsFile() + "\"\nmacs = 1\n",
               "linear");
    s.make = [spec](int threads) { return MakeOrDie(spec, threads); };
    s.spoil = [](InputBatch& b, int i) {
      b.ids[i] = "no-such-id";
      return true;
    };
    s.spoil_fails = true;
  } else if (name == "remote") {
    static Loopback* loopback = new Loopback();
    const ModelSpec spec = SpecOf(std::string("[defaults]\ninput_shape = [1, 28, 28]\n") + kLabelsToml +
                                      "[models.mlp32]\nbackend = \"remote\"\nurl = \"http://127.0.0.1:" +
                                      std::to_string(loopback->server->port()) + "\"\ntimeout_ms = 20000\nmacs = 1\n",
                                  "mlp32");
    s.make = [spec](int threads) { return MakeOrDie(spec, threads); };
    s.spoil = SpoilWithNan;
    s.examples = 1024;        // 64 single-example requests, then larger ones
    s.chunked_examples = 96;  // every chunk is a request with ~50 KB of JSON
  } else {
    const ModelSpec spec = SpecOf(ZooModelToml("mlp32"), "mlp32");
    const FaultyBackend::Mode mode = name == "slow"    ? FaultyBackend::Mode::kSlow
                                     : name == "flaky" ? FaultyBackend::Mode::kFailOdd
                                                       : FaultyBackend::Mode::kDead;
    s.make = [spec, mode](int threads) { return std::make_unique<FaultyBackend>(MakeOrDie(spec, threads), mode); };
    s.spoil = SpoilWithNan;
    if (mode == FaultyBackend::Mode::kFailOdd) s.abstains = OddId;
    if (mode == FaultyBackend::Mode::kDead) {
      s.abstains = [](const InputBatch&, int) { return true; };
      s.errors_every_call = true;
    }
    s.inner = [](Backend* b) { return &static_cast<FaultyBackend*>(b)->inner(); };
  }
  return s;
}

// Predictions must be identical: labels, errors-or-not, and probabilities bit for bit.
void ExpectSame(const Prediction& want, const Prediction& got, const std::string& where) {
  ASSERT_EQ(want.label, got.label) << where;
  ASSERT_EQ(want.error.empty(), got.error.empty()) << where << ": " << got.error;
  ASSERT_EQ(want.failed, got.failed) << where << ": " << got.error;
  ASSERT_EQ(want.probs.size(), got.probs.size()) << where;
  if (!want.probs.empty()) {
    ASSERT_EQ(0, std::memcmp(want.probs.data(), got.probs.data(), want.probs.size() * sizeof(float))) << where;
  }
  const bool want_nan = std::isnan(want.score), got_nan = std::isnan(got.score);
  ASSERT_EQ(want_nan, got_nan) << where;
  if (!want_nan) {
    ASSERT_EQ(0, std::memcmp(&want.score, &got.score, sizeof(float))) << where;
  }
}

// Runs examples [0, n) of `in` through `b` by consecutive calls of `batch` examples.
std::vector<Prediction> RunInBatches(Backend& b, const InputBatch& in, int n, int batch) {
  std::vector<Prediction> all(n);
  for (int start = 0; start < n; start += batch) {
    const int end = std::min(n, start + batch);
    std::vector<Prediction> got;
    Status s = b.Predict(in.View(start, end), &got);
    EXPECT_TRUE(s.ok()) << s.ToString();
    EXPECT_EQ(got.size(), static_cast<size_t>(end - start));
    if (got.size() != static_cast<size_t>(end - start)) return {};
    std::move(got.begin(), got.end(), all.begin() + start);
  }
  return all;
}

// `callers` threads take random chunks (1 to n/4 examples, from a seeded generator)
// of examples [0, n) off a shared counter and predict them concurrently.
std::vector<Prediction> RunConcurrently(Backend& b, const InputBatch& in, int n, int callers, uint32_t seed) {
  std::vector<std::pair<int, int>> chunks;
  std::mt19937 rng(seed);
  for (int start = 0; start < n;) {
    const int len = std::uniform_int_distribution<int>(1, std::max(1, n / 4))(rng);
    chunks.emplace_back(start, std::min(n, start + len));
    start += len;
  }
  std::vector<Prediction> all(n);
  std::atomic<size_t> next{0};
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < callers; ++t) {
    threads.emplace_back([&] {
      for (size_t c; (c = next.fetch_add(1)) < chunks.size();) {
        const auto [start, end] = chunks[c];
        std::vector<Prediction> got;
        if (!b.Predict(in.View(start, end), &got).ok() || got.size() != static_cast<size_t>(end - start)) {
          failures++;
          continue;
        }
        std::move(got.begin(), got.end(), all.begin() + start);  // disjoint ranges
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  return all;
}

class Conformance : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    subject_ = MakeSubject(GetParam());
    ASSERT_TRUE(subject_.make);
    auto ref = subject_.make(1);
    ASSERT_TRUE(ref);
    reference_ = RunInBatches(*ref, Images(), subject_.examples, 100);
    ASSERT_EQ(reference_.size(), static_cast<size_t>(subject_.examples));
    for (int i = 0; i < subject_.examples; ++i) {
      ASSERT_EQ(reference_[i].label == kAbstain, subject_.abstains(Images(), i)) << "example " << i;
      if (reference_[i].label == kAbstain) {
        EXPECT_FALSE(reference_[i].error.empty()) << "example " << i;
      } else {
        ASSERT_GE(reference_[i].label, 0);
        ASSERT_LT(reference_[i].label, static_cast<int>(ref->info().labels.size()));
      }
    }
  }
  void ExpectMatchesReference(const std::vector<Prediction>& got, int n, const std::string& what) {
    ASSERT_EQ(got.size(), static_cast<size_t>(n)) << what;
    for (int i = 0; i < n; ++i) {
      ExpectSame(reference_[i], got[i], what + ", example " + std::to_string(i));
      if (::testing::Test::HasFatalFailure()) return;
    }
  }

  Subject subject_;
  std::vector<Prediction> reference_;
};

TEST_P(Conformance, BatchSizeChangesNothing) {
  auto b = subject_.make(1);
  for (int batch : subject_.batch_sizes) {
    const int n = batch == 1 ? std::min(64, subject_.examples) : subject_.examples;
    ExpectMatchesReference(RunInBatches(*b, Images(), n, batch), n, "batch " + std::to_string(batch));
    if (HasFatalFailure()) return;
  }
}

TEST_P(Conformance, ThreadsChunkingAndRepetitionsChangeNothing) {
  const int n = subject_.chunked_examples;
  for (int threads : {1, 2, 8}) {
    auto b = subject_.make(threads);
    for (int rep = 0; rep < 20; ++rep) {
      ExpectMatchesReference(RunConcurrently(*b, Images(), n, threads, 1000 * threads + rep), n,
                             std::to_string(threads) + " threads, repetition " + std::to_string(rep));
      if (HasFatalFailure()) return;
    }
  }
}

TEST_P(Conformance, EightConcurrentCallersOnTwoThreads) {
  // More callers than the backend was made for: they queue for its resources.
  const int n = subject_.chunked_examples;
  auto b = subject_.make(2);
  for (int round = 0; round < 5; ++round) {
    ExpectMatchesReference(RunConcurrently(*b, Images(), n, 8, 77 + round), n, "round " + std::to_string(round));
    if (HasFatalFailure()) return;
  }
}

TEST_P(Conformance, WrongShapeIsAnErrorAndEveryExampleAbstains) {
  auto b = subject_.make(1);
  InputBatch bad;
  bad.example_shape = {1, 32, 32};
  bad.data.assign(3 * 32 * 32, 0.5f);
  bad.ids = {"a", "b", "c"};
  std::vector<Prediction> out;
  Status s = b->Predict(bad.View(), &out);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.message().find("[1, 32, 32]"), std::string::npos) << s.message();
  ASSERT_EQ(out.size(), 3u);
  for (const Prediction& p : out) {
    EXPECT_EQ(p.label, kAbstain);
    EXPECT_FALSE(p.error.empty());
    EXPECT_TRUE(p.failed);  // misuse: no example was answered
  }
  // An empty batch is answered with nothing.
  EXPECT_TRUE(b->Predict(Images().View(0, 0), &out).ok());
  EXPECT_TRUE(out.empty());
}

// The first example of the first `n` that the subject answers on a clean batch (-1: none).
int FirstAnswered(const Subject& s, int n) {
  for (int i = 0; i < n; ++i)
    if (!s.abstains(Images(), i)) return i;
  return -1;
}

TEST_P(Conformance, AFailingExampleAbstainsAlone) {
  InputBatch in = Images().Slice(0, 64);
  const int bad = FirstAnswered(subject_, 64);
  if (bad >= 0) {
    ASSERT_TRUE(subject_.spoil(in, bad));
  }
  auto b = subject_.make(2);
  std::vector<Prediction> out;
  ASSERT_TRUE(b->Predict(in.View(), &out).ok());
  ASSERT_EQ(out.size(), 64u);
  for (int i = 0; i < 64; ++i) {
    if (i != bad) {
      ExpectSame(reference_[i], out[i], "example " + std::to_string(i));
      continue;
    }
    EXPECT_EQ(out[i].label, kAbstain);
    EXPECT_FALSE(out[i].error.empty());
    EXPECT_EQ(out[i].failed, subject_.spoil_fails) << out[i].error;
    EXPECT_TRUE(out[i].probs.empty());
  }
}

TEST_P(Conformance, StatisticsAddUp) {
  auto b = subject_.make(2);
  uint64_t calls = 0, examples = 0, abstained = 0, expected_abstained = 0;
  InputBatch spoiled = Images().Slice(0, 100);
  const int bad = FirstAnswered(subject_, 100);
  if (bad >= 0) subject_.spoil(spoiled, bad);
  for (const auto& [in, start, end] :
       {std::tuple{&Images(), 0, 7}, std::tuple{&Images(), 7, 300},
        std::tuple{static_cast<const InputBatch*>(&spoiled), 0, 100}, std::tuple{&Images(), 300, 300}}) {
    std::vector<Prediction> out;
    ASSERT_TRUE(b->Predict(in->View(start, end), &out).ok());
    calls++;
    examples += end - start;
    for (const Prediction& p : out) abstained += p.label == kAbstain;
    for (int i = start; i < end; ++i) expected_abstained += subject_.abstains(*in, i) || (in == &spoiled && i == bad);
  }
  const BackendStats& s = b->stats();
  EXPECT_EQ(s.calls.load(), calls);
  EXPECT_EQ(s.examples.load(), examples);
  EXPECT_EQ(s.abstentions.load(), abstained);
  EXPECT_EQ(abstained, expected_abstained);
  EXPECT_EQ(s.errors.load(), subject_.errors_every_call ? calls : 0);
  if (Backend* inner = subject_.inner(b.get())) {  // a wrapper: the product backend inside adds up too
    const BackendStats& is = inner->stats();
    const bool dead = subject_.errors_every_call;
    EXPECT_EQ(is.calls.load(), dead ? 0 : calls);
    EXPECT_EQ(is.examples.load(), dead ? 0 : examples);
    EXPECT_EQ(is.abstentions.load(), dead ? 0 : (bad >= 0 ? 1u : 0u));  // only the spoiled example
    EXPECT_EQ(is.errors.load(), 0u);
  }
}

// What the backend says of itself is what the registry (backends/registry.h) says of
// its kind without making one: the layers ask the registry.
TEST_P(Conformance, InfoAgreesWithTheRegistrysTraits) {
  auto made = subject_.make(1);
  Backend* b = subject_.inner(made.get()) ? subject_.inner(made.get()) : made.get();
  const BackendInfo& info = b->info();
  const BackendKind* kind = FindBackendKind(info.kind);
  ASSERT_NE(kind, nullptr) << "backend kind '" << info.kind << "' is not in the registry";
  EXPECT_EQ(kind->traits.text_inputs, info.text_inputs) << info.kind;
  EXPECT_EQ(kind->traits.waits, info.waits) << info.kind;
  EXPECT_EQ(kind->traits.measures_cost, !info.cost_unit.empty()) << info.kind;
}

INSTANTIATE_TEST_SUITE_P(Backends, Conformance,
                         ::testing::Values("onnx_linear", "onnx_linear_pool", "onnx_mlp32", "onnx_cnn_tiny",
                                           "onnx_cnn8_16", "onnx_resnet_small", "onednn_linear", "onednn_linear_pool",
                                           "onednn_mlp32", "onednn_mlp256x2", "onednn_cnn_tiny", "onednn_cnn8_16",
                                           "onednn_cnn_small", "onednn_cnn_medium", "onednn_resnet_small", "recorded",
                                           "remote", "slow", "flaky", "dead"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

}  // namespace
}  // namespace coe
