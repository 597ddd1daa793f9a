#include "base/csv.h"

#include <algorithm>
#include <cstring>

namespace coe::csv {

namespace {
constexpr size_t kBlock = 1 << 20;
}

StatusOr<std::unique_ptr<Reader>> Reader::Open(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return NotFoundError("cannot open '" + path + "'");
  return std::unique_ptr<Reader>(new Reader(f, path));
}

Reader::Reader(std::string_view text, std::string source) : source_(std::move(source)), data_(text) {}
Reader::Reader(std::FILE* file, std::string source) : file_(file), source_(std::move(source)) {}
Reader::~Reader() {
  if (file_) std::fclose(file_);
}

bool Reader::Fill() {
  if (!file_) return false;
  block_.resize(kBlock);
  const size_t got = std::fread(block_.data(), 1, kBlock, file_);
  if (got < kBlock && std::ferror(file_)) read_error_ = true;
  block_.resize(got);
  data_ = block_;
  pos_ = 0;
  return got > 0;
}

int Reader::Peek() {
  if (pos_ >= data_.size() && !Fill()) return -1;
  return static_cast<unsigned char>(data_[pos_]);
}

StatusOr<bool> Reader::Next(Row* row) {
  if (!started_) {
    started_ = true;
    const char bom[] = "\xEF\xBB\xBF";
    if (Peek() == 0xEF && data_.substr(pos_, 3) == std::string_view(bom, 3)) pos_ += 3;
  }
  // Skip blank lines.
  for (;;) {
    const int c = Peek();
    if (c == '\n') {
      ++line_;
      Skip();
    } else if (c == '\r') {  // CRLF, or a lone CR, which ends a row too
      ++line_;
      Skip();
      if (Peek() == '\n') Skip();
    } else {
      break;
    }
  }
  if (Peek() < 0) {
    if (read_error_) return InternalError("error reading '" + source_ + "'");
    return false;
  }
  row->line = line_;
  size_t nf = 0;
  for (;;) {
    if (row->fields.size() <= nf) row->fields.emplace_back();
    std::string& field = row->fields[nf++];
    field.clear();
    if (Peek() == '"') {
      const int quote_line = line_;
      Skip();
      bool closed = false;
      for (int c; (c = Peek()) >= 0;) {
        Skip();
        if (c == '"') {
          if (Peek() == '"') {
            field.push_back('"');
            Skip();
            continue;
          }
          closed = true;
          break;
        }
        if (c == '\n') ++line_;
        field.push_back(static_cast<char>(c));
      }
      if (!closed)
        return InvalidArgumentError(source_ + ":" + std::to_string(quote_line) + ": unterminated quoted field");
      const int c = Peek();
      if (c >= 0 && c != ',' && c != '\n' && c != '\r')
        return InvalidArgumentError(source_ + ":" + std::to_string(line_) +
                                    ": unexpected text after a closing quote (field " + std::to_string(nf) + ")");
    } else {
      // Unquoted: take the run up to the next delimiter in one go.
      for (;;) {
        if (pos_ >= data_.size() && !Fill()) break;
        const size_t end = std::min(data_.size(), data_.find_first_of(",\n\r", pos_));
        field.append(data_.data() + pos_, end - pos_);
        pos_ = end;
        if (end < data_.size()) break;
      }
    }
    const int c = Peek();
    if (c == ',') {
      Skip();
      continue;
    }
    if (c == '\n') {
      Skip();
      ++line_;
    } else if (c == '\r') {
      Skip();
      if (Peek() == '\n') Skip();
      ++line_;
    }
    break;
  }
  row->fields.resize(nf);
  if (read_error_) return InternalError("error reading '" + source_ + "'");
  return true;
}

StatusOr<std::vector<Row>> Parse(std::string_view text, const std::string& source) {
  Reader reader(text, source);
  std::vector<Row> rows;
  Row row;
  for (;;) {
    COE_ASSIGN_OR_RETURN(bool more, reader.Next(&row));
    if (!more) break;
    rows.push_back(row);
  }
  return rows;
}

StatusOr<size_t> CountLines(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return NotFoundError("cannot open '" + path + "'");
  std::string buf(kBlock, '\0');
  size_t lines = 0, got;
  while ((got = std::fread(buf.data(), 1, buf.size(), f)) > 0) lines += std::count(buf.data(), buf.data() + got, '\n');
  const bool error = std::ferror(f);
  std::fclose(f);
  if (error) return InternalError("error reading '" + path + "'");
  return lines;
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
