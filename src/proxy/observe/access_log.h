// Access log as JSON lines. Each worker formats into its own buffer and writes
// whole lines with one write() to an O_APPEND descriptor, so lines from
// different workers never interleave and no lock is shared.
#pragma once

#include <string>
#include <string_view>

#include "common/time.h"

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

// One HTTP exchange, as its access-log line reports it.
struct HttpAccessEntry {
  std::string_view listener, client, method, path, host, protocol;
  int status = 0;
  int grpc_status = -1;  // a gRPC call's grpc-status; -1: none (not gRPC, or ended without one)
  uint64_t bytes_received = 0;
  uint64_t bytes_sent = 0;
  Duration duration{};
  std::string_view upstream, cluster, request_id;
  uint32_t retries = 0;
  std::string_view identity;   // the client's verified mTLS identity, if any
  std::string_view denied_by;  // the authorization that refused it, if any
};

// One TCP connection, as its access-log line reports it.
struct TcpAccessEntry {
  std::string_view listener, client, upstream, cluster;
  uint64_t bytes_received = 0;
  uint64_t bytes_sent = 0;
  Duration duration{};
  std::string_view identity;
  std::string_view denied_by;  // refused at accept by this authorization
};

// The line (JSON, without newline) into `line`, which is cleared first.
void format_access_line(const HttpAccessEntry& entry, std::string& line);
void format_access_line(const TcpAccessEntry& entry, std::string& line);

}  // namespace trellis::proxy
