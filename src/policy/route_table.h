// Route selection by Host and path: pure logic, built once per config and read
// by every worker without locks.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace trellis::policy {

enum class PathMatchKind : unsigned char { kPrefix, kExact };

struct PathMatch {
  PathMatchKind kind = PathMatchKind::kPrefix;
  std::string path;  // starts with '/'
};

struct RouteRef {
  size_t virtual_host = 0;
  size_t route = 0;
};

class RouteTable {
 public:
  // Adds a virtual host; returns its index. Domains: "a.example", "a.example:8080",
  // "*.example" (suffix), "api.*" (prefix) or "*". Matching is case-insensitive.
  size_t add_virtual_host(const std::vector<std::string>& domains, std::vector<PathMatch> routes);

  // The first route of the best virtual host whose path matches, or nullptr.
  // Host precedence: exact, then the longest suffix wildcard, then the longest
  // prefix wildcard, then "*". A Host with a port that matches no domain with
  // that port is tried without it.
  //
  // Prefix matching is by path segment, as in the Gateway API: "/api" matches
  // "/api" and "/api/v1" but not "/apis"; a prefix ending in "/" matches any
  // path that starts with it. The query string is never part of the match.
  bool match(std::string_view host, std::string_view path, RouteRef& out) const;

  static bool path_matches(const PathMatch& m, std::string_view path);

 private:
  struct Wildcard {
    std::string fixed;  // the part without '*', lower case
    size_t vhost;
  };
  bool match_host(std::string_view host, size_t& vhost) const;

  std::vector<std::vector<PathMatch>> routes_;
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
