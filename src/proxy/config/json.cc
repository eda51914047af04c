// The config in force as JSON, for /config_dump: the YAML file's field names
// and shapes, so that a dump of a bootstrap file loads back as the same config.
// Optional sections that are off are left out.
#include <cmath>

#include <nlohmann/json.hpp>

#include "proxy/config/checks.h"
#include "proxy/config/config.h"

namespace trellis::proxy {
namespace {

using Json = nlohmann::ordered_json;

// A share of requests as the YAML writes it: a percentage, an integer when it
// is one. Shares with more than four decimals of a percent (only the control
// plane sends those) keep their fraction instead.
void put_share(Json& out, uint64_t numerator, uint64_t denominator) {
  if (denominator != 0 && (numerator * kPerMillion) % denominator == 0) {
    uint64_t per_million = numerator * kPerMillion / denominator;
    if (per_million % 10000 == 0) {
      out["percent"] = per_million / 10000;
    } else {
      out["percent"] = static_cast<double>(per_million) / 10000.0;
    }
    return;
  }
  out["numerator"] = numerator;
  out["denominator"] = denominator;
}

Json per_million_json(uint32_t per_million) {
  Json out = Json::object();
  put_share(out, per_million, kPerMillion);
  return out["percent"];
}

Json value_matches_json(const std::vector<policy::ValueMatch>& matches) {
  Json out = Json::array();
  for (const policy::ValueMatch& m : matches)
    out.push_back(Json{{"name", m.name}, {m.regex ? "regex" : "value", m.value}});
  return out;
}

Json match_to_json(const policy::RouteMatch& match) {
  Json out;
  switch (match.path_kind) {
    case policy::PathMatchKind::kPrefix:
      out["prefix"] = match.path;
      break;
    case policy::PathMatchKind::kExact:
      out["exact"] = match.path;
      break;
    case policy::PathMatchKind::kRegex:
      out["regex"] = match.path;
      break;
  }
  if (!match.method.empty()) out["method"] = match.method;
  if (!match.headers.empty()) out["headers"] = value_matches_json(match.headers);
  if (!match.query_params.empty()) out["query_params"] = value_matches_json(match.query_params);
  if (!match.hosts.empty()) out["hosts"] = match.hosts;
  return out;
}

// The match a limit has when none is written: every request.
bool matches_everything(const policy::RouteMatch& match) {
  return match.path_kind == policy::PathMatchKind::kPrefix && match.path == "/" && match.method.empty() &&
         match.headers.empty() && match.query_params.empty() && match.hosts.empty();
}

// An integer when it is one, as it would be written.
Json rate_json(double rate) {
  if (rate >= 1 && rate <= kMaxLeakyRate && std::floor(rate) == rate) return static_cast<uint64_t>(rate);
  return rate;
}

Json rate_limit_json(const RateLimitConfig& limit) {
  Json out;
  if (!limit.name.empty()) out["name"] = limit.name;
  if (!matches_everything(limit.match)) out["match"] = match_to_json(limit.match);
  if (limit.key == RateLimitConfig::Key::kHeader) {
    out["key"] = Json{{"header", limit.key_header}};
  } else {
    out["key"] = kRateLimitKeyNames[static_cast<size_t>(limit.key)];
  }
  if (limit.leaky) {
    const policy::LeakyBucketConfig& b = limit.leaky_bucket;
    Json bucket{{"rate_per_second", rate_json(b.rate_per_second)}, {"queue_size", b.queue}};
    if (b.queue != 0) {
      bucket["max_delay"] = format_duration(std::chrono::duration_cast<Millis>(b.max_delay));
    }
    out["leaky_bucket"] = std::move(bucket);
  } else {
    const policy::TokenBucketConfig& b = limit.token_bucket;
    // The burst as the file writes it: above the rate, not the whole capacity.
    out["token_bucket"] = Json{{"requests_per_unit", b.requests_per_unit},
                               {"unit", rate_unit_name(b.unit)},
                               {"burst", token_bucket_extra(b)}};
  }
  return out;
}

Json header_modifier_json(const HeaderModifier& modifier) {
  Json out = Json::object();
  auto pairs = [](const std::vector<std::pair<std::string, std::string>>& list) {
    Json map = Json::object();
    for (const auto& [name, value] : list) map[name] = value;
    return map;
  };
  if (!modifier.set.empty()) out["set"] = pairs(modifier.set);
  if (!modifier.add.empty()) out["add"] = pairs(modifier.add);
  if (!modifier.remove.empty()) out["remove"] = modifier.remove;
  return out;
}

Json path_modifier_json(const PathModifier& path) {
  return Json{{path.kind == PathModifier::Kind::kFull ? "full" : "prefix", path.value}};
}

// A rewrite, mirrors and a fault, of a route or of one backend, as the file writes them.
void put_route_actions(const RewriteConfig& rewrite, const std::vector<MirrorConfig>& mirrors,
                       const FaultConfig& fault, Json& out) {
  if (!rewrite.empty()) {
    Json r = Json::object();
    if (!rewrite.hostname.empty()) r["hostname"] = rewrite.hostname;
    if (rewrite.path.kind != PathModifier::Kind::kNone) r["path"] = path_modifier_json(rewrite.path);
    out["rewrite"] = std::move(r);
  }
  if (!mirrors.empty()) {
    Json list = Json::array();
    for (const MirrorConfig& m : mirrors) {
      Json mirror{{"cluster", m.cluster}};
      put_share(mirror, m.numerator, m.denominator);
      if (!m.request_headers.empty()) mirror["request_headers"] = header_modifier_json(m.request_headers);
      list.push_back(std::move(mirror));
    }
    out["mirror"] = std::move(list);
  }
  if (fault.abort_status != 0 || fault.delay.count() != 0) {
    Json f = Json::object();
    if (fault.abort_status != 0) {
      f["abort"] =
          Json{{"status", fault.abort_status}, {"percent", per_million_json(fault.abort_per_million)}};
    }
    if (fault.delay.count() != 0) {
      f["delay"] = Json{{"duration", format_duration(fault.delay)},
                        {"percent", per_million_json(fault.delay_per_million)}};
    }
    out["fault"] = std::move(f);
  }
}

Json redirect_json(const RedirectConfig& redirect) {
  Json out = Json::object();
  if (!redirect.scheme.empty()) out["scheme"] = redirect.scheme;
  if (!redirect.hostname.empty()) out["hostname"] = redirect.hostname;
  if (redirect.port != 0) out["port"] = redirect.port;
  if (redirect.path.kind != PathModifier::Kind::kNone) out["path"] = path_modifier_json(redirect.path);
  out["status"] = redirect.status;
  return out;
}

// The YAML's shorthand, when it says everything: one whole backend with nothing of its own.
bool is_shorthand(const std::vector<BackendConfig>& backends) {
  return backends.size() == 1 && backends[0].weight == 1 && !backends[0].cluster.empty() &&
         backends[0].request_headers.empty() && backends[0].response_headers.empty() &&
         backends[0].only_headers();
}

Json backends_json(const std::vector<BackendConfig>& backends) {
  Json out = Json::array();
  for (const BackendConfig& b : backends) {
    Json backend{{"cluster", b.cluster}, {"weight", b.weight}};
    if (!b.request_headers.empty()) backend["request_headers"] = header_modifier_json(b.request_headers);
    if (!b.response_headers.empty()) backend["response_headers"] = header_modifier_json(b.response_headers);
    if (b.redirect.enabled) backend["redirect"] = redirect_json(b.redirect);
    put_route_actions(b.rewrite, b.mirrors, b.fault, backend);
    out.push_back(std::move(backend));
  }
  return out;
}

Json route_to_json(const RouteConfig& route) {
  Json out;
  if (!route.name.empty()) out["name"] = route.name;
  out["match"] = match_to_json(route.match);
  if (!route.rate_limits.empty()) {
    Json limits = Json::array();
    for (const RateLimitConfig& limit : route.rate_limits) limits.push_back(rate_limit_json(limit));
    out["rate_limits"] = std::move(limits);
  }
  if (route.redirect.enabled) out["redirect"] = redirect_json(route.redirect);
  if (is_shorthand(route.backends)) {
    out["cluster"] = route.backends[0].cluster;
  } else if (!route.redirect.enabled || !route.backends.empty()) {
    out["backends"] = backends_json(route.backends);
  }
  if (!route.request_headers.empty()) out["request_headers"] = header_modifier_json(route.request_headers);
  if (!route.response_headers.empty()) out["response_headers"] = header_modifier_json(route.response_headers);
  put_route_actions(route.rewrite, route.mirrors, route.fault, out);
  if (route.cors.enabled) {
    const CorsConfig& c = route.cors;
    Json cors{{"allow_origins", c.allow_origins}, {"max_age", c.max_age_seconds}};
    if (c.allow_credentials) cors["allow_credentials"] = true;
    if (!c.allow_methods.empty()) cors["allow_methods"] = c.allow_methods;
    if (!c.allow_headers.empty()) cors["allow_headers"] = c.allow_headers;
    if (!c.expose_headers.empty()) cors["expose_headers"] = c.expose_headers;
    out["cors"] = std::move(cors);
  }
  out["timeout"] = format_duration(route.timeout);
  if (route.per_try_timeout.count() != 0) out["per_try_timeout"] = format_duration(route.per_try_timeout);
  if (!route.direct_error.empty()) out["direct_error"] = route.direct_error;
  return out;
}

const char* action_name(policy::AuthzAction action) {
  return action == policy::AuthzAction::kDeny ? "DENY" : "ALLOW";
}

// As the bootstrap file writes it: lists left out when empty.
Json authorization_json(const policy::AuthorizationConfig& authz) {
  Json policies = Json::array();
  for (const policy::AuthzPolicyConfig& p : authz.policies) {
    Json rules = Json::array();
    for (const policy::AuthzRule& rule : p.rules) {
      Json r = Json::object();
      auto put = [](Json& into, const char* key, const auto& list) {
        if (!list.empty()) into[key] = list;
      };
      if (!rule.from.empty()) {
        Json from = Json::array();
        for (const policy::AuthzSource& s : rule.from) {
          Json entry = Json::object();
          put(entry, "identities", s.identities);
          put(entry, "namespaces", s.namespaces);
          put(entry, "ip_blocks", s.ip_blocks);
          from.push_back(std::move(entry));
        }
        r["from"] = std::move(from);
      }
      if (!rule.to.empty()) {
        Json to = Json::array();
        for (const policy::AuthzOperation& o : rule.to) {
          Json entry = Json::object();
          put(entry, "methods", o.methods);
          put(entry, "paths", o.paths);
          put(entry, "ports", o.ports);
          to.push_back(std::move(entry));
        }
        r["to"] = std::move(to);
      }
      rules.push_back(std::move(r));
    }
    policies.push_back(
        Json{{"name", p.name}, {"action", action_name(p.action)}, {"rules", std::move(rules)}});
  }
  return Json{{"default_action", action_name(authz.default_action)}, {"policies", std::move(policies)}};
}

Json listener_to_json(const ListenerConfig& listener) {
  Json out;
  out["name"] = listener.name;
  out["address"] = listener.address.text;
  bool http = listener.protocol != ListenerProtocol::kTcp;
  out["protocol"] = listener.protocol == ListenerProtocol::kHttp  ? "http"
                    : listener.protocol == ListenerProtocol::kTcp ? "tcp"
                                                                  : "auto";
  out["direction"] = listener.direction == Direction::kInbound ? "inbound" : "outbound";
  out["idle_timeout"] = format_duration(listener.idle_timeout);
  if (listener.max_connections > 0) out["max_connections"] = listener.max_connections;
  if (!listener.authorization.empty()) out["authorization"] = authorization_json(listener.authorization);
  if (listener.protocol == ListenerProtocol::kAuto)
    out["detect_timeout"] = format_duration(listener.detect_timeout);
  if (http) {
    out["request_head_timeout"] = format_duration(listener.request_head_timeout);
    out["request_body_timeout"] = format_duration(listener.request_body_timeout);
    out["request_body_min_rate"] = listener.request_body_min_rate;
    out["client_identity_header"] = listener.client_identity_header;
  }
  if (listener.tls != ListenerTls::kOff) {
    out["tls"] = Json{{"mode", listener.tls == ListenerTls::kStrict       ? "STRICT"
                               : listener.tls == ListenerTls::kPermissive ? "PERMISSIVE"
                                                                          : "SIMPLE"}};
    Json certificates = Json::array();
    // File names only: what is in them stays there.
    for (const ServerCertificateConfig& c : listener.certificates)
      certificates.push_back(Json{{"server_names", c.server_names},
                                  {"certificate_chain", c.certificate_chain},
                                  {"private_key", c.private_key}});
    if (!certificates.empty()) out["tls"]["certificates"] = std::move(certificates);
  }
  if (http) {
    Json vhosts = Json::array();
    for (const VirtualHostConfig& vhost : listener.virtual_hosts) {
      Json routes = Json::array();
      for (const RouteConfig& route : vhost.routes) routes.push_back(route_to_json(route));
      vhosts.push_back(Json{{"name", vhost.name}, {"domains", vhost.domains}, {"routes", std::move(routes)}});
    }
    out["virtual_hosts"] = std::move(vhosts);
  }
  if (listener.protocol != ListenerProtocol::kHttp) out["cluster"] = listener.cluster;
  return out;
}

Json hash_json(const HashPolicy& hash) {
  switch (hash.kind) {
    case HashPolicy::Kind::kHeader:
      return Json{{"header", hash.name}};
    case HashPolicy::Kind::kCookie: {
      Json cookie{{"name", hash.name}};
      if (hash.cookie_ttl_set) cookie["ttl"] = format_duration(hash.cookie_ttl);
      return Json{{"cookie", std::move(cookie)}};
    }
    case HashPolicy::Kind::kSourceIp:
      return Json{{"source_ip", true}};
    case HashPolicy::Kind::kNone:
      break;
  }
  return Json();
}

bool is_default(const policy::RetryPolicy& r) {
  const policy::RetryPolicy d;
  return r.attempts == d.attempts && r.per_try_timeout == d.per_try_timeout && r.retry_on == d.retry_on &&
         r.status_codes == d.status_codes && r.backoff_base == d.backoff_base &&
         r.backoff_max == d.backoff_max && r.budget_percent == d.budget_percent &&
         r.budget_min_per_second == d.budget_min_per_second && r.non_idempotent == d.non_idempotent &&
         r.buffer_limit == d.buffer_limit;
}

Json retry_json(const policy::RetryPolicy& retry) {
  Json out;
  out["attempts"] = retry.attempts;
  out["per_try_timeout"] = format_duration(retry.per_try_timeout);
  out["retry_on"] = retry_on_names(retry.retry_on);
  if (!retry.status_codes.empty()) out["status_codes"] = retry.status_codes;
  out["backoff"] =
      Json{{"base", format_duration(retry.backoff_base)}, {"max", format_duration(retry.backoff_max)}};
  out["budget"] = Json{{"percent", retry.budget_percent}, {"min_per_second", retry.budget_min_per_second}};
  out["non_idempotent"] = retry.non_idempotent;
  out["buffer_limit"] = retry.buffer_limit;
  return out;
}

Json health_check_json(const HealthCheckConfig& hc) {
  Json out;
  if (hc.kind == HealthCheckConfig::Kind::kHttp) {
    Json http{{"path", hc.path}};
    if (!hc.host.empty()) http["host"] = hc.host;
    if (!hc.expected_statuses.empty()) {
      Json statuses = Json::array();
      for (const auto& [lo, hi] : hc.expected_statuses) {
        if (lo == hi)
          statuses.push_back(lo);
        else
          statuses.push_back(std::to_string(lo) + "-" + std::to_string(hi));
      }
      http["expected_statuses"] = std::move(statuses);
    }
    out["http"] = std::move(http);
  } else if (hc.kind == HealthCheckConfig::Kind::kGrpc) {
    Json grpc{{"service", hc.grpc_service}};
    if (!hc.host.empty()) grpc["authority"] = hc.host;
    out["grpc"] = std::move(grpc);
  } else {
    out["tcp"] = Json::object();
  }
  out["interval"] = format_duration(hc.interval);
  out["timeout"] = format_duration(hc.timeout);
  out["healthy_threshold"] = hc.healthy_threshold;
  out["unhealthy_threshold"] = hc.unhealthy_threshold;
  out["jitter_percent"] = hc.jitter_percent;
  return out;
}

Json cluster_to_json(const ClusterConfig& cluster) {
  const LoadBalancerConfig& lb = cluster.lb;
  Json out;
  out["name"] = cluster.name;
  if (!cluster.service.empty()) out["service"] = cluster.service;
  if (!cluster.service_namespace.empty()) out["namespace"] = cluster.service_namespace;
  out["protocol"] = cluster.protocol == UpstreamProtocol::kHttp2        ? "http2"
                    : cluster.protocol == UpstreamProtocol::kDownstream ? "downstream"
                                                                        : "http1";
  out["lb_policy"] = lb_algorithm_name(lb.algorithm);
  if (cluster.tls.enabled) {
    out["tls"] = Json{{"server_name", cluster.tls.server_name}};
    if (!cluster.tls.trust_bundle.empty()) out["tls"]["trust_bundle"] = cluster.tls.trust_bundle;
    if (!cluster.tls.trust_bundle_pem.empty()) out["tls"]["trust_bundle_pem"] = cluster.tls.trust_bundle_pem;
  }
  if (lb.hash.kind != HashPolicy::Kind::kNone) out["hash"] = hash_json(lb.hash);
  if (lb.algorithm == policy::LbAlgorithm::kRingHash) out["ring_points"] = lb.ring_points;
  if (lb.locality_enabled) out["locality"] = Json{{"min_healthy_percent", lb.locality_min_healthy_percent}};
  if (lb.slow_start_window.count() != 0) out["slow_start"] = format_duration(lb.slow_start_window);
  out["connect_timeout"] = format_duration(cluster.connect_timeout);
  out["idle_timeout"] = format_duration(cluster.idle_timeout);
  out["request_idle_timeout"] = format_duration(cluster.request_idle_timeout);
  out["max_idle_per_endpoint"] = cluster.max_idle_per_endpoint;
  if (!is_default(cluster.retry)) out["retry"] = retry_json(cluster.retry);
  if (cluster.health_check.enabled()) out["health_check"] = health_check_json(cluster.health_check);
  if (cluster.outlier_enabled) {
    const policy::OutlierConfig& o = cluster.outlier;
    Json od{{"consecutive_5xx", o.consecutive_5xx},
            {"consecutive_gateway_errors", o.consecutive_gateway_errors},
            {"interval", format_duration(std::chrono::duration_cast<Millis>(o.interval))},
            {"base_ejection_time", format_duration(std::chrono::duration_cast<Millis>(o.base_ejection_time))},
            {"max_ejection_time", format_duration(std::chrono::duration_cast<Millis>(o.max_ejection_time))},
            {"max_ejection_percent", o.max_ejection_percent},
            {"always_eject_one", o.always_eject_one_host},
            {"panic_threshold_percent", o.panic_threshold_percent}};
    if (o.success_rate.enabled)
      od["success_rate"] = Json{{"minimum_hosts", o.success_rate.minimum_hosts},
                                {"request_volume", o.success_rate.request_volume},
                                {"stdev_factor", o.success_rate.stdev_factor}};
    out["outlier_detection"] = std::move(od);
  }
  if (cluster.adaptive_concurrency_enabled) {
    const policy::ConcurrencyConfig& a = cluster.adaptive_concurrency;
    out["adaptive_concurrency"] =
        Json{{"initial_limit", a.initial_limit},
             {"min_limit", a.min_limit},
             {"max_limit", a.max_limit},
             {"sample_window", format_duration(std::chrono::duration_cast<Millis>(a.sample_window))},
             {"baseline_interval", format_duration(std::chrono::duration_cast<Millis>(a.baseline_interval))}};
  }
  const policy::CircuitBreakerLimits& cb = cluster.circuit_breakers;
  const policy::CircuitBreakerLimits defaults;
  if (cb.max_connections != defaults.max_connections ||
      cb.max_pending_requests != defaults.max_pending_requests || cb.max_requests != defaults.max_requests ||
      cb.max_retries != defaults.max_retries)
    out["circuit_breakers"] = Json{{"max_connections", cb.max_connections},
                                   {"max_pending_requests", cb.max_pending_requests},
                                   {"max_requests", cb.max_requests},
                                   {"max_retries", cb.max_retries}};
  Json endpoints = Json::array();
  for (const EndpointConfig& endpoint : cluster.endpoints) {
    Json e{{"address", endpoint.address.text}, {"weight", endpoint.weight}};
    if (!endpoint.zone.empty()) e["zone"] = endpoint.zone;
    if (!endpoint.identity.empty()) e["identity"] = endpoint.identity;
    endpoints.push_back(std::move(e));
  }
  out["endpoints"] = std::move(endpoints);
  return out;
}

Json control_plane_json(const ControlPlaneConfig& cp) {
  Json c;
  c["address"] = cp.address.text;
  Json node{{"id", cp.node_id}, {"service", cp.service}, {"namespace", cp.namespace_}};
  if (!cp.zone.empty()) node["zone"] = cp.zone;
  c["node"] = std::move(node);
  if (cp.has_instance) {
    Json inst{{"address", cp.instance_address.text},
              {"app_address", cp.app_address.text},
              {"weight", cp.weight},
              {"ttl", format_duration(cp.ttl)}};
    if (!cp.labels.empty()) inst["labels"] = cp.labels;
    for (const ServicePort& p : cp.ports) {
      Json port{{"name", p.name}, {"port", p.port}, {"target_port", p.target_port}};
      if (!p.protocol.empty()) port["protocol"] = p.protocol;
      inst["ports"].push_back(std::move(port));
    }
    c["instance"] = std::move(inst);
  }
  if (cp.has_outbound) c["outbound_address"] = cp.outbound_address.text;
  if (!cp.upstream_services.empty()) c["upstream_services"] = cp.upstream_services;
  // The file's name only: the token is a secret.
  c["trust_bundle"] = cp.trust_bundle;
  c["join_token_file"] = cp.join_token_file;
  c["trust_domain"] = cp.trust_domain;
  c["identity"] = cp.identity();
  return c;
}

}  // namespace

std::string config_to_json(const ProxyConfig& config) {
  Json out;
  if (!config.zone.empty()) out["zone"] = config.zone;
  out["admin"] = Json{{"address", config.admin.address.text}};
  // Logging off is spelled by leaving the section out, as in the YAML.
  if (!config.access_log.path.empty()) {
    const LogFormat& format = config.access_log.format;
    Json log{{"path", config.access_log.path}, {"format", format.text ? "text" : "json"}};
    if (format.text) log["template"] = format_log_template(format);
    if (!format.fields.empty()) {
      Json fields = Json::array();
      for (LogField f : format.fields) fields.push_back(log_field_name(f));
      log["fields"] = std::move(fields);
    }
    out["access_log"] = std::move(log);
  }
  if (config.tracing.enabled())
    out["tracing"] = Json{{"collector", config.tracing.collector.text},
                          {"sampling", per_million_json(config.tracing.sampling_per_million)}};
  out["drain_timeout"] = format_duration(config.drain_timeout);
  out["max_connections"] = config.max_connections;
  if (config.max_heap_bytes) out["max_heap_bytes"] = *config.max_heap_bytes;
  out["mesh_protocol"] = config.mesh_protocol == MeshProtocol::kHttp2 ? "http2" : "downstream";
  out["listeners"] = Json::array();
  for (const ListenerConfig& listener : config.listeners)
    out["listeners"].push_back(listener_to_json(listener));
  out["clusters"] = Json::array();
  for (const ClusterConfig& cluster : config.clusters) out["clusters"].push_back(cluster_to_json(cluster));
  if (config.control_plane.enabled()) out["control_plane"] = control_plane_json(config.control_plane);
  // Where the credentials are, never what they hold.
  if (config.mtls.enabled()) {
    out["mtls"] = Json{{"certificate_chain", config.mtls.certificate_chain},
                       {"private_key", config.mtls.private_key},
                       {"trust_bundle", config.mtls.trust_bundle}};
  }
  if (!config.policies.empty()) {
    Json policies = Json::array();
    for (const PolicyConfig& p : config.policies) {
      Json spec = Json::parse(p.spec_json, nullptr, /*allow_exceptions=*/false);
      policies.push_back(Json{{"kind", p.kind},
                              {"namespace", p.namespace_},
                              {"name", p.name},
                              {"resourceVersion", std::to_string(p.resource_version)},
                              {"spec", spec.is_discarded() ? Json(p.spec_json) : std::move(spec)}});
    }
    out["policies"] = std::move(policies);
  }
  // Config strings are bytes as written in the file; JSON needs UTF-8, so a
  // stray byte becomes U+FFFD rather than an exception.
  return out.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace trellis::proxy
