#include "net/tls_session_cache.h"

#include <atomic>

#include <openssl/ssl.h>

namespace trellis::net {
namespace {

std::atomic<uint64_t> g_next_owner_id{1};

}  // namespace

TlsSessionOwner::TlsSessionOwner() : id(g_next_owner_id.fetch_add(1, std::memory_order_relaxed)) {}

TlsSessionCache& TlsSessionCache::this_thread() {
  static thread_local TlsSessionCache cache;
  return cache;
}

TlsSessionCache::~TlsSessionCache() {
  for (auto& [id, owned] : owners_) {
    for (auto& [destination, session] : owned.by_destination) SSL_SESSION_free(session);
  }
}

SSL_SESSION* TlsSessionCache::find(const std::shared_ptr<const TlsSessionOwner>& owner,
                                   const std::string& destination) {
  auto owned = owners_.find(owner->id);
  if (owned == owners_.end()) return nullptr;
  auto& sessions = owned->second.by_destination;
  auto it = sessions.find(destination);
  if (it == sessions.end()) return nullptr;
  // A connection that failed with it marked it unusable.
  if (SSL_SESSION_is_resumable(it->second) != 1) {
    SSL_SESSION_free(it->second);
    sessions.erase(it);
    --size_;
    return nullptr;
  }
  return it->second;
}

void TlsSessionCache::store(const std::shared_ptr<const TlsSessionOwner>& owner,
                            const std::string& destination, SSL_SESSION* session) {
  if (SSL_SESSION_is_resumable(session) != 1) {
    SSL_SESSION_free(session);
    return;
  }
  auto owned = owners_.find(owner->id);
  if (owned == owners_.end()) {
    drop_gone_owners();
    owned = owners_.emplace(owner->id, OwnerSessions{owner, {}}).first;
  }
  auto& sessions = owned->second.by_destination;
  auto it = sessions.find(destination);
  if (it != sessions.end()) {
    SSL_SESSION_free(it->second);
    it->second = session;
    return;
  }
  if (size_ >= kMaxSessions) {
    drop_gone_owners();
    if (size_ >= kMaxSessions) evict_one();
  }
  sessions.emplace(destination, session);
  ++size_;
}

void TlsSessionCache::drop_gone_owners() {
  for (auto it = owners_.begin(); it != owners_.end();) {
    if (!it->second.owner.expired()) {
      ++it;
      continue;
    }
    for (auto& [destination, session] : it->second.by_destination) SSL_SESSION_free(session);
    size_ -= it->second.by_destination.size();
    it = owners_.erase(it);
  }
}

// Any one: a destination that loses its session pays one full handshake,
// then has a session again. Not worth an LRU list on every connect.
void TlsSessionCache::evict_one() {
  for (auto& [id, owned] : owners_) {
    if (owned.by_destination.empty()) continue;
    auto victim = owned.by_destination.begin();
    SSL_SESSION_free(victim->second);
    owned.by_destination.erase(victim);
    --size_;
    return;
  }
}

}  // namespace trellis::net
