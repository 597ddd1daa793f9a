#include "coe/recordings.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace coe
