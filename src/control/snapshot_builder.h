// Computes what one proxy should run from the mesh's state: its inbound
// listener (from its own instance, with its service's rate limits), its
// outbound listener with a virtual host per service it calls (routes:
// route_translation.h), and a cluster per service or subset those routes
// reach (cluster_translation.h), with the live endpoints from the registry,
// and the policies that concern it. Pure: no I/O, no clock; the same input
// always gives the same output, so unchanged parts diff as unchanged.
#pragma once

#include <vector>

#include "control/mesh_view.h"
#include "trellis/v1/discovery.pb.h"

namespace trellis::control {

// The clusters a proxy needs: the services its application calls and every
// backend, mirror and subset their routes lead to, each once. Never the
// whole mesh.
std::vector<ClusterRef> clusters_in_scope(const MeshView& mesh, const v1::Hello& hello);

// The whole configuration for the proxy that sent `hello` (full = true;
// version left 0 for the caller to set).
v1::ConfigUpdate build_proxy_config(const MeshView& mesh, const v1::Hello& hello);

}  // namespace trellis::control
