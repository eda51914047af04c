// Authorization at the edges of an inbound listener: who the client is (its
// verified identity, address and the port it reached), the check of a TCP
// connection at accept, and the counting of every decision.
#pragma once

#include <sys/socket.h>

#include <string_view>

#include "net/address.h"
#include "policy/authorization.h"
#include "proxy/runtime/snapshot.h"

namespace trellis::proxy {

struct AuthzClient {
  std::string_view identity;  // verified mTLS identity; empty: none
  policy::IpAddress address;
  uint32_t port = 0;  // the listener's
};

AuthzClient authz_client_of(const sockaddr_storage& peer, const net::SocketAddress& local,
                            std::string_view identity);

// Counts `decision` for the listener in worker `worker`'s stats.
void count_authz(const ListenerRuntime& listener, size_t worker, const policy::AuthzDecision& decision);

// "AuthorizationPolicy <name>" or "the default action": what decided, for
// 403 bodies and logs.
std::string authz_decider(const ListenerRuntime& listener, int policy);

// Whether a TCP connection may use the listener; counted either way.
policy::AuthzDecision authorize_connection(const ListenerRuntime& listener, size_t worker,
                                           const AuthzClient& client);

}  // namespace trellis::proxy
