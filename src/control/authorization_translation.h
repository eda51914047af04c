// What an inbound sidecar enforces for its service: the AuthorizationPolicies
// that target the Service, with the mesh's default action (MeshConfig
// authorization.defaultAction), as the listener's v1::Authorization
// (docs/resources.md, "AuthorizationPolicy").
#pragma once

#include "control/mesh_view.h"
#include "trellis/v1/discovery.pb.h"

namespace trellis::control {

// False when there is nothing to check (no policy, default ALLOW): `out` is
// then left empty and the listener lets everyone through.
bool build_authorization(const MeshView& mesh, const ServiceRef& service, v1::Authorization& out);

}  // namespace trellis::control
