#include "policy/cors.h"

#include <charconv>

#include "common/text.h"

namespace trellis::policy {
namespace {

struct Origin {
  std::string scheme;  // lower case
  std::string host;    // lower case; may start with '*' in a pattern
  int port = 0;
};

// "<scheme>://<host>[:<port>]"; nothing when it is not one.
std::optional<Origin> parse(std::string_view text, bool pattern) {
  size_t sep = text.find("://");
  if (sep == std::string_view::npos) return std::nullopt;
  Origin out;
  out.scheme = ascii_lower(text.substr(0, sep));
  if (out.scheme != "http" && out.scheme != "https") return std::nullopt;
  std::string_view rest = text.substr(sep + 3);
  std::string_view host = rest;
  out.port = out.scheme == "http" ? 80 : 443;
  if (size_t colon = rest.rfind(':'); colon != std::string_view::npos) {
    host = rest.substr(0, colon);
    std::string_view digits = rest.substr(colon + 1);
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), out.port);
    if (ec != std::errc() || end != digits.data() + digits.size() || out.port < 1 || out.port > 65535)
      return std::nullopt;
  }
  if (host.empty() || host.size() > 253) return std::nullopt;
  for (size_t i = 0; i < host.size(); ++i) {
    char c = host[i];
    bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
    if (pattern && c == '*' && i == 0) ok = host.size() == 1 || host[1] == '.';
    if (!ok) return std::nullopt;
  }
  out.host = ascii_lower(host);
  return out;
}

}  // namespace

std::optional<std::string> check_origin_pattern(std::string_view pattern) {
  if (pattern == "*") return std::nullopt;
  if (parse(pattern, /*pattern=*/true)) return std::nullopt;
  return "\"" + std::string(pattern) +
         "\" is not an origin: write \"*\" or scheme://host[:port] with scheme http or https, e.g. "
         "\"https://*.example.com\" (no path)";
}

bool origin_allowed(const std::vector<std::string>& patterns, std::string_view origin) {
  std::optional<Origin> o = parse(origin, /*pattern=*/false);
  for (const std::string& p : patterns) {
    if (p == "*") return true;
    if (!o) continue;
    std::optional<Origin> want = parse(p, /*pattern=*/true);
    if (!want || want->scheme != o->scheme || want->port != o->port) continue;
    if (want->host == "*") return true;
    if (want->host.starts_with('*')) {
      // "*.example.com": one or more labels before ".example.com".
      std::string_view suffix = std::string_view(want->host).substr(1);
      if (o->host.size() > suffix.size() && o->host.ends_with(suffix)) return true;
    } else if (want->host == o->host) {
      return true;
    }
  }
  return false;
}

}  // namespace trellis::policy
