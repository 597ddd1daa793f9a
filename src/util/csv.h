// Internal: a small RFC 4180 CSV reader. Hand-written because Debian 12 packages no
// C++ CSV library worth a dependency; it is fuzzed (fuzz/csv_fuzz.cc).
#ifndef COE_UTIL_CSV_H_
#define COE_UTIL_CSV_H_

#include <string>
#include <string_view>
#include <vector>

#include "coe/status.h"

namespace coe::csv {

struct Row {
  int line = 0;  // 1-based line where the row starts
  std::vector<std::string> fields;
};

// Splits `text` into rows. Quoted fields may hold commas, quotes ("") and newlines;
// CRLF, LF and lone CR line ends are accepted; a UTF-8 byte-order mark is skipped; blank
// lines are skipped. Errors (an unterminated quote, text after a closing quote) name
// `source` and the line.
StatusOr<std::vector<Row>> Parse(std::string_view text, const std::string& source);

// Quotes `field` when it needs quoting.
std::string Escape(std::string_view field);

}  // namespace coe::csv

#endif  // COE_UTIL_CSV_H_
