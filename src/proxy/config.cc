#include "common/text.h"
#include "proxy/config.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <limits>
#include <optional>
#include <sstream>
#include <string_view>
#include <unordered_map>
#include <utility>

#include <nlohmann/json.hpp>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

namespace trellis::proxy {
namespace {

constexpr std::string_view kDefaultAdminAddress = "127.0.0.1:9901";
constexpr std::string_view kAddressShape = "must be \"ip:port\" or \"[ipv6]:port\"";
constexpr std::string_view kDurationShape = "expected a duration like \"250ms\" or \"1s\"";
// Consumers add durations to clock readings; capping them keeps that far away
// from overflow while allowing any timeout anyone would mean.
constexpr int64_t kMaxDurationHours = 365 * 24;
constexpr int64_t kMaxDurationMs = kMaxDurationHours * 3600 * 1000;
constexpr int64_t kMaxWeight = 1'000'000;

std::string in_quotes(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out += '"';
  out += s;
  out += '"';
  return out;
}

bool is_valid_name(std::string_view name) {
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
  });
}

std::string format_duration(Millis d) {
  int64_t ms = d.count();
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

// Durations are "<number><unit>" with a decimal number and ms|s|m|h; the result
// must come out in whole milliseconds.
std::optional<Millis> parse_duration(std::string_view text, std::string& error) {
  if (!text.empty() && text.front() == '-') {
    error = "must not be negative";
    return std::nullopt;
  }
  size_t i = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') ++i;
  std::string_view whole = text.substr(0, i);
  std::string_view fraction;
  if (i < text.size() && text[i] == '.') {
    size_t start = ++i;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') ++i;
    fraction = text.substr(start, i - start);
    if (fraction.empty()) whole = {};  // "1." is not a number
  }
  std::string_view unit = text.substr(i);
  if (whole.empty()) {
    error = std::string(kDurationShape);
    return std::nullopt;
  }
  if (unit.empty()) {
    error = "a unit is required (ms, s, m or h), e.g. \"10s\"";
    return std::nullopt;
  }
  int64_t unit_ms = 0;
  if (unit == "ms") {
    unit_ms = 1;
  } else if (unit == "s") {
    unit_ms = 1000;
  } else if (unit == "m") {
    unit_ms = 60 * 1000;
  } else if (unit == "h") {
    unit_ms = 3600 * 1000;
  } else {
    error = "unknown unit " + in_quotes(unit) + " (use ms, s, m or h)";
    return std::nullopt;
  }
  while (whole.size() > 1 && whole.front() == '0') whole.remove_prefix(1);
  while (!fraction.empty() && fraction.back() == '0') fraction.remove_suffix(1);
  const std::string too_large = "must be at most " + std::to_string(kMaxDurationHours) + "h";
  // 12 digits of hours still fit in int64 milliseconds, so the check below cannot overflow.
  if (whole.size() > 12) {
    error = too_large;
    return std::nullopt;
  }
  // With more than 9 significant fraction digits no unit yields whole milliseconds.
  if (fraction.size() > 9) {
    error = "must be a whole number of milliseconds";
    return std::nullopt;
  }
  int64_t whole_value = 0;
  std::from_chars(whole.data(), whole.data() + whole.size(), whole_value);
  int64_t fraction_value = 0;
  int64_t fraction_scale = 1;
  if (!fraction.empty()) {
    std::from_chars(fraction.data(), fraction.data() + fraction.size(), fraction_value);
    for (size_t k = 0; k < fraction.size(); ++k) fraction_scale *= 10;
  }
  if ((fraction_value * unit_ms) % fraction_scale != 0) {
    error = "must be a whole number of milliseconds";
    return std::nullopt;
  }
  int64_t total = whole_value * unit_ms + fraction_value * unit_ms / fraction_scale;
  if (total > kMaxDurationMs) {
    error = too_large;
    return std::nullopt;
  }
  return Millis{total};
}

// Lower-case host names with at most one '*', which must be the first or last character.
std::optional<std::string> check_domain(std::string_view domain) {
  if (domain.empty()) return "must not be empty";
  for (char c : domain) {
    bool allowed = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
                   c == '_' || c == ':' || c == '[' || c == ']' || c == '*';
    if (!allowed) return "invalid character in domain " + in_quotes(domain);
  }
  size_t stars = std::count(domain.begin(), domain.end(), '*');
  if (stars > 1 || (stars == 1 && domain.front() != '*' && domain.back() != '*')) {
    return "invalid wildcard in " + in_quotes(domain) +
           ": at most one '*', at the start or the end (e.g. \"*.example.com\", \"example.*\")";
  }
  return std::nullopt;
}

bool is_any_address(const SocketAddress& a) {
  if (a.family() == AF_INET) {
    return reinterpret_cast<const sockaddr_in*>(&a.storage)->sin_addr.s_addr == htonl(INADDR_ANY);
  }
  const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&a.storage);
  return IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr);
}

uint16_t port_of(const SocketAddress& a) {
  if (a.family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&a.storage)->sin_port);
  return ntohs(reinterpret_cast<const sockaddr_in6*>(&a.storage)->sin6_port);
}

// Two sockets that could not both be bound: same family and port, and the same
// IP or a wildcard IP on either side.
bool addresses_overlap(const SocketAddress& a, const SocketAddress& b) {
  if (a.family() != b.family() || port_of(a) != port_of(b)) return false;
  return a == b || is_any_address(a) || is_any_address(b);
}

std::string address_conflict(const SocketAddress& address, const SocketAddress& other,
                             std::string_view owner) {
  if (address == other) return "address " + in_quotes(address.text) + " is already used by " + std::string(owner);
  return "address " + in_quotes(address.text) + " overlaps " + std::string(owner) + " (" + other.text + ")";
}

int to_one_based(int zero_based) { return zero_based >= 0 ? zero_based + 1 : 0; }

// A node with what to blame for it: its field path, the position of its value,
// and the position of its key (same as the value for list items).
struct Located {
  YAML::Node node;
  std::string path;
  YAML::Mark mark;
  YAML::Mark key_mark;
};

// A map section whose keys have been checked against the fields it allows.
class Fields {
 public:
  explicit Fields(Located self) : self_(std::move(self)) {}

  const Located& self() const { return self_; }
  void add(std::string key, Located value) { entries_.emplace_back(std::move(key), std::move(value)); }
  std::optional<Located> get(std::string_view key) const {
    for (const auto& [name, value] : entries_) {
      if (name == key) return value;
    }
    return std::nullopt;
  }

 private:
  Located self_;
  std::vector<std::pair<std::string, Located>> entries_;
};

class Loader {
 public:
  Loader(std::string file, std::vector<ConfigError>& errors) : file_(std::move(file)), errors_(errors) {}

  void load(const YAML::Node& root, ProxyConfig& config) {
    Located at{root, "", root.Mark(), root.Mark()};
    auto fields = read_map(at, {"admin", "access_log", "drain_timeout", "listeners", "clusters", "control_plane"});
    if (!fields) return;
    bool admin_ok = true;
    if (auto v = fields->get("admin")) admin_ok = load_admin(*v, config.admin);
    if (auto v = fields->get("access_log")) load_access_log(*v, config.access_log);
    if (auto v = fields->get("drain_timeout")) read_duration(*v, config.drain_timeout);
    // Clusters first, so that routes can be resolved wherever they appear in the file.
    if (auto v = fields->get("clusters")) load_clusters(*v, config.clusters);
    // A broken admin address is reported once; listeners are not blamed for clashing with the default.
    const SocketAddress* admin = admin_ok ? &config.admin.address : nullptr;
    if (auto v = fields->get("listeners")) load_listeners(*v, admin, config.listeners);
    if (auto v = fields->get("control_plane")) load_control_plane(*v, config.control_plane);
  }

 private:
  void error(const YAML::Mark& mark, std::string path, std::string message) {
    errors_.push_back(ConfigError{file_, to_one_based(mark.line), to_one_based(mark.column), std::move(path),
                                  std::move(message)});
  }
  void error(const Located& at, std::string message) { error(at.mark, at.path, std::move(message)); }

  std::optional<Fields> read_map(const Located& at, std::initializer_list<std::string_view> allowed) {
    Fields fields(at);
    if (at.node.IsNull()) return fields;  // "admin:" with nothing under it means all defaults
    if (!at.node.IsMap()) {
      error(at, "expected a map");
      return std::nullopt;
    }
    for (auto it = at.node.begin(); it != at.node.end(); ++it) {
      YAML::Node key = it->first;
      YAML::Node value = it->second;
      if (!key.IsScalar()) {
        error(key.Mark(), at.path, "field names must be strings");
        continue;
      }
      std::string name = key.Scalar();
      std::string path = field_path(at.path, name);
      if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
        error(key.Mark(), path, unknown_field_message(name, allowed));
        continue;
      }
      if (fields.get(name)) {
        error(key.Mark(), path, "duplicate field " + in_quotes(name));
        continue;
      }
      // An empty value's own mark points past it, at whatever follows; its key is where the reader looks.
      YAML::Mark value_mark = value.IsNull() ? key.Mark() : value.Mark();
      fields.add(name, Located{value, std::move(path), value_mark, key.Mark()});
    }
    return fields;
  }

  static std::string unknown_field_message(std::string_view name, std::initializer_list<std::string_view> allowed) {
    std::string message = "unknown field " + in_quotes(name);
    std::string_view best;
    size_t best_distance = 3;  // suggest only near misses
    for (std::string_view candidate : allowed) {
      size_t d = edit_distance(name, candidate);
      if (d < best_distance) {
        best_distance = d;
        best = candidate;
      }
    }
    if (!best.empty()) message += " (did you mean " + in_quotes(best) + "?)";
    return message;
  }

  std::optional<Located> required(const Fields& fields, std::string_view key) {
    auto v = fields.get(key);
    if (!v) error(fields.self().mark, field_path(fields.self().path, key), "required field is missing");
    return v;
  }

  std::optional<std::vector<Located>> read_list(const Located& at) {
    std::vector<Located> items;
    if (at.node.IsNull()) return items;
    if (!at.node.IsSequence()) {
      error(at, "expected a list");
      return std::nullopt;
    }
    size_t index = 0;
    for (const YAML::Node& item : at.node) {
      items.push_back(Located{item, item_path(at.path, index++), item.Mark(), item.Mark()});
    }
    return items;
  }

  bool read_string(const Located& at, std::string& out) {
    if (!at.node.IsScalar()) {
      error(at, "expected a string");
      return false;
    }
    out = at.node.Scalar();
    return true;
  }

  bool read_name(const Located& at, std::string& out) {
    if (!read_string(at, out)) return false;
    if (out.empty()) {
      error(at, "must not be empty");
      return false;
    }
    if (!is_valid_name(out)) {
      error(at, "invalid name " + in_quotes(out) + ": use only letters, digits, '_', '.' and '-'");
      return false;
    }
    return true;
  }

  bool read_duration(const Located& at, Millis& out) {
    if (!at.node.IsScalar()) {
      error(at, std::string(kDurationShape));
      return false;
    }
    std::string message;
    auto d = parse_duration(at.node.Scalar(), message);
    if (!d) {
      error(at, std::move(message));
      return false;
    }
    out = *d;
    return true;
  }

  // For timers that are always armed: a zero there would close connections the
  // moment they open or go idle, not turn the timer off.
  bool read_positive_duration(const Located& at, Millis& out) {
    Millis value{};
    if (!read_duration(at, value)) return false;
    if (value.count() == 0) {
      error(at, "must be greater than 0");
      return false;
    }
    out = value;
    return true;
  }

  bool read_integer(const Located& at, int64_t min, int64_t max, int64_t& out) {
    // A quoted "5" is a string: accepting it would hide a type mistake.
    const std::string& tag = at.node.Tag();
    bool is_string = tag == "!" || tag == "tag:yaml.org,2002:str";
    if (!at.node.IsScalar() || is_string) {
      error(at, "expected an integer");
      return false;
    }
    const std::string& text = at.node.Scalar();
    int64_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec == std::errc::result_out_of_range) {
      error(at, "must be between " + std::to_string(min) + " and " + std::to_string(max));
      return false;
    }
    if (ec != std::errc() || end != text.data() + text.size() || text.empty()) {
      error(at, "expected an integer");
      return false;
    }
    if (value < min || value > max) {
      error(at, "must be between " + std::to_string(min) + " and " + std::to_string(max));
      return false;
    }
    out = value;
    return true;
  }

  bool read_address(const Located& at, SocketAddress& out) {
    std::string text;
    if (!read_string(at, text)) return false;
    std::string message;
    if (!parse_socket_address(text, out, message)) {
      error(at, std::move(message));
      return false;
    }
    return true;
  }

  bool load_admin(const Located& at, AdminConfig& admin) {
    auto fields = read_map(at, {"address"});
    if (!fields) return false;
    if (auto v = fields->get("address")) return read_address(*v, admin.address);
    return true;
  }

  void load_control_plane(const Located& at, ControlPlaneConfig& cp) {
    auto fields = read_map(at, {"address", "node", "instance", "outbound_address", "upstream_services"});
    if (!fields) return;
    if (auto v = required(*fields, "address")) read_address(*v, cp.address);
    if (auto node = required(*fields, "node")) {
      if (auto nf = read_map(*node, {"id", "service", "namespace", "zone"})) {
        if (auto v = required(*nf, "service")) read_name(*v, cp.service);
        if (auto v = nf->get("id")) read_name(*v, cp.node_id);
        if (auto v = nf->get("namespace")) read_name(*v, cp.namespace_);
        if (auto v = nf->get("zone")) read_name(*v, cp.zone);
      }
    }
    if (auto inst = fields->get("instance")) {
      if (auto f = read_map(*inst, {"address", "app_address", "weight", "labels", "ttl"})) {
        cp.has_instance = true;
        if (auto v = required(*f, "address")) read_address(*v, cp.instance_address);
        if (auto v = required(*f, "app_address")) read_address(*v, cp.app_address);
        if (auto v = f->get("weight")) {
          int64_t w = 1;
          if (read_integer(*v, 1, 1000000, w)) cp.weight = static_cast<uint32_t>(w);
        }
        if (auto v = f->get("ttl")) read_positive_duration(*v, cp.ttl);
        if (auto v = f->get("labels")) load_labels(*v, cp.labels);
      }
    }
    if (auto v = fields->get("outbound_address")) cp.has_outbound = read_address(*v, cp.outbound_address);
    if (auto v = fields->get("upstream_services")) {
      if (auto items = read_list(*v)) {
        for (const Located& item : *items) {
          std::string name;
          if (read_string(item, name)) {
            // "service" or "service.namespace"
            bool ok = !name.empty() && name.front() != '.' && name.back() != '.' &&
                      std::count(name.begin(), name.end(), '.') <= 1 &&
                      std::all_of(name.begin(), name.end(), [](char c) {
                        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
                      });
            if (!ok) error(item, "expected \"service\" or \"service.namespace\" (lower case, digits, \"-\")");
            else cp.upstream_services.push_back(std::move(name));
          }
        }
      }
    }
  }

  void load_labels(const Located& at, std::map<std::string, std::string>& labels) {
    if (at.node.IsNull()) return;
    if (!at.node.IsMap()) {
      error(at, "expected a map of label names to values");
      return;
    }
    for (auto it = at.node.begin(); it != at.node.end(); ++it) {
      if (!it->first.IsScalar() || !it->second.IsScalar()) {
        error(it->first.Mark(), at.path, "labels are name: value pairs of strings");
        continue;
      }
      labels[it->first.Scalar()] = it->second.Scalar();
    }
  }

  void load_access_log(const Located& at, AccessLogConfig& log) {
    auto fields = read_map(at, {"path"});
    if (!fields) return;
    if (auto v = fields->get("path")) {
      if (read_string(*v, log.path) && log.path.empty()) {
        error(*v, "must not be empty (leave out access_log to turn logging off)");
      }
    }
  }

  void load_clusters(const Located& at, std::vector<ClusterConfig>& clusters) {
    auto items = read_list(at);
    if (!items) {
      // Every route would then name an unknown cluster; one error says it all.
      clusters_known_ = false;
      return;
    }
    for (const Located& item : *items) {
      ClusterConfig cluster;
      load_cluster(item, cluster, clusters.size());
      clusters.push_back(std::move(cluster));
    }
  }

  void load_cluster(const Located& at, ClusterConfig& cluster, size_t index) {
    auto fields = read_map(
        at, {"name", "lb_policy", "connect_timeout", "idle_timeout", "max_idle_per_endpoint", "endpoints"});
    if (!fields) return;
    if (auto v = required(*fields, "name"); v && read_name(*v, cluster.name)) {
      if (!cluster_indices_.emplace(cluster.name, index).second) {
        error(*v, "duplicate cluster name " + in_quotes(cluster.name));
      }
    }
    if (auto v = fields->get("lb_policy")) {
      std::string policy;
      if (read_string(*v, policy)) {
        if (policy == "round_robin") {
          cluster.lb.algorithm = policy::LbAlgorithm::kRoundRobin;
        } else {
          error(*v, "unknown lb_policy " + in_quotes(policy) + " (supported: round_robin)");
        }
      }
    }
    if (auto v = fields->get("connect_timeout")) read_positive_duration(*v, cluster.connect_timeout);
    if (auto v = fields->get("idle_timeout")) read_positive_duration(*v, cluster.idle_timeout);
    if (auto v = fields->get("max_idle_per_endpoint")) {
      int64_t value = 0;
      if (read_integer(*v, 0, std::numeric_limits<uint32_t>::max(), value)) {
        cluster.max_idle_per_endpoint = static_cast<uint32_t>(value);
      }
    }
    if (auto v = fields->get("endpoints")) {
      if (auto items = read_list(*v)) {
        for (const Located& item : *items) {
          EndpointConfig endpoint;
          load_endpoint(item, endpoint);
          cluster.endpoints.push_back(std::move(endpoint));
        }
      }
    }
  }

  void load_endpoint(const Located& at, EndpointConfig& endpoint) {
    auto fields = read_map(at, {"address", "weight"});
    if (!fields) return;
    if (auto v = required(*fields, "address")) read_address(*v, endpoint.address);
    if (auto v = fields->get("weight")) {
      int64_t value = 0;
      if (read_integer(*v, 1, kMaxWeight, value)) endpoint.weight = static_cast<uint32_t>(value);
    }
  }

  void resolve_cluster(const Located& at, const std::string& name, size_t& index) {
    if (name.empty()) {
      error(at, "must not be empty");
      return;
    }
    auto it = cluster_indices_.find(name);
    if (it != cluster_indices_.end()) {
      index = it->second;
    } else if (clusters_known_) {
      error(at, "unknown cluster " + in_quotes(name));
    }
  }

  void load_listeners(const Located& at, const SocketAddress* admin, std::vector<ListenerConfig>& listeners) {
    auto items = read_list(at);
    if (!items) return;
    std::unordered_map<std::string, size_t> names;
    for (const Located& item : *items) {
      ListenerConfig listener;
      auto fields = read_map(item, {"name", "address", "protocol", "idle_timeout", "virtual_hosts", "cluster"});
      if (fields) {
        if (auto v = required(*fields, "name"); v && read_name(*v, listener.name)) {
          if (!names.emplace(listener.name, listeners.size()).second) {
            error(*v, "duplicate listener name " + in_quotes(listener.name));
          }
        }
        if (auto v = required(*fields, "address"); v && read_address(*v, listener.address)) {
          check_listener_address(*v, listener.address, admin, listeners);
        }
        load_listener_body(*fields, listener);
      }
      listeners.push_back(std::move(listener));
    }
  }

  void check_listener_address(const Located& at, const SocketAddress& address, const SocketAddress* admin,
                              const std::vector<ListenerConfig>& earlier) {
    if (admin && addresses_overlap(address, *admin)) {
      error(at, address_conflict(address, *admin, "the admin listener"));
      return;
    }
    for (const ListenerConfig& other : earlier) {
      if (!other.address.text.empty() && addresses_overlap(address, other.address)) {
        std::string owner = other.name.empty() ? "another listener" : "listener " + in_quotes(other.name);
        error(at, address_conflict(address, other.address, owner));
        return;
      }
    }
  }

  void load_listener_body(const Fields& fields, ListenerConfig& listener) {
    bool protocol_known = true;
    if (auto v = fields.get("protocol")) {
      std::string protocol;
      protocol_known = read_string(*v, protocol);
      if (protocol == "http") {
        listener.protocol = ListenerProtocol::kHttp;
      } else if (protocol == "tcp") {
        listener.protocol = ListenerProtocol::kTcp;
      } else if (protocol_known) {
        error(*v, "unknown protocol " + in_quotes(protocol) + " (expected http or tcp)");
        protocol_known = false;
      }
    }
    if (auto v = fields.get("idle_timeout")) read_positive_duration(*v, listener.idle_timeout);
    auto virtual_hosts = fields.get("virtual_hosts");
    auto cluster = fields.get("cluster");
    // Which of these belong depends on the protocol; with that in doubt, any verdict would be a guess.
    if (!protocol_known) return;
    if (listener.protocol == ListenerProtocol::kHttp) {
      if (cluster) {
        error(cluster->key_mark, cluster->path,
              "\"cluster\" is only for tcp listeners; http listeners route through virtual_hosts");
      }
      if (auto v = required(fields, "virtual_hosts")) load_virtual_hosts(*v, listener);
    } else {
      if (virtual_hosts) {
        error(virtual_hosts->key_mark, virtual_hosts->path, "\"virtual_hosts\" is only for http listeners");
      }
      if (auto v = required(fields, "cluster"); v && read_string(*v, listener.cluster)) {
        resolve_cluster(*v, listener.cluster, listener.cluster_index);
      }
    }
  }

  void load_virtual_hosts(const Located& at, ListenerConfig& listener) {
    auto items = read_list(at);
    if (!items) return;
    if (items->empty()) {
      error(at, "an http listener needs at least one virtual host");
      return;
    }
    std::unordered_map<std::string, size_t> names;
    // domain -> who claimed it first, for the error message
    std::unordered_map<std::string, std::string> domain_owners;
    for (const Located& item : *items) {
      VirtualHostConfig vhost;
      auto fields = read_map(item, {"name", "domains", "routes"});
      if (fields) {
        if (auto v = required(*fields, "name"); v && read_name(*v, vhost.name)) {
          if (!names.emplace(vhost.name, listener.virtual_hosts.size()).second) {
            error(*v, "duplicate virtual host name " + in_quotes(vhost.name));
          }
        }
        std::string owner = vhost.name.empty() ? item.path : "virtual host " + in_quotes(vhost.name);
        if (auto v = required(*fields, "domains")) load_domains(*v, owner, domain_owners, vhost.domains);
        if (auto v = required(*fields, "routes")) load_routes(*v, vhost.routes);
      }
      listener.virtual_hosts.push_back(std::move(vhost));
    }
  }

  void load_domains(const Located& at, const std::string& owner,
                    std::unordered_map<std::string, std::string>& owners, std::vector<std::string>& domains) {
    auto items = read_list(at);
    if (!items) return;
    if (items->empty()) {
      error(at, "must list at least one domain (\"*\" matches any)");
      return;
    }
    for (const Located& item : *items) {
      std::string domain;
      if (!read_string(item, domain)) continue;
      // Host matching is case-insensitive; storing one case lets the router compare bytes.
      std::transform(domain.begin(), domain.end(), domain.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      if (auto problem = check_domain(domain)) {
        error(item, std::move(*problem));
        continue;
      }
      auto [it, inserted] = owners.emplace(domain, owner);
      if (!inserted) {
        if (it->second == owner) {
          error(item, "duplicate domain " + in_quotes(domain));
        } else {
          error(item, "domain " + in_quotes(domain) + " is already used by " + it->second);
        }
        continue;
      }
      domains.push_back(std::move(domain));
    }
  }

  void load_routes(const Located& at, std::vector<RouteConfig>& routes) {
    auto items = read_list(at);
    if (!items) return;
    if (items->empty()) {
      error(at, "must list at least one route");
      return;
    }
    for (const Located& item : *items) {
      RouteConfig route;
      auto fields = read_map(item, {"match", "cluster", "timeout"});
      if (fields) {
        if (auto v = required(*fields, "match")) load_match(*v, route);
        BackendConfig backend;
        if (auto v = required(*fields, "cluster"); v && read_string(*v, backend.cluster)) {
          resolve_cluster(*v, backend.cluster, backend.cluster_index);
        }
        route.backends.push_back(std::move(backend));
        if (auto v = fields->get("timeout")) read_duration(*v, route.timeout);
      }
      routes.push_back(std::move(route));
    }
  }

  void load_match(const Located& at, RouteConfig& route) {
    auto fields = read_map(at, {"prefix", "exact"});
    if (!fields) return;
    auto prefix = fields->get("prefix");
    auto exact = fields->get("exact");
    if (prefix && exact) {
      error(at, "set only one of \"prefix\" or \"exact\"");
      return;
    }
    if (!prefix && !exact) {
      error(at, "needs \"prefix\" or \"exact\"");
      return;
    }
    const Located& path = prefix ? *prefix : *exact;
    route.match.path_kind = prefix ? policy::PathMatchKind::kPrefix : policy::PathMatchKind::kExact;
    if (!read_string(path, route.match.path)) return;
    if (route.match.path.empty() || route.match.path.front() != '/') {
      error(path, "must start with \"/\"");
      return;
    }
    bool has_space = std::any_of(route.match.path.begin(), route.match.path.end(),
                                 [](unsigned char c) { return c <= ' ' || c == 0x7f; });
    if (has_space) error(path, "must not contain spaces or control characters");
  }

  std::string file_;
  std::vector<ConfigError>& errors_;
  std::unordered_map<std::string, size_t> cluster_indices_;  // first cluster of each name
  bool clusters_known_ = true;
};

// Notes where each document of a stream starts and whether it holds anything,
// without building nodes.
class DocumentScan : public YAML::EventHandler {
 public:
  const YAML::Mark& start() const { return start_; }
  bool has_content() const { return has_content_; }

  void OnDocumentStart(const YAML::Mark& mark) override {
    start_ = mark;
    has_content_ = false;
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override { has_content_ = true; }
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override {
    has_content_ = true;
  }
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
    has_content_ = true;
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
    has_content_ = true;
  }
  void OnMapEnd() override {}

 private:
  YAML::Mark start_;
  bool has_content_ = false;
};

// yaml-cpp 0.7 stalls on some stray tokens (a lone ","): it keeps handing back an
// empty document at the same place, so YAML::LoadAll never returns and eats all
// memory. Walking the stream first finds where it would stall. Throws like the
// parser does on plain syntax errors.
std::optional<YAML::Mark> find_parser_stall(const std::string& text) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  DocumentScan scan;
  std::optional<YAML::Mark> previous;
  // Every real document consumes input, so there cannot be more of them than bytes.
  for (size_t documents = 0; parser.HandleNextDocument(scan); ++documents) {
    bool repeated = previous && previous->pos == scan.start().pos && !scan.has_content();
    if (repeated || documents > text.size()) return scan.start();
    previous = scan.start();
  }
  return std::nullopt;
}

bool parse_port(std::string_view text, uint16_t& port, std::string& error) {
  if (text.empty()) {
    error = "missing port: " + std::string(kAddressShape);
    return false;
  }
  bool digits = std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!digits) {
    error = "invalid port " + in_quotes(text);
    return false;
  }
  unsigned value = 0;
  bool too_long = text.size() > 5;
  if (!too_long) std::from_chars(text.data(), text.data() + text.size(), value);
  if (too_long || value < 1 || value > 65535) {
    error = "port must be between 1 and 65535";
    return false;
  }
  port = static_cast<uint16_t>(value);
  return true;
}

bool has_letter(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); });
}

ConfigError file_error(const std::string& file, std::string message) {
  return ConfigError{file, 0, 0, "", std::move(message)};
}

using Json = nlohmann::ordered_json;

Json route_to_json(const RouteConfig& route) {
  Json match;
  match[route.match.path_kind == policy::PathMatchKind::kPrefix ? "prefix" : "exact"] = route.match.path;
  return Json{{"match", match}, {"cluster", route.backends.empty() ? "" : route.backends[0].cluster}, {"timeout", format_duration(route.timeout)}};
}

Json listener_to_json(const ListenerConfig& listener) {
  Json out;
  out["name"] = listener.name;
  out["address"] = listener.address.text;
  out["protocol"] = listener.protocol == ListenerProtocol::kHttp ? "http" : "tcp";
  out["idle_timeout"] = format_duration(listener.idle_timeout);
  if (listener.protocol == ListenerProtocol::kHttp) {
    Json vhosts = Json::array();
    for (const VirtualHostConfig& vhost : listener.virtual_hosts) {
      Json routes = Json::array();
      for (const RouteConfig& route : vhost.routes) routes.push_back(route_to_json(route));
      vhosts.push_back(Json{{"name", vhost.name}, {"domains", vhost.domains}, {"routes", std::move(routes)}});
    }
    out["virtual_hosts"] = std::move(vhosts);
  } else {
    out["cluster"] = listener.cluster;
  }
  return out;
}

Json cluster_to_json(const ClusterConfig& cluster) {
  Json endpoints = Json::array();
  for (const EndpointConfig& endpoint : cluster.endpoints) {
    endpoints.push_back(Json{{"address", endpoint.address.text}, {"weight", endpoint.weight}});
  }
  return Json{{"name", cluster.name},
              {"lb_policy", "round_robin"},
              {"connect_timeout", format_duration(cluster.connect_timeout)},
              {"idle_timeout", format_duration(cluster.idle_timeout)},
              {"max_idle_per_endpoint", cluster.max_idle_per_endpoint},
              {"endpoints", std::move(endpoints)}};
}

}  // namespace

bool parse_socket_address(std::string_view text, SocketAddress& out, std::string& error) {
  std::string_view host;
  std::string_view port_text;
  bool is_v6 = false;
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos) {
      error = "missing \"]\": " + std::string(kAddressShape);
      return false;
    }
    if (close + 1 < text.size() && text[close + 1] != ':') {
      error = std::string(kAddressShape);
      return false;
    }
    host = text.substr(1, close - 1);
    port_text = close + 2 <= text.size() ? text.substr(close + 2) : std::string_view{};
    is_v6 = true;
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      error = "missing port: " + std::string(kAddressShape);
      return false;
    }
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      error = "IPv6 addresses must be in brackets, e.g. \"[::1]:8080\"";
      return false;
    }
  }
  if (host.empty()) {
    error = "missing IP: " + std::string(kAddressShape);
    return false;
  }
  uint16_t port = 0;
  if (!parse_port(port_text, port, error)) return false;

  std::string host_text(host);  // inet_pton wants a terminated string
  SocketAddress parsed;
  char buffer[INET6_ADDRSTRLEN] = {};
  if (is_v6) {
    sockaddr_in6 sin6{};
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(port);
    if (inet_pton(AF_INET6, host_text.c_str(), &sin6.sin6_addr) != 1) {
      error = in_quotes(host) + " is not a valid IPv6 address";
      return false;
    }
    std::memcpy(&parsed.storage, &sin6, sizeof(sin6));
    parsed.length = sizeof(sin6);
    inet_ntop(AF_INET6, &sin6.sin6_addr, buffer, sizeof(buffer));
    parsed.text = "[" + std::string(buffer) + "]:" + std::to_string(port);
  } else {
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    if (inet_pton(AF_INET, host_text.c_str(), &sin.sin_addr) != 1) {
      error = has_letter(host) ? in_quotes(host) + " is not a numeric IP address (host names are not resolved)"
                               : in_quotes(host) + " is not a valid IPv4 address";
      return false;
    }
    std::memcpy(&parsed.storage, &sin, sizeof(sin));
    parsed.length = sizeof(sin);
    inet_ntop(AF_INET, &sin.sin_addr, buffer, sizeof(buffer));
    parsed.text = std::string(buffer) + ":" + std::to_string(port);
  }
  out = std::move(parsed);
  return true;
}

std::string ConfigError::to_string() const {
  std::string out = file;
  if (line > 0) out += ":" + std::to_string(line) + ":" + std::to_string(column);
  out += ": ";
  if (!path.empty()) out += path + ": ";
  out += message;
  return out;
}

ConfigLoad load_config_text(const std::string& text, const std::string& source_name) {
  ConfigLoad result;
  result.config.source = source_name;
  std::string ignored;
  parse_socket_address(kDefaultAdminAddress, result.config.admin.address, ignored);

  std::vector<YAML::Node> documents;
  try {
    if (auto stall = find_parser_stall(text)) {
      std::string message = "invalid YAML";
      if (stall->pos >= 0 && static_cast<size_t>(stall->pos) < text.size()) {
        message = "unexpected " + in_quotes(text.substr(stall->pos, 1));
      }
      result.errors.push_back(ConfigError{source_name, to_one_based(stall->line), to_one_based(stall->column), "",
                                          std::move(message)});
      return result;
    }
    documents = YAML::LoadAll(text);
  } catch (const YAML::Exception& e) {
    result.errors.push_back(
        ConfigError{source_name, to_one_based(e.mark.line), to_one_based(e.mark.column), "", e.msg});
    return result;
  }
  // A trailing "---" leaves an empty document behind; only real content counts.
  std::erase_if(documents, [](const YAML::Node& d) { return d.IsNull(); });
  if (documents.size() > 1) {
    const YAML::Mark mark = documents[1].Mark();
    result.errors.push_back(ConfigError{source_name, to_one_based(mark.line), to_one_based(mark.column), "",
                                        "expected a single YAML document"});
    return result;
  }

  try {
    Loader loader(source_name, result.errors);
    loader.load(documents.empty() ? YAML::Node() : documents.front(), result.config);
  } catch (const std::exception& e) {
    // Reading an already parsed tree should not throw; if it does, it is still a load failure, not a crash.
    result.errors.push_back(file_error(source_name, std::string("internal error: ") + e.what()));
  }
  std::stable_sort(result.errors.begin(), result.errors.end(), [](const ConfigError& a, const ConfigError& b) {
    return std::pair(a.line, a.column) < std::pair(b.line, b.column);
  });
  return result;
}

ConfigLoad load_config_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    ConfigLoad result;
    result.config.source = path;
    result.errors.push_back(file_error(path, std::strerror(errno)));
    return result;
  }
  std::string text;
  char buffer[16384];
  for (;;) {
    ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n > 0) {
      text.append(buffer, static_cast<size_t>(n));
    } else if (n == 0) {
      break;
    } else if (errno != EINTR) {
      int saved = errno;
      ::close(fd);
      ConfigLoad result;
      result.config.source = path;
      result.errors.push_back(file_error(path, std::strerror(saved)));
      return result;
    }
  }
  ::close(fd);
  return load_config_text(text, path);
}

std::string config_to_json(const ProxyConfig& config) {
  Json out;
  out["admin"] = Json{{"address", config.admin.address.text}};
  // Logging off is spelled by leaving the section out, as in the YAML.
  if (!config.access_log.path.empty()) out["access_log"] = Json{{"path", config.access_log.path}};
  out["drain_timeout"] = format_duration(config.drain_timeout);
  out["listeners"] = Json::array();
  for (const ListenerConfig& listener : config.listeners) out["listeners"].push_back(listener_to_json(listener));
  out["clusters"] = Json::array();
  for (const ClusterConfig& cluster : config.clusters) out["clusters"].push_back(cluster_to_json(cluster));
  if (config.control_plane.enabled()) {
    const ControlPlaneConfig& cp = config.control_plane;
    Json c;
    c["address"] = cp.address.text;
    Json node{{"id", cp.node_id}, {"service", cp.service}, {"namespace", cp.namespace_}};
    if (!cp.zone.empty()) node["zone"] = cp.zone;
    c["node"] = std::move(node);
    if (cp.has_instance) {
      Json inst{{"address", cp.instance_address.text}, {"app_address", cp.app_address.text},
                {"weight", cp.weight}, {"ttl", format_duration(cp.ttl)}};
      if (!cp.labels.empty()) inst["labels"] = cp.labels;
      c["instance"] = std::move(inst);
    }
    if (cp.has_outbound) c["outbound_address"] = cp.outbound_address.text;
    if (!cp.upstream_services.empty()) c["upstream_services"] = cp.upstream_services;
    out["control_plane"] = std::move(c);
  }
  if (!config.policies.empty()) {
    Json policies = Json::array();
    for (const PolicyConfig& p : config.policies) {
      Json spec = Json::parse(p.spec_json, nullptr, /*allow_exceptions=*/false);
      policies.push_back(Json{{"kind", p.kind},
                              {"namespace", p.namespace_},
                              {"name", p.name},
                              {"resourceVersion", std::to_string(p.resource_version)},
                              {"spec", spec.is_discarded() ? Json(p.spec_json) : std::move(spec)}});
    }
    out["policies"] = std::move(policies);
  }
  // Config strings are bytes as written in the file; JSON needs UTF-8, so a
  // stray byte becomes U+FFFD rather than an exception.
  return out.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace trellis::proxy
