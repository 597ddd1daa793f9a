#include "backends/answer_reader.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "coe/labels.h"

namespace coe {

std::string ReadChoice(const std::string& text) {
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

std::string ReadNumber(const std::string& text) {
  static const std::regex number(R"([-+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?)");
  std::string last;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), number); it != std::sregex_iterator(); ++it) {
    std::string s = (*it)[0];
    if (s.find_first_of("0123456789") == std::string::npos) continue;
    s.erase(std::remove(s.begin(), s.end(), ','), s.end());
    last = s;
  }
  if (last.empty()) return "";
  char* end = nullptr;
  const double v = std::strtod(last.c_str(), &end);
  if (!end || *end || !std::isfinite(v)) return "";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.15g", v);
  return buf;
}

std::string NormalizeText(const std::string& text) {
  std::string out, word;
  auto flush = [&] {
    if (!word.empty() && word != "a" && word != "an" && word != "the") out += (out.empty() ? "" : " ") + word;
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

std::string AnswerReader::Read(const std::string& text, std::string* why) const {
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
  } else {
    std::smatch m;  // regex=...
    if (regex_ && std::regex_search(text, m, *regex_)) answer = m.size() > 1 ? m[1].str() : m[0].str();
  }
  if (answer.empty()) *why = "no readable answer (" + mode_ + ") in the completion";
  return answer;
}

}  // namespace coe
