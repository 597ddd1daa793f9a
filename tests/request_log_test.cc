// The request log of `coe serve --log` (coe/request_log.h, issue 25): it round-trips
// (`coe record` on a served log reproduces, byte for byte, the answers the log says
// each member gave, for the zoo's tensor models and for chat members on the replay
// server, whose member requests are the same again), rotates at its size bound, keeps
// no input with redact, counts what a full queue drops without blocking a request, and
// refuses to start on a file it cannot open.
#include "coe/request_log.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "coe/dataset.h"
#include "coe/server.h"
#include "coe/workflow.h"
#include "llm_testing.h"
#include "server_testing.h"

namespace coe {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using testing::Http;
using testing::Reply;

std::vector<json> LogLines(const fs::path& path) {
  std::vector<json> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    out.push_back(json::parse(line, nullptr, false));
    EXPECT_FALSE(out.back().is_discarded()) << line;
  }
  return out;
}

// Every member answer the log holds equals the recordings' cell of that member and id;
// returns how many were compared, by member.
std::map<std::string, int> ExpectRecordedAsLogged(const std::vector<json>& lines, const fs::path& csv) {
  const auto rows = testing::CsvRowsById(csv.string());
  std::ifstream in(csv);
  std::string header;
  std::getline(in, header);
  std::vector<std::string> columns;
  std::stringstream ss(header);
  for (std::string c; std::getline(ss, c, ',');) columns.push_back(c);
  std::map<std::string, int> compared;
  for (const json& l : lines) {
    const std::string id = l["id"];
    auto row = rows.find(id);
    if (row == rows.end()) {
      ADD_FAILURE() << "no recording of id " << id;
      continue;
    }
    for (const json& m : l["members"]) {
      const std::string name = m["name"];
      EXPECT_FALSE(m.contains("error")) << l.dump();
      const size_t col = std::find(columns.begin(), columns.end(), name) - columns.begin();
      if (col >= columns.size() || m.contains("error")) {
        ADD_FAILURE() << "no column " << name << " in " << header;
        continue;
      }
      EXPECT_EQ(row->second[col], m["answer"].get<std::string>()) << "id " << id << ", member " << name;
      compared[name]++;
    }
  }
  return compared;
}

class RequestLogTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = testing::TestDir("coe_reqlog"); }
  void TearDown() override { fs::remove_all(dir_); }

  // The zoo's two-tier cascade served with `o`'s request log (and the catalogue in
  // dir_/zoo.toml).
  std::unique_ptr<Server> ServeZoo(const RequestLogOptions& o, std::function<void(const std::string&)> log = nullptr) {
    std::ofstream(dir_ / "zoo.toml") << testing::ZooToml();
    auto cat = ReadCatalogue((dir_ / "zoo.toml").string());
    EXPECT_TRUE(cat.ok()) << cat.status().ToString();
    ServerOptions so;
    so.request_log = o;
    so.log = std::move(log);
    auto s = Server::Create(testing::TwoTier(), *cat, EngineOptions{}, so);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    if (!s.ok()) return nullptr;
    EXPECT_TRUE((*s)->Start("127.0.0.1", 0).ok());
    return std::move(*s);
  }

  fs::path dir_;
};

// One image a request (with an id, or without: the response then carries the one
// made), a request of three, and an image sent twice: recording the zoo on the log
// gives every member the answers the log says it gave, and the side files hold the
// images sent, once each.
TEST_F(RequestLogTest, TheZooRoundTripsThroughCoeRecord) {
  const fs::path log = dir_ / "requests.log";
  auto server = ServeZoo({.path = log.string()});
  ASSERT_TRUE(server);
  const InputBatch images = testing::TestImages(40);
  std::vector<std::string> ids;
  for (int i = 0; i < 36; ++i) {
    json body = json::parse(testing::InferBody(images.Slice(i, i + 1)));
    if (i % 2 == 0) body["id"] = "img-" + std::to_string(i);
    Reply r = Http(server->port(), "POST", "/v2/models/fashion/infer", body.dump());
    ASSERT_EQ(r.status, 200) << r.raw;
    ASSERT_TRUE(r.body.contains("id")) << r.raw;  // the request's, or the one made for it
    if (i % 2 == 0) {
      EXPECT_EQ(r.body["id"], "img-" + std::to_string(i));
    }
    ids.push_back(r.body["id"]);
  }
  json three = json::parse(testing::InferBody(images.Slice(36, 39)));
  three["id"] = "three";
  ASSERT_EQ(Http(server->port(), "POST", "/v2/models/fashion/infer", three.dump()).status, 200);
  json again = json::parse(testing::InferBody(images.Slice(0, 1)));
  again["id"] = "again";
  ASSERT_EQ(Http(server->port(), "POST", "/v2/models/fashion/infer", again.dump()).status, 200);
  server->Shutdown(1000);  // what was queued is written
  server.reset();

  const std::vector<json> lines = LogLines(log);
  ASSERT_EQ(lines.size(), 40u);
  std::set<std::string> made(ids.begin(), ids.end());
  EXPECT_EQ(made.size(), ids.size()) << "ids are unique";
  for (size_t i = 0; i < 36; ++i) EXPECT_EQ(lines[i]["id"], ids[i]);
  EXPECT_EQ(lines[36]["id"], "three/0");
  EXPECT_EQ(lines[38]["id"], "three/2");
  EXPECT_EQ(lines[0]["model"], "fashion");
  EXPECT_EQ(lines[0]["route"], "infer");
  EXPECT_EQ(lines[0]["cost_name"], "macs");
  EXPECT_EQ(lines[39]["input"], lines[0]["input"]);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_ / "requests.log.tensors"), fs::directory_iterator()), 39)
      << "one side file per distinct image";

  // The inputs read back are the images sent, bit for bit.
  ASSERT_TRUE(IsRequestLog(log.string()));
  auto back = LoadDataset(log.string(), DatasetOptions{.expected_shape = {1, 28, 28}});
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ASSERT_EQ(back->size(), 40);
  EXPECT_EQ(std::vector<float>(back->data.begin(), back->data.begin() + 39 * 784),
            std::vector<float>(images.data.begin(), images.data.begin() + 39 * 784));

  const testing::Proc rec = testing::RunCoe("record --models " + (dir_ / "zoo.toml").string() + " --data " +
                                            log.string() + " --out " + (dir_ / "rec.csv").string());
  ASSERT_EQ(rec.code, 0) << rec.out;
  const std::map<std::string, int> compared = ExpectRecordedAsLogged(lines, dir_ / "rec.csv");
  EXPECT_EQ(compared.at("linear"), 40);
  EXPECT_EQ(compared.at("mlp256x2"), 40);
  EXPECT_GT(compared.count("cnn8_16") ? compared.at("cnn8_16") : 0, 0) << "some image reached tier 2";
  // Recording again resumes: nothing is left to record.
  const testing::Proc again_rec = testing::RunCoe("record --models " + (dir_ / "zoo.toml").string() + " --data " +
                                                  log.string() + " --out " + (dir_ / "rec.csv").string());
  ASSERT_EQ(again_rec.code, 0) << again_rec.out;
  EXPECT_NE(again_rec.out.find("recorded 0 inputs"), std::string::npos) << again_rec.out;
}

// Requests sent at once share batched runs: each line still holds its own example's
// answers, those of the cascade run on that image alone.
TEST_F(RequestLogTest, BatchedRequestsLogTheirOwnAnswers) {
  std::ofstream(dir_ / "zoo.toml") << testing::ZooToml();
  auto cat = ReadCatalogue((dir_ / "zoo.toml").string());
  ASSERT_TRUE(cat.ok());
  ServerOptions so;
  so.request_log.path = (dir_ / "b.log").string();
  so.max_queue_delay_us = 20000;  // requests wait for others to share their run
  auto server = Server::Create(testing::TwoTier(), *cat, EngineOptions{}, so);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  ASSERT_TRUE((*server)->Start("127.0.0.1", 0).ok());
  const InputBatch images = testing::TestImages(48);
  std::vector<std::thread> clients;
  for (int c = 0; c < 4; ++c)
    clients.emplace_back([&, c] {
      for (int i = c; i < 48; i += 4) {
        json body = json::parse(testing::InferBody(images.Slice(i, i + 1)));
        body["id"] = "b" + std::to_string(i);
        EXPECT_EQ(Http((*server)->port(), "POST", "/v2/models/fashion/infer", body.dump()).status, 200);
      }
    });
  for (std::thread& t : clients) t.join();
  (*server)->Shutdown(1000);
  server->reset();
  auto alone = Cascade::Create(testing::TwoTier(), *cat, EngineOptions{.threads = 1});
  ASSERT_TRUE(alone.ok());
  const std::vector<json> lines = LogLines(dir_ / "b.log");
  ASSERT_EQ(lines.size(), 48u);
  for (const json& l : lines) {
    const int i = std::stoi(l["id"].get<std::string>().substr(1));
    auto r = (*alone)->Run(images.Slice(i, i + 1), RunOptions{.want_members = true});
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(l["answer"], r->labels.name(r->answer[0])) << i;
    EXPECT_EQ(l["exit_tier"], r->exit_tier[0] + 1) << i;
    ASSERT_EQ(l["members"].size(), r->member_answers[0].size()) << i;
    for (size_t k = 0; k < r->member_answers[0].size(); ++k)
      EXPECT_EQ(l["members"][k]["answer"], r->member_answers[0][k].answer) << i;
  }
}

// A missing side file is an error naming the id and the hash.
TEST_F(RequestLogTest, AMissingSideFileNamesItsIdAndHash) {
  const fs::path log = dir_ / "requests.log";
  auto server = ServeZoo({.path = log.string()});
  ASSERT_TRUE(server);
  json body = json::parse(testing::InferBody(testing::TestImages(1)));
  body["id"] = "lost";
  ASSERT_EQ(Http(server->port(), "POST", "/v2/models/fashion/infer", body.dump()).status, 200);
  server.reset();
  const std::string hash = LogLines(log)[0]["input"]["fp32"];
  fs::remove(dir_ / "requests.log.tensors" / (hash + ".bin"));
  auto back = LoadDataset(log.string(), DatasetOptions{});
  ASSERT_FALSE(back.ok());
  EXPECT_EQ(back.status().code(), StatusCode::kNotFound);
  EXPECT_NE(back.status().message().find("'lost'"), std::string::npos) << back.status().ToString();
  EXPECT_NE(back.status().message().find(hash), std::string::npos) << back.status().ToString();
}

// Chat members on the replay server: the log's record is what every member got, so
// recording them on the log sends each the same request again and gets the answer the
// log says it gave.
TEST_F(RequestLogTest, ChatMembersRoundTripWithTheSameRequests) {
  testing::OpenAiReplay replay;
  ASSERT_TRUE(replay.Load(testing::SharedArc()));
  replay.KeepBodies(true);
  replay.Start();
  std::ofstream(dir_ / "chat.toml") << testing::ReplayCatalogue(replay.port(), "{input}\\nAnswer with one letter.",
                                                                20000, 0);
  std::ofstream(dir_ / "c.toml") << testing::kLadderToml;
  auto cat = ReadCatalogue((dir_ / "chat.toml").string());
  auto spec = ReadCascade((dir_ / "c.toml").string());
  ASSERT_TRUE(cat.ok() && spec.ok());
  const fs::path log = dir_ / "chat.log";
  ServerOptions so;
  so.name = "ladder";
  so.request_log.path = log.string();
  auto server = Server::Create(*spec, *cat, EngineOptions{}, so);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  ASSERT_TRUE((*server)->Start("127.0.0.1", 0).ok());
  std::vector<std::string> questions;  // the first 30 of the recordings
  for (const auto& [id, row] : testing::CsvRowsById(testing::SharedArc()))
    if (questions.size() < 30) questions.push_back(id);
  std::set<std::string> reply_ids;
  for (const std::string& question : questions) {
    const json q = {{"model", "ladder"},
                    {"temperature", 0},
                    {"messages", {{{"role", "user"}, {"content", "[id:" + question + "] Which option is right?"}}}}};
    Reply r = Http((*server)->port(), "POST", "/v1/chat/completions", q.dump());
    ASSERT_EQ(r.status, 200) << r.raw;
    reply_ids.insert(r.body["id"].get<std::string>());
  }
  (*server)->Shutdown(1000);
  server->reset();
  std::map<std::string, std::multiset<std::string>> served;  // model -> request bodies
  for (const json& b : replay.Received()) served[b["model"]].insert(b.dump());
  replay.ClearReceived();

  const std::vector<json> lines = LogLines(log);
  ASSERT_EQ(lines.size(), 30u);
  for (const json& l : lines) {
    EXPECT_TRUE(reply_ids.count(l["id"])) << "the log's id is the completion's: " << l["id"];
    EXPECT_EQ(l["route"], "chat");
    EXPECT_TRUE(l["input"].is_string());
  }
  RecordFileOptions ro;
  ro.only = {"gpt4", "llama70", "mistral", "mixtral"};
  std::vector<std::string> warnings;
  auto inputs = LoadInputs(InputSpec{.data = log.string()}, {}, {}, &warnings);
  ASSERT_TRUE(inputs.ok()) << inputs.status().ToString();
  auto rec = RecordToFile(*cat, *inputs, (dir_ / "rec.csv").string(), ro);
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();
  EXPECT_EQ(rec->failed, 0);
  const std::map<std::string, int> compared = ExpectRecordedAsLogged(lines, dir_ / "rec.csv");
  for (const std::string m : {"mistral", "mixtral", "llama70"}) EXPECT_EQ(compared.at(m), 30) << m;
  EXPECT_GT(compared.count("gpt4") ? compared.at("gpt4") : 0, 0) << "some question reached tier 2";
  // The members that were served got the same requests again (the rest were never asked).
  std::map<std::string, std::multiset<std::string>> recorded;
  for (const json& b : replay.Received()) recorded[b["model"]].insert(b.dump());
  for (const auto& [model, bodies] : served) {
    std::multiset<std::string> again;
    for (const std::string& b : recorded[model])
      if (bodies.count(b)) again.insert(b);
    EXPECT_EQ(again, bodies) << model;
  }
  replay.Stop();
}

// With redact no input reaches the log: no record text, no tensor, no side file.
TEST_F(RequestLogTest, RedactKeepsIdsAndAnswersOnly) {
  const fs::path log = dir_ / "redacted.log";
  auto server = ServeZoo({.path = log.string(), .redact = true});
  ASSERT_TRUE(server);
  json body = json::parse(testing::InferBody(testing::TestImages(2)));
  body["id"] = "secret-pair";
  Reply r = Http(server->port(), "POST", "/v2/models/fashion/infer", body.dump());
  ASSERT_EQ(r.status, 200) << r.raw;
  server.reset();
  const std::vector<json> lines = LogLines(log);
  ASSERT_EQ(lines.size(), 2u);
  for (const json& l : lines) {
    EXPECT_FALSE(l.contains("input")) << l.dump();
    EXPECT_FALSE(l["answer"].get<std::string>().empty());
    EXPECT_FALSE(l["members"].empty());
  }
  EXPECT_EQ(lines[1]["id"], "secret-pair/1");
  EXPECT_FALSE(fs::exists(dir_ / "redacted.log.tensors"));
  auto back = LoadDataset(log.string(), DatasetOptions{});
  ASSERT_FALSE(back.ok());
  EXPECT_NE(back.status().message().find("--log-redact"), std::string::npos) << back.status().ToString();

  // Chat: the user's words are nowhere in the file.
  RequestLogOptions o{.path = (dir_ / "chat-redacted.log").string(), .redact = true};
  auto chat_log = RequestLog::Open(o);
  ASSERT_TRUE(chat_log.ok());
  (*chat_log)->Add(RequestLogEntry{.id = "c1",
                                   .model = "ladder",
                                   .route = "chat",
                                   .text = "{\"id\":\"c1\",\"input\":\"my private question\"}",
                                   .answer = "B"});
  chat_log->reset();
  const std::string text = testing::ReadFile(o.path);
  EXPECT_EQ(text.find("private"), std::string::npos) << text;
  EXPECT_NE(text.find("\"answer\":\"B\""), std::string::npos) << text;
}

// At its size bound the log rotates: FILE.1 .. FILE.<keep>, each within the bound, the
// newest lines kept in order.
TEST_F(RequestLogTest, RotatesAtItsSizeBound) {
  const fs::path log = dir_ / "r.log";
  auto opened = RequestLog::Open({.path = log.string(), .max_bytes = 1000, .keep = 2});
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  for (int i = 0; i < 60; ++i)
    (*opened)->Add(RequestLogEntry{
        .id = "q" + std::to_string(i), .model = "m", .route = "chat", .text = std::string(100, 'x'), .answer = "A"});
  (*opened)->Flush();
  EXPECT_EQ((*opened)->written(), 60u);
  opened->reset();
  ASSERT_TRUE(fs::exists(log.string() + ".2"));
  EXPECT_FALSE(fs::exists(log.string() + ".3"));
  std::vector<int> kept;
  for (const std::string& p : {log.string() + ".2", log.string() + ".1", log.string()}) {
    EXPECT_LE(fs::file_size(p), 1000u) << p;
    for (const json& l : LogLines(p)) kept.push_back(std::stoi(l["id"].get<std::string>().substr(1)));
  }
  ASSERT_FALSE(kept.empty());
  EXPECT_EQ(kept.back(), 59);
  for (size_t k = 1; k < kept.size(); ++k) EXPECT_EQ(kept[k], kept[k - 1] + 1) << "consecutive, oldest first";
  EXPECT_GE(kept.size(), 6u);  // three lines a file (each about 300 bytes)
}

// Tensor inputs: the bound counts the side files, which rotate with their log file
// (FILE.k.tensors/), so every kept file reads back whole and the kept bytes stay within
// (keep + 1) x max_bytes; a log opened again counts the side files already there.
TEST_F(RequestLogTest, SideFilesRotateWithTheirLogAndCountInItsBound) {
  const fs::path log = dir_ / "t.log";
  const uint64_t bound = 8000;  // two images (3,136 bytes each) and their lines a file
  auto folder_bytes = [](const fs::path& dir) {
    uint64_t n = 0;
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) n += it->file_size();
    return n;
  };
  const InputBatch images = testing::TestImages(12);
  auto add = [&](RequestLog& l, int i, int image) {
    l.Add(RequestLogEntry{
        .id = "q" + std::to_string(i),
        .model = "m",
        .route = "infer",
        .shape = {1, 28, 28},
        .tensor = std::vector<float>(images.data.begin() + image * 784, images.data.begin() + (image + 1) * 784),
        .answer = "A"});
  };
  {
    auto opened = RequestLog::Open({.path = log.string(), .max_bytes = bound, .keep = 2});
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    for (int i = 0; i < 10; ++i) add(**opened, i, i);
    add(**opened, 10, 9);  // image 9 again: in the same file, its side file is not written twice
    add(**opened, 11, 0);  // image 0 again, in a later file than its first: written again there
    (*opened)->Flush();
    EXPECT_EQ((*opened)->written(), 12u);
  }
  EXPECT_FALSE(fs::exists(log.string() + ".3"));
  EXPECT_FALSE(fs::exists(log.string() + ".3.tensors"));
  std::vector<std::string> kept;
  for (const std::string& p : {log.string() + ".2", log.string() + ".1", log.string()}) {
    ASSERT_TRUE(fs::exists(p)) << p;
    EXPECT_LE(fs::file_size(p) + folder_bytes(p + ".tensors"), bound) << p << " and its side files";
    auto back = LoadDataset(p, DatasetOptions{.expected_shape = {1, 28, 28}});
    ASSERT_TRUE(back.ok()) << p << ": " << back.status().ToString();
    for (int64_t k = 0; k < back->size(); ++k) {
      const std::string& id = back->ids[k];
      kept.push_back(id);
      const int i = std::stoi(id.substr(1)), image = i == 10 ? 9 : i == 11 ? 0 : i;
      EXPECT_EQ(std::vector<float>(back->data.begin() + k * 784, back->data.begin() + (k + 1) * 784),
                std::vector<float>(images.data.begin() + image * 784, images.data.begin() + (image + 1) * 784))
          << id << " in " << p;
    }
  }
  ASSERT_GE(kept.size(), 4u);
  EXPECT_EQ(kept.back(), "q11");
  // Opened again (a restarted server appends): the side files there count at once.
  const uint64_t before = fs::file_size(log) + folder_bytes(log.string() + ".tensors");
  {
    auto opened = RequestLog::Open({.path = log.string(), .max_bytes = bound, .keep = 2});
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    add(**opened, 12, 11);
    add(**opened, 13, 10);
    (*opened)->Flush();
  }
  EXPECT_LE(fs::file_size(log) + folder_bytes(log.string() + ".tensors"), bound);
  EXPECT_GT(before, 0u);
}

// A writer stuck on its disk never holds a request: with the queue full, requests are
// answered and their lines dropped and counted (coe_log_dropped_total).
TEST_F(RequestLogTest, AFullQueueIsCountedNotWaitedFor) {
  std::mutex mu;
  std::condition_variable cv;
  bool entered = false, release = false;
  RequestLogOptions o{.path = (dir_ / "q.log").string(), .queue_lines = 2};
  o.before_write = [&] {  // the writer stalls on its first line until released
    std::unique_lock<std::mutex> lock(mu);
    entered = true;
    cv.notify_all();
    cv.wait(lock, [&] { return release; });
  };
  auto server = ServeZoo(o);
  ASSERT_TRUE(server);
  const InputBatch images = testing::TestImages(6);
  auto infer = [&](int i) {
    return Http(server->port(), "POST", "/v2/models/fashion/infer", testing::InferBody(images.Slice(i, i + 1)));
  };
  ASSERT_EQ(infer(0).status, 200);
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return entered; });  // the writer holds line 1
  }
  for (int i = 1; i < 6; ++i) ASSERT_EQ(infer(i).status, 200) << i;  // answered while the writer is stuck
  const std::string metrics = server->MetricsText();
  EXPECT_NE(metrics.find("coe_log_dropped_total 3\n"), std::string::npos) << metrics;
  {
    std::lock_guard<std::mutex> lock(mu);
    release = true;
  }
  cv.notify_all();
  server->Shutdown(1000);
  EXPECT_NE(server->MetricsText().find("coe_log_lines_total 3\n"), std::string::npos) << server->MetricsText();
  server.reset();
  EXPECT_EQ(LogLines(dir_ / "q.log").size(), 3u);
}

// A log that cannot be opened stops the server from starting (the library and coe
// serve); a write error later is counted and said, and the request still answered.
TEST_F(RequestLogTest, AnUnwritableLogIsRefusedAtStartAndCountedLater) {
  std::ofstream(dir_ / "plain") << "a file, not a folder";
  const std::string bad = (dir_ / "plain" / "requests.log").string();
  auto opened = RequestLog::Open({.path = bad});
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(opened.status().message().find(bad), std::string::npos) << opened.status().ToString();
  std::ofstream(dir_ / "zoo.toml") << testing::ZooToml();
  std::ofstream(dir_ / "c.toml") << "[[tiers]]\nmembers = [\"linear\"]\n";
  const testing::Proc serve = testing::RunCoe("serve --port 0 --cascade " + (dir_ / "c.toml").string() + " --models " +
                                              (dir_ / "zoo.toml").string() + " --log " + bad);
  EXPECT_NE(serve.code, 0) << serve.out;
  EXPECT_NE(serve.out.find(bad), std::string::npos) << serve.out;

  // The side files' folder is taken by a file: the line is lost, counted and said.
  const fs::path log = dir_ / "requests.log";
  std::ofstream(dir_ / "requests.log.tensors") << "in the way";
  std::mutex mu;
  std::vector<std::string> said;
  auto server = ServeZoo({.path = log.string()}, [&](const std::string& line) {
    std::lock_guard<std::mutex> lock(mu);
    said.push_back(line);
  });
  ASSERT_TRUE(server);
  ASSERT_EQ(Http(server->port(), "POST", "/v2/models/fashion/infer", testing::InferBody(testing::TestImages(1))).status,
            200);
  server->Shutdown(1000);
  EXPECT_NE(server->MetricsText().find("coe_log_errors_total 1\n"), std::string::npos) << server->MetricsText();
  server.reset();
  std::lock_guard<std::mutex> lock(mu);
  bool told = false;
  for (const std::string& l : said) told = told || l.find("cannot write the side file") != std::string::npos;
  EXPECT_TRUE(told);
}

}  // namespace
}  // namespace coe
