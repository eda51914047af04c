#include "control/metrics.h"

#include <fmt/format.h>
#include <sys/socket.h>

#include "net/address.h"

namespace trellis::control {

namespace {

constexpr const char* kStoreCallNames[kStoreCalls] = {"put",
                                                      "get",
                                                      "list",
                                                      "remove",
                                                      "upsert_instance",
                                                      "remove_instance",
                                                      "instances",
                                                      "touch_instance",
                                                      "insert_token",
                                                      "get_token",
                                                      "tokens",
                                                      "revoke_token",
                                                      "revision"};

}  // namespace

std::optional<std::string> scrape_target(const std::string& admin, const std::string& peer) {
  net::SocketAddress address;
  std::string error;
  if (admin.empty() || !net::parse_socket_address(admin, address, error)) return std::nullopt;
  // gRPC names the peer "ipv4:1.2.3.4:5678" or "ipv6:[::1]:5678".
  std::string_view p = peer;
  if (p.starts_with("ipv4:") || p.starts_with("ipv6:")) p.remove_prefix(5);
  net::SocketAddress from;
  if (!net::parse_socket_address(p, from, error)) return std::nullopt;
  std::string ip = net::format_address(address.storage, true);
  std::string peer_ip = net::format_address(from.storage, true);
  auto loopback = [](const std::string& a) { return a.starts_with("127.") || a == "::1"; };
  auto port = admin.substr(admin.rfind(':') + 1);
  if (ip == "0.0.0.0" || ip == "::")
    return (from.family() == AF_INET6 ? "[" + peer_ip + "]" : peer_ip) + ":" + port;
  if (ip == peer_ip || (loopback(ip) && loopback(peer_ip))) return address.text;
  return std::nullopt;
}

void ControlMetrics::Latency::record(Duration d) {
  ++buckets[latency_bucket(d)];
  ++count;
  sum_seconds += std::chrono::duration<double>(d).count();
}

void ControlMetrics::store_call(StoreCall call, Duration took) {
  std::lock_guard lock(mu_);
  store_[static_cast<size_t>(call)].record(took);
}

void ControlMetrics::config_sent() {
  std::lock_guard lock(mu_);
  ++configs_sent_;
}

void ControlMetrics::config_answered(bool acked, Duration since_sent) {
  std::lock_guard lock(mu_);
  ++(acked ? acks_ : nacks_);
  push_.record(since_sent);
}

void ControlMetrics::certificate_issued() {
  std::lock_guard lock(mu_);
  ++certificates_;
}

std::string ControlMetrics::render(const Gauges& g) const {
  std::string out;
  auto it = std::back_inserter(out);
  auto gauge = [&](const char* name, const char* help, uint64_t value) {
    append_metric_header(out, name, "gauge", help);
    fmt::format_to(it, "{} {}\n", name, value);
  };
  gauge("trellis_control_proxies_connected", "Proxies connected to this control plane.", g.proxies_connected);
  gauge("trellis_control_proxies_in_sync",
        "Connected proxies that acknowledged the last config sent to them.", g.proxies_in_sync);
  gauge("trellis_control_proxies_refusing",
        "Connected proxies whose answer to the last config sent to them was a NACK (they run an older one).",
        g.proxies_refusing);
  gauge("trellis_control_registry_services", "Services with at least one registered instance.", g.services);
  gauge("trellis_control_registry_instances", "Registered instances.", g.instances);
  gauge("trellis_control_store_revision", "The store's revision: bumped by every change to the mesh.",
        g.revision);
  append_metric_header(out, "trellis_control_resources", "gauge", "Mesh resources stored, by kind.");
  for (const auto& [kind, n] : g.resources)
    fmt::format_to(it, "trellis_control_resources{{kind=\"{}\"}} {}\n", kind, n);

  std::lock_guard lock(mu_);
  append_metric_header(out, "trellis_control_config_pushes_total", "counter",
                       "Config updates sent to proxies (one per proxy whose config changed).");
  fmt::format_to(it, "trellis_control_config_pushes_total {}\n", configs_sent_);
  append_metric_header(out, "trellis_control_config_answers_total", "counter",
                       "Proxies' answers to the last config sent to them: ack (in force) or nack (refused).");
  fmt::format_to(it, "trellis_control_config_answers_total{{answer=\"ack\"}} {}\n", acks_);
  fmt::format_to(it, "trellis_control_config_answers_total{{answer=\"nack\"}} {}\n", nacks_);
  append_metric_header(out, "trellis_control_push_duration_seconds", "histogram",
                       "From sending a config to a proxy to its ACK or NACK of it.");
  append_histogram(out, "trellis_control_push_duration_seconds", "", push_.buckets, push_.count,
                   push_.sum_seconds);
  append_metric_header(out, "trellis_control_certificates_issued_total", "counter",
                       "Workload certificates signed for proxies.");
  fmt::format_to(it, "trellis_control_certificates_issued_total {}\n", certificates_);
  append_metric_header(out, "trellis_control_store_call_duration_seconds", "histogram",
                       "Calls to the store (SQLite), by call.");
  for (size_t c = 0; c < kStoreCalls; ++c) {
    const Latency& l = store_[c];
    append_histogram(out, "trellis_control_store_call_duration_seconds",
                     fmt::format("call=\"{}\"", kStoreCallNames[c]), l.buckets, l.count, l.sum_seconds);
  }
  return out;
}

}  // namespace trellis::control
