// The image-classifier conformance corpus (issue 27): every torchvision family, made
// small, exported by Debian's PyTorch at opsets 13 and 17 with a dynamic batch and a
// fixed batch of 1 (tests/zoo/make_corpus.py), run on the onednn backend and, where
// OpenCV DNN imports it, on `onnx`; each within 1e-4 of PyTorch's probabilities with the
// same top-1, and on onednn each example alone gives the bits it gives in the batch.
//
// The corpus is generated here, by the script, and cached between runs under a name
// made of the script's hash ($COE_ZOO_CACHE, else $XDG_CACHE_HOME/coe or ~/.cache/coe):
// nothing of it is committed. python3-torch and python3-torchvision are test
// dependencies (scripts/install-deps.sh).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "coe/backend.h"
#include "coe/dataset.h"
#include "tests/testing.h"

namespace coe {
namespace {

namespace fs = std::filesystem;

const char* const kFamilies[] = {"mlp",
                                 "resnet18",
                                 "resnet50",
                                 "alexnet",
                                 "vgg11",
                                 "squeezenet1_1",
                                 "googlenet",
                                 "densenet121",
                                 "mnasnet0_5",
                                 "mobilenet_v2",
                                 "mobilenet_v3_small",
                                 "shufflenet_v2",
                                 "efficientnet_b0",
                                 "regnet_y_400mf",
                                 "convnext_tiny",
                                 "swin_t",
                                 "vit_b_16"};

std::string Hex(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// The corpus directory for the script as it is now: made (under a lock, so that the
// tests running at once make it once) when absent. "" with `error` set when it cannot be.
std::string Corpus(std::string* error) {
  const std::string script = testing::SourceDir() + "/tests/zoo/make_corpus.py";
  const std::string text = testing::ReadFile(script);
  if (text.empty()) {
    *error = "cannot read " + script;
    return "";
  }
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char c : text) h = (h ^ c) * 1099511628211ull;
  std::string root;
  if (const char* e = std::getenv("COE_ZOO_CACHE"); e && *e) {
    root = e;
  } else if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) {
    root = std::string(x) + "/coe";
  } else if (const char* home = std::getenv("HOME"); home && *home) {
    root = std::string(home) + "/.cache/coe";
  } else {
    root = "/tmp/coe-cache";
  }
  const std::string dir = root + "/zoo-corpus-" + Hex(h);
  if (fs::exists(dir + "/manifest.tsv")) return dir;
  std::error_code ec;
  fs::create_directories(root, ec);
  const int lock = open((dir + ".lock").c_str(), O_CREAT | O_RDWR, 0644);
  if (lock < 0 || flock(lock, LOCK_EX) != 0) {
    *error = "cannot lock " + dir + ".lock";
    return "";
  }
  if (!fs::exists(dir + "/manifest.tsv")) {
    const std::string tmp = dir + ".tmp";
    fs::remove_all(tmp, ec);
    const std::string cmd = "/usr/bin/python3 '" + script + "' '" + tmp + "' 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    std::string out;
    char buf[4096];
    size_t n;
    while (p && (n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    const int status = p ? pclose(p) : -1;
    if (status != 0) {
      *error = cmd +
               " failed (python3-torch and python3-torchvision are test dependencies: "
               "scripts/install-deps.sh installs them):\n" +
               out.substr(out.size() > 3000 ? out.size() - 3000 : 0);
    } else {
      fs::remove_all(dir, ec);
      fs::rename(tmp, dir, ec);
      if (ec) *error = "cannot rename " + tmp + " to " + dir + ": " + ec.message();
    }
  }
  flock(lock, LOCK_UN);
  close(lock);
  return error->empty() ? dir : "";
}

struct Export {
  std::string family, batch, file;
  int opset = 0;
  int64_t c = 0, h = 0, w = 0, classes = 0, images = 0;
};

std::vector<Export> Manifest(const std::string& dir) {
  std::vector<Export> out;
  std::ifstream in(dir + "/manifest.tsv");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    Export e;
    f >> e.family >> e.opset >> e.batch >> e.file >> e.c >> e.h >> e.w >> e.classes >> e.images;
    if (f) out.push_back(e);
  }
  return out;
}

std::vector<float> Floats(const std::string& path) {
  const std::string bytes = testing::ReadFile(path);
  std::vector<float> v(bytes.size() / sizeof(float));
  std::memcpy(v.data(), bytes.data(), v.size() * sizeof(float));
  return v;
}

StatusOr<std::unique_ptr<Backend>> Load(const std::string& backend, const std::string& path,
                                        const std::vector<int64_t>& shape) {
  ModelSpec spec;
  spec.name = "zoo";
  spec.backend = backend;
  spec.path = path;
  spec.input_shape = shape;
  return CreateBackend(spec, BackendOptions{.threads = 2});
}

// The largest |p - q| over every image's probabilities, and how many top-1 agree.
struct Agreement {
  double worst = 0;
  int top1 = 0;
};

Agreement Compare(const std::vector<Prediction>& got, const std::vector<float>& want, int64_t classes) {
  Agreement a;
  for (size_t i = 0; i < got.size(); ++i) {
    const float* w = want.data() + i * classes;
    if (static_cast<int64_t>(got[i].probs.size()) != classes) {
      a.worst = 1;
      continue;
    }
    for (int64_t c = 0; c < classes; ++c) a.worst = std::max(a.worst, std::abs(double(got[i].probs[c]) - w[c]));
    a.top1 += got[i].label == std::max_element(w, w + classes) - w;
  }
  return a;
}

class ZooConformance : public ::testing::TestWithParam<const char*> {};

TEST_P(ZooConformance, RunsAsPyTorchDoes) {
  std::string error;
  const std::string dir = Corpus(&error);
  ASSERT_TRUE(error.empty()) << error;
  const std::string family = GetParam();
  const std::vector<float> images = Floats(dir + "/" + family + ".input.f32");
  const std::vector<float> want = Floats(dir + "/" + family + ".probs.f32");
  int exports = 0;
  for (const Export& e : Manifest(dir)) {
    if (e.family != family) continue;
    ++exports;
    SCOPED_TRACE(e.file);
    const std::vector<int64_t> shape = {e.c, e.h, e.w};
    ASSERT_EQ(static_cast<int64_t>(images.size()), e.images * e.c * e.h * e.w);
    ASSERT_EQ(static_cast<int64_t>(want.size()), e.images * e.classes);
    std::set<int64_t> labels;  // PyTorch's answers: a family of one answer would show little
    for (int64_t i = 0; i < e.images; ++i)
      labels.insert(std::max_element(want.begin() + i * e.classes, want.begin() + (i + 1) * e.classes) - want.begin() -
                    i * e.classes);
    EXPECT_GT(labels.size(), 1u);
    InputBatch in;
    in.example_shape = shape;
    in.data = images;
    std::string line = "zoo " + family + " opset " + std::to_string(e.opset) + " batch " + e.batch + ":";
    for (const char* backend : {"onednn", "onnx"}) {
      auto model = Load(backend, dir + "/" + e.file, shape);
      if (std::string(backend) == "onednn") {
        ASSERT_TRUE(model.ok()) << model.status().ToString();
      }
      if (!model.ok()) {
        const std::string why = model.status().message();  // (its end: OpenCV's cause)
        line += std::string(" | ") + backend + " does not import (..." +
                why.substr(why.size() > 160 ? why.size() - 160 : 0) + ")";
        continue;
      }
      std::vector<Prediction> got;
      ASSERT_TRUE((*model)->Predict(in.View(), &got).ok());
      ASSERT_EQ(static_cast<int64_t>(got.size()), e.images);
      for (const Prediction& p : got) ASSERT_FALSE(p.failed) << backend << ": " << p.error;
      const Agreement a = Compare(got, want, e.classes);
      char buf[160];
      std::snprintf(buf, sizeof buf, " | %s max|dp| %.2e top-1 %d/%lld", backend, a.worst, a.top1,
                    static_cast<long long>(e.images));
      line += buf;
      EXPECT_LT(a.worst, 1e-4) << backend;
      EXPECT_EQ(a.top1, e.images) << backend;
      if (std::string(backend) != "onednn") continue;
      // One example at a time: the bits it had in the batch.
      for (int64_t i = 0; i < e.images; i += 2) {
        InputBatch one;
        one.example_shape = shape;
        const int64_t size = e.c * e.h * e.w;
        one.data.assign(images.begin() + i * size, images.begin() + (i + 1) * size);
        std::vector<Prediction> alone;
        ASSERT_TRUE((*model)->Predict(one.View(), &alone).ok());
        ASSERT_EQ(alone.size(), 1u);
        EXPECT_EQ(alone[0].probs, got[i].probs) << "example " << i << " alone differs from it in the batch";
      }
    }
    std::printf("%s\n", line.c_str());
  }
  EXPECT_EQ(exports, 4) << "opsets 13 and 17, dynamic and fixed batch";
}

// A catalogue whose input_shape is not what the file declares (a 224x224 entry for a
// 32x32 export, say) is refused naming both, not compiled into nonsense.
TEST(ZooCorpus, RefusesAnInputShapeTheFileDoesNotTake) {
  std::string error;
  const std::string dir = Corpus(&error);
  ASSERT_TRUE(error.empty()) << error;
  auto wrong = Load("onednn", dir + "/resnet18.op13.dyn.onnx", {3, 64, 64});
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find("takes inputs of shape [3, 32, 32] (past the batch), the catalogue's "
                                          "input_shape is [3, 64, 64]"),
            std::string::npos)
      << wrong.status().ToString();
}

// Images as users have them (JPEGs and a PNG of other sizes) read with the catalogue's
// `resize = 256` into 224x224: the pixels torchvision's Resize(256) and CenterCrop(224)
// make of the same files, to the bit.
TEST(ZooCorpus, ResizeAndCentreCropAreTorchvisions) {
  std::string error;
  const std::string dir = Corpus(&error);
  ASSERT_TRUE(error.empty()) << error;
  auto loader = OpenCvImageLoader();
  ASSERT_TRUE(loader.ok()) << loader.status().ToString();
  DatasetOptions o;
  o.expected_shape = {3, 224, 224};
  o.resize = 256;
  o.image_loader = *loader;
  auto images = LoadDataset(dir + "/images", o);
  ASSERT_TRUE(images.ok()) << images.status().ToString();
  const std::vector<float> want = Floats(dir + "/images.pixels.f32");
  ASSERT_EQ(images->size(), 8);
  ASSERT_EQ(images->data.size(), want.size());
  int64_t differ = 0;
  for (size_t k = 0; k < want.size(); ++k) differ += images->data[k] != want[k];
  EXPECT_EQ(differ, 0) << "of " << want.size() << " values";
  // Without `resize`, an image of another size is refused, naming the key.
  o.resize = 0;
  auto refused = LoadDataset(dir + "/images", o);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("`resize`"), std::string::npos) << refused.status().ToString();
}

INSTANTIATE_TEST_SUITE_P(Families, ZooConformance, ::testing::ValuesIn(kFamilies),
                         [](const ::testing::TestParamInfo<const char*>& info) { return std::string(info.param); });

}  // namespace
}  // namespace coe
