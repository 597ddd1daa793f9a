// The remote backend: an edge cascade whose last tier runs on a second coe server (the
// "cloud") on loopback gives the all-local answers; exact byte counts; faults (the
// cloud stopped and restarted, a hanging cloud, bad responses, 503s); other Open
// Inference Protocol servers (outputs named otherwise, logits only).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>

#include "server_testing.h"

namespace coe {
namespace {

using namespace coe::testing;
namespace fs = std::filesystem;
using Ms = std::chrono::milliseconds;

// The edge catalogue: linear and mlp256x2 local, cnn8_16 at `url`.
std::string EdgeToml(int port, int timeout_ms = 2000, int retries = 1, const std::string& remote_model = "cnn8_16") {
  return std::string("[defaults]\ninput_shape = [1, 28, 28]\n") + kLabelsToml +
         "scale = 0.00392156862745098\nmean = 0.2860\nstd = 0.3530\n"
         "[models.linear]\nbackend = \"onnx\"\npath = \"" +
         kZoo +
         "linear.onnx\"\nmacs = 7840\n"
         "[models.mlp256x2]\nbackend = \"onnx\"\npath = \"" +
         kZoo +
         "mlp256x2.onnx\"\nmacs = 235000\n"
         "[models.cnn8_16]\nbackend = \"remote\"\nurl = \"http://127.0.0.1:" +
         std::to_string(port) +
         "\"\n"
         "remote_model = \"" +
         remote_model +
         "\"\nsite = \"cloud\"\nmacs = 290000\n"
         "timeout_ms = " +
         std::to_string(timeout_ms) + "\nretries = " + std::to_string(retries) + "\n";
}

// The cloud: the zoo's models served individually; records body sizes per request.
struct Cloud {
  std::unique_ptr<Server> server;
  std::mutex mu;
  uint64_t infer_bytes_in = 0, bytes_out = 0;
  int infer_posts = 0;

  void Start(int port = 0) {
    if (!server) {
      ServerOptions o;
      o.access_log = AccessLog::kJson;
      o.keep_alive_timeout_s = 1;
      o.log = [this](const std::string& line) {
        json j = json::parse(line);
        std::lock_guard<std::mutex> lock(mu);
        bytes_out += j["bytes_out"].get<uint64_t>();
        if (j["method"] == "POST") {
          infer_bytes_in += j["bytes_in"].get<uint64_t>();
          infer_posts++;
        }
      };
      auto s = Server::Create(TwoTier(), ParseOrDie(ZooToml()), EngineOptions{.threads = 2}, o);
      ASSERT_TRUE(s.ok()) << s.status().ToString();
      server = std::move(*s);
    }
    Status st = server->Start("127.0.0.1", port);
    ASSERT_TRUE(st.ok()) << st.ToString();
  }
  int port() const { return server->port(); }
};

// A port nobody listens on: bind one, then close it.
int ClosedPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  socklen_t len = sizeof a;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    close(fd);
    return 1;
  }
  close(fd);
  return ntohs(a.sin_port);
}

Backend* Member(const Cascade& c, const std::string& name) {
  for (Backend* b : c.members())
    if (b->info().name == name) return b;
  return nullptr;
}

TEST(Remote, EdgeWithCloudTierEqualsAllLocalAndCountsBytesExactly) {
  Cloud cloud;
  cloud.Start();
  auto local = Cascade::Create(TwoTier(), ParseOrDie(ZooToml()), EngineOptions{.threads = 2});
  auto edge = Cascade::Create(TwoTier(), ParseOrDie(EdgeToml(cloud.port())), EngineOptions{.threads = 2});
  ASSERT_TRUE(local.ok() && edge.ok()) << edge.status().ToString();
  InputBatch in = TestImages(600);
  auto want = (*local)->Run(in, RunOptions{.want_probs = true});
  auto got = (*edge)->Run(in, RunOptions{.want_probs = true});
  ASSERT_TRUE(want.ok() && got.ok());
  EXPECT_EQ(got->answer, want->answer);
  EXPECT_EQ(got->exit_tier, want->exit_tier);
  EXPECT_EQ(got->cost, want->cost);
  EXPECT_EQ(got->probs, want->probs);  // bit-exact through JSON
  EXPECT_EQ(std::count(got->degraded.begin(), got->degraded.end(), 1), 0);
  const int deferred = got->tiers[1].reached;
  ASSERT_GT(deferred, 0);

  Backend* remote = Member(**edge, "cnn8_16");
  ASSERT_EQ(remote->info().kind, "remote");
  const BackendStats& st = remote->stats();
  // The cloud logs a request once its response is written: wait for the last one.
  const auto t0 = std::chrono::steady_clock::now();
  auto logged = [&] {
    std::lock_guard<std::mutex> lock(cloud.mu);
    return cloud.bytes_out == st.bytes_received.load();
  };
  while (!logged() && Since(t0) < 2) std::this_thread::sleep_for(Ms(5));
  std::lock_guard<std::mutex> lock(cloud.mu);
  // One POST per Predict call (the engine's chunks), nothing else sent.
  EXPECT_GE(st.calls.load(), 1u);
  EXPECT_EQ(cloud.infer_posts, static_cast<int>(st.calls.load()));
  EXPECT_EQ(st.examples.load(), static_cast<uint64_t>(deferred));
  EXPECT_EQ(st.bytes_sent.load(), cloud.infer_bytes_in);
  EXPECT_EQ(st.bytes_received.load(), cloud.bytes_out);  // infer responses + one metadata read
  EXPECT_EQ(st.errors.load(), 0u);
}

TEST(Remote, EdgeServerDegradesWhileTheCloudIsDownAndRecovers) {
  Cloud cloud;
  cloud.Start();
  const int cloud_port = cloud.port();
  auto edge = Server::Create(TwoTier("edge"), ParseOrDie(EdgeToml(cloud_port, 300, 1)), EngineOptions{.threads = 2},
                             ServerOptions{.serve_members = false});
  ASSERT_TRUE(edge.ok()) << edge.status().ToString();
  ASSERT_TRUE((*edge)->Start("127.0.0.1", 0).ok());
  const int port = (*edge)->port();
  InputBatch in = TestImages(200);
  const std::string body = InferBody(in);
  Reply healthy = Http(port, "POST", "/v2/models/edge/infer", body);
  ASSERT_EQ(healthy.status, 200);
  EXPECT_EQ(healthy.body["parameters"]["degraded_count"], 0);
  const json& tiers = (*Output(healthy.body, "exit_tier"))["data"];

  cloud.server->Stop();
  cloud.server->Wait();
  int total_degraded = 0;
  for (int round = 0; round < 4; ++round) {  // also past the circuit breaker's threshold
    const auto t0 = std::chrono::steady_clock::now();
    Reply down = Http(port, "POST", "/v2/models/edge/infer", body);
    EXPECT_LT(Since(t0), 2.0);  // bounded by timeout x attempts + backoff, never a hang
    ASSERT_EQ(down.status, 200) << down.raw;
    const json& label = (*Output(down.body, "label"))["data"];
    const json& degraded = (*Output(down.body, "degraded"))["data"];
    int n_degraded = 0;
    for (int64_t i = 0; i < in.size(); ++i) {
      // Tier-1 exits are untouched; deferred examples get tier 1's plurality, marked.
      EXPECT_EQ(degraded[i], tiers[i] == 2) << i;
      EXPECT_NE(label[i], "") << i;
      if (tiers[i] == 1) {
        EXPECT_EQ(label[i], (*Output(healthy.body, "label"))["data"][i]);
      }
      n_degraded += degraded[i].get<bool>();
    }
    EXPECT_GT(n_degraded, 0);
    EXPECT_EQ(down.body["parameters"]["degraded_count"], n_degraded);
    total_degraded += n_degraded;
  }
  const std::string metrics = (*edge)->MetricsText();
  EXPECT_NE(metrics.find("coe_degraded_examples_total{model=\"edge\"} " + std::to_string(total_degraded) + "\n"),
            std::string::npos)
      << metrics;
  EXPECT_EQ(metrics.find("coe_member_errors_total{member=\"cnn8_16\"} 0\n"), std::string::npos) << metrics;
  // Failed examples by member and cause: refused connections, then the open breaker.
  EXPECT_NE(metrics.find("coe_member_failures_total{member=\"cnn8_16\",reason=\"connect\"} "), std::string::npos)
      << metrics;

  // The cloud comes back on the same port: within a few seconds nothing is degraded.
  cloud.Start(cloud_port);
  const auto t0 = std::chrono::steady_clock::now();
  Reply back;
  do {
    back = Http(port, "POST", "/v2/models/edge/infer", body);
    ASSERT_EQ(back.status, 200);
    if (back.body["parameters"]["degraded_count"] == 0) break;
    std::this_thread::sleep_for(Ms(100));
  } while (Since(t0) < 5);
  EXPECT_EQ(back.body["parameters"]["degraded_count"], 0) << "still degraded " << Since(t0) << " s after restart";
  EXPECT_EQ(*Output(back.body, "label"), *Output(healthy.body, "label"));
}

// `coe record` of an image catalogue with a member on a stopped cloud: the failed calls
// are named, the command fails, no answer is made up (the planner refuses the file), and
// once the cloud is back, running it again makes only those calls and completes the
// file, byte for byte as a record with the cloud up writes it.
TEST(Remote, RecordNamesFailedCallsAndRecordingAgainFillsThem) {
  const fs::path dir = fs::temp_directory_path() / ("coe_remote_record_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const int port = ClosedPort();
  std::ofstream(dir / "edge.toml") << EdgeToml(port, 1000, 0);
  const std::string f = "/usr/share/datasets/fashion-mnist/t10k-";
  const std::string data = " --data " + f + "images-idx3-ubyte.gz --labels " + f + "labels-idx1-ubyte.gz --range 0:300";
  const std::string record = "record --models " + (dir / "edge.toml").string() + data + " --out ";
  Proc r = RunCoe(record + (dir / "rec.csv").string());
  ASSERT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("coe record: error: 300 model calls failed (no answer): not recorded as answers"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("of model 'cnn8_16' failed: remote 'cnn8_16' (http://127.0.0.1:" + std::to_string(port)),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("cannot connect (refused or unreachable)"), std::string::npos) << r.out;
  Proc plan = RunCoe("plan --calib " + (dir / "rec.csv").string() + " --models " + (dir / "rec.models.toml").string());
  EXPECT_EQ(plan.code, 2) << plan.out;
  EXPECT_NE(plan.out.find("model 'cnn8_16' has no answer for id"), std::string::npos) << plan.out;
  EXPECT_NE(plan.out.find("and 299 more"), std::string::npos) << plan.out;

  Cloud cloud;
  cloud.Start(port);
  r = RunCoe(record + (dir / "rec.csv").string() + " --json", false);
  ASSERT_EQ(r.code, 0) << r.out;
  const json j = json::parse(r.out);
  EXPECT_EQ(j["calls"], 300);  // cnn8_16's, and no other model's
  EXPECT_EQ(j["failed_calls"], 0);
  ASSERT_EQ(RunCoe(record + (dir / "fresh.csv").string()).code, 0);
  EXPECT_EQ(ReadFile((dir / "rec.csv").string()), ReadFile((dir / "fresh.csv").string()));
  fs::remove_all(dir);
}

// The edge talks to a coe cloud with binary tensor data (wire = "auto": the server
// lists the extension): the same answers as wire = "json", fewer bytes.
TEST(Remote, BinaryWireEqualsJsonWithFewerBytes) {
  Cloud cloud;
  cloud.Start();
  const InputBatch in = TestImages(64);
  std::vector<std::vector<Prediction>> outs;
  std::vector<uint64_t> sent, received;
  for (const std::string wire : {"json", "auto", "binary"}) {
    Catalogue cat = ParseOrDie(EdgeToml(cloud.port()) + "wire = \"" + wire + "\"\n");
    auto b = CreateBackend(*cat.Find("cnn8_16"), BackendOptions{});
    ASSERT_TRUE(b.ok()) << b.status().ToString();
    std::vector<Prediction> out;
    ASSERT_TRUE((*b)->Predict(in.View(), &out).ok());
    outs.push_back(out);
    sent.push_back((*b)->stats().bytes_sent.load());
    received.push_back((*b)->stats().bytes_received.load());
  }
  for (size_t w = 1; w < outs.size(); ++w)
    for (size_t i = 0; i < outs[0].size(); ++i) {
      EXPECT_EQ(outs[w][i].label, outs[0][i].label) << w << " " << i;
      EXPECT_EQ(outs[w][i].probs, outs[0][i].probs) << w << " " << i;  // bit for bit
      EXPECT_TRUE(outs[w][i].error.empty()) << outs[w][i].error;
    }
  EXPECT_EQ(sent[1], sent[2]);  // auto chose binary
  EXPECT_LT(sent[1], sent[0]);
  std::printf("bytes per example sent json %.0f binary %.0f, received json %.0f binary %.0f\n", sent[0] / 64.0,
              sent[1] / 64.0, received[0] / 64.0, received[1] / 64.0);
}

TEST(Remote, AHangingCloudTimesOutWithinTheBound) {
  // The cloud model takes 1.2 s; the edge's call may take 300 ms in all (timeout_ms
  // bounds the whole call, its 2 attempts included).
  ServerOptions o;
  o.keep_alive_timeout_s = 1;
  auto slow = Server::Create({{"cnn8_16", SlowCascade("cnn8_16", Ms(1200))}}, o);
  ASSERT_TRUE(slow.ok());
  ASSERT_TRUE((*slow)->Start("127.0.0.1", 0).ok());
  Catalogue cat = ParseOrDie(EdgeToml((*slow)->port(), 300, 1));
  auto b = CreateBackend(*cat.Find("cnn8_16"), BackendOptions{});
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  InputBatch in = TestImages(5);
  std::vector<Prediction> out;
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE((*b)->Predict(in.View(), &out).ok());
  const double took = Since(t0);
  EXPECT_LT(took, 0.3 + 0.5);  // the deadline, and slack for a loaded machine
  EXPECT_GT(took, 0.25);
  ASSERT_EQ(out.size(), 5u);
  for (const Prediction& p : out) {
    EXPECT_EQ(p.label, kAbstain);
    EXPECT_FALSE(p.error.empty());
  }
  EXPECT_EQ((*b)->stats().errors.load(), 1u);
  EXPECT_EQ((*b)->stats().abstentions.load(), 5u);
}

// A cloud that hangs (its process stopped with SIGSTOP: the kernel still accepts
// connections, nothing answers) holds no edge answer longer than timeout_ms, retries
// included: every example that reached the remote tier is answered by the edge's
// fallback, marked degraded.
TEST(Remote, AStoppedCloudHoldsNoAnswerPastTheDeadline) {
  fs::path dir = fs::temp_directory_path() / ("coe_sigstop_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "zoo.toml") << ZooToml();
  std::ofstream(dir / "cascade.toml") << "[[tiers]]\nmembers = [\"cnn8_16\"]\n";
  const ServeProcess cloud = SpawnServe({"--cascade", (dir / "cascade.toml").string(), "--models",
                                         (dir / "zoo.toml").string(), "--port", "0", "--name", "cloud", "--quiet"});
  const pid_t pid = cloud.pid;
  const int port = cloud.port;
  ASSERT_GT(port, 0) << cloud.line;
  constexpr int kTimeoutMs = 1000;
  Catalogue cat = ParseOrDie(EdgeToml(port, kTimeoutMs, /*retries=*/2));
  CascadeSpec spec;
  spec.tiers.push_back(TierSpec{{"linear", "mlp256x2"}, {}});
  spec.tiers.back().rule.min_agreement = 1.0;
  spec.tiers.push_back(TierSpec{{"cnn8_16"}, {}});
  auto edge = Cascade::Create(spec, cat, EngineOptions{.threads = 2});
  ASSERT_TRUE(edge.ok()) << edge.status().ToString();
  const InputBatch images = TestImages(40);
  auto warm = (*edge)->Run(images);  // the cloud answers while it runs
  ASSERT_TRUE(warm.ok());
  int reached = 0;
  for (int t : warm->exit_tier) reached += t == 1;
  ASSERT_GT(reached, 0) << "no image reached the cloud tier";
  ASSERT_EQ(kill(pid, SIGSTOP), 0);
  int stopped = 0;  // kill returns before every thread has stopped: wait until they have
  ASSERT_EQ(waitpid(pid, &stopped, WUNTRACED), pid);
  double worst = 0;
  int degraded = 0;
  for (int64_t i = 0; i < images.size(); ++i) {
    InputBatch one;
    one.example_shape = images.example_shape;
    const int64_t size = images.ExampleSize();
    one.data.assign(images.data.begin() + i * size, images.data.begin() + (i + 1) * size);
    const auto t0 = std::chrono::steady_clock::now();
    auto r = (*edge)->Run(one);
    const double took = Since(t0);
    worst = std::max(worst, took);
    ASSERT_TRUE(r.ok());
    EXPECT_LT(took, kTimeoutMs / 1000.0 + 1.0) << "image " << i;
    if (warm->exit_tier[i] == 1) {
      EXPECT_TRUE(r->degraded[0]) << "image " << i;
      EXPECT_NE(r->answer[0], kAbstain);  // the edge tier's answer
      degraded += r->degraded[0];
    }
  }
  std::printf("stopped cloud: worst edge answer %.3f s (timeout_ms %d), %d degraded\n", worst, kTimeoutMs, degraded);
  kill(pid, SIGCONT);
  kill(pid, SIGTERM);
  int status = 0;
  waitpid(pid, &status, 0);
  fs::remove_all(dir);
}

// A hand-written Open Inference Protocol server, for responses coe serve never gives.
struct FakeServer {
  httplib::Server http;
  std::thread thread;
  int port = 0;
  std::atomic<int> infers{0};
  std::string metadata;
  std::function<void(const httplib::Request&, httplib::Response&, int)> infer;

  void Start() {
    http.Get("/v2/models/m", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(metadata, "application/json");
    });
    http.Post("/v2/models/m/infer",
              [this](const httplib::Request& req, httplib::Response& res) { infer(req, res, infers++); });
    port = http.bind_to_any_port("127.0.0.1");
    thread = std::thread([this] { http.listen_after_bind(); });
    while (!http.is_running()) std::this_thread::sleep_for(Ms(1));
  }
  ~FakeServer() {
    http.stop();
    if (thread.joinable()) thread.join();
  }
};

std::unique_ptr<Backend> RemoteTo(int port, int retries, const std::string& extra = "") {
  auto cat = ParseCatalogue("[models.m]\nbackend = \"remote\"\nurl = \"http://127.0.0.1:" + std::to_string(port) +
                                "/\"\nlabels = [\"a\", \"b\", \"c\"]\ninput_shape = [2]\ntimeout_ms = 500\nretries = " +
                                std::to_string(retries) + "\n" + extra,
                            "t.toml", "");
  EXPECT_TRUE(cat.ok()) << cat.status().ToString();
  auto b = CreateBackend(cat->models[0], BackendOptions{});
  EXPECT_TRUE(b.ok()) << b.status().ToString();
  return b.ok() ? std::move(*b) : nullptr;
}

InputBatch TwoExamples() {
  InputBatch in;
  in.example_shape = {2};
  in.data = {1, 2, 3, 4};
  return in;
}

TEST(Remote, OtherServersOutputsLogitsAndLabelOrder) {
  FakeServer fake;
  // Triton-like: the input is named "x", the only output is "logits" FP32 [-1, 3].
  fake.metadata = R"({"name":"m","platform":"onnxruntime","inputs":[{"name":"x","datatype":"FP32","shape":[-1,2]}],
                      "outputs":[{"name":"logits","datatype":"FP32","shape":[-1,3]}]})";
  std::string seen;
  fake.infer = [&](const httplib::Request& req, httplib::Response& res, int) {
    seen = req.body;
    res.set_content(R"({"model_name":"m","outputs":[{"name":"logits","datatype":"FP32","shape":[2,3],
                         "data":[0.5,-1,3, 10,20,-5]}]})",
                    "application/json");
  };
  fake.Start();
  auto b = RemoteTo(fake.port, 0);
  std::vector<Prediction> out;
  InputBatch in = TwoExamples();
  ASSERT_TRUE(b->Predict(in.View(), &out).ok());
  json req = json::parse(seen);
  EXPECT_EQ(req["inputs"][0]["name"], "x");
  EXPECT_EQ(req["inputs"][0]["shape"], json({2, 2}));
  EXPECT_EQ(req["inputs"][0]["data"], json({1, 2, 3, 4}));
  EXPECT_EQ(req["outputs"], json::parse(R"([{"name":"logits"}])"));
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].label, 2);  // argmax of the logits
  EXPECT_EQ(out[1].label, 1);
  EXPECT_NEAR(out[0].probs[0] + out[0].probs[1] + out[0].probs[2], 1.0, 1e-6);  // softmaxed
  EXPECT_FLOAT_EQ(out[0].score, out[0].probs[2]);

  // coe-style: labels by name, probabilities in the order the "labels" parameter gives.
  fake.metadata = R"({"name":"m","inputs":[{"name":"input","datatype":"FP32","shape":[-1,2]}],
                      "outputs":[{"name":"label","datatype":"BYTES","shape":[-1]},
                                 {"name":"probabilities","datatype":"FP32","shape":[-1,3]}]})";
  fake.infer = [&](const httplib::Request&, httplib::Response& res, int) {
    res.set_content(R"({"model_name":"m","parameters":{"labels":"[\"c\",\"a\",\"b\"]"},"outputs":[
                         {"name":"label","datatype":"BYTES","shape":[2],"data":["a","zebra"]},
                         {"name":"probabilities","datatype":"FP32","shape":[2,3],"data":[0.25,0.5,0.25,0.1,0.1,0.8]}]})",
                    "application/json");
  };
  auto c = RemoteTo(fake.port, 0);
  ASSERT_TRUE(c->Predict(in.View(), &out).ok());
  EXPECT_EQ(out[0].label, 0);  // "a"
  EXPECT_EQ(out[0].probs, (std::vector<float>{0.5f, 0.25f, 0.25f}));
  EXPECT_FLOAT_EQ(out[0].score, 0.5f);
  EXPECT_EQ(out[1].label, kAbstain);  // "zebra" is no catalogue label
  EXPECT_NE(out[1].error.find("zebra"), std::string::npos);
}

TEST(Remote, RetriesOn503ThenGivesUpOnBadResponses) {
  FakeServer fake;
  fake.metadata = R"({"name":"m","outputs":[{"name":"label","datatype":"BYTES","shape":[-1]}]})";
  fake.infer = [&](const httplib::Request&, httplib::Response& res, int n) {
    if (n == 0) {  // busy once: honoured with a (capped) Retry-After
      res.status = 503;
      res.set_header("Retry-After", "5");
      res.set_content("{\"error\":\"busy\"}", "application/json");
      return;
    }
    res.set_content(R"({"outputs":[{"name":"label","datatype":"BYTES","shape":[2],"data":["b","c"]}]})",
                    "application/json");
  };
  fake.Start();
  auto b = RemoteTo(fake.port, 2);
  std::vector<Prediction> out;
  InputBatch in = TwoExamples();
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(b->Predict(in.View(), &out).ok());
  EXPECT_LT(Since(t0), 1.0);  // Retry-After 5 s capped at 500 ms
  EXPECT_EQ(fake.infers.load(), 2);
  EXPECT_EQ(out[0].label, 1);
  EXPECT_EQ(out[1].label, 2);
  EXPECT_TRUE(std::isnan(out[0].score));  // no probabilities given

  // A malformed response, a wrong count, a 400: abstentions with the reason, no retry.
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"{\"outputs\":[", "bad response"},
      {R"({"outputs":[{"name":"label","datatype":"BYTES","shape":[1],"data":["b"]}]})", "1 labels for 2 examples"},
      {"400", "HTTP 400"},
  };
  for (const auto& [body, why] : bad) {
    fake.infers = 0;
    fake.infer = [&](const httplib::Request&, httplib::Response& res, int) {
      if (body == "400") {
        res.status = 400;
        res.set_content("{\"error\":\"wrong shape\"}", "application/json");
      } else {
        res.set_content(body, "application/json");
      }
    };
    auto c = RemoteTo(fake.port, 2);
    ASSERT_TRUE(c->Predict(in.View(), &out).ok());
    EXPECT_EQ(fake.infers.load(), 1) << why;
    for (const Prediction& p : out) {
      EXPECT_EQ(p.label, kAbstain);
      EXPECT_NE(p.error.find(why), std::string::npos) << p.error;
    }
  }
}

TEST(Remote, OversizedOrOutOfRangeResponsesAreAbstentions) {
  FakeServer fake;
  fake.metadata = R"({"name":"m","outputs":[{"name":"label","datatype":"BYTES","shape":[-1]},
                                           {"name":"probabilities","datatype":"FP32","shape":[-1,3]}]})";
  std::atomic<uint64_t> served{0};
  // 200 MiB of body: the edge stops reading past max_response_mb and keeps its memory.
  fake.infer = [&](const httplib::Request&, httplib::Response& res, int) {
    const size_t total = size_t{200} << 20;
    res.set_content_provider(total, "application/json",
                             [&served, total](size_t offset, size_t, httplib::DataSink& sink) {
                               static const std::string chunk(1 << 16, ' ');
                               const size_t n = std::min(chunk.size(), total - offset);
                               served += n;
                               return sink.write(chunk.data(), n);
                             });
  };
  fake.Start();
  auto b = RemoteTo(fake.port, 2, "max_response_mb = 1\n");
  std::vector<Prediction> out;
  InputBatch in = TwoExamples();
  ASSERT_TRUE(b->Predict(in.View(), &out).ok());
  for (const Prediction& p : out) {
    EXPECT_EQ(p.label, kAbstain);
    EXPECT_TRUE(p.failed);  // no answer came: a failure, not an abstention
    EXPECT_EQ(p.failure_kind, "too_large");
    EXPECT_NE(p.error.find("larger than 1048576 bytes"), std::string::npos) << p.error;
  }
  EXPECT_EQ(fake.infers.load(), 1);  // refused, not retried
  EXPECT_LT(b->stats().bytes_received.load(), 2u << 20);

  // Probabilities outside [0,1] abstain, row by row (the label alone is not trusted).
  auto answer = [&](const std::string& probs) {
    fake.infer = [probs](const httplib::Request&, httplib::Response& res, int) {
      res.set_content(R"({"outputs":[{"name":"label","datatype":"BYTES","shape":[2],"data":["a","c"]},
                          {"name":"probabilities","datatype":"FP32","shape":[2,3],"data":)" +
                          probs + "}]}",
                      "application/json");
    };
  };
  answer("[1.5,-0.5,0, 0.2,0.3,0.5]");
  auto c = RemoteTo(fake.port, 0);
  ASSERT_TRUE(c->Predict(in.View(), &out).ok());
  EXPECT_EQ(out[0].label, kAbstain);
  EXPECT_FALSE(out[0].failed);  // an answer came, unreadable: an abstention
  EXPECT_NE(out[0].error.find("outside [0,1]"), std::string::npos) << out[0].error;
  EXPECT_EQ(out[1].label, 2);  // the valid row stands
  EXPECT_FLOAT_EQ(out[1].score, 0.5f);
  // JSON has no infinity; a number past FP32's range makes the whole response unusable.
  answer("[1e39,0,0, 0.2,0.3,0.5]");
  ASSERT_TRUE(c->Predict(in.View(), &out).ok());
  for (const Prediction& p : out) {
    EXPECT_EQ(p.label, kAbstain);
    EXPECT_NE(p.error.find("does not fit in FP32"), std::string::npos) << p.error;
  }
}

TEST(Remote, RefusedConnectionsFailFastThenTheBreakerOpens) {
  const int port = ClosedPort();
  auto b = RemoteTo(port, 2);
  InputBatch in = TwoExamples();
  std::vector<Prediction> out;
  for (int i = 0; i < 3; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    ASSERT_TRUE(b->Predict(in.View(), &out).ok());
    EXPECT_LT(Since(t0), 0.5);  // refused at once; only the backoff waits
    EXPECT_NE(out[0].error.find("metadata"), std::string::npos) << out[0].error;
  }
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(b->Predict(in.View(), &out).ok());
  EXPECT_LT(Since(t0), 0.1);
  EXPECT_NE(out[0].error.find("in a row"), std::string::npos) << out[0].error;
  EXPECT_EQ(b->stats().errors.load(), 4u);
  EXPECT_EQ(b->stats().bytes_sent.load(), 0u);
}

// Hedging: a call that url has not answered within hedge_ms also goes to hedge_url;
// the first answer wins and the slow request is stopped (the call does not wait for
// it). A fast url is never hedged; an unreachable one fails over; when both hang the
// deadline still holds.
TEST(Remote, HedgingAsksTheSecondUrlWhenTheFirstIsSlow) {
  ServerOptions o;
  o.keep_alive_timeout_s = 1;
  auto slow = Server::Create({{"cnn8_16", SlowCascade("cnn8_16", Ms(2000))}}, o);
  auto fast = Server::Create({{"cnn8_16", SlowCascade("cnn8_16", Ms(0))}}, o);
  ASSERT_TRUE(slow.ok() && fast.ok());
  ASSERT_TRUE((*slow)->Start("127.0.0.1", 0).ok());
  ASSERT_TRUE((*fast)->Start("127.0.0.1", 0).ok());
  const int slow_port = (*slow)->port(), fast_port = (*fast)->port();
  auto hedged = [](int port, int hedge_port, int timeout_ms, double hedge_ms) {
    Catalogue cat =
        ParseOrDie(EdgeToml(port, timeout_ms, 1) + "hedge_url = \"http://127.0.0.1:" + std::to_string(hedge_port) +
                   "/\"\nhedge_ms = " + std::to_string(hedge_ms) + "\n");
    auto b = CreateBackend(*cat.Find("cnn8_16"), BackendOptions{});
    EXPECT_TRUE(b.ok()) << b.status().ToString();
    return b.ok() ? std::move(*b) : nullptr;
  };
  const InputBatch in = TestImages(5);
  auto local = CreateBackend(*ParseOrDie(ZooToml()).Find("cnn8_16"), BackendOptions{});
  ASSERT_TRUE(local.ok());
  std::vector<Prediction> want;
  ASSERT_TRUE((*local)->Predict(in.View(), &want).ok());
  auto expect_answers = [&](const std::vector<Prediction>& got) {
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i].label, want[i].label) << i << " " << got[i].error;
  };
  std::vector<Prediction> out;
  {  // url slow (2 s), hedge_url fast: answered by the hedge, without waiting for url
    auto b = hedged(slow_port, fast_port, 5000, 50);
    ASSERT_TRUE(b);
    const auto t0 = std::chrono::steady_clock::now();
    ASSERT_TRUE(b->Predict(in.View(), &out).ok());
    EXPECT_LT(Since(t0), 1.5);
    expect_answers(out);
    EXPECT_EQ(b->stats().hedges.load(), 1u);
    EXPECT_EQ(b->stats().hedge_wins.load(), 1u);
    EXPECT_EQ(b->stats().errors.load(), 0u);
  }
  {  // url fast: never hedged
    auto b = hedged(fast_port, slow_port, 5000, 1000);
    ASSERT_TRUE(b);
    const auto t0 = std::chrono::steady_clock::now();
    ASSERT_TRUE(b->Predict(in.View(), &out).ok());
    EXPECT_LT(Since(t0), 1.5);
    expect_answers(out);
    EXPECT_EQ(b->stats().hedges.load(), 0u);
  }
  {  // url refuses connections, hedge_ms 0: fail over to hedge_url
    const int closed = ClosedPort();
    auto b = hedged(closed, fast_port, 5000, 0);
    ASSERT_TRUE(b);
    ASSERT_TRUE(b->Predict(in.View(), &out).ok());
    expect_answers(out);
    EXPECT_EQ(b->stats().hedges.load(), 1u);
    EXPECT_EQ(b->stats().hedge_wins.load(), 1u);
  }
  {  // both hang: the call still ends at its deadline, and names both failures
    auto b = hedged(slow_port, slow_port, 400, 50);
    ASSERT_TRUE(b);
    const auto t0 = std::chrono::steady_clock::now();
    ASSERT_TRUE(b->Predict(in.View(), &out).ok());
    EXPECT_LT(Since(t0), 0.4 + 0.6);
    ASSERT_EQ(out.size(), 5u);
    for (const Prediction& p : out) {
      EXPECT_EQ(p.label, kAbstain);
      EXPECT_NE(p.error.find("hedge_url"), std::string::npos) << p.error;
    }
  }
}

TEST(Remote, CatalogueErrors) {
  auto make = [](const std::string& toml) {
    auto cat = ParseCatalogue("[models.m]\nbackend = \"remote\"\n" + toml, "t.toml", "");
    EXPECT_TRUE(cat.ok()) << cat.status().ToString();
    return CreateBackend(cat->models[0], BackendOptions{});
  };
  EXPECT_NE(make("labels = [\"a\"]\n").status().message().find("needs a url"), std::string::npos);
  EXPECT_NE(make("url = \"ftp://x\"\nlabels = [\"a\"]\n").status().message().find("http://"), std::string::npos);
  EXPECT_NE(make("url = \"http://\"\nlabels = [\"a\"]\n").status().message().find("no host"), std::string::npos);
  EXPECT_NE(make("url = \"http://h:1\"\n").status().message().find("labels"), std::string::npos);
  auto ok = make("url = \"http://127.0.0.1:1/prefix/\"\nlabels = [\"a\"]\n");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ((*ok)->info().kind, "remote");
  // Inputs of the wrong shape are misuse: a non-OK status, every example abstains.
  auto shaped = make("url = \"http://127.0.0.1:1\"\nlabels = [\"a\"]\ninput_shape = [3]\n");
  InputBatch in = TwoExamples();
  std::vector<Prediction> out;
  EXPECT_EQ((*shaped)->Predict(in.View(), &out).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(out.size(), 2u);
  EXPECT_NE(make("url = \"http://h:1\"\nlabels = [\"a\"]\nhedge_ms = 50\n").status().message().find("hedge_url"),
            std::string::npos);
  EXPECT_NE(make("url = \"http://h:1\"\nlabels = [\"a\"]\nhedge_url = \"h2\"\n").status().message().find("hedge_url"),
            std::string::npos);
  EXPECT_NE(
      make("url = \"http://h:1\"\nlabels = [\"a\"]\nhedge_url = \"http://h:2\"\nhedge_ms = 500\ntimeout_ms = 400\n")
          .status()
          .message()
          .find("under timeout_ms"),
      std::string::npos);
}

// A row of scores summing to 1 within kProbabilitySumTolerance (base/numbers.h, 0.01:
// the rule recordings are read by) is taken as probabilities, as it would be read from
// a recording; the remote rule was 1e-3, so a server rounding to 1.005 was softmaxed.
TEST(Remote, ScoresSummingToOneWithinTheRecordingsToleranceAreProbabilities) {
  FakeServer fake;
  fake.metadata = R"({"name":"m","outputs":[{"name":"scores","datatype":"FP32","shape":[-1,3]}]})";
  fake.infer = [](const httplib::Request&, httplib::Response& res, int) {
    res.set_content(R"({"outputs":[{"name":"scores","datatype":"FP32","shape":[2,3],
                        "data":[0.5,0.3,0.205,3.0,1.0,0.5]}]})",
                    "application/json");
  };
  fake.Start();
  std::vector<Prediction> out;
  const InputBatch in = TwoExamples();
  ASSERT_TRUE(RemoteTo(fake.port, 0)->Predict(in.View(), &out).ok());
  ASSERT_EQ(out[0].probs.size(), 3u) << out[0].error;
  EXPECT_FLOAT_EQ(out[0].probs[0], 0.5f);  // as given, not a softmax of them
  EXPECT_FLOAT_EQ(out[0].probs[2], 0.205f);
  EXPECT_EQ(out[0].label, 0);
  // Scores far from summing to 1 are still logits.
  ASSERT_EQ(out[1].probs.size(), 3u) << out[1].error;
  EXPECT_NEAR(out[1].probs[0], std::exp(3.0) / (std::exp(3.0) + std::exp(1.0) + std::exp(0.5)), 1e-6);
}

// One backoff for every HTTP backend (backends/http_client.h): a Retry-After is waited
// up to 2 s, and at most half of the time left before the deadline, then the retry is
// answered. (Before the shared client, remote waited at most 500 ms whatever the
// Retry-After, and openai gave up at once when the Retry-After passed the deadline.)
TEST(HttpBackends, OneBackoffHonoursRetryAfterUpToItsCapAndHalfTheTimeLeft) {
  FakeServer fake;
  fake.metadata = R"({"name":"m","outputs":[{"name":"label","datatype":"BYTES","shape":[-1]}]})";
  std::atomic<int> retry_after_s{1};
  auto busy = [&](httplib::Response& res) {
    res.status = 429;
    res.set_header("Retry-After", std::to_string(retry_after_s.load()));
    res.set_content("{\"error\":\"slow down\"}", "application/json");
  };
  fake.infer = [&](const httplib::Request&, httplib::Response& res, int n) {
    if (n % 2 == 0) return busy(res);
    res.set_content(R"({"outputs":[{"name":"label","datatype":"BYTES","shape":[2],"data":["b","c"]}]})",
                    "application/json");
  };
  std::atomic<int> chats{0};
  fake.http.Post("/v1/chat/completions", [&](const httplib::Request&, httplib::Response& res) {
    if (chats++ % 2 == 0) return busy(res);
    res.set_content(R"({"choices":[{"message":{"content":"The answer is (B)."},"finish_reason":"stop"}],
                        "usage":{"prompt_tokens":10,"completion_tokens":5}})",
                    "application/json");
  });
  fake.Start();
  const std::string url = "url = \"http://127.0.0.1:" + std::to_string(fake.port);
  struct Case {
    int timeout_ms, retry_after_s;
    double least_s;  // the wait: the Retry-After (1 s), or half of the time left (~0.5 s)
  };
  for (const Case& c : {Case{3000, 1, 0.9}, Case{1000, 30, 0.4}}) {
    retry_after_s = c.retry_after_s;
    const std::string common = "timeout_ms = " + std::to_string(c.timeout_ms) + "\nretries = 2\n";
    auto cat = ParseCatalogue("[models.m]\nbackend = \"remote\"\n" + url +
                                  "/\"\nlabels = [\"a\", \"b\", \"c\"]\ninput_shape = [2]\nwire = \"json\"\n" + common +
                                  "[models.chat]\nbackend = \"openai\"\n" + url +
                                  "/v1\"\nprompt = \"{input}\"\nanswer = \"choice\"\n" + common,
                              "t.toml", "");
    ASSERT_TRUE(cat.ok()) << cat.status().ToString();
    for (const ModelSpec& spec : cat->models) {
      SCOPED_TRACE(spec.name + " with timeout_ms " + std::to_string(c.timeout_ms));
      auto b = CreateBackend(spec, BackendOptions{});
      ASSERT_TRUE(b.ok()) << b.status().ToString();
      InputBatch in = TwoExamples();
      if (spec.backend == "openai") in.texts = {R"({"input": "Which letter?"})"};
      fake.infers = 0;
      chats = 0;
      std::vector<Prediction> out;
      const auto t0 = std::chrono::steady_clock::now();
      ASSERT_TRUE((*b)->Predict(in.View(), &out).ok());
      EXPECT_GE(Since(t0), c.least_s);
      ASSERT_FALSE(out[0].failed) << out[0].error;
      if (spec.backend == "openai") {
        EXPECT_EQ(out[0].answer, "B");
        EXPECT_EQ(chats.load(), 2);
      } else {
        EXPECT_EQ(out[0].label, 1);
        EXPECT_EQ(fake.infers.load(), 2);
      }
    }
  }
}

}  // namespace
}  // namespace coe
