#include "protocol/json_text.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

namespace coe::json_text {
namespace {

bool Space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// `t` without a leading UTF-8 byte order mark (nlohmann skips one).
std::string_view NoBom(std::string_view t) { return t.starts_with("\xEF\xBB\xBF") ? t.substr(3) : t; }

size_t SkipSpace(std::string_view t, size_t i) {
  while (i < t.size() && Space(t[i])) ++i;
  return i;
}

int Hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The code unit of the \uXXXX at t[i] ('\\'), or -1.
int Unit(std::string_view t, size_t i) {
  if (i + 6 > t.size() || t[i] != '\\' || t[i + 1] != 'u') return -1;
  int v = 0;
  for (size_t k = i + 2; k < i + 6; ++k) {
    const int h = Hex(t[k]);
    if (h < 0) return -1;
    v = v * 16 + h;
  }
  return v;
}

// The length of the UTF-8 sequence at t[i] (a byte >= 0x80), or 0 when malformed.
size_t Utf8Length(std::string_view t, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(t[k]); };
  const unsigned char c = b(i);
  size_t len;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (i + len > t.size() || b(i + 1) < lo || b(i + 1) > hi) return 0;
  for (size_t k = i + 2; k < i + len; ++k)
    if (b(k) < 0x80 || b(k) > 0xBF) return 0;
  return len;
}

// The end of the valid string at t[i] == '"', or npos.
size_t StringEnd(std::string_view t, size_t i) {
  for (++i; i < t.size();) {
    const auto c = static_cast<unsigned char>(t[i]);
    if (c == '"') return i + 1;
    if (c < 0x20) return std::string_view::npos;
    if (c >= 0x80) {
      const size_t len = Utf8Length(t, i);
      if (len == 0) return std::string_view::npos;
      i += len;
      continue;
    }
    if (c != '\\') {
      ++i;
      continue;
    }
    if (i + 1 >= t.size()) return std::string_view::npos;
    const char e = t[i + 1];
    if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' || e == 'r' || e == 't') {
      i += 2;
      continue;
    }
    const int u = Unit(t, i);
    if (u < 0 || (u >= 0xDC00 && u <= 0xDFFF)) return std::string_view::npos;  // a lone low surrogate
    if (u >= 0xD800 && u <= 0xDBFF) {                                          // a high one: its pair
      const int low = Unit(t, i + 6);
      if (low < 0xDC00 || low > 0xDFFF) return std::string_view::npos;
      i += 6;
    }
    i += 6;
  }
  return std::string_view::npos;
}

size_t Digits(std::string_view t, size_t i) {
  while (i < t.size() && t[i] >= '0' && t[i] <= '9') ++i;
  return i;
}

// The end of the valid number or literal at t[i], or npos.
size_t ScalarEnd(std::string_view t, size_t i) {
  for (const std::string_view word : {"true", "false", "null"})
    if (t.substr(i, word.size()) == word) return i + word.size();
  if (i < t.size() && t[i] == '-') ++i;
  if (i >= t.size() || t[i] < '0' || t[i] > '9') return std::string_view::npos;
  i = t[i] == '0' ? i + 1 : Digits(t, i);
  if (i < t.size() && t[i] == '.') {
    const size_t d = Digits(t, i + 1);
    if (d == i + 1) return std::string_view::npos;
    i = d;
  }
  if (i < t.size() && (t[i] == 'e' || t[i] == 'E')) {
    ++i;
    if (i < t.size() && (t[i] == '+' || t[i] == '-')) ++i;
    const size_t d = Digits(t, i);
    if (d == i) return std::string_view::npos;
    i = d;
  }
  return i;
}

// The end of the value starting at t[i] (Valid text: structure only).
size_t ValueEnd(std::string_view t, size_t i) {
  if (t[i] == '"') return StringEnd(t, i);
  if (t[i] != '{' && t[i] != '[') return ScalarEnd(t, i);
  size_t depth = 0;
  for (; i < t.size(); ++i) {
    if (t[i] == '"') {
      i = StringEnd(t, i) - 1;
    } else if (t[i] == '{' || t[i] == '[') {
      ++depth;
    } else if ((t[i] == '}' || t[i] == ']') && --depth == 0) {
      return i + 1;
    }
  }
  return i;
}

// Calls `each(key, value)` for the items of the container `t` (Valid): an object's
// members (key: the key's text) or an array's elements (key empty).
template <typename F>
void Items(std::string_view t, F&& each) {
  size_t i = SkipSpace(t, 0);
  const bool object = t[i] == '{';
  for (i = SkipSpace(t, i + 1); i < t.size() && t[i] != '}' && t[i] != ']';) {
    std::string_view key;
    if (object) {
      const size_t key_end = StringEnd(t, i);
      key = t.substr(i, key_end - i);
      i = SkipSpace(t, SkipSpace(t, key_end) + 1);  // past ':'
    }
    const size_t end = ValueEnd(t, i);
    each(key, t.substr(i, end - i));
    i = SkipSpace(t, end);
    if (i < t.size() && t[i] == ',') i = SkipSpace(t, i + 1);
  }
}

}  // namespace

bool Valid(std::string_view text) {
  const std::string_view t = NoBom(text);
  // Iterative: `open` holds the containers around the position, so depth costs a byte
  // each, never the stack.
  std::string open;
  size_t i = SkipSpace(t, 0);
  bool want_value = true;  // else: after a value
  for (;;) {
    if (want_value) {
      if (i >= t.size()) return false;
      const char c = t[i];
      if (c == '{' || c == '[') {
        i = SkipSpace(t, i + 1);
        if (i < t.size() && t[i] == (c == '{' ? '}' : ']')) {
          i = SkipSpace(t, i + 1);
          want_value = false;
          continue;
        }
        open.push_back(c);
        if (c == '[') continue;
      } else {
        const size_t end = c == '"' ? StringEnd(t, i) : ScalarEnd(t, i);
        if (end == std::string_view::npos) return false;
        i = SkipSpace(t, end);
        want_value = false;
        continue;
      }
    } else {
      if (open.empty()) return i == t.size();
      if (i < t.size() && t[i] == ',') {
        i = SkipSpace(t, i + 1);
        want_value = true;
        if (open.back() == '[') continue;
      } else if (i < t.size() && t[i] == (open.back() == '{' ? '}' : ']')) {
        open.pop_back();
        i = SkipSpace(t, i + 1);
        continue;
      } else {
        return false;
      }
    }
    // A member of the object: its key, the colon, then its value.
    if (i >= t.size() || t[i] != '"') return false;
    const size_t key_end = StringEnd(t, i);
    if (key_end == std::string_view::npos) return false;
    i = SkipSpace(t, key_end);
    if (i >= t.size() || t[i] != ':') return false;
    i = SkipSpace(t, i + 1);
    want_value = true;
  }
}

std::map<std::string, std::string_view> Members(std::string_view text) {
  text = NoBom(text);
  std::map<std::string, std::string_view> out;
  if (Kind(text) != '{') return out;
  Items(text, [&](std::string_view key, std::string_view value) { out[Decode(key)] = value; });
  return out;
}

std::vector<std::string_view> Elements(std::string_view text) {
  text = NoBom(text);
  std::vector<std::string_view> out;
  if (Kind(text) != '[') return out;
  Items(text, [&](std::string_view, std::string_view value) { out.push_back(value); });
  return out;
}

char Kind(std::string_view value) {
  value = NoBom(value);
  const size_t i = SkipSpace(value, 0);
  if (i >= value.size()) return 0;
  const char c = value[i];
  return c == '-' || (c >= '0' && c <= '9') ? '0' : c;
}

bool IsUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
    } else if (const size_t len = Utf8Length(s, i)) {
      i += len;
    } else {
      return false;
    }
  }
  return true;
}

std::string Decode(std::string_view value) { return nlohmann::json::parse(value).get<std::string>(); }

size_t DecodedSize(std::string_view value) {
  size_t n = 0;
  for (size_t i = 1; i + 1 < value.size(); ++i, ++n) {
    if (value[i] != '\\') continue;
    const int u = Unit(value, i);
    if (u < 0) {  // a two-character escape
      ++i;
      continue;
    }
    i += 5;
    if (u >= 0xD800 && u <= 0xDBFF) {  // a pair: one code point of 4 bytes
      i += 6;
      n += 3;
    } else {
      n += u < 0x80 ? 0 : u < 0x800 ? 1 : 2;
    }
  }
  return n;
}

namespace {

// The nesting depth of the containers of `t`, up to `cap` + 1 (strings skipped).
int Depth(std::string_view t, int cap) {
  int depth = 0, most = 0;
  for (size_t i = 0; i < t.size() && most <= cap; ++i) {
    const char c = t[i];
    if (c == '"') {
      for (++i; i < t.size() && t[i] != '"'; ++i)
        if (t[i] == '\\') ++i;
    } else if (c == '{' || c == '[') {
      most = std::max(most, ++depth);
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return most;
}

// Whole doubles within 2^53 as integers, recursively (depth checked by the caller).
void Normalize(nlohmann::json& j) {
  if (j.is_number_float()) {
    const double d = j.get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) <= 9007199254740992.0) j = static_cast<int64_t>(d);
  } else if (j.is_structured()) {
    for (auto& e : j) Normalize(e);
  }
}

}  // namespace

std::optional<std::string> Canonical(std::string_view text) {
  if (Depth(text, kMaxCanonicalDepth) > kMaxCanonicalDepth) return std::nullopt;
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) return std::nullopt;
  Normalize(j);
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace coe::json_text
