#include "control/proxy_stats.h"

#include <algorithm>
#include <charconv>
#include <future>
#include <optional>
#include <string>
#include <string_view>

#include "common/prometheus_text.h"
#include "common/quiet_thread.h"
#include "common/result.h"
#include "common/text.h"
#include "control/metrics.h"
#include "http/http1/blocking_client.h"
#include "net/address.h"

#include <openssl/crypto.h>

namespace trellis::control {
namespace {

constexpr size_t kMaxBody = 16 << 20;

// GET http://<target><path>, a JSON answer; with `bearer`, as that token.
Result<nlohmann::json> fetch_json(const std::string& target, std::string_view path,
                                  std::chrono::milliseconds timeout, std::string_view bearer = "") {
  net::SocketAddress address;
  std::string error;
  if (!net::parse_socket_address(target, address, error)) return Error{error};
  std::string request = "GET " + std::string(path) + " HTTP/1.1\r\nHost: " + target + "\r\n";
  if (!bearer.empty()) request += "Authorization: Bearer " + std::string(bearer) + "\r\n";
  request += "Connection: close\r\n\r\n";
  auto answer = http::http1::blocking_exchange(address, request, timeout, kMaxBody);
  OPENSSL_cleanse(request.data(), request.size());
  if (!answer) return Error{"its admin endpoint: " + answer.error().message};
  if (answer->status != 200) return Error{target + " answered " + std::to_string(answer->status)};
  nlohmann::json body = nlohmann::json::parse(answer->body, nullptr, false);
  if (body.is_discarded()) return Error{target + " answered something else than JSON"};
  return body;
}

Result<nlohmann::json> fetch_from(const ProxyStatus& proxy, std::string_view path,
                                  std::chrono::milliseconds timeout, std::string_view bearer = "") {
  std::optional<std::string> target = scrape_target(proxy.admin_address, proxy.peer);
  if (!target) return Error{"it gave no admin address of its own to ask"};
  return fetch_json(*target, path, timeout, bearer);
}

// ask(proxy) for each of `proxies`, all at once: the answers in their order.
template <class Proxies, class Ask>
std::vector<Result<nlohmann::json>> ask_each(const Proxies& proxies, Ask ask) {
  std::vector<std::future<Result<nlohmann::json>>> answers;
  for (const auto& p : proxies)
    answers.push_back(std::async(std::launch::async, [&p, &ask] { return ask(p); }));
  std::vector<Result<nlohmann::json>> out;
  for (auto& a : answers) out.push_back(a.get());
  return out;
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
  std::vector<Result<nlohmann::json>> answers =
      ask_each(proxies, [timeout](const ProxyStatus& p) -> Result<nlohmann::json> {
        Result<nlohmann::json> golden = fetch_from(p, "/stats/golden", timeout);
        if (golden && !golden->contains("series")) return Error{"its admin endpoint answered no metrics"};
        return golden;
      });
  nlohmann::json out = nlohmann::json::array();
  for (size_t i = 0; i < proxies.size(); ++i) {
    Result<nlohmann::json>& golden = answers[i];
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

nlohmann::json collect_tap(const std::vector<ProxyStatus>& proxies, const TapQuestion& question,
                           std::chrono::milliseconds timeout) {
  std::vector<const ProxyStatus*> asked;
  for (const ProxyStatus& p : proxies)
    if (p.service == question.service && p.namespace_ == question.namespace_) asked.push_back(&p);
  std::string filter = "/tap?direction=inbound&method=" + url_encode(question.method) +
                       "&path=" + url_encode(question.path_prefix);
  std::vector<Result<nlohmann::json>> answers =
      ask_each(asked, [&](const ProxyStatus* p) -> Result<nlohmann::json> {
        if (p->tap_key.empty()) return Error{"it has no tap (an older proxy)"};
        std::string path = filter;
        if (auto c = question.cursor.find(p->node_id); c != question.cursor.end())
          path += "&after=" + std::to_string(c->second);
        Result<nlohmann::json> page = fetch_from(*p, path, timeout, p->tap_key);
        if (page && !page->contains("events")) return Error{"its admin endpoint answered no tap events"};
        return page;
      });
  nlohmann::json events = nlohmann::json::array();
  nlohmann::json errors = nlohmann::json::array();
  std::string cursor;
  uint64_t missed = 0, dropped = 0;
  for (size_t i = 0; i < asked.size(); ++i) {
    Result<nlohmann::json>& page = answers[i];
    const std::string& node = asked[i]->node_id;
    if (!page) {
      errors.push_back(node + ": " + page.error().message);
      continue;
    }
    for (nlohmann::json& e : (*page)["events"]) {
      e["node"] = node;
      events.push_back(std::move(e));
    }
    uint64_t last = (*page).value("last", uint64_t{0});
    cursor += (cursor.empty() ? "" : ",") + node + ":" + std::to_string(last);
    missed += (*page).value("missed", uint64_t{0});
    dropped += (*page).value("dropped", uint64_t{0});
  }
  std::stable_sort(events.begin(), events.end(), [](const nlohmann::json& a, const nlohmann::json& b) {
    return a.value("time_ms", int64_t{0}) < b.value("time_ms", int64_t{0});
  });
  return {{"events", std::move(events)}, {"cursor", cursor},
          {"proxies", asked.size()},     {"missed", missed},
          {"dropped", dropped},          {"errors", std::move(errors)}};
}

std::map<std::string, uint64_t> parse_tap_cursor(std::string_view text) {
  std::map<std::string, uint64_t> out;
  while (!text.empty()) {
    size_t comma = text.find(',');
    std::string_view part = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
    size_t colon = part.rfind(':');
    if (colon == std::string_view::npos) continue;
    uint64_t n = 0;
    auto [end, ec] = std::from_chars(part.data() + colon + 1, part.data() + part.size(), n);
    if (ec == std::errc() && end == part.data() + part.size()) out[std::string(part.substr(0, colon))] = n;
  }
  return out;
}

}  // namespace trellis::control
