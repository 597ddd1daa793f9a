// How a chat model's answer is read from its completion (src/backends/answer_reader.h):
// tables of what each mode reads from ordinary completions; long completions, read
// directly and through `coe run`, `coe record` and `coe serve`.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <regex>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "backends/answer_reader.h"
#include "base/decimal.h"
#include "base/tokens.h"
#include "coe/cascade_spec.h"
#include "coe/catalogue.h"
#include "coe/recordings.h"
#include "coe/server.h"
#include "testing.h"
#include "testing/openai_replay.h"

namespace coe {
namespace {

using Table = std::vector<std::pair<std::string, std::string>>;  // completion, answer

TEST(ReadChoice, ReadsTheLetterAsBefore) {
  const Table table = {
      {"B", "B"},
      {" (C). ", "C"},
      {"D:", "D"},
      {"(E)", "E"},
      {"A)", "A"},
      {"(A", "A"},
      {"\n\tJ\n", "J"},
      {"A.", "A"},
      {"K", ""},
      {"b", ""},  // a lone letter is upper case
      {"", ""},
      {"   ", ""},
      {"A..", ""},
      {"The answer is (B).", "B"},
      {"the answer is b", "b"},  // "answer is" ignores case, of the letter too
      {"Answer: C", "C"},
      {"ANSWER IS D", "D"},
      {"answer :B", "B"},
      {"answerisB", "B"},
      {"answer is (B", "B"},
      {"answer is\n\n(C) because", "C"},
      {"The answer is a bit unclear, (C)", "a"},  // the article reads as a letter
      {"answer is Cat", ""},                      // no word boundary after the letter
      {"The answer is A_", ""},
      {"answer - B", ""},
      {"answer is (K)", ""},
      {"answer: (A) no wait, the answer is B.", "B"},  // the last statement
      {"answer is (B) but (C)", "B"},                  // a statement beats a parenthesis
      {"I think (A) or (B)", "B"},                     // else the last parenthesis
      {"((A))", "A"},
      {"réponse (B)", "B"},
      {"answer is A\nanswer is B", "B"},
      {"Between (a) and (b)", ""},
  };
  for (const auto& [text, want] : table) EXPECT_EQ(ReadChoice(text), want) << "'" << text << "'";
}

TEST(ReadNumber, ReadsTheLastNumberAsBefore) {
  const Table table = {
      {"42", "42"},
      {"The answer is 42.", "42"},
      {"1,234.50", "1234.5"},
      {"-3.0", "-3"},
      {"+5", "5"},
      {".5", "0.5"},
      {"-.5", "-0.5"},
      {"5.", "5"},
      {"007", "7"},
      {"0", "0"},
      {"0.25", "0.25"},
      {"0.0001", "0.0001"},
      {"2.50", "2.5"},
      {"123456.7890", "123456.789"},
      {"123456789012345", "123456789012345"},
      {"-1,000", "-1000"},
      {"1,000,000", "1000000"},
      {"12,345,678", "12345678"},
      {"$1,299.99", "1299.99"},
      {"99.5%", "99.5"},
      {"3 apples and 4 pears", "4"},
      {"3-4", "-4"},
      {"x=+-7", "-7"},
      {"1.2.3", "0.3"},     // "1.2", then ".3"
      {"1,2345", "5"},      // "1,234", then "5"
      {"1234,567", "567"},  // a comma groups three digits after one to three
      {"1,234,56", "56"},
      {"1,23", "23"},
      {",5", "5"},
      {"no number", ""},
      {"", ""},
      {"-", ""},
      {"- . +", ""},
  };
  for (const auto& [text, want] : table) EXPECT_EQ(ReadNumber(text), want) << "'" << text << "'";
}

TEST(NormalizeText, LowerCaseWordsWithoutArticlesAsBefore) {
  const Table table = {
      {"The Quick, brown fox!", "quick brown fox"},
      {"An apple a day", "apple day"},
      {"  ", ""},
      {"Café au lait", "café au lait"},
      {"R2-D2", "r2 d2"},
      {"the", ""},
  };
  for (const auto& [text, want] : table) EXPECT_EQ(NormalizeText(text), want) << "'" << text << "'";
}

TEST(AnswerReader, EveryModeAsBefore) {
  std::string why;
  auto choice = AnswerReader::Create("choice", {});
  ASSERT_TRUE(choice.ok());
  EXPECT_EQ(choice->Read("The answer is (B).", &why), "B");
  EXPECT_EQ(choice->Read("I cannot tell.", &why), "");
  EXPECT_EQ(why, "no readable answer (choice) in the completion");
  auto number = AnswerReader::Create("number", {});
  ASSERT_TRUE(number.ok());
  EXPECT_EQ(number->Read("so 1,234.50 it is", &why), "1234.5");
  auto text = AnswerReader::Create("text", {});
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(text->Read("The Eiffel Tower.", &why), "eiffel tower");
  auto label = AnswerReader::Create("label", {"Positive", "negative"});
  ASSERT_TRUE(label.ok());
  EXPECT_EQ(label->Read(" positive ", &why), "Positive");
  EXPECT_EQ(label->Read("NEGATIVE", &why), "negative");
  why.clear();
  EXPECT_EQ(label->Read("neutral", &why), "");
  EXPECT_EQ(why, "no readable answer (label) in the completion");
  auto group = AnswerReader::Create("regex=Final: (\\w+)", {});
  ASSERT_TRUE(group.ok());
  EXPECT_EQ(group->Read("Thinking... Final: yes. Final: no", &why), "yes");  // the first match, group 1
  auto whole = AnswerReader::Create("regex=\\d+", {});
  ASSERT_TRUE(whole.ok());
  EXPECT_EQ(whole->Read("about 17 or 18", &why), "17");
  EXPECT_EQ(whole->Read("none", &why), "");
  auto bad = AnswerReader::Create("regex=(", {});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("answer 'regex=(' is not a regular expression"), std::string::npos);
  auto unlabelled = AnswerReader::Create("label", {});
  ASSERT_FALSE(unlabelled.ok());
  EXPECT_NE(unlabelled.status().message().find("needs the model's labels"), std::string::npos);
}

}  // namespace
}  // namespace coe

namespace coe {
namespace {

// Numbers are read exactly (base/decimal.h), never through a double: %.15g made
// 12345678901234561 and 12345678901234562 one answer, 1.23456789012346e+16.
TEST(ReadNumber, ReadsExactly) {
  const Table table = {
      {"12345678901234561", "12345678901234561"},
      {"12345678901234562", "12345678901234562"},
      {"0.1234567890123456789", "0.1234567890123456789"},
      {"-0", "0"},
      {"-0.000", "0"},
      {"+0", "0"},
      {"007.500", "7.5"},
      {"0.00001", "0.00001"},
      {"1,000,000,000,000,000", "1000000000000000"},
      {"1.5e3", "1500"},
      {"1,234,567.000e-3", "1234.567"},
      {"2E+2", "200"},
      {"1.23456789012346e+16", "12345678901234600"},  // as the old reader wrote it
      {"1e-05", "0.00001"},
      {"1e20", "100000000000000000000"},
      {"100000000000000000000", "100000000000000000000"},
      {"1e21", "1e21"},  // more than 20 zeros: scientific
      {"1000000000000000000000", "1e21"},
      {"6.02e23", "6.02e23"},
      {"-1.5e-30", "-1.5e-30"},
      {"1e-21", "0.000000000000000000001"},
      {"1e-22", "1e-22"},
      {"12e1000000000000000", "1.2e1000000000000001"},
      {"1e1000000000000001", ""},  // the exponent is out of range (1e15)
      {"about 3e", "3"},
      {"3 eggs", "3"},
      {"12eggs", "12"},
      {"x1e5", "100000"},
      {"1.2.3e2", "30"},
      {std::string(400, '9'), std::string(400, '9')},  // past double's range: read all the same
  };
  for (const auto& [text, want] : table) EXPECT_EQ(ReadNumber(text), want) << "'" << text << "'";
}

// The old readers, std::regex patterns, as oracles on short random texts (where their
// recursion is harmless).
std::string PatternChoice(const std::string& text) {
  static const std::regex alone(R"(^\s*\(?([A-J])\)?[.:]?\s*$)");
  static const std::regex stated(R"(answer\s*(?:is|:)\s*\(?([A-J])\b)", std::regex::icase);
  static const std::regex paren(R"(\(([A-J])\))");
  std::smatch m;
  if (std::regex_match(text, m, alone)) return m[1];
  std::string found;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), stated); it != std::sregex_iterator(); ++it)
    found = (*it)[1];
  if (!found.empty()) return found;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), paren); it != std::sregex_iterator(); ++it)
    found = (*it)[1];
  return found;
}

// The last number the old pattern found, commas removed (before it went through strtod).
std::string PatternNumber(const std::string& text) {
  static const std::regex number(R"([-+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?)");
  std::string last;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), number); it != std::sregex_iterator(); ++it) {
    std::string s = (*it)[0];
    if (s.find_first_of("0123456789") == std::string::npos) continue;
    s.erase(std::remove(s.begin(), s.end(), ','), s.end());
    last = s;
  }
  return last;
}

std::string RandomText(std::mt19937& rng, const std::vector<std::string>& tokens, int max_tokens) {
  std::string t;
  for (int n = static_cast<int>(rng() % (max_tokens + 1)); n > 0; --n) t += tokens[rng() % tokens.size()];
  return t;
}

TEST(ReadChoice, ReadsWhatTheOldPatternsReadOnRandomText) {
  const std::vector<std::string> tokens = {"answer", "Answer", "ANSWER", "aNsWeR", "answer is ", "answer: ", " ",  "  ",
                                           "\n",     "\t",     "is",     "IS",     "iS",         ":",        "(",  ")",
                                           "A",      "B",      "J",      "K",      "a",          "b",        "j",  "k",
                                           "_",      ".",      "x",      "é",      "1",          "(C)",      "(k)"};
  std::mt19937 rng(22);
  int alone = 0, read = 0;  // texts the old patterns read a letter from, and of them lone letters
  for (int k = 0; k < 200000; ++k) {
    const std::string text = RandomText(rng, tokens, 9);
    const std::string want = PatternChoice(text);
    ASSERT_EQ(ReadChoice(text), want) << "'" << text << "'";
    read += !want.empty();
    alone += !want.empty() && text.size() <= 4;
  }
  EXPECT_GT(read, 20000);
  EXPECT_GT(alone, 2000);
}

TEST(ReadNumber, FindsTheNumberTheOldPatternFoundOnRandomText) {
  // No "e": exponents are new. The value is the old one; its form is exact.
  const std::vector<std::string> tokens = {"0", "1", "7", "9", "12", "345", ",", ".", "-", "+", " ", "x", "00", ",000"};
  std::mt19937 rng(22);
  int commas = 0, points = 0;  // numbers with thousands commas, with a fraction
  for (int k = 0; k < 200000; ++k) {
    const std::string text = RandomText(rng, tokens, 12);
    const std::string old = PatternNumber(text), now = ReadNumber(text);
    std::string found(FindLastNumber(text));
    found.erase(std::remove(found.begin(), found.end(), ','), found.end());
    ASSERT_EQ(found, old) << "'" << text << "'";
    ASSERT_EQ(now.empty(), old.empty()) << "'" << text << "'";
    commas += found.size() != FindLastNumber(text).size();
    points += old.find('.') != std::string::npos;
    if (!old.empty()) {
      ASSERT_EQ(std::strtod(now.c_str(), nullptr), std::strtod(old.c_str(), nullptr)) << text;
    }
  }
  EXPECT_GT(commas, 5000);
  EXPECT_GT(points, 10000);
}

}  // namespace
}  // namespace coe

// Long completions: every reader returns, in time and memory linear in the text (the
// regex mode refuses text past kMaxRegexBytes). std::regex recursed per character and
// crashed the process on 30,000 digits or 40,000 spaces.
namespace coe {
namespace {

TEST(AnswerReader, LongCompletionsAreReadWithoutRecursion) {
  std::string why;
  const std::string digits(30000, '7'), spaces(40000, ' ');
  EXPECT_EQ(ReadNumber(digits), digits);
  EXPECT_EQ(ReadChoice(spaces), "");
  EXPECT_EQ(ReadChoice(spaces + "B" + spaces), "B");
  EXPECT_EQ(ReadChoice("The answer is" + spaces + "(C)"), "C");
  EXPECT_EQ(ReadNumber(spaces), "");
  EXPECT_EQ(NormalizeText(spaces), "");
  auto number = AnswerReader::Create("number", {});
  ASSERT_TRUE(number.ok());
  EXPECT_EQ(number->Read("The answer is " + digits + ".", &why), digits);
  // A completion of max_response_mb (32 MiB) of repeated text, through every mode.
  const std::string line = "The answer is (B). It costs 1,234.50 dollars; the rest is prose. ";
  std::string big;
  while (big.size() + line.size() <= (32u << 20)) big += line;
  EXPECT_EQ(ReadChoice(big), "B");
  EXPECT_EQ(ReadNumber(big), "1234.5");
  const std::string words = NormalizeText(big);
  EXPECT_EQ(words.substr(0, 30), "answer is b it costs 1 234 50 ");
  auto label = AnswerReader::Create("label", {"B"});
  ASSERT_TRUE(label.ok());
  EXPECT_EQ(label->Read(big, &why), "");
  auto regex = AnswerReader::Create("regex=answer is \\((\\w)\\)", {});
  ASSERT_TRUE(regex.ok());
  why.clear();
  EXPECT_EQ(regex->Read(big, &why), "");
  EXPECT_NE(why.find("reads at most 16384"), std::string::npos) << why;
  EXPECT_NE(why.find("has " + std::to_string(big.size()) + " bytes"), std::string::npos) << why;
}

TEST(AnswerReader, RegexReadsUpToItsLimitOnAStackOfItsOwn) {
  std::string why;
  // A match that spans the whole limit: std::regex recurses once or more per
  // character, past the stack a caller's thread may have (8 MiB, 2 KB a character
  // under AddressSanitizer); it runs on a thread of its own.
  const std::string at_limit(kMaxRegexBytes, '7');
  for (const char* pattern : {"regex=(\\d+)$", "regex=((?:x|y|\\d)+)"}) {
    auto r = AnswerReader::Create(pattern, {});
    ASSERT_TRUE(r.ok()) << pattern;
    why.clear();
    EXPECT_EQ(r->Read(at_limit, &why), at_limit) << pattern;
    EXPECT_EQ(why, "") << pattern;
    // One byte more is refused, naming the limit.
    EXPECT_EQ(r->Read(at_limit + "7", &why), "") << pattern;
    EXPECT_NE(why.find("reads at most 16384"), std::string::npos) << why;
  }
  // 30,000 digits (the crash of issue 22) with a user's pattern: refused, not a crash.
  auto r = AnswerReader::Create("regex=(\\d+)", {});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->Read(std::string(30000, '7'), &why), "");
  EXPECT_NE(why.find("the completion has 30000 bytes"), std::string::npos) << why;
}

}  // namespace
}  // namespace coe

// The same completions from an OpenAI-compatible upstream (testing/openai_replay.h),
// through `coe run`, `coe record` and `coe serve`: each crashed its whole process.
namespace coe {
namespace {

namespace fs = std::filesystem;
using testing::OpenAiReplay;
using testing::RunCoe;

class Upstream : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("coe_answers_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    for (const char* model : {"upstream-num", "upstream-num2", "upstream-pick"})
      for (const char* id : {"q1", "q2", "q3"}) server_.calls[model][id] = {"C", 100e-6};
    server_.SetTexts({{"q1", "The total is " + digits_ + "."}, {"q2", spaces_}});
    server_.Start();
    std::ofstream(P("prompts.jsonl")) << "{\"id\": \"q1\", \"question\": \"How many?\"}\n"
                                         "{\"id\": \"q2\", \"question\": \"Which?\"}\n"
                                         "{\"id\": \"q3\", \"question\": \"Which one?\"}\n";
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string P(const std::string& name) const { return (dir_ / name).string(); }
  // Models num and num2 (answer = "number") and pick (answer = "choice") at $1 per
  // million tokens.
  std::string Catalogue(const std::string& prompt) {
    std::ofstream c(P("chat.toml"));
    c << "[defaults]\nbackend = \"openai\"\nurl = \"http://127.0.0.1:" << server_.port() << "/v1\"\n"
      << "prompt = \"" << prompt << "\"\nusd_per_mtok_in = 1.0\nusd_per_mtok_out = 1.0\ntimeout_ms = 10000\n"
      << "[models.num]\nmodel = \"upstream-num\"\nanswer = \"number\"\n"
      << "[models.num2]\nmodel = \"upstream-num2\"\nanswer = \"number\"\n"
      << "[models.pick]\nmodel = \"upstream-pick\"\nanswer = \"choice\"\n";
    return P("chat.toml");
  }
  // `coe serve` of the cascade `toml` as model "ladder" (its members served too), the
  // catalogue's prompt "{input}", on an ephemeral port.
  void Serve(const std::string& toml, std::unique_ptr<Server>* out) {
    auto cat = ReadCatalogue(Catalogue("{input}"));
    ASSERT_TRUE(cat.ok()) << cat.status().ToString();
    std::ofstream(P("c.toml")) << toml;
    auto spec = ReadCascade(P("c.toml"));
    ASSERT_TRUE(spec.ok()) << spec.status().ToString();
    ServerOptions so;
    so.name = "ladder";
    auto s = Server::Create(*spec, *cat, EngineOptions{}, so);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    ASSERT_TRUE((*s)->Start("127.0.0.1", 0).ok());
    *out = std::move(*s);
  }

  const std::string digits_ = std::string(30000, '7'), spaces_ = std::string(40000, ' ');
  OpenAiReplay server_;
  fs::path dir_;
};

TEST_F(Upstream, RunAndRecordReadLongCompletions) {
  const std::string cat = Catalogue("[id:{id}] {question}");
  std::ofstream(P("num.toml")) << "[[tiers]]\nmembers = [\"num\"]\n";
  std::ofstream(P("pick.toml")) << "[[tiers]]\nmembers = [\"pick\"]\n";
  auto r = RunCoe("run --cascade " + P("num.toml") + " --models " + cat + " --data " + P("prompts.jsonl") + " --out " +
                  P("num.csv"));
  ASSERT_EQ(r.code, 0) << r.out.substr(0, 2000);
  auto rows = testing::CsvRowsById(P("num.csv"));
  EXPECT_EQ(rows["q1"].at(1), digits_);
  EXPECT_EQ(rows["q2"].at(1), "");  // 40,000 spaces hold no number
  r = RunCoe("run --cascade " + P("pick.toml") + " --models " + cat + " --data " + P("prompts.jsonl") + " --out " +
             P("pick.csv"));
  ASSERT_EQ(r.code, 0) << r.out.substr(0, 2000);
  rows = testing::CsvRowsById(P("pick.csv"));
  EXPECT_EQ(rows["q2"].at(1), "");
  EXPECT_EQ(rows["q3"].at(1), "C");
  r = RunCoe("record --models " + cat + " --data " + P("prompts.jsonl") + " --out " + P("rec.csv"));
  ASSERT_EQ(r.code, 0) << r.out.substr(0, 2000);
  LabelSet labels;
  auto rec = ReadRecordings(P("rec.csv"), &labels, nullptr);
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();
  const int num = rec->ModelIndex("num"), pick = rec->ModelIndex("pick");
  ASSERT_GE(num, 0);
  ASSERT_GE(pick, 0);
  EXPECT_EQ(labels.name(rec->models[num].label[0]), digits_);
  EXPECT_EQ(rec->models[pick].label[1], kAbstain);
  EXPECT_EQ(labels.name(rec->models[pick].label[2]), "C");
}

TEST_F(Upstream, ServeReadsLongCompletionsAndKeepsServing) {
  std::unique_ptr<Server> coe;
  ASSERT_NO_FATAL_FAILURE(
      Serve("[[tiers]]\nmembers = [\"num\"]\nmin_agreement = 1.0\n"
            "[[tiers]]\nmembers = [\"pick\"]\n",
            &coe));
  httplib::Client client("127.0.0.1", coe->port());
  client.set_read_timeout(60, 0);
  auto ask = [&](const std::string& model, const std::string& id) {
    const nlohmann::json body = {{"model", model},
                                 {"messages", {{{"role", "user"}, {"content", "[id:" + id + "] Which?"}}}}};
    return client.Post("/v1/chat/completions", body.dump(), "application/json");
  };
  auto res = ask("ladder", "q1");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body.substr(0, 2000);
  EXPECT_EQ(nlohmann::json::parse(res->body)["coe"]["answer"], digits_);
  res = ask("pick", "q2");  // 40,000 spaces: no answer (an abstention), and the server lives
  ASSERT_TRUE(res);
  EXPECT_TRUE(res->status == 200 || res->status == 502) << res->status << " " << res->body.substr(0, 2000);
  res = ask("pick", "q3");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body.substr(0, 2000);
  EXPECT_EQ(nlohmann::json::parse(res->body)["coe"]["answer"], "C");
}

// Two members that answer 12345678901234561 and 12345678901234562 disagree (the old
// reader read both as 1.23456789012346e+16, an answer neither gave, and the tier
// exited with it); the same number written two ways agrees, and the answer is a
// member's own, as read.
TEST_F(Upstream, NumberAgreementIsExact) {
  server_.SetTexts({{"upstream-num\nq1", "It is 12345678901234561."},
                    {"upstream-num2\nq1", "It is 12345678901234562."},
                    {"upstream-num\nq2", "It is 12,345,678,901,234,561.0"},
                    {"upstream-num2\nq2", "12345678901234561"},
                    {"upstream-num\nq3", "-0"},
                    {"upstream-num2\nq3", "0.00"}});
  std::ofstream(P("c.toml")) << "[[tiers]]\nmembers = [\"num\", \"num2\"]\nmatch = \"number\"\nmin_agreement = 1.0\n"
                                "[[tiers]]\nmembers = [\"pick\"]\n";
  auto r = RunCoe("run --cascade " + P("c.toml") + " --models " + Catalogue("[id:{id}] {question}") + " --data " +
                  P("prompts.jsonl") + " --out " + P("out.csv"));
  ASSERT_EQ(r.code, 0) << r.out;
  auto rows = testing::CsvRowsById(P("out.csv"));  // id,answer,exit_tier,...
  EXPECT_EQ(rows["q1"].at(1), "C");                // deferred to pick
  EXPECT_EQ(rows["q1"].at(2), "2");
  EXPECT_EQ(rows["q2"].at(1), "12345678901234561");
  EXPECT_EQ(rows["q2"].at(2), "1");
  EXPECT_EQ(rows["q3"].at(1), "0");
  EXPECT_EQ(rows["q3"].at(2), "1");
}

// Usage of 2^62 tokens a call (issue 22): it summed past int64_t over a tier's three
// members, and a client was told prompt_tokens -9223372036854775808 and a cost of
// $2.8e13. A count over kMaxUsageTokens is no usage: the call is paid at the estimate
// (4 characters a token) and counted as estimated, which /metrics and `coe run` say.
TEST_F(Upstream, ImplausibleUsageIsEstimatedAndSaid) {
  server_.SetFaults([](const std::string&, const std::string&, int) { return OpenAiReplay::Fault::kHugeUsage; });
  std::unique_ptr<Server> coe;
  ASSERT_NO_FATAL_FAILURE(Serve("[[tiers]]\nmembers = [\"num\", \"num2\", \"pick\"]\n", &coe));
  httplib::Client client("127.0.0.1", coe->port());
  client.set_keep_alive(true);  // one connection: requests are served, and counted, in order
  const std::string question = "[id:q3] Which?";
  const nlohmann::json body = {{"model", "ladder"}, {"messages", {{{"role", "user"}, {"content", question}}}}};
  auto res = client.Post("/v1/chat/completions", body.dump(), "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  const auto j = nlohmann::json::parse(res->body);
  EXPECT_EQ(j["coe"]["answer"], "C");
  // Three calls at the estimate: the prompt's and the completion's characters / 4.
  const std::string completion = "Let me think. The answer is (C).";
  const int64_t in = (question.size() + 3) / 4, out = (completion.size() + 3) / 4;
  EXPECT_EQ(j["usage"]["prompt_tokens"], 3 * in) << j["usage"];
  EXPECT_EQ(j["usage"]["completion_tokens"], 3 * out) << j["usage"];
  EXPECT_EQ(j["usage"]["total_tokens"], 3 * (in + out)) << j["usage"];
  EXPECT_NEAR(j["coe"]["cost_usd"].get<double>(), 3 * (in + out) / 1e6, 1e-12) << j["coe"];
  ASSERT_TRUE(client.Get("/v1/models"));  // the chat request is counted once this one is served
  const std::string m = coe->MetricsText();
  for (const char* member : {"num", "num2", "pick"})
    EXPECT_NE(m.find("coe_member_estimated_costs_total{member=\"" + std::string(member) + "\"} 1\n"), std::string::npos)
        << member << "\n"
        << m;
  EXPECT_NE(m.find("coe_tier_tokens_total{model=\"ladder\",tier=\"1\",kind=\"in\"} " + std::to_string(3 * in)),
            std::string::npos)
      << m;
  // `coe run` says so.
  std::ofstream(P("one.toml")) << "[[tiers]]\nmembers = [\"pick\"]\n";
  auto r = RunCoe("run --cascade " + P("one.toml") + " --models " + Catalogue("[id:{id}] {question}") + " --data " +
                  P("prompts.jsonl") + " --out " + P("out.csv"));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("model 'pick': 3 response(s) had no usage, or a token count that is not an integer from 0 to "
                       "2^40; their cost is estimated"),
            std::string::npos)
      << r.out;
  for (const auto& [id, row] : testing::CsvRowsById(P("out.csv"))) {
    const double cost = std::stod(row.at(4));
    EXPECT_GT(cost, 0) << id;
    EXPECT_LT(cost, 0.1) << id;  // at most 40,000 characters (q2) at $1 per million tokens
  }
}

TEST(Tokens, SumsSaturate) {
  EXPECT_EQ(AddTokens(int64_t{2}, 3), 5);
  EXPECT_EQ(AddTokens(kTokenCap - 1, 5), kTokenCap);
  EXPECT_EQ(AddTokens(kTokenCap, kTokenCap), kTokenCap);
  EXPECT_EQ(AddTokens(int64_t{1} << 62, int64_t{1} << 62), kTokenCap);
  EXPECT_EQ(AddTokens(int64_t{7}, -3), 7);  // a negative count adds nothing
  EXPECT_EQ(AddTokens(uint64_t{1} << 63, 1), static_cast<uint64_t>(kTokenCap));
  std::atomic<uint64_t> sum{0};
  AddTokens(&sum, kTokenCap);
  AddTokens(&sum, kTokenCap);
  EXPECT_EQ(sum.load(), static_cast<uint64_t>(kTokenCap));
  // Two capped counts (prompt and completion tokens) still add up without overflow.
  EXPECT_GT(kTokenCap + kTokenCap, 0);
}

}  // namespace
}  // namespace coe
