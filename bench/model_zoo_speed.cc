// model_zoo_speed: images per second of full-size torchvision classifiers on coe's
// backends (issue 27), at batch 1 and 16, on one thread and on the machine's cores.
// bench/model_zoo_speed.sh runs it beside PyTorch (bench/torch_speed.py) and prints the
// table; run alone, it reads a corpus made by tests/zoo/make_corpus.py --full.
//
//   model_zoo_speed --dir D [--families a,b] [--backends onednn,onnx] [--threads 1,2]
//                   [--batches 1,16] [--seconds S] [--runs R]
//
// A figure: `threads` callers at once (each its own thread, as the engine's workers),
// each running batches of `batch` images over and over; images / wall time over a round
// of at least S seconds; the median of R rounds. One line of JSON per figure.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "coe/backend.h"
#include "median.h"

namespace {

using Clock = std::chrono::steady_clock;

std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string x; std::getline(ss, x, ',');)
    if (!x.empty()) out.push_back(x);
  return out;
}

struct Export {
  std::string family, file;
  int64_t c = 0, h = 0, w = 0, images = 0;
};

// One round: `threads` callers, each predicting batches of `batch` for `seconds`.
double Round(coe::Backend& model, const std::vector<float>& images, const std::vector<int64_t>& shape, int threads,
             int batch, double seconds, std::string* error) {
  const int64_t size = shape[0] * shape[1] * shape[2], have = static_cast<int64_t>(images.size()) / size;
  std::atomic<int64_t> done{0};
  std::atomic<bool> failed{false};
  const auto start = Clock::now();
  const auto until = start + std::chrono::duration<double>(seconds);
  std::vector<std::thread> callers;
  for (int t = 0; t < threads; ++t)
    callers.emplace_back([&, t] {
      coe::InputBatch in;
      in.example_shape = shape;
      for (int i = 0; i < batch; ++i) {
        const int64_t k = (t * batch + i) % have;
        in.data.insert(in.data.end(), images.begin() + k * size, images.begin() + (k + 1) * size);
      }
      std::vector<coe::Prediction> out;
      while (Clock::now() < until && !failed) {
        if (!model.Predict(in.View(), &out).ok() || out.empty() || out[0].failed) {
          failed = true;
          if (t == 0) *error = out.empty() ? "the call failed" : out[0].error;
          return;
        }
        done += batch;
      }
    });
  for (std::thread& c : callers) c.join();
  const double wall = std::chrono::duration<double>(Clock::now() - start).count();
  return failed ? 0.0 : static_cast<double>(done) / wall;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir;
  std::vector<std::string> families, backends = {"onednn", "onnx"};
  std::vector<int> threads = {1, static_cast<int>(std::max(1u, std::thread::hardware_concurrency()))},
                   batches = {1, 16};
  double seconds = 1.0;
  int runs = 3;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    auto ints = [&]() {
      std::vector<int> v;
      for (const std::string& x : Split(next())) v.push_back(std::max(1, std::atoi(x.c_str())));
      return v;
    };
    if (a == "--dir") {
      dir = next();
    } else if (a == "--families") {
      families = Split(next());
    } else if (a == "--backends") {
      backends = Split(next());
    } else if (a == "--threads") {
      threads = ints();
    } else if (a == "--batches") {
      batches = ints();
    } else if (a == "--seconds") {
      seconds = std::max(0.05, std::atof(next().c_str()));
    } else if (a == "--runs") {
      runs = std::max(1, std::atoi(next().c_str()));
    } else {
      std::fprintf(stderr, "model_zoo_speed: unknown flag %s\n", a.c_str());
      return 2;
    }
  }
  if (dir.empty()) {
    std::fprintf(stderr, "model_zoo_speed: --dir (a corpus of tests/zoo/make_corpus.py --full) is required\n");
    return 2;
  }
  std::vector<Export> exports;
  std::ifstream manifest(dir + "/manifest.tsv");
  for (std::string line; std::getline(manifest, line);) {
    std::istringstream f(line);
    Export e;
    std::string opset, batch;
    int64_t classes;
    f >> e.family >> opset >> batch >> e.file >> e.c >> e.h >> e.w >> classes >> e.images;
    if (!f || batch != "dynamic") continue;
    if (!families.empty() && std::find(families.begin(), families.end(), e.family) == families.end()) continue;
    exports.push_back(e);
  }
  if (exports.empty()) {
    std::fprintf(stderr, "model_zoo_speed: %s/manifest.tsv lists no dynamic-batch export of those families\n",
                 dir.c_str());
    return 2;
  }
  for (const Export& e : exports) {
    std::ifstream in(dir + "/" + e.family + ".input.f32", std::ios::binary);
    std::vector<float> images(e.images * e.c * e.h * e.w);
    in.read(reinterpret_cast<char*>(images.data()), static_cast<std::streamsize>(images.size() * sizeof(float)));
    const std::vector<int64_t> shape = {e.c, e.h, e.w};
    for (const std::string& backend : backends) {
      for (int t : threads) {
        coe::ModelSpec spec;
        spec.name = e.family;
        spec.backend = backend;
        spec.path = dir + "/" + e.file;
        spec.input_shape = shape;
        auto model = coe::CreateBackend(spec, coe::BackendOptions{.threads = t});
        if (!model.ok()) {
          std::string why = model.status().message();
          for (char& ch : why)
            if (ch == '"' || ch == '\n' || ch == '\\') ch = ' ';
          std::printf("{\"family\": \"%s\", \"backend\": \"%s\", \"threads\": %d, \"error\": \"%s\"}\n",
                      e.family.c_str(), backend.c_str(), t,
                      why.substr(why.size() > 300 ? why.size() - 300 : 0).c_str());
          std::fflush(stdout);
          continue;
        }
        for (int b : batches) {
          std::string error;
          Round(**model, images, shape, t, b, 0.1, &error);  // warm: every graph size built
          std::vector<double> rates;
          for (int r = 0; r < runs && error.empty(); ++r)
            rates.push_back(Round(**model, images, shape, t, b, seconds, &error));
          if (!error.empty()) {
            std::printf(
                "{\"family\": \"%s\", \"backend\": \"%s\", \"threads\": %d, \"batch\": %d, \"error\": \"failed\"}\n",
                e.family.c_str(), backend.c_str(), t, b);
            continue;
          }
          std::printf(
              "{\"family\": \"%s\", \"backend\": \"%s\", \"threads\": %d, \"batch\": %d, \"images_per_s\": %.3f}\n",
              e.family.c_str(), backend.c_str(), t, b, coe::bench::Median(rates));
          std::fflush(stdout);
        }
      }
    }
  }
  return 0;
}
