// Cross-origin resource sharing as the Gateway API's CORS filter has it:
// which origins a route allows, and the headers of its answers. Pure logic,
// shared by the proxy (which acts on it) and trellis-control (which checks
// routes with the same rules).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace trellis::policy {

// Why `pattern` is not an allowed-origin pattern: "*", or
// "<scheme>://<host>[:<port>]" with scheme http or https, a host of letters,
// digits, '-' and '.' that may start with "*" (any labels to its left), and
// a port 1 to 65535. Nothing when it is one.
std::optional<std::string> check_origin_pattern(std::string_view pattern);

// Whether `origin` (a request's Origin header) is one of `patterns`
// (checked ones). Schemes and hosts compare without case; a missing port is
// the scheme's (80 or 443).
bool origin_allowed(const std::vector<std::string>& patterns, std::string_view origin);

}  // namespace trellis::policy
