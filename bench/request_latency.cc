// request_latency: one client, one request at a time: the latency a lone request sees.
//
// Sends the first N Fashion-MNIST test images, one per Open Inference Protocol infer
// request, over one kept-alive connection to a `coe serve` on 127.0.0.1, each request
// after the answer to the one before, and prints the mean, median, 99th percentile and
// maximum of the request latencies (client side: from writing the request to reading
// the whole answer), after --warmup requests that are not counted.
//
//   request_latency --port P --model NAME [--images 2000] [--warmup 100] [--json]
// bench/request_latency.sh drives it: the latency-planned cascade against the best
// model, planned beside measured.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "coe/dataset.h"
#include "loopback.h"
#include "median.h"

namespace {

using Clock = std::chrono::steady_clock;

using coe::bench::Dial;
using coe::bench::Percentile;
using coe::bench::RoundTrip;

}  // namespace

int main(int argc, char** argv) {
  int port = 0, images = 2000, warmup = 100;
  std::string model;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (a == "--port")
      port = std::atoi(next().c_str());
    else if (a == "--model")
      model = next();
    else if (a == "--images")
      images = std::atoi(next().c_str());
    else if (a == "--warmup")
      warmup = std::atoi(next().c_str());
    else if (a == "--json")
      json = true;
    else {
      std::fprintf(stderr, "request_latency: unknown flag %s\n", a.c_str());
      return 2;
    }
  }
  if (port <= 0 || model.empty() || images < 1 || warmup < 0) {
    std::fprintf(stderr, "usage: request_latency --port P --model NAME [--images N] [--warmup W] [--json]\n");
    return 2;
  }
  coe::DatasetOptions o;
  o.end = images;
  auto in = coe::LoadDataset("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz", o);
  if (!in.ok()) {
    std::fprintf(stderr, "request_latency: %s\n", in.status().ToString().c_str());
    return 1;
  }
  const size_t pixels = in->data.size() / static_cast<size_t>(in->size());
  std::vector<std::string> requests;
  for (int64_t e = 0; e < in->size(); ++e) {
    std::string body = R"({"inputs":[{"name":"input","datatype":"FP32","shape":[1,1,28,28],"data":[)";
    for (size_t k = 0; k < pixels; ++k) {
      if (k) body += ',';
      body += std::to_string(static_cast<int>(in->data[e * pixels + k]));
    }
    body += "]}]}";
    requests.push_back("POST /v2/models/" + model + "/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
                       "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" +
                       body);
  }
  const int fd = Dial(port);
  if (fd < 0) {
    std::fprintf(stderr, "request_latency: cannot connect to 127.0.0.1:%d\n", port);
    return 1;
  }
  std::string response;
  std::vector<double> ms;
  const int total = warmup + static_cast<int>(requests.size());
  for (int r = 0; r < total; ++r) {
    const std::string& req = requests[r % requests.size()];
    const auto t0 = Clock::now();
    const int status = RoundTrip(fd, req, &response);
    const double took = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    if (status != 200) {
      std::fprintf(stderr, "request_latency: request %d got %d: %.300s\n", r, status, response.c_str());
      return 1;
    }
    if (r >= warmup) ms.push_back(took);
  }
  close(fd);
  double mean = 0;
  for (double x : ms) mean += x / ms.size();
  if (json) {
    std::printf("{\"requests\": %zu, \"mean_ms\": %.4f, \"p50_ms\": %.4f, \"p99_ms\": %.4f, \"max_ms\": %.4f}\n",
                ms.size(), mean, Percentile(ms, 0.5), Percentile(ms, 0.99), Percentile(ms, 1.0));
  } else {
    std::printf("%zu requests, one at a time: mean %.3f ms, p50 %.3f ms, p99 %.3f ms, max %.3f ms\n", ms.size(), mean,
                Percentile(ms, 0.5), Percentile(ms, 0.99), Percentile(ms, 1.0));
  }
  return 0;
}
