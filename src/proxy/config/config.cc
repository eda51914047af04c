// Reading the bootstrap file: its top level, admin, access log, control
// plane, listeners and virtual hosts (clusters and routes have files of their
// own), and socket addresses.
#include "proxy/config/config.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <optional>
#include <set>
#include <sstream>
#include <string_view>
#include <unordered_map>
#include <utility>

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include "common/spiffe.h"
#include "proxy/config/checks.h"
#include "proxy/config/loader.h"
#include "proxy/config/reader.h"

namespace trellis::proxy {
namespace {

using config_yaml::ClusterIndex;
using config_yaml::Fields;
using config_yaml::Located;
using config_yaml::Reader;
using config_yaml::to_one_based;

constexpr std::string_view kDefaultAdminAddress = "127.0.0.1:9901";

bool is_any_address(const net::SocketAddress& a) {
  if (a.family() == AF_INET) {
    return reinterpret_cast<const sockaddr_in*>(&a.storage)->sin_addr.s_addr == htonl(INADDR_ANY);
  }
  const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&a.storage);
  return IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr);
}

uint16_t port_of(const net::SocketAddress& a) {
  if (a.family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&a.storage)->sin_port);
  return ntohs(reinterpret_cast<const sockaddr_in6*>(&a.storage)->sin6_port);
}

// Two sockets that could not both be bound: same family and port, and the same
// IP or a wildcard IP on either side.
bool addresses_overlap(const net::SocketAddress& a, const net::SocketAddress& b) {
  if (a.family() != b.family() || port_of(a) != port_of(b)) return false;
  return a == b || is_any_address(a) || is_any_address(b);
}

std::string address_conflict(const net::SocketAddress& address, const net::SocketAddress& other,
                             std::string_view owner) {
  if (address == other)
    return "address " + in_quotes(address.text) + " is already used by " + std::string(owner);
  return "address " + in_quotes(address.text) + " overlaps " + std::string(owner) + " (" + other.text + ")";
}

class Loader {
 public:
  Loader(std::string file, std::vector<ConfigError>& errors) : r_(std::move(file), errors) {}

  void load(const YAML::Node& root, ProxyConfig& config) {
    Located at{root, "", root.Mark(), root.Mark()};
    auto fields = r_.read_map(
        at, {"zone", "admin", "access_log", "tracing", "drain_timeout", "max_connections", "max_heap_bytes",
             "mesh_protocol", "listeners", "clusters", "control_plane", "mtls"});
    if (!fields) return;
    if (auto v = fields->get("zone")) r_.read_name(*v, config.zone);
    bool admin_ok = true;
    if (auto v = fields->get("admin")) admin_ok = load_admin(*v, config.admin);
    if (auto v = fields->get("access_log")) load_access_log(*v, config.access_log);
    if (auto v = fields->get("tracing")) load_tracing(*v, config.tracing);
    if (auto v = fields->get("drain_timeout")) r_.read_duration(*v, config.drain_timeout);
    if (auto v = fields->get("max_connections"))
      r_.read_integer(*v, 1, kMaxMaxConnections, config.max_connections);
    if (auto v = fields->get("max_heap_bytes");
        v && r_.read_integer(*v, 0, int64_t{1} << 50, config.max_heap_bytes.emplace())) {
      if (*config.max_heap_bytes != 0 && *config.max_heap_bytes < (uint64_t{16} << 20))
        r_.error(*v, "below 16 MiB, the proxy could not even start (0 turns the limit off)");
    }
    if (auto v = fields->get("mesh_protocol")) {
      static constexpr std::array<std::string_view, 2> kProtocols = {"http2", "downstream"};
      size_t chosen = 0;
      if (r_.read_choice(*v, "mesh_protocol", kProtocols, chosen))
        config.mesh_protocol = chosen == 0 ? MeshProtocol::kHttp2 : MeshProtocol::kDownstream;
    }
    // Clusters first, so that routes can be resolved wherever they appear in the file.
    if (auto v = fields->get("clusters")) config_yaml::load_clusters(r_, *v, config.clusters, clusters_);
    // A broken admin address is reported once; listeners are not blamed for clashing with the default.
    const net::SocketAddress* admin = admin_ok ? &config.admin.address : nullptr;
    if (auto v = fields->get("listeners")) load_listeners(*v, admin, config.listeners);
    if (auto v = fields->get("control_plane")) load_control_plane(*v, config.control_plane);
    if (auto v = fields->get("mtls")) {
      load_mtls(*v, config.mtls);
      if (config.control_plane.enabled())
        r_.error(*v,
                 "a proxy with control_plane gets its certificate from the control plane: leave mtls out "
                 "(mtls files are for proxies configured without one)");
    }
    if (!config.mtls.enabled()) require_no_mtls(*fields, config);
    // The node's zone is the proxy's locality unless the file says otherwise.
    if (!fields->get("zone")) config.zone = config.control_plane.zone;
  }

 private:
  bool load_admin(const Located& at, AdminConfig& admin) {
    auto fields = r_.read_map(at, {"address"});
    if (!fields) return false;
    if (auto v = fields->get("address")) return r_.read_address(*v, admin.address);
    return true;
  }

  void load_control_plane(const Located& at, ControlPlaneConfig& cp) {
    auto fields = r_.read_map(at, {"address", "node", "instance", "outbound_address", "upstream_services",
                                   "trust_bundle", "join_token_file", "trust_domain"});
    if (!fields) return;
    if (auto v = r_.required(*fields, "address")) r_.read_address(*v, cp.address);
    for (auto [key, out] :
         {std::pair{"trust_bundle", &cp.trust_bundle}, std::pair{"join_token_file", &cp.join_token_file}}) {
      if (auto v = r_.required(*fields, key); v && r_.read_string(*v, *out) && out->empty())
        r_.error(*v, "must name a file");
    }
    if (auto v = fields->get("trust_domain")) {
      if (r_.read_string(*v, cp.trust_domain)) {
        if (auto problem = SpiffeId::check_trust_domain(cp.trust_domain)) r_.error(*v, *problem);
      }
    }
    if (auto node = r_.required(*fields, "node")) {
      if (auto nf = r_.read_map(*node, {"id", "service", "namespace", "zone"})) {
        if (auto v = r_.required(*nf, "service")) r_.read_name(*v, cp.service);
        if (auto v = nf->get("id")) r_.read_name(*v, cp.node_id);
        if (auto v = nf->get("namespace")) r_.read_name(*v, cp.namespace_);
        if (auto v = nf->get("zone")) r_.read_name(*v, cp.zone);
      }
    }
    if (auto inst = fields->get("instance")) {
      if (auto f = r_.read_map(*inst, {"address", "app_address", "weight", "labels", "ttl", "ports"})) {
        cp.has_instance = true;
        if (auto v = r_.required(*f, "address")) r_.read_address(*v, cp.instance_address);
        if (auto v = r_.required(*f, "app_address")) r_.read_address(*v, cp.app_address);
        if (auto v = f->get("weight")) r_.read_integer(*v, 1, kMaxWeight, cp.weight);
        if (auto v = f->get("ttl")) r_.read_positive_duration(*v, cp.ttl);
        if (auto v = f->get("labels")) load_labels(*v, cp.labels);
        if (auto v = f->get("ports")) load_ports(*v, cp.ports);
      }
    }
    if (auto v = fields->get("outbound_address")) cp.has_outbound = r_.read_address(*v, cp.outbound_address);
    if (auto v = fields->get("upstream_services")) {
      if (auto items = r_.read_list(*v)) {
        for (const Located& item : *items) {
          std::string name;
          if (r_.read_string(item, name)) {
            // "service" or "service.namespace"
            bool ok = !name.empty() && name.front() != '.' && name.back() != '.' &&
                      std::count(name.begin(), name.end(), '.') <= 1 &&
                      std::all_of(name.begin(), name.end(), [](char c) {
                        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
                      });
            if (!ok)
              r_.error(item, "expected \"service\" or \"service.namespace\" (lower case, digits, \"-\")");
            else
              cp.upstream_services.push_back(std::move(name));
          }
        }
      }
    }
  }

  // Listeners that serve mTLS and endpoints reached over it need the proxy's
  // own certificate.
  void require_no_mtls(const Fields& fields, const ProxyConfig& config) {
    const char* kWhy =
        "needs the proxy's certificate: set mtls (certificate_chain, private_key, trust_bundle)";
    auto listeners = fields.get("listeners");
    for (const ListenerConfig& l : config.listeners) {
      if ((l.tls == ListenerTls::kStrict || l.tls == ListenerTls::kPermissive) && listeners)
        r_.error(*listeners, "listener \"" + l.name + "\" tls " + kWhy);
    }
    auto clusters = fields.get("clusters");
    for (const ClusterConfig& c : config.clusters) {
      for (const EndpointConfig& e : c.endpoints) {
        if (!e.identity.empty() && clusters)
          r_.error(*clusters, "cluster \"" + c.name + "\" endpoint " + e.address.text + " identity " + kWhy);
      }
    }
  }

  // A gateway's certificates: the first is served when the client asks for
  // no name or one no other entry names; each other entry names its own.
  void load_server_certificates(const Located& at, std::vector<ServerCertificateConfig>& out) {
    auto items = r_.read_list(at);
    if (!items) return;
    if (items->empty()) r_.error(at, "at least one certificate is needed");
    std::set<std::string> names;
    for (size_t i = 0; i < items->size(); ++i) {
      const Located& item = (*items)[i];
      ServerCertificateConfig c;
      auto fields = r_.read_map(item, {"server_names", "certificate_chain", "private_key"});
      if (!fields) continue;
      for (auto [key, target] :
           {std::pair{"certificate_chain", &c.certificate_chain}, std::pair{"private_key", &c.private_key}}) {
        if (auto v = r_.required(*fields, key); v && r_.read_string(*v, *target) && target->empty())
          r_.error(*v, "must name a file");
      }
      if (auto v = fields->get("server_names")) {
        if (auto list = r_.read_list(*v)) {
          for (const Located& n : *list) {
            std::string name;
            if (!r_.read_string(n, name)) continue;
            name = ascii_lower(name);
            bool dns = !check_domain(name) && name != "*" && name.find(':') == std::string::npos &&
                       (name.size() < 2 || name.compare(name.size() - 2, 2, ".*") != 0);
            if (!dns) {
              r_.error(n, "expected a DNS name, or \"*.\" and a DNS name");
            } else if (!names.insert(name).second) {
              r_.error(n, "server name " + in_quotes(name) + " is served by an earlier certificate");
            } else {
              c.server_names.push_back(std::move(name));
            }
          }
        }
      } else if (i > 0) {
        r_.error(item, "server_names is required after the first certificate (the first is the default)");
      }
      out.push_back(std::move(c));
    }
  }

  void load_mtls(const Located& at, MtlsFilesConfig& mtls) {
    auto fields = r_.read_map(at, {"certificate_chain", "private_key", "trust_bundle"});
    if (!fields) return;
    for (auto [key, out] :
         {std::pair{"certificate_chain", &mtls.certificate_chain},
          std::pair{"private_key", &mtls.private_key}, std::pair{"trust_bundle", &mtls.trust_bundle}}) {
      if (auto v = r_.required(*fields, key); v && r_.read_string(*v, *out) && out->empty())
        r_.error(*v, "must name a file");
    }
  }

  void load_ports(const Located& at, std::vector<ServicePort>& ports) {
    auto items = r_.read_list(at);
    if (!items) return;
    std::vector<Located> where;
    for (const Located& item : *items) {
      auto f = r_.read_map(item, {"name", "port", "target_port", "protocol"});
      if (!f) continue;
      ServicePort p;
      bool ok = true;
      if (auto v = f->get("name")) ok &= r_.read_string(*v, p.name);
      auto number = r_.required(*f, "port");
      ok &= number && r_.read_integer(*number, 1, 65535, p.port);
      p.target_port = p.port;  // the application listens on the Service's port unless told
      if (auto v = f->get("target_port")) ok &= r_.read_integer(*v, 1, 65535, p.target_port);
      if (auto v = f->get("protocol")) ok &= r_.read_string(*v, p.protocol);
      if (!ok) continue;  // reported; the list's own rules are checked on what was read
      ports.push_back(std::move(p));
      where.push_back(item);
    }
    for (const ServicePortProblem& problem : check_service_ports(ports)) {
      if (where.empty()) break;
      r_.error(where[std::min(problem.index, where.size() - 1)],
               (problem.field.empty() ? "" : problem.field + ": ") + problem.message);
    }
  }

  void load_labels(const Located& at, std::map<std::string, std::string>& labels) {
    if (at.node.IsNull()) return;
    if (!at.node.IsMap()) {
      r_.error(at, "expected a map of label names to values");
      return;
    }
    for (auto it = at.node.begin(); it != at.node.end(); ++it) {
      if (!it->first.IsScalar() || !it->second.IsScalar()) {
        r_.error(it->first.Mark(), at.path, "labels are name: value pairs of strings");
        continue;
      }
      labels[it->first.Scalar()] = it->second.Scalar();
    }
  }

  void load_tracing(const Located& at, TracingConfig& tracing) {
    auto fields = r_.read_map(at, {"collector", "sampling"});
    if (!fields) return;
    if (auto v = r_.required(*fields, "collector")) r_.read_address(*v, tracing.collector);
    if (auto v = fields->get("sampling")) {
      uint32_t numerator = 0, denominator = 1;
      if (r_.read_percent(*v, numerator, denominator))
        tracing.sampling_per_million = config_yaml::per_million(numerator, denominator);
    }
  }

  void load_access_log(const Located& at, AccessLogConfig& log) {
    auto fields = r_.read_map(at, {"path", "format", "fields", "template"});
    if (!fields) return;
    static constexpr std::array<std::string_view, 2> kFormats = {"json", "text"};
    size_t format = 0;
    if (auto v = fields->get("format")) r_.read_choice(*v, "format", kFormats, format);
    log.format.text = format == 1;
    if (auto v = fields->get("fields")) {
      if (log.format.text)
        r_.key_error(*v, "\"fields\" is for format json (a text line says what its template says)");
      if (auto items = r_.read_list(*v)) {
        for (const Located& item : *items) {
          std::string name;
          if (!r_.read_string(item, name)) continue;
          Result<LogField> field = parse_listed_log_field(name, log.format.fields);
          if (!field) {
            r_.error(item, field.error().message);
          } else {
            log.format.fields.push_back(*field);
          }
        }
        if (items->empty())
          r_.error(*v, "list at least one field (leave \"fields\" out for the default ones)");
      }
    }
    if (auto v = fields->get("template")) {
      std::string text;
      if (!log.format.text) {
        r_.key_error(*v, "\"template\" is for format text");
      } else if (r_.read_string(*v, text)) {
        Result<LogFormat> parsed = parse_log_template(text);
        if (!parsed) {
          r_.error(*v, parsed.error().message);
        } else {
          log.format = std::move(*parsed);
        }
      }
    } else if (log.format.text) {
      r_.error(at, "format text needs a \"template\"");
    }
    if (auto v = fields->get("path")) {
      if (r_.read_string(*v, log.path) && log.path.empty()) {
        r_.error(*v, "must not be empty (leave out access_log to turn logging off)");
      }
    }
  }

  void load_listeners(const Located& at, const net::SocketAddress* admin,
                      std::vector<ListenerConfig>& listeners) {
    auto items = r_.read_list(at);
    if (!items) return;
    std::unordered_map<std::string, size_t> names;
    for (const Located& item : *items) {
      ListenerConfig listener;
      auto fields = r_.read_map(
          item, {"name", "address", "protocol", "direction", "idle_timeout", "max_connections",
                 "request_head_timeout", "request_body_timeout", "request_body_min_rate", "detect_timeout",
                 "virtual_hosts", "cluster", "authorization", "tls", "client_identity_header"});
      if (fields) {
        if (auto v = r_.required(*fields, "name"); v && r_.read_name(*v, listener.name)) {
          if (!names.emplace(listener.name, listeners.size()).second) {
            r_.error(*v, "duplicate listener name " + in_quotes(listener.name));
          }
        }
        if (auto v = r_.required(*fields, "address"); v && r_.read_address(*v, listener.address)) {
          check_listener_address(*v, listener.address, admin, listeners);
        }
        load_listener_body(*fields, listener);
      }
      listeners.push_back(std::move(listener));
    }
  }

  void check_listener_address(const Located& at, const net::SocketAddress& address,
                              const net::SocketAddress* admin, const std::vector<ListenerConfig>& earlier) {
    if (admin && addresses_overlap(address, *admin)) {
      r_.error(at, address_conflict(address, *admin, "the admin listener"));
      return;
    }
    for (const ListenerConfig& other : earlier) {
      if (!other.address.text.empty() && addresses_overlap(address, other.address)) {
        std::string owner = other.name.empty() ? "another listener" : "listener " + in_quotes(other.name);
        r_.error(at, address_conflict(address, other.address, owner));
        return;
      }
    }
  }

  void load_listener_body(const Fields& fields, ListenerConfig& listener) {
    bool protocol_known = true;
    if (auto v = fields.get("protocol")) {
      std::string protocol;
      protocol_known = r_.read_string(*v, protocol);
      if (protocol == "http") {
        listener.protocol = ListenerProtocol::kHttp;
      } else if (protocol == "tcp") {
        listener.protocol = ListenerProtocol::kTcp;
      } else if (protocol == "auto") {
        listener.protocol = ListenerProtocol::kAuto;
      } else if (protocol_known) {
        r_.error(*v, "unknown protocol " + in_quotes(protocol) + " (expected http, tcp or auto)");
        protocol_known = false;
      }
    }
    if (auto v = fields.get("direction")) {
      std::string direction;
      if (r_.read_string(*v, direction)) {
        if (direction == "inbound") {
          listener.direction = Direction::kInbound;
        } else if (direction != "outbound") {
          r_.error(*v, "unknown direction " + in_quotes(direction) + " (expected inbound or outbound)");
        }
      }
    }
    if (auto v = fields.get("idle_timeout")) r_.read_positive_duration(*v, listener.idle_timeout);
    if (auto v = fields.get("max_connections"))
      r_.read_integer(*v, 1, kMaxMaxConnections, listener.max_connections);
    if (auto v = fields.get("request_head_timeout"); v && listener.protocol == ListenerProtocol::kTcp) {
      r_.key_error(*v, "\"request_head_timeout\" is only for http listeners");
    } else if (v) {
      r_.read_positive_duration(*v, listener.request_head_timeout);
    }
    for (const char* key : {"request_body_timeout", "request_body_min_rate"}) {
      if (auto v = fields.get(key); v && listener.protocol == ListenerProtocol::kTcp)
        r_.key_error(*v, in_quotes(key) + " is only for http listeners");
    }
    if (listener.protocol != ListenerProtocol::kTcp) {
      if (auto v = fields.get("request_body_timeout")) r_.read_duration(*v, listener.request_body_timeout);
      if (auto v = fields.get("request_body_min_rate"))
        r_.read_integer(*v, 0, 1'000'000'000, listener.request_body_min_rate);
    }
    if (auto v = fields.get("detect_timeout"); v && listener.protocol != ListenerProtocol::kAuto) {
      r_.key_error(*v, "\"detect_timeout\" is only for auto listeners");
    } else if (v) {
      r_.read_positive_duration(*v, listener.detect_timeout);
    }
    if (auto v = fields.get("authorization")) load_authorization(r_, *v, listener.authorization);
    if (auto v = fields.get("tls"); v && listener.protocol == ListenerProtocol::kTcp) {
      r_.key_error(*v, "\"tls\" is only for http listeners");
    } else if (v) {
      if (auto tls = r_.read_map(*v, {"mode", "certificates"})) {
        static constexpr std::array<std::string_view, 3> kModes = {"STRICT", "PERMISSIVE", "SIMPLE"};
        static constexpr std::array<ListenerTls, 3> kValues = {ListenerTls::kStrict, ListenerTls::kPermissive,
                                                               ListenerTls::kSimple};
        size_t index = 0;
        listener.tls = ListenerTls::kStrict;
        if (auto m = tls->get("mode"); m && r_.read_choice(*m, "mode", kModes, index))
          listener.tls = kValues[index];
        auto certificates = tls->get("certificates");
        if (listener.tls == ListenerTls::kSimple) {
          if (auto c = r_.required(*tls, "certificates")) load_server_certificates(*c, listener.certificates);
        } else if (certificates) {
          r_.key_error(
              *certificates,
              "\"certificates\" is only for mode SIMPLE; STRICT and PERMISSIVE serve the proxy's own "
              "mesh certificate");
        }
      }
    }
    if (auto v = fields.get("client_identity_header");
        v && r_.read_string(*v, listener.client_identity_header)) {
      std::string& name = listener.client_identity_header;
      name = ascii_lower(name);
      if (!name.empty()) {
        if (Problem problem = check_header_name(name)) r_.error(*v, *problem);
      }
    }
    auto virtual_hosts = fields.get("virtual_hosts");
    auto cluster = fields.get("cluster");
    // Which of these belong depends on the protocol; with that in doubt, any verdict would be a guess.
    if (!protocol_known) return;
    if (listener.protocol != ListenerProtocol::kTcp) {
      if (cluster && listener.protocol == ListenerProtocol::kHttp) {
        r_.key_error(*cluster,
                     "\"cluster\" is only for tcp and auto listeners; http listeners route through "
                     "virtual_hosts");
      }
      if (auto v = r_.required(fields, "virtual_hosts")) load_virtual_hosts(*v, listener);
    }
    if (listener.protocol != ListenerProtocol::kHttp) {
      if (virtual_hosts && listener.protocol == ListenerProtocol::kTcp) {
        r_.key_error(*virtual_hosts, "\"virtual_hosts\" is only for http and auto listeners");
      }
      if (auto v = r_.required(fields, "cluster"); v && r_.read_string(*v, listener.cluster)) {
        clusters_.resolve(r_, *v, listener.cluster, listener.cluster_index);
      }
    }
  }

  void load_virtual_hosts(const Located& at, ListenerConfig& listener) {
    auto items = r_.read_list(at);
    if (!items) return;
    if (items->empty()) {
      r_.error(at, "an http listener needs at least one virtual host");
      return;
    }
    std::unordered_map<std::string, size_t> names;
    // domain -> who claimed it first, for the error message
    std::unordered_map<std::string, std::string> domain_owners;
    for (const Located& item : *items) {
      VirtualHostConfig vhost;
      auto fields = r_.read_map(item, {"name", "domains", "routes"});
      if (fields) {
        if (auto v = r_.required(*fields, "name"); v && r_.read_name(*v, vhost.name)) {
          if (!names.emplace(vhost.name, listener.virtual_hosts.size()).second) {
            r_.error(*v, "duplicate virtual host name " + in_quotes(vhost.name));
          }
        }
        std::string owner = vhost.name.empty() ? item.path : "virtual host " + in_quotes(vhost.name);
        if (auto v = r_.required(*fields, "domains")) load_domains(*v, owner, domain_owners, vhost.domains);
        if (auto v = r_.required(*fields, "routes"))
          config_yaml::load_routes(r_, *v, clusters_, vhost.routes);
      }
      listener.virtual_hosts.push_back(std::move(vhost));
    }
  }

  void load_domains(const Located& at, const std::string& owner,
                    std::unordered_map<std::string, std::string>& owners, std::vector<std::string>& domains) {
    auto items = r_.read_list(at);
    if (!items) return;
    if (items->empty()) {
      r_.error(at, "must list at least one domain (\"*\" matches any)");
      return;
    }
    for (const Located& item : *items) {
      std::string domain;
      if (!r_.read_string(item, domain)) continue;
      // Host matching is case-insensitive; storing one case lets the router compare bytes.
      domain = ascii_lower(domain);
      if (!r_.check(item, check_domain(domain))) continue;
      auto [it, inserted] = owners.emplace(domain, owner);
      if (!inserted) {
        if (it->second == owner) {
          r_.error(item, "duplicate domain " + in_quotes(domain));
        } else {
          r_.error(item, "domain " + in_quotes(domain) + " is already used by " + it->second);
        }
        continue;
      }
      domains.push_back(std::move(domain));
    }
  }

  Reader r_;
  ClusterIndex clusters_;
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
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
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

ConfigError file_error(const std::string& file, std::string message) {
  return ConfigError{file, 0, 0, "", std::move(message)};
}

}  // namespace

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
  net::parse_socket_address(kDefaultAdminAddress, result.config.admin.address, ignored);

  std::vector<YAML::Node> documents;
  try {
    if (auto stall = find_parser_stall(text)) {
      std::string message = "invalid YAML";
      if (stall->pos >= 0 && static_cast<size_t>(stall->pos) < text.size()) {
        message = "unexpected " + in_quotes(text.substr(stall->pos, 1));
      }
      result.errors.push_back(ConfigError{source_name, to_one_based(stall->line), to_one_based(stall->column),
                                          "", std::move(message)});
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
  std::stable_sort(result.errors.begin(), result.errors.end(),
                   [](const ConfigError& a, const ConfigError& b) {
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

}  // namespace trellis::proxy
