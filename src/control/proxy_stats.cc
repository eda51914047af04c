#include "control/proxy_stats.h"

#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <future>
#include <string>

#include "common/prometheus_text.h"
#include "common/result.h"
#include "common/unique_fd.h"
#include "control/metrics.h"
#include "net/address.h"

namespace trellis::control {
namespace {

constexpr size_t kMaxBody = 16 << 20;

// GET http://<target>/stats/golden, blocking, within `timeout` per step.
Result<nlohmann::json> fetch_golden(const std::string& target, std::chrono::milliseconds timeout) {
  net::SocketAddress address;
  std::string error;
  if (!net::parse_socket_address(target, address, error)) return Error{error};
  UniqueFd fd(::socket(address.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return Error{std::strerror(errno)};
  timeval tv{static_cast<time_t>(timeout.count() / 1000),
             static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);  // bounds connect() too
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (::connect(fd.get(), address.sa(), address.length) != 0)
    return Error{"cannot reach its admin endpoint " + target + ": " + std::strerror(errno)};
  std::string request = "GET /stats/golden HTTP/1.1\r\nHost: " + target + "\r\nConnection: close\r\n\r\n";
  if (::send(fd.get(), request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size()))
    return Error{"cannot ask " + target + ": " + std::strerror(errno)};
  std::string answer;
  char buf[16384];
  while (answer.size() < kMaxBody) {
    ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n < 0) return Error{"no answer from " + target + ": " + std::strerror(errno)};
    if (n == 0) break;
    answer.append(buf, static_cast<size_t>(n));
  }
  size_t head_end = answer.find("\r\n\r\n");
  if (head_end == std::string::npos || !answer.starts_with("HTTP/1.1 200"))
    return Error{target + " answered: " + answer.substr(0, answer.find("\r\n"))};
  nlohmann::json body = nlohmann::json::parse(answer.substr(head_end + 4), nullptr, false);
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
