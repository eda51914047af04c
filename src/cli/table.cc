#include "cli/table.h"

#include <algorithm>

namespace trellis::cli {
namespace {

constexpr size_t kGap = 3;

size_t utf8_length(const std::string& s) {
  return static_cast<size_t>(std::count_if(
      s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

// Byte offset where the character number `chars` starts (or the end).
size_t utf8_offset(const std::string& s, size_t chars) {
  size_t seen = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) {
      if (seen == chars) return i;
      ++seen;
    }
  }
  return s.size();
}

std::string cell_text(const std::string& raw, size_t max_cell) {
  if (raw.empty()) return "-";
  std::string s = raw;
  for (char& c : s) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  }
  if (max_cell > 3 && utf8_length(s) > max_cell) s = s.substr(0, utf8_offset(s, max_cell - 3)) + "...";
  return s;
}

}  // namespace

std::string format_table(const TableRow& headers, const std::vector<TableRow>& rows, size_t max_cell) {
  std::vector<TableRow> cells;
  cells.reserve(rows.size() + 1);
  cells.push_back(headers);
  for (const TableRow& row : rows) {
    TableRow fitted;
    for (size_t i = 0; i < headers.size(); ++i)
      fitted.push_back(cell_text(i < row.size() ? row[i] : "", max_cell));
    cells.push_back(std::move(fitted));
  }
  std::vector<size_t> widths(headers.size(), 0);
  for (const TableRow& row : cells) {
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], utf8_length(row[i]));
  }
  std::string out;
  for (const TableRow& row : cells) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line.append(widths[i] - utf8_length(row[i]) + kGap, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line;
    out += '\n';
  }
  return out;
}

}  // namespace trellis::cli
