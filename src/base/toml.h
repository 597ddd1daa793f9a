// Internal: toml++ without exceptions (coe's API returns Status), plus helpers that
// turn a toml++ parse error into a message naming file, line and column.
#ifndef COE_BASE_TOML_H_
#define COE_BASE_TOML_H_

#define TOML_EXCEPTIONS 0
#define TOML_HEADER_ONLY 1  // Debian's shared build has exceptions on; use the headers
#include <toml++/toml.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>

#include "coe/status.h"

namespace coe {

// Checks `text` for what toml++ 3.3 mishandles (undefined behaviour on some non-ASCII
// code points outside strings, found by fuzz/toml_fuzz.cc) before it parses it:
// InvalidArgument naming source:line:column, else Ok, with *rewritten set when the text
// must be parsed in an equivalent rewritten form (see base/toml.cc).
Status PrecheckToml(std::string_view text, const std::string& source, std::string* rewritten);

inline StatusOr<toml::table> ParseToml(std::string_view text, const std::string& source) {
  std::string rewritten;
  COE_RETURN_IF_ERROR(PrecheckToml(text, source, &rewritten));
  if (!rewritten.empty()) text = rewritten;
  toml::parse_result r = toml::parse(text, source);
  if (!r) {
    const toml::parse_error& e = r.error();
    return InvalidArgumentError(source + ":" + std::to_string(e.source().begin.line) + ":" +
                                std::to_string(e.source().begin.column) + ": " + std::string(e.description()));
  }
  return std::move(r).table();
}

// The node as an integer: an integer, or a float with an integral value in int64_t's
// range (as toml++'s value<int64_t>() would give, which in 3.3.0 casts out-of-range
// floats to int64_t: undefined behaviour). Nothing for anything else.
inline std::optional<int64_t> TomlInteger(const toml::node& n) {
  if (const auto* i = n.as_integer()) return i->get();
  if (const auto* f = n.as_floating_point()) {
    const double d = f->get();
    // [-2^63, 2^63): every integral double here converts exactly.
    if (std::isfinite(d) && d == std::floor(d) && d >= -9223372036854775808.0 && d < 9223372036854775808.0)
      return static_cast<int64_t>(d);
  }
  return std::nullopt;
}

inline std::string TomlWhere(const std::string& source, const toml::node& n) {
  if (n.source().begin.line == 0) return source;
  return source + ":" + std::to_string(n.source().begin.line) + ":" + std::to_string(n.source().begin.column);
}

// Writing TOML: `s` as a basic string literal (quoted, escaped); `text` as "# " comment
// lines (control characters and invalid UTF-8 become '?', so a comment cannot end
// early and inject keys); `v` as a float literal that reads back exactly.
std::string TomlQuote(std::string_view s);
std::string TomlCommentLines(std::string_view text);
std::string TomlNumber(double v);

}  // namespace coe

#endif  // COE_BASE_TOML_H_
