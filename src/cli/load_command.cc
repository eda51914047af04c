#include "cli/load_command.h"

#include "common/duration.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "http/header.h"

namespace trellis::cli {

namespace {

using http::iequals;

constexpr uint32_t kMaxConnections = 100'000;
constexpr uint32_t kMaxThreads = 256;
constexpr uint32_t kMaxStreams = 1000;
constexpr double kMaxRate = 10'000'000;
constexpr uint64_t kMaxBodySize = 64ull << 20;
constexpr uint64_t kMaxGrpcPayload = 4ull << 20;  // gRPC's default message limit

constexpr const char* kGrpcCodes[] = {
    "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
    "DATA_LOSS", "UNAUTHENTICATED"};

// The flags as typed; validated into LoadOptions by to_options().
struct LoadFlags {
  std::string url;
  double rate = 0;
  std::string duration = "10s";
  uint32_t connections = 10;
  uint32_t threads = 1;
  std::string method;  // empty: GET (POST for --grpc)
  uint64_t body_size = 0;
  std::vector<std::string> headers;
  std::string timeout = "5s";
  std::string warmup = "0s";
  std::string protocol;  // empty: http/1.1 (h2 for --grpc)
  uint32_t streams = 0;  // 0: not given
  std::string grpc;      // SERVICE/METHOD
  std::string payload;   // file with the serialized request message
  std::string cacert;    // https://: PEM file of the roots to trust
  bool json = false;
  std::string output;
};

// RFC 9110 token characters (method and field names).
bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
    if (!ok || c == '\0') return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool parse_header(std::string_view text, std::pair<std::string, std::string>& out, std::string& error) {
  size_t colon = text.find(':');
  if (colon == std::string_view::npos) {
    error = fmt::format("header \"{}\" must look like \"Name: value\"", text);
    return false;
  }
  std::string_view name = text.substr(0, colon);
  std::string_view value = trim(text.substr(colon + 1));
  if (!is_token(name)) {
    error = fmt::format("header name \"{}\" is not a valid field name", name);
    return false;
  }
  for (char c : value) {
    if (c == '\r' || c == '\n' || c == '\0') {
      error = fmt::format("header \"{}\" has a control character in its value", name);
      return false;
    }
  }
  if (iequals(name, "content-length") || iequals(name, "transfer-encoding")) {
    error = fmt::format("header \"{}\" is set by the generator: use --body-size", name);
    return false;
  }
  out = {std::string(name), std::string(value)};
  return true;
}

constexpr const char* kSystemTrustBundle = "/etc/ssl/certs/ca-certificates.crt";

// https://: the server's certificate is checked against --cacert, or the
// system's roots; there is no way to skip the check.
bool tls_options(const LoadFlags& f, LoadOptions& o, std::string& error) {
  const std::string path = f.cacert.empty() ? kSystemTrustBundle : f.cacert;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    error = fmt::format("cannot read {} {}: {}", f.cacert.empty() ? "the system's trust bundle" : "--cacert",
                        path, std::strerror(errno));
    return false;
  }
  std::string pem((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto made = make_tls_transport(o.target, o.protocol, pem);
  if (!made) {
    error = fmt::format("--cacert {}: {}", path, made.error().message);
    return false;
  }
  o.tls = std::move(*made);
  return true;
}

// --grpc SERVICE/METHOD [--payload FILE]: a unary call, whose request is
// made here rather than by --method, --body-size and the URL's path.
bool grpc_options(const LoadFlags& f, LoadOptions& o, std::string& error) {
  size_t slash = f.grpc.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == f.grpc.size() ||
      f.grpc.find('/', slash + 1) != std::string::npos || f.grpc.find_first_of(" ?#%") != std::string::npos) {
    error = fmt::format("--grpc \"{}\" must be SERVICE/METHOD, e.g. helloworld.Greeter/SayHello", f.grpc);
    return false;
  }
  if (o.protocol != Protocol::kHttp2) {
    error = "--grpc calls go over HTTP/2: leave --protocol out or make it h2";
    return false;
  }
  if (!f.method.empty() || f.body_size > 0) {
    error = "--grpc calls are POSTs whose body is --payload: leave --method and --body-size out";
    return false;
  }
  if (o.target.path != "/") {
    error = fmt::format("--grpc names the path: the URL must have none (got \"{}\")", o.target.path);
    return false;
  }
  std::string message;
  if (!f.payload.empty()) {
    std::ifstream in(f.payload, std::ios::binary);
    if (!in) {
      error = fmt::format("cannot read --payload {}: {}", f.payload, std::strerror(errno));
      return false;
    }
    message.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    if (message.size() > kMaxGrpcPayload) {
      error = fmt::format("--payload {} is over {} bytes, gRPC's default message limit", f.payload,
                          kMaxGrpcPayload);
      return false;
    }
  }
  o.grpc = true;
  o.method = "POST";
  o.target.path = "/" + f.grpc;
  // The length-prefixed message: not compressed, then the length, big-endian.
  const auto n = static_cast<uint32_t>(message.size());
  o.body = {'\0', static_cast<char>(n >> 24), static_cast<char>(n >> 16), static_cast<char>(n >> 8),
            static_cast<char>(n)};
  o.body += message;
  o.body_size = o.body.size();
  auto given = [&](std::string_view name) {
    for (const auto& h : o.headers)
      if (iequals(h.first, name)) return true;
    return false;
  };
  if (!given("content-type")) o.headers.emplace_back("content-type", "application/grpc");
  if (!given("te")) o.headers.emplace_back("te", "trailers");
  // The call's deadline is the run's --timeout, in milliseconds.
  if (!given("grpc-timeout"))
    o.headers.emplace_back(
        "grpc-timeout",
        fmt::format("{}m", std::chrono::duration_cast<std::chrono::milliseconds>(o.timeout).count()));
  return true;
}

bool to_options(const LoadFlags& f, LoadOptions& o, std::string& error) {
  if (f.protocol.empty()) {
    o.protocol = f.grpc.empty() ? Protocol::kHttp1 : Protocol::kHttp2;
  } else if (iequals(f.protocol, "h2") || iequals(f.protocol, "h2c") || iequals(f.protocol, "http2") ||
             iequals(f.protocol, "http/2")) {
    o.protocol = Protocol::kHttp2;
  } else if (iequals(f.protocol, "http/1.1") || iequals(f.protocol, "http1")) {
    o.protocol = Protocol::kHttp1;
  } else {
    error = fmt::format("unknown --protocol \"{}\" (supported: http/1.1, h2)", f.protocol);
    return false;
  }
  if (f.streams != 0 && o.protocol != Protocol::kHttp2) {
    error = "--streams is for --protocol h2: HTTP/1.1 has one request in flight per connection";
    return false;
  }
  if (f.streams > kMaxStreams) {
    error = fmt::format("--streams must be between 1 and {}", kMaxStreams);
    return false;
  }
  o.streams = f.streams == 0 ? 1 : f.streams;
  if (!parse_target(f.url, o.target, error)) return false;
  if (!f.cacert.empty() && !o.target.tls) {
    error = "--cacert is for https:// URLs";
    return false;
  }
  if (o.target.tls && !tls_options(f, o, error)) return false;

  if (!(f.rate >= 0) || f.rate > kMaxRate || !std::isfinite(f.rate)) {
    error = fmt::format("--rate must be between 0 (closed loop) and {:.0f}", kMaxRate);
    return false;
  }
  o.rate = f.rate;
  auto duration = [&](const std::string& text, const char* flag, Duration& out, bool zero_ok) {
    auto d = parse_duration(text, {std::chrono::hours(24 * 7), "a week"});
    if (!d) {
      error = fmt::format("{} \"{}\": {}", flag, text, d.error().message);
      return false;
    }
    out = std::chrono::duration_cast<Duration>(*d);
    if (!zero_ok && out == Duration::zero()) {
      error = fmt::format("{} must be more than zero", flag);
      return false;
    }
    return true;
  };
  if (!duration(f.duration, "--duration", o.duration, false) ||
      !duration(f.timeout, "--timeout", o.timeout, false) ||
      !duration(f.warmup, "--warmup", o.warmup, true)) {
    return false;
  }
  if (f.connections < 1 || f.connections > kMaxConnections) {
    error = fmt::format("--connections must be between 1 and {}", kMaxConnections);
    return false;
  }
  if (f.threads < 1 || f.threads > kMaxThreads) {
    error = fmt::format("--threads must be between 1 and {}", kMaxThreads);
    return false;
  }
  if (f.threads > f.connections) {
    error = "--threads must not exceed --connections (each thread needs a connection)";
    return false;
  }
  o.connections = f.connections;
  o.threads = f.threads;
  if (!f.method.empty() && !is_token(f.method)) {
    error = fmt::format("--method \"{}\" is not a valid method name", f.method);
    return false;
  }
  o.method = f.method.empty() ? "GET" : f.method;
  if (f.body_size > kMaxBodySize) {
    error = fmt::format("--body-size must be at most {} bytes", kMaxBodySize);
    return false;
  }
  o.body_size = static_cast<size_t>(f.body_size);
  o.headers.clear();
  for (const std::string& h : f.headers) {
    std::pair<std::string, std::string> field;
    if (!parse_header(h, field, error)) return false;
    o.headers.push_back(std::move(field));
  }
  if (!f.payload.empty() && f.grpc.empty()) {
    error = "--payload is the message of a --grpc call";
    return false;
  }
  return f.grpc.empty() || grpc_options(f, o, error);
}

double seconds(Duration d) { return std::chrono::duration<double>(d).count(); }

double achieved_rate(const LoadReport& r) {
  double s = seconds(r.measured);
  return s > 0 ? static_cast<double>(r.stats.completed) / s : 0.0;
}

// Latency for people: microseconds up to 10 ms, then ms, then s.
std::string human_micros(double us) {
  if (us < 10'000) return fmt::format("{:.0f}us", us);
  if (us < 10'000'000) return fmt::format("{:.2f}ms", us / 1000);
  return fmt::format("{:.2f}s", us / 1'000'000);
}

constexpr struct {
  const char* json_key;
  const char* label;
  double percentile;
} kPercentiles[] = {{"p50", "p50", 50}, {"p90", "p90", 90}, {"p99", "p99", 99}, {"p999", "p99.9", 99.9}};

int run_load_command(const LoadFlags& flags) {
  LoadOptions options;
  std::string error;
  if (!to_options(flags, options, error)) {
    std::fprintf(stderr, "trellis load: %s\n", error.c_str());
    return 2;
  }
  // Open the output first: a typo in the path should not cost a whole run.
  std::ofstream output;
  if (!flags.output.empty()) {
    output.open(flags.output, std::ios::out | std::ios::trunc);
    if (!output) {
      std::fprintf(stderr, "trellis load: cannot write %s: %s\n", flags.output.c_str(), std::strerror(errno));
      return 2;
    }
  }

  LoadReport report = run_load(options);

  // The URL comes from the command line and may hold any bytes: replace
  // invalid UTF-8 rather than fail the report.
  std::string json =
      load_report_json(options, report).dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  if (output.is_open()) {
    output << json << '\n';
    output.close();
    if (!output) std::fprintf(stderr, "trellis load: writing %s failed\n", flags.output.c_str());
  }
  std::string text = flags.json ? json + "\n" : load_report_text(options, report);
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
  return load_exit_code(report);
}

}  // namespace

nlohmann::ordered_json load_report_json(const LoadOptions& options, const LoadReport& report) {
  using Json = nlohmann::ordered_json;  // keys in the documented order
  const LoadStats& s = report.stats;
  Json status = Json::object();
  for (size_t code = 0; code < s.status.size(); ++code) {
    if (s.status[code] > 0) status[std::to_string(code)] = s.status[code];
  }
  Json errors = Json::object();
  for (size_t k = 0; k < kErrorKinds; ++k) errors[error_kind_name(static_cast<ErrorKind>(k))] = s.errors[k];
  Json grpc_status = nullptr;
  if (options.grpc) {
    grpc_status = Json::object();
    for (size_t code = 0; code < s.grpc_status.size(); ++code)
      if (s.grpc_status[code] > 0) grpc_status[std::to_string(code)] = s.grpc_status[code];
    if (s.grpc_status_missing > 0) grpc_status["none"] = s.grpc_status_missing;
  }

  const HdrHistogram& h = s.latency_us;
  bool any = h.count() > 0;
  auto or_null = [any](auto v) { return any ? Json(v) : Json(nullptr); };
  Json latency = Json::object();
  latency["min"] = or_null(h.min());
  latency["mean"] = or_null(std::round(h.mean() * 10) / 10);
  for (const auto& p : kPercentiles) latency[p.json_key] = or_null(h.value_at_percentile(p.percentile));
  latency["max"] = or_null(h.max());

  Json send_delay = nullptr;
  if (options.rate > 0 && s.send_delay_us.count() > 0) {
    const HdrHistogram& d = s.send_delay_us;
    send_delay = {{"p50", d.value_at_percentile(50)}, {"p99", d.value_at_percentile(99)}, {"max", d.max()}};
  }

  return {
      {"target", options.target.url},
      {"protocol", options.protocol == Protocol::kHttp2 ? (options.target.tls ? "h2" : "h2c") : "http/1.1"},
      {"tls", options.target.tls},
      {"streams", options.streams},
      {"method", options.method},
      {"grpc", options.grpc ? Json(options.target.path.substr(1)) : Json(nullptr)},
      {"rate", options.rate},
      {"duration_s", seconds(report.measured)},
      {"warmup_s", seconds(options.warmup)},
      {"connections", options.connections},
      {"threads", options.threads},
      {"requests",
       {{"sent", s.sent}, {"completed", s.completed}, {"errors", s.error_count()}, {"missed", s.missed}}},
      {"status", std::move(status)},
      {"grpc_status", std::move(grpc_status)},
      {"errors", std::move(errors)},
      {"achieved_rate", std::round(achieved_rate(report) * 10) / 10},
      {"latency_us", std::move(latency)},
      {"send_delay_us", std::move(send_delay)},
      {"interrupted", report.interrupted},
  };
}

std::string load_report_text(const LoadOptions& options, const LoadReport& report) {
  const LoadStats& s = report.stats;
  std::string out;
  auto line = [&](std::string_view label, const std::string& text) {
    out += fmt::format("{:<10} {}\n", label, text);
  };
  bool h2 = options.protocol == Protocol::kHttp2;
  const std::string what = options.grpc
                               ? fmt::format("gRPC {} at", std::string_view(options.target.path).substr(1))
                               : options.method;
  line("target", fmt::format("{} {} ({})", what, options.target.url,
                             h2 ? fmt::format("HTTP/2{}, {} stream{} per connection",
                                              options.target.tls ? " over TLS" : "", options.streams,
                                              options.streams == 1 ? "" : "s")
                                : std::string(options.target.tls ? "HTTP/1.1 over TLS" : "HTTP/1.1")));
  std::string model =
      options.rate > 0 ? fmt::format("open loop at {:g} req/s", options.rate) : std::string("closed loop");
  std::string warmup = options.warmup > Duration::zero()
                           ? fmt::format(" after {:g}s warm-up", seconds(options.warmup))
                           : std::string();
  line("load", fmt::format("{}, {} connection{}, {} thread{}, {:.2f}s measured{}", model, options.connections,
                           options.connections == 1 ? "" : "s", options.threads,
                           options.threads == 1 ? "" : "s", seconds(report.measured), warmup));
  line("requests", fmt::format("{} sent, {} completed, {} errors, {} missed; {:.1f} req/s achieved", s.sent,
                               s.completed, s.error_count(), s.missed, achieved_rate(report)));
  std::string status;
  for (size_t code = 0; code < s.status.size(); ++code) {
    if (s.status[code] == 0) continue;
    if (!status.empty()) status += ", ";
    status += fmt::format("{}: {}", code, s.status[code]);
  }
  line("status", status.empty() ? "none" : status);
  if (options.grpc) {
    std::string grpc;
    for (size_t code = 0; code < s.grpc_status.size(); ++code) {
      if (s.grpc_status[code] == 0) continue;
      if (!grpc.empty()) grpc += ", ";
      grpc += fmt::format("{} {}: {}", code, kGrpcCodes[code], s.grpc_status[code]);
    }
    if (s.grpc_status_missing > 0)
      grpc += fmt::format("{}none (not gRPC): {}", grpc.empty() ? "" : ", ", s.grpc_status_missing);
    line("grpc", grpc.empty() ? "none" : grpc);
  }
  std::string errors;
  for (size_t k = 0; k < kErrorKinds; ++k) {
    if (!errors.empty()) errors += ", ";
    errors += fmt::format("{} {}", error_kind_name(static_cast<ErrorKind>(k)), s.errors[k]);
  }
  line("errors", s.error_count() == 0 ? "none" : errors);

  const HdrHistogram& h = s.latency_us;
  if (h.count() == 0) {
    line("latency", "no completed requests");
  } else {
    std::string head = fmt::format("{:<9}{:<9}", "min", "mean");
    std::string values =
        fmt::format("{:<9}{:<9}", human_micros(static_cast<double>(h.min())), human_micros(h.mean()));
    for (const auto& p : kPercentiles) {
      head += fmt::format("{:<9}", p.label);
      values += fmt::format("{:<9}", human_micros(static_cast<double>(h.value_at_percentile(p.percentile))));
    }
    head += "max";
    values += human_micros(static_cast<double>(h.max()));
    line("latency", head);
    line("", values);
  }
  if (options.rate > 0 && s.send_delay_us.count() > 0) {
    const HdrHistogram& d = s.send_delay_us;
    line("sent late", fmt::format("p50 {}, p99 {}, max {} after the intended time",
                                  human_micros(static_cast<double>(d.value_at_percentile(50))),
                                  human_micros(static_cast<double>(d.value_at_percentile(99))),
                                  human_micros(static_cast<double>(d.max()))));
  }
  if (s.missed > 0) {
    line("note", fmt::format("{} requests due in the window were never sent: the connections were busy "
                             "or down (the target could not keep up with the rate)",
                             s.missed));
  }
  if (report.interrupted) line("note", "interrupted: the figures cover the run up to the signal");
  return out;
}

int load_exit_code(const LoadReport& report) {
  const LoadStats& s = report.stats;
  if (s.error_count() > 0 || s.completed != s.sent || s.missed > 0) return 1;
  for (size_t code = 0; code < s.status.size(); ++code) {
    if (s.status[code] > 0 && (code < 200 || code >= 400)) return 1;
  }
  if (s.grpc_status_missing > 0) return 1;
  for (size_t code = 1; code < s.grpc_status.size(); ++code)
    if (s.grpc_status[code] > 0) return 1;
  return 0;
}

std::function<int()> add_load_command(CLI::App& app) {
  auto flags = std::make_shared<LoadFlags>();
  CLI::App* load = app.add_subcommand(
      "load", "Send HTTP requests at a constant rate (open loop) or back to back, and measure latency");
  load->add_option("url", flags->url, "Target, http[s]://host:port/path (numeric IP or localhost)")
      ->required();
  load->add_option("-r,--rate", flags->rate, "Requests per second over all connections; 0 = closed loop")
      ->capture_default_str();
  load->add_option("-d,--duration", flags->duration, "How long to send (10s, 500ms, 2m)")
      ->capture_default_str();
  load->add_option("-c,--connections", flags->connections, "Keep-alive connections")->capture_default_str();
  load->add_option("-t,--threads", flags->threads, "Threads, each with its own event loop")
      ->capture_default_str();
  load->add_option("-m,--method", flags->method, "Request method (default GET)");
  load->add_option("--body-size", flags->body_size, "Request body bytes, sent with Content-Length")
      ->capture_default_str();
  load->add_option("-H,--header", flags->headers, "Extra request header \"Name: value\" (repeatable)")
      ->allow_extra_args(false);
  load->add_option("--timeout", flags->timeout, "Per request: no complete response in time is an error")
      ->capture_default_str();
  load->add_option("--warmup", flags->warmup, "Send for this long first without measuring")
      ->capture_default_str();
  load->add_option("--protocol", flags->protocol,
                   "Wire protocol: http/1.1 (the default), or h2 (HTTP/2 with prior knowledge; the default "
                   "for --grpc)");
  load->add_option("--streams", flags->streams,
                   "HTTP/2: requests in flight per connection at most (default 1)");
  load->add_option(
      "--cacert", flags->cacert,
      "https:// URLs: PEM file of the roots the server's certificate must chain to (default: the "
      "system's)");
  load->add_option("--grpc", flags->grpc,
                   "gRPC unary calls to SERVICE/METHOD (e.g. helloworld.Greeter/SayHello), over HTTP/2; each "
                   "counts by its grpc-status");
  load->add_option("--payload", flags->payload,
                   "--grpc: file with the serialized request message (protobuf bytes); default empty");
  load->add_flag("--json", flags->json, "Print the report as JSON instead of the summary");
  load->add_option("-o,--output", flags->output, "Also write the JSON report to this file");
  return [flags] { return run_load_command(*flags); };
}

}  // namespace trellis::cli
