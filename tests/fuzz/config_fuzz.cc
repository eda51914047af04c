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
#include "proxy/config.h"

using trellis::proxy::BackendConfig;
using trellis::proxy::MirrorConfig;
namespace policy = trellis::policy;
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
    for (const auto& endpoint : cluster.endpoints) {
      CHECK(!endpoint.address.text.empty());
      CHECK(endpoint.address.length > 0);
      CHECK(endpoint.weight >= 1 && endpoint.weight <= 1'000'000);
    }
  }
  for (size_t i = 0; i < config.clusters.size(); ++i) {
    for (size_t j = i + 1; j < config.clusters.size(); ++j) CHECK(config.clusters[i].name != config.clusters[j].name);
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
      for (const RouteConfig& route : vhost.routes) {
        if (route.match.path_kind != policy::PathMatchKind::kRegex) {
          CHECK(!route.match.path.empty() && route.match.path.front() == '/');
          for (char c : route.match.path) CHECK(static_cast<unsigned char>(c) > ' ' && c != 0x7F);
        }
        CHECK(route.redirect.enabled || !route.backends.empty() || !route.direct_error.empty());
        for (const BackendConfig& backend : route.backends) CHECK(cluster_ok(backend.cluster, backend.cluster_index));
        for (const MirrorConfig& mirror : route.mirrors) CHECK(cluster_ok(mirror.cluster, mirror.cluster_index));
        CHECK(valid_duration(route.timeout));
      }
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
  for (const ConfigError& e : reloaded.errors) std::fprintf(stderr, "reloading the dump: %s\n", e.to_string().c_str());
  CHECK(reloaded.ok());
  CHECK(to_json(reloaded.config) == json);
  return 0;
}
