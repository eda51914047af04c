// Column-aligned text tables for the mesh commands, in kubectl's shape:
// upper-case headers, columns three spaces apart, no borders.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace trellis::cli {

using TableRow = std::vector<std::string>;

// Renders `headers` and `rows` (each as wide as `headers`) with a newline
// after every line. Widths count UTF-8 characters, not bytes. Empty cells
// show as "-"; control characters become spaces so that no value can break
// the layout; a cell longer than `max_cell` characters is cut to that with
// "...", so one long value cannot push every other column off the screen.
std::string format_table(const TableRow& headers, const std::vector<TableRow>& rows, size_t max_cell = 60);

}  // namespace trellis::cli
