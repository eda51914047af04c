#include "control/cluster_translation.h"

#include <algorithm>
#include <utility>

#include "control/registry.h"
#include "control/resources/checker.h"

namespace trellis::control {
namespace {

// Defaults documented in docs/resources.md (DestinationPolicy).
constexpr uint32_t kConnectTimeoutMs = 1000;
constexpr uint32_t kIdleTimeoutMs = 60000;
constexpr uint32_t kRequestIdleTimeoutMs = 5 * 60 * 1000;
constexpr uint32_t kMaxIdlePerEndpoint = 64;
constexpr uint32_t kLocalityMinHealthyPercent = 70;
constexpr uint32_t kRetryAttempts = 2;
constexpr uint32_t kBackoffBaseMs = 25;
constexpr uint32_t kBackoffMaxPerBase = 10;
constexpr uint32_t kBudgetPercent = 20;
constexpr uint32_t kBudgetMinPerSecond = 10;

v1::LoadBalancer::Algorithm algorithm_of(const std::string& name) {
  static const std::pair<const char*, v1::LoadBalancer::Algorithm> kAlgorithms[] = {
      {"RoundRobin", v1::LoadBalancer::ROUND_ROBIN},
      {"WeightedRoundRobin", v1::LoadBalancer::WEIGHTED_ROUND_ROBIN},
      {"Random", v1::LoadBalancer::RANDOM},
      {"LeastRequest", v1::LoadBalancer::LEAST_REQUEST},
      {"PeakEWMA", v1::LoadBalancer::PEAK_EWMA},
      {"RingHash", v1::LoadBalancer::RING_HASH},
      {"Maglev", v1::LoadBalancer::MAGLEV},
  };
  for (const auto& [text, algorithm] : kAlgorithms) {
    if (name == text) return algorithm;
  }
  return v1::LoadBalancer::PEAK_EWMA;
}

void fill_load_balancer(const Json& spec, v1::LoadBalancer& lb) {
  lb.set_algorithm(algorithm_of(string_at(spec, "algorithm", "PeakEWMA")));
  if (const Json* hash = map_at(spec, "hash")) {
    if (hash->contains("header")) {
      lb.set_hash_on(v1::LoadBalancer::HEADER);
      lb.set_hash_name(ascii_lower(string_at(*hash, "header")));  // header names are compared without case
    } else if (const Json* cookie = map_at(*hash, "cookie")) {
      lb.set_hash_on(v1::LoadBalancer::COOKIE);
      lb.set_hash_name(string_at(*cookie, "name"));
      auto ttl = cookie->find("ttl");
      if (ttl != cookie->end()) {
        uint32_t ms = duration_ms(*ttl).value_or(0);
        lb.set_cookie_ttl_set(true);
        lb.set_cookie_ttl_seconds(ms / 1000 + (ms % 1000 != 0));  // 500ms is not a session cookie
      }
    } else if (hash->contains("sourceIP")) {
      lb.set_hash_on(v1::LoadBalancer::SOURCE_IP);
    }
  }
  lb.set_ring_points(uint_at(spec, "ringPoints", 0));
  if (const Json* locality = map_at(spec, "locality")) {
    lb.set_locality_enabled(bool_at(*locality, "enabled", false));
    lb.set_locality_min_healthy_percent(uint_at(*locality, "minHealthyPercent", kLocalityMinHealthyPercent));
  }
  if (const Json* slow_start = map_at(spec, "slowStart")) {
    lb.set_slow_start_window_ms(duration_at(*slow_start, "window", 0));
  }
}

void fill_retry(const Json& spec, v1::RetryPolicy& retry) {
  retry.set_attempts(uint_at(spec, "attempts", kRetryAttempts));
  retry.set_per_try_timeout_ms(duration_at(spec, "perTryTimeout", 0));
  const Json& conditions = list_at(spec, "retryOn");
  if (spec.contains("retryOn")) {
    for (const Json& c : conditions) {
      if (c.is_string()) retry.add_retry_on(c.get<std::string>());
    }
  } else {
    retry.add_retry_on("connect-failure");
    retry.add_retry_on("reset");
  }
  for (const Json& code : list_at(spec, "retriableStatusCodes")) {
    if (code.is_number_integer() && code.get<int64_t>() > 0) {
      retry.add_retriable_status_codes(static_cast<uint32_t>(code.get<int64_t>()));
    }
  }
  const Json* backoff = map_at(spec, "backoff");
  uint32_t base = backoff ? duration_at(*backoff, "baseInterval", kBackoffBaseMs) : kBackoffBaseMs;
  retry.set_backoff_base_ms(base);
  retry.set_backoff_max_ms(backoff ? duration_at(*backoff, "maxInterval", base * kBackoffMaxPerBase)
                                   : base * kBackoffMaxPerBase);
  if (const Json* budget = map_at(spec, "budget")) {
    retry.set_budget_set(true);
    retry.set_budget_percent(uint_at(*budget, "percent", kBudgetPercent));
    retry.set_budget_min_per_second(uint_at(*budget, "minRetriesPerSecond", kBudgetMinPerSecond));
  }
  retry.set_non_idempotent(bool_at(spec, "nonIdempotent", false));
}

// Whether the instance's labels include every one of `labels`.
bool selects(const Json& labels, const Instance& instance) {
  for (const auto& [key, value] : labels.items()) {
    auto it = instance.labels.find(key);
    if (it == instance.labels.end() || !value.is_string() ||
        it->second != value.get_ref<const std::string&>()) {
      return false;
    }
  }
  return true;
}

// outlierDetection (validated before it was stored), defaults as documented.
void fill_outlier(const Json& spec, v1::OutlierDetection& out) {
  out.set_consecutive_5xx_set(true);
  out.set_consecutive_5xx(uint_at(spec, "consecutive5xx", 5));
  out.set_consecutive_gateway_errors(uint_at(spec, "consecutiveGatewayErrors", 0));
  if (const Json* sr = map_at(spec, "successRate")) {
    out.set_success_rate(true);
    out.set_success_rate_minimum_hosts(uint_at(*sr, "minimumHosts", 5));
    out.set_success_rate_request_volume(uint_at(*sr, "requestVolume", 100));
    auto f = sr->find("stdevFactor");
    out.set_success_rate_stdev_factor(f != sr->end() && f->is_number() ? f->get<double>() : 1.9);
  }
  out.set_interval_ms(duration_at(spec, "interval", 10000));
  out.set_base_ejection_time_ms(duration_at(spec, "baseEjectionTime", 30000));
  out.set_percents_set(true);
  out.set_max_ejection_percent(uint_at(spec, "maxEjectionPercent", 10));
  out.set_panic_threshold_percent(uint_at(spec, "panicThresholdPercent", 50));
}

// healthCheck (validated before it was stored): http/tcp/grpc, statuses as
// codes or "lo-hi" ranges.
void fill_health_check(const Json& spec, v1::HealthCheck& out) {
  if (const Json* http = map_at(spec, "http")) {
    out.set_kind(v1::HealthCheck::HTTP);
    out.set_path(string_at(*http, "path", "/"));
    auto statuses = http->find("expectedStatuses");
    if (statuses != http->end() && statuses->is_array()) {
      for (const Json& s : *statuses) {
        v1::StatusRange* r = out.add_expected_statuses();
        if (s.is_number_integer()) {
          r->set_min(s.get<uint32_t>());
          r->set_max(s.get<uint32_t>());
        } else if (s.is_string()) {
          const std::string& text = s.get_ref<const std::string&>();
          size_t dash = text.find('-');
          r->set_min(static_cast<uint32_t>(std::stoul(text.substr(0, dash))));
          r->set_max(
              static_cast<uint32_t>(std::stoul(dash == std::string::npos ? text : text.substr(dash + 1))));
        }
      }
    }
  } else if (map_at(spec, "tcp") != nullptr) {
    out.set_kind(v1::HealthCheck::TCP);
  } else if (const Json* grpc = map_at(spec, "grpc")) {
    out.set_kind(v1::HealthCheck::GRPC);
    out.set_grpc_service(string_at(*grpc, "service"));
  } else {
    return;
  }
  out.set_interval_ms(duration_at(spec, "interval", 10000));
  out.set_timeout_ms(duration_at(spec, "timeout", 1000));
  out.set_healthy_threshold(uint_at(spec, "healthyThreshold", 2));
  out.set_unhealthy_threshold(uint_at(spec, "unhealthyThreshold", 3));
  out.set_jitter_percent(uint_at(spec, "jitterPercent", 10));
}

}  // namespace

v1::Cluster::Protocol cluster_protocol(const std::string& port_protocol) {
  if (port_protocol == "http") return v1::Cluster::HTTP1;
  if (port_protocol == "h2c" || port_protocol == "grpc") return v1::Cluster::HTTP2;
  return v1::Cluster::DOWNSTREAM;
}

std::string host_of(const std::string& address) {
  size_t colon = address.rfind(':');
  return colon == std::string::npos ? address : address.substr(0, colon);
}

v1::Cluster build_cluster(const MeshView& mesh, const ClusterRef& ref) {
  v1::Cluster c;
  c.set_name(ref.cluster_name());
  c.set_service(ref.service.name);
  c.set_service_namespace(ref.service.namespace_);
  c.set_connect_timeout_ms(kConnectTimeoutMs);
  c.set_idle_timeout_ms(kIdleTimeoutMs);
  c.set_request_idle_timeout_ms(kRequestIdleTimeoutMs);
  c.set_max_idle_per_endpoint(kMaxIdlePerEndpoint);
  const Resource* policy = destination_policy_for(mesh, ref.service);
  if (policy != nullptr) {
    if (const Json* pool = map_at(policy->spec, "connectionPool")) {
      v1::CircuitBreakers* cb = c.mutable_circuit_breakers();
      cb->set_max_connections(uint_at(*pool, "maxConnections", 0));
      cb->set_max_pending_requests(uint_at(*pool, "maxPendingRequests", 0));
      cb->set_max_requests(uint_at(*pool, "maxRequests", 0));
      cb->set_max_retries(uint_at(*pool, "maxRetries", 0));
      c.set_connect_timeout_ms(duration_at(*pool, "connectTimeout", kConnectTimeoutMs));
      c.set_idle_timeout_ms(duration_at(*pool, "idleTimeout", kIdleTimeoutMs));
      c.set_request_idle_timeout_ms(duration_at(*pool, "requestIdleTimeout", kRequestIdleTimeoutMs));
    }
    if (const Json* lb = map_at(policy->spec, "loadBalancer"))
      fill_load_balancer(*lb, *c.mutable_load_balancer());
    // TLS origination to the instances that have no sidecar.
    if (const Json* tls = map_at(policy->spec, "tls")) {
      c.mutable_tls()->set_server_name(string_at(*tls, "sni"));
      c.mutable_tls()->set_trust_bundle_pem(string_at(*tls, "caCertificates"));
    }
    if (const Json* retries = map_at(policy->spec, "retries")) fill_retry(*retries, *c.mutable_retry());
    if (const Json* hc = map_at(policy->spec, "healthCheck"))
      fill_health_check(*hc, *c.mutable_health_check());
    if (const Json* od = map_at(policy->spec, "outlierDetection"))
      fill_outlier(*od, *c.mutable_outlier_detection());
    if (const Json* ac = map_at(policy->spec, "adaptiveConcurrency")) {
      v1::AdaptiveConcurrency* out = c.mutable_adaptive_concurrency();
      out->set_initial_limit(uint_at(*ac, "initialLimit", 20));
      out->set_min_limit(uint_at(*ac, "minLimit", 3));
      out->set_max_limit(uint_at(*ac, "maxLimit", 1000));
      out->set_sample_window_ms(duration_at(*ac, "sampleWindow", 100));
      out->set_baseline_interval_ms(duration_at(*ac, "baselineInterval", 60000));
    }
  }
  const Json* labels = nullptr;
  if (!ref.subset.empty()) {
    labels = policy != nullptr ? subset_labels(*policy, ref.subset) : nullptr;
    if (labels == nullptr) return c;  // nothing selects instances for it
  }
  // Each instance with the address it is called at for this cluster.
  std::vector<std::pair<std::string, const Instance*>> live;
  bool sidecars = false;
  std::string protocol;
  for (const Instance& i : mesh.instances) {
    if (i.service != ref.service.name || i.namespace_ != ref.service.namespace_) continue;
    if (labels != nullptr && !selects(*labels, i)) continue;
    const bool sidecar = i.registered_by != Registry::kDefaultRegisteredBy;
    if (ref.port == 0) {
      live.emplace_back(i.address, &i);
      sidecars |= sidecar;
      continue;
    }
    auto served = std::find_if(i.ports.begin(), i.ports.end(),
                               [&](const ServicePort& p) { return p.port == ref.port; });
    if (served == i.ports.end()) continue;
    live.emplace_back(sidecar ? i.address : host_of(i.address) + ":" + std::to_string(served->target_port),
                      &i);
    sidecars |= sidecar;
    if (protocol.empty()) protocol = served->protocol;
  }
  std::sort(live.begin(), live.end());
  // Instances without a sidecar are called in their port's protocol; those
  // with one get the mesh's, and their sidecar calls the application in it.
  if (!sidecars && !protocol.empty()) c.set_protocol(cluster_protocol(protocol));
  // Instances a sidecar registered are reached over mTLS, verifying that the
  // server is that service's sidecar; others (registered through the API,
  // with no sidecar) in plain text.
  bool mesh_tls = service_tls_mode(mesh, ref.service) != MeshTlsMode::kDisable && !mesh.trust_domain.empty();
  for (const auto& [address, i] : live) {
    v1::Endpoint* e = c.add_endpoints();
    e->set_address(address);
    if (mesh_tls && i->registered_by != Registry::kDefaultRegisteredBy)
      e->set_identity(service_identity(mesh, i->service, i->namespace_));
    e->set_weight(i->weight);
    e->set_zone(i->zone);
    for (const auto& [k, v] : i->labels) (*e->mutable_labels())[k] = v;
  }
  return c;
}

}  // namespace trellis::control
