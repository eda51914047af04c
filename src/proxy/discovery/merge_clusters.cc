// A trellis.v1 Cluster as the config model: endpoints, load balancing and
// retries. Zero means "the default" where the message says so.
#include <algorithm>
#include <set>

#include "proxy/discovery/merge_parts.h"

namespace trellis::proxy::control_merge {
namespace {

using LB = v1::LoadBalancer;
using policy::LbAlgorithm;

std::optional<LbAlgorithm> algorithm_of(LB::Algorithm algorithm) {
  switch (algorithm) {
    case LB::PEAK_EWMA:
      return LbAlgorithm::kPeakEwma;
    case LB::ROUND_ROBIN:
      return LbAlgorithm::kRoundRobin;
    case LB::WEIGHTED_ROUND_ROBIN:
      return LbAlgorithm::kWeightedRoundRobin;
    case LB::RANDOM:
      return LbAlgorithm::kRandom;
    case LB::WEIGHTED_RANDOM:
      return LbAlgorithm::kWeightedRandom;
    case LB::LEAST_REQUEST:
      return LbAlgorithm::kLeastRequest;
    case LB::RING_HASH:
      return LbAlgorithm::kRingHash;
    case LB::MAGLEV:
      return LbAlgorithm::kMaglev;
    default:
      return std::nullopt;
  }
}

std::string range(int64_t min, int64_t max) {
  return "must be between " + std::to_string(min) + " and " + std::to_string(max);
}

void translate_hash(const LB& in, const std::string& path, Errors& errors, HashPolicy& hash) {
  const std::string name_path = path + ".hash_name";
  switch (in.hash_on()) {
    case LB::NONE:
      break;
    case LB::HEADER:
      hash.kind = HashPolicy::Kind::kHeader;
      if (errors.check(name_path, check_header_name(in.hash_name()))) hash.name = ascii_lower(in.hash_name());
      break;
    case LB::COOKIE:
      hash.kind = HashPolicy::Kind::kCookie;
      if (!is_token(in.hash_name()))
        errors.add(name_path, "invalid cookie name " + in_quotes(in.hash_name()));
      hash.name = in.hash_name();
      hash.cookie_ttl_set = in.cookie_ttl_set();
      hash.cookie_ttl = Millis(int64_t{in.cookie_ttl_seconds()} * 1000);
      break;
    case LB::SOURCE_IP:
      hash.kind = HashPolicy::Kind::kSourceIp;
      break;
    default:
      errors.add(path + ".hash_on", "unknown hash_on " + std::to_string(in.hash_on()));
      return;
  }
  bool named = hash.kind == HashPolicy::Kind::kHeader || hash.kind == HashPolicy::Kind::kCookie;
  if (!named && !in.hash_name().empty()) errors.add(name_path, "only with hash_on HEADER or COOKIE");
  if (hash.kind != HashPolicy::Kind::kCookie && in.cookie_ttl_set()) {
    errors.add(path + ".cookie_ttl_set", "only with hash_on COOKIE");
  }
}

void translate_load_balancer(const LB& in, const std::string& path, Errors& errors, LoadBalancerConfig& lb) {
  auto algorithm = algorithm_of(in.algorithm());
  if (!algorithm) {
    errors.add(path + ".algorithm", "unknown algorithm " + std::to_string(in.algorithm()));
    return;
  }
  lb.algorithm = *algorithm;
  const std::string& name = LB::Algorithm_Name(in.algorithm());
  translate_hash(in, path, errors, lb.hash);
  if (hashes_requests(lb.algorithm) && in.hash_on() == LB::NONE) {
    errors.add(path + ".hash_on", "required with algorithm " + name);
  } else if (!hashes_requests(lb.algorithm) && in.hash_on() != LB::NONE) {
    errors.add(path + ".hash_on", "only for algorithm RING_HASH or MAGLEV");
  }
  if (in.ring_points() != 0) {
    if (lb.algorithm != LbAlgorithm::kRingHash) {
      errors.add(path + ".ring_points", "only for algorithm RING_HASH");
    } else if (in.ring_points() < kMinRingPoints || in.ring_points() > kMaxRingPoints) {
      errors.add(path + ".ring_points", range(kMinRingPoints, kMaxRingPoints));
    } else {
      lb.ring_points = in.ring_points();
    }
  }
  if (in.locality_enabled()) {
    lb.locality_enabled = true;
    if (in.locality_min_healthy_percent() > 100)
      errors.add(path + ".locality_min_healthy_percent", range(0, 100));
    lb.locality_min_healthy_percent = in.locality_min_healthy_percent();
  }
  if (in.slow_start_window_ms() != 0) {
    if (hashes_requests(lb.algorithm)) {
      errors.add(path + ".slow_start_window_ms", "does not apply to algorithm " + name +
                                                     ": consistent hashing keeps each key on its endpoint");
    }
    lb.slow_start_window = Millis(in.slow_start_window_ms());
  }
}

void translate_retry(const v1::RetryPolicy& in, const std::string& path, Errors& errors,
                     policy::RetryPolicy& retry) {
  if (in.attempts() > kMaxRetryAttempts) errors.add(path + ".attempts", range(0, kMaxRetryAttempts));
  retry.attempts = in.attempts();
  retry.per_try_timeout = Millis(in.per_try_timeout_ms());
  int status_codes_condition = -1;
  if (in.retry_on_size() > 0) {
    retry.retry_on = 0;
    for (int i = 0; i < in.retry_on_size(); ++i) {
      const std::string item = path + ".retry_on[" + std::to_string(i) + "]";
      auto bit = retry_on_from_name(in.retry_on(i));
      if (!bit) {
        errors.add(item, unknown_choice("retry_on condition", in.retry_on(i), kRetryOnNames));
        continue;
      }
      if (retry.retry_on & *bit) {
        errors.add(item, "duplicate condition " + in_quotes(in.retry_on(i)));
        continue;
      }
      retry.retry_on |= *bit;
      if (*bit == policy::kRetryStatusCodes) status_codes_condition = i;
    }
  }
  for (int i = 0; i < in.retriable_status_codes_size(); ++i) {
    const std::string item = path + ".retriable_status_codes[" + std::to_string(i) + "]";
    uint32_t code = in.retriable_status_codes(i);
    if (code < 100 || code > 599) {
      errors.add(item, range(100, 599));
    } else if (std::find(retry.status_codes.begin(), retry.status_codes.end(), code) !=
               retry.status_codes.end()) {
      errors.add(item, "duplicate status code " + std::to_string(code));
    } else {
      retry.status_codes.push_back(static_cast<uint16_t>(code));
    }
  }
  if (in.retriable_status_codes_size() > 0 && !(retry.retry_on & policy::kRetryStatusCodes)) {
    errors.add(path + ".retriable_status_codes", "needs \"retriable-status-codes\" in retry_on");
  }
  if (status_codes_condition >= 0 && in.retriable_status_codes_size() == 0) {
    errors.add(path + ".retry_on[" + std::to_string(status_codes_condition) + "]",
               "needs retriable_status_codes");
  }
  retry.backoff_base = in.backoff_base_ms() != 0 ? Millis(in.backoff_base_ms()) : kDefaultBackoffBase;
  retry.backoff_max = default_backoff_max(retry.backoff_base);
  if (in.backoff_max_ms() != 0) {
    if (Millis(in.backoff_max_ms()) < retry.backoff_base) {
      errors.add(path + ".backoff_max_ms",
                 "must be at least the base (" + format_duration(retry.backoff_base) + ")");
    }
    retry.backoff_max = Millis(in.backoff_max_ms());
  }
  if (in.budget_set()) {
    if (in.budget_percent() > 100) errors.add(path + ".budget_percent", range(0, 100));
    retry.budget_percent = in.budget_percent();
    retry.budget_min_per_second = in.budget_min_per_second();
  }
  retry.non_idempotent = in.non_idempotent();
  if (in.buffer_limit_bytes() != 0) {
    if (in.buffer_limit_bytes() > kMaxRetryBufferLimit) {
      errors.add(path + ".buffer_limit_bytes", range(0, kMaxRetryBufferLimit));
    }
    retry.buffer_limit = in.buffer_limit_bytes();
  }
}

void translate_health_check(const v1::HealthCheck& in, const std::string& path, Errors& errors,
                            HealthCheckConfig& hc) {
  switch (in.kind()) {
    case v1::HealthCheck::NONE:
      return;
    case v1::HealthCheck::HTTP:
      hc.kind = HealthCheckConfig::Kind::kHttp;
      break;
    case v1::HealthCheck::TCP:
      hc.kind = HealthCheckConfig::Kind::kTcp;
      break;
    case v1::HealthCheck::GRPC:
      hc.kind = HealthCheckConfig::Kind::kGrpc;
      if (errors.check(path + ".grpc_service", check_grpc_service(in.grpc_service())))
        hc.grpc_service = in.grpc_service();
      break;
    default:
      errors.add(path + ".kind", "unknown kind " + std::to_string(in.kind()));
      return;
  }
  if (!in.path().empty() && errors.check(path + ".path", check_path(in.path()))) hc.path = in.path();
  if (!in.host().empty() && errors.check(path + ".host", check_hostname(in.host()))) hc.host = in.host();
  for (int i = 0; i < in.expected_statuses_size(); ++i) {
    const v1::StatusRange& r = in.expected_statuses(i);
    if (r.min() < 100 || r.max() > 599 || r.min() > r.max()) {
      errors.add(path + ".expected_statuses[" + std::to_string(i) + "]", "must be a range within 100 to 599");
      continue;
    }
    hc.expected_statuses.emplace_back(static_cast<uint16_t>(r.min()), static_cast<uint16_t>(r.max()));
  }
  if (in.interval_ms()) hc.interval = Millis(in.interval_ms());
  if (in.timeout_ms()) hc.timeout = Millis(in.timeout_ms());
  if (hc.timeout >= hc.interval) errors.add(path + ".timeout_ms", "must be shorter than the interval");
  if (in.healthy_threshold()) hc.healthy_threshold = in.healthy_threshold();
  if (in.unhealthy_threshold()) hc.unhealthy_threshold = in.unhealthy_threshold();
  if (in.jitter_percent() > 100) errors.add(path + ".jitter_percent", range(0, 100));
  hc.jitter_percent = in.jitter_percent();
}

}  // namespace

void translate_cluster(const v1::Cluster& in, const std::string& path, Errors& errors,
                       ClusterConfig& cluster) {
  cluster.name = in.name();
  cluster.service = in.service();
  cluster.service_namespace = in.service_namespace();
  if (!cluster.service.empty()) errors.check(path + ".service", check_name(cluster.service));
  if (!cluster.service_namespace.empty())
    errors.check(path + ".service_namespace", check_name(cluster.service_namespace));
  switch (in.protocol()) {
    case v1::Cluster::HTTP1:
      cluster.protocol = UpstreamProtocol::kHttp1;
      break;
    case v1::Cluster::HTTP2:
      cluster.protocol = UpstreamProtocol::kHttp2;
      break;
    case v1::Cluster::DOWNSTREAM:
      cluster.protocol = UpstreamProtocol::kDownstream;
      break;
    default:
      errors.add(path + ".protocol", "unknown protocol " + std::to_string(in.protocol()));
  }
  if (in.connect_timeout_ms()) cluster.connect_timeout = Millis(in.connect_timeout_ms());
  if (in.idle_timeout_ms()) cluster.idle_timeout = Millis(in.idle_timeout_ms());
  if (in.request_idle_timeout_ms()) cluster.request_idle_timeout = Millis(in.request_idle_timeout_ms());
  if (in.max_idle_per_endpoint()) cluster.max_idle_per_endpoint = in.max_idle_per_endpoint();
  if (in.has_load_balancer())
    translate_load_balancer(in.load_balancer(), path + ".load_balancer", errors, cluster.lb);
  if (in.has_retry()) translate_retry(in.retry(), path + ".retry", errors, cluster.retry);
  if (in.has_circuit_breakers()) {
    const v1::CircuitBreakers& cb = in.circuit_breakers();
    policy::CircuitBreakerLimits& limits = cluster.circuit_breakers;
    if (cb.max_connections()) limits.max_connections = cb.max_connections();
    if (cb.max_pending_requests()) limits.max_pending_requests = cb.max_pending_requests();
    if (cb.max_requests()) limits.max_requests = cb.max_requests();
    if (cb.max_retries()) limits.max_retries = cb.max_retries();
  }
  if (in.has_adaptive_concurrency()) {
    const v1::AdaptiveConcurrency& ac = in.adaptive_concurrency();
    policy::ConcurrencyConfig& c = cluster.adaptive_concurrency;
    cluster.adaptive_concurrency_enabled = true;
    if (ac.initial_limit()) c.initial_limit = ac.initial_limit();
    if (ac.min_limit()) c.min_limit = ac.min_limit();
    if (ac.max_limit()) c.max_limit = ac.max_limit();
    if (ac.sample_window_ms()) c.sample_window = Millis(ac.sample_window_ms());
    if (ac.baseline_interval_ms()) c.baseline_interval = Millis(ac.baseline_interval_ms());
    if (c.min_limit > c.max_limit || c.initial_limit < c.min_limit || c.initial_limit > c.max_limit)
      errors.add(path + ".adaptive_concurrency", "needs min_limit <= initial_limit <= max_limit");
  }
  if (in.has_outlier_detection()) {
    const v1::OutlierDetection& od = in.outlier_detection();
    policy::OutlierConfig& o = cluster.outlier;
    cluster.outlier_enabled = true;
    if (od.consecutive_5xx_set()) o.consecutive_5xx = od.consecutive_5xx();
    o.consecutive_gateway_errors = od.consecutive_gateway_errors();
    o.success_rate.enabled = od.success_rate();
    if (od.success_rate_minimum_hosts()) o.success_rate.minimum_hosts = od.success_rate_minimum_hosts();
    if (od.success_rate_request_volume()) o.success_rate.request_volume = od.success_rate_request_volume();
    if (od.success_rate_stdev_factor() > 0) o.success_rate.stdev_factor = od.success_rate_stdev_factor();
    if (od.interval_ms()) o.interval = Millis(od.interval_ms());
    if (od.base_ejection_time_ms()) o.base_ejection_time = Millis(od.base_ejection_time_ms());
    if (od.percents_set()) {
      if (od.max_ejection_percent() > 100)
        errors.add(path + ".outlier_detection.max_ejection_percent", range(0, 100));
      if (od.panic_threshold_percent() > 100)
        errors.add(path + ".outlier_detection.panic_threshold_percent", range(0, 100));
      o.max_ejection_percent = od.max_ejection_percent();
      o.panic_threshold_percent = od.panic_threshold_percent();
    }
  }
  if (in.has_tls()) {
    if (in.tls().server_name().empty()) errors.add(path + ".tls.server_name", "is required");
    cluster.tls.enabled = true;
    cluster.tls.server_name = in.tls().server_name();
    cluster.tls.trust_bundle_pem = in.tls().trust_bundle_pem();
    errors.check(path + ".protocol", check_tls_protocol(cluster.protocol));
  }
  if (in.has_health_check()) {
    translate_health_check(in.health_check(), path + ".health_check", errors, cluster.health_check);
    errors.check(path + ".health_check", check_health_check_protocol(cluster.health_check.kind,
                                                                     cluster.protocol, cluster.tls.enabled));
  }
  std::set<std::string> seen;
  for (int i = 0; i < in.endpoints_size(); ++i) {
    const v1::Endpoint& e = in.endpoints(i);
    const std::string epath = path + ".endpoints[" + std::to_string(i) + "]";
    EndpointConfig endpoint;
    std::string message;
    if (!net::parse_socket_address(e.address(), endpoint.address, message)) {
      errors.add(epath + ".address", message);
      continue;
    }
    if (!seen.insert(endpoint.address.text).second) {
      errors.add(epath + ".address", "duplicate endpoint " + endpoint.address.text);
      continue;
    }
    if (e.weight() > kMaxWeight) errors.add(epath + ".weight", range(0, kMaxWeight));
    endpoint.weight = e.weight() == 0 ? 1 : e.weight();
    if (!e.zone().empty() && errors.check(epath + ".zone", check_name(e.zone()))) endpoint.zone = e.zone();
    if (!e.identity().empty() && errors.check(epath + ".identity", check_spiffe_id(e.identity())))
      endpoint.identity = e.identity();
    cluster.endpoints.push_back(std::move(endpoint));
  }
}

}  // namespace trellis::proxy::control_merge
