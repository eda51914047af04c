// Access logs: one line per request or TCP connection, as JSON with the
// fields the user picks or as a text template. Each worker formats into its
// own buffer and hands whole buffers to the log's writer thread, which
// writes them to an O_APPEND file (or standard output): lines from different
// workers never interleave, and a slow disk or a full pipe never holds up a
// worker: past 8 MiB waiting, lines are dropped and counted. The file is
// opened again on SIGUSR1, for log rotation.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/log_format.h"
#include "common/time.h"

namespace trellis::proxy {

// Why the proxy answered a request itself, or the exchange broke: the
// response flags, as short codes (LogFormat's response_flags).
enum ResponseFlag : uint16_t {
  kFlagNoRoute = 1 << 0,            // NR
  kFlagNoHealthyUpstream = 1 << 1,  // UH
  kFlagConnectFailure = 1 << 2,     // UF
  kFlagOverflow = 1 << 3,           // UO
  kFlagUpstreamReset = 1 << 4,      // UR
  kFlagUpstreamProtocol = 1 << 5,   // UPE
  kFlagTimeout = 1 << 6,            // UT
  kFlagIdleTimeout = 1 << 7,        // SI
  kFlagRateLimited = 1 << 8,        // RL
  kFlagDenied = 1 << 9,             // DENY
  kFlagFaultAbort = 1 << 10,        // FI
  kFlagClientLeft = 1 << 11,        // DC
  kFlagBodyTimeout = 1 << 12,       // BT
  kFlagOverloaded = 1 << 13,        // OL
  kFlagNoBackend = 1 << 14,         // NB
};
// "UH,UF"; empty for none.
void append_response_flags(std::string& out, uint16_t flags);

// Appends `s` to `out` as a JSON string literal (with quotes).
void append_json_string(std::string& out, std::string_view s);

// One HTTP exchange or TCP connection, as its line reports it.
struct AccessEntry {
  bool http = true;
  std::string_view listener, client, method, path, host, protocol;
  int status = 0;
  int grpc_status = -1;  // a gRPC call's grpc-status; -1: none (not gRPC, or ended without one)
  uint64_t bytes_received = 0;
  uint64_t bytes_sent = 0;
  Duration duration{};
  std::string_view upstream, cluster, route, request_id;
  uint32_t retries = 0;
  uint16_t response_flags = 0;
  std::string_view trace_id;   // when traced
  std::string_view identity;   // the client's verified mTLS identity, if any
  std::string_view denied_by;  // the authorization that refused it, if any
  std::string_view source_service, destination_service;
};

// The line (without newline) into `line`, which is cleared first.
void format_access_line(const LogFormat& format, const AccessEntry& entry, std::string& line);

class AccessLog {
 public:
  static constexpr size_t kMaxPendingBytes = 8 << 20;

  // Opens (creating, appending) `path` and starts its writer. `dropped` and
  // `written` count lines, for the life of the process.
  static Result<std::shared_ptr<AccessLog>> open(const std::string& path, LogFormat format,
                                                 std::atomic<uint64_t>* written,
                                                 std::atomic<uint64_t>* dropped);
  // The writer writes what it holds, then stops on its own: a full pipe
  // never holds up whoever lets go of the log last.
  ~AccessLog();
  AccessLog(const AccessLog&) = delete;
  AccessLog& operator=(const AccessLog&) = delete;

  const std::string& path() const { return path_; }
  const LogFormat& format() const { return format_; }
  // `lines` whole lines (newline-terminated, `count` of them) for the
  // writer; dropped and counted when it already holds kMaxPendingBytes.
  void submit(std::string&& lines, uint64_t count);
  // Opens the file again, in place of the one open (after a rotation).
  bool reopen(std::string& error);

 private:
  struct Shared;
  AccessLog(std::string path, LogFormat format, std::shared_ptr<Shared> shared);

  std::string path_;
  LogFormat format_;
  std::shared_ptr<Shared> shared_;
};

}  // namespace trellis::proxy
