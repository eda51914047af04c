// The Gateway API's status of an HTTPRoute or GRPCRoute, worked out from the
// mesh as it is when asked: per parent, the conditions Accepted and
// ResolvedRefs, with the spec's reasons. `trellis get httproute X -o yaml`
// shows it. Nothing is stored: the status is always the current one, so it
// carries no transition times.
#pragma once

#include "control/mesh_view.h"

namespace trellis::control {

// The controller name in each parent's status.
inline constexpr const char* kControllerName = "trellis.dev/mesh";

// {"parents": [{"parentRef": ..., "controllerName": ..., "conditions": [...]}]}
Json route_status(const MeshView& mesh, const Resource& route);

// Why a parentRef's port or sectionName names none of the ports `service`
// declares; empty when it names one, sets neither, or the Service declares
// no ports (it then takes all of the Service's traffic).
std::string parent_port_problem(const MeshView& mesh, const Json& ref, const ServiceRef& service);

}  // namespace trellis::control
