// Internal: strict number parsing (the whole field must be a finite number).
#ifndef COE_UTIL_NUMBERS_H_
#define COE_UTIL_NUMBERS_H_

#include <charconv>
#include <cmath>
#include <optional>
#include <string>
#include <string_view>

namespace coe {

inline std::optional<double> ParseDouble(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  if (s.empty()) return std::nullopt;
  double v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;  // may be NaN/inf when the text says so; callers check what they need
}

// Formats with the fewest digits that read back to the same double.
std::string FormatDouble(double v);

}  // namespace coe

#endif  // COE_UTIL_NUMBERS_H_
