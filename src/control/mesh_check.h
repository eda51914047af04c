// What `trellis check` reports: what is wrong with the mesh, each with the
// resource and field. Resources that target nothing, routes to services or
// subsets that do not exist, routes that shadow each other, policies that
// deny everything, proxies not in sync or refusing their configuration,
// certificates near their end.
#pragma once

#include <string>
#include <vector>

#include "control/ca/certificate_authority.h"
#include "control/mesh_view.h"
#include "control/push_server.h"

namespace trellis::control {

struct Finding {
  enum class Severity { kError, kWarning };
  Severity severity = Severity::kWarning;
  std::string resource;  // "HTTPRoute default/reviews", "proxy details-1", "CA"
  std::string field;     // "spec.parentRefs[0]"; empty: the whole thing
  std::string message;
};

// Certificates are "near their end" within `soon` of `now`.
std::vector<Finding> check_mesh(const MeshView& mesh, const std::vector<ProxyStatus>& proxies,
                                const CaStatus& ca, SystemTime now, std::chrono::seconds soon);

}  // namespace trellis::control
