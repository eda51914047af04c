// The engine of `trellis load`: worker threads, each with its own event loop
// and share of the connections, sending HTTP/1.1 requests on an open-loop
// schedule (or closed loop) and measuring every request's latency from the
// time it was meant to be sent, so that a stalled server cannot hide its stall
// by holding the generator back (coordinated omission).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/hdr_histogram.h"
#include "common/result.h"
#include "common/time.h"
#include "net/address.h"
#include "net/buffer.h"

namespace trellis::net {
class TransportFactory;
}

namespace trellis::cli {

// Wire protocols the generator speaks: HTTP/1.1 (one request in flight per
// connection) and HTTP/2 with prior knowledge (h2c; `streams` in flight per
// connection). Pacing, measurement and reporting are the same for both.
enum class Protocol : uint8_t { kHttp1, kHttp2 };

struct Target {
  std::string url;             // as given
  net::SocketAddress address;  // where to connect
  std::string authority;       // Host header: host[:port] as written in the URL
  std::string path;            // request target in origin form, "/" when the URL has none
  bool tls = false;            // https://: TLS, the protocol chosen by ALPN
  std::string host;            // as written (no brackets): what the server's certificate must name
};

// Parses "http://host[:port][/path][?query]" (or https://, port 443 by default). The host is an IPv4 literal,
// a bracketed IPv6 literal or "localhost" (127.0.0.1); no other name lookup.
bool parse_target(std::string_view url, Target& out, std::string& error);

struct LoadOptions {
  Target target;
  Protocol protocol = Protocol::kHttp1;
  double rate = 0;  // requests per second over all connections; 0: closed loop
  Duration duration = std::chrono::seconds(10);
  Duration warmup{};  // requests meant for the warm-up are sent but not measured
  Duration timeout = std::chrono::seconds(5);
  uint32_t connections = 10;
  uint32_t streams = 1;  // HTTP/2: requests in flight per connection at most
  uint32_t threads = 1;  // <= connections
  std::string method = "GET";
  size_t body_size = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // extra request fields
  // gRPC unary calls (HTTP/2): the method is POST, the path
  // /<service>/<method>, and `body` the length-prefixed message; a call
  // counts by its grpc-status.
  // https://: TLS clients that check the server's certificate against the
  // trust bundle and offer the protocol by ALPN (make_tls_transport).
  std::shared_ptr<net::TransportFactory> tls;
  bool grpc = false;
  std::string body;  // the body's bytes when given; else body_size bytes of 'x'
};

// For an https:// target: TLS 1.2 or 1.3 clients whose server must present a
// certificate for `target.host` that chains to `trust_bundle_pem`, offering
// "h2" or "http/1.1" by ALPN as `protocol` says.
Result<std::shared_ptr<net::TransportFactory>> make_tls_transport(const Target& target, Protocol protocol,
                                                                  const std::string& trust_bundle_pem);

// The bytes of the one request every connection sends, built once: request
// line, Host (unless given), the extra fields, User-Agent (unless given),
// Content-Length when there is a body or the method normally has one, body.
std::string build_http1_request(const LoadOptions& options);

// The same request's fields for HTTP/2, after the pseudo-header fields: the
// extra fields with lower-case names (a given Host becomes :authority
// instead), user-agent and content-length as above.
std::vector<std::pair<std::string, std::string>> build_http2_fields(const LoadOptions& options);

// When one connection should send each of its requests. Open loop: the run's
// requests are evenly spaced at 1/rate from t0, and connection k of C takes
// requests k, k+C, k+2C, ... so each connection runs at rate/C and the
// connections are staggered rather than firing together. Closed loop: a
// request is meant to go out when it is sent.
class Pacer {
 public:
  Pacer() = default;  // closed loop
  Pacer(double rate, uint32_t connections, uint32_t index);

  bool open_loop() const { return period_ns_ > 0; }
  void start(MonoTime t0) {
    t0_ = t0;
    next_ = 0;
  }
  // Intended send time of this connection's i-th request (open loop).
  MonoTime intended(uint64_t i) const;
  uint64_t next_index() const { return next_; }
  MonoTime next_intended() const { return intended(next_); }
  // How many of this connection's requests are meant to go out before `t`.
  uint64_t due_before(MonoTime t) const;
  // Takes the next request and returns the time it was meant to be sent. A
  // request taken late is still charged from this time. Closed loop: `now`.
  MonoTime take(MonoTime now) {
    if (!open_loop()) return now;
    return intended(next_++);
  }

 private:
  MonoTime t0_{};
  double period_ns_ = 0;  // 1 / total rate
  uint64_t stride_ = 1;   // connections
  uint64_t index_ = 0;    // this connection's place among them
  uint64_t next_ = 0;
};

// Latency as the generator charges it: from the intended send time, not the
// actual one, to the last byte of the response.
inline Duration charged_latency(MonoTime intended, MonoTime completed) { return completed - intended; }
inline uint64_t to_micros(Duration d) {
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
  return ns <= 0 ? 0 : static_cast<uint64_t>((ns + 500) / 1000);
}

enum class ErrorKind : uint8_t { kConnect, kReset, kTimeout, kProtocol };
inline constexpr size_t kErrorKinds = 4;
const char* error_kind_name(ErrorKind kind);

// The figures of a run (or of one worker, before they are summed).
struct LoadStats {
  uint64_t sent = 0;                           // measured requests written to a connection
  uint64_t completed = 0;                      // ... whose response arrived whole (any status)
  uint64_t missed = 0;                         // open loop: meant to go out in the window, never sent
  std::array<uint64_t, kErrorKinds> errors{};  // by ErrorKind
  std::array<uint64_t, 1000> status{};         // completed responses by status code
  HdrHistogram latency_us;                     // charged latency of completed requests
  // Open loop: how late each request went out after its intended time. Large
  // values mean a backlog (the connection was busy or down) or a generator
  // short of CPU; either way the latency above already includes them.
  HdrHistogram send_delay_us;
  // gRPC: completed calls by grpc-status (0 to 16), and those without one.
  std::array<uint64_t, 17> grpc_status{};
  uint64_t grpc_status_missing = 0;

  uint64_t error_count() const { return errors[0] + errors[1] + errors[2] + errors[3]; }
  uint64_t& error(ErrorKind kind) { return errors[static_cast<size_t>(kind)]; }
  uint64_t error(ErrorKind kind) const { return errors[static_cast<size_t>(kind)]; }
  void merge(const LoadStats& other);
};

struct LoadReport {
  LoadStats stats;
  Duration measured{};       // the measurement window as it ran
  bool interrupted = false;  // ended early by SIGINT / SIGTERM
};

// Runs a load: connects every connection, starts the schedule once they are
// connected (or have failed once), sends for warmup + duration, then waits up
// to the timeout for the requests in flight. SIGINT or SIGTERM during the run
// ends it early with the figures so far; a second one stops at once.
LoadReport run_load(const LoadOptions& options);

}  // namespace trellis::cli
