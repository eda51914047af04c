// The spec validator of each kind, called by validate_spec(). Each reads the
// value at "spec" and records every problem in the checker.
#pragma once

#include "control/resources/checker.h"

namespace trellis::control {

void validate_http_route(Checker& checker, const Json& spec);
void validate_grpc_route(Checker& checker, const Json& spec);
void validate_destination_policy(Checker& checker, const Json& spec);
void validate_rate_limit_policy(Checker& checker, const Json& spec);
void validate_authorization_policy(Checker& checker, const Json& spec);
void validate_mesh_config(Checker& checker, const Json& spec);
void validate_fault_injection(Checker& checker, const Json& spec);
void validate_reference_grant(Checker& checker, const Json& spec);

}  // namespace trellis::control
