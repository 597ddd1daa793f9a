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

// PrecheckToml's scanner: where it is in the text, and where toml++ would be there
// (outside strings: expecting a key or a value, inside which brackets, inside a bare
// value; or inside which kind of string or a comment).
class TomlScanner {
 public:
  TomlScanner(std::string_view text, const std::string& source, std::string* rewritten)
      : text_(text), source_(source), rewritten_(rewritten) {}

  Status Run() {
    rewritten_->clear();
    if (text_.substr(0, 3) == "\xEF\xBB\xBF") i_ = 3;  // toml++ skips a byte-order mark
    while (i_ < text_.size()) {
      char32_t cp = 0;
      const size_t len = DecodeUtf8(text_, i_, &cp);
      if (len == 0) return Error("invalid UTF-8");
      const char c = text_[i_];
      if (c == '\n') {
        LineBreak();
        continue;
      }
      Next next = Next::kPass;
      switch (state_) {
        case State::kBare:
          next = Bare(cp, c);
          break;
        case State::kComment:
          break;
        case State::kBasic:
          next = Basic(c);
          break;
        case State::kMlBasic:
          next = MultiLineBasic(c);
          break;
        case State::kLiteral:
          if (c == '\'') state_ = State::kBare;
          break;
        case State::kMlLiteral:
          if (Starts(i_, "'''")) {
            CloseMultiLine('\'');
            next = Next::kMoved;
          }
          break;
      }
      if (next == Next::kError) return error_;
      if (next == Next::kMoved) continue;
      i_ += len;
      ++col_;
    }
    if (rewriting_) rewritten_->append(text_.substr(copied_));
    return Status::Ok();
  }

 private:
  enum class State { kBare, kComment, kBasic, kMlBasic, kLiteral, kMlLiteral };
  // After a character: pass it (Run moves on by its length), the step moved on itself,
  // or the text is refused (error_).
  enum class Next { kPass, kMoved, kError };

  Status Error(const std::string& what) const {
    return InvalidArgumentError(source_ + ":" + std::to_string(line_) + ":" + std::to_string(col_) + ": " + what);
  }
  Next Fail(const std::string& what) {
    error_ = Error(what);
    return Next::kError;
  }
  bool Starts(size_t at, std::string_view s) const { return text_.substr(at, s.size()) == s; }
  static bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

  // Skips the run of `q` quote characters at i that closes a multi-line string: toml++
  // reads up to five, the last three being the delimiter.
  void CloseMultiLine(char q) {
    size_t n = 3;
    while (n < 5 && i_ + n < text_.size() && text_[i_ + n] == q) ++n;
    i_ += n;
    col_ += n;
    state_ = State::kBare;
  }

  void LineBreak() {
    ++line_;
    col_ = 1;
    ++i_;
    // An unterminated single-line string is toml++'s to report.
    if (state_ == State::kComment || state_ == State::kBasic || state_ == State::kLiteral) state_ = State::kBare;
    if (state_ == State::kBare && force_next_) {
      force_next_ = false;  // see the date-time case in Bare
      return;
    }
    if (state_ == State::kBare) {
      in_token_ = false;
      // A line break ends a key = value pair, except inside an array.
      if (arrays_ == 0) {
        nesting_.clear();
        expect_key_ = true;
      }
    }
  }

  // A character outside strings and comments.
  Next Bare(char32_t cp, char c) {
    if (cp >= 0x80) {
      return Fail("unexpected character " + CodepointName(cp) +
                  " (outside strings and comments TOML allows only ASCII)");
    }
    if (force_next_) {
      force_next_ = false;
      return Next::kPass;
    }
    if (in_token_) {
      // toml++ scans a bare value up to a value terminator, quotes and brackets
      // included, asking of each character whether it is whitespace.
      if (c != ' ' && c != '\t' && c != '\r' && c != ']' && c != '}' && c != ',' && c != '#') {
        if (c != '_' && token_.size() < 11) token_.push_back(c);
        return Next::kPass;
      }
      // A date and a space then a digit may be a date-time with a space for 'T':
      // toml++ reads on, taking the space, the digit and the next character
      // unchecked, then scans up to a terminator again.
      if (c == ' ' && token_.size() == 10 && token_[4] == '-' && token_[7] == '-' && i_ + 1 < text_.size() &&
          text_[i_ + 1] >= '0' && text_[i_ + 1] <= '9') {
        token_.push_back(' ');
        force_next_ = true;
        i_ += 2;
        col_ += 2;
        return Next::kMoved;
      }
      in_token_ = false;
    }
    return Structure(c);
  }

  // Outside a bare value: comments, strings, '=', brackets, commas, a value's start.
  Next Structure(char c) {
    if (c == '#') {
      state_ = State::kComment;
    } else if (c == '"' || c == '\'') {
      const bool multi = Starts(i_, c == '"' ? "\"\"\"" : "'''");
      if (multi) {
        state_ = c == '"' ? State::kMlBasic : State::kMlLiteral;
        i_ += 3;
        col_ += 3;
        return Next::kMoved;
      }
      state_ = c == '"' ? State::kBasic : State::kLiteral;
    } else if (c == '=') {
      if (expect_key_)
        expect_key_ = false;
      else
        in_token_ = true, token_.clear();
    } else if (c == '[') {
      if (!expect_key_) {
        nesting_.push_back('[');
        ++arrays_;
      } else if (nesting_.empty()) {
        nesting_.push_back('h');  // a [table] or [[array of tables]] header
        if (Starts(i_, "[[")) {
          i_ += 2;
          col_ += 2;
          return Next::kMoved;
        }
      }
    } else if (c == ']') {
      if (!nesting_.empty() && nesting_.back() != '{') {
        arrays_ -= nesting_.back() == '[';
        nesting_.pop_back();
      }
    } else if (c == '{') {
      if (!expect_key_) {
        nesting_.push_back('{');
        expect_key_ = true;
      }
    } else if (c == '}') {
      if (!nesting_.empty() && nesting_.back() == '{') nesting_.pop_back();
      expect_key_ = false;
    } else if (c == ',') {
      expect_key_ = !nesting_.empty() && nesting_.back() == '{';
    } else if (c != ' ' && c != '\t' && c != '\r' && !expect_key_) {
      in_token_ = true;  // a bare value: number, date, boolean, inf, nan (or junk)
      token_.assign(c == '_' ? 0 : 1, c);
    }
    return Next::kPass;
  }

  // A character of a single-line basic string.
  Next Basic(char c) {
    if (c == '"') {
      state_ = State::kBare;
    } else if (c == '\\' && i_ + 1 < text_.size() && text_[i_ + 1] != '\n') {
      // Skip the escaped character, so that an escaped quote does not close the
      // string. (A non-ASCII one is an invalid escape toml++ reports cleanly.)
      char32_t next = 0;
      const size_t next_len = DecodeUtf8(text_, i_ + 1, &next);
      if (next_len == 0) {
        ++col_;
        return Fail("invalid UTF-8");
      }
      i_ += 1 + next_len;
      col_ += 2;
      return Next::kMoved;
    }
    return Next::kPass;
  }

  // A character of a multi-line basic string.
  Next MultiLineBasic(char c) {
    if (Starts(i_, "\"\"\"")) {
      CloseMultiLine('"');
      return Next::kMoved;
    }
    if (c != '\\' || i_ + 1 >= text_.size()) return Next::kPass;
    if (static_cast<unsigned char>(text_[i_ + 1]) >= 0x80) {
      ++col_;
      return Fail("invalid escape sequence (a backslash before a non-ASCII character)");
    }
    if (!IsSpace(text_[i_ + 1])) {  // an ordinary escape: skip '\' and its character
      i_ += 2;
      col_ += 2;
      return Next::kMoved;
    }
    return LineEndingBackslash();
  }

  // A line-ending backslash: toml++ skips the whitespace and line breaks after it, then
  // asks whether the next character is whitespace. A non-ASCII one is rewritten as its
  // escape.
  Next LineEndingBackslash() {
    size_t j = i_ + 1;
    bool saw_line_break = false;
    ++col_;
    while (j < text_.size() && IsSpace(text_[j])) {
      if (text_[j] == '\n') {
        saw_line_break = true;
        ++line_;
        col_ = 1;
      } else {
        ++col_;
      }
      ++j;
    }
    i_ = j;
    if (j < text_.size() && static_cast<unsigned char>(text_[j]) >= 0x80) {
      char32_t first = 0;
      const size_t first_len = DecodeUtf8(text_, j, &first);
      if (first_len == 0) return Fail("invalid UTF-8");
      if (!saw_line_break) {
        return Fail("line-ending backslashes must be the last non-whitespace character on the line");
      }
      rewriting_ = true;
      rewritten_->append(text_.substr(copied_, j - copied_));
      char buf[16];
      if (first > 0xFFFF)
        std::snprintf(buf, sizeof buf, "\\U%08X", static_cast<unsigned>(first));
      else
        std::snprintf(buf, sizeof buf, "\\u%04X", static_cast<unsigned>(first));
      rewritten_->append(buf);
      copied_ = j + first_len;
      i_ = copied_;
      ++col_;
    }
    return Next::kMoved;
  }

  const std::string_view text_;
  const std::string& source_;
  std::string* rewritten_;
  Status error_;
  State state_ = State::kBare;
  size_t line_ = 1, col_ = 1;
  size_t i_ = 0;
  size_t copied_ = 0;  // when rewriting: text[0, copied) is already in *rewritten
  bool rewriting_ = false;
  bool expect_key_ = true;   // outside strings: a key (or a [header]) comes next, not a value
  bool in_token_ = false;    // inside a bare value
  std::string token_;        // the bare value's first characters, underscores left out
  bool force_next_ = false;  // the next character belongs to the bare value, whatever it is
  std::string nesting_;      // the brackets we are in: '[' array, '{' inline table, 'h' header
  size_t arrays_ = 0;        // '[' in nesting_
};

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
  return TomlScanner(text, source, rewritten).Run();
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
