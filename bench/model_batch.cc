// model_batch: each zoo model's speed by batch size, on one thread.
//
// For every model of the catalogue, Predict over the first N Fashion-MNIST test images
// in batches of 1, 2, 4, ... 256 examples, one call at a time on this thread (as the
// engine runs one (member, chunk) task); --runs rounds, interleaved over batch sizes,
// medians. Prints examples per second and multiply-adds per second (the catalogue's
// `macs`) for each batch size, and the batch size that is fastest. It shows where
// wall time stops tracking compute: small models far from their MAC rate, and batches
// past a size where a model gets slower per example (the engine's chunk, the server's
// --max-batch).
//
//   model_batch [--models CAT] [--images N] [--runs R] [--only a,b] [--json]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "coe/backend.h"
#include "coe/catalogue.h"
#include "coe/dataset.h"
#include "coe/paths.h"
#include "median.h"

namespace {

using Clock = std::chrono::steady_clock;

using coe::bench::Median;

}  // namespace

int main(int argc, char** argv) {
  std::string models = coe::BuildTreeSourceDir() + "/models/zoo/catalogue.toml";
  int images = 2048, runs = 5;
  bool json = false;
  std::vector<std::string> only;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (a == "--models") {
      models = next();
    } else if (a == "--images") {
      images = std::max(1, std::atoi(next().c_str()));
    } else if (a == "--runs") {
      runs = std::max(1, std::atoi(next().c_str()));
    } else if (a == "--only") {
      std::stringstream ss(next());
      for (std::string m; std::getline(ss, m, ',');) only.push_back(m);
    } else if (a == "--json") {
      json = true;
    } else {
      std::fprintf(stderr, "model_batch: unknown flag %s\n", a.c_str());
      return 2;
    }
  }
  auto cat = coe::ReadCatalogue(models);
  if (!cat.ok()) {
    std::fprintf(stderr, "model_batch: %s\n", cat.status().ToString().c_str());
    return 2;
  }
  coe::DatasetOptions dopt;
  dopt.expected_shape = {1, 28, 28};
  dopt.end = images;
  auto in = coe::LoadDataset("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz", dopt);
  if (!in.ok()) {
    std::fprintf(stderr, "model_batch: %s\n", in.status().ToString().c_str());
    return 2;
  }
  const std::vector<int> sizes = {1, 2, 4, 8, 16, 32, 64, 128, 256};
  if (json) std::printf("{\"images\": %d, \"runs\": %d, \"models\": [", images, runs);
  bool first_model = true;
  for (const coe::ModelSpec& spec : cat->models) {
    if (!only.empty() && std::find(only.begin(), only.end(), spec.name) == only.end()) continue;
    auto b = coe::CreateBackend(spec, coe::BackendOptions{});
    if (!b.ok()) {
      std::fprintf(stderr, "model_batch: %s\n", b.status().ToString().c_str());
      return 1;
    }
    const double* macs = spec.Cost("macs");
    std::map<int, std::vector<double>> per_second;  // batch size -> examples/s per run
    std::vector<coe::Prediction> out;
    if (!(*b)->Predict(in->View(0, std::min<int64_t>(in->size(), 64)), &out).ok()) return 1;  // warm-up
    for (int r = 0; r < runs; ++r) {
      for (int s : sizes) {
        const auto t0 = Clock::now();
        for (int64_t at = 0; at < in->size(); at += s) {
          const int64_t end = std::min<int64_t>(in->size(), at + s);
          if (!(*b)->Predict(in->View(at, end), &out).ok()) {
            std::fprintf(stderr, "model_batch: %s failed\n", spec.name.c_str());
            return 1;
          }
        }
        per_second[s].push_back(static_cast<double>(in->size()) /
                                std::chrono::duration<double>(Clock::now() - t0).count());
      }
    }
    int best = sizes[0];
    for (int s : sizes)
      if (Median(per_second[s]) > Median(per_second[best])) best = s;
    if (json) {
      std::printf("%s{\"name\": \"%s\", \"macs\": %.0f, \"best_batch\": %d, \"examples_per_second\": {",
                  first_model ? "" : ", ", spec.name.c_str(), macs ? *macs : 0.0, best);
      for (size_t k = 0; k < sizes.size(); ++k)
        std::printf("%s\"%d\": %.1f", k ? ", " : "", sizes[k], Median(per_second[sizes[k]]));
      std::printf("}}");
    } else {
      std::printf("%-14s %9.0f MACs  best batch %3d:", spec.name.c_str(), macs ? *macs : 0.0, best);
      for (int s : sizes) {
        const double eps = Median(per_second[s]);
        std::printf("  b%d %.0f/s", s, eps);
        if (macs && s == best) std::printf(" (%.2f GMAC/s)", eps * *macs / 1e9);
      }
      std::printf("\n");
    }
    first_model = false;
  }
  if (json) std::printf("]}\n");
  return 0;
}
