// The proxy's configuration model: what a bootstrap YAML file (and later the
// control plane) describes, validated into plain immutable values.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace trellis::proxy {

using Millis = std::chrono::milliseconds;

// A resolved numeric socket address ("127.0.0.1:8080", "[::1]:80"). Names are not
// resolved: a sidecar config names addresses, DNS belongs to discovery.
struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;
  std::string text;  // canonical "ip:port" / "[ip6]:port"

  const sockaddr* sa() const { return reinterpret_cast<const sockaddr*>(&storage); }
  int family() const { return storage.ss_family; }
  bool operator==(const SocketAddress& o) const { return text == o.text; }
};

// Parses "ip:port" or "[ipv6]:port"; false with `error` set when malformed.
bool parse_socket_address(std::string_view text, SocketAddress& out, std::string& error);

struct EndpointConfig {
  SocketAddress address;
  uint32_t weight = 1;
};

enum class LbPolicy : uint8_t { kRoundRobin };

struct ClusterConfig {
  std::string name;
  LbPolicy lb_policy = LbPolicy::kRoundRobin;
  Millis connect_timeout{1000};
  Millis idle_timeout{60000};       // pooled upstream connection unused this long is closed
  uint32_t max_idle_per_endpoint = 64;  // per worker
  std::vector<EndpointConfig> endpoints;
};

enum class PathMatchKind : uint8_t { kPrefix, kExact };

struct RouteConfig {
  PathMatchKind path_kind = PathMatchKind::kPrefix;
  std::string path = "/";
  std::string cluster;
  size_t cluster_index = 0;  // index into ProxyConfig::clusters, filled by validation
  Millis timeout{15000};     // whole request: from the request head to the last response byte; 0 = none
};

struct VirtualHostConfig {
  std::string name;
  std::vector<std::string> domains;  // "example.com", "*.example.com", "example.*", "*"; lower case
  std::vector<RouteConfig> routes;   // first match wins
};

enum class ListenerProtocol : uint8_t { kHttp, kTcp };

struct ListenerConfig {
  std::string name;
  SocketAddress address;
  ListenerProtocol protocol = ListenerProtocol::kHttp;
  Millis idle_timeout{300000};  // downstream connection with no traffic this long is closed
  // kHttp
  std::vector<VirtualHostConfig> virtual_hosts;
  // kTcp
  std::string cluster;
  size_t cluster_index = 0;
};

struct AccessLogConfig {
  std::string path;  // empty: off; "/dev/stdout" allowed
};

struct AdminConfig {
  SocketAddress address;  // default 127.0.0.1:9901
};

// Where the proxy gets the rest of its configuration (listeners and clusters)
// and who it says it is. Absent: the bootstrap file is the whole config.
struct ControlPlaneConfig {
  SocketAddress address;  // trellis-control's gRPC address; length 0 = no control plane
  std::string node_id;    // default: "<service>-<hostname>-<pid>"
  std::string service;
  std::string namespace_ = "default";
  std::string zone;
  // The local instance this sidecar fronts (registered with the proxy's heartbeats).
  bool has_instance = false;
  SocketAddress instance_address;  // where other proxies reach it
  SocketAddress app_address;       // where the application listens
  uint32_t weight = 1;
  std::map<std::string, std::string> labels;
  Millis ttl{10000};
  // Outbound side: where the application sends its requests, and to whom.
  bool has_outbound = false;
  SocketAddress outbound_address;
  std::vector<std::string> upstream_services;

  bool enabled() const { return address.length != 0; }
};

// A mesh policy received from the control plane (DestinationPolicy,
// RateLimitPolicy, AuthorizationPolicy, MeshConfig), kept as written. Shown in
// /config_dump; enforced as the data plane's features arrive.
struct PolicyConfig {
  std::string kind;
  std::string namespace_;
  std::string name;
  uint64_t resource_version = 0;
  std::string spec_json;
};

struct ProxyConfig {
  std::string source;  // file it was read from
  AdminConfig admin;
  AccessLogConfig access_log;
  Millis drain_timeout{10000};
  std::vector<ListenerConfig> listeners;
  std::vector<ClusterConfig> clusters;
  ControlPlaneConfig control_plane;
  std::vector<PolicyConfig> policies;  // from the control plane only
};

// One configuration error: where it is and what is wrong with it.
struct ConfigError {
  std::string file;
  int line = 0;    // 1-based; 0 when unknown
  int column = 0;  // 1-based; 0 when unknown
  std::string path;     // field path, e.g. "listeners[0].virtual_hosts[1].routes[2].cluster"
  std::string message;  // e.g. "unknown cluster \"web\""

  // "file:line:column: path: message"
  std::string to_string() const;
};

struct ConfigLoad {
  ProxyConfig config;
  std::vector<ConfigError> errors;  // empty when config is valid
  bool ok() const { return errors.empty(); }
};

// Reads, parses and validates a bootstrap YAML file. Every error found is
// reported (not only the first), each with its line and field path.
ConfigLoad load_config_file(const std::string& path);
// Same, from text; `source_name` is used in error messages.
ConfigLoad load_config_text(const std::string& text, const std::string& source_name);

// The config as JSON, for /config_dump.
std::string config_to_json(const ProxyConfig& config);

}  // namespace trellis::proxy
