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
// policy does not define has none. Endpoints are sorted by address, so the
// same mesh gives the same cluster.
v1::Cluster build_cluster(const MeshView& mesh, const ClusterRef& ref);

}  // namespace trellis::control
