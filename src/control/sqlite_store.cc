#include "control/sqlite_store.h"

#include <sqlite3.h>

#include <array>
#include <cstdlib>
#include <filesystem>
#include <string_view>
#include <utility>

namespace trellis::control {
namespace {

constexpr const char* kDatabaseFile = "trellis.db";

// Schema changes are append-only: a database records the last step applied
// and open() runs the ones after it, so a newer build can reshape the tables
// of an older one without losing its state.
struct Migration {
  int version;
  const char* sql;
};

constexpr Migration kMigrations[] = {
    {1, R"sql(
      CREATE TABLE meta (
        key TEXT PRIMARY KEY NOT NULL,
        value
      ) WITHOUT ROWID;
      INSERT INTO meta (key, value) VALUES ('revision', 0);
      CREATE TABLE resources (
        kind TEXT NOT NULL,
        namespace TEXT NOT NULL,
        name TEXT NOT NULL,
        api_version TEXT NOT NULL,
        labels_json TEXT NOT NULL,
        spec_json TEXT NOT NULL,
        resource_version INTEGER NOT NULL,
        PRIMARY KEY (kind, namespace, name)
      ) WITHOUT ROWID;
      CREATE TABLE instances (
        id TEXT PRIMARY KEY NOT NULL,
        service TEXT NOT NULL,
        namespace TEXT NOT NULL,
        address TEXT NOT NULL,
        zone TEXT NOT NULL,
        weight INTEGER NOT NULL,
        labels_json TEXT NOT NULL,
        ttl_seconds INTEGER NOT NULL,
        last_heartbeat_ms INTEGER NOT NULL,
        registered_by TEXT NOT NULL
      ) WITHOUT ROWID;
      CREATE INDEX instances_by_service ON instances (namespace, service);
    )sql"},
    {2, R"sql(
      CREATE TABLE tokens (
        id TEXT PRIMARY KEY NOT NULL,
        kind TEXT NOT NULL,
        namespace TEXT NOT NULL,
        service_account TEXT NOT NULL,
        description TEXT NOT NULL,
        secret_sha256 BLOB NOT NULL,
        created_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL,
        revoked_ms INTEGER NOT NULL,
        bootstrap INTEGER NOT NULL
      ) WITHOUT ROWID;
    )sql"},
    {3, R"sql(
      ALTER TABLE instances ADD COLUMN ports_json TEXT NOT NULL DEFAULT '[]';
    )sql"},
};
static_assert(std::size(kMigrations) == SqliteStore::kSchemaVersion, "one migration per schema version");

enum StatementId : size_t {
  kBegin,
  kCommit,
  kRollback,
  kReadRevision,
  kBumpRevision,
  kGetResource,
  kListResources,
  kWriteResource,
  kDeleteResource,
  kGetInstance,
  kWriteInstance,
  kTouchInstance,
  kDeleteInstance,
  kListInstances,
  kInsertToken,
  kGetToken,
  kListTokens,
  kRevokeToken,
  kStatementCount,
};

constexpr std::array<const char*, kStatementCount> kStatementSql = {
    // BEGIN IMMEDIATE takes the write lock up front, so a read-then-write
    // transaction never fails half way on a lock upgrade.
    "BEGIN IMMEDIATE",
    "COMMIT",
    "ROLLBACK",
    "SELECT value FROM meta WHERE key = 'revision'",
    "UPDATE meta SET value = value + 1 WHERE key = 'revision' RETURNING value",
    "SELECT kind, namespace, name, api_version, labels_json, spec_json, resource_version FROM resources "
    "WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
    "SELECT kind, namespace, name, api_version, labels_json, spec_json, resource_version FROM resources "
    "WHERE kind = ?1 AND (?2 = '' OR namespace = ?2) ORDER BY namespace, name",
    "INSERT INTO resources (kind, namespace, name, api_version, labels_json, spec_json, resource_version) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (kind, namespace, name) DO UPDATE SET "
    "api_version = excluded.api_version, labels_json = excluded.labels_json, spec_json = excluded.spec_json, "
    "resource_version = excluded.resource_version",
    "DELETE FROM resources WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
    "SELECT id, service, namespace, address, zone, weight, labels_json, ttl_seconds, last_heartbeat_ms, "
    "registered_by, ports_json FROM instances WHERE id = ?1",
    "INSERT INTO instances (id, service, namespace, address, zone, weight, labels_json, ttl_seconds, "
    "last_heartbeat_ms, registered_by, ports_json) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) "
    "ON CONFLICT (id) DO UPDATE SET service = excluded.service, namespace = excluded.namespace, "
    "address = excluded.address, zone = excluded.zone, weight = excluded.weight, "
    "labels_json = excluded.labels_json, ttl_seconds = excluded.ttl_seconds, "
    "last_heartbeat_ms = excluded.last_heartbeat_ms, registered_by = excluded.registered_by, "
    "ports_json = excluded.ports_json",
    "UPDATE instances SET last_heartbeat_ms = ?2 WHERE id = ?1",
    "DELETE FROM instances WHERE id = ?1",
    "SELECT id, service, namespace, address, zone, weight, labels_json, ttl_seconds, last_heartbeat_ms, "
    "registered_by, ports_json FROM instances ORDER BY id",
    "INSERT INTO tokens (id, kind, namespace, service_account, description, secret_sha256, created_ms, "
    "expires_ms, revoked_ms, bootstrap) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    "SELECT id, kind, namespace, service_account, description, secret_sha256, created_ms, expires_ms, "
    "revoked_ms, bootstrap FROM tokens WHERE id = ?1",
    "SELECT id, kind, namespace, service_account, description, secret_sha256, created_ms, expires_ms, "
    "revoked_ms, bootstrap FROM tokens ORDER BY id",
    // The first revocation time stays: revoking twice is not a new event.
    "UPDATE tokens SET revoked_ms = CASE WHEN revoked_ms = 0 THEN ?2 ELSE revoked_ms END WHERE id = ?1",
};

// One use of a cached statement. Resetting it when the use ends matters: a
// statement left mid-step would keep a read transaction open and pin the WAL.
class Query {
 public:
  explicit Query(sqlite3_stmt* stmt) : stmt_(stmt) {}
  ~Query() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  Query(const Query&) = delete;
  Query& operator=(const Query&) = delete;

  Query& bind(int index, std::string_view text) {
    keep(sqlite3_bind_text(stmt_, index, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT));
    return *this;
  }
  Query& bind(int index, int64_t value) {
    keep(sqlite3_bind_int64(stmt_, index, value));
    return *this;
  }
  Query& bind_blob(int index, std::string_view bytes) {
    keep(sqlite3_bind_blob(stmt_, index, bytes.data(), static_cast<int>(bytes.size()), SQLITE_TRANSIENT));
    return *this;
  }
  // SQLITE_ROW, SQLITE_DONE or an error code (a failed bind included).
  int step() { return bind_rc_ != SQLITE_OK ? bind_rc_ : sqlite3_step(stmt_); }
  // Steps to the end, for statements whose rows are not needed.
  int run() {
    int rc = step();
    while (rc == SQLITE_ROW) rc = sqlite3_step(stmt_);
    return rc;
  }

  std::string text(int column) const {
    const unsigned char* p = sqlite3_column_text(stmt_, column);
    if (p == nullptr) return {};
    return std::string(reinterpret_cast<const char*>(p),
                       static_cast<size_t>(sqlite3_column_bytes(stmt_, column)));
  }
  int64_t integer(int column) const { return sqlite3_column_int64(stmt_, column); }
  std::string blob(int column) const {
    const void* p = sqlite3_column_blob(stmt_, column);
    if (p == nullptr) return {};
    return std::string(static_cast<const char*>(p), static_cast<size_t>(sqlite3_column_bytes(stmt_, column)));
  }

 private:
  void keep(int rc) {
    if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  }
  sqlite3_stmt* stmt_;
  int bind_rc_ = SQLITE_OK;
};

std::string describe(const ResourceKey& key) {
  return key.kind + " " + (key.namespace_.empty() ? key.name : key.namespace_ + "/" + key.name);
}

// Json::dump throws on strings that are not UTF-8; the store answers with an
// error instead.
Result<std::string> dump_json(const Json& value, const char* what) {
  try {
    return value.dump();
  } catch (const Json::exception& e) {
    return make_error(std::string(what) + ": " + e.what());
  }
}

Result<std::string> labels_to_json(const std::map<std::string, std::string>& labels) {
  return dump_json(Json(labels), "labels");
}

bool labels_from_json(const std::string& text, std::map<std::string, std::string>& out) {
  Json parsed = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_object()) return false;
  for (const auto& [key, value] : parsed.items()) {
    if (!value.is_string()) return false;
    out.emplace(key, value.get<std::string>());
  }
  return true;
}

Result<std::string> ports_to_json(const std::vector<ServicePort>& ports) {
  Json list = Json::array();
  for (const ServicePort& p : ports)
    list.push_back(
        {{"name", p.name}, {"port", p.port}, {"target_port", p.target_port}, {"protocol", p.protocol}});
  return dump_json(list, "ports");
}

bool ports_from_json(const std::string& text, std::vector<ServicePort>& out) {
  Json parsed = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_array()) return false;
  for (const Json& p : parsed) {
    if (!p.is_object()) return false;
    ServicePort port;
    port.name = p.value("name", "");
    port.port = p.value("port", 0u);
    port.target_port = p.value("target_port", 0u);
    port.protocol = p.value("protocol", "");
    out.push_back(std::move(port));
  }
  return true;
}

// Columns as in kGetResource / kListResources.
std::optional<Resource> read_resource(const Query& q) {
  Resource r;
  r.kind = q.text(0);
  r.namespace_ = q.text(1);
  r.name = q.text(2);
  r.api_version = q.text(3);
  if (!labels_from_json(q.text(4), r.labels)) return std::nullopt;
  r.spec = Json::parse(q.text(5), nullptr, /*allow_exceptions=*/false);
  if (r.spec.is_discarded()) return std::nullopt;
  r.resource_version = static_cast<uint64_t>(q.integer(6));
  return r;
}

// Columns as in kGetInstance / kListInstances.
std::optional<Instance> read_instance(const Query& q) {
  Instance i;
  i.id = q.text(0);
  i.service = q.text(1);
  i.namespace_ = q.text(2);
  i.address = q.text(3);
  i.zone = q.text(4);
  i.weight = static_cast<uint32_t>(q.integer(5));
  if (!labels_from_json(q.text(6), i.labels)) return std::nullopt;
  i.ttl_seconds = static_cast<uint32_t>(q.integer(7));
  i.last_heartbeat_ms = q.integer(8);
  i.registered_by = q.text(9);
  if (!ports_from_json(q.text(10), i.ports)) return std::nullopt;
  return i;
}

// Columns as in kGetToken / kListTokens.
TokenRecord read_token(const Query& q) {
  TokenRecord t;
  t.id = q.text(0);
  t.kind = q.text(1);
  t.namespace_ = q.text(2);
  t.service_account = q.text(3);
  t.description = q.text(4);
  t.secret_sha256 = q.blob(5);
  t.created_ms = q.integer(6);
  t.expires_ms = q.integer(7);
  t.revoked_ms = q.integer(8);
  t.bootstrap = q.integer(9) != 0;
  return t;
}

// Equal in everything a proxy sees: the heartbeat alone is not a change.
bool same_but_heartbeat(const Instance& a, const Instance& b) {
  return a.id == b.id && a.service == b.service && a.namespace_ == b.namespace_ && a.address == b.address &&
         a.zone == b.zone && a.weight == b.weight && a.labels == b.labels && a.ttl_seconds == b.ttl_seconds &&
         a.registered_by == b.registered_by && a.ports == b.ports;
}

Error db_error(sqlite3* db, const std::string& what) {
  return make_error(what + ": " + (db != nullptr ? sqlite3_errmsg(db) : "out of memory"));
}

// For the one-off statements of open(); everything after uses cached ones.
Result<bool> exec(sqlite3* db, const char* sql, const char* what) {
  if (sqlite3_exec(db, sql, nullptr, nullptr, nullptr) != SQLITE_OK) return db_error(db, what);
  return true;
}

Result<std::string> query_text(sqlite3* db, const char* sql, const char* what) {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) != SQLITE_OK) return db_error(db, what);
  std::string out;
  int rc = sqlite3_step(stmt);
  if (rc == SQLITE_ROW) {
    const unsigned char* p = sqlite3_column_text(stmt, 0);
    if (p != nullptr) out = reinterpret_cast<const char*>(p);
    rc = sqlite3_step(stmt);
  }
  Result<std::string> result = rc == SQLITE_DONE ? Result<std::string>(std::move(out)) : db_error(db, what);
  sqlite3_finalize(stmt);
  return result;
}

Result<bool> migrate(sqlite3* db) {
  if (auto r = exec(db, "BEGIN IMMEDIATE", "migrate: begin"); !r) return r;
  auto fail = [db](Error e) -> Result<bool> {
    if (sqlite3_get_autocommit(db) == 0) sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    return e;
  };
  if (auto r = exec(db,
                    "CREATE TABLE IF NOT EXISTS schema_version ("
                    "id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)",
                    "migrate: schema_version");
      !r) {
    return fail(r.error());
  }
  auto current = query_text(db, "SELECT version FROM schema_version WHERE id = 1", "migrate: read version");
  if (!current) return fail(current.error());
  int version = current->empty() ? 0 : std::atoi(current->c_str());
  if (version > SqliteStore::kSchemaVersion) {
    return fail(make_error("database schema version " + std::to_string(version) +
                           " is newer than this build knows (" + std::to_string(SqliteStore::kSchemaVersion) +
                           "); upgrade trellis-control"));
  }
  for (const Migration& m : kMigrations) {
    if (m.version <= version) continue;
    std::string what = "migrate to schema version " + std::to_string(m.version);
    if (auto r = exec(db, m.sql, what.c_str()); !r) return fail(r.error());
    std::string set = "INSERT INTO schema_version (id, version) VALUES (1, " + std::to_string(m.version) +
                      ") ON CONFLICT (id) DO UPDATE SET version = excluded.version";
    if (auto r = exec(db, set.c_str(), what.c_str()); !r) return fail(r.error());
  }
  if (auto r = exec(db, "COMMIT", "migrate: commit"); !r) return fail(r.error());
  return true;
}

}  // namespace

struct SqliteStore::Statements {
  std::array<sqlite3_stmt*, kStatementCount> stmt{};
  ~Statements() {
    for (sqlite3_stmt* s : stmt) sqlite3_finalize(s);  // null is a no-op
  }
  sqlite3_stmt* operator[](StatementId id) const { return stmt[id]; }
};

// A write transaction that rolls back unless committed, so every early
// return on an error leaves the database as it was.
class SqliteStore::Transaction {
 public:
  explicit Transaction(SqliteStore& store) : store_(store) {}
  ~Transaction() {
    // SQLite may already have rolled back on its own (disk full, I/O error).
    if (open_ && sqlite3_get_autocommit(store_.db_) == 0) Query(store_.stmts_->stmt[kRollback]).run();
  }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  Result<bool> begin(const std::string& what) {
    if (Query(store_.stmts_->stmt[kBegin]).run() != SQLITE_DONE) return store_.sqlite_error(what);
    open_ = true;
    return true;
  }
  Result<bool> commit(const std::string& what) {
    if (Query(store_.stmts_->stmt[kCommit]).run() != SQLITE_DONE) return store_.sqlite_error(what);
    open_ = false;
    return true;
  }

 private:
  SqliteStore& store_;
  bool open_ = false;
};

Result<std::unique_ptr<SqliteStore>> SqliteStore::open(const std::string& data_dir, int busy_timeout_ms) {
  if (data_dir.empty()) return make_error("data directory: must not be empty");
  std::error_code ec;
  bool created = std::filesystem::create_directories(data_dir, ec);
  if (ec) return make_error("data directory " + data_dir + ": " + ec.message());
  // A directory made here is the owner's alone: it holds the database and
  // the admin token. One the operator made keeps the modes they chose.
  if (created) {
    std::filesystem::permissions(data_dir, std::filesystem::perms::owner_all,
                                 std::filesystem::perm_options::replace, ec);
    if (ec) return make_error("data directory " + data_dir + ": " + ec.message());
  }
  std::string path = (std::filesystem::path(data_dir) / kDatabaseFile).string();

  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  // Owns the handle until the store does; sqlite3_open_v2 returns one even
  // when it fails, and it must be closed.
  std::unique_ptr<sqlite3, int (*)(sqlite3*)> guard(db, &sqlite3_close_v2);
  std::string where = "open " + path;
  if (rc != SQLITE_OK) return db_error(db, where);
  sqlite3_busy_timeout(db, busy_timeout_ms);

  // Readers never block the writer in WAL mode, and synchronous=NORMAL
  // makes a commit an append without fsync (see the header for what that
  // risks).
  auto mode = query_text(db, "PRAGMA journal_mode=WAL", where.c_str());
  if (!mode) return mode.error();
  if (*mode != "wal") return make_error(where + ": cannot use WAL mode (journal mode is " + *mode + ")");
  if (auto r = exec(db, "PRAGMA synchronous=NORMAL", where.c_str()); !r) return r.error();
  if (auto r = migrate(db); !r) return make_error(where + ": " + r.error().message);

  auto statements = std::make_unique<Statements>();
  for (size_t i = 0; i < kStatementCount; ++i) {
    if (sqlite3_prepare_v3(db, kStatementSql[i], -1, SQLITE_PREPARE_PERSISTENT, &statements->stmt[i],
                           nullptr) != SQLITE_OK) {
      return db_error(db, where + ": prepare");
    }
  }
  std::unique_ptr<SqliteStore> store(new SqliteStore(guard.release(), std::move(statements)));
  {
    Query q((*store->stmts_)[kReadRevision]);
    if (q.step() != SQLITE_ROW) return store->sqlite_error(where + ": read revision");
    store->revision_ = static_cast<uint64_t>(q.integer(0));
  }
  return store;
}

SqliteStore::SqliteStore(sqlite3* db, std::unique_ptr<Statements> statements)
    : db_(db), stmts_(std::move(statements)) {}

SqliteStore::~SqliteStore() {
  stmts_.reset();  // statements before the connection they belong to
  sqlite3_close_v2(db_);
}

Error SqliteStore::sqlite_error(const std::string& what) { return db_error(db_, what); }

// Inside a transaction: every change takes the next value of one global
// counter, so resource versions never repeat, even across restarts and
// deletes (a re-created object never gets a version a client has seen).
Result<uint64_t> SqliteStore::bump_revision() {
  Query q((*stmts_)[kBumpRevision]);
  if (q.step() != SQLITE_ROW) return sqlite_error("bump revision");
  uint64_t next = static_cast<uint64_t>(q.integer(0));
  if (q.run() != SQLITE_DONE) return sqlite_error("bump revision");
  revision_ = next;
  return next;
}

Result<PutResult> SqliteStore::put(const Resource& resource) {
  const ResourceKey key = resource.key();
  const std::string what = "put " + describe(key);
  if (key.kind.empty() || key.name.empty()) return make_error(what + ": kind and name must not be empty");
  auto labels = labels_to_json(resource.labels);
  if (!labels) return make_error(what + ": " + labels.error().message);
  auto spec = dump_json(resource.spec, "spec");
  if (!spec) return make_error(what + ": " + spec.error().message);

  Transaction tx(*this);
  if (auto r = tx.begin(what); !r) return r.error();

  std::optional<Resource> current;
  {
    Query q((*stmts_)[kGetResource]);
    q.bind(1, key.kind).bind(2, key.namespace_).bind(3, key.name);
    int rc = q.step();
    if (rc == SQLITE_ROW) {
      current = read_resource(q);
      if (!current) return make_error(what + ": stored row is corrupted");
    } else if (rc != SQLITE_DONE) {
      return sqlite_error(what);
    }
  }

  if (resource.resource_version != 0) {
    if (!current) {
      return make_error("conflict: " + describe(key) + ": expected resourceVersion " +
                        std::to_string(resource.resource_version) + ", current: does not exist");
    }
    if (current->resource_version != resource.resource_version) {
      return make_error("conflict: " + describe(key) + ": expected resourceVersion " +
                        std::to_string(resource.resource_version) + ", current " +
                        std::to_string(current->resource_version));
    }
  }

  PutResult out;
  out.stored = resource;
  if (current) {
    // Compared as values, not text: a client re-sending the same document
    // with 1.0 for 1 or its keys in another order changes nothing.
    bool unchanged = current->api_version == resource.api_version && current->labels == resource.labels &&
                     current->spec == resource.spec;
    if (unchanged) {
      out.outcome = PutOutcome::kUnchanged;
      out.stored.resource_version = current->resource_version;
      return out;  // nothing written: the transaction rolls back
    }
  }

  auto version = bump_revision();
  if (!version) return make_error(what + ": " + version.error().message);
  {
    Query q((*stmts_)[kWriteResource]);
    q.bind(1, key.kind).bind(2, key.namespace_).bind(3, key.name).bind(4, resource.api_version);
    q.bind(5, *labels).bind(6, *spec).bind(7, static_cast<int64_t>(*version));
    if (q.run() != SQLITE_DONE) return sqlite_error(what);
  }
  if (auto r = tx.commit(what); !r) return r.error();
  out.outcome = current ? PutOutcome::kUpdated : PutOutcome::kCreated;
  out.stored.resource_version = *version;
  return out;
}

std::optional<Resource> SqliteStore::get(const ResourceKey& key) {
  last_error_.clear();
  Query q((*stmts_)[kGetResource]);
  q.bind(1, key.kind).bind(2, key.namespace_).bind(3, key.name);
  int rc = q.step();
  if (rc == SQLITE_ROW) {
    std::optional<Resource> r = read_resource(q);
    if (!r) last_error_ = "get " + describe(key) + ": stored row is corrupted";
    return r;
  }
  if (rc != SQLITE_DONE) last_error_ = sqlite_error("get " + describe(key)).message;
  return std::nullopt;
}

std::vector<Resource> SqliteStore::list(const std::string& kind, const std::string& namespace_) {
  last_error_.clear();
  std::vector<Resource> out;
  Query q((*stmts_)[kListResources]);
  q.bind(1, kind).bind(2, namespace_);
  int rc;
  while ((rc = q.step()) == SQLITE_ROW) {
    if (std::optional<Resource> r = read_resource(q)) {
      out.push_back(std::move(*r));
    } else {
      last_error_ = "list " + kind + ": a stored row is corrupted; skipped";
    }
  }
  if (rc != SQLITE_DONE) last_error_ = sqlite_error("list " + kind).message;
  return out;
}

Result<bool> SqliteStore::remove(const ResourceKey& key, uint64_t expected_version) {
  const std::string what = "remove " + describe(key);
  Transaction tx(*this);
  if (auto r = tx.begin(what); !r) return r;
  uint64_t current = 0;
  {
    Query q((*stmts_)[kGetResource]);
    q.bind(1, key.kind).bind(2, key.namespace_).bind(3, key.name);
    int rc = q.step();
    if (rc == SQLITE_DONE) return false;
    if (rc != SQLITE_ROW) return sqlite_error(what);
    current = static_cast<uint64_t>(q.integer(6));
  }
  if (expected_version != 0 && expected_version != current) {
    return make_error("conflict: " + describe(key) + ": expected resourceVersion " +
                      std::to_string(expected_version) + ", current " + std::to_string(current));
  }
  if (auto v = bump_revision(); !v) return make_error(what + ": " + v.error().message);
  {
    Query q((*stmts_)[kDeleteResource]);
    q.bind(1, key.kind).bind(2, key.namespace_).bind(3, key.name);
    if (q.run() != SQLITE_DONE) return sqlite_error(what);
  }
  if (auto r = tx.commit(what); !r) return r;
  return true;
}

// Inside a transaction. True when the instance was created or changed in
// anything but its heartbeat; only then is the revision bumped.
Result<bool> SqliteStore::upsert_instance_locked(const Instance& instance) {
  const std::string what = "upsert instance " + instance.id;
  if (instance.id.empty()) return make_error("upsert instance: id must not be empty");
  auto labels = labels_to_json(instance.labels);
  if (!labels) return make_error(what + ": " + labels.error().message);
  auto ports = ports_to_json(instance.ports);
  if (!ports) return make_error(what + ": " + ports.error().message);

  std::optional<Instance> current;
  {
    Query q((*stmts_)[kGetInstance]);
    q.bind(1, instance.id);
    int rc = q.step();
    if (rc == SQLITE_ROW) {
      current = read_instance(q);
      // A corrupted row is replaced below, which repairs it.
    } else if (rc != SQLITE_DONE) {
      return sqlite_error(what);
    }
  }
  if (current && same_but_heartbeat(*current, instance)) {
    if (current->last_heartbeat_ms != instance.last_heartbeat_ms) {
      Query q((*stmts_)[kTouchInstance]);
      q.bind(1, instance.id).bind(2, instance.last_heartbeat_ms);
      if (q.run() != SQLITE_DONE) return sqlite_error(what);
    }
    return false;
  }
  if (auto v = bump_revision(); !v) return make_error(what + ": " + v.error().message);
  Query q((*stmts_)[kWriteInstance]);
  q.bind(1, instance.id).bind(2, instance.service).bind(3, instance.namespace_).bind(4, instance.address);
  q.bind(5, instance.zone).bind(6, static_cast<int64_t>(instance.weight)).bind(7, *labels);
  q.bind(8, static_cast<int64_t>(instance.ttl_seconds)).bind(9, instance.last_heartbeat_ms);
  q.bind(10, instance.registered_by).bind(11, *ports);
  if (q.run() != SQLITE_DONE) return sqlite_error(what);
  return true;
}

Result<bool> SqliteStore::upsert_instance(const Instance& instance) {
  const std::string what = "upsert instance " + instance.id;
  Transaction tx(*this);
  if (auto r = tx.begin(what); !r) return r;
  auto changed = upsert_instance_locked(instance);
  if (!changed) return changed;
  if (auto r = tx.commit(what); !r) return r;
  return changed;
}

Result<size_t> SqliteStore::upsert_instances(const std::vector<Instance>& instances) {
  const std::string what = "upsert " + std::to_string(instances.size()) + " instances";
  Transaction tx(*this);
  if (auto r = tx.begin(what); !r) return r.error();
  size_t changed = 0;
  for (const Instance& instance : instances) {
    auto r = upsert_instance_locked(instance);
    if (!r) return r.error();
    if (*r) ++changed;
  }
  if (auto r = tx.commit(what); !r) return r.error();
  return changed;
}

bool SqliteStore::remove_instance(const std::string& id) {
  last_error_.clear();
  const std::string what = "remove instance " + id;
  Transaction tx(*this);
  if (auto r = tx.begin(what); !r) {
    last_error_ = r.error().message;
    return false;
  }
  {
    Query q((*stmts_)[kDeleteInstance]);
    q.bind(1, id);
    if (q.run() != SQLITE_DONE) {
      last_error_ = sqlite_error(what).message;
      return false;
    }
  }
  if (sqlite3_changes(db_) == 0) return false;
  if (auto v = bump_revision(); !v) {
    last_error_ = what + ": " + v.error().message;
    return false;
  }
  if (auto r = tx.commit(what); !r) {
    last_error_ = r.error().message;
    return false;
  }
  return true;
}

std::vector<Instance> SqliteStore::instances() {
  last_error_.clear();
  std::vector<Instance> out;
  Query q((*stmts_)[kListInstances]);
  int rc;
  while ((rc = q.step()) == SQLITE_ROW) {
    if (std::optional<Instance> i = read_instance(q)) {
      out.push_back(std::move(*i));
    } else {
      last_error_ = "instances: a stored row is corrupted; skipped";
    }
  }
  if (rc != SQLITE_DONE) last_error_ = sqlite_error("instances").message;
  return out;
}

Result<bool> SqliteStore::touch_instance(const std::string& id, int64_t heartbeat_ms) {
  Query q((*stmts_)[kTouchInstance]);
  q.bind(1, id).bind(2, heartbeat_ms);
  if (q.run() != SQLITE_DONE) return sqlite_error("touch instance " + id);
  return sqlite3_changes(db_) > 0;
}

Result<bool> SqliteStore::insert_token(const TokenRecord& token) {
  const std::string what = "insert token " + token.id;
  if (token.id.empty()) return make_error("insert token: id must not be empty");
  Query q((*stmts_)[kInsertToken]);
  q.bind(1, token.id).bind(2, token.kind).bind(3, token.namespace_).bind(4, token.service_account);
  q.bind(5, token.description).bind_blob(6, token.secret_sha256).bind(7, token.created_ms);
  q.bind(8, token.expires_ms)
      .bind(9, token.revoked_ms)
      .bind(10, static_cast<int64_t>(token.bootstrap ? 1 : 0));
  int rc = q.run();
  if ((rc & 0xff) == SQLITE_CONSTRAINT) return make_error("conflict: token " + token.id + " exists");
  if (rc != SQLITE_DONE) return sqlite_error(what);
  return true;
}

std::optional<TokenRecord> SqliteStore::get_token(const std::string& id) {
  last_error_.clear();
  Query q((*stmts_)[kGetToken]);
  q.bind(1, id);
  int rc = q.step();
  if (rc == SQLITE_ROW) return read_token(q);
  if (rc != SQLITE_DONE) last_error_ = sqlite_error("get token " + id).message;
  return std::nullopt;
}

std::vector<TokenRecord> SqliteStore::tokens() {
  last_error_.clear();
  std::vector<TokenRecord> out;
  Query q((*stmts_)[kListTokens]);
  int rc;
  while ((rc = q.step()) == SQLITE_ROW) out.push_back(read_token(q));
  if (rc != SQLITE_DONE) last_error_ = sqlite_error("tokens").message;
  return out;
}

Result<bool> SqliteStore::revoke_token(const std::string& id, int64_t revoked_ms) {
  Query q((*stmts_)[kRevokeToken]);
  q.bind(1, id).bind(2, revoked_ms);
  if (q.run() != SQLITE_DONE) return sqlite_error("revoke token " + id);
  return sqlite3_changes(db_) > 0;
}

uint64_t SqliteStore::revision() {
  last_error_.clear();
  Query q((*stmts_)[kReadRevision]);
  if (q.step() == SQLITE_ROW) {
    revision_ = static_cast<uint64_t>(q.integer(0));
  } else {
    last_error_ = sqlite_error("revision").message;
  }
  return revision_;
}

}  // namespace trellis::control
