#include "proxy/observe/access_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <iterator>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "common/quiet_thread.h"

namespace trellis::proxy {
namespace {

constexpr std::string_view kFlagNames[] = {"NR", "UH",   "UF", "UO", "UR", "UPE", "UT", "SI",
                                           "RL", "DENY", "FI", "DC", "BT", "OL",  "NB"};

// A field's value on one line.
struct Value {
  enum class Kind : uint8_t { kString, kInteger, kMillis, kNull } kind = Kind::kString;
  std::string_view text;
  int64_t integer = 0;
  double millis = 0;
  bool known = true;  // false: nothing to say (left out of the default JSON line)
};

Value value_of(LogField f, const AccessEntry& e, std::string_view now, std::string& flags) {
  auto str = [](std::string_view s) { return Value{Value::Kind::kString, s, 0, 0, !s.empty()}; };
  auto num = [](int64_t n, bool known = true) { return Value{Value::Kind::kInteger, {}, n, 0, known}; };
  switch (f) {
    case LogField::kTime:
      return str(now);
    case LogField::kListener:
      return str(e.listener);
    case LogField::kClient:
      return str(e.client);
    case LogField::kMethod:
      return str(e.method);
    case LogField::kPath:
      return str(e.path);
    case LogField::kHost:
      return str(e.host);
    case LogField::kProtocol:
      return str(e.http ? e.protocol : std::string_view("tcp"));
    case LogField::kStatus:
      return num(e.status, e.http);
    case LogField::kGrpcStatus:
      return num(e.grpc_status, e.grpc_status >= 0);
    case LogField::kBytesReceived:
      return num(static_cast<int64_t>(e.bytes_received));
    case LogField::kBytesSent:
      return num(static_cast<int64_t>(e.bytes_sent));
    case LogField::kDurationMs:
      return Value{
          Value::Kind::kMillis, {}, 0, std::chrono::duration<double, std::milli>(e.duration).count()};
    case LogField::kUpstream:
      return str(e.upstream);
    case LogField::kCluster:
      return str(e.cluster);
    case LogField::kRoute:
      return str(e.route);
    case LogField::kRequestId:
      return str(e.request_id);
    case LogField::kRetries:
      return num(e.retries, e.retries > 0);
    case LogField::kResponseFlags:
      flags.clear();
      append_response_flags(flags, e.response_flags);
      return str(flags);
    case LogField::kTraceId:
      return str(e.trace_id);
    case LogField::kClientIdentity:
      return str(e.identity);
    case LogField::kDeniedBy:
      return str(e.denied_by);
    case LogField::kSourceService:
      return str(e.source_service);
    case LogField::kDestinationService:
      return str(e.destination_service);
  }
  return {};
}

// The default JSON line: what every line says, then what is known.
constexpr LogField kDefaultHttp[] = {
    LogField::kTime,          LogField::kListener,  LogField::kClient,         LogField::kMethod,
    LogField::kPath,          LogField::kHost,      LogField::kProtocol,       LogField::kStatus,
    LogField::kBytesReceived, LogField::kBytesSent, LogField::kDurationMs,     LogField::kUpstream,
    LogField::kCluster,       LogField::kRequestId, LogField::kRetries,        LogField::kGrpcStatus,
    LogField::kResponseFlags, LogField::kTraceId,   LogField::kClientIdentity, LogField::kDeniedBy};
constexpr LogField kDefaultTcp[] = {LogField::kTime,           LogField::kListener,  LogField::kClient,
                                    LogField::kUpstream,       LogField::kCluster,   LogField::kProtocol,
                                    LogField::kBytesReceived,  LogField::kBytesSent, LogField::kDurationMs,
                                    LogField::kClientIdentity, LogField::kDeniedBy};
// Said on every default line, known or not (as they always were).
bool always_in_default(LogField f, bool http) {
  switch (f) {
    case LogField::kTime:
    case LogField::kListener:
    case LogField::kClient:
    case LogField::kUpstream:
    case LogField::kCluster:
    case LogField::kProtocol:
    case LogField::kBytesReceived:
    case LogField::kBytesSent:
    case LogField::kDurationMs:
      return true;
    case LogField::kMethod:
    case LogField::kPath:
    case LogField::kHost:
    case LogField::kStatus:
    case LogField::kRequestId:
      return http;
    default:
      return false;
  }
}

void append_json_value(std::string& line, const Value& v) {
  switch (v.kind) {
    case Value::Kind::kString:
      append_json_string(line, v.text);
      break;
    case Value::Kind::kInteger:
      fmt::format_to(std::back_inserter(line), "{}", v.integer);
      break;
    case Value::Kind::kMillis:
      fmt::format_to(std::back_inserter(line), "{:.3f}", v.millis);
      break;
    case Value::Kind::kNull:
      line += "null";
      break;
  }
}

// Text lines: "-" for nothing; bytes outside printable ASCII, '"' and '\'
// as \xHH, so a line stays one line whatever a request carried.
void append_text_value(std::string& line, const Value& v) {
  static constexpr char kHex[] = "0123456789abcdef";
  switch (v.kind) {
    case Value::Kind::kString:
      if (v.text.empty()) {
        line += '-';
        break;
      }
      for (unsigned char c : v.text) {
        if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
          line += "\\x";
          line += kHex[c >> 4];
          line += kHex[c & 15];
        } else {
          line += static_cast<char>(c);
        }
      }
      break;
    case Value::Kind::kInteger:
      if (v.known) {
        fmt::format_to(std::back_inserter(line), "{}", v.integer);
      } else {
        line += '-';
      }
      break;
    case Value::Kind::kMillis:
      fmt::format_to(std::back_inserter(line), "{:.3f}", v.millis);
      break;
    case Value::Kind::kNull:
      line += '-';
      break;
  }
}

}  // namespace

void append_response_flags(std::string& out, uint16_t flags) {
  bool first = true;
  for (size_t i = 0; i < std::size(kFlagNames); ++i) {
    if ((flags & (1u << i)) == 0) continue;
    if (!first) out += ',';
    out += kFlagNames[i];
    first = false;
  }
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

void format_access_line(const LogFormat& format, const AccessEntry& e, std::string& line) {
  line.clear();
  char now[48];
  format_wall_time_now(now);
  std::string flags;
  if (format.text) {
    for (const LogFormat::Piece& p : format.pieces) {
      line += p.literal;
      if (p.field) append_text_value(line, value_of(*p.field, e, now, flags));
    }
    return;
  }
  line += '{';
  bool first = true;
  auto field = [&](LogField f, const Value& v) {
    if (!first) line += ',';
    first = false;
    line += '"';
    line += log_field_name(f);
    line += "\":";
    append_json_value(line, v);
  };
  if (format.fields.empty()) {
    const LogField* begin = e.http ? std::begin(kDefaultHttp) : std::begin(kDefaultTcp);
    const LogField* end = e.http ? std::end(kDefaultHttp) : std::end(kDefaultTcp);
    for (const LogField* f = begin; f != end; ++f) {
      Value v = value_of(*f, e, now, flags);
      if (v.known || always_in_default(*f, e.http)) field(*f, v);
    }
  } else {
    for (LogField f : format.fields) {
      Value v = value_of(f, e, now, flags);
      if (!v.known && (f == LogField::kStatus || f == LogField::kGrpcStatus)) v.kind = Value::Kind::kNull;
      field(f, v);
    }
  }
  line += '}';
}

// ---- the writer -----------------------------------------------------------

struct AccessLog::Shared {
  std::mutex mu;
  std::condition_variable wake;
  std::deque<std::pair<std::string, uint64_t>> pending;  // buffers and their line counts
  size_t pending_bytes = 0;
  bool stopping = false;
  bool done = false;  // the writer wrote everything and closed the file
  int fd = -1;
  std::atomic<uint64_t>* written = nullptr;
  std::atomic<uint64_t>* dropped = nullptr;

  void run() {
    std::unique_lock lock(mu);
    while (true) {
      wake.wait(lock, [&] { return stopping || !pending.empty(); });
      if (pending.empty() && stopping) break;
      auto [buffer, count] = std::move(pending.front());
      pending.pop_front();
      pending_bytes -= buffer.size();
      lock.unlock();
      // Whole lines in one write() on an O_APPEND file.
      const char* p = buffer.data();
      size_t left = buffer.size();
      while (left > 0) {
        ssize_t n = ::write(fd, p, left);
        if (n < 0) {
          if (errno == EINTR) continue;
          break;
        }
        p += n;
        left -= static_cast<size_t>(n);
      }
      (left == 0 ? written : dropped)->fetch_add(count, std::memory_order_relaxed);
      lock.lock();
    }
    ::close(fd);
    done = true;
    wake.notify_all();
  }
};

Result<std::shared_ptr<AccessLog>> AccessLog::open(const std::string& path, LogFormat format,
                                                   std::atomic<uint64_t>* written,
                                                   std::atomic<uint64_t>* dropped) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return Error{"cannot open access log " + path + ": " + std::strerror(errno)};
  auto shared = std::make_shared<Shared>();
  shared->fd = fd;
  shared->written = written;
  shared->dropped = dropped;
  quiet_thread([shared] { shared->run(); }).detach();
  return std::shared_ptr<AccessLog>(new AccessLog(path, std::move(format), std::move(shared)));
}

AccessLog::AccessLog(std::string path, LogFormat format, std::shared_ptr<Shared> shared)
    : path_(std::move(path)), format_(std::move(format)), shared_(std::move(shared)) {}

AccessLog::~AccessLog() {
  std::unique_lock lock(shared_->mu);
  shared_->stopping = true;
  shared_->wake.notify_all();
  // The last lines (a proxy shutting down) get a second to reach the file.
  shared_->wake.wait_for(lock, std::chrono::seconds(1), [&] { return shared_->done; });
}

void AccessLog::submit(std::string&& lines, uint64_t count) {
  {
    std::lock_guard lock(shared_->mu);
    if (shared_->pending_bytes + lines.size() > kMaxPendingBytes) {
      shared_->dropped->fetch_add(count, std::memory_order_relaxed);
      return;
    }
    shared_->pending_bytes += lines.size();
    shared_->pending.emplace_back(std::move(lines), count);
  }
  shared_->wake.notify_one();
}

bool AccessLog::reopen(std::string& error) {
  int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    error = "cannot open access log " + path_ + " again: " + std::strerror(errno);
    return false;
  }
  // In place: a write under way finishes on the old file, the next goes to
  // the new one.
  std::lock_guard lock(shared_->mu);
  bool ok = ::dup3(fd, shared_->fd, O_CLOEXEC) >= 0;
  if (!ok) error = "cannot open access log " + path_ + " again: " + std::strerror(errno);
  ::close(fd);
  return ok;
}

}  // namespace trellis::proxy
