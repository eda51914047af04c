// The client side of HTTP exchanges with a cluster's endpoints, behind one
// interface: the router and the mirror hold an UpstreamCodec made by the
// cluster's UpstreamCodecFactory and never learn the protocol on the wire
// (HTTP/1.1, or HTTP/2 multiplexed). A codec serves one exchange at a time
// and may serve many in turn.
#pragma once

#include <memory>

#include "http/codec.h"
#include "net/event_loop.h"

namespace trellis::proxy {

class EndpointPool;

class UpstreamCodec : public http::RequestEncoder {
 public:
  virtual ~UpstreamCodec() = default;

  // Starts an exchange with `pool`'s endpoint, on an idle pooled connection
  // unless `fresh`, else on a new one (still connecting: what is encoded
  // waits for it). `head_request`: the response has no body whatever it
  // says. False with `error` set (an errno value, or kOverflowConnections /
  // kOverflowPending from cluster.h) when no connection can be had.
  virtual bool start(EndpointPool& pool, bool fresh, bool head_request, int& error) = 0;
  // Between start() and finish().
  virtual bool active() const = 0;
  // Ends the exchange. The connection goes back to its pool when `keep` and
  // the exchange left it reusable (the whole request sent, the whole response
  // read, the upstream keeps it open); otherwise it is closed.
  virtual void finish(bool keep) = 0;
  // Who hears the response from now on (a drain takes over a response the
  // router no longer wants).
  virtual void set_decoder(http::ResponseDecoder& decoder) = 0;

  // The connection served earlier exchanges: a reset before any response
  // byte may be its upstream having closed it meanwhile.
  virtual bool reused_connection() const = 0;
  virtual bool response_bytes_seen() const = 0;
  // The whole response arrived.
  virtual bool response_complete() const = 0;
  // Exchanges share the connection (HTTP/2): abandoning one resets its
  // stream and costs the others nothing, so a response nobody wants is not
  // drained.
  virtual bool multiplexed() const { return false; }
};

class UpstreamCodecFactory {
 public:
  virtual ~UpstreamCodecFactory() = default;
  virtual std::unique_ptr<UpstreamCodec> make(net::EventLoop& loop, http::ResponseDecoder& decoder) const = 0;
};

}  // namespace trellis::proxy
