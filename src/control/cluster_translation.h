// One cluster of a proxy's configuration: the live instances of a Service,
// or of one of its subsets, as endpoints, and how to call them as the
// Service's DestinationPolicy says (load balancing, retries, connection
// timeouts), with the documented defaults filled in.
#pragma once

#include "control/mesh_view.h"
#include "trellis/v1/discovery.pb.h"

namespace trellis::control {

// A cluster named ref.cluster_name(). A subset's endpoints are the
// Service's instances whose labels include all of the subset's; a subset the
// policy does not define has none. On a port (ref.port), only the instances
// that serve it: through their sidecar (their address), or, registered
// through the API, at their address's host and the port's target_port, in
// the port's protocol. Endpoints are sorted by address, so the same mesh
// gives the same cluster.
v1::Cluster build_cluster(const MeshView& mesh, const ClusterRef& ref);

// The upstream protocol of a Service port's protocol: HTTP/1.1 for "http",
// HTTP/2 for "h2c" and "grpc", the caller's for none.
v1::Cluster::Protocol cluster_protocol(const std::string& port_protocol);

// "10.0.0.5" of "10.0.0.5:8080", "[::1]" of "[::1]:8080".
std::string host_of(const std::string& address);

}  // namespace trellis::control
