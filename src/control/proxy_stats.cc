#include "control/proxy_stats.h"

#include <future>
#include <optional>
#include <string>
#include <string_view>

#include "common/prometheus_text.h"
#include "common/quiet_thread.h"
#include "common/result.h"
#include "control/metrics.h"
#include "http/http1/blocking_client.h"
#include "net/address.h"

namespace trellis::control {
namespace {

constexpr size_t kMaxBody = 16 << 20;

// GET http://<target><path>, a JSON answer.
Result<nlohmann::json> fetch_json(const std::string& target, std::string_view path,
                                  std::chrono::milliseconds timeout) {
  net::SocketAddress address;
  std::string error;
  if (!net::parse_socket_address(target, address, error)) return Error{error};
  auto answer = http::http1::blocking_exchange(
      address, "GET " + std::string(path) + " HTTP/1.1\r\nHost: " + target + "\r\nConnection: close\r\n\r\n",
      timeout, kMaxBody);
  if (!answer) return Error{"its admin endpoint: " + answer.error().message};
  if (answer->status != 200) return Error{target + " answered " + std::to_string(answer->status)};
  nlohmann::json body = nlohmann::json::parse(answer->body, nullptr, false);
  if (body.is_discarded()) return Error{target + " answered something else than JSON"};
  return body;
}

Result<nlohmann::json> fetch_from(const ProxyStatus& proxy, std::string_view path,
                                  std::chrono::milliseconds timeout) {
  std::optional<std::string> target = scrape_target(proxy.admin_address, proxy.peer);
  if (!target) return Error{"it gave no admin address of its own to ask"};
  return fetch_json(*target, path, timeout);
}

}  // namespace

ProxyQueries::ProxyQueries() : thread_(quiet_thread([this] { run(); })) {}

ProxyQueries::~ProxyQueries() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

bool ProxyQueries::submit(std::function<void()> task) {
  {
    std::lock_guard lock(mu_);
    if (waiting_.size() >= kMaxWaiting) return false;
    waiting_.push_back(std::move(task));
  }
  wake_.notify_one();
  return true;
}

void ProxyQueries::run() {
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock lock(mu_);
      wake_.wait(lock, [this] { return stopping_ || !waiting_.empty(); });
      if (waiting_.empty()) return;
      task = std::move(waiting_.front());
      waiting_.pop_front();
    }
    task();
  }
}

nlohmann::json collect_golden(const std::vector<ProxyStatus>& proxies, std::chrono::milliseconds timeout) {
  std::vector<std::future<Result<nlohmann::json>>> answers;
  for (const ProxyStatus& p : proxies) {
    answers.push_back(std::async(std::launch::async, [&p, timeout]() -> Result<nlohmann::json> {
      Result<nlohmann::json> golden = fetch_from(p, "/stats/golden", timeout);
      if (golden && !golden->contains("series")) return Error{"its admin endpoint answered no metrics"};
      return golden;
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

Result<nlohmann::json> fetch_config_dump(const ProxyStatus& proxy, std::chrono::milliseconds timeout) {
  return fetch_from(proxy, "/config_dump", timeout);
}

}  // namespace trellis::control
