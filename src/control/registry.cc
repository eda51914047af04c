#include "control/registry.h"

#include <arpa/inet.h>

#include <chrono>
#include <cstdio>
#include <string_view>

namespace trellis::control {
namespace {

constexpr size_t kMaxIdLength = 253;

bool is_lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool is_alnum(char c) { return is_lower_alnum(c) || (c >= 'A' && c <= 'Z'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

// RFC 1123 label, as Kubernetes names services and namespaces: they end up
// in DNS names, so the same rule keeps them usable there.
bool is_dns_label(std::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  if (!is_lower_alnum(s.front()) || !is_lower_alnum(s.back())) return false;
  for (char c : s) {
    if (!is_lower_alnum(c) && c != '-') return false;
  }
  return true;
}

bool is_dns_subdomain(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  size_t start = 0;
  while (true) {
    size_t dot = s.find('.', start);
    if (!is_dns_label(s.substr(start, dot - start))) return false;
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

// The Kubernetes label name and value syntax, so registry labels can be
// copied from pod labels unchanged.
bool is_label_name(std::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  if (!is_alnum(s.front()) || !is_alnum(s.back())) return false;
  for (char c : s) {
    if (!is_alnum(c) && c != '-' && c != '_' && c != '.') return false;
  }
  return true;
}

bool is_label_key(std::string_view s) {
  size_t slash = s.find('/');
  if (slash == std::string_view::npos) return is_label_name(s);
  return is_dns_subdomain(s.substr(0, slash)) && is_label_name(s.substr(slash + 1));
}

bool is_label_value(std::string_view s) { return s.empty() || is_label_name(s); }

// Ids appear in API paths and logs: no '/', no spaces, no control bytes.
bool is_id(std::string_view s) {
  if (s.empty() || s.size() > kMaxIdLength || !is_alnum(s.front())) return false;
  for (char c : s) {
    if (!is_alnum(c) && c != '-' && c != '_' && c != '.' && c != ':') return false;
  }
  return true;
}

// Empty when the address is a numeric "ipv4:port" or "[ipv6]:port" a proxy
// can connect to; otherwise the reason.
std::string address_error(const std::string& address) {
  constexpr const char* kShape = "must be \"ip:port\" with a numeric IPv4 address or \"[ip]:port\" with IPv6";
  for (char c : address) {
    // Also keeps NUL bytes away from inet_pton, which would stop at them.
    if (!is_alnum(c) && c != '.' && c != ':' && c != '[' && c != ']') return kShape;
  }
  std::string host;
  std::string_view port;
  bool unspecified = false;
  if (!address.empty() && address.front() == '[') {
    size_t close = address.find(']');
    if (close == std::string::npos || close + 1 >= address.size() || address[close + 1] != ':') return kShape;
    host = address.substr(1, close - 1);
    port = std::string_view(address).substr(close + 2);
    in6_addr v6{};
    if (inet_pton(AF_INET6, host.c_str(), &v6) != 1) return "\"" + host + "\" is not an IPv6 address";
    unspecified = IN6_IS_ADDR_UNSPECIFIED(&v6);
  } else {
    size_t colon = address.rfind(':');
    if (colon == std::string::npos) return kShape;
    host = address.substr(0, colon);
    port = std::string_view(address).substr(colon + 1);
    in_addr v4{};
    if (inet_pton(AF_INET, host.c_str(), &v4) != 1) return kShape;
    unspecified = v4.s_addr == 0;
  }
  if (unspecified) return "must not be the unspecified address: proxies connect to it";
  if (port.empty() || port.size() > 5) return "port must be between 1 and 65535";
  uint32_t value = 0;
  for (char c : port) {
    if (!is_digit(c)) return "port must be between 1 and 65535";
    value = value * 10 + static_cast<uint32_t>(c - '0');
  }
  if (value < 1 || value > 65535) return "port must be between 1 and 65535";
  return {};
}

}  // namespace

int64_t SystemWallClock::now_ms() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Registry::Registry(Store& store, const WallClock& clock, Random& random)
    : store_(store), clock_(clock), random_(random) {
  for (const Instance& instance : store_.instances()) insert(instance);
}

std::vector<FieldError> Registry::validate(const Instance& instance) {
  std::vector<FieldError> errors;
  auto fail = [&errors](std::string path, std::string message) {
    errors.push_back({std::move(path), std::move(message)});
  };
  constexpr const char* kDnsLabel =
      "must be a DNS label: 1 to 63 lower-case letters, digits or '-', starting and ending with a letter or "
      "digit";
  if (!instance.id.empty() && !is_id(instance.id)) {
    fail("id", "must be 1 to 253 letters, digits, '-', '_', '.' or ':', starting with a letter or digit");
  }
  if (!is_dns_label(instance.service)) fail("service", kDnsLabel);
  if (!is_dns_label(instance.namespace_)) fail("namespace", kDnsLabel);
  if (std::string reason = address_error(instance.address); !reason.empty()) fail("address", reason);
  if (!instance.zone.empty() && !is_label_name(instance.zone)) {
    fail("zone",
         "must be at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit");
  }
  if (instance.weight < kMinWeight || instance.weight > kMaxWeight) {
    fail("weight", "must be between " + std::to_string(kMinWeight) + " and " + std::to_string(kMaxWeight));
  }
  if (instance.ttl_seconds < kMinTtlSeconds || instance.ttl_seconds > kMaxTtlSeconds) {
    fail("ttl_seconds",
         "must be between " + std::to_string(kMinTtlSeconds) + " and " + std::to_string(kMaxTtlSeconds));
  }
  if (instance.labels.size() > kMaxLabels) {
    fail("labels", "at most " + std::to_string(kMaxLabels) + " labels");
  }
  for (const auto& [key, value] : instance.labels) {
    // Keys are user input: quote them only once they are known to be tame.
    if (!is_label_key(key)) {
      fail("labels",
           "invalid key: must be a name of at most 63 letters, digits, '-', '_' or '.' "
           "(starting and ending with a letter or digit), optionally after a DNS prefix and '/'");
    } else if (!is_label_value(value)) {
      fail("labels[" + key + "]",
           "must be empty or at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter "
           "or digit");
    }
  }
  for (const ServicePortProblem& p : check_service_ports(instance.ports)) {
    fail(p.field.empty() ? "ports" : "ports[" + std::to_string(p.index) + "]." + p.field, p.message);
  }
  if (!is_id(instance.registered_by)) {
    fail("registered_by",
         "must be 1 to 253 letters, digits, '-', '_', '.' or ':', starting with a letter or digit");
  }
  return errors;
}

Result<Instance> Registry::register_instance(Instance instance) {
  if (instance.namespace_.empty()) instance.namespace_ = kDefaultNamespace;
  if (instance.registered_by.empty()) instance.registered_by = kDefaultRegisteredBy;
  if (std::vector<FieldError> errors = validate(instance); !errors.empty()) {
    std::string message = "invalid:";
    for (size_t i = 0; i < errors.size(); ++i) message += (i == 0 ? " " : "; ") + errors[i].to_string();
    return make_error(std::move(message));
  }
  if (instance.id.empty()) {
    auto id = generate_id(instance.service);
    if (!id) return id.error();
    instance.id = std::move(*id);
  }
  const int64_t now = clock_.now_ms();
  instance.last_heartbeat_ms = now;

  auto stored = store_.upsert_instance(instance);
  if (!stored) return stored.error();

  std::set<ServiceKey> touched;
  auto prior = by_id_.find(instance.id);
  // The store answers whether the fields changed; an instance coming back
  // after its TTL ran out (not yet swept) is a change too, since queries had
  // stopped showing it.
  bool visible = *stored || prior == by_id_.end() || !live(prior->second, now);
  if (prior != by_id_.end()) {
    if (visible) touched.insert({prior->second.namespace_, prior->second.service});
    erase(instance.id);
  }
  insert(instance);
  if (visible) touched.insert({instance.namespace_, instance.service});
  changed(touched);
  return instance;
}

Result<Instance> Registry::heartbeat(const std::string& id) {
  const int64_t now = clock_.now_ms();
  auto it = by_id_.find(id);
  auto not_found = [&id] {
    return make_error("not found: instance \"" + id +
                      "\" is not registered (or its TTL ran out); register it again");
  };
  if (it == by_id_.end() || !live(it->second, now)) return not_found();
  auto touched = store_.touch_instance(id, now);
  if (!touched) return touched.error();
  if (!*touched) {
    // The store lost it (removed by another writer): follow the store.
    ServiceKey key{it->second.namespace_, it->second.service};
    erase(id);
    changed({key});
    return not_found();
  }
  it->second.last_heartbeat_ms = now;
  restart_grace_.erase(id);
  return it->second;
}

void Registry::restart_ttls(int64_t at_least_ms) {
  const int64_t now = clock_.now_ms();
  std::set<ServiceKey> revived;
  for (auto& [id, instance] : by_id_) {
    if (instance.last_heartbeat_ms >= now) continue;
    auto touched = store_.touch_instance(id, now);
    if (!touched || !*touched) continue;  // left to expire by its old TTL
    if (!live(instance, now)) revived.insert({instance.namespace_, instance.service});
    instance.last_heartbeat_ms = now;
    if (at_least_ms > static_cast<int64_t>(instance.ttl_seconds) * 1000)
      restart_grace_[id] = now + at_least_ms;
  }
  if (!revived.empty()) changed(revived);
}

bool Registry::deregister(const std::string& id) {
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return false;
  ServiceKey key{it->second.namespace_, it->second.service};
  store_.remove_instance(id);
  erase(id);
  changed({key});
  return true;
}

std::vector<Instance> Registry::instances_of(const std::string& service,
                                             const std::string& namespace_) const {
  std::vector<Instance> out;
  auto it = by_service_.find({namespace_.empty() ? kDefaultNamespace : namespace_, service});
  if (it == by_service_.end()) return out;
  const int64_t now = clock_.now_ms();
  for (const std::string& id : it->second) {
    const Instance& instance = by_id_.at(id);
    if (live(instance, now)) out.push_back(instance);
  }
  return out;
}

std::vector<ServiceCount> Registry::services() const {
  std::vector<ServiceCount> out;
  const int64_t now = clock_.now_ms();
  for (const auto& [key, ids] : by_service_) {
    size_t count = 0;
    for (const std::string& id : ids) count += live(by_id_.at(id), now) ? 1 : 0;
    if (count > 0) out.push_back({key.first, key.second, count});
  }
  return out;
}

std::optional<Instance> Registry::find(const std::string& id) const {
  auto it = by_id_.find(id);
  if (it == by_id_.end() || !live(it->second, clock_.now_ms())) return std::nullopt;
  return it->second;
}

std::vector<Instance> Registry::expire() {
  const int64_t now = clock_.now_ms();
  std::vector<Instance> removed;
  for (const auto& [id, instance] : by_id_) {
    if (!live(instance, now)) removed.push_back(instance);
  }
  std::set<ServiceKey> touched;
  for (const Instance& instance : removed) {
    store_.remove_instance(instance.id);
    erase(instance.id);
    touched.insert({instance.namespace_, instance.service});
  }
  changed(touched);
  return removed;
}

bool Registry::live(const Instance& instance, int64_t now_ms) const {
  if (now_ms - instance.last_heartbeat_ms <= static_cast<int64_t>(instance.ttl_seconds) * 1000) return true;
  auto grace = restart_grace_.find(instance.id);
  return grace != restart_grace_.end() && now_ms <= grace->second;
}

Result<std::string> Registry::generate_id(const std::string& service) {
  // 32 random bits keep ids short; a clash with a registered id is re-drawn.
  // Many clashes in a row mean the randomness is broken, not unlucky.
  constexpr int kAttempts = 32;
  for (int i = 0; i < kAttempts; ++i) {
    char hex[9];
    std::snprintf(hex, sizeof(hex), "%08x", static_cast<unsigned>(random_.next() & 0xffffffffu));
    std::string id = service + "-" + hex;
    if (by_id_.count(id) == 0) return id;
  }
  return make_error("cannot generate an unused instance id for service " + service);
}

void Registry::insert(const Instance& instance) {
  by_id_[instance.id] = instance;
  by_service_[{instance.namespace_, instance.service}].insert(instance.id);
}

void Registry::erase(const std::string& id) {
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return;
  auto service = by_service_.find({it->second.namespace_, it->second.service});
  if (service != by_service_.end()) {
    service->second.erase(id);
    if (service->second.empty()) by_service_.erase(service);
  }
  by_id_.erase(it);
  restart_grace_.erase(id);
}

void Registry::changed(const std::set<ServiceKey>& services) {
  if (services.empty()) return;
  ++revision_;
  if (!listener_) return;
  for (const auto& [namespace_, service] : services) listener_(namespace_, service);
}

}  // namespace trellis::control
