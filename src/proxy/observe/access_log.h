// Access log as JSON lines. Each worker formats into its own buffer and writes
// whole lines with one write() to an O_APPEND descriptor, so lines from
// different workers never interleave and no lock is shared.
#pragma once

#include <string>
#include <string_view>

namespace trellis::proxy {

class AccessLog {
 public:
  // Opens (creating, appending) `path`; false with `error` set on failure.
  bool open(const std::string& path, std::string& error);
  ~AccessLog();
  int fd() const { return fd_; }
  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

// Appends `s` to `out` as a JSON string literal (with quotes).
void append_json_string(std::string& out, std::string_view s);

}  // namespace trellis::proxy
