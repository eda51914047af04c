// The pure parts of a load run: the target URL, the request bytes, the pacing
// of intended send times, the response reader and the counters. The engine
// that drives sockets is in load_generator.cc.
#include "cli/load_generator.h"

#include <algorithm>
#include <cmath>

#include "common/text.h"
#include "http/header.h"

namespace trellis::cli {

using SteadyClock = std::chrono::steady_clock;
using http::iequals;

// ------------------------------------------------------------------- target

namespace {

bool starts_with_nocase(std::string_view s, std::string_view lower_prefix) {
  return s.size() >= lower_prefix.size() && iequals(s.substr(0, lower_prefix.size()), lower_prefix);
}

}  // namespace

bool parse_target(std::string_view url, Target& out, std::string& error) {
  if (starts_with_nocase(url, "h2://") || starts_with_nocase(url, "h2c://")) {
    error = "use an http:// URL (https:// for TLS), with --protocol h2 for HTTP/2";
    return false;
  }
  out.tls = starts_with_nocase(url, "https://");
  if (!out.tls && !starts_with_nocase(url, "http://")) {
    error = "the URL must look like http://host:port/path or https://host:port/path";
    return false;
  }
  std::string_view rest = url.substr(out.tls ? 8 : 7);
  size_t end = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, end);
  std::string_view path = end == std::string_view::npos ? std::string_view{} : rest.substr(end);
  if (size_t hash = path.find('#'); hash != std::string_view::npos) path = path.substr(0, hash);

  if (authority.empty()) {
    error = "the URL has no host";
    return false;
  }
  if (authority.find('@') != std::string_view::npos) {
    error = "user information in the URL is not supported";
    return false;
  }
  std::string_view host = authority;
  std::string_view port = out.tls ? "443" : "80";
  if (authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) {
      error = "missing \"]\" after the IPv6 address";
      return false;
    }
    host = authority.substr(0, close + 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') {
        error = "unexpected text after the IPv6 address";
        return false;
      }
      port = after.substr(1);
    }
  } else if (size_t colon = authority.rfind(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  std::string address;
  if (iequals(host, "localhost")) {
    address = "127.0.0.1";
  } else {
    address = host;
  }
  address += ':';
  address += port;
  if (!net::parse_socket_address(address, out.address, error)) {
    error = "bad host or port in the URL: " + error;
    return false;
  }

  for (char c : path) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) {
      error = "the URL path must not contain spaces, controls or non-ASCII bytes (percent-encode them)";
      return false;
    }
  }
  out.url = url;
  out.authority = authority;
  // The name the server's certificate must carry: the host as written.
  out.host = host.front() == '[' ? host.substr(1, host.size() - 2) : host;
  out.path = path.empty() ? "/" : (path.front() == '?' ? "/" + std::string(path) : std::string(path));
  return true;
}

std::vector<std::pair<std::string, std::string>> build_http2_fields(const LoadOptions& options) {
  std::vector<std::pair<std::string, std::string>> fields;
  bool agent = false;
  for (const auto& [name, value] : options.headers) {
    std::string lower = ascii_lower(name);
    if (lower == "host") continue;  // :authority (see run_load)
    agent = agent || lower == "user-agent";
    fields.emplace_back(std::move(lower), value);
  }
  if (!agent) fields.emplace_back("user-agent", "trellis-load");
  const std::string& m = options.method;
  if (options.body_size > 0 || m == "POST" || m == "PUT" || m == "PATCH")
    fields.emplace_back("content-length", std::to_string(options.body_size));
  return fields;
}

std::string build_http1_request(const LoadOptions& options) {
  auto given = [&](std::string_view lower) {
    return std::any_of(options.headers.begin(), options.headers.end(),
                       [&](const auto& h) { return iequals(h.first, lower); });
  };
  std::string r;
  r.reserve(256 + options.body_size);
  r += options.method;
  r += ' ';
  r += options.target.path;
  r += " HTTP/1.1\r\n";
  if (!given("host")) {
    r += "Host: ";
    r += options.target.authority;
    r += "\r\n";
  }
  for (const auto& [name, value] : options.headers) {
    r += name;
    r += ": ";
    r += value;
    r += "\r\n";
  }
  if (!given("user-agent")) r += "User-Agent: trellis-load\r\n";
  // Servers may refuse a POST/PUT/PATCH without framing (411), so those get
  // an explicit zero length.
  const std::string& m = options.method;
  if (options.body_size > 0 || m == "POST" || m == "PUT" || m == "PATCH") {
    r += "Content-Length: ";
    r += std::to_string(options.body_size);
    r += "\r\n";
  }
  r += "\r\n";
  r.append(options.body_size, 'x');
  return r;
}

// -------------------------------------------------------------------- pacer

Pacer::Pacer(double rate, uint32_t connections, uint32_t index)
    : period_ns_(rate > 0 ? 1e9 / rate : 0), stride_(connections), index_(index) {}

MonoTime Pacer::intended(uint64_t i) const {
  // Computed from the start each time (not accumulated), so rounding never drifts.
  double ns = static_cast<double>(index_ + i * stride_) * period_ns_;
  return t0_ + std::chrono::nanoseconds(std::llround(ns));
}

uint64_t Pacer::due_before(MonoTime t) const {
  if (!open_loop() || t <= t0_) return 0;
  double elapsed = static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(t - t0_).count());
  double estimate = (elapsed / period_ns_ - static_cast<double>(index_)) / static_cast<double>(stride_);
  uint64_t n = estimate <= 0 ? 0 : static_cast<uint64_t>(std::ceil(estimate));
  // The estimate is off by at most one either way from the rounding in intended().
  while (n > 0 && intended(n - 1) >= t) --n;
  while (intended(n) < t) ++n;
  return n;
}

// -------------------------------------------------------------------- stats

const char* error_kind_name(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kConnect:
      return "connect";
    case ErrorKind::kReset:
      return "reset";
    case ErrorKind::kTimeout:
      return "timeout";
    case ErrorKind::kProtocol:
      return "protocol";
  }
  return "unknown";
}

void LoadStats::merge(const LoadStats& other) {
  sent += other.sent;
  completed += other.completed;
  missed += other.missed;
  for (size_t i = 0; i < errors.size(); ++i) errors[i] += other.errors[i];
  for (size_t i = 0; i < status.size(); ++i) status[i] += other.status[i];
  for (size_t i = 0; i < grpc_status.size(); ++i) grpc_status[i] += other.grpc_status[i];
  grpc_status_missing += other.grpc_status_missing;
  latency_us.merge(other.latency_us);
  send_delay_us.merge(other.send_delay_us);
}

}  // namespace trellis::cli
