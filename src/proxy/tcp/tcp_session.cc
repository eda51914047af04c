#include "proxy/tcp/tcp_session.h"

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "net/address.h"
#include "proxy/observe/access_log.h"
#include "proxy/observe/golden.h"
#include "proxy/security/authorization.h"

namespace trellis::proxy {
namespace {
// Stop reading one side while the other has this much unsent: memory per
// session stays bounded whatever the speeds of the two peers.
constexpr size_t kHighWatermark = 256 * 1024;
}  // namespace

TcpSession::TcpSession(Worker& worker, std::shared_ptr<const Snapshot> snapshot, const sockaddr_storage& peer,
                       size_t listener_index)
    : WorkerConnection(worker),
      snapshot_(std::move(snapshot)),
      listener_(snapshot_->listeners[listener_index]),
      stats_(*listener_.stats[worker.index()]),
      peer_(peer),
      started_(worker.loop().now()),
      idle_timer_(worker.loop(), [this] { close(); }) {}

TcpSession::TcpSession(Worker& worker, int fd, const sockaddr_storage& peer, size_t listener_index)
    : TcpSession(worker, worker.snapshot(), peer, listener_index) {
  client_ = listener_.transport->accepted(worker.loop(), fd, this);
  start();
}

TcpSession::TcpSession(Worker& worker, AdoptedConnection adopted)
    : TcpSession(worker, std::move(adopted.snapshot), adopted.peer, adopted.listener_index) {
  client_ = std::move(adopted.client);
  client_->set_callbacks(this);
  initial_ = std::move(adopted.input);
  start();
}

void TcpSession::start() {
  stats_.connections_active.add();
  idle_timer_.arm(listener_.config->idle_timeout);
  // Refused at accept: the connection never reaches an upstream.
  if (listener_.authorizer) {
    policy::AuthzDecision d =
        authorize_connection(listener_, worker_.index(),
                             authz_client_of(peer_, listener_.config->address, client_->peer_identity()));
    if (!d.allowed) {
      denied_by_ = authz_decider(listener_, d.policy);
      count_open(nullptr);
      close();
      return;
    }
  }
  UpstreamCluster& cluster = worker_.cluster(listener_.config->cluster_index);
  policy::PickContext pick_context;
  pick_context.now = worker_.loop().now();
  EndpointPool* pool = cluster.pick(pick_context).pool;
  count_open(pool);
  int error = 0;
  // Always a new connection: an L4 stream is one client's, from start to end.
  upstream_ = pool ? pool->acquire(this, error, /*fresh=*/true) : nullptr;
  if (upstream_ == nullptr) {
    flags_ = static_cast<uint16_t>(pool == nullptr ? kFlagNoHealthyUpstream : kFlagConnectFailure);
    close();
    return;
  }
  upstream_address_ = pool->address().text;
}

TcpSession::~TcpSession() { close(); }

void TcpSession::count_open(EndpointPool* pool) {
  const Snapshot& snap = *snapshot_;
  bool tls = pool != nullptr && pool->tls();
  GoldenLabels labels =
      golden_labels(listener_.config->direction, snap.self_service, snap.self_namespace,
                    client_->peer_identity(), snap.clusters[listener_.config->cluster_index].config, tls);
  golden_ = &snap.golden[worker_.index()]->entry(labels);
  golden_->record_tcp_open();
}

void TcpSession::start_drain() {
  // An L4 stream has no request boundary to stop at: let it run until the
  // drain timeout closes it.
}

bool TcpSession::pump(net::Transport& from, net::Transport& to, bool& from_eof, Counter& in_counter,
                      Counter& out_counter) {
  while (!from_eof && to.pending_output() < kHighWatermark) {
    size_t n = 0;
    net::ReadResult r = from.read(scratch_, net::Buffer::kBlockSize, &n);
    if (r == net::ReadResult::kAgain) break;
    if (r == net::ReadResult::kError) {
      close();
      return false;
    }
    if (r == net::ReadResult::kEof) {
      from_eof = true;
      to.shutdown_write();
      break;
    }
    in_counter.inc(n);
    out_counter.inc(n);
    if (!to.write(scratch_)) {
      close();
      return false;
    }
  }
  return true;
}

bool TcpSession::pump_client() {
  if (!connected_ || closed_) return !closed_;
  idle_timer_.arm(listener_.config->idle_timeout);
  ClusterStats& cs = upstream_->pool().cluster().stats();
  return pump(*client_, upstream_->transport(), client_eof_, stats_.bytes_received, cs.bytes_sent);
}

bool TcpSession::pump_upstream() {
  if (!connected_ || closed_) return !closed_;
  idle_timer_.arm(listener_.config->idle_timeout);
  ClusterStats& cs = upstream_->pool().cluster().stats();
  return pump(upstream_->transport(), *client_, upstream_eof_, cs.bytes_received, stats_.bytes_sent);
}

void TcpSession::maybe_finish() {
  if (closed_) return;
  if (client_eof_ && upstream_eof_ && client_->pending_output() == 0 &&
      upstream_->transport().pending_output() == 0) {
    close();
  }
}

void TcpSession::on_readable() {
  if (pump_client()) maybe_finish();
}

void TcpSession::on_writable() {
  // The client drained what the upstream sent: read the upstream again.
  if (pump_upstream()) maybe_finish();
}

void TcpSession::on_transport_error(int) { close(); }

void TcpSession::on_upstream_connected() {
  connected_ = true;
  if (!initial_.empty()) {
    upstream_->pool().cluster().stats().bytes_sent.inc(initial_.size());
    if (!upstream_->transport().write(initial_)) {
      close();
      return;
    }
    initial_.release();
  }
  if (pump_client() && pump_upstream()) maybe_finish();
}

void TcpSession::on_upstream_readable() {
  if (pump_upstream()) maybe_finish();
}

void TcpSession::on_upstream_writable() {
  if (pump_client()) maybe_finish();
}

void TcpSession::on_upstream_error(int, bool) {
  flags_ |= connected_ ? kFlagUpstreamReset : kFlagConnectFailure;
  close();
}

void TcpSession::close() {
  if (closed_) return;
  closed_ = true;
  idle_timer_.cancel();
  stats_.connections_active.sub();
  if (golden_ != nullptr) golden_->record_tcp_close(client_->bytes_read(), client_->bytes_written());
  if (upstream_) {
    upstream_->pool().release(upstream_, /*reusable=*/false);
    upstream_ = nullptr;
  }
  if (snapshot_->access_log) {
    std::string client = net::format_address(peer_);
    AccessEntry entry;
    entry.http = false;
    entry.listener = listener_.config->name;
    entry.client = client;
    entry.upstream = upstream_address_;
    entry.cluster = listener_.config->cluster;
    entry.bytes_received = client_->bytes_read();
    entry.bytes_sent = client_->bytes_written();
    entry.duration = worker_.loop().now() - started_;
    entry.identity = client_->peer_identity();
    entry.denied_by = denied_by_;
    std::string& line = worker_.scratch();
    if (golden_ != nullptr) {
      entry.source_service = golden_->labels().source_service;
      entry.destination_service = golden_->labels().destination_service;
    }
    entry.response_flags = denied_by_.empty() ? flags_ : static_cast<uint16_t>(kFlagDenied);
    format_access_line(snapshot_->access_log->format(), entry, line);
    worker_.log_access(line);
  }
  client_->close();
  worker_.loop().defer_delete(std::unique_ptr<net::Deferred>(this));
}

}  // namespace trellis::proxy
