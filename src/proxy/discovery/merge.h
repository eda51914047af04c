// Turns what the control plane sends (trellis.v1 listeners and clusters) into
// the proxy's config model, merged with the bootstrap file's static part, and
// checks the result the way a bootstrap file is checked: anything wrong and
// the whole update is refused, with the field path, and the proxy stays on its
// last good configuration.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "proxy/config/config.h"
#include "trellis/v1/discovery.pb.h"

namespace trellis::proxy {

// What the control plane has given this proxy so far, by name.
struct DynamicConfig {
  std::map<std::string, v1::Listener> listeners;
  std::map<std::string, v1::Cluster> clusters;
  std::map<std::string, v1::Policy> policies;  // by key

  // Applies a full or incremental update.
  void apply(const v1::ConfigUpdate& update);
};

// bootstrap + dynamic -> one validated ProxyConfig, every value checked by
// the rules a bootstrap file follows (config_checks.h). Errors name the field
// as the control plane sent it, e.g.
// "listeners[outbound].virtual_hosts[reviews.default].routes[2].headers[0].value"
// or "clusters[reviews.default].retry.retry_on[1]".
ConfigLoad merge_dynamic_config(const ProxyConfig& bootstrap, const DynamicConfig& dynamic);

}  // namespace trellis::proxy
