// Shared by server_test.cc, remote_test.cc and the chat front door's tests: the zoo
// catalogue, test images, request bodies, an HTTP client on loopback, a slow backend and
// a server started on loopback with its client.
#ifndef COE_TESTS_SERVER_TESTING_H_
#define COE_TESTS_SERVER_TESTING_H_

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "coe/backend.h"
#include "coe/cascade.h"
#include "coe/dataset.h"
#include "coe/server.h"
#include "protocol/oip.h"
#include "testing.h"
#include "testing/openai_replay.h"

namespace coe::testing {

using json = nlohmann::json;

inline const std::string kZoo = ZooDir();
inline const char* const kLabelsToml =
    "labels = [\"tshirt\", \"trouser\", \"pullover\", \"dress\", \"coat\", \"sandal\", \"shirt\", "
    "\"sneaker\", \"bag\", \"boot\"]\n";
inline const std::vector<std::string> kLabelNames = {"tshirt", "trouser", "pullover", "dress", "coat",
                                                     "sandal", "shirt",   "sneaker",  "bag",   "boot"};

// linear, mlp256x2, cnn8_16 as onnx models; `extra` is appended (more models).
inline std::string ZooToml(const std::string& extra = "") {
  return std::string("[defaults]\ninput_shape = [1, 28, 28]\n") + kLabelsToml +
         "scale = 0.00392156862745098\nmean = 0.2860\nstd = 0.3530\n"
         "[models.linear]\nbackend = \"onnx\"\npath = \"" +
         kZoo +
         "linear.onnx\"\nmacs = 7840\n"
         "[models.mlp256x2]\nbackend = \"onnx\"\npath = \"" +
         kZoo +
         "mlp256x2.onnx\"\nmacs = 235000\n"
         "[models.cnn8_16]\nbackend = \"onnx\"\npath = \"" +
         kZoo + "cnn8_16.onnx\"\nmacs = 290000\n" + extra;
}

inline Catalogue ParseOrDie(const std::string& toml) {
  auto c = ParseCatalogue(toml, "test.toml", "");
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? *c : Catalogue{};
}

// Serves the cascade file `cascade` over the catalogue file `catalogue` as model `name`,
// on an ephemeral loopback port (Server::port()); null, with a test failure, when it
// cannot.
inline std::unique_ptr<Server> ServeFiles(const std::string& cascade, const std::string& catalogue,
                                          const std::string& name) {
  auto cat = ReadCatalogue(catalogue);
  auto spec = ReadCascade(cascade);
  EXPECT_TRUE(cat.ok() && spec.ok()) << cat.status().ToString() << " " << spec.status().ToString();
  if (!cat.ok() || !spec.ok()) return nullptr;
  ServerOptions so;
  so.name = name;
  auto s = Server::Create(*spec, *cat, EngineOptions{}, so);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  if (!s.ok()) return nullptr;
  const Status started = (*s)->Start("127.0.0.1", 0);
  EXPECT_TRUE(started.ok()) << started.ToString();
  return started.ok() ? std::move(*s) : nullptr;
}

// {linear, mlp256x2} unanimous -> {cnn8_16}.
inline CascadeSpec TwoTier(const std::string& name = "fashion") {
  CascadeSpec s;
  s.name = name;
  s.tiers.push_back(TierSpec{{"linear", "mlp256x2"}, DeferralRule{1.0, std::nullopt}});
  s.tiers.push_back(TierSpec{{"cnn8_16"}, {}});
  return s;
}

// The first n Fashion-MNIST test images (raw pixels 0..255).
inline InputBatch TestImages(int64_t n) {
  DatasetOptions o;
  o.expected_shape = {1, 28, 28};
  o.end = n;
  auto b = LoadDataset("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz", o);
  EXPECT_TRUE(b.ok()) << b.status().ToString();
  return b.ok() ? *b : InputBatch{};
}

// An infer request body for `batch`, the shape given (default [N, ...example_shape]).
inline std::string InferBody(const InputBatch& batch, const std::vector<std::string>& outputs = {},
                             std::vector<int64_t> shape = {}) {
  if (shape.empty()) {
    shape = {batch.size()};
    shape.insert(shape.end(), batch.example_shape.begin(), batch.example_shape.end());
  }
  std::string b =
      "{\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP32\",\"shape\":" + json(shape).dump() + ",\"data\":[";
  for (size_t i = 0; i < batch.data.size(); ++i) {
    if (i) b += ',';
    oip::AppendFloat(&b, batch.data[i]);
  }
  b += "]}]";
  if (!outputs.empty()) {
    json o = json::array();
    for (const std::string& name : outputs) o.push_back({{"name", name}});
    b += ",\"outputs\":" + o.dump();
  }
  return b + "}";
}

struct Reply {
  int status = 0;  // 0: no HTTP response
  json body;
  std::string raw;
  httplib::Headers headers;
};

inline Reply Http(int port, const std::string& method, const std::string& path, const std::string& body = "") {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(std::chrono::seconds(20));
  auto r = method == "GET" ? c.Get(path) : c.Post(path, body, "application/json");
  Reply out;
  if (!r) return out;
  out.status = r->status;
  out.raw = r->body;
  out.headers = r->headers;
  out.body = json::parse(r->body, nullptr, false);
  return out;
}

// The output tensor `name` of an infer response, or null.
// A server of `spec` over `catalogue` started on an ephemeral loopback port, and a client
// of it keeping one connection (its requests are answered, and counted, in order).
// On failure: a test failure, and a null server.
struct Served {
  std::unique_ptr<Server> server;
  std::unique_ptr<httplib::Client> client;
};
inline Served ServeOnLoopback(const CascadeSpec& spec, const Catalogue& catalogue, const ServerOptions& options) {
  Served out;
  auto s = Server::Create(spec, catalogue, EngineOptions{}, options);
  if (!s.ok() || !(*s)->Start("127.0.0.1", 0).ok()) {
    ADD_FAILURE() << "cannot serve the cascade: " << (s.ok() ? "Start failed" : s.status().ToString());
    return out;
  }
  out.server = std::move(*s);
  out.client = std::make_unique<httplib::Client>("127.0.0.1", out.server->port());
  out.client->set_read_timeout(30, 0);
  out.client->set_keep_alive(true);
  return out;
}

inline const json* Output(const json& response, const std::string& name) {
  if (!response.contains("outputs")) return nullptr;
  for (const json& o : response["outputs"])
    if (o.value("name", "") == name) return &o;
  return nullptr;
}

// Wraps a backend and sleeps before each call (a slow model).
class SlowBackend : public Backend {
 public:
  SlowBackend(std::unique_ptr<Backend> inner, std::chrono::milliseconds delay)
      : inner_(std::move(inner)), delay_(delay) {}
  const BackendInfo& info() const override { return inner_->info(); }
  Status Predict(const InputView& batch, std::vector<Prediction>* out) override {
    std::this_thread::sleep_for(delay_);
    return inner_->Predict(batch, out);
  }

 private:
  std::unique_ptr<Backend> inner_;
  std::chrono::milliseconds delay_;
};

// A one-model cascade named `name` over the zoo model `model`, slowed by `delay`.
inline std::shared_ptr<const Cascade> SlowCascade(const std::string& model, std::chrono::milliseconds delay) {
  Catalogue cat = ParseOrDie(ZooToml());
  auto b = CreateBackend(*cat.Find(model), BackendOptions{});
  EXPECT_TRUE(b.ok()) << b.status().ToString();
  CascadeSpec spec;
  spec.tiers.push_back(TierSpec{{model}, {}});
  std::vector<std::unique_ptr<Backend>> backends;
  backends.push_back(std::make_unique<SlowBackend>(std::move(*b), delay));
  auto c = Cascade::FromBackends(spec, std::move(backends), {1.0}, EngineOptions{.threads = 2});
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return std::shared_ptr<const Cascade>(std::move(*c));
}

// A TCP connection to 127.0.0.1:port, or -1.
inline int Dial(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// A loopback server that takes connections and never answers (a hung upstream): the
// kernel completes the handshakes and buffers what clients send; nothing reads it.
class HungServer {
 public:
  HungServer() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    socklen_t len = sizeof a;
    if (bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 && listen(fd_, 128) == 0 &&
        getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0)
      port_ = ntohs(a.sin_port);
  }
  ~HungServer() { close(fd_); }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

// `coe serve ARGS...` in a child process: its pid, the line it prints once serving,
// and the port that line names (0 when it printed none).
struct ServeProcess {
  pid_t pid = -1;
  std::string line;
  int port = 0;
};
// `address_space_bytes` > 0: the child's RLIMIT_AS.
inline ServeProcess SpawnServe(const std::vector<std::string>& args, rlim_t address_space_bytes = 0) {
  ServeProcess p;
  int out[2];
  if (pipe(out) != 0) return p;
  p.pid = fork();
  if (p.pid == 0) {
    if (address_space_bytes > 0) {
      const rlimit lim{address_space_bytes, address_space_bytes};
      setrlimit(RLIMIT_AS, &lim);
    }
    dup2(out[1], 1);
    close(out[0]);
    const std::string bin = CoeBinary();
    std::vector<char*> argv = {const_cast<char*>(bin.c_str()), const_cast<char*>("serve")};
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(bin.c_str(), argv.data());
    _exit(127);
  }
  close(out[1]);
  char c;
  while (read(out[0], &c, 1) == 1 && c != '\n') p.line += c;
  close(out[0]);
  const size_t colon = p.line.rfind(':');
  if (colon != std::string::npos) p.port = std::atoi(p.line.c_str() + colon + 1);
  return p;
}

// A chat cascade over an OpenAI-compatible server on loopback that replays answers
// (testing/openai_replay.h): questions q0..q{n-1}; members "a" and "b" (tier 1,
// unanimous) answer A and B, so every question defers to "c" (tier 2), which answers
// C. Each prompt is the user message ({input}); it names its question as "[id:qK]".
class ChatUpstream {
 public:
  explicit ChatUpstream(int questions = 64) {
    dir_ = std::filesystem::temp_directory_path() / ("coe_chat_" + std::to_string(::getpid()) + "_" +
                                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    std::ofstream csv(dir_ / "answers.csv");
    csv << "id,label,a,b,c,a|cost,b|cost,c|cost\n";
    for (int i = 0; i < questions; ++i) csv << "q" << i << ",C,A,B,C,0.00001,0.00001,0.0001\n";
    csv.close();
    EXPECT_TRUE(replay.Load((dir_ / "answers.csv").string()));
  }
  ~ChatUpstream() {
    replay.Stop();
    std::filesystem::remove_all(dir_);
  }
  // The catalogue of a, b and c (after Start): `timeout_ms` and `retries` for each.
  std::string CatalogueToml(int timeout_ms = 20000, int retries = 0) const {
    return "[defaults]\nbackend = \"openai\"\nurl = \"http://127.0.0.1:" + std::to_string(replay.port()) +
           "/v1\"\nprompt = \"{input}\"\nanswer = \"choice\"\n"
           "usd_per_mtok_in = 1.0\nusd_per_mtok_out = 1.0\ntimeout_ms = " +
           std::to_string(timeout_ms) + "\nretries = " + std::to_string(retries) +
           "\nmax_concurrency = 64\n[models.a]\n[models.b]\n[models.c]\n";
  }
  static constexpr const char* kCascadeToml =
      "[[tiers]]\nmembers = [\"a\", \"b\"]\nmin_agreement = 1.0\n[[tiers]]\nmembers = [\"c\"]\n";
  // Starts the replay server (after setting replay.latency_ms) and returns the served
  // cascade "chat" of a, b -> c; `timeout_ms` and `retries` for every member.
  StatusOr<std::unique_ptr<Server>> Serve(ServerOptions so = {}, int timeout_ms = 20000, int retries = 0) {
    replay.Start();
    auto cat = ParseCatalogue(CatalogueToml(timeout_ms, retries), "chat.toml", "");
    if (!cat.ok()) return cat.status();
    auto spec = ParseCascade(kCascadeToml, "chat-cascade");
    if (!spec.ok()) return spec.status();
    so.name = "chat";
    so.access_log = AccessLog::kOff;
    return Server::Create(*spec, *cat, EngineOptions{}, so);
  }
  // A chat request body for question `k`, its user message padded to `pad` bytes.
  static std::string Body(int k, size_t pad = 0) {
    std::string user = "[id:q" + std::to_string(k) + "] Which option? ";
    if (pad > user.size()) user.append(pad - user.size(), 'x');
    json b = {{"model", "chat"}, {"messages", {{{"role", "user"}, {"content", user}}}}};
    return b.dump();
  }
  // Upstream calls made to member `m` ("a", "b", "c") for question k.
  int Calls(const std::string& m, int k) { return replay.Attempts(m, "q" + std::to_string(k)); }

  const std::filesystem::path& dir() const { return dir_; }

  OpenAiReplay replay;

 private:
  std::filesystem::path dir_;
};

inline double Since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace coe::testing

#endif  // COE_TESTS_SERVER_TESTING_H_
