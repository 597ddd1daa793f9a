#include "base/decimal.h"

namespace coe {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

size_t Digits(std::string_view s, size_t i) {
  size_t j = i;
  while (j < s.size() && IsDigit(s[j])) ++j;
  return j - i;
}

// The end of the number that starts at `i` (see decimal.h), or `i` when none does.
// Written as the greedy reading of [-+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)? followed
// by (?:[eE][-+]?\d+)? after a digit: no choice made here is ever taken back.
size_t NumberEnd(std::string_view s, size_t i) {
  size_t j = i;
  if (j < s.size() && (s[j] == '-' || s[j] == '+')) ++j;
  const size_t lead = Digits(s, j);
  bool digits = lead > 0;
  auto group = [&](size_t at) {  // ",ddd" at `at`
    return at + 4 <= s.size() && s[at] == ',' && IsDigit(s[at + 1]) && IsDigit(s[at + 2]) && IsDigit(s[at + 3]);
  };
  j += lead;
  if (lead >= 1 && lead <= 3)  // 1,234,567: as many ",ddd" as follow
    while (group(j)) j += 4;
  if (j + 1 < s.size() && s[j] == '.' && IsDigit(s[j + 1])) {
    j += 1 + Digits(s, j + 1);
    digits = true;
  }
  if (!digits) return i;
  if (j + 1 < s.size() && (s[j] == 'e' || s[j] == 'E')) {
    const size_t sign = (s[j + 1] == '-' || s[j + 1] == '+') ? 1 : 0;
    if (const size_t n = Digits(s, j + 1 + sign); n > 0) j += 1 + sign + n;
  }
  return j;
}

}  // namespace

std::string_view FindLastNumber(std::string_view text) {
  std::string_view last;
  for (size_t i = 0; i < text.size();) {
    const size_t end = NumberEnd(text, i);
    if (end == i) {
      ++i;
      continue;
    }
    last = text.substr(i, end - i);
    i = end;
  }
  return last;
}

std::optional<std::string> CanonicalDecimal(std::string_view number) {
  if (number.empty() || NumberEnd(number, 0) != number.size()) return std::nullopt;
  size_t i = 0;
  const bool negative = number[0] == '-';
  if (number[0] == '-' || number[0] == '+') ++i;
  // The mantissa's digits, and how many of them follow the point.
  std::string digits;
  int64_t fraction = 0;
  bool point = false;
  for (; i < number.size() && number[i] != 'e' && number[i] != 'E'; ++i) {
    if (number[i] == ',') continue;
    if (number[i] == '.') {
      point = true;
      continue;
    }
    digits += number[i];
    fraction += point;
  }
  int64_t exponent = 0;
  if (i < number.size()) {  // e[-+]ddd
    ++i;
    const bool minus = number[i] == '-';
    if (number[i] == '-' || number[i] == '+') ++i;
    for (; i < number.size(); ++i) {
      exponent = exponent * 10 + (number[i] - '0');
      if (exponent > kMaxDecimalExponent) return std::nullopt;
    }
    if (minus) exponent = -exponent;
  }
  // value = digits x 10^(exponent - fraction); then digits without leading or trailing
  // zeros: value = d x 10^k, or 0.d x 10^point_at.
  const size_t first = digits.find_first_not_of('0');
  if (first == std::string::npos) return "0";
  const size_t last = digits.find_last_not_of('0');
  int64_t k = exponent - fraction + static_cast<int64_t>(digits.size() - 1 - last);
  std::string d = digits.substr(first, last - first + 1);
  const int64_t n = static_cast<int64_t>(d.size());
  const int64_t point_at = k + n;
  std::string out = negative ? "-" : "";
  if (k >= 0 && k <= kMaxPlainZeros) {  // an integer
    out += d;
    out.append(static_cast<size_t>(k), '0');
  } else if (k < 0 && point_at > 0) {  // digits on both sides of the point
    out += d.substr(0, static_cast<size_t>(point_at));
    out += '.';
    out += d.substr(static_cast<size_t>(point_at));
  } else if (k < 0 && -point_at <= kMaxPlainZeros) {  // 0.000ddd
    out += "0.";
    out.append(static_cast<size_t>(-point_at), '0');
    out += d;
  } else {  // d.ddde±x
    out += d[0];
    if (n > 1) out += "." + d.substr(1);
    out += "e" + std::to_string(point_at - 1);
  }
  return out;
}

std::optional<std::string> LastNumber(std::string_view text) {
  const std::string_view number = FindLastNumber(text);
  if (number.empty()) return std::nullopt;
  return CanonicalDecimal(number);
}

}  // namespace coe
