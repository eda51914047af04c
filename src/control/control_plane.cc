#include "control/control_plane.h"

#include <spdlog/spdlog.h>

#include <sys/stat.h>

#include <filesystem>
#include <set>

#include "common/duration.h"
#include "common/spiffe.h"
#include "common/text.h"
#include "control/ca/files.h"
#include "control/mesh_check.h"
#include "control/proxy_stats.h"
#include "control/resource.h"
#include "control/route_status.h"
#include "control/timed_store.h"
#include "control/ui_files.h"
#include "net/address.h"
#include "net/tls_context.h"
#include "net/tls_pem.h"
#include "net/tls_transport.h"

namespace trellis::control {
namespace {

// How long a proxy's admin endpoint has to answer trellis-control's questions.
constexpr auto kProxyDeadline = std::chrono::seconds(1);
// Changes within this window go out as one push.
constexpr auto kPushDelay = std::chrono::milliseconds(10);
constexpr auto kExpiryInterval = std::chrono::seconds(1);
// How long an instance restored at start stays live without a heartbeat, if
// its TTL is shorter: longer than a sidecar's longest reconnect backoff (15 s,
// proxy/discovery/discovery_client.cc), so every sidecar that is still up
// reconnects before its instance could expire.
constexpr auto kRestartGrace = std::chrono::seconds(20);
// The control plane's serving certificate: renewed in-process at half-life.
constexpr std::chrono::seconds kServerLifetime{30 * 24 * 3600};
// Workload certificates when MeshConfig sets no mtls.certificateLifetime.
constexpr std::chrono::seconds kDefaultWorkloadLifetime{24 * 3600};

int64_t to_ms(SystemTime t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

http::ApiResponse json_response(int status, const Json& body) {
  return {status, "application/json", body.dump(2, ' ', false, Json::error_handler_t::replace) + "\n", {}};
}

http::ApiResponse error_response(int status, std::string message,
                                 const std::vector<FieldError>& errors = {}) {
  Json body{{"error", std::move(message)}};
  if (!errors.empty()) {
    Json list = Json::array();
    for (const FieldError& e : errors) list.push_back(Json{{"path", e.path}, {"message", e.message}});
    body["details"] = std::move(list);
  }
  return json_response(status, body);
}

// GET /ui/<file>: the dashboard's page, script and style, to anyone (they
// hold no data: the page asks for a token and calls the API with it). The
// policy lets the page load nothing but these files and call nothing but
// this server, and no other site frame it.
http::ApiResponse ui_response(std::string_view path) {
  if (path == "/" || path == "/ui")
    return {308, "text/plain; charset=utf-8", "/ui/\n", {{"location", "/ui/"}}};
  std::string_view name = path.substr(4);  // after "/ui/"
  if (name.empty()) name = "index.html";
  const UiFile* file = find_ui_file(name);
  if (file == nullptr) return error_response(404, "no such file: " + std::string(path));
  std::string type = name.ends_with(".html")  ? "text/html; charset=utf-8"
                     : name.ends_with(".js")  ? "text/javascript; charset=utf-8"
                     : name.ends_with(".css") ? "text/css; charset=utf-8"
                     : name.ends_with(".svg") ? "image/svg+xml"
                                              : "application/octet-stream";
  return {200,
          std::move(type),
          std::string(file->body),
          {{"content-security-policy",
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"},
           {"x-content-type-options", "nosniff"},
           {"referrer-policy", "no-referrer"},
           {"cache-control", "no-cache"}}};
}

// Status for a Registry or Store error, by the word it starts with.
int status_for(const std::string& message) {
  if (message.rfind("invalid", 0) == 0) return 400;
  if (message.rfind("not found", 0) == 0) return 404;
  if (message.rfind("conflict", 0) == 0) return 409;
  return 500;
}

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> parts;
  while (!path.empty()) {
    if (path.front() == '/') {
      path.remove_prefix(1);
      continue;
    }
    size_t slash = path.find('/');
    parts.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash);
  }
  return parts;
}

Json ports_json(const std::vector<ServicePort>& ports) {
  Json list = Json::array();
  for (const ServicePort& p : ports) {
    Json port{{"name", p.name}, {"port", p.port}, {"target_port", p.target_port}};
    if (!p.protocol.empty()) port["protocol"] = p.protocol;
    list.push_back(std::move(port));
  }
  return list;
}

Json instance_json(const Instance& i) {
  return Json{{"id", i.id},
              {"service", i.service},
              {"namespace", i.namespace_},
              {"address", i.address},
              {"zone", i.zone},
              {"weight", i.weight},
              {"labels", i.labels},
              {"ttl_seconds", i.ttl_seconds},
              {"last_heartbeat_ms", i.last_heartbeat_ms},
              {"registered_by", i.registered_by},
              {"ports", ports_json(i.ports)}};
}

Json token_json(const TokenRecord& t, int64_t now_ms) {
  Json out{{"id", t.id},
           {"kind", t.kind},
           {"description", t.description},
           {"createdAt", format_utc(t.created_ms)},
           {"state", token_state_name(token_state(t, now_ms))}};
  if (t.kind == token_kind_name(TokenKind::kJoin)) {
    out["namespace"] = t.namespace_;
    out["serviceAccount"] = t.service_account;
  }
  if (t.expires_ms != 0) out["expiresAt"] = format_utc(t.expires_ms);
  if (t.revoked_ms != 0) out["revokedAt"] = format_utc(t.revoked_ms);
  if (t.bootstrap) out["bootstrap"] = true;
  return out;
}

// RFC 6750: a bearer challenge, with error="invalid_token" when one was sent.
http::ApiResponse unauthorized(const std::string& reason, bool token_sent) {
  http::ApiResponse r = error_response(401, "unauthorized: " + reason);
  r.headers.emplace_back("www-authenticate", token_sent
                                                 ? "Bearer realm=\"trellis-control\", error=\"invalid_token\""
                                                 : "Bearer realm=\"trellis-control\"");
  return r;
}

// The token of "Authorization: Bearer <token>" ("" when absent); false when
// the field is there but is not a bearer credential.
bool bearer_token(std::string_view field, std::string_view& token) {
  token = {};
  if (field.empty()) return true;
  size_t space = field.find(' ');
  if (space == std::string_view::npos || !http::iequals(field.substr(0, space), "bearer")) return false;
  token = field.substr(space);
  while (!token.empty() && (token.front() == ' ' || token.front() == '\t')) token.remove_prefix(1);
  while (!token.empty() && (token.back() == ' ' || token.back() == '\t')) token.remove_suffix(1);
  return !token.empty();
}

}  // namespace

Result<std::string> ControlPlane::new_admin_token(const std::string& data_dir) {
  auto store = SqliteStore::open(data_dir);
  if (!store.ok()) return Error{"store: " + store.error().message};
  SystemWallClock clock;
  OpenSslSecretSource secrets;
  Tokens tokens(**store, clock, secrets);
  return rotate_admin_token(tokens, data_dir);
}

Result<std::unique_ptr<ControlPlane>> ControlPlane::create(net::EventLoop& loop,
                                                           const ControlPlaneOptions& options) {
  auto store = SqliteStore::open(options.data_dir);
  if (!store.ok()) return Error{"store: " + store.error().message};
  std::unique_ptr<ControlPlane> cp(new ControlPlane(loop, std::move(*store)));
  cp->options_ = options;
  cp->started_ms_ = cp->clock_.now_ms();
  auto written = bootstrap_admin_token(*cp->tokens_, options.data_dir);
  if (!written.ok()) return Error{"admin token: " + written.error().message};
  std::string path = cp->data_file(kAdminTokenFile);
  if (!written->empty()) {
    spdlog::info("admin token written to {} (the trellis CLI takes it with --token-file)", *written);
  } else if (!std::filesystem::exists(path)) {
    spdlog::info("no {}: trellis-control --data-dir {} --new-admin-token issues a new admin token", path,
                 options.data_dir);
  }
  auto ca = options.ca_certificate_file.empty()
                ? CertificateAuthority::open(cp->data_file("ca"), options.trust_domain, cp->clock_)
                : CertificateAuthority::with_intermediate(options.ca_certificate_file, options.ca_key_file,
                                                          options.trust_domain, cp->clock_);
  if (!ca) return Error{"CA: " + ca.error().message};
  cp->ca_ = std::move(*ca);
  CaStatus ca_status = cp->ca_->status();
  spdlog::info("mesh CA ({}) for trust domain {}: issuing from {}", ca_mode_name(ca_status.mode),
               ca_status.trust_domain, ca_status.issuer.subject);
  auto tls = cp->write_server_credentials();
  if (!tls) return Error{"serving certificate: " + tls.error().message};
  auto port = cp->push_.start(options.grpc_address,
                              {cp->data_file(kServerKeyFile), cp->data_file(kServerCertificateFile),
                               cp->data_file(kTrustBundleFile)});
  if (!port.ok()) return Error{port.error().message};
  cp->grpc_port_ = *port;
  return cp;
}

ControlPlane::ControlPlane(net::EventLoop& loop, std::unique_ptr<SqliteStore> store)
    : loop_(loop),
      store_(std::make_unique<TimedStore>(std::move(store), metrics_)),
      push_(*this),
      push_timer_(loop,
                  [this] {
                    push_pending_.store(false);
                    uint64_t revision;
                    {
                      std::lock_guard lock(mu_);
                      revision = store_->revision();
                    }
                    push_.push_all();  // from a view at least this recent
                    pushed_revision_.store(revision);
                  }),
      expiry_timer_(loop, [this] { expire(); }),
      server_renewal_timer_(loop, [this] { renew_server_credentials(); }) {
  registry_ = std::make_unique<Registry>(*store_, clock_, random_);
  tokens_ = std::make_unique<Tokens>(*store_, clock_, secrets_);
  registry_->set_change_listener([this](const std::string&, const std::string&) { request_push(); });
  // Proxies could not heartbeat while the control plane was down: their
  // instances get time to reconnect before anything is removed.
  registry_->restart_ttls(std::chrono::duration_cast<std::chrono::milliseconds>(kRestartGrace).count());
  expiry_timer_.arm(kExpiryInterval);
}

ControlPlane::~ControlPlane() { shutdown(); }

std::string ControlPlane::data_file(const char* name) const {
  return (std::filesystem::path(options_.data_dir) / name).string();
}

Result<bool> ControlPlane::write_trust_bundle(const std::string& pem) const {
  return write_file_atomically(data_file(kTrustBundleFile), pem, 0644);
}

Result<bool> ControlPlane::write_server_credentials() {
  std::vector<std::string> names = {"localhost"};
  std::vector<std::string> addresses = {"127.0.0.1", "::1"};
  std::vector<std::string> authorities = options_.server_names;
  authorities.push_back(options_.grpc_address);
  authorities.push_back(options_.http_address);
  for (const std::string& authority : authorities) {
    std::optional<http::Authority> a = http::parse_authority(authority);
    if (!a) continue;
    if (!a->ip)
      names.push_back(a->host);
    else if (a->host != "0.0.0.0" && a->host != "::")  // a wildcard listen address names no one
      addresses.push_back(a->host);
  }
  std::sort(addresses.begin(), addresses.end());
  addresses.erase(std::unique(addresses.begin(), addresses.end()), addresses.end());
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  auto issued = ca_->issue_server(names, addresses, kServerLifetime);
  if (!issued) return Error{issued.error().message};
  std::string tls_dir = data_file("tls");
  std::error_code ec;
  std::filesystem::create_directories(tls_dir, ec);
  ::chmod(tls_dir.c_str(), 0700);
  const IssuedCertificate& c = issued->certificate;
  auto bundle = write_trust_bundle(c.trust_bundle_pem);
  if (!bundle) return bundle;
  auto key = write_file_atomically(data_file(kServerKeyFile), issued->private_key_pem, 0600);
  SecretText wipe(std::move(issued->private_key_pem));
  if (!key) return key;
  auto chain =
      write_file_atomically(data_file(kServerCertificateFile), c.certificate_pem + c.chain_pem, 0644);
  if (!chain) return chain;
  // The JSON API serves the same certificate. Clients are people and tools
  // (the CLI, curl, scripts) authenticated by bearer tokens: no client
  // certificate is asked for, and TLS 1.2 is allowed (ECDHE and AEAD only).
  net::TlsContextOptions api;
  api.role = net::TlsRole::kServer;
  api.certificate_chain_pem = c.certificate_pem + c.chain_pem;
  api.private_key_pem = wipe.view();
  api.client_certificate = net::ClientCertificate::kNone;
  api.allow_tls12 = true;
  api.alpn = {"http/1.1"};
  auto context = net::TlsContext::create(api);
  SecretText wipe_copy(std::move(api.private_key_pem));
  if (!context) return Error{"API TLS context: " + context.error().message};
  auto factory = net::TlsTransportFactory::server(std::move(*context));
  if (!factory) return Error{"API TLS: " + factory.error().message};
  api_transport_ = std::move(*factory);
  if (api_transport_listener_) api_transport_listener_(api_transport_);
  server_renew_at_ = c.not_before + (c.not_after - c.not_before) / 2;
  spdlog::info("serving certificate {} for the API and the proxies' stream, valid until {}", c.serial,
               format_utc(to_ms(c.not_after)));
  server_renewal_timer_.arm(std::chrono::hours(1));
  return true;
}

void ControlPlane::renew_server_credentials() {
  if (std::chrono::system_clock::now() < server_renew_at_) {
    server_renewal_timer_.arm(std::chrono::hours(1));
    return;
  }
  Result<bool> renewed = true;
  {
    std::lock_guard lock(mu_);
    renewed = write_server_credentials();
  }
  if (!renewed) {
    spdlog::error("cannot renew the serving certificate, retrying in a minute: {}", renewed.error().message);
    server_renewal_timer_.arm(std::chrono::minutes(1));
  }
}

std::chrono::seconds ControlPlane::workload_lifetime() {
  std::vector<Resource> configs;
  {
    std::lock_guard lock(mu_);
    configs = store_->list("MeshConfig", "");
  }
  for (const Resource& r : configs) {
    const Json* mtls = map_at(r.spec, "mtls");
    if (mtls == nullptr) continue;
    std::string text = string_at(*mtls, "certificateLifetime");
    if (text.empty()) continue;
    auto parsed = parse_duration(text);
    if (parsed) return std::chrono::duration_cast<std::chrono::seconds>(*parsed);
  }
  return kDefaultWorkloadLifetime;
}

Result<PushSource::Signed> ControlPlane::sign_proxy_certificate(std::string_view csr_pem,
                                                                const ProxyIdentity& identity) {
  auto id = SpiffeId::make(ca_->trust_domain(), identity.namespace_, identity.service_account);
  if (!id) return Error{id.error().message};
  std::chrono::seconds lifetime = workload_lifetime();
  Result<IssuedCertificate> issued = Error{""};
  std::string issuer;
  {
    std::lock_guard lock(mu_);  // against a rotation step
    issued = ca_->sign_workload(csr_pem, *id, lifetime);
    issuer = ca_->status().issuer.sha256_fingerprint;
  }
  if (!issued) return Error{issued.error().message};
  spdlog::info("certificate {} issued to {}, valid until {}", issued->serial, id->to_string(),
               format_utc(to_ms(issued->not_after)));
  Signed out;
  out.certificate.set_certificate_pem(std::move(issued->certificate_pem));
  out.certificate.set_chain_pem(std::move(issued->chain_pem));
  out.certificate.set_trust_bundle_pem(std::move(issued->trust_bundle_pem));
  out.issuer = std::move(issuer);
  return out;
}

void ControlPlane::shutdown() { push_.shutdown(); }

void ControlPlane::request_push() {
  // From any thread; the push itself runs on the main loop.
  if (push_pending_.exchange(true)) return;
  loop_.post([this] { push_timer_.arm(kPushDelay); });
}

void ControlPlane::expire() {
  std::vector<Instance> gone;
  {
    std::lock_guard lock(mu_);
    gone = registry_->expire();
  }
  for (const Instance& i : gone)
    spdlog::info("instance {} of {}.{} expired (no heartbeat for {}s)", i.id, i.service, i.namespace_,
                 i.ttl_seconds);
  expiry_timer_.arm(kExpiryInterval);
}

// ---- PushSource (gRPC threads) ------------------------------------------------

MeshView ControlPlane::mesh_view() {
  MeshView view;
  std::lock_guard lock(mu_);
  view.http_routes = store_->list("HTTPRoute", "");
  view.grpc_routes = store_->list("GRPCRoute", "");
  view.destination_policies = store_->list("DestinationPolicy", "");
  view.rate_limit_policies = store_->list("RateLimitPolicy", "");
  view.authorization_policies = store_->list("AuthorizationPolicy", "");
  view.mesh_configs = store_->list("MeshConfig", "");
  view.fault_injections = store_->list("FaultInjection", "");
  view.reference_grants = store_->list("ReferenceGrant", "");
  view.trust_domain = ca_->trust_domain();
  for (const ServiceCount& s : registry_->services()) {
    std::vector<Instance> live = registry_->instances_of(s.service, s.namespace_);
    view.instances.insert(view.instances.end(), live.begin(), live.end());
  }
  return view;
}

Result<bool> ControlPlane::proxy_connected(const v1::Hello& hello) {
  if (!hello.has_instance() || hello.instance().address().empty()) return false;
  Instance inst;
  inst.id = hello.node().id();
  inst.service = hello.node().service();
  inst.namespace_ = hello.node().namespace_().empty() ? "default" : hello.node().namespace_();
  inst.zone = hello.node().zone();
  inst.address = hello.instance().address();
  inst.weight = hello.instance().weight() == 0 ? 1 : hello.instance().weight();
  inst.ttl_seconds = hello.instance().ttl_seconds() == 0 ? 30 : hello.instance().ttl_seconds();
  for (const auto& [k, v] : hello.instance().labels()) inst.labels[k] = v;
  for (const v1::ServicePort& p : hello.instance().ports())
    inst.ports.push_back({p.name(), p.port(), p.target_port(), p.protocol()});
  inst.registered_by = hello.node().id();
  std::lock_guard lock(mu_);
  // A node id names one instance: a proxy may not take over (and so move or
  // remove) an instance of another service.
  auto held = registry_->find(inst.id);  // live ones only
  if (held && (held->service != inst.service || held->namespace_ != inst.namespace_)) {
    return Error{"the instance " + inst.id + " is registered for service " + held->service +
                 " in namespace " + held->namespace_ +
                 "; give this sidecar its own node id (control_plane.node_id)"};
  }
  auto r = registry_->register_instance(inst);
  if (!r.ok()) {
    spdlog::warn("proxy {}: cannot register its instance: {}", inst.id, r.error().message);
    return false;
  }
  return true;
}

void ControlPlane::proxy_heartbeat(const v1::Hello& hello) {
  if (!hello.has_instance()) return;
  bool expired = false;
  {
    std::lock_guard lock(mu_);
    auto held = registry_->find(hello.node().id());
    std::string ns = hello.node().namespace_().empty() ? "default" : hello.node().namespace_();
    // Only for its own instance: the id may have gone to another proxy
    // while this one was cut off.
    expired = !held || held->service != hello.node().service() || held->namespace_ != ns ||
              !registry_->heartbeat(hello.node().id()).ok();
  }
  // An instance that expired while its proxy was cut off comes back.
  if (expired) {
    auto back = proxy_connected(hello);
    if (!back) spdlog::warn("proxy {}: {}", hello.node().id(), back.error().message);
  }
}

std::string ControlPlane::issuer_of(std::string_view certificate_pem) {
  std::lock_guard lock(mu_);  // against a rotation step
  return ca_->issued_by_current(certificate_pem) ? ca_->status().issuer.sha256_fingerprint : "";
}

std::string ControlPlane::trust_bundle_pem() {
  std::lock_guard lock(mu_);  // against a rotation step
  return ca_->trust_bundle_pem();
}

Result<ProxyIdentity> ControlPlane::verify_join_token(std::string_view secret) {
  Result<JoinIdentity> join = Error{""};
  {
    std::lock_guard lock(mu_);
    join = tokens_->verify_join(secret);
  }
  if (!join) return Error{join.error().message};
  return ProxyIdentity{join->namespace_, join->service_account, "join token " + join->token_id};
}

// ---- JSON API (main loop) -------------------------------------------------------

std::optional<http::ApiResponse> ControlPlane::authorize(const http::ApiRequest& r, TokenRecord& caller) {
  std::string_view secret;
  if (!bearer_token(r.header("authorization"), secret)) {
    return unauthorized("the Authorization field must be \"Bearer <token>\"", true);
  }
  if (secret.empty()) {
    return unauthorized(
        "this API needs a token: send \"Authorization: Bearer <token>\" (trellis-control wrote an admin "
        "token to admin-token in its data directory)",
        false);
  }
  Result<TokenRecord> record = Error{""};
  {
    std::lock_guard lock(mu_);
    record = tokens_->authenticate(secret);
  }
  if (!record) {
    spdlog::debug("API: {} {} refused: {}", r.method, r.path, record.error().message);
    return unauthorized(record.error().message, true);
  }
  caller = std::move(*record);
  if (caller.kind == token_kind_name(TokenKind::kJoin)) {
    return error_response(403, "forbidden: token " + caller.id +
                                   " is a join token: it lets a sidecar join the mesh and grants nothing on "
                                   "the API");
  }
  bool read = r.method == "GET" || r.method == "HEAD";
  if (caller.kind != token_kind_name(TokenKind::kAdmin) && !read) {
    return error_response(403, "forbidden: token " + caller.id + " is read-only: it may only GET");
  }
  return std::nullopt;
}

http::ApiResponse ControlPlane::handle(const http::ApiRequest& request) {
  // HEAD is GET without the body (the server leaves it out).
  http::ApiRequest r = request;
  if (r.method == "HEAD") r.method = "GET";
  if (r.method == "GET" && (r.path == "/healthz" || r.path == "/ready")) {
    return {200, "text/plain", "ok\n", {}};
  }
  if (r.method == "GET" && (r.path == "/" || r.path == "/ui" || r.path.starts_with("/ui/")))
    return ui_response(r.path);
  TokenRecord caller;
  if (std::optional<http::ApiResponse> refused = authorize(r, caller)) return std::move(*refused);
  std::vector<std::string_view> p = split_path(r.path);
  if (p.size() >= 2 && p[0] == "v1" && p[1] == "tokens") {
    if (caller.kind != token_kind_name(TokenKind::kAdmin)) {
      return error_response(403, "forbidden: tokens are managed with an admin token");
    }
    if (r.method == "POST" && p.size() == 2) return create_token(r.body, caller);
    if (r.method == "GET" && p.size() == 2) return list_tokens();
    if (r.method == "DELETE" && p.size() == 3) return revoke_token(p[2], caller);
  }
  if (p.size() >= 2 && p[0] == "v1" && p[1] == "resources") {
    if ((r.method == "PUT" || r.method == "POST") && p.size() == 2) return put_resource(r.body);
    std::string_view kind = p.size() > 2 ? p[2] : "";
    // .../{kind}, .../{kind}/{name} (cluster-scoped) or .../{kind}/{namespace}/{name}
    std::string_view ns = p.size() == 5 ? p[3] : "";
    std::string_view name = p.size() >= 4 ? p.back() : "";
    if (r.method == "GET" && p.size() >= 3 && p.size() <= 5) return get_resources(kind, ns, name, r.query);
    if (r.method == "DELETE" && (p.size() == 4 || p.size() == 5))
      return delete_resource(kind, ns, name, r.query);
  }
  if (p.size() >= 3 && p[0] == "v1" && p[1] == "registry") {
    if (p[2] == "instances") {
      if (r.method == "POST" && p.size() == 3) return register_instance(r.body);
      if (r.method == "PUT" && p.size() == 5 && p[4] == "heartbeat") return heartbeat(p[3]);
      if (r.method == "DELETE" && p.size() == 4) return deregister(p[3]);
    }
    if (p[2] == "services") {
      if (r.method == "GET" && p.size() == 3) return services();
      if (r.method == "GET" && p.size() == 6 && p[5] == "instances") return instances(p[3], p[4]);
    }
  }
  if (r.method == "GET" && p.size() == 4 && p[0] == "v1" && p[1] == "proxies" && p[3] == "config")
    return proxy_config(r, p[2]);
  if (r.method == "GET" && r.path == "/v1/status") return status();
  if (r.method == "GET" && r.path == "/v1/prometheus/targets") return prometheus_targets();
  if (r.method == "GET" && r.path == "/metrics") return metrics_page();
  if (r.method == "GET" && r.path == "/v1/check") return check();
  if (r.method == "GET" && r.path == "/v1/tap") {
    // Metrics count requests; the tap shows them, paths and all.
    if (caller.kind != token_kind_name(TokenKind::kAdmin))
      return error_response(403, "forbidden: the tap shows the requests themselves: it needs an admin token");
    TapQuestion question;
    question.service = query_parameter(r.query, "service").value_or("");
    if (question.service.empty()) return error_response(400, "which service: ?service=NAME is required");
    question.namespace_ = query_parameter(r.query, "namespace").value_or("default");
    question.method = query_parameter(r.query, "method").value_or("");
    question.path_prefix = query_parameter(r.query, "path").value_or("");
    question.cursor = parse_tap_cursor(query_parameter(r.query, "cursor").value_or(""));
    return ask_proxies(r, [question, proxies = push_.status()] {
      return json_response(200, collect_tap(proxies, question, kProxyDeadline));
    });
  }
  if (r.method == "GET" && r.path == "/v1/golden") {
    return ask_proxies(r, [proxies = push_.status()] {
      return json_response(200, collect_golden(proxies, kProxyDeadline));
    });
  }
  if (r.method == "GET" && r.path == "/v1/ca") return ca_status();
  if (r.method == "POST" && r.path == "/v1/ca/rotation") return ca_rotate(r.body);
  return error_response(404, "no such endpoint: " + std::string(r.method) + " " + std::string(r.path));
}

http::ApiResponse ControlPlane::put_resource(std::string_view body) {
  Json doc = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return error_response(400, "the body is not JSON");
  ParsedResource parsed = parse_resource(doc);
  if (!parsed.ok()) {
    return error_response(400, parsed.resource.kind + " \"" + parsed.resource.name + "\" is invalid",
                          parsed.errors);
  }
  // The CA issues for one trust domain, fixed when trellis-control starts:
  // a MeshConfig naming another would describe identities nobody has.
  if (parsed.resource.kind == "MeshConfig") {
    std::string domain = string_at(parsed.resource.spec, "trustDomain", ca_->trust_domain());
    if (domain != ca_->trust_domain())
      return error_response(
          400, "MeshConfig \"" + parsed.resource.name + "\" is invalid",
          {{"spec.trustDomain", "the mesh CA issues identities in trust domain " + ca_->trust_domain() +
                                    ", not " + domain + ": start trellis-control with --trust-domain " +
                                    domain + " to change it"}});
  }
  Result<PutResult> put = Error{""};
  {
    std::lock_guard lock(mu_);
    put = store_->put(parsed.resource);
  }
  if (!put.ok()) return error_response(status_for(put.error().message), put.error().message);
  if (put->outcome != PutOutcome::kUnchanged) request_push();
  const char* verb = put->outcome == PutOutcome::kCreated   ? "created"
                     : put->outcome == PutOutcome::kUpdated ? "updated"
                                                            : "unchanged";
  Json out = put->stored.to_json();
  return json_response(put->outcome == PutOutcome::kCreated ? 201 : 200,
                       Json{{"result", verb}, {"resource", out}});
}

http::ApiResponse ControlPlane::get_resources(std::string_view kind_name, std::string_view ns,
                                              std::string_view name, std::string_view query) {
  const KindInfo* kind = find_kind(std::string(kind_name));
  if (kind == nullptr) return error_response(404, "unknown kind \"" + std::string(kind_name) + "\"");
  // Routes are shown with their status, worked out from the mesh as it is.
  const std::string_view k = kind->kind;
  std::optional<MeshView> mesh;
  if (k == "HTTPRoute" || k == "GRPCRoute") mesh = mesh_view();
  auto document = [&](const Resource& r) {
    Json doc = r.to_json();
    if (mesh) doc["status"] = route_status(*mesh, r);
    return doc;
  };
  std::lock_guard lock(mu_);
  if (!name.empty()) {
    std::string namespace_ = kind->namespaced ? (ns.empty() ? "default" : std::string(ns)) : "";
    auto r = store_->get({kind->kind, namespace_, std::string(name)});
    if (!r) return error_response(404, std::string(kind->kind) + " \"" + std::string(name) + "\" not found");
    return json_response(200, document(*r));
  }
  Json items = Json::array();
  std::string filter = query_parameter(query, "namespace").value_or("");
  for (const Resource& r : store_->list(kind->kind, filter)) items.push_back(document(r));
  return json_response(200, Json{{"kind", std::string(kind->kind) + "List"}, {"items", std::move(items)}});
}

http::ApiResponse ControlPlane::delete_resource(std::string_view kind_name, std::string_view ns,
                                                std::string_view name, std::string_view query) {
  const KindInfo* kind = find_kind(std::string(kind_name));
  if (kind == nullptr) return error_response(404, "unknown kind \"" + std::string(kind_name) + "\"");
  std::string namespace_ = kind->namespaced ? (ns.empty() ? "default" : std::string(ns)) : "";
  uint64_t expected = 0;
  std::string v = query_parameter(query, "resourceVersion").value_or("");
  if (!v.empty()) expected = std::strtoull(v.c_str(), nullptr, 10);
  Result<bool> removed = Error{""};
  {
    std::lock_guard lock(mu_);
    removed = store_->remove({kind->kind, namespace_, std::string(name)}, expected);
  }
  if (!removed.ok()) return error_response(status_for(removed.error().message), removed.error().message);
  if (!*removed)
    return error_response(404, std::string(kind->kind) + " \"" + std::string(name) + "\" not found");
  request_push();
  return json_response(200, Json{{"result", "deleted"}});
}

http::ApiResponse ControlPlane::register_instance(std::string_view body) {
  Json doc = Json::parse(body, nullptr, false);
  if (!doc.is_object()) return error_response(400, "the body must be a JSON object");
  Instance inst;
  std::vector<FieldError> errors;
  auto text = [&](const char* key, std::string& out) {
    if (!doc.contains(key)) return;
    if (!doc[key].is_string())
      errors.push_back({key, "must be a string"});
    else
      out = doc[key].get<std::string>();
  };
  auto number = [&](const char* key, uint32_t& out) {
    if (!doc.contains(key)) return;
    if (!doc[key].is_number_unsigned())
      errors.push_back({key, "must be a non-negative integer"});
    else
      out = static_cast<uint32_t>(std::min<uint64_t>(doc[key].get<uint64_t>(), UINT32_MAX));
  };
  for (auto it = doc.begin(); it != doc.end(); ++it) {
    static const std::set<std::string> kKnown = {"id",     "service", "namespace",   "address", "zone",
                                                 "weight", "labels",  "ttl_seconds", "ports"};
    if (!kKnown.count(it.key())) errors.push_back({it.key(), "unknown field"});
  }
  text("id", inst.id);
  text("service", inst.service);
  text("namespace", inst.namespace_);
  text("address", inst.address);
  text("zone", inst.zone);
  number("weight", inst.weight);
  number("ttl_seconds", inst.ttl_seconds);
  if (doc.contains("labels")) {
    if (!doc["labels"].is_object()) {
      errors.push_back({"labels", "must be a map of strings"});
    } else {
      for (auto it = doc["labels"].begin(); it != doc["labels"].end(); ++it) {
        if (!it->is_string())
          errors.push_back({"labels." + it.key(), "must be a string"});
        else
          inst.labels[it.key()] = it->get<std::string>();
      }
    }
  }
  if (doc.contains("ports")) {
    if (!doc["ports"].is_array()) {
      errors.push_back({"ports", "must be a list of {name, port, target_port, protocol}"});
    } else {
      for (size_t i = 0; i < doc["ports"].size(); ++i) {
        const Json& p = doc["ports"][i];
        const std::string at = "ports[" + std::to_string(i) + "]";
        if (!p.is_object()) {
          errors.push_back({at, "must be a map with name, port, target_port and protocol"});
          continue;
        }
        ServicePort port;
        for (auto f = p.begin(); f != p.end(); ++f) {
          const std::string& key = f.key();
          if (key == "name" || key == "protocol") {
            if (!f->is_string())
              errors.push_back({at + "." + key, "must be a string"});
            else
              (key == "name" ? port.name : port.protocol) = f->get<std::string>();
          } else if (key == "port" || key == "target_port") {
            if (!f->is_number_unsigned() || f->get<uint64_t>() > 65535)
              errors.push_back({at + "." + key, "must be an integer between 1 and 65535"});
            else
              (key == "port" ? port.port : port.target_port) = f->get<uint32_t>();
          } else {
            errors.push_back({at + "." + key, "unknown field"});
          }
        }
        if (!p.contains("port")) errors.push_back({at + ".port", "required field is missing"});
        if (!p.contains("target_port")) port.target_port = port.port;  // as the Service's port
        inst.ports.push_back(std::move(port));
      }
    }
  }
  if (!errors.empty()) return error_response(400, "invalid instance", errors);
  Result<Instance> r = Error{""};
  {
    std::lock_guard lock(mu_);
    r = registry_->register_instance(inst);
  }
  if (!r.ok()) return error_response(status_for(r.error().message), r.error().message);
  return json_response(201, instance_json(*r));
}

http::ApiResponse ControlPlane::heartbeat(std::string_view id) {
  std::lock_guard lock(mu_);
  auto r = registry_->heartbeat(std::string(id));
  if (!r.ok()) return error_response(status_for(r.error().message), r.error().message);
  return json_response(200, instance_json(*r));
}

http::ApiResponse ControlPlane::deregister(std::string_view id) {
  std::lock_guard lock(mu_);
  if (!registry_->deregister(std::string(id))) return error_response(404, "not found: " + std::string(id));
  return json_response(200, Json{{"result", "deregistered"}});
}

http::ApiResponse ControlPlane::services() {
  Json list = Json::array();
  std::lock_guard lock(mu_);
  for (const ServiceCount& s : registry_->services())
    list.push_back(Json{{"namespace", s.namespace_}, {"service", s.service}, {"instances", s.instances}});
  return json_response(200, Json{{"services", std::move(list)}});
}

http::ApiResponse ControlPlane::instances(std::string_view ns, std::string_view service) {
  Json list = Json::array();
  std::lock_guard lock(mu_);
  for (const Instance& i : registry_->instances_of(std::string(service), std::string(ns)))
    list.push_back(instance_json(i));
  return json_response(200, Json{{"namespace", ns}, {"service", service}, {"instances", std::move(list)}});
}

http::ApiResponse ControlPlane::status() {
  Json proxies = Json::array();
  for (const ProxyStatus& s : push_.status()) {
    Json p{{"node_id", s.node_id},
           {"service", s.service},
           {"namespace", s.namespace_},
           {"peer", s.peer},
           {"admin_address", s.admin_address},
           {"connected_at_ms", s.connected_at_ms},
           {"sent_version", s.sent_version},
           {"acked_version", s.acked_version},
           {"listeners", s.listeners},
           {"clusters", s.clusters},
           {"policies", s.policies},
           {"in_sync", s.sent_version == s.acked_version},
           {"identity", s.identity},
           {"certificates_issued", s.certificates_issued}};
    if (s.nacked_version) p["nack"] = Json{{"version", s.nacked_version}, {"error", s.nack_error}};
    proxies.push_back(std::move(p));
  }
  uint64_t revision;
  {
    std::lock_guard lock(mu_);
    revision = store_->revision();
  }
  return json_response(200, Json{{"revision", revision},
                                 {"pushed_revision", pushed_revision_.load()},
                                 {"proxies", std::move(proxies)}});
}

http::ApiResponse ControlPlane::ask_proxies(const http::ApiRequest& request,
                                            std::function<http::ApiResponse()> ask) {
  http::Reply reply = request.answer_later();
  bool queued = proxy_queries_.submit([ask = std::move(ask), reply] { reply(ask()); });
  if (!queued) return error_response(503, "too many questions to the proxies are waiting: try again shortly");
  return http::ApiResponse::pending_answer();
}

http::ApiResponse ControlPlane::proxy_config(const http::ApiRequest& request, std::string_view node_id) {
  for (const ProxyStatus& s : push_.status()) {
    if (s.node_id != node_id) continue;
    return ask_proxies(request, [proxy = s] {
      Result<Json> config = fetch_config_dump(proxy, kProxyDeadline);
      if (!config)
        return error_response(
            502, "cannot read the configuration of proxy " + proxy.node_id + ": " + config.error().message);
      return json_response(200, *config);
    });
  }
  return error_response(404, "no proxy " + std::string(node_id) + " is connected");
}

http::ApiResponse ControlPlane::check() {
  MeshView view = mesh_view();
  CaStatus ca;
  {
    std::lock_guard lock(mu_);
    ca = ca_->status();
  }
  // Certificates are flagged 30 days before their end.
  std::vector<Finding> findings =
      check_mesh(view, push_.status(), ca, std::chrono::system_clock::now(), std::chrono::hours(24 * 30));
  Json out = Json::array();
  for (const Finding& f : findings)
    out.push_back(Json{{"severity", f.severity == Finding::Severity::kError ? "error" : "warning"},
                       {"resource", f.resource},
                       {"field", f.field},
                       {"message", f.message}});
  return json_response(200, Json{{"findings", std::move(out)}});
}

http::ApiResponse ControlPlane::metrics_page() {
  ControlMetrics::Gauges g;
  for (const ProxyStatus& s : push_.status()) {
    ++g.proxies_connected;
    if (s.sent_version != 0 && s.acked_version == s.sent_version) ++g.proxies_in_sync;
    if (s.sent_version != 0 && s.nacked_version == s.sent_version) ++g.proxies_refusing;
  }
  {
    std::lock_guard lock(mu_);
    for (const ServiceCount& s : registry_->services()) {
      ++g.services;
      g.instances += s.instances;
    }
    g.revision = store_->revision();
    for (const KindInfo& kind : known_kinds())
      g.resources.emplace_back(kind.kind, store_->list(kind.kind, "").size());
  }
  return {200, "text/plain; version=0.0.4", metrics_.render(g), {}};
}

http::ApiResponse ControlPlane::prometheus_targets() {
  // Prometheus' HTTP service discovery: one target group per connected proxy.
  Json groups = Json::array();
  for (const ProxyStatus& s : push_.status()) {
    std::optional<std::string> target = scrape_target(s.admin_address, s.peer);
    if (!target) continue;
    groups.push_back(Json{{"targets", Json::array({*target})},
                          {"labels", Json{{"__metrics_path__", "/stats"},
                                          {"__meta_trellis_node_id", s.node_id},
                                          {"__meta_trellis_service", s.service},
                                          {"__meta_trellis_namespace", s.namespace_}}}});
  }
  return json_response(200, groups);
}

namespace {

Json certificate_json(const CertificateSummary& c) {
  return Json{{"subject", c.subject},
              {"sha256", c.sha256_fingerprint},
              {"serial", c.serial},
              {"notBefore", format_utc(to_ms(c.not_before))},
              {"notAfter", format_utc(to_ms(c.not_after))}};
}

// Rotation needs the control plane's own listener to trust the new root
// before any proxy shows a certificate from it: its files are read again
// every 5 s (push_server.cc).
constexpr int64_t kBundleReloadMs = 6000;

}  // namespace

http::ApiResponse ControlPlane::ca_status() {
  CaStatus ca;
  std::string bundle;
  {
    std::lock_guard lock(mu_);
    ca = ca_->status();
    bundle = ca_->trust_bundle_pem();
  }
  std::string bundle_sha = net::sha256_hex(bundle);
  Json roots = Json::array();
  for (const CertificateSummary& r : ca.roots) roots.push_back(certificate_json(r));
  size_t connected = 0, trusting = 0, on_issuer = 0;
  Json lagging = Json::array();
  for (const ProxyStatus& p : push_.status()) {
    ++connected;
    bool trusts = p.trust_bundle_sha256 == bundle_sha;
    bool issued = p.certificate_issuer == ca.issuer.sha256_fingerprint;
    trusting += trusts;
    on_issuer += issued;
    if ((!trusts || !issued) && lagging.size() < 20) lagging.push_back(p.node_id);
  }
  Json out{{"mode", ca_mode_name(ca.mode)},
           {"phase", rotation_phase_name(ca.phase)},
           {"trustDomain", ca.trust_domain},
           {"roots", std::move(roots)},
           {"issuer", certificate_json(ca.issuer)},
           {"trustBundleSha256", bundle_sha},
           {"trustBundle", bundle},
           {"proxies", Json{{"connected", connected}, {"trustBundle", trusting}, {"issuer", on_issuer}}},
           {"lagging", std::move(lagging)}};
  if (ca.old_root_leaves_valid_until)
    out["oldRootLeavesValidUntil"] = format_utc(to_ms(*ca.old_root_leaves_valid_until));
  return json_response(200, out);
}

// One step of a root rotation (docs/control-plane.md): each refuses (409)
// until every connected proxy has caught up with the step before.
http::ApiResponse ControlPlane::ca_rotate(std::string_view body) {
  Json doc = Json::parse(body, nullptr, false);
  std::string step = doc.is_object() ? string_at(doc, "step") : "";
  if (step != "begin" && step != "switch" && step != "finish")
    return error_response(400, "the body must be {\"step\": \"begin\" | \"switch\" | \"finish\"}");
  CaStatus before;
  std::string bundle;
  {
    std::lock_guard lock(mu_);
    before = ca_->status();
    bundle = ca_->trust_bundle_pem();
  }
  std::vector<ProxyStatus> proxies = push_.status();
  auto lagging = [&](auto behind) {
    std::vector<std::string> out;
    for (const ProxyStatus& p : proxies)
      if (behind(p)) out.push_back(p.node_id);
    return out;
  };
  auto not_yet = [&](const std::vector<std::string>& nodes, const std::string& what) {
    std::string list;
    for (size_t i = 0; i < nodes.size() && i < 10; ++i) list += (i ? ", " : "") + nodes[i];
    if (nodes.size() > 10) list += ", ...";
    return error_response(409, "not yet: " + std::to_string(nodes.size()) + " connected prox" +
                                   (nodes.size() == 1 ? "y has" : "ies have") + " not " + what + " (" + list +
                                   "); try again shortly (trellis ca status)");
  };
  bool in_order = (step == "switch" && before.phase == RotationPhase::kNewRootTrusted) ||
                  (step == "finish" && before.phase == RotationPhase::kIssuingFromNew);
  if (in_order) {
    // A step must wait for every proxy, also those cut off for a moment: the
    // ones that had no time to reconnect since this process started, and
    // those whose registered instances are alive without a stream.
    int64_t grace_ms = std::chrono::duration_cast<std::chrono::milliseconds>(kRestartGrace).count();
    int64_t wait_ms = started_ms_ + grace_ms - clock_.now_ms();
    if (wait_ms > 0)
      return error_response(409,
                            "not yet: proxies may still be reconnecting since trellis-control started; "
                            "try again in " +
                                std::to_string((wait_ms + 999) / 1000) + " s");
    std::set<std::string> connected;
    for (const ProxyStatus& p : proxies) connected.insert(p.node_id);
    std::vector<std::string> away;
    MeshView view = mesh_view();
    for (const Instance& i : view.instances)
      if (i.registered_by != Registry::kDefaultRegisteredBy && !connected.count(i.registered_by))
        away.push_back(i.registered_by);
    if (!away.empty()) return not_yet(away, "reconnected (their instances are registered)");
  }
  Result<CaStatus> done = Error{""};
  bool renew = false;
  if (step == "begin") {
    std::lock_guard lock(mu_);
    done = ca_->begin_rotation();
    if (done) rotation_began_ms_ = clock_.now_ms();
  } else if (step == "switch") {
    std::string sha = net::sha256_hex(bundle);
    auto behind = lagging([&](const ProxyStatus& p) { return p.trust_bundle_sha256 != sha; });
    if (!behind.empty()) return not_yet(behind, "put the new trust bundle in force");
    int64_t wait_ms = rotation_began_ms_ + kBundleReloadMs - clock_.now_ms();
    if (wait_ms > 0)
      return error_response(409, "not yet: the control plane's own listener trusts the new root in " +
                                     std::to_string((wait_ms + 999) / 1000) + " s; try again then");
    std::lock_guard lock(mu_);
    done = ca_->switch_issuer();
    renew = true;
  } else {
    auto behind = lagging(
        [&](const ProxyStatus& p) { return p.certificate_issuer != before.issuer.sha256_fingerprint; });
    if (before.phase == RotationPhase::kIssuingFromNew && !behind.empty())
      return not_yet(behind, "a certificate from the new root");
    std::lock_guard lock(mu_);
    // Every connected proxy holds a certificate from the new root: nothing
    // still in use needs the old one.
    done = ca_->finish_rotation(/*force=*/true);
  }
  if (!done) return error_response(409, done.error().message);
  Result<bool> written = true;
  {
    std::lock_guard lock(mu_);
    bundle = ca_->trust_bundle_pem();
    // From the switch on, the control plane's own certificate comes from the new root.
    written = step == "begin" ? write_trust_bundle(bundle) : write_server_credentials();
  }
  if (!written) return error_response(500, "the step is done, but: " + written.error().message);
  push_.broadcast_trust_bundle(bundle, renew);
  spdlog::info("CA rotation: {} done, now {}", step, rotation_phase_name(done->phase));
  return ca_status();
}

http::ApiResponse ControlPlane::create_token(std::string_view body, const TokenRecord& caller) {
  Json doc = Json::parse(body, nullptr, false);
  if (!doc.is_object()) return error_response(400, "the body must be a JSON object");
  TokenSpec spec;
  std::vector<FieldError> errors;
  auto text = [&](const char* key, std::string& out) {
    if (!doc.contains(key)) return false;
    if (!doc[key].is_string()) {
      errors.push_back({key, "must be a string"});
      return false;
    }
    out = doc[key].get<std::string>();
    return true;
  };
  for (auto it = doc.begin(); it != doc.end(); ++it) {
    static const std::set<std::string> kKnown = {"kind", "namespace", "serviceAccount", "ttl", "description"};
    if (!kKnown.count(it.key())) errors.push_back({it.key(), "unknown field"});
  }
  std::string kind;
  bool kind_known = false;
  if (!doc.contains("kind")) {
    errors.push_back({"kind", "required: admin, read-only or join"});
  } else if (text("kind", kind)) {
    if (auto k = parse_token_kind(kind)) {
      spec.kind = *k;
      kind_known = true;
    } else {
      errors.push_back({"kind", "\"" + kind + "\" is not one of admin, read-only or join"});
    }
  }
  text("namespace", spec.namespace_);
  text("serviceAccount", spec.service_account);
  text("description", spec.description);
  std::string ttl;
  if (text("ttl", ttl)) {
    auto d = parse_duration(ttl, {std::chrono::hours(24 * 365), "8760h", std::chrono::seconds(1)});
    if (!d) {
      errors.push_back({"ttl", d.error().message});
    } else if (*d < std::chrono::seconds(1)) {
      errors.push_back({"ttl", "must be at least 1s"});
    } else {
      spec.ttl_ms = std::chrono::duration_cast<std::chrono::milliseconds>(*d).count();
    }
  }
  // What the fields mean depends on the kind: without one, nothing more to say.
  if (kind_known) {
    for (FieldError& e : Tokens::validate(spec)) {
      // One message per field: a bad ttl above is not also "required".
      bool seen = false;
      for (const FieldError& prior : errors) seen = seen || prior.path == e.path;
      if (!seen) errors.push_back(std::move(e));
    }
  }
  if (!errors.empty()) return error_response(400, "invalid token request", errors);
  Result<IssuedToken> issued = Error{""};
  int64_t now;
  {
    std::lock_guard lock(mu_);
    issued = tokens_->create(spec);
    now = tokens_->now_ms();
  }
  if (!issued) return error_response(status_for(issued.error().message), issued.error().message);
  const TokenRecord& t = issued->record;
  spdlog::info("token {} ({}{}) created by {}", t.id, t.kind,
               t.namespace_.empty() ? "" : ", " + t.namespace_ + "/" + t.service_account, caller.id);
  http::ApiResponse r = json_response(201, Json{{"token", token_json(t, now)}, {"secret", issued->secret}});
  // The only answer that carries a secret: nothing in between may keep it.
  r.headers.emplace_back("cache-control", "no-store");
  return r;
}

http::ApiResponse ControlPlane::list_tokens() {
  Json list = Json::array();
  std::lock_guard lock(mu_);
  int64_t now = tokens_->now_ms();
  for (const TokenRecord& t : tokens_->list()) list.push_back(token_json(t, now));
  return json_response(200, Json{{"tokens", std::move(list)}});
}

http::ApiResponse ControlPlane::revoke_token(std::string_view id, const TokenRecord& caller) {
  std::lock_guard lock(mu_);
  auto revoked = tokens_->revoke(std::string(id));
  if (!revoked) return error_response(500, revoked.error().message);
  if (!*revoked) return error_response(404, "not found: token \"" + std::string(id) + "\"");
  spdlog::info("token {} revoked by {}", id, caller.id);
  int64_t now = tokens_->now_ms();
  std::optional<TokenRecord> t = store_->get_token(std::string(id));
  Json out{{"result", "revoked"}};
  if (t) out["token"] = token_json(*t, now);
  return json_response(200, out);
}

}  // namespace trellis::control
