#include "proxy/control_config.h"

#include <set>

#include <nlohmann/json.hpp>

namespace trellis::proxy {
namespace {

class Merger {
 public:
  Merger(const ProxyConfig& bootstrap, ConfigLoad& out) : out_(out) {
    out_.config = bootstrap;
    for (const ClusterConfig& c : bootstrap.clusters) cluster_names_.insert(c.name);
    for (const ListenerConfig& l : bootstrap.listeners) {
      listener_names_.insert(l.name);
      listener_addresses_.insert(l.address.text);
    }
  }

  void add_cluster(const v1::Cluster& c) {
    std::string path = "clusters[" + c.name() + "]";
    if (c.name().empty()) return error("clusters[]", "name is required");
    if (!cluster_names_.insert(c.name()).second) return error(path, "duplicate cluster name (a static cluster has it)");
    ClusterConfig cluster;
    cluster.name = c.name();
    if (c.connect_timeout_ms()) cluster.connect_timeout = Millis(c.connect_timeout_ms());
    if (c.idle_timeout_ms()) cluster.idle_timeout = Millis(c.idle_timeout_ms());
    if (c.max_idle_per_endpoint()) cluster.max_idle_per_endpoint = c.max_idle_per_endpoint();
    std::set<std::string> seen;
    for (int i = 0; i < c.endpoints_size(); ++i) {
      const v1::Endpoint& e = c.endpoints(i);
      std::string epath = path + ".endpoints[" + std::to_string(i) + "].address";
      EndpointConfig endpoint;
      std::string message;
      if (!parse_socket_address(e.address(), endpoint.address, message)) {
        error(epath, message);
        continue;
      }
      if (!seen.insert(endpoint.address.text).second) {
        error(epath, "duplicate endpoint " + endpoint.address.text);
        continue;
      }
      endpoint.weight = e.weight() == 0 ? 1 : e.weight();
      cluster.endpoints.push_back(std::move(endpoint));
    }
    out_.config.clusters.push_back(std::move(cluster));
  }

  void add_listener(const v1::Listener& l) {
    std::string path = "listeners[" + l.name() + "]";
    if (l.name().empty()) return error("listeners[]", "name is required");
    if (!listener_names_.insert(l.name()).second) return error(path, "duplicate listener name (a static listener has it)");
    ListenerConfig listener;
    listener.name = l.name();
    std::string message;
    if (!parse_socket_address(l.address(), listener.address, message)) return error(path + ".address", message);
    if (listener.address == out_.config.admin.address || !listener_addresses_.insert(listener.address.text).second)
      return error(path + ".address", listener.address.text + " is already in use by another listener or the admin endpoint");
    if (l.idle_timeout_ms()) listener.idle_timeout = Millis(l.idle_timeout_ms());
    if (l.protocol() == v1::Listener::TCP) {
      listener.protocol = ListenerProtocol::kTcp;
      listener.cluster = l.cluster();
      if (listener.cluster.empty()) return error(path + ".cluster", "a TCP listener needs a cluster");
    } else {
      listener.protocol = ListenerProtocol::kHttp;
      if (l.virtual_hosts_size() == 0) return error(path + ".virtual_hosts", "an HTTP listener needs a virtual host");
      std::set<std::string> domains;
      for (const v1::VirtualHost& vh : l.virtual_hosts()) {
        std::string vpath = path + ".virtual_hosts[" + vh.name() + "]";
        VirtualHostConfig vhost;
        vhost.name = vh.name();
        for (const std::string& d : vh.domains()) {
          std::string lower = d;
          for (char& ch : lower)
            if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch + 32);
          if (lower.empty()) {
            error(vpath + ".domains", "empty domain");
            continue;
          }
          if (!domains.insert(lower).second) {
            error(vpath + ".domains", "domain " + lower + " is in another virtual host too");
            continue;
          }
          vhost.domains.push_back(lower);
        }
        if (vh.routes_size() == 0) error(vpath + ".routes", "a virtual host needs a route");
        for (int i = 0; i < vh.routes_size(); ++i) {
          const v1::Route& r = vh.routes(i);
          RouteConfig route;
          route.match.path_kind = r.path_kind() == v1::Route::EXACT ? policy::PathMatchKind::kExact : policy::PathMatchKind::kPrefix;
          route.match.path = r.path().empty() ? "/" : r.path();
          if (route.match.path.front() != '/') error(vpath + ".routes[" + std::to_string(i) + "].path", "must start with \"/\"");
          BackendConfig backend;
          backend.cluster = r.cluster();
          route.backends.push_back(std::move(backend));
          route.timeout = Millis(r.timeout_ms());
          vhost.routes.push_back(std::move(route));
        }
        listener.virtual_hosts.push_back(std::move(vhost));
      }
    }
    out_.config.listeners.push_back(std::move(listener));
  }

  void add_policy(const v1::Policy& p) {
    std::string path = "policies[" + p.key() + "]";
    if (p.key().empty() || p.kind().empty() || p.name().empty())
      return error("policies[]", "a policy needs key, kind and name");
    if (!nlohmann::json::accept(p.spec_json())) return error(path + ".spec_json", "not valid JSON");
    out_.config.policies.push_back(
        PolicyConfig{p.kind(), p.namespace_(), p.name(), p.resource_version(), p.spec_json()});
  }

  // Routes and TCP listeners name clusters: resolve every name to its index.
  void resolve() {
    std::map<std::string, size_t> index;
    for (size_t i = 0; i < out_.config.clusters.size(); ++i) index[out_.config.clusters[i].name] = i;
    for (ListenerConfig& l : out_.config.listeners) {
      std::string path = "listeners[" + l.name + "]";
      if (l.protocol == ListenerProtocol::kTcp) {
        auto it = index.find(l.cluster);
        if (it == index.end()) error(path + ".cluster", "unknown cluster \"" + l.cluster + "\"");
        else l.cluster_index = it->second;
        continue;
      }
      for (VirtualHostConfig& vh : l.virtual_hosts) {
        for (size_t i = 0; i < vh.routes.size(); ++i) {
          for (BackendConfig& b : vh.routes[i].backends) {
            auto it = index.find(b.cluster);
            if (it == index.end()) {
              error(path + ".virtual_hosts[" + vh.name + "].routes[" + std::to_string(i) + "].cluster",
                    "unknown cluster \"" + b.cluster + "\"");
            } else {
              b.cluster_index = it->second;
            }
          }
        }
      }
    }
  }

 private:
  void error(std::string path, std::string message) {
    out_.errors.push_back(ConfigError{"control plane", 0, 0, std::move(path), std::move(message)});
  }

  ConfigLoad& out_;
  std::set<std::string> cluster_names_;
  std::set<std::string> listener_names_;
  std::set<std::string> listener_addresses_;
};

}  // namespace

void DynamicConfig::apply(const v1::ConfigUpdate& update) {
  if (update.full()) {
    listeners.clear();
    clusters.clear();
    policies.clear();
  }
  for (const std::string& name : update.removed_listeners()) listeners.erase(name);
  for (const std::string& name : update.removed_clusters()) clusters.erase(name);
  for (const std::string& key : update.removed_policies()) policies.erase(key);
  for (const v1::Listener& l : update.listeners()) listeners[l.name()] = l;
  for (const v1::Cluster& c : update.clusters()) clusters[c.name()] = c;
  for (const v1::Policy& p : update.policies()) policies[p.key()] = p;
}

ConfigLoad merge_dynamic_config(const ProxyConfig& bootstrap, const DynamicConfig& dynamic) {
  ConfigLoad out;
  Merger merger(bootstrap, out);
  for (const auto& [name, c] : dynamic.clusters) merger.add_cluster(c);
  for (const auto& [name, l] : dynamic.listeners) merger.add_listener(l);
  for (const auto& [key, p] : dynamic.policies) merger.add_policy(p);
  merger.resolve();
  return out;
}

}  // namespace trellis::proxy
