#include "coe/recordings.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "base/csv.h"

namespace coe {
namespace {

StatusOr<Recordings> Parse(const std::string& text, std::vector<std::string>* warnings = nullptr) {
  static LabelSet labels;
  return ParseRecordings(text, "rec.csv", &labels, warnings);
}

TEST(Csv, QuotesNewlinesAndCrlf) {
  auto rows = csv::Parse("a,\"b,c\",\"d\"\"e\"\r\n\"multi\nline\",x,\n\n", "t.csv");
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[0].fields, (std::vector<std::string>{"a", "b,c", "d\"e"}));
  EXPECT_EQ((*rows)[1].fields, (std::vector<std::string>{"multi\nline", "x", ""}));
  EXPECT_EQ((*rows)[1].line, 2);
}

TEST(Csv, UnterminatedQuoteNamesLine) {
  auto rows = csv::Parse("a,b\nc,\"d\n", "t.csv");
  ASSERT_FALSE(rows.ok());
  EXPECT_NE(rows.status().message().find("t.csv:2"), std::string::npos);
}

TEST(Csv, EscapeRoundTrip) {
  for (std::string s : {"plain", "a,b", "q\"q", "n\nl", ""}) {
    auto rows = csv::Parse(csv::Escape(s) + ",x\n", "t");
    ASSERT_TRUE(rows.ok());
    EXPECT_EQ((*rows)[0].fields[0], s);
  }
}

TEST(Recordings, ParsesAllColumnKinds) {
  std::vector<std::string> warnings;
  auto r = Parse(
      "id,label,m1,m2,m1|cost,m1|score,m2|p:A,m2|p:B,extra|cost,m1|weird\n"
      "e1,A,A,B,0.5,0.9,0.2,0.8,1,x\n"
      "e2,B,,B,0.25,,0.1,0.9,1,y\n",
      &warnings);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->num_examples(), 2);
  EXPECT_EQ(r->models.size(), 2u);
  EXPECT_EQ(r->models[0].label[1], kAbstain);
  EXPECT_DOUBLE_EQ(r->models[0].cost[0], 0.5);
  EXPECT_FLOAT_EQ(r->models[0].score[0], 0.9f);
  EXPECT_TRUE(std::isnan(r->models[0].score[1]));
  MemberOutput o = r->Output(1, 0);
  EXPECT_NEAR(o.ProbabilityOf(o.label), 0.8, 1e-6);
  EXPECT_EQ(warnings.size(), 2u);  // extra|cost and m1|weird
}

struct BadCase {
  const char* text;
  const char* expect;
};

TEST(Recordings, BadInputNamesFileLineAndColumn) {
  const BadCase cases[] = {
      {"id,label,m\ne1,A,A\ne2,B\n", "rec.csv:3: row has 2 fields"},
      {"id,label,m,m|cost\ne1,A,A,abc\n", "rec.csv:2: column 'm|cost': 'abc' is not a number"},
      {"id,label,m,m|cost\ne1,A,A,nan\n", "column 'm|cost': 'nan' is not finite"},
      {"id,label,m,m|cost\ne1,A,A,-1\n", "negative cost"},
      {"id,label,m,m|cost\ne1,A,A,\n", "empty cost"},
      {"id,label,m,m|score\ne1,A,A,1.5\n", "outside [0,1]"},
      {"id,label,m\ne1,A,A\ne1,B,B\n", "rec.csv:3: column 'id': duplicate id 'e1'"},
      {"label,m\nA,A\n", "no 'id' column"},
      {"id,label,m\n", "no data rows"},
      {"", "empty file"},
      {"id,m,m\ne,A,A\n", "duplicate column 'm'"},
      {"id,,m\ne,A,A\n", "empty name"},
      {"id,label,m\ne1,A,A\n,B,B\n", "rec.csv:3: column 'id': empty id"},
      {"id,label,m,m|score\ne1,A,A,-3\n", "rec.csv:2: column 'm|score': score -3 is outside [0,1]"},
      {"id,label,m,m|score\ne1,A,A,nan\n", "column 'm|score': 'nan' is not finite"},
      {"id,label,m,m|p:A,m|p:B\ne1,A,A,1.5,0\n", "rec.csv:2: column 'm|p:A': probability 1.5 is outside [0,1]"},
      {"id,label,m,m|p:A,m|p:B\ne1,A,A,0.5,\n", "rec.csv:2: model 'm': its |p: columns sum to 0.5, not 1"},
  };
  for (const BadCase& c : cases) {
    auto r = Parse(c.text);
    ASSERT_FALSE(r.ok()) << c.text;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << c.text;
    EXPECT_NE(r.status().message().find(c.expect), std::string::npos)
        << "got: " << r.status().message() << "\nwanted: " << c.expect;
  }
}

TEST(Recordings, CsvRoundTrip) {
  LabelSet labels;
  auto r = ParseRecordings(
      "id,label,m1,m2,m1|cost,m1|score,m2|p:A,m2|p:B\n"
      "e1,A,A,B,0.5,0.123456789,0.2,0.8\n"
      "\"e,2\",B,,B,0.25,,0.1,0.9\n",
      "a.csv", &labels, nullptr);
  ASSERT_TRUE(r.ok());
  std::string text = RecordingsToCsv(*r, labels);
  auto back = ParseRecordings(text, "b.csv", &labels, nullptr);
  ASSERT_TRUE(back.ok()) << back.status().ToString() << "\n" << text;
  EXPECT_EQ(back->ids, r->ids);
  EXPECT_EQ(back->truth, r->truth);
  for (size_t m = 0; m < r->models.size(); ++m) {
    EXPECT_EQ(back->models[m].label, r->models[m].label);
    EXPECT_EQ(back->models[m].cost, r->models[m].cost);
    ASSERT_EQ(back->models[m].score.size(), r->models[m].score.size());
    for (size_t i = 0; i < r->models[m].score.size(); ++i) {
      if (std::isnan(r->models[m].score[i]))
        EXPECT_TRUE(std::isnan(back->models[m].score[i]));
      else
        EXPECT_EQ(back->models[m].score[i], r->models[m].score[i]);  // bit-exact
    }
  }
}

// Recordings built by hand (as the Python package builds them from arrays): each rule
// of ValidateRecordings, with the message naming the example, its id and the column.
TEST(Recordings, ValidateAppliesTheReadersRulesToAnyRecordings) {
  LabelSet labels;
  auto valid = [&] {
    Recordings r;
    r.source = "arrays";
    r.labels = &labels;
    r.ids = {"a", "b", "c"};
    r.truth = {labels.Intern("x"), labels.Intern("y"), kAbstain};
    ModelRecord m{.name = "m", .label = {0, 1, kAbstain}, .score = {0.5f, 1.0f, NAN}, .cost = {0, 1, 2}};
    m.probs = {1, 0, 0.5f, 0.5f, 0, 0};  // the last example has none
    m.num_probs = 2;
    r.models.push_back(m);
    return r;
  };
  {
    Recordings r = valid();
    ASSERT_TRUE(ValidateRecordings(&r, {}, nullptr).ok()) << ValidateRecordings(&r, {}, nullptr).ToString();
  }
  const std::pair<std::function<void(Recordings&)>, const char*> cases[] = {
      {[](Recordings& r) { r.models[0].cost[1] = -999999999; },
       "arrays: example 1 (id 'b'): column 'm|cost': negative cost -999999999"},
      {[](Recordings& r) { r.models[0].cost[2] = INFINITY; },
       "example 2 (id 'c'): column 'm|cost': cost inf is not finite"},
      {[](Recordings& r) { r.models[0].cost[0] = NAN; }, "example 0 (id 'a'): column 'm|cost': cost nan is not finite"},
      {[](Recordings& r) { r.models[0].score[0] = 7.5f; }, "column 'm|score': score 7.5 is outside [0,1]"},
      {[](Recordings& r) { r.models[0].score[1] = -3; }, "column 'm|score': score -3 is outside [0,1]"},
      {[](Recordings& r) { r.models[0].score[1] = INFINITY; }, "column 'm|score': score inf is outside [0,1]"},
      {[](Recordings& r) { r.models[0].probs[1] = NAN; }, "column 'm|p:y': probability nan is outside [0,1]"},
      {[](Recordings& r) { r.models[0].probs[2] = 0.9f; }, "example 1 (id 'b'): model 'm': its |p: columns sum to"},
      {[](Recordings& r) { r.ids[2] = "a"; }, "example 2 (id 'a'): column 'id': duplicate id 'a' (first at example 0)"},
      {[](Recordings& r) { r.ids[1] = ""; }, "example 1 (id ''): column 'id': empty id"},
      {[](Recordings& r) { r.models[0].num_probs = 3, r.models[0].probs.resize(9); },
       "model 'm': 3 probability columns for 2 labels"},
      {[](Recordings& r) { r.models[0].label[0] = 7; }, "column 'm': label index 7 names no label"},
      {[](Recordings& r) { r.models[0].cost.pop_back(); }, "arrays: column 'm|cost': 2 values for 3 examples"},
      {[](Recordings& r) { r.models.push_back(r.models[0]); }, "arrays: model 'm' appears twice"},
      {[](Recordings& r) { r.models[0].name = "m|x"; }, "model name 'm|x' cannot name a column"},
      {[](Recordings& r) { r.models[0].name = "id"; }, "model name 'id' cannot name a column"},
      {[](Recordings& r) { r.ids.clear(); }, "arrays: no examples"},
  };
  for (const auto& [spoil, want] : cases) {
    Recordings r = valid();
    spoil(r);
    Status s = ValidateRecordings(&r, {}, nullptr);
    ASSERT_FALSE(s.ok()) << want;
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find(want), std::string::npos) << "got: " << s.message() << "\nwanted: " << want;
  }
  // Repeated ids when allowed: a warning each; a score column without a score is dropped.
  Recordings r = valid();
  r.ids = {"a", "a", "a"};
  r.models[0].score.assign(3, NAN);
  std::vector<std::string> warnings;
  ASSERT_TRUE(ValidateRecordings(&r, {.allow_duplicate_ids = true}, &warnings).ok());
  EXPECT_EQ(warnings.size(), 2u);
  EXPECT_TRUE(r.models[0].score.empty());
}

// An example without probabilities (empty |p: cells) is written as zeros, which read
// back as none.
TEST(Recordings, EmptyProbabilitiesRoundTrip) {
  LabelSet labels;
  auto r = ParseRecordings("id,label,m,m|p:A,m|p:B\ne1,A,A,0.25,0.75\ne2,B,,,\n", "a.csv", &labels, nullptr);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const std::string text = RecordingsToCsv(*r, labels);
  auto back = ParseRecordings(text, "b.csv", &labels, nullptr);
  ASSERT_TRUE(back.ok()) << back.status().ToString() << "\n" << text;
  EXPECT_EQ(back->models[0].probs, r->models[0].probs);
}

}  // namespace
}  // namespace coe
