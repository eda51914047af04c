// Route selection by Host, path, method, headers and query parameters: pure
// logic, built once per config and read by every worker without locks.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/header_field.h"
#include "common/result.h"
#include "policy/route_match.h"

namespace re2 {
class RE2;
}

namespace trellis::policy {

struct RouteRef {
  size_t virtual_host = 0;
  size_t route = 0;
};

// The request as route matching sees it.
struct RequestView {
  std::string_view authority;  // Host, possibly with a port
  std::string_view method;
  std::string_view path;  // origin-form, possibly with "?query"
  const std::vector<HeaderField>* headers = nullptr;
};

// A compiled regular expression with linear-time matching (RE2). Shared
// read-only by all workers: RE2's matching is thread-safe.
class Regex {
 public:
  // Fails with RE2's reason when `pattern` is not a valid expression, or when
  // it compiles to more than RE2's default program size.
  static Result<std::shared_ptr<const Regex>> compile(const std::string& pattern);
  ~Regex();
  bool full_match(std::string_view text) const;

 private:
  Regex() = default;
  std::unique_ptr<re2::RE2> re_;
};

class RouteTable {
 public:
  RouteTable();
  ~RouteTable();
  RouteTable(RouteTable&&) noexcept;
  RouteTable& operator=(RouteTable&&) noexcept;

  // Adds a virtual host; returns its index. Domains: "a.example", "a.example:8080",
  // "*.example" (suffix), "api.*" (prefix) or "*". Matching is case-insensitive.
  // Fails, naming the route ("routes[2].path: ...") when a regular
  // expression does not compile; the table is then unchanged.
  Result<size_t> add_virtual_host(const std::vector<std::string>& domains,
                                  const std::vector<RouteMatch>& routes);

  // The first route of the best virtual host whose conditions all hold.
  // Host precedence: exact, then the longest suffix wildcard, then the longest
  // prefix wildcard, then "*". A Host with a port that matches no domain with
  // that port is tried without it.
  //
  // Prefix matching is by path segment, as in the Gateway API: "/api" matches
  // "/api" and "/api/v1" but not "/apis"; a prefix ending in "/" matches any
  // path that starts with it. The query string is never part of a path match.
  // A header condition holds when any field of that name matches; a query
  // condition holds when the first parameter of that name matches (values as
  // sent, not percent-decoded).
  bool match(const RequestView& request, RouteRef& out) const;

  static bool path_prefix_matches(std::string_view prefix, std::string_view path_without_query);

 private:
  struct CompiledRoute;
  struct Wildcard {
    std::string fixed;  // the part without '*', lower case
    size_t vhost;
  };
  bool match_host(std::string_view host, size_t& vhost) const;

  std::vector<std::vector<CompiledRoute>> routes_;
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, size_t, Hash, std::equal_to<>> exact_;
  std::vector<Wildcard> suffix_;  // "*.example" -> ".example", longest first
  std::vector<Wildcard> prefix_;  // "api.*" -> "api.", longest first
  size_t any_ = SIZE_MAX;
};

}  // namespace trellis::policy
