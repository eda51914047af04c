#include "proxy/http/stages.h"

#include <algorithm>

#include "common/text.h"
#include "policy/sampling.h"
#include "proxy/http/route_actions.h"

namespace trellis::proxy {
namespace {

void format_request_id(Random& random, std::string& out) {
  static constexpr char kHex[] = "0123456789abcdef";
  uint64_t a = random.next(), b = random.next();
  // UUID version 4, variant 1.
  a = (a & ~0xF000ull) | 0x4000ull;
  b = (b & ~(3ull << 62)) | (2ull << 62);
  char buf[36];
  int pos = 0;
  for (int i = 0; i < 16; ++i) {
    uint64_t byte = i < 8 ? (a >> (56 - 8 * i)) & 0xFF : (b >> (56 - 8 * (i - 8))) & 0xFF;
    if (i == 4 || i == 6 || i == 8 || i == 10) buf[pos++] = '-';
    buf[pos++] = kHex[byte >> 4];
    buf[pos++] = kHex[byte & 15];
  }
  out.assign(buf, sizeof(buf));
}

}  // namespace

void add_client_cert_header(http::RequestHeadersCopy& request, std::string_view header,
                            std::string_view own_identity, std::string_view client_identity,
                            std::string& scratch) {
  request.remove("x-forwarded-client-cert");
  if (!header.empty() && header != "x-forwarded-client-cert") request.remove(header);
  if (client_identity.empty() || header.empty()) return;
  scratch.assign("By=");
  scratch.append(own_identity);
  scratch.append(";URI=");
  scratch.append(client_identity);
  request.add(header, scratch);
}

AuthzVerdict authorize_request(const policy::Authorizer& authorizer, const AuthzClient& client,
                               http::RequestHeadersCopy& request, std::string& scratch) {
  std::string_view full = request.get().path;
  const size_t query = full.find('?');
  std::string_view path = full.substr(0, query);
  bool changed = false;
  if (!policy::normalize_path(path, scratch, changed)) return {AuthzVerdict::Kind::kBadPath};
  if (changed) {
    if (query != std::string_view::npos) scratch.append(full.substr(query));
    request.set_path(scratch);
    path = request.get().path;
    path = path.substr(0, path.find('?'));
  }
  policy::AuthzRequest r;
  r.identity = client.identity;
  r.address = client.address;
  r.port = client.port;
  r.http = true;
  r.method = request.get().method;
  r.path = path;
  policy::AuthzDecision d = authorizer.decide(r);
  return {d.allowed ? AuthzVerdict::Kind::kAllowed : AuthzVerdict::Kind::kDenied, d.policy};
}

void add_forwarding_headers(http::RequestHeadersCopy& request, std::string_view client_ip, Random& random,
                            std::string& request_id, std::string& scratch) {
  http::RequestHeaders& req = request.get();
  scratch.clear();
  for (const http::Header& h : req.headers) {
    if (!http::iequals(h.name, "x-forwarded-for") || h.value.empty()) continue;
    if (!scratch.empty()) scratch += ", ";
    scratch += h.value;
  }
  if (!scratch.empty()) {
    std::erase_if(req.headers,
                  [](const http::Header& h) { return http::iequals(h.name, "x-forwarded-for"); });
    scratch += ", ";
  }
  scratch += client_ip;
  request.add("x-forwarded-for", scratch);

  std::string_view id = http::find_header(req.headers, "x-request-id");
  if (id.empty()) {
    format_request_id(random, request_id);
    request.add("x-request-id", request_id);
  } else {
    request_id.assign(id);
  }
}

RateLimitDecision check_rate_limits(const std::vector<std::shared_ptr<RouteRateLimiter>>& limits,
                                    const http::RequestHeaders& request, std::string_view client_ip,
                                    MonoTime now) {
  RateLimitDecision out;
  policy::RequestView view{request.authority, request.method, request.path, &request.headers};
  for (const auto& limiter : limits) {
    if (!limiter->counts(view)) continue;
    const RateLimitConfig& config = limiter->config();
    std::string_view key;
    switch (config.key) {
      case RateLimitConfig::Key::kAll:
      case RateLimitConfig::Key::kIdentity:  // no workload identities before mTLS: one shared bucket
        break;
      case RateLimitConfig::Key::kAddress:
        key = client_ip;
        break;
      case RateLimitConfig::Key::kHeader:
        key = http::find_header(request.headers, config.key_header);
        break;
    }
    RouteRateLimiter::Decision d = limiter->admit(key, now);
    if (!d.allowed) {
      out.refused_by = limiter.get();
      out.retry_after = d.retry_after;
      return out;
    }
    out.hold = std::max(out.hold, d.delay);
  }
  return out;
}

const BackendConfig* choose_backend(const RouteConfig& route, Random& random) {
  if (route.backends.size() == 1) return route.backends[0].weight > 0 ? &route.backends[0] : nullptr;
  size_t chosen = policy::pick_by_weight(
      route.backends, [](const BackendConfig& b) { return b.weight; }, random);
  return chosen == SIZE_MAX ? nullptr : &route.backends[chosen];
}

FaultDecision decide_fault(const RouteConfig& route, const BackendConfig& backend, Random& random) {
  const FaultConfig& fault = backend.fault.empty() ? route.fault : backend.fault;
  FaultDecision out;
  if (fault.delay.count() > 0 && policy::sampled(fault.delay_per_million, 1'000'000, random))
    out.delay = fault.delay;
  if (fault.abort_status != 0 && policy::sampled(fault.abort_per_million, 1'000'000, random))
    out.abort_status = fault.abort_status;
  return out;
}

void rewrite_request(const RouteConfig& route, const BackendConfig& backend,
                     http::RequestHeadersCopy& request, std::string& scratch) {
  if (!route.request_headers.empty()) apply_request_modifier(route.request_headers, request);
  if (!backend.request_headers.empty()) apply_request_modifier(backend.request_headers, request);
  const std::string& hostname =
      backend.rewrite.hostname.empty() ? route.rewrite.hostname : backend.rewrite.hostname;
  if (!hostname.empty()) request.set_authority(hostname);
  const PathModifier& path =
      backend.rewrite.path.kind != PathModifier::Kind::kNone ? backend.rewrite.path : route.rewrite.path;
  if (path.kind != PathModifier::Kind::kNone) {
    rewrite_path(path, route.match.path, request.get().path, scratch);
    request.set_path(scratch);
  }
}

uint32_t sample_mirrors(const RouteConfig& route, const BackendConfig& backend, Random& random) {
  if (route.mirrors.empty() && backend.mirrors.empty()) return 0;
  const size_t count = std::min(route.mirrors.size() + backend.mirrors.size(), kMaxMirrorsPerRequest);
  uint32_t mask = 0;
  for (size_t i = 0; i < count; ++i) {
    const MirrorConfig& m = mirror_at(route, backend, i);
    if (policy::sampled(m.numerator, m.denominator, random)) mask |= 1u << i;
  }
  return mask;
}

const MirrorConfig& mirror_at(const RouteConfig& route, const BackendConfig& backend, size_t i) {
  return i < route.mirrors.size() ? route.mirrors[i] : backend.mirrors[i - route.mirrors.size()];
}

std::optional<uint64_t> request_hash(const HashPolicy& hash, const http::RequestHeaders& request,
                                     std::string_view client_ip, Random& random, std::string& new_cookie) {
  switch (hash.kind) {
    case HashPolicy::Kind::kNone:
      return std::nullopt;
    case HashPolicy::Kind::kHeader: {
      std::string_view value = http::find_header(request.headers, hash.name);
      if (value.empty()) return std::nullopt;
      return fnv1a64(value);
    }
    case HashPolicy::Kind::kCookie: {
      std::string_view value = find_cookie(request.headers, hash.name);
      if (!value.empty()) return fnv1a64(value);
      if (!hash.cookie_ttl_set) return std::nullopt;
      // No cookie yet: pick one, and tell the client to send it from now on.
      if (new_cookie.empty()) {
        static constexpr char kHex[] = "0123456789abcdef";
        uint64_t r = random.next();
        new_cookie.resize(16);
        for (int i = 0; i < 16; ++i) new_cookie[i] = kHex[(r >> (4 * i)) & 15];
      }
      return fnv1a64(new_cookie);
    }
    case HashPolicy::Kind::kSourceIp:
      return fnv1a64(client_ip);
  }
  return std::nullopt;
}

}  // namespace trellis::proxy
