// Client-side TLS sessions kept for resumption: the last session per
// destination address, per owner (a client transport factory), per thread.
//
// Why per thread: one snapshot hands the same cluster factory to every
// worker, and the main thread's health checker connects with it too. A
// cache inside the factory would need a lock (or atomics on shared maps) on
// every connect and on every ticket a server sends; a thread_local cache
// needs nothing, and matches how connections live (on one worker for life).
// The price is one full handshake per destination per thread before that
// thread resumes, which is small next to the handshakes saved afterwards.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>

#include <openssl/ssl.h>

namespace trellis::net {

// Whose sessions: a session is offered only to connections of the owner that
// got it, since another owner may verify servers differently. The owner holds
// it by shared_ptr; caches hold weak references and drop a gone owner's
// sessions when they next add an owner.
struct TlsSessionOwner {
  TlsSessionOwner();
  uint64_t id;  // unique in the process
};

class TlsSessionCache {
 public:
  // Per thread, across all owners. Each session holds the server's
  // certificate chain and a ticket, a few KiB: this keeps an idle sidecar's
  // memory bounded whatever the number of destinations.
  static constexpr size_t kMaxSessions = 128;

  // The calling thread's cache.
  static TlsSessionCache& this_thread();

  TlsSessionCache() = default;
  ~TlsSessionCache();
  TlsSessionCache(const TlsSessionCache&) = delete;
  TlsSessionCache& operator=(const TlsSessionCache&) = delete;

  // The session to offer when `owner` connects to `destination`, or null.
  // The cache keeps its reference (SSL_set_session takes its own).
  SSL_SESSION* find(const std::shared_ptr<const TlsSessionOwner>& owner, const std::string& destination);
  // Makes `session` the one offered next; takes over the caller's reference.
  void store(const std::shared_ptr<const TlsSessionOwner>& owner, const std::string& destination,
             SSL_SESSION* session);
  size_t size() const { return size_; }

 private:
  struct OwnerSessions {
    std::weak_ptr<const TlsSessionOwner> owner;
    std::unordered_map<std::string, SSL_SESSION*> by_destination;
  };
  void drop_gone_owners();
  void evict_one();

  std::unordered_map<uint64_t, OwnerSessions> owners_;
  size_t size_ = 0;
};

}  // namespace trellis::net
