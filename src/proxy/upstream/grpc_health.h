// The two messages of the gRPC health checking protocol
// (grpc.health.v1.Health/Check), framed as gRPC sends them: the request
// built, the response read. Only field 1 of each matters, so a few bytes of
// protobuf are written and read here rather than generated.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace trellis::proxy {

// HealthCheckResponse.ServingStatus.
enum class ServingStatus : int { kUnknown = 0, kServing = 1, kNotServing = 2, kServiceUnknown = 3 };

// A length-prefixed, uncompressed HealthCheckRequest{service}.
std::string grpc_health_request(std::string_view service);

// The status of a length-prefixed HealthCheckResponse (a status left out is
// UNKNOWN); nullopt, and `why`, when the bytes are not one.
std::optional<int> parse_grpc_health_response(std::string_view framed, std::string& why);

// "SERVING", "NOT_SERVING"...: for logs.
std::string serving_status_name(int status);

}  // namespace trellis::proxy
