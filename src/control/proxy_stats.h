// What the connected proxies count, asked of each: its golden metrics
// (GET /stats/golden on its admin endpoint), for `trellis stat`. Every proxy
// is asked at once, each with its own deadline: one that does not answer
// is reported, not waited for.
#pragma once

#include <chrono>
#include <vector>

#include <nlohmann/json.hpp>

#include "control/push_server.h"

namespace trellis::control {

// {"bucket_bounds_seconds": [...], "proxies": [{"node_id", "service",
// "namespace", "series": [...]} or {..., "error": "..."}]}.
nlohmann::json collect_golden(const std::vector<ProxyStatus>& proxies, std::chrono::milliseconds timeout);

}  // namespace trellis::control
