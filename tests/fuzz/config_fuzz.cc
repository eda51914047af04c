// load_config_text on arbitrary text. A bootstrap file is operator input, but
// it is also what a control plane will push: loading must never throw, crash
// or hang, every problem must come back as a located error, and a config that
// loads must be one the rest of the proxy can use without further checks.
#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "fuzz_check.h"
#include "proxy/config/config.h"

using trellis::proxy::ClusterConfig;
using trellis::proxy::config_to_json;
using trellis::proxy::ConfigError;
using trellis::proxy::ConfigLoad;
using trellis::proxy::ListenerConfig;
using trellis::proxy::ListenerProtocol;
using trellis::proxy::load_config_text;
using trellis::proxy::RouteConfig;
using trellis::proxy::VirtualHostConfig;

namespace {

constexpr const char* kSource = "fuzz.yaml";
constexpr int64_t kMaxDurationMs = int64_t{365} * 24 * 3600 * 1000;

ConfigLoad load(const std::string& text) {
  try {
    return load_config_text(text, kSource);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "load_config_text threw: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "load_config_text threw a non-std exception\n");
  }
  std::abort();
}

std::string to_json(const trellis::proxy::ProxyConfig& config) {
  try {
    return config_to_json(config);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "config_to_json threw: %s\n", e.what());
  }
  std::abort();
}

bool valid_name(const std::string& name) {
  if (name.empty()) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                    c == '.' || c == '-';
    if (!ok) return false;
  }
  return true;
}

bool valid_duration(trellis::proxy::Millis d) { return d.count() >= 0 && d.count() <= kMaxDurationMs; }

bool has_upper(const std::string& s) {
  for (char c : s) {
    if (c >= 'A' && c <= 'Z') return true;
  }
  return false;
}

bool clean_path(const std::string& path) {
  if (path.empty() || path.front() != '/') return false;
  for (char c : path) {
    if (static_cast<unsigned char>(c) <= ' ' || c == 0x7F) return false;
  }
  return true;
}

void check_header_modifier(const trellis::proxy::HeaderModifier& m) {
  for (const auto* list : {&m.set, &m.add}) {
    for (const auto& [name, value] : *list) {
      CHECK(!name.empty() && !has_upper(name));
      CHECK(value.find_first_of(std::string("\r\n\0", 3)) == std::string::npos);
    }
  }
  for (const std::string& name : m.remove) CHECK(!name.empty() && !has_upper(name));
}

template <class ClusterOk>
void check_route(const RouteConfig& route, const ClusterOk& cluster_ok) {
  using trellis::policy::PathMatchKind;
  if (route.match.path_kind != PathMatchKind::kRegex) CHECK(clean_path(route.match.path));
  for (const auto& h : route.match.headers) CHECK(!h.name.empty() && !has_upper(h.name));
  for (const std::string& host : route.match.hosts) CHECK(!host.empty() && !has_upper(host));
  // A bootstrap route forwards to backends or redirects, never both.
  CHECK(route.redirect.enabled == route.backends.empty());
  for (const auto& backend : route.backends) {
    CHECK(cluster_ok(backend.cluster, backend.cluster_index));
    CHECK(backend.weight <= 1'000'000);
    check_header_modifier(backend.request_headers);
    check_header_modifier(backend.response_headers);
  }
  check_header_modifier(route.request_headers);
  check_header_modifier(route.response_headers);
  if (route.redirect.enabled) {
    const auto s = route.redirect.status;
    CHECK(s == 301 || s == 302 || s == 303 || s == 307 || s == 308);
    CHECK(route.rewrite.empty());
  }
  using trellis::proxy::PathModifier;
  for (const PathModifier* p : {&route.redirect.path, &route.rewrite.path}) {
    if (p->kind != PathModifier::Kind::kNone) CHECK(clean_path(p->value));
    if (p->kind == PathModifier::Kind::kPrefix) CHECK(route.match.path_kind == PathMatchKind::kPrefix);
  }
  for (const auto& mirror : route.mirrors) {
    CHECK(cluster_ok(mirror.cluster, mirror.cluster_index));
    CHECK(mirror.denominator > 0 && mirror.numerator <= mirror.denominator);
  }
  CHECK(route.fault.abort_per_million <= 1'000'000 && route.fault.delay_per_million <= 1'000'000);
  CHECK(route.fault.abort_status == 0 ||
        (route.fault.abort_status >= 200 && route.fault.abort_status <= 599));
  CHECK(valid_duration(route.timeout));
  CHECK(valid_duration(route.per_try_timeout));
}

void check_cluster(const ClusterConfig& cluster) {
  using trellis::policy::LbAlgorithm;
  using trellis::proxy::HashPolicy;
  const auto& lb = cluster.lb;
  const bool hashing = lb.algorithm == LbAlgorithm::kRingHash || lb.algorithm == LbAlgorithm::kMaglev;
  CHECK(hashing == (lb.hash.kind != HashPolicy::Kind::kNone));
  CHECK(lb.ring_points >= 1 && lb.ring_points <= 65536);
  CHECK(lb.locality_min_healthy_percent <= 100);
  CHECK(!(hashing && lb.slow_start_window.count() != 0));
  CHECK(cluster.request_idle_timeout.count() > 0 && valid_duration(cluster.request_idle_timeout));
  const auto& retry = cluster.retry;
  CHECK(retry.attempts <= 10);
  CHECK(retry.backoff_base.count() > 0 && retry.backoff_base <= retry.backoff_max);
  CHECK(retry.budget_percent <= 100);
  CHECK(retry.buffer_limit <= 16 * 1024 * 1024);
  CHECK(((retry.retry_on & trellis::policy::kRetryStatusCodes) != 0) == !retry.status_codes.empty());
  for (uint16_t code : retry.status_codes) CHECK(code >= 100 && code <= 599);
}

void check_errors(const ConfigLoad& result) {
  const ConfigError* previous = nullptr;
  for (const ConfigError& e : result.errors) {
    CHECK(!e.message.empty());
    CHECK(e.file == kSource);
    CHECK(e.line >= 0 && e.column >= 0);
    // A location is whole or absent.
    CHECK((e.line == 0) == (e.column == 0));
    // Errors come in file order.
    if (previous != nullptr) {
      CHECK(std::pair(previous->line, previous->column) <= std::pair(e.line, e.column));
    }
    CHECK(!e.to_string().empty());
    previous = &e;
  }
}

// What a loaded config promises the rest of the proxy, which does not check again.
void check_valid_config(const trellis::proxy::ProxyConfig& config) {
  CHECK(config.source == kSource);
  CHECK(!config.admin.address.text.empty());
  CHECK(valid_duration(config.drain_timeout));

  for (const ClusterConfig& cluster : config.clusters) {
    CHECK(valid_name(cluster.name));
    CHECK(cluster.connect_timeout.count() > 0 && valid_duration(cluster.connect_timeout));
    CHECK(cluster.idle_timeout.count() > 0 && valid_duration(cluster.idle_timeout));
    check_cluster(cluster);
    for (const auto& endpoint : cluster.endpoints) {
      CHECK(!endpoint.address.text.empty());
      CHECK(endpoint.address.length > 0);
      CHECK(endpoint.weight >= 1 && endpoint.weight <= 1'000'000);
    }
  }
  for (size_t i = 0; i < config.clusters.size(); ++i) {
    for (size_t j = i + 1; j < config.clusters.size(); ++j)
      CHECK(config.clusters[i].name != config.clusters[j].name);
  }

  auto cluster_ok = [&](const std::string& name, size_t index) {
    return index < config.clusters.size() && config.clusters[index].name == name;
  };
  for (size_t i = 0; i < config.listeners.size(); ++i) {
    const ListenerConfig& listener = config.listeners[i];
    CHECK(valid_name(listener.name));
    CHECK(!listener.address.text.empty());
    CHECK(!(listener.address == config.admin.address));
    CHECK(listener.idle_timeout.count() > 0 && valid_duration(listener.idle_timeout));
    for (size_t j = 0; j < i; ++j) {
      CHECK(config.listeners[j].name != listener.name);
      CHECK(!(config.listeners[j].address == listener.address));
    }
    if (listener.protocol == ListenerProtocol::kTcp) {
      CHECK(listener.virtual_hosts.empty());
      CHECK(cluster_ok(listener.cluster, listener.cluster_index));
      continue;
    }
    CHECK(!listener.virtual_hosts.empty());
    for (const VirtualHostConfig& vhost : listener.virtual_hosts) {
      CHECK(valid_name(vhost.name));
      CHECK(!vhost.domains.empty());
      CHECK(!vhost.routes.empty());
      for (const std::string& domain : vhost.domains) {
        CHECK(!domain.empty());
        for (char c : domain) CHECK(!(c >= 'A' && c <= 'Z'));
      }
      for (const RouteConfig& route : vhost.routes) check_route(route, cluster_ok);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);

  const ConfigLoad result = load(text);
  check_errors(result);

  // Same text, same verdict, same messages.
  const ConfigLoad again = load(text);
  CHECK(result.errors.size() == again.errors.size());
  for (size_t i = 0; i < result.errors.size(); ++i) {
    CHECK(result.errors[i].to_string() == again.errors[i].to_string());
  }

  if (!result.ok()) return 0;
  CHECK(result.errors.empty());
  check_valid_config(result.config);

  // /config_dump must be able to show any config that loads, as JSON.
  const std::string json = to_json(result.config);
  CHECK(to_json(again.config) == json);
  const nlohmann::json parsed = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  CHECK(!parsed.is_discarded());
  CHECK(parsed.is_object());

  // The dump is documented to be a bootstrap file itself, describing the same
  // config: loading it gives no errors and dumps identically.
  const ConfigLoad reloaded = load(json);
  for (const ConfigError& e : reloaded.errors)
    std::fprintf(stderr, "reloading the dump: %s\n", e.to_string().c_str());
  CHECK(reloaded.ok());
  CHECK(to_json(reloaded.config) == json);
  return 0;
}
