// replay_upstream: an OpenAI-compatible chat endpoint on loopback that answers as the
// shared RouterBench recordings say (testing/openai_replay.h), for the examples and
// benchmarks that need "your LLM endpoint" as a process of its own (examples/loop/).
//
// A request's prompt carries the question's id as "[id:...]"; the reply is "Let me
// think. The answer is (B)." with the letter the recording holds for that model and id,
// and the usage of the recorded dollars at $1 per million tokens in and out (so a
// catalogue pricing every model at 1.0 pays exactly what the recordings cost). An id
// or model it does not hold gets OpenAI's 404.
//
//   replay_upstream --data REC.csv [--data REC2.csv ...] [--port-file F] [--latency-ms MS]
//
// It listens on an ephemeral port of 127.0.0.1, prints "replay_upstream: listening on
// http://127.0.0.1:PORT/v1" (and writes PORT to --port-file, whole, once listening),
// answers every call after MS milliseconds (default 0), serves until SIGTERM or SIGINT,
// and exits 0; 2 on a bad flag or a file it cannot read.
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "testing/openai_replay.h"

namespace {

int Usage(const std::string& why) {
  std::fprintf(
      stderr,
      "replay_upstream: %s\nusage: replay_upstream --data REC.csv [--data ...] [--port-file F] [--latency-ms MS]\n",
      why.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> data;
  int latency_ms = 0;
  std::string port_file;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) return Usage("flag " + a + " needs a value");
    const std::string v = argv[++i];
    char* end = nullptr;
    if (a == "--data") {
      data.push_back(v);
    } else if (a == "--port-file") {
      port_file = v;
    } else if (a == "--latency-ms") {
      const long n = std::strtol(v.c_str(), &end, 10);
      if (v.empty() || *end != '\0' || n < 0 || n > 600000)
        return Usage(a + " '" + v + "': expected milliseconds in [0, 600000]");
      latency_ms = static_cast<int>(n);
    } else {
      return Usage("unknown flag " + a);
    }
  }
  if (data.empty()) return Usage("--data is required");
  // Blocked before any thread starts, so that sigwait below receives them.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  coe::testing::OpenAiReplay replay;
  for (const std::string& csv : data)
    if (!replay.Load(csv)) return Usage("cannot read the recordings " + csv);
  for (const auto& [model, _] : replay.calls) replay.latency_ms[model] = latency_ms;
  const int bound = replay.Start();
  if (bound <= 0) return Usage("cannot listen on 127.0.0.1");
  if (!port_file.empty()) {
    std::ofstream(port_file + ".tmp") << bound << "\n";
    std::rename((port_file + ".tmp").c_str(), port_file.c_str());
  }
  std::printf("replay_upstream: listening on http://127.0.0.1:%d/v1 (%zu models)\n", bound, replay.calls.size());
  std::fflush(stdout);
  int sig = 0;
  sigwait(&stop, &sig);
  replay.Stop();
  std::printf("replay_upstream: %d requests answered\n", replay.requests.load());
  return 0;
}
