// edge_cloud: cheap tiers at the edge, the big model in the cloud, over an emulated
// 20 Mbit/s, 40 ms RTT link (bench/link_proxy.h), against sending every input to the
// cloud model over the same link.
//
// Starts two real `coe serve` processes on loopback: the cloud one serves the cloud
// models (catalogue `site = "cloud"`), the edge one serves the cascade whose cloud
// members are `remote` members reached through the link proxy. A client sends test
// images one request at a time (a camera on the edge device) and measures latency.
//
//   edge_cloud [--cascade FILE] [--models CAT] [--images 2000] [--bandwidth-mbit 20]
//              [--rtt-ms 40] [--wire auto|json|binary] [--json]
// --wire: how the edge's remote members talk to the cloud (the catalogue's `wire`):
// binary tensor data when the server offers it (auto), or always JSON / binary.
// Without --cascade it plans one with `coe demo` first.
#include <httplib.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/link_proxy.h"
#include "coe/cascade_spec.h"
#include "coe/catalogue.h"
#include "coe/dataset.h"
#include "coe/paths.h"

extern char** environ;

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using nlohmann::json;
const std::string kF = "/usr/share/datasets/fashion-mnist/";

pid_t Spawn(const std::vector<std::string>& argv, const std::string& log) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  return pid;
}

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  int port = ntohs(a.sin_port);
  close(fd);
  return port;
}

bool WaitReady(int port, double seconds) {
  httplib::Client c("127.0.0.1", port);
  c.set_connection_timeout(0, 200000);
  const auto until = Clock::now() + std::chrono::duration<double>(seconds);
  while (Clock::now() < until) {
    auto r = c.Get("/v2/health/ready");
    if (r && r->status == 200) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

double Percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  if (v.empty()) return 0;
  size_t i = std::min(v.size() - 1, static_cast<size_t>(std::ceil(q * v.size())) - 1);
  return v[i];
}

struct Result {
  double mean_ms = 0, p50_ms = 0, p99_ms = 0, accuracy = 0, bytes_per_example = 0;
  int errors = 0, degraded = 0;
};

// Sends each image as one infer request to 127.0.0.1:port/v2/models/model/infer.
Result Drive(int port, const std::string& model, const coe::InputBatch& in, int64_t n,
             const coe::bench::LinkProxy& proxy) {
  httplib::Client c("127.0.0.1", port);
  c.set_keep_alive(true);
  c.set_tcp_nodelay(true);  // else Nagle + delayed ACK add ~40 ms per request
  c.set_read_timeout(30, 0);
  const uint64_t up0 = proxy.bytes_up();
  std::vector<double> lat;
  int correct = 0;
  Result r;
  const int64_t e = in.ExampleSize();
  for (int64_t i = 0; i < n; ++i) {
    json req;
    std::vector<int64_t> shape = {1};
    shape.insert(shape.end(), in.example_shape.begin(), in.example_shape.end());
    req["inputs"] =
        json::array({{{"name", "input"},
                      {"datatype", "FP32"},
                      {"shape", shape},
                      {"data", std::vector<float>(in.data.begin() + i * e, in.data.begin() + (i + 1) * e)}}});
    const std::string body = req.dump();
    const auto t0 = Clock::now();
    auto res = c.Post(("/v2/models/" + model + "/infer").c_str(), body, "application/json");
    lat.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    if (!res || res->status != 200) {
      r.errors++;
      continue;
    }
    json out = json::parse(res->body, nullptr, false);
    if (out.is_discarded()) {
      r.errors++;
      continue;
    }
    for (const json& o : out["outputs"]) {
      if (o["name"] == "label") correct += o["data"][0].get<std::string>() == in.truth[i];
      if (o["name"] == "degraded") r.degraded += o["data"][0].get<bool>();
    }
  }
  double sum = 0;
  for (double x : lat) sum += x;
  r.mean_ms = sum / n;
  r.p50_ms = Percentile(lat, 0.5);
  r.p99_ms = Percentile(lat, 0.99);
  r.accuracy = static_cast<double>(correct) / n;
  r.bytes_per_example = static_cast<double>(proxy.bytes_up() - up0) / n;
  return r;
}

std::string Quote(const std::string& s) { return "\"" + s + "\""; }

}  // namespace

int main(int argc, char** argv) {
  std::string coe_bin = coe::ExecutableDir() + "/coe";
  std::string models = coe::BuildTreeSourceDir() + "/models/zoo/catalogue.toml";
  std::string cascade_path;
  int64_t images = 2000;
  double mbit = 20, rtt = 40;
  bool as_json = false;
  std::string wire = "auto";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (a == "--cascade")
      cascade_path = next();
    else if (a == "--models")
      models = next();
    else if (a == "--images")
      images = std::atoll(next().c_str());
    else if (a == "--bandwidth-mbit")
      mbit = std::atof(next().c_str());
    else if (a == "--rtt-ms")
      rtt = std::atof(next().c_str());
    else if (a == "--wire")
      wire = next();
    else if (a == "--json")
      as_json = true;
    else {
      std::fprintf(stderr, "edge_cloud: unknown flag %s\n", a.c_str());
      return 2;
    }
  }
  const fs::path work = fs::temp_directory_path() / ("coe-edge-cloud-" + std::to_string(getpid()));
  fs::create_directories(work);
  if (cascade_path.empty()) {
    if (!as_json) std::fprintf(stderr, "planning: coe demo --work %s\n", (work / "demo").c_str());
    std::string log = (work / "demo.log").string();
    pid_t d = Spawn({coe_bin, "demo", "--models", models, "--work", (work / "demo").string(), "--json"}, log);
    int st = 0;
    waitpid(d, &st, 0);
    std::ifstream in(log);
    std::stringstream ss;
    ss << in.rdbuf();
    std::string text = ss.str();
    size_t brace = text.find("{\n");
    json j = json::parse(brace == std::string::npos ? std::string("x") : text.substr(brace), nullptr, false);
    if (j.is_discarded()) {
      std::fprintf(stderr, "edge_cloud: coe demo failed: see %s\n", log.c_str());
      return 1;
    }
    cascade_path = j["files"]["cascade"];
  }
  auto cat = coe::ReadCatalogue(models);
  auto spec = coe::ReadCascade(cascade_path);
  if (!cat.ok() || !spec.ok()) {
    std::fprintf(stderr, "edge_cloud: %s\n", (!cat.ok() ? cat.status() : spec.status()).ToString().c_str());
    return 2;
  }
  // The cloud serves every cloud model of the cascade; the edge reaches them remotely.
  std::vector<std::string> cloud_models;
  for (const std::string& m : spec->AllMembers())
    if (cat->Find(m)->is_cloud()) cloud_models.push_back(m);
  if (cloud_models.empty()) {
    std::fprintf(stderr, "edge_cloud: the cascade %s has no cloud member\n", spec->ToString().c_str());
    return 2;
  }
  const std::string big = cloud_models.back();
  coe::CascadeSpec cloud_spec;
  cloud_spec.name = "cloud";
  cloud_spec.tiers.push_back(coe::TierSpec{cloud_models, {}});
  std::ofstream(work / "cloud.toml") << coe::CascadeToToml(cloud_spec, {});
  const int cloud_port = FreePort();
  pid_t cloud = Spawn({coe_bin, "serve", "--cascade", (work / "cloud.toml").string(), "--models", models, "--port",
                       std::to_string(cloud_port)},
                      (work / "cloud.log").string());
  coe::bench::LinkProxy proxy(cloud_port, mbit * 1e6, rtt);
  // Edge catalogue: the zoo's, plus a remote twin of each cloud model through the link.
  std::ifstream zin(models);
  std::stringstream zoo;
  zoo << zin.rdbuf();
  std::string edge_cat = zoo.str();
  const std::string zoo_dir = fs::path(models).parent_path().string();
  // Relative paths in the copied text must still point into the zoo folder.
  std::string fixed;
  std::istringstream lines(edge_cat);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("path = \"", 0) == 0 && line.find("\"/") == std::string::npos)
      line = "path = \"" + zoo_dir + "/" + line.substr(8);
    fixed += line + "\n";
  }
  coe::CascadeSpec edge_spec = *spec;
  edge_spec.name = "edge";
  for (const std::string& m : cloud_models) {
    const coe::ModelSpec* s = cat->Find(m);
    fixed += "\n[models." + Quote(m + "_remote") +
             "]\nbackend = \"remote\"\nurl = \"http://127.0.0.1:" + std::to_string(proxy.port()) +
             "\"\nremote_model = " + Quote(m) + "\nsite = \"cloud\"\ntimeout_ms = 10000\nwire = " + Quote(wire) + "\n";
    for (auto& [k, v] : s->costs) fixed += k + " = " + std::to_string(v) + "\n";
    for (auto& t : edge_spec.tiers)
      for (auto& mem : t.members)
        if (mem == m) mem = m + "_remote";
  }
  std::ofstream(work / "edge_catalogue.toml") << fixed;
  std::ofstream(work / "edge.toml") << coe::CascadeToToml(edge_spec, {});
  const int edge_port = FreePort();
  pid_t edge = Spawn({coe_bin, "serve", "--cascade", (work / "edge.toml").string(), "--models",
                      (work / "edge_catalogue.toml").string(), "--port", std::to_string(edge_port)},
                     (work / "edge.log").string());
  auto cleanup = [&] {
    kill(edge, SIGTERM);
    kill(cloud, SIGTERM);
    waitpid(edge, nullptr, 0);
    waitpid(cloud, nullptr, 0);
  };
  if (!WaitReady(cloud_port, 60) || !WaitReady(edge_port, 60)) {
    std::fprintf(stderr, "edge_cloud: servers did not start; logs in %s\n", work.c_str());
    cleanup();
    return 1;
  }
  coe::DatasetOptions dopt;
  dopt.expected_shape = cat->Find(big)->input_shape;
  dopt.labels_path = kF + "t10k-labels-idx1-ubyte.gz";
  dopt.label_names = cat->Find(big)->labels;
  dopt.end = images;
  auto in = coe::LoadDataset(kF + "t10k-images-idx3-ubyte.gz", dopt);
  if (!in.ok()) {
    std::fprintf(stderr, "edge_cloud: %s\n", in.status().ToString().c_str());
    cleanup();
    return 2;
  }
  const int64_t n = in->size();
  // Warm up both paths (connections, first forward passes).
  Drive(edge_port, "edge", in->Slice(0, 20), 20, proxy);
  Drive(proxy.port(), big, in->Slice(0, 20), 20, proxy);
  Result edge_r = Drive(edge_port, "edge", *in, n, proxy);
  Result cloud_r = Drive(proxy.port(), big, *in, n, proxy);
  cleanup();
  if (as_json) {
    json j;
    j["cascade"] = spec->ToString();
    j["cloud_model"] = big;
    j["images"] = n;
    j["link"] = {{"bandwidth_mbit", mbit}, {"rtt_ms", rtt}};
    auto rj = [](const Result& r) {
      return json{{"mean_ms", r.mean_ms},
                  {"p50_ms", r.p50_ms},
                  {"p99_ms", r.p99_ms},
                  {"accuracy", r.accuracy},
                  {"bytes_to_cloud_per_example", r.bytes_per_example},
                  {"errors", r.errors},
                  {"degraded", r.degraded}};
    };
    j["wire"] = wire;
    j["edge_cascade"] = rj(edge_r);
    j["all_to_cloud"] = rj(cloud_r);
    j["bytes_ratio"] = cloud_r.bytes_per_example / std::max(1e-9, edge_r.bytes_per_example);
    j["mean_latency_ratio"] = cloud_r.mean_ms / std::max(1e-9, edge_r.mean_ms);
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("%lld test images, one request each; link %.0f Mbit/s, RTT %.0f ms (in-process shaping proxy)\n",
              static_cast<long long>(n), mbit, rtt);
  std::printf("edge cascade: %s (cloud members reached over the link, wire = %s)\n\n", spec->ToString().c_str(),
              wire.c_str());
  std::printf("%-28s %9s %16s %10s %10s %10s %7s\n", "", "accuracy", "bytes to cloud", "mean ms", "p50 ms", "p99 ms",
              "errors");
  for (auto& [name, r] : {std::pair<std::string, Result>{"edge cascade", edge_r}, {"all to cloud: " + big, cloud_r}})
    std::printf("%-28s %8.2f%% %16.0f %10.2f %10.2f %10.2f %7d\n", name.c_str(), 100 * r.accuracy, r.bytes_per_example,
                r.mean_ms, r.p50_ms, r.p99_ms, r.errors);
  std::printf("\n%.1fx fewer bytes to the cloud per example, %.1fx lower mean latency, accuracy %+.2f points\n",
              cloud_r.bytes_per_example / std::max(1e-9, edge_r.bytes_per_example),
              cloud_r.mean_ms / std::max(1e-9, edge_r.mean_ms), 100 * (edge_r.accuracy - cloud_r.accuracy));
  fs::remove_all(work);
  return 0;
}
