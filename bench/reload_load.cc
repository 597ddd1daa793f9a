// reload_load: replacement without downtime under load. Clients post infer requests
// continuously to a `coe serve` on 127.0.0.1 (each over its own kept-alive connection,
// the next as soon as the last is answered) while this program swaps the served
// cascade file between two cascades A and B every --every-ms (the file replaced
// atomically, by rename) and has the server reload it (POST /coe/reload, or SIGHUP to
// --sighup PID). Every reply is checked: it must be 200 and its outputs (label and
// exit_tier of every image) exactly A's or exactly B's answer to the request, measured
// alone before the load: a reply that mixes the two matches neither.
//
//   reload_load --port P --model NAME --cascade FILE --a FILE_A --b FILE_B
//               [--seconds 10] [--clients 8] [--every-ms 150] [--images 16] [--sighup PID]
// Prints one line and exits 1 when a request failed or a reply matched neither cascade.
// bench/reload_load.sh drives it.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "coe/dataset.h"
#include "loopback.h"
#include "median.h"

namespace {

using Clock = std::chrono::steady_clock;
using coe::bench::Dial;
using coe::bench::Percentile;
using coe::bench::RoundTrip;

std::string Post(const std::string& path, const std::string& body) {
  return "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
}

// The outputs of an infer response (name -> data), as canonical JSON text; "" if none.
std::string Outputs(const std::string& response) {
  const size_t head = response.find("\r\n\r\n");
  if (head == std::string::npos) return "";
  const nlohmann::json j = nlohmann::json::parse(response.substr(head + 4), nullptr, false);
  if (!j.is_object() || !j.contains("outputs")) return "";
  std::map<std::string, nlohmann::json> by_name;
  for (const nlohmann::json& o : j["outputs"]) by_name[o.value("name", "")] = o.value("data", nlohmann::json());
  return nlohmann::json(by_name).dump();
}

// Replaces `path` by a copy of `from` in one rename: the server never reads half a file.
bool Install(const std::string& from, const std::string& path) {
  const std::string tmp = path + ".next";
  std::error_code ec;
  std::filesystem::copy_file(from, tmp, std::filesystem::copy_options::overwrite_existing, ec);
  if (ec) return false;
  std::filesystem::rename(tmp, path, ec);
  return !ec;
}

struct Flags {
  int port = 0, clients = 8, every_ms = 150, images = 16;
  double seconds = 10;
  pid_t sighup = 0;
  std::string model, cascade, a, b;
};

// Installs `file` and has the server reload it: true when it answered 200 (POST) or the
// signal was sent (SIGHUP: the server logs the outcome).
bool Reload(const Flags& f, const std::string& file) {
  if (!Install(file, f.cascade)) return false;
  if (f.sighup > 0) return kill(f.sighup, SIGHUP) == 0;
  const int fd = Dial(f.port);
  if (fd < 0) return false;
  std::string in;
  const int status = RoundTrip(fd, Post("/coe/reload", ""), &in);
  close(fd);
  if (status != 200) std::fprintf(stderr, "reload_load: reload answered %d: %s\n", status, in.c_str());
  return status == 200;
}

}  // namespace

int main(int argc, char** argv) {
  Flags f;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--port")
      f.port = std::atoi(v.c_str());
    else if (k == "--model")
      f.model = v;
    else if (k == "--cascade")
      f.cascade = v;
    else if (k == "--a")
      f.a = v;
    else if (k == "--b")
      f.b = v;
    else if (k == "--seconds")
      f.seconds = std::atof(v.c_str());
    else if (k == "--clients")
      f.clients = std::atoi(v.c_str());
    else if (k == "--every-ms")
      f.every_ms = std::atoi(v.c_str());
    else if (k == "--images")
      f.images = std::atoi(v.c_str());
    else if (k == "--sighup")
      f.sighup = std::atoi(v.c_str());
    else {
      std::fprintf(stderr, "reload_load: unknown flag %s\n", k.c_str());
      return 2;
    }
  }
  if (f.port <= 0 || f.model.empty() || f.cascade.empty() || f.a.empty() || f.b.empty() || f.clients < 1) {
    std::fprintf(stderr, "usage: reload_load --port P --model NAME --cascade FILE --a FILE_A --b FILE_B [...]\n");
    return 2;
  }
  coe::DatasetOptions o;
  o.expected_shape = {1, 28, 28};
  o.end = f.images;
  auto images = coe::LoadDataset("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz", o);
  if (!images.ok()) return std::fprintf(stderr, "reload_load: %s\n", images.status().ToString().c_str()), 2;
  std::ostringstream body;
  body << "{\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP32\",\"shape\":[" << f.images << ",1,28,28],\"data\":[";
  for (size_t i = 0; i < images->data.size(); ++i) body << (i ? "," : "") << images->data[i];
  body << "]}],\"outputs\":[{\"name\":\"label\"},{\"name\":\"exit_tier\"}]}";
  const std::string request = Post("/v2/models/" + f.model + "/infer", body.str());

  // Each cascade's answer, alone (SIGHUP's reload is awaited by asking until it answers).
  auto answer_of = [&](const std::string& file, const std::string& other) {
    if (!Reload(f, file)) return std::string();
    const int fd = Dial(f.port);
    std::string in, out;
    for (int tries = 0; tries < 500 && fd >= 0; ++tries) {
      if (RoundTrip(fd, request, &in) != 200) break;
      out = Outputs(in);
      if (other.empty() || out != other || f.sighup == 0) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (fd >= 0) close(fd);
    return out;
  };
  const std::string ref_a = answer_of(f.a, "");
  const std::string ref_b = answer_of(f.b, ref_a);
  if (ref_a.empty() || ref_b.empty() || ref_a == ref_b) {
    std::fprintf(stderr, "reload_load: the two cascades must answer the request, differently\n");
    return 2;
  }

  std::atomic<bool> stop{false};
  std::atomic<int64_t> ok_a{0}, ok_b{0}, mixed{0}, failed{0};
  std::mutex mu;
  std::vector<double> latencies;  // under mu
  std::vector<std::thread> clients;
  for (int c = 0; c < f.clients; ++c)
    clients.emplace_back([&] {
      int fd = Dial(f.port);
      std::string in;
      std::vector<double> mine;
      while (!stop) {
        const auto t0 = Clock::now();
        const int status = fd < 0 ? -1 : RoundTrip(fd, request, &in);
        mine.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
        if (status != 200) {
          if (++failed <= 5) std::fprintf(stderr, "reload_load: a request got %d: %.300s\n", status, in.c_str());
          if (fd >= 0) close(fd);
          fd = Dial(f.port);
          continue;
        }
        const std::string out = Outputs(in);
        (out == ref_a ? ok_a : out == ref_b ? ok_b : mixed)++;
      }
      if (fd >= 0) close(fd);
      std::lock_guard<std::mutex> lock(mu);
      latencies.insert(latencies.end(), mine.begin(), mine.end());
    });
  int reloads = 0, reloads_ok = 0;
  const auto end = Clock::now() + std::chrono::duration<double>(f.seconds);
  while (Clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(f.every_ms));  // the pace of the swaps
    reloads_ok += Reload(f, ++reloads % 2 ? f.a : f.b);
  }
  stop = true;
  for (std::thread& t : clients) t.join();
  const int64_t total = ok_a + ok_b + mixed + failed;
  std::printf(
      "requests %lld: cascade A %lld, cascade B %lld, neither (mixed) %lld, failed %lld; reloads %d (ok %d) every %d "
      "ms via %s; %.1f req/s, p50 %.2f ms, p99 %.2f ms\n",
      static_cast<long long>(total), static_cast<long long>(ok_a.load()), static_cast<long long>(ok_b.load()),
      static_cast<long long>(mixed.load()), static_cast<long long>(failed.load()), reloads, reloads_ok, f.every_ms,
      f.sighup > 0 ? "SIGHUP" : "POST /coe/reload", static_cast<double>(total) / f.seconds, Percentile(latencies, 0.5),
      Percentile(latencies, 0.99));
  return failed == 0 && mixed == 0 && reloads_ok == reloads ? 0 : 1;
}
