#include "base/numbers.h"

#include <array>

namespace coe {

std::string FormatDouble(double v) {
  std::array<char, 64> buf;
  auto [p, ec] = std::to_chars(buf.data(), buf.data() + buf.size(), v);
  if (ec != std::errc()) return "nan";
  return std::string(buf.data(), p);
}

}  // namespace coe
