// What a route matches on, as plain values: the same shape in the proxy's
// config model, in what the control plane sends, and in the route table.
#pragma once

#include <string>
#include <vector>

namespace trellis::policy {

enum class PathMatchKind : unsigned char {
  kPrefix,  // by whole path segment, as in the Gateway API
  kExact,
  kRegex,  // RE2 syntax, full match of the path (without the query)
};

struct ValueMatch {
  std::string name;    // headers: lower case, compared without case; query parameters: case-sensitive
  bool regex = false;  // RE2 full match; else byte-exact
  std::string value;
};

// Every condition set must hold.
struct RouteMatch {
  PathMatchKind path_kind = PathMatchKind::kPrefix;
  std::string path = "/";
  std::string method;  // empty: any
  std::vector<ValueMatch> headers;
  std::vector<ValueMatch> query_params;
  // Host without port, lower case: "a.example" or "*.example" (any name
  // under example, not example itself); empty: any host.
  std::vector<std::string> hosts;
};

}  // namespace trellis::policy
