// Internal: a small RFC 4180 CSV reader. Hand-written because Debian 12 packages no
// C++ CSV library worth a dependency; it is fuzzed (fuzz/csv_fuzz.cc).
//
// Quoted fields may hold commas, quotes ("") and newlines; CRLF, LF and lone CR line
// ends are accepted; a UTF-8 byte-order mark is skipped; blank lines are skipped.
// Errors (an unterminated quote, text after a closing quote) name the source and line.
#ifndef COE_BASE_CSV_H_
#define COE_BASE_CSV_H_

#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "coe/status.h"

namespace coe::csv {

struct Row {
  int line = 0;  // 1-based line where the row starts
  std::vector<std::string> fields;
};

// Reads rows one at a time from a file (in blocks) or from text, so that a large file
// is never held whole. Not thread-safe.
class Reader {
 public:
  // Reads `path`; NotFound names it.
  static StatusOr<std::unique_ptr<Reader>> Open(const std::string& path);
  // Reads `text`, which must outlive the reader; `source` names it in messages.
  Reader(std::string_view text, std::string source);
  ~Reader();
  Reader(const Reader&) = delete;
  Reader& operator=(const Reader&) = delete;

  // The next row into *row (its fields' storage is reused); false at the end.
  StatusOr<bool> Next(Row* row);
  const std::string& source() const { return source_; }

 private:
  Reader(std::FILE* file, std::string source);
  int Peek();  // next byte, or -1 at the end
  void Skip() { ++pos_; }
  bool Fill();

  std::FILE* file_ = nullptr;
  std::string source_;
  std::string block_;      // file mode: the current block
  std::string_view data_;  // the bytes being read
  size_t pos_ = 0;
  int line_ = 1;
  bool started_ = false;
  bool read_error_ = false;
};

// Splits `text` into rows (for small files; large ones go through Reader).
StatusOr<std::vector<Row>> Parse(std::string_view text, const std::string& source);

// Counts line ends ('\n') in `path` (an upper bound on its rows, for reserving).
StatusOr<size_t> CountLines(const std::string& path);

// Quotes `field` when it needs quoting.
std::string Escape(std::string_view field);

}  // namespace coe::csv

#endif  // COE_BASE_CSV_H_
