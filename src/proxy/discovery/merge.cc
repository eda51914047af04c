#include "proxy/discovery/merge.h"

#include <cmath>
#include <set>

#include <nlohmann/json.hpp>

#include "common/text.h"
#include "proxy/config/checks.h"
#include "proxy/discovery/merge_parts.h"

namespace trellis::proxy {
namespace {

using control_merge::Errors;
using control_merge::item;

class Merger {
 public:
  Merger(const ProxyConfig& bootstrap, ConfigLoad& out) : out_(out), errors_(out.errors) {
    out_.config = bootstrap;
    for (const ClusterConfig& c : bootstrap.clusters) cluster_names_.insert(c.name);
    for (const ListenerConfig& l : bootstrap.listeners) {
      listener_names_.insert(l.name);
      listener_addresses_.insert(l.address.text);
    }
  }

  void add_cluster(const v1::Cluster& c) {
    std::string path = "clusters[" + c.name() + "]";
    if (c.name().empty()) return errors_.add("clusters[]", "name is required");
    if (!errors_.check(path + ".name", check_name(c.name()))) return;
    if (!cluster_names_.insert(c.name()).second) {
      return errors_.add(path, "duplicate cluster name (a static cluster has it)");
    }
    ClusterConfig cluster;
    control_merge::translate_cluster(c, path, errors_, cluster);
    out_.config.clusters.push_back(std::move(cluster));
  }

  // Once every cluster is in: routes and tcp listeners refer to them by name.
  void index_clusters() {
    for (size_t i = 0; i < out_.config.clusters.size(); ++i)
      cluster_index_.emplace(out_.config.clusters[i].name, i);
  }

  void add_listener(const v1::Listener& l) {
    std::string path = "listeners[" + l.name() + "]";
    if (l.name().empty()) return errors_.add("listeners[]", "name is required");
    if (!errors_.check(path + ".name", check_name(l.name()))) return;
    if (!listener_names_.insert(l.name()).second) {
      return errors_.add(path, "duplicate listener name (a static listener has it)");
    }
    ListenerConfig listener;
    listener.name = l.name();
    std::string message;
    if (!net::parse_socket_address(l.address(), listener.address, message))
      return errors_.add(path + ".address", message);
    if (listener.address == out_.config.admin.address ||
        !listener_addresses_.insert(listener.address.text).second) {
      return errors_.add(
          path + ".address",
          listener.address.text + " is already in use by another listener or the admin endpoint");
    }
    if (l.direction() == v1::Listener::INBOUND) listener.direction = Direction::kInbound;
    if (l.idle_timeout_ms()) listener.idle_timeout = Millis(l.idle_timeout_ms());
    if (l.has_authorization())
      authorization(l.authorization(), path + ".authorization", listener.authorization);
    if (l.has_client_identity_header()) {
      listener.client_identity_header = ascii_lower(l.client_identity_header().name());
      if (!listener.client_identity_header.empty())
        if (Problem problem = check_header_name(listener.client_identity_header))
          errors_.add(path + ".client_identity_header.name", *problem);
    }
    if (l.has_tls()) {
      if (l.protocol() == v1::Listener::TCP) errors_.add(path + ".tls", "is only for HTTP listeners");
      listener.tls =
          l.tls().mode() == v1::ListenerTls::PERMISSIVE ? ListenerTls::kPermissive : ListenerTls::kStrict;
    }
    if (l.protocol() == v1::Listener::TCP) {
      listener.protocol = ListenerProtocol::kTcp;
      listener.cluster = l.cluster();
      if (listener.cluster.empty()) return errors_.add(path + ".cluster", "a TCP listener needs a cluster");
      auto it = cluster_index_.find(listener.cluster);
      if (it == cluster_index_.end()) {
        errors_.add(path + ".cluster", "unknown cluster " + in_quotes(listener.cluster));
      } else {
        listener.cluster_index = it->second;
      }
    } else {
      listener.protocol = ListenerProtocol::kHttp;
      if (l.virtual_hosts_size() == 0) {
        return errors_.add(path + ".virtual_hosts", "an HTTP listener needs a virtual host");
      }
      std::set<std::string> domains;
      for (const v1::VirtualHost& vh : l.virtual_hosts()) {
        listener.virtual_hosts.push_back(virtual_host(vh, path, domains));
      }
    }
    out_.config.listeners.push_back(std::move(listener));
  }

  void add_policy(const v1::Policy& p) {
    std::string path = "policies[" + p.key() + "]";
    if (p.key().empty() || p.kind().empty() || p.name().empty()) {
      return errors_.add("policies[]", "a policy needs key, kind and name");
    }
    if (!nlohmann::json::accept(p.spec_json())) return errors_.add(path + ".spec_json", "not valid JSON");
    if (p.kind() == "MeshConfig") mesh_config(nlohmann::json::parse(p.spec_json()), path);
    out_.config.policies.push_back(
        PolicyConfig{p.kind(), p.namespace_(), p.name(), p.resource_version(), p.spec_json()});
  }

 private:
  // What the mesh's MeshConfig sets for every proxy, unless its bootstrap
  // file sets it: tracing, and access logs (to standard output, in the
  // format it names).
  void mesh_config(const nlohmann::json& spec, const std::string& path) {
    if (!spec.is_object()) return;
    if (auto t = spec.find("tracing"); t != spec.end() && t->is_object() && !out_.config.tracing.enabled()) {
      std::string message;
      const nlohmann::json& collector = (*t)["collector"];
      if (!collector.is_string() ||
          !net::parse_socket_address(collector.get<std::string>(), out_.config.tracing.collector, message)) {
        out_.config.tracing.collector = {};
        errors_.add(path + ".tracing.collector", message.empty() ? "must be \"ip:port\"" : message);
      }
      if (auto s = t->find("samplingPercent"); s != t->end()) {
        double percent = s->is_number() ? s->get<double>() : -1;
        if (percent < 0 || percent > 100) {
          errors_.add(path + ".tracing.samplingPercent", "must be a number from 0 to 100");
        } else {
          out_.config.tracing.sampling_per_million = static_cast<uint32_t>(std::llround(percent * 10000));
        }
      }
    }
    if (auto mesh = spec.find("accessLog");
        mesh != spec.end() && mesh->is_object() && out_.config.access_log.path.empty()) {
      const nlohmann::json log = own_access_log(*mesh);
      auto e = log.find("enabled");
      if (e == log.end() || !e->is_boolean() || !e->get<bool>()) return;
      LogFormat format;
      if (text_at(log, "format", "json") == "text") {
        Result<LogFormat> parsed = parse_log_template(text_at(log, "template", ""));
        if (!parsed) return errors_.add(path + ".accessLog.template", parsed.error().message);
        format = std::move(*parsed);
      } else if (auto f = log.find("fields"); f != log.end() && f->is_array()) {
        for (const nlohmann::json& name : *f) {
          Result<LogField> field =
              parse_listed_log_field(name.is_string() ? name.get<std::string>() : name.dump(), format.fields);
          if (!field) return errors_.add(path + ".accessLog.fields", field.error().message);
          format.fields.push_back(*field);
        }
      }
      out_.config.access_log.path = "/dev/stdout";
      out_.config.access_log.format = std::move(format);
    }
  }

  // The string at `key` of `object`, or `otherwise` when there is none.
  static std::string text_at(const nlohmann::json& object, const char* key, const char* otherwise) {
    auto v = object.find(key);
    return v != object.end() && v->is_string() ? v->get<std::string>() : otherwise;
  }

  // MeshConfig accessLog with what its `services` entry for this proxy's
  // own service sets in place of the mesh's (a format of its own drops the
  // mesh's fields and template).
  nlohmann::json own_access_log(const nlohmann::json& mesh) const {
    nlohmann::json log = mesh;
    log.erase("services");
    auto services = mesh.find("services");
    if (services == mesh.end() || !services->is_array()) return log;
    const ControlPlaneConfig& cp = out_.config.control_plane;
    for (const nlohmann::json& entry : *services) {
      if (!entry.is_object() || text_at(entry, "service", "") != cp.service ||
          text_at(entry, "namespace", "default") != cp.namespace_)
        continue;
      if (entry.contains("format") && text_at(entry, "format", "") != text_at(mesh, "format", "json")) {
        log.erase("fields");
        log.erase("template");
      }
      for (const auto& [key, value] : entry.items())
        if (key != "service" && key != "namespace") log[key] = value;
    }
    return log;
  }

  static policy::AuthzAction action(v1::Authorization::Action a) {
    return a == v1::Authorization::DENY ? policy::AuthzAction::kDeny : policy::AuthzAction::kAllow;
  }

  // Checked with the bootstrap file's rules; the compiler checks the blocks.
  void authorization(const v1::Authorization& in, const std::string& path, policy::AuthorizationConfig& out) {
    out.default_action = action(in.default_action());
    for (int i = 0; i < in.policies_size(); ++i) {
      const v1::AuthorizationPolicy& p = in.policies(i);
      const std::string at = item(path + ".policies", i);
      if (p.name().empty()) errors_.add(at + ".name", "is required");
      policy::AuthzPolicyConfig policy{p.name(), action(p.action()), {}};
      for (int r = 0; r < p.rules_size(); ++r) {
        const std::string rule_at = item(at + ".rules", r);
        policy::AuthzRule rule;
        for (int f = 0; f < p.rules(r).from_size(); ++f) {
          const v1::AuthorizationSource& s = p.rules(r).from(f);
          const std::string from_at = item(rule_at + ".from", f);
          policy::AuthzSource source;
          strings(s.identities(), from_at + ".identities", check_authz_identity, source.identities);
          strings(s.namespaces(), from_at + ".namespaces", check_name, source.namespaces);
          strings(s.ip_blocks(), from_at + ".ip_blocks", check_ip_block, source.ip_blocks);
          if (source.identities.empty() && source.namespaces.empty() && source.ip_blocks.empty())
            errors_.add(from_at, "sets nothing");
          rule.from.push_back(std::move(source));
        }
        for (int t = 0; t < p.rules(r).to_size(); ++t) {
          const v1::AuthorizationOperation& o = p.rules(r).to(t);
          const std::string to_at = item(rule_at + ".to", t);
          policy::AuthzOperation operation;
          strings(o.methods(), to_at + ".methods", check_method, operation.methods);
          strings(o.paths(), to_at + ".paths", check_authz_path, operation.paths);
          for (int k = 0; k < o.ports_size(); ++k) {
            if (o.ports(k) < 1 || o.ports(k) > 65535) {
              errors_.add(item(to_at + ".ports", k), "must be between 1 and 65535");
            } else {
              operation.ports.push_back(o.ports(k));
            }
          }
          if (operation.methods.empty() && operation.paths.empty() && operation.ports.empty())
            errors_.add(to_at, "sets nothing");
          rule.to.push_back(std::move(operation));
        }
        policy.rules.push_back(std::move(rule));
      }
      out.policies.push_back(std::move(policy));
    }
  }

  template <class List>
  void strings(const List& in, const std::string& path, Problem (*check)(std::string_view),
               std::vector<std::string>& out) {
    for (int i = 0; i < in.size(); ++i) {
      if (errors_.check(item(path, i), check(in.Get(i)))) out.push_back(in.Get(i));
    }
  }

  VirtualHostConfig virtual_host(const v1::VirtualHost& vh, const std::string& listener_path,
                                 std::set<std::string>& domains) {
    std::string path = listener_path + ".virtual_hosts[" + vh.name() + "]";
    VirtualHostConfig vhost;
    vhost.name = vh.name();
    errors_.check(path + ".name", check_name(vh.name()));
    for (int i = 0; i < vh.domains_size(); ++i) {
      std::string domain = ascii_lower(vh.domains(i));
      std::string dpath = path + ".domains[" + std::to_string(i) + "]";
      if (!errors_.check(dpath, check_domain(domain))) continue;
      if (!domains.insert(domain).second) {
        errors_.add(dpath, "domain " + domain + " is in another virtual host too");
        continue;
      }
      vhost.domains.push_back(std::move(domain));
    }
    if (vh.routes_size() == 0) errors_.add(path + ".routes", "a virtual host needs a route");
    for (int i = 0; i < vh.routes_size(); ++i) {
      RouteConfig route;
      control_merge::translate_route(vh.routes(i), path + ".routes[" + std::to_string(i) + "]",
                                     cluster_index_, errors_, route);
      vhost.routes.push_back(std::move(route));
    }
    return vhost;
  }

  ConfigLoad& out_;
  Errors errors_;
  std::set<std::string> cluster_names_;
  control_merge::ClusterIndex cluster_index_;
  std::set<std::string> listener_names_;
  std::set<std::string> listener_addresses_;
};

}  // namespace

namespace control_merge {

void Errors::add(std::string path, std::string message) {
  out_.push_back(ConfigError{"control plane", 0, 0, std::move(path), std::move(message)});
}

bool Errors::check(const std::string& path, const Problem& problem) {
  if (!problem) return true;
  add(path, *problem);
  return false;
}

}  // namespace control_merge

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
  merger.index_clusters();
  for (const auto& [name, l] : dynamic.listeners) merger.add_listener(l);
  for (const auto& [key, p] : dynamic.policies) merger.add_policy(p);
  return out;
}

}  // namespace trellis::proxy
