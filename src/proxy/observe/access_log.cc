#include "proxy/observe/access_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iterator>

#include <fmt/format.h>

namespace trellis::proxy {

bool AccessLog::open(const std::string& path, std::string& error) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    error = "cannot open access log " + path + ": " + std::strerror(errno);
    return false;
  }
  path_ = path;
  return true;
}

AccessLog::~AccessLog() {
  if (fd_ >= 0) ::close(fd_);
}

void append_json_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('"');
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c < 0x20 || c >= 0x7f) {
      // Non-ASCII bytes are escaped too: request data is not trusted to be UTF-8.
      out.append("\\u00");
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  out.push_back('"');
}

namespace {

void begin_line(std::string& line, std::string_view listener, std::string_view client) {
  line.clear();
  char now[48];
  format_wall_time_now(now);
  line += "{\"time\":\"";
  line += now;
  line += "\",\"listener\":";
  append_json_string(line, listener);
  line += ",\"client\":";
  append_json_string(line, client);
}

double millis(Duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// Only when known, so plain-text lines stay as they were.
void append_security(std::string& line, std::string_view identity, std::string_view denied_by) {
  if (!identity.empty()) {
    line += ",\"client_identity\":";
    append_json_string(line, identity);
  }
  if (!denied_by.empty()) {
    line += ",\"denied_by\":";
    append_json_string(line, denied_by);
  }
}

}  // namespace

void format_access_line(const HttpAccessEntry& e, std::string& line) {
  begin_line(line, e.listener, e.client);
  line += ",\"method\":";
  append_json_string(line, e.method);
  line += ",\"path\":";
  append_json_string(line, e.path);
  line += ",\"host\":";
  append_json_string(line, e.host);
  line += ",\"protocol\":";
  append_json_string(line, e.protocol);
  fmt::format_to(std::back_inserter(line),
                 ",\"status\":{},\"bytes_received\":{},\"bytes_sent\":{},\"duration_ms\":{:.3f}", e.status,
                 e.bytes_received, e.bytes_sent, millis(e.duration));
  line += ",\"upstream\":";
  append_json_string(line, e.upstream);
  line += ",\"cluster\":";
  append_json_string(line, e.cluster);
  line += ",\"request_id\":";
  append_json_string(line, e.request_id);
  if (e.retries > 0) fmt::format_to(std::back_inserter(line), ",\"retries\":{}", e.retries);
  if (e.grpc_status >= 0) fmt::format_to(std::back_inserter(line), ",\"grpc_status\":{}", e.grpc_status);
  append_security(line, e.identity, e.denied_by);
  line += "}";
}

void format_access_line(const TcpAccessEntry& e, std::string& line) {
  begin_line(line, e.listener, e.client);
  line += ",\"upstream\":";
  append_json_string(line, e.upstream);
  line += ",\"cluster\":";
  append_json_string(line, e.cluster);
  fmt::format_to(std::back_inserter(line),
                 ",\"protocol\":\"tcp\",\"bytes_received\":{},\"bytes_sent\":{},\"duration_ms\":{:.3f}",
                 e.bytes_received, e.bytes_sent, millis(e.duration));
  append_security(line, e.identity, e.denied_by);
  line += "}";
}

}  // namespace trellis::proxy
