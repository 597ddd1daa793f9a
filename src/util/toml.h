// Internal: toml++ without exceptions (coe's API returns Status), plus helpers that
// turn a toml++ parse error into a message naming file, line and column.
#ifndef COE_UTIL_TOML_H_
#define COE_UTIL_TOML_H_

#define TOML_EXCEPTIONS 0
#define TOML_HEADER_ONLY 1  // Debian's shared build has exceptions on; use the headers
#include <toml++/toml.h>

#include <string>

#include "coe/status.h"

namespace coe {

inline StatusOr<toml::table> ParseToml(std::string_view text, const std::string& source) {
  toml::parse_result r = toml::parse(text, source);
  if (!r) {
    const toml::parse_error& e = r.error();
    return InvalidArgumentError(source + ":" + std::to_string(e.source().begin.line) + ":" +
                                std::to_string(e.source().begin.column) + ": " +
                                std::string(e.description()));
  }
  return std::move(r).table();
}

inline std::string TomlWhere(const std::string& source, const toml::node& n) {
  if (n.source().begin.line == 0) return source;
  return source + ":" + std::to_string(n.source().begin.line);
}

}  // namespace coe

#endif  // COE_UTIL_TOML_H_
