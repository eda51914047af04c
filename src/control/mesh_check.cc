#include "control/mesh_check.h"

#include <algorithm>
#include <map>
#include <set>

#include <fmt/format.h>

#include "control/route_status.h"

namespace trellis::control {
namespace {

using Severity = Finding::Severity;

std::string label(const Resource& r) {
  return r.namespace_.empty() ? r.kind + " " + r.name : r.kind + " " + r.namespace_ + "/" + r.name;
}

std::string path(std::string_view base, size_t i) { return fmt::format("{}[{}]", base, i); }

class Checker {
 public:
  Checker(const MeshView& mesh, const std::vector<ProxyStatus>& proxies, std::vector<Finding>& out)
      : mesh_(mesh), out_(out) {
    for (const Instance& i : mesh.instances) services_.insert({i.service, i.namespace_});
    for (const ProxyStatus& p : proxies) called_.insert(p.upstreams.begin(), p.upstreams.end());
  }

  void add(Severity s, std::string resource, std::string field, std::string message) {
    out_.push_back({s, std::move(resource), std::move(field), std::move(message)});
  }

  bool known(const ServiceRef& s) const { return services_.count(s) > 0; }

  void routes() {
    // (parent service) -> what each match of each rule takes, to find
    // routes that take the same requests.
    std::map<ServiceRef, std::map<std::string, std::string>> taken;
    for (const std::vector<Resource>* routes : {&mesh_.http_routes, &mesh_.grpc_routes}) {
      for (const Resource& r : *routes) route(r, taken);
    }
  }

  void route(const Resource& r, std::map<ServiceRef, std::map<std::string, std::string>>& taken) {
    std::vector<ServiceRef> parents;
    const Json& refs = list_at(r.spec, "parentRefs");
    for (size_t i = 0; i < refs.size(); ++i) {
      const Json& p = refs[i];
      if (string_at(p, "kind", "Service") != "Service") continue;
      ServiceRef s{string_at(p, "name"), string_at(p, "namespace", r.namespace_)};
      parents.push_back(s);
      // Callers reach a route's Service by its name: one with no instance
      // of its own (a name routed to others) is in use while a proxy calls it.
      if (!known(s) && !called_.count(s)) {
        add(Severity::kWarning, label(r), path("spec.parentRefs", i),
            fmt::format(
                "Service {}.{} has no registered instance and no proxy calls it: the route applies to "
                "no traffic",
                s.name, s.namespace_));
      } else if (std::string problem = parent_port_problem(mesh_, p, s); !problem.empty()) {
        add(Severity::kWarning, label(r), path("spec.parentRefs", i),
            problem + ": the route applies to no traffic");
      }
    }
    each_backend_ref(r.spec, [&](const Json& ref, const std::string& field) {
      // Where a backend's requests would fail, a mirror's copies are only lost.
      const bool mirror = field.ends_with(".backendRef");
      const Severity severity = mirror ? Severity::kWarning : Severity::kError;
      BackendResolution resolved = resolve_backend(mesh_, ref, r);
      if (!resolved.cluster) {
        add(severity, label(r), field,
            resolved.message + (mirror ? ": no copies are sent" : ": its requests get 500"));
      }
    });
    each_route_filter(r.spec, [&](const Json& filter, const std::string&) {
      const Json* ext = map_at(filter, "extensionRef");
      if (string_at(filter, "type") == "ExtensionRef" && ext != nullptr)
        used_faults_.insert(r.namespace_ + "/" + string_at(*ext, "name"));
    });
    const Json& rules = list_at(r.spec, "rules");
    for (size_t i = 0; i < rules.size(); ++i) {
      // Rules with the same matches (and hostnames) on the same Service:
      // only the first in precedence takes those requests.
      static const Json kEverything = Json::array({Json::object()});
      const Json& matches = list_at(rules[i], "matches").empty() ? kEverything : list_at(rules[i], "matches");
      std::string hosts = list_at(r.spec, "hostnames").dump();
      for (size_t m = 0; m < matches.size(); ++m) {
        std::string key = r.kind + hosts + matches[m].dump();
        std::string here = fmt::format("{} spec.rules[{}].matches[{}]", label(r), i, m);
        for (const ServiceRef& s : parents) {
          auto [it, fresh] = taken[s].emplace(key, here);
          if (!fresh && !it->second.starts_with(label(r) + " "))
            add(Severity::kWarning, label(r), fmt::format("spec.rules[{}].matches[{}]", i, m),
                fmt::format("takes the same requests to {}.{} as {}: only one of them gets them", s.name,
                            s.namespace_, it->second));
        }
      }
    }
  }

  void policies() {
    for (const std::vector<Resource>* list :
         {&mesh_.destination_policies, &mesh_.rate_limit_policies, &mesh_.authorization_policies}) {
      for (const Resource& p : *list) {
        const Json* target = map_at(p.spec, "targetRef");
        if (target == nullptr) continue;
        std::string kind = string_at(*target, "kind", "Service");
        std::string name = string_at(*target, "name");
        if (kind == "Service" && !known({name, p.namespace_})) {
          add(Severity::kWarning, label(p), "spec.targetRef",
              fmt::format("Service {}.{} has no registered instance: the policy applies to nothing", name,
                          p.namespace_));
        } else if (kind == "HTTPRoute" && !route_exists(name, p.namespace_)) {
          add(Severity::kWarning, label(p), "spec.targetRef",
              fmt::format("there is no HTTPRoute {}/{}: the policy applies to nothing", p.namespace_, name));
        }
      }
    }
    for (const Resource& f : mesh_.fault_injections) {
      if (!used_faults_.count(f.namespace_ + "/" + f.name))
        add(Severity::kWarning, label(f), "", "no HTTPRoute rule applies it (an ExtensionRef filter)");
    }
  }

  // Services every request to which is refused.
  void closed_services() {
    bool deny_by_default = false;
    for (const Resource& m : mesh_.mesh_configs)
      if (const Json* a = map_at(m.spec, "authorization"); a && string_at(*a, "defaultAction") == "DENY")
        deny_by_default = true;
    std::set<ServiceRef> all = services_;
    // Services with ALLOW policies: true once one of them has a rule (lets
    // something in). DENY policies with a rule that matches everything.
    std::map<ServiceRef, bool> allow;
    std::map<ServiceRef, std::vector<const Resource*>> deny_all;
    for (const Resource& p : mesh_.authorization_policies) {
      const Json* target = map_at(p.spec, "targetRef");
      if (target == nullptr || string_at(*target, "kind", "Service") != "Service") continue;
      ServiceRef s{string_at(*target, "name"), p.namespace_};
      all.insert(s);
      const Json& rules = list_at(p.spec, "rules");
      if (string_at(p.spec, "action", "ALLOW") == "DENY") {
        auto everything = [](const Json& rule) {
          return list_at(rule, "from").empty() && list_at(rule, "to").empty();
        };
        if (std::any_of(rules.begin(), rules.end(), everything)) deny_all[s].push_back(&p);
      } else {
        allow[s] |= !rules.empty();
      }
    }
    for (const ServiceRef& s : all) {
      std::string service = fmt::format("Service {}.{}", s.name, s.namespace_);
      for (const Resource* p : deny_all[s])
        add(Severity::kError, label(*p), "spec.rules",
            "a rule without from or to matches every request: every request to " + service + " is refused");
      auto a = allow.find(s);
      if (a != allow.end() && !a->second) {
        add(Severity::kError, service, "",
            "its ALLOW policies all have no rules (they match nothing): every request to it is refused");
      } else if (a == allow.end() && deny_by_default && services_.count(s)) {
        add(Severity::kError, service, "",
            "MeshConfig authorization.defaultAction is DENY and no ALLOW policy targets it: every request to "
            "it "
            "is refused");
      }
    }
  }

  bool route_exists(const std::string& name, const std::string& ns) const {
    for (const Resource& r : mesh_.http_routes)
      if (r.name == name && r.namespace_ == ns) return true;
    return false;
  }

 private:
  const MeshView& mesh_;
  std::vector<Finding>& out_;
  std::set<ServiceRef> services_;  // with live instances
  std::set<ServiceRef> called_;    // named by a connected proxy's upstream_services
  std::set<std::string> used_faults_;
};

void check_proxies(const std::vector<ProxyStatus>& proxies, std::vector<Finding>& out) {
  for (const ProxyStatus& p : proxies) {
    std::string who = "proxy " + p.node_id;
    if (p.sent_version != 0 && p.nacked_version == p.sent_version) {
      out.push_back({Severity::kError, who, "",
                     fmt::format("refused config version {} (it runs its last good one): {}",
                                 p.nacked_version, p.nack_error)});
    } else if (p.sent_version != p.acked_version) {
      out.push_back(
          {Severity::kWarning, who, "",
           fmt::format("not in sync: sent version {}, acknowledged {}", p.sent_version, p.acked_version)});
    }
  }
}

void check_certificate(const CertificateSummary& c, const std::string& what, SystemTime now,
                       std::chrono::seconds soon, std::vector<Finding>& out) {
  auto left = std::chrono::duration_cast<std::chrono::hours>(c.not_after - now);
  if (c.not_after <= now) {
    out.push_back({Severity::kError, what, "", "expired (" + c.subject + ")"});
  } else if (c.not_after - now <= soon) {
    out.push_back(
        {Severity::kWarning, what, "",
         fmt::format("expires in {} h ({}): rotate it (trellis ca rotate)", left.count(), c.subject)});
  }
}

}  // namespace

std::vector<Finding> check_mesh(const MeshView& mesh, const std::vector<ProxyStatus>& proxies,
                                const CaStatus& ca, SystemTime now, std::chrono::seconds soon) {
  std::vector<Finding> out;
  Checker checker(mesh, proxies, out);
  checker.routes();
  checker.policies();
  checker.closed_services();
  check_proxies(proxies, out);
  for (const CertificateSummary& root : ca.roots) check_certificate(root, "CA root", now, soon, out);
  check_certificate(ca.issuer, "CA issuer", now, soon, out);
  return out;
}

}  // namespace trellis::control
