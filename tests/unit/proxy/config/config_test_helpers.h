// Helpers shared by the bootstrap config tests: load text, show errors, and
// wrap one route or one cluster in the smallest file that holds it.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "proxy/config/config.h"

namespace trellis::proxy::config_test {

// Test YAML is written as R"(
// first line...)" for readability; dropping the leading newline makes the
// first written line line 1.
inline std::string yaml(const char* text) {
  std::string s(text);
  if (!s.empty() && s.front() == '\n') s.erase(0, 1);
  return s;
}

inline ConfigLoad load(const std::string& text) { return load_config_text(text, "test.yaml"); }

inline std::string all_errors(const ConfigLoad& result) {
  std::string out;
  for (const ConfigError& e : result.errors) out += e.to_string() + "\n";
  return out;
}

// Exactly one error, checked piece by piece.
inline void expect_single_error(const ConfigLoad& result, int line, int column, const std::string& path,
                                const std::string& message) {
  ASSERT_EQ(result.errors.size(), 1u) << all_errors(result);
  const ConfigError& e = result.errors[0];
  EXPECT_EQ(e.file, "test.yaml");
  EXPECT_EQ(e.line, line);
  EXPECT_EQ(e.column, column);
  EXPECT_EQ(e.path, path);
  EXPECT_EQ(e.message, message);
}

// "path: message" of the only error, or every error in full when there is
// not exactly one (so a failing expectation shows what came instead).
inline std::string only_error(const ConfigLoad& result) {
  if (result.errors.size() != 1)
    return "(" + std::to_string(result.errors.size()) + " errors)\n" + all_errors(result);
  return result.errors[0].path + ": " + result.errors[0].message;
}

inline std::string indent(const std::string& text, const std::string& first, const std::string& rest) {
  std::string out = first;
  for (char c : text) {
    out += c;
    if (c == '\n') out += rest;
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  if (out.empty() || out.back() != '\n') out += '\n';
  return out;
}

// One route (its YAML fields, unindented) in a listener whose clusters are
// "web", "api" and "shadow". The route's first line is line 8.
inline ConfigLoad load_route(const char* route) {
  return load(
      "listeners:\n  - name: web\n    address: 127.0.0.1:10000\n    virtual_hosts:\n      - name: v\n"
      "        domains: [\"*\"]\n        routes:\n" +
      indent(yaml(route), "          - ", "            ") +
      "clusters:\n  - name: web\n  - name: api\n  - name: shadow\n");
}
inline const char* const kRoute = "listeners[0].virtual_hosts[0].routes[0]";

// One cluster (its YAML fields, unindented), named by the caller. The
// cluster's first line is line 2.
inline ConfigLoad load_cluster(const char* cluster) {
  return load("clusters:\n" + indent(yaml(cluster), "  - ", "    "));
}

// A file that sets every listener, route and cluster field the first format had.
inline const char* const kFullConfig = R"(
admin:
  address: 127.0.0.1:9911
access_log:
  path: /dev/stdout
drain_timeout: 2m
listeners:
  - name: web
    address: 127.0.0.1:10000
    protocol: http
    idle_timeout: 90s
    virtual_hosts:
      - name: api
        domains: ["API.Example.com", "api.example.com:8080"]
        routes:
          - match: { exact: /healthz }
            cluster: health
            timeout: 0s
          - match: { prefix: /v1/ }
            cluster: api
            timeout: 1.5s
      - name: default
        domains: ["*.example.com", "example.*", "*"]
        routes:
          - match: { prefix: / }
            cluster: api
  - name: db
    address: "[::1]:10001"
    protocol: tcp
    idle_timeout: 1h
    cluster: db
clusters:
  - name: api
    lb_policy: round_robin
    connect_timeout: 250ms
    idle_timeout: 30s
    max_idle_per_endpoint: 0
    endpoints:
      - address: 10.0.0.1:8081
        weight: 3
      - address: "[2001:db8::1]:8081"
  - name: health
  - name: db
    endpoints:
      - address: 127.0.0.1:5432
        weight: 1000000
)";

}  // namespace trellis::proxy::config_test
