// The proxy's configuration model: what a bootstrap YAML file (and later the
// control plane) describes, validated into plain immutable values.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/log_format.h"
#include "common/service_port.h"
#include "net/address.h"
#include "policy/authorization.h"
#include "policy/circuit_breaker.h"
#include "policy/concurrency_limiter.h"
#include "policy/load_balancer.h"
#include "policy/outlier_detector.h"
#include "policy/rate_limiter.h"
#include "policy/retry.h"
#include "policy/route_match.h"

namespace trellis::proxy {

using Millis = std::chrono::milliseconds;

struct EndpointConfig {
  net::SocketAddress address;
  uint32_t weight = 1;
  std::string zone;  // locality; empty: unknown (counts as another zone)
  // The SPIFFE ID of the sidecar in front of it: connections use mTLS with
  // the proxy's certificate, and a server without exactly this identity is
  // refused. Empty: plain text.
  std::string identity;
};

// What the consistent-hashing balancers hash a request on.
struct HashPolicy {
  enum class Kind : uint8_t { kNone, kHeader, kCookie, kSourceIp };
  Kind kind = Kind::kNone;
  std::string name;  // header name (lower case) or cookie name
  // Cookie: when a request lacks it, the proxy picks a value and sets it on
  // the response with this lifetime (0: a session cookie).
  bool cookie_ttl_set = false;
  Millis cookie_ttl{0};
};

struct LoadBalancerConfig {
  policy::LbAlgorithm algorithm = policy::LbAlgorithm::kPeakEwma;  // latency-aware, as in Linkerd
  HashPolicy hash;                                                 // ring hash and Maglev only
  // Ring hash: points on the ring per unit of endpoint weight. Fixed per
  // endpoint, so an endpoint leaving moves only the keys it held.
  uint32_t ring_points = 160;
  // Locality: prefer endpoints in the proxy's own zone; spill over to the
  // others while fewer than min_healthy_percent of the local ones are healthy.
  bool locality_enabled = false;
  uint32_t locality_min_healthy_percent = 70;
  // Slow start: a new endpoint's share grows from little to full over this
  // window. 0: off.
  Millis slow_start_window{0};
};

// Active health checks of each endpoint, made once per proxy (not per worker)
// from the main thread. An endpoint starts healthy; `unhealthy_threshold`
// failed checks in a row take it out of rotation, `healthy_threshold` passed
// ones bring it back.
struct HealthCheckConfig {
  // http: a GET, over HTTP/2 on an http2 cluster; grpc: grpc.health.v1's
  // Health/Check over HTTP/2.
  enum class Kind : uint8_t { kNone, kHttp, kTcp, kGrpc };
  Kind kind = Kind::kNone;
  std::string path = "/";    // http: GET this path
  std::string host;          // http: Host header, grpc: :authority; empty: the endpoint's address
  std::string grpc_service;  // grpc: the service asked about; empty: the server as a whole
  // http: statuses that pass, as inclusive ranges; empty: 200-299.
  std::vector<std::pair<uint16_t, uint16_t>> expected_statuses;
  Millis interval{10000};
  Millis timeout{1000};
  uint32_t healthy_threshold = 2;
  uint32_t unhealthy_threshold = 3;
  uint32_t jitter_percent = 10;  // each interval is longer by up to this share, at random
  bool enabled() const { return kind != Kind::kNone; }
};

// TLS origination to endpoints without a sidecar (an external service).
struct UpstreamTlsConfig {
  bool enabled = false;
  std::string server_name;       // SNI, and the name the certificate must carry (or an IP address)
  std::string trust_bundle;      // PEM file of roots; empty (and no _pem): the system's roots
  std::string trust_bundle_pem;  // the roots themselves (from the control plane)
  bool operator==(const UpstreamTlsConfig&) const = default;
};

// The system's roots (Debian's ca-certificates).
inline constexpr const char* kSystemTrustBundle = "/etc/ssl/certs/ca-certificates.crt";

// What a cluster's HTTP exchanges speak to its endpoints.
// kDownstream: each request in the protocol its client spoke (HTTP/2 for
// HTTP/2 clients, gRPC included; HTTP/1.1 otherwise), as restored at the
// destination sidecar for requests that crossed the mesh.
enum class UpstreamProtocol : uint8_t { kHttp1, kHttp2, kDownstream };

struct ClusterConfig {
  std::string name;
  // The Service its endpoints serve, in the golden metrics' destination
  // labels; empty service: the cluster's name.
  std::string service;
  std::string service_namespace;
  // HTTP/2: prior knowledge over plain TCP, "h2" by ALPN over TLS; the
  // exchanges of every client share a few multiplexed connections.
  UpstreamProtocol protocol = UpstreamProtocol::kHttp1;
  LoadBalancerConfig lb;
  Millis connect_timeout{1000};
  Millis idle_timeout{60000};  // pooled upstream connection unused this long is closed
  // An exchange that sees no bytes either way this long is answered 504
  // (reset once the response has begun).
  Millis request_idle_timeout{300000};
  uint32_t max_idle_per_endpoint = 64;  // per worker
  policy::RetryPolicy retry;
  // Caps on what the whole proxy has open to the cluster at once; past one,
  // requests are answered 503 at once, naming the limit.
  policy::CircuitBreakerLimits circuit_breakers;
  HealthCheckConfig health_check;
  // Passive outlier detection: endpoints that keep failing are ejected for a
  // while. Off unless configured.
  bool outlier_enabled = false;
  policy::OutlierConfig outlier;
  // Adaptive concurrency: a limit on requests in flight found from measured
  // latency (gradient); above it requests are shed with 503. Off unless set.
  bool adaptive_concurrency_enabled = false;
  policy::ConcurrencyConfig adaptive_concurrency;
  // Endpoints without an identity are reached over TLS when enabled.
  UpstreamTlsConfig tls;
  std::vector<EndpointConfig> endpoints;
};

struct HeaderModifier {
  std::vector<std::pair<std::string, std::string>> set;  // names lower case
  std::vector<std::pair<std::string, std::string>> add;
  std::vector<std::string> remove;
  bool empty() const { return set.empty() && add.empty() && remove.empty(); }
};

struct PathModifier {
  enum class Kind : uint8_t { kNone, kFull, kPrefix };
  Kind kind = Kind::kNone;
  std::string value;
};

struct RedirectConfig {
  bool enabled = false;
  std::string scheme;    // empty: the request's
  std::string hostname;  // empty: the request's
  uint16_t port = 0;     // 0: the request's (none when the scheme changes)
  PathModifier path;
  uint16_t status = 302;
};

struct RewriteConfig {
  std::string hostname;  // empty: unchanged
  PathModifier path;
  bool empty() const { return hostname.empty() && path.kind == PathModifier::Kind::kNone; }
};

struct MirrorConfig {
  std::string cluster;
  size_t cluster_index = 0;
  uint32_t numerator = 100;  // share mirrored: numerator / denominator
  uint32_t denominator = 100;
  HeaderModifier request_headers;  // on the copy only, after the route's and its backend's
};

struct FaultConfig {
  uint16_t abort_status = 0;  // 0: no abort
  uint32_t abort_per_million = 0;
  Millis delay{0};  // 0: no delay
  uint32_t delay_per_million = 0;
  bool empty() const {
    return (abort_status == 0 || abort_per_million == 0) && (delay.count() == 0 || delay_per_million == 0);
  }
};

// One backend of a route's weighted split, with what applies only to the
// requests sent to it: header changes after the route's, a rewrite whose
// hostname or path replaces the route's, mirrors besides the route's, a
// fault in place of the route's, or a redirect that answers its share.
struct BackendConfig {
  std::string cluster;       // empty: a backend that does not exist; its share is answered 500
  size_t cluster_index = 0;  // filled by validation
  uint32_t weight = 1;
  HeaderModifier request_headers;
  HeaderModifier response_headers;
  RewriteConfig rewrite;
  std::vector<MirrorConfig> mirrors;
  FaultConfig fault;
  RedirectConfig redirect;  // when enabled, this backend's share is answered with it
  // Nothing but a cluster and header changes: the YAML can write it briefly.
  bool only_headers() const {
    return rewrite.empty() && mirrors.empty() && fault.empty() && !redirect.enabled;
  }
};

// A request is copied to at most this many mirrors: its route's and its backend's together.
constexpr size_t kMaxMirrorsPerRequest = 32;

// A rate limit on a route, counted for the whole proxy (all workers
// together). Requests over it get 429 with Retry-After; with a leaky bucket
// they are first held, up to its queue and delay.
struct RateLimitConfig {
  std::string name;
  // Which requests count: path (prefix/exact), method and headers of `match`
  // (its hosts and query parameters are not used). Default: every request.
  policy::RouteMatch match;
  enum class Key : uint8_t { kAll, kAddress, kIdentity, kHeader };
  Key key = Key::kAll;
  std::string key_header;  // kHeader: lower case
  bool leaky = false;
  policy::TokenBucketConfig token_bucket;  // !leaky. burst = the bucket's whole capacity
  policy::LeakyBucketConfig leaky_bucket;  // leaky
};

// Cross-origin resource sharing on a route (the Gateway API's CORS filter):
// preflight requests are answered by the proxy, responses to allowed origins
// carry the CORS headers. Lists hold "*" alone or names.
struct CorsConfig {
  bool enabled = false;
  std::vector<std::string> allow_origins;  // "*", or "<scheme>://<host>[:<port>]", host maybe "*.<suffix>"
  bool allow_credentials = false;
  std::vector<std::string> allow_methods;
  std::vector<std::string> allow_headers;
  std::vector<std::string> expose_headers;
  uint32_t max_age_seconds = 5;
  // expose_headers joined with ',', as each response to an allowed origin
  // sends it: made once when the config is read (set_cors_lists).
  std::string expose_value;
};

struct RouteConfig {
  std::string name;  // the golden metrics' route label; empty: none
  policy::RouteMatch match;
  std::vector<RateLimitConfig> rate_limits;
  std::vector<BackendConfig> backends;  // weighted split; empty or all weights 0: 500
  HeaderModifier request_headers;
  HeaderModifier response_headers;
  RedirectConfig redirect;  // when enabled, answered by the proxy; backends unused
  RewriteConfig rewrite;
  std::vector<MirrorConfig> mirrors;
  FaultConfig fault;
  Millis timeout{
      15000};  // whole request: from the request head to the last response byte, retries included; 0 = none
  Millis per_try_timeout{0};  // overrides the cluster's retry per-try timeout; 0: the cluster's
  std::string direct_error;   // non-empty: answered 500 with this reason
  CorsConfig cors;
};

struct VirtualHostConfig {
  std::string name;
  std::vector<std::string> domains;  // "example.com", "*.example.com", "example.*", "*"; lower case
  std::vector<RouteConfig> routes;   // first match wins
};

// kAuto: HTTP/1.x and HTTP/2 are told apart from anything else by the
// client's first bytes; the rest is proxied as TCP to the listener's cluster.
enum class ListenerProtocol : uint8_t { kHttp, kTcp, kAuto };

// Which way a listener's traffic goes, for the golden metrics: into the
// proxy's own service (the source is the client's verified identity), or
// out of it (the destination is the cluster's service).
enum class Direction : uint8_t { kOutbound, kInbound };

// An inbound sidecar listener serving mTLS with the proxy's certificate.
enum class ListenerTls : uint8_t {
  kOff,
  kStrict,      // mTLS only; plain text is refused
  kPermissive,  // mTLS or plain text, told apart by the first bytes
  kSimple,      // a gateway's TLS for clients outside the mesh: its own certificates, none asked of clients
};

// A certificate a gateway listener serves (ListenerTls::kSimple), from files.
struct ServerCertificateConfig {
  // The names (SNI) it is served for: "api.example.com" or "*.example.com".
  // Empty: the default, for clients that ask for no name or another one.
  std::vector<std::string> server_names;
  std::string certificate_chain;  // PEM file: the leaf, then intermediates
  std::string private_key;        // PEM file, mode 0600
  bool operator==(const ServerCertificateConfig&) const = default;
};

struct ListenerConfig {
  std::string name;
  net::SocketAddress address;
  ListenerProtocol protocol = ListenerProtocol::kHttp;
  Direction direction = Direction::kOutbound;
  Millis idle_timeout{300000};  // downstream connection with no traffic this long is closed
  // Client connections open at once on this listener, all workers
  // together; 0: only the proxy's max_connections bounds them.
  uint32_t max_connections = 0;
  // kHttp, kAuto: a request head (HTTP/1.1) or header section (HTTP/2) must
  // arrive whole within this long of its first byte, or the client gets 408.
  Millis request_head_timeout{10000};
  // kHttp, kAuto: a request body must keep arriving. It has
  // request_body_timeout from its start, plus one second for each
  // request_body_min_rate bytes received (0: none, the whole body within
  // the timeout); past that the client gets 408. The clock stops while the
  // upstream holds the body back, and once the response begins; gRPC calls
  // and upgraded connections have none. 0s: no limit.
  Millis request_body_timeout{10000};
  uint32_t request_body_min_rate = 1024;         // bytes per second
  std::vector<VirtualHostConfig> virtual_hosts;  // kHttp, kAuto
  // kAuto: how long the client's first bytes are waited for before the
  // connection is taken for TCP (a protocol whose server speaks first).
  Millis detect_timeout{1000};
  // kTcp, kAuto (what is not HTTP)
  std::string cluster;
  size_t cluster_index = 0;
  // Who may use this listener (an inbound sidecar's AuthorizationPolicies):
  // checked at accept for tcp, per request for http. Empty: everyone.
  policy::AuthorizationConfig authorization;
  ListenerTls tls = ListenerTls::kOff;
  std::vector<ServerCertificateConfig> certificates;  // kSimple: the first is the default
  // The request header that passes the caller's verified identity to the
  // application, XFCC-style ("By=<own>;URI=<caller>"), lower case. Empty:
  // not passed. Whatever the client sent in it, and in
  // x-forwarded-client-cert, is always removed.
  std::string client_identity_header = "x-forwarded-client-cert";
};

// The proxy's own workload certificate from files (a proxy without a control
// plane): reloaded when they change.
struct MtlsFilesConfig {
  std::string certificate_chain;  // PEM: the leaf, then intermediates
  std::string private_key;        // PEM, mode 0600
  std::string trust_bundle;       // PEM: the roots peers must chain to
  bool enabled() const { return !certificate_chain.empty(); }
};

struct AccessLogConfig {
  std::string path;  // empty: off; "/dev/stdout" allowed
  LogFormat format;  // JSON with the default fields unless set
};

// Distributed tracing: spans of sampled requests go to an OpenTelemetry
// collector over OTLP/HTTP.
struct TracingConfig {
  net::SocketAddress collector;  // length 0: tracing off
  // New traces this proxy starts (a request without a sampled or unsampled
  // parent), in parts per million; a parent's decision is always kept.
  uint32_t sampling_per_million = 10000;
  bool enabled() const { return collector.length != 0; }
};

struct AdminConfig {
  net::SocketAddress address;  // default 127.0.0.1:9901
};

// Where the proxy gets the rest of its configuration (listeners and clusters)
// and who it says it is. Absent: the bootstrap file is the whole config.
struct ControlPlaneConfig {
  net::SocketAddress address;  // trellis-control's gRPC address; length 0 = no control plane
  std::string node_id;         // default: "<service>-<hostname>-<pid>"
  std::string service;
  std::string namespace_ = "default";
  std::string zone;
  // The local instance this sidecar fronts (registered with the proxy's heartbeats).
  bool has_instance = false;
  net::SocketAddress instance_address;  // where other proxies reach it
  net::SocketAddress app_address;       // where the application listens
  uint32_t weight = 1;
  std::map<std::string, std::string> labels;
  Millis ttl{10000};
  // The Service ports it serves, each at the application's host and its
  // target_port; none: app_address takes all of the Service's traffic.
  std::vector<ServicePort> ports;
  // Outbound side: where the application sends its requests, and to whom.
  bool has_outbound = false;
  net::SocketAddress outbound_address;
  std::vector<std::string> upstream_services;
  // How the proxy trusts trellis-control and proves who it is: the roots
  // the control plane's certificate chains to (its <data-dir>/trust-bundle.pem),
  // and a file holding a join token for this namespace and service (read on
  // each connection without a certificate; never logged or dumped).
  std::string trust_bundle;
  std::string join_token_file;
  std::string trust_domain = "cluster.local";

  bool enabled() const { return address.length != 0; }
  // This sidecar's identity: spiffe://<trust domain>/ns/<namespace>/sa/<service>.
  std::string identity() const { return "spiffe://" + trust_domain + "/ns/" + namespace_ + "/sa/" + service; }
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

// What a sidecar speaks to other sidecars: HTTP/2 for every request (many
// client connections become a few multiplexed ones), or each request in the
// protocol its client spoke (HTTP/1.1 over the mesh's mutual TLS for
// HTTP/1.x clients).
enum class MeshProtocol : uint8_t { kHttp2, kDownstream };

inline constexpr uint32_t kDefaultMaxConnections = 50000;
inline constexpr uint32_t kMaxMaxConnections = 10000000;

struct ProxyConfig {
  std::string source;  // file it was read from
  // The proxy's locality, for locality-aware load balancing: the top-level
  // "zone", else control_plane.node.zone.
  std::string zone;
  AdminConfig admin;
  AccessLogConfig access_log;
  TracingConfig tracing;
  Millis drain_timeout{10000};
  // Client connections open at once on all listeners together.
  uint32_t max_connections = kDefaultMaxConnections;
  // Memory the proxy may allocate before the overload manager acts (see
  // OverloadLevel). Unset: 80% of the cgroup's memory.max, or no limit
  // without one; 0: no limit.
  std::optional<uint64_t> max_heap_bytes;
  MeshProtocol mesh_protocol = MeshProtocol::kHttp2;
  std::vector<ListenerConfig> listeners;
  std::vector<ClusterConfig> clusters;
  ControlPlaneConfig control_plane;
  MtlsFilesConfig mtls;
  std::vector<PolicyConfig> policies;  // from the control plane only
};

// One configuration error: where it is and what is wrong with it.
struct ConfigError {
  std::string file;
  int line = 0;         // 1-based; 0 when unknown
  int column = 0;       // 1-based; 0 when unknown
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
