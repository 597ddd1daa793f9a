#include "util/csv.h"

namespace coe::csv {

StatusOr<std::vector<Row>> Parse(std::string_view text, const std::string& source) {
  std::vector<Row> rows;
  size_t i = 0;
  const size_t n = text.size();
  if (text.substr(0, 3) == "\xEF\xBB\xBF") i = 3;
  int line = 1;
  while (i < n) {
    // Skip blank lines.
    if (text[i] == '\n') { ++line; ++i; continue; }
    if (text[i] == '\r') {  // CRLF, or a lone CR, which ends a row too (see below)
      ++line;
      i += (i + 1 < n && text[i + 1] == '\n') ? 2 : 1;
      continue;
    }
    Row row;
    row.line = line;
    std::string field;
    bool row_done = false;
    while (!row_done) {
      field.clear();
      if (i < n && text[i] == '"') {
        const int quote_line = line;
        ++i;
        bool closed = false;
        while (i < n) {
          char c = text[i];
          if (c == '"') {
            if (i + 1 < n && text[i + 1] == '"') { field.push_back('"'); i += 2; continue; }
            ++i;
            closed = true;
            break;
          }
          if (c == '\n') ++line;
          field.push_back(c);
          ++i;
        }
        if (!closed) {
          return InvalidArgumentError(source + ":" + std::to_string(quote_line) +
                                      ": unterminated quoted field");
        }
        if (i < n && text[i] != ',' && text[i] != '\n' && text[i] != '\r') {
          return InvalidArgumentError(source + ":" + std::to_string(line) +
                                      ": unexpected text after a closing quote (field " +
                                      std::to_string(row.fields.size() + 1) + ")");
        }
      } else {
        while (i < n && text[i] != ',' && text[i] != '\n' && text[i] != '\r') {
          field.push_back(text[i]);
          ++i;
        }
      }
      row.fields.push_back(field);
      if (i >= n) {
        row_done = true;
      } else if (text[i] == ',') {
        ++i;
      } else if (text[i] == '\n') {
        ++i;
        ++line;
        row_done = true;
      } else {  // '\r'
        ++i;
        if (i < n && text[i] == '\n') ++i;
        ++line;
        row_done = true;
      }
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

std::string Escape(std::string_view field) {
  if (field.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(field);
  std::string out = "\"";
  for (char c : field) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

}  // namespace coe::csv
