#include "control/route_status.h"

#include <string>

namespace trellis::control {
namespace {

Json condition(const char* type, bool ok, const std::string& reason, const std::string& message) {
  return Json{{"type", type}, {"status", ok ? "True" : "False"}, {"reason", reason}, {"message", message}};
}

}  // namespace

std::string parent_port_problem(const MeshView& mesh, const Json& ref, const ServiceRef& service) {
  if (!ref.contains("port") && !ref.contains("sectionName")) return "";
  std::vector<ServicePort> ports = service_ports(mesh, service);
  if (ports.empty()) return "";
  const std::string section = string_at(ref, "sectionName");
  for (const ServicePort& p : ports) {
    if (uint_at(ref, "port", p.port) == p.port && string_at(ref, "sectionName", p.name) == p.name) return "";
  }
  std::string wanted = ref.contains("port") ? "port " + std::to_string(uint_at(ref, "port", 0)) : "";
  if (!section.empty()) wanted += (wanted.empty() ? "a port named " : " named ") + section;
  std::string declared;
  for (const ServicePort& p : ports)
    declared +=
        (declared.empty() ? "" : ", ") + std::to_string(p.port) + (p.name.empty() ? "" : " (" + p.name + ")");
  return "Service " + service.cluster_name() + " has no " + wanted + " (its ports: " + declared + ")";
}

Json route_status(const MeshView& mesh, const Resource& route) {
  // References are the route's, whatever its parent: one verdict for all.
  std::string reason;
  std::string message;
  each_backend_ref(route.spec, [&](const Json& ref, const std::string& path) {
    BackendResolution r = resolve_backend(mesh, ref, route);
    if (r.cluster) return;
    if (reason.empty()) reason = r.reason;  // the spec asks for one reason: the first
    message += (message.empty() ? "" : "; ") + path + ": " + r.message;
  });
  const bool resolved = reason.empty();
  Json resolved_refs = condition(
      "ResolvedRefs", resolved, resolved ? "ResolvedRefs" : reason,
      resolved ? "every backend reference is resolved"
               : message + (route.kind == "GRPCRoute" ? " (calls for these backends get UNAVAILABLE)"
                                                      : " (requests for these backends are answered 500)"));
  Json parents = Json::array();
  for (const Json& ref : list_at(route.spec, "parentRefs")) {
    const std::string ns = string_at(ref, "namespace", route.namespace_);
    const std::string service = string_at(ref, "name") + "." + ns;
    const std::string scope = ns == route.namespace_
                                  ? "from every client (a producer route)"
                                  : "from clients in namespace " + route.namespace_ + " (a consumer route)";
    Json accepted =
        condition("Accepted", true, "Accepted", "routes requests to Service " + service + " " + scope);
    if (std::string problem = parent_port_problem(mesh, ref, {string_at(ref, "name"), ns});
        !problem.empty()) {
      accepted = condition("Accepted", false, "NoMatchingParent", problem + ": the route takes no requests");
    } else if (ref.contains("port") || ref.contains("sectionName")) {
      if (service_ports(mesh, {string_at(ref, "name"), ns}).empty())
        accepted["message"] = accepted["message"].get<std::string>() +
                              "; the Service declares no ports (yet), so it takes all of its traffic";
    }
    parents.push_back(Json{{"parentRef", ref},
                           {"controllerName", kControllerName},
                           {"conditions", Json::array({std::move(accepted), resolved_refs})}});
  }
  return Json{{"parents", std::move(parents)}};
}

}  // namespace trellis::control
