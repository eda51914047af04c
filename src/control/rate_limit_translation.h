// The rate limits a proxy enforces on a route: the limits of the
// RateLimitPolicies that target a Service or an HTTPRoute, as v1::RateLimit
// (docs/resources.md, "RateLimitPolicy"). Where they go is the callers'
// part: the snapshot builder puts a Service's on its proxies' inbound route,
// route_translation an HTTPRoute's on every route made from its rules.
#pragma once

#include <string>
#include <string_view>

#include "control/mesh_view.h"
#include "trellis/v1/discovery.pb.h"

namespace trellis::control {

// Appends to `out` the limits of every RateLimitPolicy in `namespace_` whose
// targetRef is `target_kind` ("Service" or "HTTPRoute") named `target_name`:
// all of them apply, ordered by policy name, then as each policy lists them.
void add_rate_limits(const MeshView& mesh, std::string_view target_kind, const std::string& namespace_,
                     const std::string& target_name, google::protobuf::RepeatedPtrField<v1::RateLimit>& out);

}  // namespace trellis::control
