// What a server codec drives for each exchange it decodes: the protocol-
// neutral stream (the router). Codecs know only this interface and make
// their streams with make_server_stream(), so HTTP/1.1 and HTTP/2 share the
// routing, policies and accounting behind it.
#pragma once

#include <memory>
#include <string_view>

#include "http/codec.h"
#include "http/header.h"
#include "proxy/runtime/snapshot.h"
#include "proxy/security/authorization.h"

namespace trellis::proxy {

class Worker;

// What the stream needs to know about the client connection it serves.
struct DownstreamContext {
  std::shared_ptr<const Snapshot> snapshot;
  const ListenerRuntime* listener = nullptr;
  ListenerStats* stats = nullptr;
  std::string_view client_ip;       // for x-forwarded-for
  std::string_view client_address;  // ip:port, for the access log
  AuthzClient authz_client;         // who the client is, for authorization
};

class ServerStream : public http::RequestDecoder {
 public:
  virtual ~ServerStream() = default;
  // Starts an exchange; `context` must outlive it.
  virtual void begin(const DownstreamContext& context) = 0;
  // Answers the exchange from the proxy itself (codec-level errors too), with
  // one extra header field when `extra` has a name.
  virtual void reply_local(int status, std::string_view body, http::Header extra = {}) = 0;
  // Ends the exchange: status and latency metrics, the access log. Bytes as
  // counted on the client's wire by the codec.
  virtual void end(uint64_t bytes_received, uint64_t bytes_sent) = 0;
};

// The stream for one exchange at a time of a downstream connection, answering
// through `downstream`.
std::unique_ptr<ServerStream> make_server_stream(Worker& worker, http::ResponseEncoder& downstream);

}  // namespace trellis::proxy
