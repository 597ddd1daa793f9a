// Internal: strict number parsing (the whole field must be a finite number).
#ifndef COE_BASE_NUMBERS_H_
#define COE_BASE_NUMBERS_H_

#include <algorithm>
#include <charconv>
#include <cmath>
#include <optional>
#include <string>
#include <string_view>

namespace coe {

// Probabilities sum to 1 within this (files and servers round them). The one rule for
// recordings (an example's probabilities sum to 1 within it, or are all 0: none) and
// for a remote model's scores (without a label output, a row summing to 1 within it
// is taken as probabilities; other rows are logits).
inline constexpr double kProbabilitySumTolerance = 0.01;

// Decimal exponent of the leading significant digit of a number that std::from_chars
// matched but could not represent (e.g. 2 for "123.4", -3 for "0.00123e0", 400 for
// "1e400"): > 0 means it overflowed, otherwise it underflowed.
inline long OutOfRangeMagnitude(std::string_view s) {
  size_t i = 0;
  if (i < s.size() && s[i] == '-') ++i;
  long lead = 0;
  bool found = false, in_fraction = false;
  long int_digits = 0, frac_pos = 0;
  for (; i < s.size() && s[i] != 'e' && s[i] != 'E'; ++i) {
    if (s[i] == '.') {
      in_fraction = true;
      continue;
    }
    if (in_fraction)
      ++frac_pos;
    else
      ++int_digits;
    if (!found && s[i] != '0') {
      found = true;
      lead = in_fraction ? -frac_pos : int_digits;  // int part: fixed up below
    }
  }
  if (!found) return -1;                   // all zeros: cannot be out of range, treat as underflow
  if (lead > 0) lead = int_digits - lead;  // digits after the leading one in the int part
  long exp = 0;
  if (i < s.size()) {  // exponent: [eE][+-]?digits, saturated
    ++i;
    bool neg = false;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
    for (; i < s.size(); ++i) exp = std::min(exp * 10 + (s[i] - '0'), 1000000L);
    if (neg) exp = -exp;
  }
  return lead + exp;
}

inline std::optional<double> ParseDouble(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  if (!s.empty() && s.front() == '+') {
    s.remove_prefix(1);
    if (!s.empty() && (s.front() == '-' || s.front() == '+')) return std::nullopt;  // "+-1"
  }
  if (s.empty()) return std::nullopt;
  double v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (p != s.data() + s.size()) return std::nullopt;
  if (ec == std::errc::result_out_of_range) {
    // A well-formed number beyond double's range: "1e-400" is 0, "1e400" infinite.
    const bool negative = s.front() == '-';
    const double mag = OutOfRangeMagnitude(s) > 0 ? HUGE_VAL : 0.0;
    return negative ? -mag : mag;
  }
  if (ec != std::errc()) return std::nullopt;
  return v;  // may be NaN/inf when the text says so; callers check what they need
}

// Formats with the fewest digits that read back to the same double.
std::string FormatDouble(double v);

}  // namespace coe

#endif  // COE_BASE_NUMBERS_H_
