// Computes what one proxy should run from the mesh's state: its inbound
// listener (from its own instance), its outbound listener with a virtual host
// per service it calls, and a cluster per service those routes reach, with
// the live endpoints from the registry. Pure: no I/O, no clock; the same input
// always gives the same output, so unchanged parts diff as unchanged.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "control/resource.h"
#include "control/store.h"
#include "trellis/v1/discovery.pb.h"

namespace trellis::control {

// The parts of the mesh state the builder reads.
struct MeshView {
  std::vector<Resource> http_routes;
  std::vector<Resource> destination_policies;
  std::vector<Resource> rate_limit_policies;
  std::vector<Resource> authorization_policies;
  std::vector<Resource> mesh_configs;
  std::vector<Instance> instances;  // live ones only
};

// A service by name and namespace ("reviews", "default").
struct ServiceRef {
  std::string name;
  std::string namespace_;
  bool operator<(const ServiceRef& o) const {
    return name != o.name ? name < o.name : namespace_ < o.namespace_;
  }
  std::string cluster_name() const { return name + "." + namespace_; }
};

// "svc" (in `default_namespace`) or "svc.ns".
ServiceRef parse_service_ref(const std::string& text, const std::string& default_namespace);

// The services a proxy needs: the ones its application calls and every
// backend their routes lead to. Never the whole mesh.
std::vector<ServiceRef> services_in_scope(const MeshView& mesh, const v1::Hello& hello);

// The whole configuration for the proxy that sent `hello` (full = true;
// version left 0 for the caller to set).
v1::ConfigUpdate build_proxy_config(const MeshView& mesh, const v1::Hello& hello);

}  // namespace trellis::control
