// The routes of one outbound virtual host: each (rule, match) of the
// HTTPRoutes attached to a Service becomes one v1::Route, ordered by the
// Gateway API's precedence (docs/resources.md, "rules") and carrying the
// rate limits on its HTTPRoute. A Service without routes gets one route to
// itself.
#pragma once

#include <set>
#include <string>

#include "control/mesh_view.h"
#include "trellis/v1/discovery.pb.h"

namespace trellis::control {

// Appends to `vh` the routes that calls to `service` (to its `port`, when it
// declares ports) from a client in `client_namespace` take. With no route
// attached, one route sends everything to the Service itself; with routes,
// a request none of them matches gets the proxy's 404. Requests to a
// backend on a declared port carry that port in kServicePortHeader.
void add_service_routes(const MeshView& mesh, const ServiceRef& service, const std::string& client_namespace,
                        v1::VirtualHost& vh, const ServicePort* port = nullptr);

// Adds to `out` every cluster those routes send to or mirror to: their
// backends, their mirrors' backends, subsets included (once each). Backends
// that resolve_backend does not resolve have no cluster and are left out.
void add_route_clusters(const MeshView& mesh, const ServiceRef& service, const std::string& client_namespace,
                        std::set<ClusterRef>& out, const ServicePort* port = nullptr);

}  // namespace trellis::control
