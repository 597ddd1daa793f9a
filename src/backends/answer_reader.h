// Internal (backends): how a chat model's answer is read from its completion, by the
// catalogue's `answer` mode (coe/catalogue.h): choice, number, text, label or
// regex=RE.
//
// Thread safety: the free functions are pure; an AnswerReader is immutable once
// created and may be used from many threads at once.
#ifndef COE_BACKENDS_ANSWER_READER_H_
#define COE_BACKENDS_ANSWER_READER_H_

#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "coe/status.h"

namespace coe {

// "the answer is (B)." -> "B": a completion that is just a letter A-J, else the letter
// after the last "answer is" / "answer:", else the last "(X)"; "" when none.
std::string ReadChoice(const std::string& text);
// The last number in the text, written plainly ("1,234.50" -> "1234.5"); "" when none.
std::string ReadNumber(const std::string& text);
// Lower case, no punctuation, no articles (a, an, the), single spaces.
std::string NormalizeText(const std::string& text);

class AnswerReader {
 public:
  // A reader for `mode` (choice | number | text | label | regex=RE); `labels` are the
  // model's labels (mode label). InvalidArgument for a pattern std::regex refuses, or
  // mode label without labels.
  static StatusOr<AnswerReader> Create(const std::string& mode, const std::vector<std::string>& labels);

  // The answer read from a completion; "" when there is none, with *why saying why.
  std::string Read(const std::string& text, std::string* why) const;

 private:
  std::string mode_;
  std::vector<std::string> labels_;
  std::optional<std::regex> regex_;
};

}  // namespace coe

#endif  // COE_BACKENDS_ANSWER_READER_H_
