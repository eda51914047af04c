// Where the control plane keeps its state: mesh resources, registered
// service instances and the API's tokens. An interface so that an etcd backend can follow the
// embedded SQLite one. All calls come from one thread at a time (the caller
// serializes); implementations need no locking of their own.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "common/service_port.h"
#include "control/resource.h"

namespace trellis::control {

// A service instance in the registry.
struct Instance {
  std::string id;  // unique; chosen by the registrant or generated
  std::string service;
  std::string namespace_;  // default "default"
  std::string address;     // "ip:port" where the instance (its sidecar) is reached
  std::string zone;
  uint32_t weight = 1;
  std::map<std::string, std::string> labels;  // e.g. version: v2
  uint32_t ttl_seconds = 30;                  // removed this long after the last heartbeat
  int64_t last_heartbeat_ms = 0;              // wall-clock milliseconds since the epoch
  std::string registered_by;                  // "api" or the node id of the proxy that registered it
  // The Service ports it serves. Registered by a sidecar, each is reached
  // through the sidecar (at `address`), which sends it to the application's
  // target_port; registered through the API, at the address's host and
  // target_port. None: `address` takes all of the Service's traffic.
  std::vector<ServicePort> ports;
};

// An API token as stored: never its secret, only the secret's SHA-256
// (control/tokens.h makes and checks them).
struct TokenRecord {
  std::string id;               // "tok-" and 8 hex digits; public, names the token
  std::string kind;             // "admin", "read-only" or "join"
  std::string namespace_;       // join tokens only
  std::string service_account;  // join tokens only
  std::string description;
  std::string secret_sha256;  // 32 bytes
  int64_t created_ms = 0;     // wall-clock milliseconds since the epoch
  int64_t expires_ms = 0;     // 0: never
  int64_t revoked_ms = 0;     // 0: not revoked
  bool bootstrap = false;     // the admin token trellis-control wrote to <data-dir>/admin-token
};

enum class PutOutcome { kCreated, kUpdated, kUnchanged };

struct PutResult {
  PutOutcome outcome = PutOutcome::kCreated;
  Resource stored;  // with its new resource_version
};

class Store {
 public:
  virtual ~Store() = default;

  // Resources. put(): when `resource.resource_version` is non-zero it must
  // equal the stored one (optimistic concurrency), else an error that starts
  // with "conflict:". A put that changes nothing keeps the version.
  virtual Result<PutResult> put(const Resource& resource) = 0;
  virtual std::optional<Resource> get(const ResourceKey& key) = 0;
  // All of a kind; `namespace_` empty means every namespace.
  virtual std::vector<Resource> list(const std::string& kind, const std::string& namespace_) = 0;
  // False when it did not exist. `expected_version` 0 means any.
  virtual Result<bool> remove(const ResourceKey& key, uint64_t expected_version = 0) = 0;

  // Registry. upsert_instance(): true when the instance was created or
  // changed in anything but last_heartbeat_ms, false when only the heartbeat
  // moved. remove_instance(): false when it did not exist. touch_instance()
  // sets last_heartbeat_ms; false when the id is unknown. instances() is
  // ordered by id.
  virtual Result<bool> upsert_instance(const Instance& instance) = 0;
  virtual bool remove_instance(const std::string& id) = 0;
  virtual std::vector<Instance> instances() = 0;
  virtual Result<bool> touch_instance(const std::string& id, int64_t heartbeat_ms) = 0;

  // Tokens. Not mesh changes: they leave revision() alone. insert_token():
  // an error starting with "conflict:" when the id is taken. revoke_token()
  // sets revoked_ms unless already set; false when the id is unknown.
  // tokens() is ordered by id.
  virtual Result<bool> insert_token(const TokenRecord& token) = 0;
  virtual std::optional<TokenRecord> get_token(const std::string& id) = 0;
  virtual std::vector<TokenRecord> tokens() = 0;
  virtual Result<bool> revoke_token(const std::string& id, int64_t revoked_ms) = 0;

  // A counter bumped by every change, for clients that poll: puts and
  // removes of resources, instances created, changed or removed. Heartbeats
  // and puts that change nothing are not changes. Never goes back, restarts
  // included; resource versions are taken from it.
  virtual uint64_t revision() = 0;
};

}  // namespace trellis::control
