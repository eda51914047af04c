// The service registry: instances register, keep themselves alive with
// heartbeats and are dropped when their TTL runs out. State lives in the Store
// so it survives a restart; this class holds the live view the push layer
// reads, and tells it when that view changed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/random.h"
#include "common/result.h"
#include "control/store.h"

namespace trellis::control {

// Wall-clock time as a seam. Heartbeats are stored as wall-clock
// milliseconds, not monotonic time, so that they mean the same after a
// restart; what a restart does to TTLs is the owner's choice (restart_ttls()).
class WallClock {
 public:
  virtual ~WallClock() = default;
  // Milliseconds since the Unix epoch.
  virtual int64_t now_ms() const = 0;
};

// The one place in the control plane that reads the real wall clock.
class SystemWallClock final : public WallClock {
 public:
  int64_t now_ms() const override;
};

struct ServiceCount {
  std::string namespace_;
  std::string service;
  size_t instances = 0;  // live ones
};

// Errors start with a word the API layer can map to a status:
//   "invalid: ..."    the instance failed validation (field: reason; ...)
//   "not found: ..."  no live instance with that id
//   anything else     the store failed (its message)
//
// An instance is live while now - last_heartbeat_ms <= ttl_seconds * 1000;
// queries never show one past that, and expire() removes it from the store.
// The owner calls expire() periodically. On start it either calls expire()
// (TTLs kept running while the control plane was down) or restart_ttls()
// (every instance gets time to reconnect); trellis-control does the latter,
// for static stability.
//
// Like the Store, not thread-safe: the caller serializes.
class Registry {
 public:
  static constexpr uint32_t kMinWeight = 1;
  static constexpr uint32_t kMaxWeight = 1000000;
  static constexpr uint32_t kMinTtlSeconds = 1;
  static constexpr uint32_t kMaxTtlSeconds = 86400;
  static constexpr size_t kMaxLabels = 64;
  static constexpr const char* kDefaultNamespace = "default";
  static constexpr const char* kDefaultRegisteredBy = "api";

  // Called after each change of the live view, once per (namespace, service)
  // it touched: an instance added, changed, removed, expired, or brought back
  // to life by registering again. Heartbeats that only extend a TTL are not
  // changes.
  using ChangeListener = std::function<void(const std::string& namespace_, const std::string& service)>;

  // Loads the instances the store holds. `random` makes instance ids.
  Registry(Store& store, const WallClock& clock, Random& random);
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Validates, fills defaults (namespace "default", registered_by "api", an
  // id "<service>-<8 hex digits>" when empty), sets the heartbeat to now and
  // stores it. Registering an id again replaces that instance. Returns the
  // instance as stored.
  Result<Instance> register_instance(Instance instance);
  // Extends the instance's life. An unknown or already expired id is "not
  // found": the instance must register again.
  Result<Instance> heartbeat(const std::string& id);
  // False when no such instance was registered. The store's remove has no
  // error channel: should it fail, the row stays behind and is expired by
  // its TTL after a restart.
  bool deregister(const std::string& id);

  // Live instances of one service, by id. An empty namespace means "default".
  std::vector<Instance> instances_of(const std::string& service, const std::string& namespace_) const;
  // Services with at least one live instance, by namespace then name.
  std::vector<ServiceCount> services() const;
  // The instance with this id, when live.
  std::optional<Instance> find(const std::string& id) const;

  // Removes every instance whose TTL ran out; returns them, by id.
  std::vector<Instance> expire();

  // Gives every stored instance a full TTL from now, and at least
  // `at_least_ms`. Called once when the control plane starts: its proxies had
  // no one to heartbeat to while it was down, and removing their instances
  // before they could reconnect would take working endpoints away from every
  // client (static stability). A proxy's reconnect backoff can outgrow a short
  // TTL, hence the floor. An instance that really died is removed when both
  // have run out; its first heartbeat or registration ends the grace.
  void restart_ttls(int64_t at_least_ms = 0);

  // Bumped once by every call that changed the live view (before the
  // listener hears of it), never by a no-op. Counts from 0 in each process:
  // it orders changes, it is not stored.
  uint64_t revision() const { return revision_; }
  void set_change_listener(ChangeListener listener) { listener_ = std::move(listener); }

  // The validation register_instance applies, after defaults are filled in
  // (an empty id passes: one is generated). Empty when valid.
  static std::vector<FieldError> validate(const Instance& instance);

 private:
  using ServiceKey = std::pair<std::string, std::string>;  // namespace, service

  bool live(const Instance& instance, int64_t now_ms) const;
  Result<std::string> generate_id(const std::string& service);
  void insert(const Instance& instance);
  void erase(const std::string& id);
  void changed(const std::set<ServiceKey>& services);

  Store& store_;
  const WallClock& clock_;
  Random& random_;
  std::map<std::string, Instance> by_id_;
  std::map<ServiceKey, std::set<std::string>> by_service_;  // ids, live or not
  // Set by restart_ttls(): id -> wall-clock ms until which it stays live.
  std::map<std::string, int64_t> restart_grace_;
  uint64_t revision_ = 0;
  ChangeListener listener_;
};

}  // namespace trellis::control
