// Replacement without downtime (Server::Reload, POST /coe/reload, coe serve's SIGHUP):
// real servers on loopback, real files.
#include <signal.h>
#include <sys/wait.h>

#include <future>

#include "server_testing.h"

namespace coe::testing {
namespace {

namespace fs = std::filesystem;

// A directory of the test's files, removed at the end.
class TempDir {
 public:
  TempDir()
      : path_(fs::temp_directory_path() / ("coe_reload_" + std::to_string(::getpid()) + "_" +
                                           ::testing::UnitTest::GetInstance()->current_test_info()->name())) {
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string Write(const std::string& name, const std::string& text) const {
    std::ofstream(path_ / name) << text;
    return (path_ / name).string();
  }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

// What coe serve's load does: both files read again.
std::function<StatusOr<CascadeSource>()> FilesLoader(const std::string& cascade, const std::string& catalogue) {
  return [cascade, catalogue]() -> StatusOr<CascadeSource> {
    CascadeSource s;
    s.origin = "cascade " + cascade + ", catalogue " + catalogue;
    COE_ASSIGN_OR_RETURN(s.spec, ReadCascade(cascade));
    COE_ASSIGN_OR_RETURN(s.catalogue, ReadCatalogue(catalogue));
    return s;
  };
}

constexpr const char* kTwoTier =
    "name = \"fashion\"\n[[tiers]]\nmembers = [\"linear\", \"mlp256x2\"]\nmin_agreement = 1.0\n"
    "[[tiers]]\nmembers = [\"cnn8_16\"]\n";
constexpr const char* kOneTier = "name = \"fashion\"\n[[tiers]]\nmembers = [\"cnn8_16\"]\n";

// The exit tiers of an infer request of 64 images to `model`.
std::vector<int> ExitTiers(int port, const std::string& model, int* status) {
  const Reply r = Http(port, "POST", "/v2/models/" + model + "/infer", InferBody(TestImages(64)));
  *status = r.status;
  const json* t = Output(r.body, "exit_tier");
  return t ? (*t)["data"].get<std::vector<int>>() : std::vector<int>{};
}

// A metric's value on the /metrics page ("" when absent).
std::string Metric(int port, const std::string& series) {
  const Reply r = Http(port, "GET", "/metrics");
  const size_t at = r.raw.find("\n" + series + " ");
  if (at == std::string::npos) return "";
  const size_t from = at + series.size() + 2;
  return r.raw.substr(from, r.raw.find('\n', from) - from);
}

// POST /coe/reload swaps the cascade: new requests run on the new one (its tiers), a
// member it no longer has is 404, the answer says what was loaded, and the metrics count
// it; a broken file (parse error, missing model file) leaves the old one serving and the
// 500 names the file and the error; Reload() (SIGHUP's entry point) does the same.
TEST(Reload, PostSwapsTheCascadeAndABrokenFileKeepsTheOldOne) {
  TempDir dir;
  const std::string zoo = dir.Write("zoo.toml", ZooToml());
  const std::string cascade = dir.Write("cascade.toml", kTwoTier);
  auto cat = ReadCatalogue(zoo);
  auto spec = ReadCascade(cascade);
  ASSERT_TRUE(cat.ok() && spec.ok());
  ServerOptions so;
  so.access_log = AccessLog::kOff;
  std::vector<std::string> logged;
  std::mutex log_mu;
  so.log = [&](const std::string& line) {
    std::lock_guard<std::mutex> lock(log_mu);
    logged.push_back(line);
  };
  so.load = FilesLoader(cascade, zoo);
  Served s = ServeOnLoopback(*spec, *cat, so);
  ASSERT_TRUE(s.server);
  const int port = s.server->port();
  int status = 0;
  std::vector<int> tiers = ExitTiers(port, "fashion", &status);
  ASSERT_EQ(status, 200);
  EXPECT_NE(std::find(tiers.begin(), tiers.end(), 2), tiers.end()) << "64 images: some defer to tier 2";
  EXPECT_EQ(Http(port, "GET", "/v2/models/mlp256x2").status, 200);
  EXPECT_EQ(Metric(port, "coe_cascade_generation"), "1");

  dir.Write("cascade.toml", kOneTier);
  Reply r = Http(port, "POST", "/coe/reload");
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(r.body["generation"], 2);
  EXPECT_EQ(r.body["model"], "fashion");
  EXPECT_EQ(r.body["tiers"], json::parse("[[\"cnn8_16\"]]"));
  EXPECT_EQ(r.body["models"], json::parse("[\"fashion\", \"cnn8_16\"]"));
  tiers = ExitTiers(port, "fashion", &status);
  ASSERT_EQ(status, 200);
  EXPECT_EQ(tiers, std::vector<int>(64, 1));                        // one tier now
  EXPECT_EQ(Http(port, "GET", "/v2/models/mlp256x2").status, 404);  // a member gone
  EXPECT_EQ(Http(port, "POST", "/v2/models/mlp256x2/infer", InferBody(TestImages(1))).status, 404);
  EXPECT_EQ(s.server->generation(), 2u);

  // A parse error: 500 naming the file and what is wrong; the old cascade serves.
  dir.Write("cascade.toml", "[[tiers]\nmembers = [\"cnn8_16\"]\n");
  r = Http(port, "POST", "/coe/reload");
  EXPECT_EQ(r.status, 500) << r.raw;
  const std::string why = r.body.value("error", "");
  EXPECT_NE(why.find("reload failed, still serving generation 2"), std::string::npos) << why;
  EXPECT_NE(why.find(cascade), std::string::npos) << why;
  EXPECT_EQ(r.body["generation"], 2);
  tiers = ExitTiers(port, "fashion", &status);
  EXPECT_EQ(status, 200);
  EXPECT_EQ(tiers, std::vector<int>(64, 1));

  // A missing model file, through Reload() (what coe serve's SIGHUP calls).
  dir.Write("zoo.toml", ZooToml("[models.ghost]\nbackend = \"onnx\"\npath = \"" + (dir / "ghost.onnx") + "\"\n"));
  dir.Write("cascade.toml", "name = \"fashion\"\n[[tiers]]\nmembers = [\"ghost\"]\n");
  StatusOr<ReloadInfo> info = s.server->Reload();
  ASSERT_FALSE(info.ok());
  EXPECT_NE(info.status().message().find("ghost.onnx"), std::string::npos) << info.status().message();
  EXPECT_EQ(s.server->generation(), 2u);
  tiers = ExitTiers(port, "fashion", &status);
  EXPECT_EQ(status, 200);

  // And back, through Reload().
  dir.Write("cascade.toml", kTwoTier);
  info = s.server->Reload();
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->generation, 3u);
  EXPECT_EQ(Http(port, "GET", "/v2/models/mlp256x2").status, 200);
  EXPECT_EQ(Metric(port, "coe_reloads_total{outcome=\"ok\"}"), "2");
  EXPECT_EQ(Metric(port, "coe_reloads_total{outcome=\"failed\"}"), "2");
  EXPECT_EQ(Metric(port, "coe_cascade_generation"), "3");
  std::lock_guard<std::mutex> lock(log_mu);
  int failed_lines = 0;
  for (const std::string& line : logged)
    if (line.find("reload failed") != std::string::npos && line.find(cascade) != std::string::npos) ++failed_lines;
  EXPECT_EQ(failed_lines, 2);
}

// With the front door's key, POST /coe/reload needs it: 401 in the model routes' shape.
TEST(Reload, TheRouteNeedsTheKey) {
  TempDir dir;
  const std::string zoo = dir.Write("zoo.toml", ZooToml());
  const std::string cascade = dir.Write("cascade.toml", kOneTier);
  ServerOptions so;
  so.access_log = AccessLog::kOff;
  so.api_key = "sesame";
  so.log = [](const std::string&) {};
  so.load = FilesLoader(cascade, zoo);
  Served s = ServeOnLoopback(*ReadCascade(cascade), *ReadCatalogue(zoo), so);
  ASSERT_TRUE(s.server);
  const int port = s.server->port();
  httplib::Client c("127.0.0.1", port);
  for (const std::string& key : {std::string(), std::string("wrong")}) {
    httplib::Headers h;
    if (!key.empty()) h.emplace("Authorization", "Bearer " + key);
    auto r = c.Post("/coe/reload", h, "", "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 401) << r->body;
    EXPECT_TRUE(json::parse(r->body, nullptr, false).contains("error")) << r->body;
    EXPECT_TRUE(r->has_header("WWW-Authenticate")) << r->body;
  }
  EXPECT_EQ(s.server->generation(), 1u);
  auto ok = c.Post("/coe/reload", {{"Authorization", "Bearer sesame"}}, "", "application/json");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200) << ok->body;
  EXPECT_EQ(s.server->generation(), 2u);
  // A body is refused: the route loads the server's own files, nothing sent.
  auto b = c.Post("/coe/reload", {{"Authorization", "Bearer sesame"}}, "{\"tiers\": []}", "application/json");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->status, 400) << b->body;
}

// A request in flight when the cascade is replaced finishes on the old one (its member
// reached, its facts), the member route it used too though the new cascade drops that
// member; a request after the reload runs on the new one. The response cache never
// answers for the other cascade: the old request's reply, stored after the reload, is
// not the new cascade's answer to the same request.
TEST(Reload, InFlightRequestsFinishOnTheOldCascade) {
  ChatUpstream up(4);
  up.replay.latency_ms["c"] = 1500;  // the old cascade's last tier is slow
  TempDir dir;
  up.replay.Start();
  const std::string catalogue = dir.Write("chat.toml", up.CatalogueToml());
  const std::string cascade = dir.Write("cascade.toml", ChatUpstream::kCascadeToml);
  ServerOptions so;
  so.name = "chat";
  so.access_log = AccessLog::kOff;
  so.log = [](const std::string&) {};
  so.cache_bytes = 1 << 20;
  so.load = FilesLoader(cascade, catalogue);
  Served s = ServeOnLoopback(*ReadCascade(cascade), *ReadCatalogue(catalogue), so);
  ASSERT_TRUE(s.server);
  const int port = s.server->port();
  auto old_cascade =
      std::async(std::launch::async, [&] { return Http(port, "POST", "/v1/chat/completions", ChatUpstream::Body(0)); });
  json member_body = json::parse(ChatUpstream::Body(1));
  member_body["model"] = "c";
  auto old_member =
      std::async(std::launch::async, [&] { return Http(port, "POST", "/v1/chat/completions", member_body.dump()); });
  // Both have reached c (the old cascade's tier 2, and the member served alone).
  const auto t0 = std::chrono::steady_clock::now();
  while ((up.Calls("c", 0) == 0 || up.Calls("c", 1) == 0) && Since(t0) < 20)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  ASSERT_EQ(up.Calls("c", 0), 1);
  ASSERT_EQ(up.Calls("c", 1), 1);

  dir.Write("cascade.toml", "[[tiers]]\nmembers = [\"a\"]\n");  // a alone: answers A at tier 1
  StatusOr<ReloadInfo> info = s.server->Reload();
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  const Reply fresh = Http(port, "POST", "/v1/chat/completions", ChatUpstream::Body(2));
  ASSERT_EQ(fresh.status, 200) << fresh.raw;
  EXPECT_EQ(fresh.body["coe"]["answer"], "A");
  EXPECT_EQ(fresh.body["coe"]["exit_tier"], 1);
  member_body = json::parse(ChatUpstream::Body(3));
  member_body["model"] = "c";
  EXPECT_EQ(Http(port, "POST", "/v1/chat/completions", member_body.dump()).status, 404);  // c is gone

  const Reply old = old_cascade.get();
  ASSERT_EQ(old.status, 200) << old.raw;
  EXPECT_EQ(old.body["coe"]["answer"], "C");
  EXPECT_EQ(old.body["coe"]["exit_tier"], 2);
  const Reply member = old_member.get();
  ASSERT_EQ(member.status, 200) << member.raw;
  EXPECT_EQ(member.body["coe"]["answer"], "C");
  EXPECT_EQ(up.Calls("c", 2), 0);  // the new cascade never called c

  // The old cascade's reply to q0 was stored after the reload; the new one answers q0 itself, then from the cache.
  const Reply again = Http(port, "POST", "/v1/chat/completions", ChatUpstream::Body(0));
  ASSERT_EQ(again.status, 200) << again.raw;
  EXPECT_EQ(again.body["coe"]["answer"], "A");
  EXPECT_FALSE(again.body["coe"].value("cached", false)) << again.raw;
  const Reply cached = Http(port, "POST", "/v1/chat/completions", ChatUpstream::Body(0));
  EXPECT_EQ(cached.body["coe"]["answer"], "A");
  EXPECT_TRUE(cached.body["coe"].value("cached", false)) << cached.raw;
}

// coe serve reloads on SIGHUP (the signal sent to the child process only).
TEST(Reload, CoeServeReloadsOnSighup) {
  TempDir dir;
  const std::string zoo = dir.Write("zoo.toml", ZooToml());
  const std::string cascade = dir.Write("cascade.toml", kTwoTier);
  const ServeProcess p = SpawnServe({"--cascade", cascade, "--models", zoo, "--port", "0", "--quiet"});
  ASSERT_GT(p.port, 0) << p.line;
  int status = 0;
  EXPECT_EQ(ExitTiers(p.port, "fashion", &status).size(), 64u);
  dir.Write("cascade.toml", kOneTier);
  ASSERT_EQ(kill(p.pid, SIGHUP), 0);
  const auto t0 = std::chrono::steady_clock::now();
  while (Metric(p.port, "coe_cascade_generation") != "2" && Since(t0) < 20)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(Metric(p.port, "coe_cascade_generation"), "2");
  EXPECT_EQ(ExitTiers(p.port, "fashion", &status), std::vector<int>(64, 1));
  EXPECT_EQ(Http(p.port, "GET", "/v2/models/mlp256x2").status, 404);
  ASSERT_EQ(kill(p.pid, SIGTERM), 0);
  int exit_status = 0;
  ASSERT_EQ(waitpid(p.pid, &exit_status, 0), p.pid);
  EXPECT_TRUE(WIFEXITED(exit_status) && WEXITSTATUS(exit_status) == 0);
}

}  // namespace
}  // namespace coe::testing
