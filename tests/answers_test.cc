// How a chat model's answer is read from its completion (src/backends/answer_reader.h):
// tables of what each mode reads from ordinary completions.
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "backends/answer_reader.h"

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
