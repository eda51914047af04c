#include "proxy/security/authorization.h"

#include <netinet/in.h>

namespace trellis::proxy {

AuthzClient authz_client_of(const sockaddr_storage& peer, const net::SocketAddress& local,
                            std::string_view identity) {
  AuthzClient out;
  out.identity = identity;
  if (peer.ss_family == AF_INET) {
    const auto& v4 = reinterpret_cast<const sockaddr_in&>(peer);
    out.address = policy::IpAddress::from_bytes(reinterpret_cast<const uint8_t*>(&v4.sin_addr), 4);
  } else if (peer.ss_family == AF_INET6) {
    const auto& v6 = reinterpret_cast<const sockaddr_in6&>(peer);
    out.address = policy::IpAddress::from_bytes(v6.sin6_addr.s6_addr, 16);
  }
  if (local.family() == AF_INET) {
    out.port = ntohs(reinterpret_cast<const sockaddr_in*>(local.sa())->sin_port);
  } else if (local.family() == AF_INET6) {
    out.port = ntohs(reinterpret_cast<const sockaddr_in6*>(local.sa())->sin6_port);
  }
  return out;
}

void count_authz(const ListenerRuntime& listener, size_t worker, const policy::AuthzDecision& decision) {
  const auto slot = static_cast<size_t>(decision.policy + 1);
  if (slot >= listener.authz_stats.size()) return;
  AuthzStats& stats = *listener.authz_stats[slot][worker];
  (decision.allowed ? stats.allowed : stats.denied).inc();
}

std::string authz_decider(const ListenerRuntime& listener, int policy) {
  if (policy < 0 || !listener.authorizer)
    return "the default action (MeshConfig authorization.defaultAction)";
  return "AuthorizationPolicy " + listener.authorizer->name(static_cast<size_t>(policy));
}

policy::AuthzDecision authorize_connection(const ListenerRuntime& listener, size_t worker,
                                           const AuthzClient& client) {
  if (!listener.authorizer) return {};
  policy::AuthzRequest r;
  r.identity = client.identity;
  r.address = client.address;
  r.port = client.port;
  r.http = false;
  policy::AuthzDecision d = listener.authorizer->decide(r);
  count_authz(listener, worker, d);
  return d;
}

}  // namespace trellis::proxy
