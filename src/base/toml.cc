// The TOML pre-check (see base/toml.h): kept out of the header, it is long and only
// ParseToml needs it.
#include "base/toml.h"

#include <cstdio>
#include <string>
#include <string_view>

#include "base/numbers.h"

namespace coe {

namespace {

// Decodes the UTF-8 sequence at text[i] into *cp; returns its length, 0 when invalid.
inline size_t DecodeUtf8(std::string_view text, size_t i, char32_t* cp) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char c = b(i);
  if (c < 0x80) {
    *cp = c;
    return 1;
  }
  size_t len = 0;
  char32_t v = 0;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
    v = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    v = c & 0x0F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    v = c & 0x07;
  } else {
    return 0;
  }
  if (i + len > text.size()) return 0;
  for (size_t k = 1; k < len; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) return 0;
    v = (v << 6) | (b(i + k) & 0x3F);
  }
  if ((len == 3 && v < 0x800) || (len == 4 && (v < 0x10000 || v > 0x10FFFF)) || (v >= 0xD800 && v <= 0xDFFF)) {
    return 0;  // overlong, out of range or a surrogate
  }
  *cp = v;
  return len;
}

inline std::string CodepointName(char32_t cp) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "U+%04X", static_cast<unsigned>(cp));
  return buf;
}

}  // namespace

// toml++ 3.3.0 (Debian 12) reaches TOML_UNREACHABLE, i.e. undefined behaviour, when it
// asks whether certain non-ASCII code points are whitespace (U+00A1-U+0499,
// U+2F6E-U+3367, U+FEFE; upstream issues marzer/tomlplusplus#190 and #295). It asks
// only about characters outside strings and comments, and in a multi-line basic string
// about the character after a backslash and the first one after a line-ending
// backslash. Outside strings that includes a bare value's characters up to a value
// terminator, quotes included (`x = 1"\u00e9"` is scanned as one bad value). So before
// toml++ sees the text:
//  - invalid UTF-8 is an error;
//  - a non-ASCII character outside strings and comments (never valid TOML) is an error;
//  - in a multi-line basic string, a backslash before a non-ASCII character (never a
//    valid escape) is an error, and so is one followed by spaces and then a non-ASCII
//    character on the same line;
//  - the first character after a line-ending backslash and its line break(s), when
//    non-ASCII, is rewritten as the equivalent \uXXXX / \UXXXXXXXX escape (valid TOML,
//    same value). Then *rewritten holds the text to parse; otherwise it is left empty.
// Returns OK or an InvalidArgument naming source:line:column.
Status PrecheckToml(std::string_view text, const std::string& source, std::string* rewritten) {
  enum class State { kBare, kComment, kBasic, kMlBasic, kLiteral, kMlLiteral };
  State state = State::kBare;
  size_t line = 1, col = 1;
  size_t i = 0;
  size_t copied = 0;  // when rewriting: text[0, copied) is already in *rewritten
  bool rewriting = false;
  // Where toml++ is outside strings: expecting a key (or a [header]) or a value; inside
  // which brackets ('[' array, '{' inline table, 'h' header); inside a bare value.
  bool expect_key = true;
  bool in_token = false;
  std::string token;        // the bare value's first characters, underscores left out
  bool force_next = false;  // the next character belongs to the bare value, whatever it is
  std::string nesting;
  size_t arrays = 0;  // '[' in nesting
  rewritten->clear();
  if (text.substr(0, 3) == "\xEF\xBB\xBF") i = 3;  // toml++ skips a byte-order mark
  auto error = [&](const std::string& what) {
    return InvalidArgumentError(source + ":" + std::to_string(line) + ":" + std::to_string(col) + ": " + what);
  };
  auto starts = [&](size_t at, std::string_view s) { return text.substr(at, s.size()) == s; };
  auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  // Skips the run of `q` quote characters at i that closes a multi-line string: toml++
  // reads up to five, the last three being the delimiter.
  auto close_multi_line = [&](char q) {
    size_t n = 3;
    while (n < 5 && i + n < text.size() && text[i + n] == q) ++n;
    i += n;
    col += n;
    state = State::kBare;
  };

  while (i < text.size()) {
    char32_t cp = 0;
    const size_t len = DecodeUtf8(text, i, &cp);
    if (len == 0) return error("invalid UTF-8");
    const char c = text[i];
    if (c == '\n') {
      ++line;
      col = 1;
      ++i;
      // An unterminated single-line string is toml++'s to report.
      if (state == State::kComment || state == State::kBasic || state == State::kLiteral) state = State::kBare;
      if (state == State::kBare && force_next) {
        force_next = false;  // see the date-time case below
        continue;
      }
      if (state == State::kBare) {
        in_token = false;
        // A line break ends a key = value pair, except inside an array.
        if (arrays == 0) {
          nesting.clear();
          expect_key = true;
        }
      }
      continue;
    }
    switch (state) {
      case State::kBare:
        if (cp >= 0x80) {
          return error("unexpected character " + CodepointName(cp) +
                       " (outside strings and comments TOML allows only ASCII)");
        }
        if (force_next) {
          force_next = false;
          break;
        }
        if (in_token) {
          // toml++ scans a bare value up to a value terminator, quotes and brackets
          // included, asking of each character whether it is whitespace.
          if (c != ' ' && c != '\t' && c != '\r' && c != ']' && c != '}' && c != ',' && c != '#') {
            if (c != '_' && token.size() < 11) token.push_back(c);
            break;
          }
          // A date and a space then a digit may be a date-time with a space for 'T':
          // toml++ reads on, taking the space, the digit and the next character
          // unchecked, then scans up to a terminator again.
          if (c == ' ' && token.size() == 10 && token[4] == '-' && token[7] == '-' && i + 1 < text.size() &&
              text[i + 1] >= '0' && text[i + 1] <= '9') {
            token.push_back(' ');
            force_next = true;
            i += 2;
            col += 2;
            continue;
          }
          in_token = false;
        }
        if (c == '#') {
          state = State::kComment;
        } else if (c == '"' || c == '\'') {
          const bool multi = starts(i, c == '"' ? "\"\"\"" : "'''");
          if (multi) {
            state = c == '"' ? State::kMlBasic : State::kMlLiteral;
            i += 3;
            col += 3;
            continue;
          }
          state = c == '"' ? State::kBasic : State::kLiteral;
        } else if (c == '=') {
          if (expect_key)
            expect_key = false;
          else
            in_token = true, token.clear();
        } else if (c == '[') {
          if (!expect_key) {
            nesting.push_back('[');
            ++arrays;
          } else if (nesting.empty()) {
            nesting.push_back('h');  // a [table] or [[array of tables]] header
            if (starts(i, "[[")) {
              i += 2;
              col += 2;
              continue;
            }
          }
        } else if (c == ']') {
          if (!nesting.empty() && nesting.back() != '{') {
            arrays -= nesting.back() == '[';
            nesting.pop_back();
          }
        } else if (c == '{') {
          if (!expect_key) {
            nesting.push_back('{');
            expect_key = true;
          }
        } else if (c == '}') {
          if (!nesting.empty() && nesting.back() == '{') nesting.pop_back();
          expect_key = false;
        } else if (c == ',') {
          expect_key = !nesting.empty() && nesting.back() == '{';
        } else if (c != ' ' && c != '\t' && c != '\r' && !expect_key) {
          in_token = true;  // a bare value: number, date, boolean, inf, nan (or junk)
          token.assign(c == '_' ? 0 : 1, c);
        }
        break;
      case State::kComment:
        break;
      case State::kBasic:
        if (c == '"') {
          state = State::kBare;
        } else if (c == '\\' && i + 1 < text.size() && text[i + 1] != '\n') {
          // Skip the escaped character, so that an escaped quote does not close the
          // string. (A non-ASCII one is an invalid escape toml++ reports cleanly.)
          char32_t next = 0;
          const size_t next_len = DecodeUtf8(text, i + 1, &next);
          if (next_len == 0) {
            ++col;
            return error("invalid UTF-8");
          }
          i += 1 + next_len;
          col += 2;
          continue;
        }
        break;
      case State::kMlBasic:
        if (starts(i, "\"\"\"")) {
          close_multi_line('"');
          continue;
        }
        if (c == '\\' && i + 1 < text.size()) {
          if (static_cast<unsigned char>(text[i + 1]) >= 0x80) {
            ++col;
            return error("invalid escape sequence (a backslash before a non-ASCII character)");
          }
          if (!is_space(text[i + 1])) {  // an ordinary escape: skip '\' and its character
            i += 2;
            col += 2;
            continue;
          }
          // A line-ending backslash: toml++ skips the whitespace and line breaks after
          // it, then asks whether the next character is whitespace.
          size_t j = i + 1;
          bool saw_line_break = false;
          ++col;
          while (j < text.size() && is_space(text[j])) {
            if (text[j] == '\n') {
              saw_line_break = true;
              ++line;
              col = 1;
            } else {
              ++col;
            }
            ++j;
          }
          i = j;
          if (j < text.size() && static_cast<unsigned char>(text[j]) >= 0x80) {
            char32_t first = 0;
            const size_t first_len = DecodeUtf8(text, j, &first);
            if (first_len == 0) return error("invalid UTF-8");
            if (!saw_line_break) {
              return error("line-ending backslashes must be the last non-whitespace character on the line");
            }
            rewriting = true;
            rewritten->append(text.substr(copied, j - copied));
            char buf[16];
            if (first > 0xFFFF)
              std::snprintf(buf, sizeof buf, "\\U%08X", static_cast<unsigned>(first));
            else
              std::snprintf(buf, sizeof buf, "\\u%04X", static_cast<unsigned>(first));
            rewritten->append(buf);
            copied = j + first_len;
            i = copied;
            ++col;
          }
          continue;
        }
        break;
      case State::kLiteral:
        if (c == '\'') state = State::kBare;
        break;
      case State::kMlLiteral:
        if (starts(i, "'''")) {
          close_multi_line('\'');
          continue;
        }
        break;
    }
    i += len;
    ++col;
  }
  if (rewriting) rewritten->append(text.substr(copied));
  return Status::Ok();
}

std::string TomlQuote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      // TOML basic strings may not hold control characters (U+0000-U+001F, U+007F).
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
      out += buf;
    } else {
      out.push_back(c);
    }
  }
  return out + "\"";
}
namespace {
// Length of the valid UTF-8 sequence at s[i], or 0 when it is not one.
size_t Utf8Length(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  if (c < 0x80) return 1;
  size_t len = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
  if (len == 0 || i + len > s.size()) return 0;
  for (size_t k = 1; k < len; ++k)
    if ((b(i + k) & 0xC0) != 0x80) return 0;
  if (c == 0xE0 && b(i + 1) < 0xA0) return 0;  // overlong
  if (c == 0xED && b(i + 1) > 0x9F) return 0;  // surrogates
  if (c == 0xF0 && b(i + 1) < 0x90) return 0;  // overlong
  if (c == 0xF4 && b(i + 1) > 0x8F) return 0;  // > U+10FFFF
  return len;
}
}  // namespace

// `text` as TOML comment lines: one "# " line per line of text; control characters
// (but tab) and invalid UTF-8, which a TOML comment may not hold, become '?'.
std::string TomlCommentLines(std::string_view text) {
  std::string out = "# ";
  for (size_t i = 0; i < text.size();) {
    const char c = text[i];
    if (c == '\r' || c == '\n') {
      i += (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ? 2 : 1;
      out += "\n# ";
      continue;
    }
    const size_t len = Utf8Length(text, i);
    if (len == 0 || (len == 1 && ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f))) {
      out.push_back('?');
      i += len == 0 ? 1 : len;
      continue;
    }
    out.append(text.substr(i, len));
    i += len;
  }
  return out + "\n";
}
std::string TomlNumber(double v) {
  std::string s = FormatDouble(v);
  if (s.find_first_of(".eE") == std::string::npos) s += ".0";
  return s;
}

}  // namespace coe
