// The embedded default Store: one SQLite database file in the control plane's
// data directory, so resources, registered instances and tokens survive a
// restart.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "control/store.h"

struct sqlite3;
struct sqlite3_stmt;

namespace trellis::control {

// What each call costs, for callers sizing their use of it:
//   get, list, instances, revision   one cached SELECT, no transaction of its own
//   touch_instance                   one UPDATE in autocommit (a heartbeat is
//                                    one WAL append; no revision bump)
//   get_token, tokens                one cached SELECT
//   insert_token, revoke_token       one INSERT or UPDATE in autocommit
//   put, remove, upsert_instance,    BEGIN IMMEDIATE; SELECT of the current row;
//   remove_instance                  when something changes, one UPDATE of the
//                                    revision counter and one write of the row
//                                    (an upsert that only moves the heartbeat
//                                    writes just that); COMMIT, one WAL append
//   upsert_instances                 the same for many instances inside one
//                                    transaction, so one WAL append in all
// Statements are prepared once, at open, and reused.
// The database runs in WAL mode with synchronous=NORMAL: a commit is not
// fsynced until the next checkpoint, so a power cut may lose the last
// commits but never corrupts the file. A process crash loses nothing.
//
// Errors from SQLite (a locked, full or corrupted database) come back as
// Result errors carrying SQLite's message; calls whose Store signature has no
// error channel (get, list, instances, remove_instance, get_token, tokens,
// revision) answer
// "nothing" and leave the message in last_error().
class SqliteStore final : public Store {
 public:
  static constexpr int kDefaultBusyTimeoutMs = 5000;
  // The schema version this build writes; open() migrates older databases up
  // to it and refuses newer ones.
  static constexpr int kSchemaVersion = 3;

  // Opens (creating when missing) `<data_dir>/trellis.db`, creating the
  // directory too (readable by its owner only: it holds the admin token). `busy_timeout_ms` is how long a
  // call waits for a lock held by another connection before it fails.
  static Result<std::unique_ptr<SqliteStore>> open(const std::string& data_dir,
                                                   int busy_timeout_ms = kDefaultBusyTimeoutMs);
  ~SqliteStore() override;
  SqliteStore(const SqliteStore&) = delete;
  SqliteStore& operator=(const SqliteStore&) = delete;

  Result<PutResult> put(const Resource& resource) override;
  std::optional<Resource> get(const ResourceKey& key) override;
  std::vector<Resource> list(const std::string& kind, const std::string& namespace_) override;
  Result<bool> remove(const ResourceKey& key, uint64_t expected_version = 0) override;

  Result<bool> upsert_instance(const Instance& instance) override;
  bool remove_instance(const std::string& id) override;
  std::vector<Instance> instances() override;
  Result<bool> touch_instance(const std::string& id, int64_t heartbeat_ms) override;

  Result<bool> insert_token(const TokenRecord& token) override;
  std::optional<TokenRecord> get_token(const std::string& id) override;
  std::vector<TokenRecord> tokens() override;
  Result<bool> revoke_token(const std::string& id, int64_t revoked_ms) override;

  uint64_t revision() override;

  // Many upserts in one transaction: all are stored or none. Returns how many
  // of them changed something (as upsert_instance's true).
  Result<size_t> upsert_instances(const std::vector<Instance>& instances);

  // The last SQLite error met by a call without an error channel; empty when
  // that call succeeded.
  const std::string& last_error() const { return last_error_; }

 private:
  struct Statements;
  class Transaction;

  SqliteStore(sqlite3* db, std::unique_ptr<Statements> statements);
  Error sqlite_error(const std::string& what);
  Result<uint64_t> bump_revision();
  Result<bool> upsert_instance_locked(const Instance& instance);

  sqlite3* db_;
  std::unique_ptr<Statements> stmts_;
  uint64_t revision_ = 0;  // the last value read from or written to the database
  std::string last_error_;
};

}  // namespace trellis::control
