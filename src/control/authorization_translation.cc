#include "control/authorization_translation.h"

namespace trellis::control {
namespace {

v1::Authorization::Action action_of(const std::string& action) {
  return action == "DENY" ? v1::Authorization::DENY : v1::Authorization::ALLOW;
}

template <class Field>
void copy_strings(const Json& entry, const char* key, Field& out) {
  for (const Json& v : list_at(entry, key))
    if (v.is_string()) out.Add(v.get<std::string>());
}

void fill_rule(const Json& rule, v1::AuthorizationRule& out) {
  for (const Json& from : list_at(rule, "from")) {
    v1::AuthorizationSource* s = out.add_from();
    copy_strings(from, "identities", *s->mutable_identities());
    copy_strings(from, "namespaces", *s->mutable_namespaces());
    copy_strings(from, "ipBlocks", *s->mutable_ip_blocks());
  }
  for (const Json& to : list_at(rule, "to")) {
    v1::AuthorizationOperation* o = out.add_to();
    copy_strings(to, "methods", *o->mutable_methods());
    copy_strings(to, "paths", *o->mutable_paths());
    for (const Json& port : list_at(to, "ports"))
      if (port.is_number_unsigned()) o->add_ports(port.get<uint32_t>());
  }
}

v1::Authorization::Action default_action(const MeshView& mesh) {
  for (const Resource& m : mesh.mesh_configs) {
    if (m.name != "default") continue;
    if (const Json* authz = map_at(m.spec, "authorization"))
      return action_of(string_at(*authz, "defaultAction", "ALLOW"));
  }
  return v1::Authorization::ALLOW;
}

}  // namespace

bool build_authorization(const MeshView& mesh, const ServiceRef& service, v1::Authorization& out) {
  out.set_default_action(default_action(mesh));
  // Validated before they were stored; in the store's order (by name).
  for (const Resource& p : mesh.authorization_policies) {
    if (p.namespace_ != service.namespace_) continue;
    const Json* target = map_at(p.spec, "targetRef");
    if (target == nullptr || string_at(*target, "kind", "Service") != "Service" ||
        string_at(*target, "name") != service.name)
      continue;
    v1::AuthorizationPolicy* policy = out.add_policies();
    policy->set_name(p.namespace_ + "/" + p.name);
    policy->set_action(action_of(string_at(p.spec, "action", "ALLOW")));
    for (const Json& rule : list_at(p.spec, "rules")) fill_rule(rule, *policy->add_rules());
  }
  return out.policies_size() > 0 || out.default_action() == v1::Authorization::DENY;
}

}  // namespace trellis::control
