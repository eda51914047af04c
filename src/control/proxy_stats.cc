#include "control/proxy_stats.h"

#include <future>
#include <string>

#include "common/prometheus_text.h"
#include "common/result.h"
#include "control/metrics.h"
#include "http/http1/blocking_client.h"
#include "net/address.h"

namespace trellis::control {
namespace {

constexpr size_t kMaxBody = 16 << 20;

// GET http://<target>/stats/golden.
Result<nlohmann::json> fetch_golden(const std::string& target, std::chrono::milliseconds timeout) {
  net::SocketAddress address;
  std::string error;
  if (!net::parse_socket_address(target, address, error)) return Error{error};
  auto answer = http::http1::blocking_exchange(
      address, "GET /stats/golden HTTP/1.1\r\nHost: " + target + "\r\nConnection: close\r\n\r\n", timeout,
      kMaxBody);
  if (!answer) return Error{"its admin endpoint: " + answer.error().message};
  if (answer->status != 200) return Error{target + " answered " + std::to_string(answer->status)};
  nlohmann::json body = nlohmann::json::parse(answer->body, nullptr, false);
  if (body.is_discarded() || !body.contains("series"))
    return Error{target + " answered something else than metrics"};
  return body;
}

}  // namespace

nlohmann::json collect_golden(const std::vector<ProxyStatus>& proxies, std::chrono::milliseconds timeout) {
  std::vector<std::future<Result<nlohmann::json>>> answers;
  for (const ProxyStatus& p : proxies) {
    std::optional<std::string> target = scrape_target(p.admin_address, p.peer);
    answers.push_back(std::async(std::launch::async, [target, timeout]() -> Result<nlohmann::json> {
      if (!target) return Error{"it gave no admin address of its own to ask"};
      return fetch_golden(*target, timeout);
    }));
  }
  nlohmann::json out = nlohmann::json::array();
  for (size_t i = 0; i < proxies.size(); ++i) {
    Result<nlohmann::json> golden = answers[i].get();
    nlohmann::json p{{"node_id", proxies[i].node_id},
                     {"service", proxies[i].service},
                     {"namespace", proxies[i].namespace_}};
    if (golden) {
      p["series"] = std::move((*golden)["series"]);
    } else {
      p["error"] = golden.error().message;
    }
    out.push_back(std::move(p));
  }
  nlohmann::json bounds = nlohmann::json::array();
  for (double b : kLatencyBoundsSeconds) bounds.push_back(b);
  return {{"bucket_bounds_seconds", std::move(bounds)}, {"proxies", std::move(out)}};
}

}  // namespace trellis::control
