// Internal (backends): how a chat model's answer is read from its completion, by the
// catalogue's `answer` mode (coe/catalogue.h): choice, number, text, label or
// regex=RE.
//
// Thread safety: the free functions are pure; an AnswerReader is immutable once
// created and may be used from many threads at once.
#ifndef COE_BACKENDS_ANSWER_READER_H_
#define COE_BACKENDS_ANSWER_READER_H_

#include <cstddef>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

#include "coe/status.h"

namespace coe {

// Every reader but regex= takes time and memory linear in the completion, whatever its
// size (up to max_response_mb): nothing recurses.

// "the answer is (B)." -> "B": a completion that is just a letter A-J (in capitals,
// optionally in parentheses and followed by "." or ":"), else the letter (A-J, either
// case, as written) after the last "answer is" / "answer:" (any case) that a word
// boundary follows, else the last "(X)" with X in A-J; "" when none.
std::string ReadChoice(std::string_view text);
// The canonical form of the last number in the text (base/decimal.h: exact, never
// through a double: "1,234.50" -> "1234.5", "-0" -> "0", "1.5e3" -> "1500");
// "" when none.
std::string ReadNumber(std::string_view text);
// Lower case, no punctuation, no articles (a, an, the), single spaces.
std::string NormalizeText(std::string_view text);

// answer = "regex=RE" reads completions of at most this many bytes; a longer one is no
// answer (an abstention whose error names this limit). std::regex, the only regular
// expression engine at hand, matches by recursion, a stack frame or more per
// character, and backtracks: the input must be bounded. The pattern runs on a thread
// with a stack large enough for this much text; its time is the pattern's own (a
// pattern that backtracks exponentially, such as (a|a)*b, is slow on any engine of
// its kind).
inline constexpr size_t kMaxRegexBytes = 16 << 10;

class AnswerReader {
 public:
  // A reader for `mode` (choice | number | text | label | regex=RE); `labels` are the
  // model's labels (mode label). InvalidArgument for a pattern std::regex refuses, or
  // mode label without labels.
  static StatusOr<AnswerReader> Create(const std::string& mode, const std::vector<std::string>& labels);

  // The answer read from a completion; "" when there is none, with *why saying why.
  std::string Read(std::string_view text, std::string* why) const;

 private:
  std::string ReadRegex(std::string_view text, std::string* why) const;
  std::string mode_;
  std::vector<std::string> labels_;
  std::optional<std::regex> regex_;
};

}  // namespace coe

#endif  // COE_BACKENDS_ANSWER_READER_H_
