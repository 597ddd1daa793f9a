#include "backends/answer_reader.h"

#include <pthread.h>

#include <cctype>
#include <cstring>

#include "base/decimal.h"
#include "coe/labels.h"

namespace coe {
namespace {

// Character classes as std::regex reads \s, \w and \d in the "C" locale (the readers
// below once were std::regex patterns, and read what those read).
bool IsSpace(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }
bool IsWord(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool IsChoice(char c) { return c >= 'A' && c <= 'J'; }
char Lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

// ^\s*\(?([A-J])\)?[.:]?\s*$: the letter of a completion that is only a letter.
char Alone(std::string_view t) {
  size_t i = 0, e = t.size();
  while (i < e && IsSpace(t[i])) ++i;
  while (e > i && IsSpace(t[e - 1])) --e;
  if (i < e && t[i] == '(') ++i;
  if (i >= e || !IsChoice(t[i])) return 0;
  const char letter = t[i++];
  if (i < e && t[i] == ')') ++i;
  if (i < e && (t[i] == '.' || t[i] == ':')) ++i;
  return i == e ? letter : 0;
}

// answer\s*(?:is|:)\s*\(?([A-J])\b, ignoring case, at `i`: the letter, or 0.
char StatedAt(std::string_view t, size_t i) {
  static constexpr std::string_view kAnswer = "answer";
  if (t.size() - i < kAnswer.size()) return 0;
  for (size_t k = 0; k < kAnswer.size(); ++k)
    if (Lower(t[i + k]) != kAnswer[k]) return 0;
  i += kAnswer.size();
  while (i < t.size() && IsSpace(t[i])) ++i;
  if (i + 1 < t.size() && Lower(t[i]) == 'i' && Lower(t[i + 1]) == 's')
    i += 2;
  else if (i < t.size() && t[i] == ':')
    ++i;
  else
    return 0;
  while (i < t.size() && IsSpace(t[i])) ++i;
  if (i < t.size() && t[i] == '(') ++i;
  if (i >= t.size() || Lower(t[i]) < 'a' || Lower(t[i]) > 'j') return 0;
  if (i + 1 < t.size() && IsWord(t[i + 1])) return 0;  // \b: the letter ends a word
  return t[i];
}

}  // namespace

// Hand-written scanners, linear in the completion: std::regex matches by recursion, a
// stack frame per character, and a long completion (30,000 digits, 40,000 spaces)
// overflowed the stack of whatever thread read it.
std::string ReadChoice(std::string_view text) {
  if (const char c = Alone(text)) return std::string(1, c);
  char found = 0;
  for (size_t i = 0; i < text.size(); ++i)
    if (const char c = StatedAt(text, i)) found = c;
  if (found) return std::string(1, found);
  for (size_t i = 0; i + 2 < text.size(); ++i)
    if (text[i] == '(' && IsChoice(text[i + 1]) && text[i + 2] == ')') found = text[i + 1];
  return found ? std::string(1, found) : "";
}

std::string ReadNumber(std::string_view text) { return LastNumber(text).value_or(""); }

std::string NormalizeText(std::string_view text) {
  std::string out, word;
  auto flush = [&] {
    if (!word.empty() && word != "a" && word != "an" && word != "the") {
      if (!out.empty()) out += ' ';
      out += word;
    }
    word.clear();
  };
  for (unsigned char c : text) {
    if (std::isalnum(c) || c >= 0x80)
      word += static_cast<char>(std::tolower(c));
    else
      flush();
  }
  flush();
  return out;
}

namespace {

// A user's pattern runs on a thread of its own with this much stack (reserved, used
// only as deep as the match goes): std::regex uses ~320 bytes of stack a character
// (~2 KB under AddressSanitizer), more for patterns that pass several states a
// character, so kMaxRegexBytes of completion fits with room to spare whatever thread
// asked.
constexpr size_t kRegexStackBytes = size_t{256} << 20;

struct RegexJob {
  const std::regex* regex;
  std::string_view text;
  std::string answer, error;
};

void* RunRegex(void* arg) {
  auto* job = static_cast<RegexJob*>(arg);
  try {
    std::match_results<std::string_view::const_iterator> m;
    if (std::regex_search(job->text.begin(), job->text.end(), m, *job->regex))
      job->answer = m.size() > 1 ? m[1].str() : m[0].str();
  } catch (const std::exception& e) {  // std::regex's own limits (error_complexity, error_stack)
    job->error = e.what();
  }
  return nullptr;
}

}  // namespace

StatusOr<AnswerReader> AnswerReader::Create(const std::string& mode, const std::vector<std::string>& labels) {
  AnswerReader r;
  r.mode_ = mode;
  r.labels_ = labels;
  if (mode.rfind("regex=", 0) == 0) {
    try {
      r.regex_.emplace(mode.substr(6));
    } catch (const std::regex_error& e) {
      return InvalidArgumentError("answer '" + mode + "' is not a regular expression (" + e.what() + ")");
    }
  }
  if (mode == "label" && labels.empty())
    return InvalidArgumentError("answer = \"label\" needs the model's labels in the catalogue");
  return r;
}

std::string AnswerReader::ReadRegex(std::string_view text, std::string* why) const {
  if (text.size() > kMaxRegexBytes) {
    *why = "the completion has " + std::to_string(text.size()) + " bytes; answer = \"regex=...\" reads at most " +
           std::to_string(kMaxRegexBytes) +
           " (std::regex recurses per character): lower max_tokens, or use choice, number, label or text";
    return "";
  }
  RegexJob job{&*regex_, text, {}, {}};
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, kRegexStackBytes);
  pthread_t thread;
  const int err = pthread_create(&thread, &attr, RunRegex, &job);
  pthread_attr_destroy(&attr);
  if (err != 0) {
    *why = std::string("cannot start a thread to match answer = \"regex=...\": ") + std::strerror(err);
    return "";
  }
  pthread_join(thread, nullptr);
  if (!job.error.empty()) *why = "answer = \"regex=...\" failed on the completion: " + job.error;
  return job.answer;
}

std::string AnswerReader::Read(std::string_view text, std::string* why) const {
  std::string answer;
  if (mode_ == "choice") {
    answer = ReadChoice(text);
  } else if (mode_ == "number") {
    answer = ReadNumber(text);
  } else if (mode_ == "text") {
    answer = NormalizeText(text);
  } else if (mode_ == "label") {
    const std::string norm = NormalizeLabel(text);
    for (const std::string& l : labels_)
      if (NormalizeLabel(l) == norm) {
        answer = l;
        break;
      }
  } else if (regex_) {
    std::string refused;
    answer = ReadRegex(text, &refused);
    if (!refused.empty()) {
      *why = refused;
      return "";
    }
  }
  if (answer.empty()) *why = "no readable answer (" + mode_ + ") in the completion";
  return answer;
}

}  // namespace coe
