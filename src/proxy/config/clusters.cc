// The bootstrap file's clusters: endpoints, load balancing and retries.
#include <algorithm>
#include <charconv>
#include <limits>

#include "common/text.h"
#include "net/address.h"
#include "proxy/config/checks.h"
#include "proxy/config/loader.h"

namespace trellis::proxy::config_yaml {
namespace {

using policy::LbAlgorithm;

class ClusterLoader {
 public:
  explicit ClusterLoader(Reader& reader) : r_(reader) {}

  void load(const Located& at, ClusterConfig& cluster, size_t index, ClusterIndex& names) {
    auto fields = r_.read_map(at, {"name",
                                   "service",
                                   "namespace",
                                   "protocol",
                                   "lb_policy",
                                   "hash",
                                   "ring_points",
                                   "locality",
                                   "slow_start",
                                   "connect_timeout",
                                   "idle_timeout",
                                   "request_idle_timeout",
                                   "max_idle_per_endpoint",
                                   "retry",
                                   "health_check",
                                   "circuit_breakers",
                                   "outlier_detection",
                                   "adaptive_concurrency",
                                   "tls",
                                   "endpoints"});
    if (!fields) return;
    if (auto v = r_.required(*fields, "name"); v && r_.read_name(*v, cluster.name)) {
      if (!names.by_name.emplace(cluster.name, index).second) {
        r_.error(*v, "duplicate cluster name " + in_quotes(cluster.name));
      }
    }
    if (auto v = fields->get("service")) r_.read_name(*v, cluster.service);
    if (auto v = fields->get("namespace")) r_.read_name(*v, cluster.service_namespace);
    if (auto v = fields->get("protocol")) {
      std::string protocol;
      if (r_.read_string(*v, protocol)) {
        if (protocol == "http1") {
          cluster.protocol = UpstreamProtocol::kHttp1;
        } else if (protocol == "http2") {
          cluster.protocol = UpstreamProtocol::kHttp2;
        } else if (protocol == "downstream") {
          cluster.protocol = UpstreamProtocol::kDownstream;
        } else {
          r_.error(*v, "unknown protocol " + in_quotes(protocol) + " (expected http1, http2 or downstream)");
        }
      }
    }
    load_balancing(*fields, cluster.lb);
    if (auto v = fields->get("connect_timeout")) r_.read_positive_duration(*v, cluster.connect_timeout);
    if (auto v = fields->get("idle_timeout")) r_.read_positive_duration(*v, cluster.idle_timeout);
    if (auto v = fields->get("request_idle_timeout"))
      r_.read_positive_duration(*v, cluster.request_idle_timeout);
    if (auto v = fields->get("max_idle_per_endpoint")) {
      r_.read_integer(*v, 0, std::numeric_limits<uint32_t>::max(), cluster.max_idle_per_endpoint);
    }
    if (auto v = fields->get("retry")) load_retry(*v, cluster.retry);
    auto health_check = fields->get("health_check");
    if (health_check) load_health_check(*health_check, cluster.health_check);
    if (auto v = fields->get("circuit_breakers")) load_circuit_breakers(*v, cluster.circuit_breakers);
    if (auto v = fields->get("adaptive_concurrency")) {
      cluster.adaptive_concurrency_enabled = true;
      load_adaptive_concurrency(*v, cluster.adaptive_concurrency);
    }
    if (auto v = fields->get("outlier_detection")) {
      cluster.outlier_enabled = true;
      load_outlier(*v, cluster.outlier);
    }
    if (auto v = fields->get("tls")) {
      if (auto tls = r_.read_map(*v, {"server_name", "trust_bundle"})) {
        cluster.tls.enabled = true;
        if (auto n = r_.required(*tls, "server_name"); n && r_.read_string(*n, cluster.tls.server_name)) {
          std::string& name = cluster.tls.server_name;
          name = ascii_lower(name);
          net::SocketAddress ip;
          std::string ignored;
          bool is_ip = net::parse_socket_address(name + ":1", ip, ignored) ||
                       net::parse_socket_address("[" + name + "]:1", ip, ignored);
          if (!is_ip && (check_domain(name) || name.find_first_of("*:") != std::string::npos))
            r_.error(*n, "expected the server's DNS name (or IP address), as its certificate names it");
        }
        if (auto b = tls->get("trust_bundle");
            b && r_.read_string(*b, cluster.tls.trust_bundle) && cluster.tls.trust_bundle.empty())
          r_.error(*b, "must name a file (leave it out for the system's roots)");
      }
    }
    if (auto v = fields->get("protocol"); v && cluster.tls.enabled)
      r_.check(*v, check_tls_protocol(cluster.protocol));
    if (health_check)
      r_.check(*health_check,
               check_health_check_protocol(cluster.health_check.kind, cluster.protocol, cluster.tls.enabled));
    if (auto v = fields->get("endpoints")) {
      if (auto items = r_.read_list(*v)) {
        for (const Located& item : *items) {
          EndpointConfig endpoint;
          load_endpoint(item, endpoint);
          cluster.endpoints.push_back(std::move(endpoint));
        }
      }
    }
  }

 private:
  void load_balancing(const Fields& fields, LoadBalancerConfig& lb) {
    bool algorithm_known = true;
    if (auto v = fields.get("lb_policy")) {
      size_t index = 0;
      algorithm_known = r_.read_choice(*v, "lb_policy", kLbPolicyNames, index);
      if (algorithm_known) lb.algorithm = *lb_algorithm_from_name(kLbPolicyNames[index]);
    }
    const std::string policy_name(lb_algorithm_name(lb.algorithm));
    auto hash = fields.get("hash");
    auto ring_points = fields.get("ring_points");
    auto slow_start = fields.get("slow_start");
    if (hash) load_hash(*hash, lb.hash);
    if (ring_points) r_.read_integer(*ring_points, kMinRingPoints, kMaxRingPoints, lb.ring_points);
    if (auto v = fields.get("locality")) {
      if (auto f = r_.read_map(*v, {"min_healthy_percent"})) {
        lb.locality_enabled = true;
        if (auto p = f->get("min_healthy_percent"))
          r_.read_integer(*p, 0, 100, lb.locality_min_healthy_percent);
      }
    }
    if (slow_start) r_.read_positive_duration(*slow_start, lb.slow_start_window);
    // Which of these belong depends on the policy; with that in doubt, any verdict would be a guess.
    if (!algorithm_known) return;
    if (hashes_requests(lb.algorithm)) {
      if (!hash) {
        r_.error(fields.self().mark, field_path(fields.self().path, "hash"),
                 "required with lb_policy " + policy_name);
      }
      if (slow_start) {
        r_.key_error(*slow_start, "\"slow_start\" does not apply to lb_policy " + policy_name +
                                      ": consistent hashing keeps each key on its endpoint");
      }
    } else if (hash) {
      r_.key_error(*hash, "\"hash\" is only for lb_policy ring_hash or maglev");
    }
    if (ring_points && lb.algorithm != LbAlgorithm::kRingHash) {
      r_.key_error(*ring_points, "\"ring_points\" is only for lb_policy ring_hash");
    }
  }

  void load_hash(const Located& at, HashPolicy& hash) {
    auto fields = r_.read_map(at, {"header", "cookie", "source_ip"});
    if (!fields) return;
    std::vector<Located> set = fields->present({"header", "cookie", "source_ip"});
    if (set.size() != 1) {
      r_.error(at, set.empty() ? "needs \"header\", \"cookie\" or \"source_ip\""
                               : "set only one of \"header\", \"cookie\" or \"source_ip\"");
      return;
    }
    const Located& v = set.front();
    if (fields->get("header")) {
      hash.kind = HashPolicy::Kind::kHeader;
      if (r_.read_string(v, hash.name) && r_.check(v, check_header_name(hash.name)))
        hash.name = ascii_lower(hash.name);
    } else if (fields->get("cookie")) {
      hash.kind = HashPolicy::Kind::kCookie;
      load_cookie(v, hash);
    } else {
      bool on = false;
      if (r_.read_bool(v, on)) {
        if (on)
          hash.kind = HashPolicy::Kind::kSourceIp;
        else
          r_.error(v, "must be true (choose \"header\" or \"cookie\" to hash on something else)");
      }
    }
  }

  void load_cookie(const Located& at, HashPolicy& hash) {
    auto fields = r_.read_map(at, {"name", "ttl"});
    if (!fields) return;
    if (auto v = r_.required(*fields, "name"); v && r_.read_string(*v, hash.name)) {
      if (!is_token(hash.name)) r_.error(*v, "invalid cookie name " + in_quotes(hash.name));
    }
    if (auto v = fields->get("ttl"); v && r_.read_duration(*v, hash.cookie_ttl)) {
      // A cookie's lifetime goes out as Max-Age, in seconds.
      if (hash.cookie_ttl.count() % 1000 != 0)
        r_.error(*v, "must be a whole number of seconds");
      else
        hash.cookie_ttl_set = true;
    }
  }

  void load_retry(const Located& at, policy::RetryPolicy& retry) {
    auto fields = r_.read_map(at, {"attempts", "per_try_timeout", "retry_on", "status_codes", "backoff",
                                   "budget", "non_idempotent", "buffer_limit"});
    if (!fields) return;
    retry.attempts = 2;  // asking for retries without a count gets a few
    if (auto v = fields->get("attempts")) r_.read_integer(*v, 0, kMaxRetryAttempts, retry.attempts);
    if (auto v = fields->get("per_try_timeout")) r_.read_duration(*v, retry.per_try_timeout);
    bool conditions_known = true;
    std::optional<Located> status_codes_condition;
    if (auto v = fields->get("retry_on")) {
      conditions_known = load_retry_on(*v, retry.retry_on, status_codes_condition);
    }
    auto status_codes = fields->get("status_codes");
    if (status_codes) load_status_codes(*status_codes, retry.status_codes);
    if (conditions_known) {
      if (status_codes && !(retry.retry_on & policy::kRetryStatusCodes)) {
        r_.key_error(*status_codes, "needs \"retriable-status-codes\" in retry_on");
      }
      if (status_codes_condition && !status_codes) {
        r_.error(*status_codes_condition, "needs status_codes");
      }
    }
    if (auto v = fields->get("backoff")) load_backoff(*v, retry);
    if (auto v = fields->get("budget")) {
      if (auto f = r_.read_map(*v, {"percent", "min_per_second"})) {
        if (auto p = f->get("percent")) r_.read_integer(*p, 0, 100, retry.budget_percent);
        if (auto p = f->get("min_per_second")) {
          r_.read_integer(*p, 0, std::numeric_limits<uint32_t>::max(), retry.budget_min_per_second);
        }
      }
    }
    if (auto v = fields->get("non_idempotent")) r_.read_bool(*v, retry.non_idempotent);
    if (auto v = fields->get("buffer_limit"))
      r_.read_integer(*v, 0, kMaxRetryBufferLimit, retry.buffer_limit);
  }

  // False when the list could not be read. `status_codes_condition` is set to
  // the entry naming retriable-status-codes, if any.
  bool load_retry_on(const Located& at, uint32_t& retry_on, std::optional<Located>& status_codes_condition) {
    auto items = r_.read_list(at);
    if (!items) return false;
    if (items->empty()) {
      r_.error(at, "must list at least one condition (set attempts: 0 to turn retries off)");
      return false;
    }
    bool ok = true;
    retry_on = 0;
    for (const Located& item : *items) {
      size_t index = 0;
      if (!r_.read_choice(item, "retry_on condition", kRetryOnNames, index)) {
        ok = false;
        continue;
      }
      uint32_t bit = *retry_on_from_name(kRetryOnNames[index]);
      if (retry_on & bit) {
        r_.error(item, "duplicate condition " + in_quotes(kRetryOnNames[index]));
        continue;
      }
      retry_on |= bit;
      if (bit == policy::kRetryStatusCodes) status_codes_condition = item;
    }
    return ok;
  }

  void load_status_codes(const Located& at, std::vector<uint16_t>& codes) {
    auto items = r_.read_list(at);
    if (!items) return;
    if (items->empty()) r_.error(at, "must list at least one status code");
    for (const Located& item : *items) {
      uint16_t code = 0;
      if (!r_.read_integer(item, 100, 599, code)) continue;
      if (std::find(codes.begin(), codes.end(), code) != codes.end()) {
        r_.error(item, "duplicate status code " + std::to_string(code));
        continue;
      }
      codes.push_back(code);
    }
  }

  void load_backoff(const Located& at, policy::RetryPolicy& retry) {
    auto fields = r_.read_map(at, {"base", "max"});
    if (!fields) return;
    if (auto v = fields->get("base")) r_.read_positive_duration(*v, retry.backoff_base);
    retry.backoff_max = default_backoff_max(retry.backoff_base);
    if (auto v = fields->get("max")) {
      Millis max{};
      if (r_.read_duration(*v, max)) {
        if (max < retry.backoff_base) {
          r_.error(*v, "must be at least the base (" + format_duration(retry.backoff_base) + ")");
        } else {
          retry.backoff_max = max;
        }
      }
    }
  }

  void load_adaptive_concurrency(const Located& at, policy::ConcurrencyConfig& c) {
    auto fields =
        r_.read_map(at, {"initial_limit", "min_limit", "max_limit", "sample_window", "baseline_interval"});
    if (!fields) return;
    if (auto v = fields->get("min_limit")) r_.read_integer(*v, 1, 1000000, c.min_limit);
    if (auto v = fields->get("max_limit")) r_.read_integer(*v, 1, 1000000, c.max_limit);
    if (auto v = fields->get("initial_limit")) r_.read_integer(*v, 1, 1000000, c.initial_limit);
    Millis ms{};
    if (auto v = fields->get("sample_window"); v && r_.read_positive_duration(*v, ms)) c.sample_window = ms;
    if (auto v = fields->get("baseline_interval"); v && r_.read_positive_duration(*v, ms))
      c.baseline_interval = ms;
    if (c.min_limit > c.max_limit)
      r_.error(at, "min_limit must not be above max_limit");
    else if (c.initial_limit < c.min_limit || c.initial_limit > c.max_limit)
      r_.error(at, "initial_limit must be between min_limit and max_limit");
  }

  void load_outlier(const Located& at, policy::OutlierConfig& o) {
    auto fields = r_.read_map(at, {"consecutive_5xx", "consecutive_gateway_errors", "success_rate",
                                   "interval", "base_ejection_time", "max_ejection_time",
                                   "max_ejection_percent", "always_eject_one", "panic_threshold_percent"});
    if (!fields) return;
    if (auto v = fields->get("consecutive_5xx")) r_.read_integer(*v, 0, 1000000, o.consecutive_5xx);
    if (auto v = fields->get("consecutive_gateway_errors"))
      r_.read_integer(*v, 0, 1000000, o.consecutive_gateway_errors);
    if (auto v = fields->get("success_rate")) {
      o.success_rate.enabled = true;
      if (auto f = r_.read_map(*v, {"minimum_hosts", "request_volume", "stdev_factor"})) {
        if (auto m = f->get("minimum_hosts")) r_.read_integer(*m, 1, 1000000, o.success_rate.minimum_hosts);
        if (auto m = f->get("request_volume"))
          r_.read_integer(*m, 1, 1000000000, o.success_rate.request_volume);
        if (auto m = f->get("stdev_factor")) {
          uint32_t numerator = 0, denominator = 1;
          // A percentage reader gives a decimal with up to four places: reuse it.
          if (r_.read_percent(*m, numerator, denominator)) {
            o.success_rate.stdev_factor = 100.0 * numerator / denominator;
            if (o.success_rate.stdev_factor <= 0) r_.error(*m, "must be greater than 0");
          }
        }
      }
    }
    Millis ms{};
    if (auto v = fields->get("interval"); v && r_.read_positive_duration(*v, ms)) o.interval = ms;
    if (auto v = fields->get("base_ejection_time"); v && r_.read_positive_duration(*v, ms))
      o.base_ejection_time = ms;
    if (auto v = fields->get("max_ejection_time"); v && r_.read_positive_duration(*v, ms))
      o.max_ejection_time = ms;
    if (auto v = fields->get("max_ejection_percent")) r_.read_integer(*v, 0, 100, o.max_ejection_percent);
    if (auto v = fields->get("always_eject_one")) r_.read_bool(*v, o.always_eject_one_host);
    if (auto v = fields->get("panic_threshold_percent"))
      r_.read_integer(*v, 0, 100, o.panic_threshold_percent);
  }

  void load_circuit_breakers(const Located& at, policy::CircuitBreakerLimits& limits) {
    auto fields = r_.read_map(at, {"max_connections", "max_pending_requests", "max_requests", "max_retries"});
    if (!fields) return;
    constexpr int64_t kMax = 1'000'000'000;
    if (auto v = fields->get("max_connections")) r_.read_integer(*v, 1, kMax, limits.max_connections);
    if (auto v = fields->get("max_pending_requests"))
      r_.read_integer(*v, 1, kMax, limits.max_pending_requests);
    if (auto v = fields->get("max_requests")) r_.read_integer(*v, 1, kMax, limits.max_requests);
    if (auto v = fields->get("max_retries")) r_.read_integer(*v, 0, kMax, limits.max_retries);
  }

  void load_health_check(const Located& at, HealthCheckConfig& hc) {
    auto fields = r_.read_map(at, {"http", "tcp", "grpc", "interval", "timeout", "healthy_threshold",
                                   "unhealthy_threshold", "jitter_percent"});
    if (!fields) return;
    auto http = fields->get("http");
    auto tcp = fields->get("tcp");
    auto grpc = fields->get("grpc");
    if ((http ? 1 : 0) + (tcp ? 1 : 0) + (grpc ? 1 : 0) > 1) {
      r_.key_error(grpc ? *grpc : *tcp, "set only one of \"http\", \"tcp\" or \"grpc\"");
    } else if (!http && !tcp && !grpc) {
      r_.error(at, "needs \"http\", \"tcp\" or \"grpc\"");
    }
    if (http) {
      hc.kind = HealthCheckConfig::Kind::kHttp;
      if (auto f = r_.read_map(*http, {"path", "host", "expected_statuses"})) {
        if (auto v = f->get("path"); v && r_.read_string(*v, hc.path)) r_.check(*v, check_path(hc.path));
        if (auto v = f->get("host"); v && r_.read_string(*v, hc.host)) r_.check(*v, check_hostname(hc.host));
        if (auto v = f->get("expected_statuses")) load_status_ranges(*v, hc.expected_statuses);
      }
    } else if (tcp) {
      hc.kind = HealthCheckConfig::Kind::kTcp;
      r_.read_map(*tcp, {});
    } else if (grpc) {
      hc.kind = HealthCheckConfig::Kind::kGrpc;
      if (auto f = r_.read_map(*grpc, {"service", "authority"})) {
        if (auto v = f->get("service"); v && r_.read_string(*v, hc.grpc_service))
          r_.check(*v, check_grpc_service(hc.grpc_service));
        if (auto v = f->get("authority"); v && r_.read_string(*v, hc.host))
          r_.check(*v, check_hostname(hc.host));
      }
    }
    if (auto v = fields->get("interval")) r_.read_positive_duration(*v, hc.interval);
    if (auto v = fields->get("timeout");
        v && r_.read_positive_duration(*v, hc.timeout) && hc.timeout >= hc.interval)
      r_.error(*v, "must be shorter than the interval (" + format_duration(hc.interval) + ")");
    if (auto v = fields->get("healthy_threshold")) r_.read_integer(*v, 1, 1000, hc.healthy_threshold);
    if (auto v = fields->get("unhealthy_threshold")) r_.read_integer(*v, 1, 1000, hc.unhealthy_threshold);
    if (auto v = fields->get("jitter_percent")) r_.read_integer(*v, 0, 100, hc.jitter_percent);
  }

  // Status codes (304) or inclusive ranges ("200-299").
  void load_status_ranges(const Located& at, std::vector<std::pair<uint16_t, uint16_t>>& ranges) {
    auto items = r_.read_list(at);
    if (!items) return;
    if (items->empty()) r_.error(at, "must list at least one status or range");
    for (const Located& item : *items) {
      if (item.node.IsScalar() && item.node.Scalar().find('-') != std::string::npos) {
        const std::string& text = item.node.Scalar();
        size_t dash = text.find('-');
        int lo = 0, hi = 0;
        auto [p1, e1] = std::from_chars(text.data(), text.data() + dash, lo);
        auto [p2, e2] = std::from_chars(text.data() + dash + 1, text.data() + text.size(), hi);
        if (e1 != std::errc() || e2 != std::errc() || p1 != text.data() + dash ||
            p2 != text.data() + text.size() || lo < 100 || hi > 599 || lo > hi) {
          r_.error(item, "expected a status (100 to 599) or a range like \"200-299\"");
          continue;
        }
        ranges.emplace_back(static_cast<uint16_t>(lo), static_cast<uint16_t>(hi));
        continue;
      }
      uint16_t code = 0;
      if (r_.read_integer(item, 100, 599, code)) ranges.emplace_back(code, code);
    }
  }

  void load_endpoint(const Located& at, EndpointConfig& endpoint) {
    auto fields = r_.read_map(at, {"address", "weight", "zone", "identity"});
    if (!fields) return;
    if (auto v = r_.required(*fields, "address")) r_.read_address(*v, endpoint.address);
    if (auto v = fields->get("weight")) r_.read_integer(*v, 0, kMaxWeight, endpoint.weight);
    if (auto v = fields->get("zone")) r_.read_name(*v, endpoint.zone);
    if (auto v = fields->get("identity"); v && r_.read_string(*v, endpoint.identity))
      r_.check(*v, check_spiffe_id(endpoint.identity));
  }

  Reader& r_;
};

}  // namespace

void load_clusters(Reader& reader, const Located& at, std::vector<ClusterConfig>& clusters,
                   ClusterIndex& index) {
  auto items = reader.read_list(at);
  if (!items) {
    index.known = false;
    return;
  }
  ClusterLoader loader(reader);
  for (const Located& item : *items) {
    ClusterConfig cluster;
    loader.load(item, cluster, clusters.size(), index);
    clusters.push_back(std::move(cluster));
  }
}

void ClusterIndex::resolve(Reader& reader, const Located& at, const std::string& name, size_t& index) const {
  if (name.empty()) {
    reader.error(at, "must not be empty");
    return;
  }
  auto it = by_name.find(name);
  if (it != by_name.end()) {
    index = it->second;
  } else if (known) {
    reader.error(at, "unknown cluster " + in_quotes(name));
  }
}

}  // namespace trellis::proxy::config_yaml
