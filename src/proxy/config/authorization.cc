// The bootstrap file's listener `authorization`: the AuthorizationPolicies
// an inbound listener enforces, written as the control plane would send them.
#include <array>

#include "proxy/config/loader.h"

namespace trellis::proxy::config_yaml {
namespace {

constexpr std::array<std::string_view, 2> kActions = {"ALLOW", "DENY"};

class AuthorizationLoader {
 public:
  explicit AuthorizationLoader(Reader& reader) : r_(reader) {}

  void load(const Located& at, policy::AuthorizationConfig& out) {
    auto fields = r_.read_map(at, {"default_action", "policies"});
    if (!fields) return;
    if (auto v = fields->get("default_action")) out.default_action = action(*v);
    auto items = fields->get("policies");
    if (!items) return;
    auto list = r_.read_list(*items);
    if (!list) return;
    for (const Located& item : *list) {
      auto policy = r_.read_map(item, {"name", "action", "rules"});
      if (!policy) continue;
      policy::AuthzPolicyConfig p;
      if (auto v = r_.required(*policy, "name")) r_.read_string(*v, p.name);
      if (auto v = policy->get("action")) p.action = action(*v);
      if (auto v = policy->get("rules")) load_rules(*v, p.rules);
      out.policies.push_back(std::move(p));
    }
  }

 private:
  policy::AuthzAction action(const Located& at) {
    size_t index = 0;
    if (r_.read_choice(at, "action", kActions, index) && index == 1) return policy::AuthzAction::kDeny;
    return policy::AuthzAction::kAllow;
  }

  void load_rules(const Located& at, std::vector<policy::AuthzRule>& rules) {
    auto list = r_.read_list(at);
    if (!list) return;
    for (const Located& item : *list) {
      auto fields = r_.read_map(item, {"from", "to"});
      if (!fields) continue;
      policy::AuthzRule rule;
      if (auto v = fields->get("from")) {
        if (auto sources = r_.read_list(*v))
          for (const Located& s : *sources) load_source(s, rule.from);
      }
      if (auto v = fields->get("to")) {
        if (auto operations = r_.read_list(*v))
          for (const Located& o : *operations) load_operation(o, rule.to);
      }
      rules.push_back(std::move(rule));
    }
  }

  void load_source(const Located& at, std::vector<policy::AuthzSource>& out) {
    auto fields = r_.read_map(at, {"identities", "namespaces", "ip_blocks"});
    if (!fields) return;
    policy::AuthzSource source;
    strings(fields->get("identities"), source.identities, check_authz_identity);
    strings(fields->get("namespaces"), source.namespaces, check_name);
    strings(fields->get("ip_blocks"), source.ip_blocks, check_ip_block);
    // Judged by what is written, so a bad value is not also reported as missing.
    if (fields->present({"identities", "namespaces", "ip_blocks"}).empty())
      r_.error(at, "set at least one of \"identities\", \"namespaces\" or \"ip_blocks\"");
    out.push_back(std::move(source));
  }

  void load_operation(const Located& at, std::vector<policy::AuthzOperation>& out) {
    auto fields = r_.read_map(at, {"methods", "paths", "ports"});
    if (!fields) return;
    policy::AuthzOperation operation;
    strings(fields->get("methods"), operation.methods, check_method);
    strings(fields->get("paths"), operation.paths, check_authz_path);
    if (auto v = fields->get("ports")) {
      if (auto list = r_.read_list(*v)) {
        for (const Located& item : *list) {
          uint32_t port = 0;
          if (r_.read_integer(item, 1, 65535, port)) operation.ports.push_back(port);
        }
      }
    }
    if (fields->present({"methods", "paths", "ports"}).empty())
      r_.error(at, "set at least one of \"methods\", \"paths\" or \"ports\"");
    out.push_back(std::move(operation));
  }

  void strings(const std::optional<Located>& at, std::vector<std::string>& out,
               Problem (*check)(std::string_view)) {
    if (!at) return;
    auto list = r_.read_list(*at);
    if (!list) return;
    for (const Located& item : *list) {
      std::string value;
      if (r_.read_string(item, value) && r_.check(item, check(value))) out.push_back(std::move(value));
    }
  }

  Reader& r_;
};

}  // namespace

void load_authorization(Reader& reader, const Located& at, policy::AuthorizationConfig& out) {
  AuthorizationLoader(reader).load(at, out);
}

}  // namespace trellis::proxy::config_yaml
