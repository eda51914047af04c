#include "control/sqlite_store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

namespace trellis::control {
namespace {

class SqliteStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/trellis-store-test-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    root_ = pattern;
    dir_ = root_ + "/data";  // not there yet: open() creates it
    reopen();
  }
  void TearDown() override {
    store_.reset();
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
  }

  void reopen() {
    store_.reset();
    auto opened = SqliteStore::open(dir_);
    ASSERT_TRUE(opened) << opened.error().message;
    store_ = std::move(*opened);
  }

  std::string db_path() const { return dir_ + "/trellis.db"; }

  static Resource route(std::string name, std::string namespace_ = "default", Json spec = Json::object()) {
    Resource r;
    r.api_version = "gateway.networking.k8s.io/v1";
    r.kind = "HTTPRoute";
    r.name = std::move(name);
    r.namespace_ = std::move(namespace_);
    r.spec = std::move(spec);
    return r;
  }

  static Instance instance(std::string id, std::string service = "web") {
    Instance i;
    i.id = std::move(id);
    i.service = std::move(service);
    i.namespace_ = "default";
    i.address = "10.0.0.1:8080";
    i.zone = "zone-a";
    i.weight = 10;
    i.labels = {{"version", "v2"}};
    i.ttl_seconds = 30;
    i.last_heartbeat_ms = 1000;
    i.registered_by = "api";
    return i;
  }

  std::string root_;
  std::string dir_;
  std::unique_ptr<SqliteStore> store_;
};

TEST_F(SqliteStoreTest, PutGetListRemove) {
  Json spec = {{"parentRefs", {{{"name", "web"}}}}, {"rules", Json::array()}};
  Resource r = route("web", "default", spec);
  r.labels = {{"team", "payments"}};
  auto put = store_->put(r);
  ASSERT_TRUE(put) << put.error().message;
  EXPECT_EQ(put->outcome, PutOutcome::kCreated);
  EXPECT_GT(put->stored.resource_version, 0u);

  auto got = store_->get(r.key());
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->api_version, r.api_version);
  EXPECT_EQ(got->labels, r.labels);
  EXPECT_EQ(got->spec, spec);
  EXPECT_EQ(got->resource_version, put->stored.resource_version);

  ASSERT_TRUE(store_->put(route("api")));
  auto all = store_->list("HTTPRoute", "default");
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].name, "api") << "listed by name";
  EXPECT_EQ(all[1].name, "web");
  EXPECT_TRUE(store_->list("RateLimitPolicy", "").empty()) << "kind filters";

  auto removed = store_->remove(r.key());
  ASSERT_TRUE(removed);
  EXPECT_TRUE(*removed);
  EXPECT_FALSE(store_->get(r.key()).has_value());
  removed = store_->remove(r.key());
  ASSERT_TRUE(removed);
  EXPECT_FALSE(*removed) << "removing a missing resource says so";
  EXPECT_EQ(store_->list("HTTPRoute", "").size(), 1u);
}

TEST_F(SqliteStoreTest, ListFiltersByNamespaceOrTakesAll) {
  ASSERT_TRUE(store_->put(route("a", "team-a")));
  ASSERT_TRUE(store_->put(route("b", "team-b")));
  ASSERT_TRUE(store_->put(route("c", "team-b")));
  Resource mesh;
  mesh.api_version = "trellis.dev/v1alpha1";
  mesh.kind = "MeshConfig";
  mesh.name = "default";  // cluster-scoped: empty namespace
  ASSERT_TRUE(store_->put(mesh));

  EXPECT_EQ(store_->list("HTTPRoute", "team-a").size(), 1u);
  auto b = store_->list("HTTPRoute", "team-b");
  ASSERT_EQ(b.size(), 2u);
  EXPECT_EQ(b[0].name, "b");
  EXPECT_EQ(b[1].name, "c");
  EXPECT_TRUE(store_->list("HTTPRoute", "team-c").empty());
  auto all = store_->list("HTTPRoute", "");
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].namespace_, "team-a") << "ordered by namespace, then name";
  auto meshes = store_->list("MeshConfig", "");
  ASSERT_EQ(meshes.size(), 1u);
  EXPECT_EQ(meshes[0].namespace_, "");
  EXPECT_TRUE(store_->get({"MeshConfig", "", "default"}).has_value());
  EXPECT_FALSE(store_->get({"HTTPRoute", "team-b", "a"}).has_value()) << "the namespace is part of the key";
}

TEST_F(SqliteStoreTest, StaleVersionIsAConflictAndCurrentVersionUpdates) {
  auto first = store_->put(route("web", "default", {{"a", 1}}));
  ASSERT_TRUE(first);
  uint64_t v1 = first->stored.resource_version;
  auto second = store_->put(route("web", "default", {{"a", 2}}));
  ASSERT_TRUE(second);
  EXPECT_EQ(second->outcome, PutOutcome::kUpdated) << "version 0 means no precondition";
  uint64_t v2 = second->stored.resource_version;
  EXPECT_GT(v2, v1);

  Resource stale = route("web", "default", {{"a", 3}});
  stale.resource_version = v1;
  auto conflict = store_->put(stale);
  ASSERT_FALSE(conflict);
  const std::string& message = conflict.error().message;
  EXPECT_EQ(message.rfind("conflict:", 0), 0u) << message;
  EXPECT_NE(message.find("expected resourceVersion " + std::to_string(v1)), std::string::npos) << message;
  EXPECT_NE(message.find("current " + std::to_string(v2)), std::string::npos) << message;
  EXPECT_EQ(store_->get(stale.key())->spec, Json({{"a", 2}})) << "a refused put writes nothing";

  Resource current = stale;
  current.resource_version = v2;
  auto updated = store_->put(current);
  ASSERT_TRUE(updated) << updated.error().message;
  EXPECT_EQ(updated->outcome, PutOutcome::kUpdated);
  EXPECT_GT(updated->stored.resource_version, v2);
  EXPECT_EQ(store_->get(stale.key())->spec, Json({{"a", 3}}));
}

TEST_F(SqliteStoreTest, CreateWithAVersionIsAConflict) {
  Resource r = route("web");
  r.resource_version = 7;
  auto put = store_->put(r);
  ASSERT_FALSE(put);
  EXPECT_EQ(put.error().message.rfind("conflict:", 0), 0u) << put.error().message;
  EXPECT_NE(put.error().message.find("expected resourceVersion 7"), std::string::npos) << put.error().message;
  EXPECT_FALSE(store_->get(r.key()).has_value());
  EXPECT_EQ(store_->revision(), 0u);
}

TEST_F(SqliteStoreTest, RemoveWithAStaleVersionIsAConflict) {
  auto put = store_->put(route("web"));
  ASSERT_TRUE(put);
  uint64_t v = put->stored.resource_version;
  auto stale = store_->remove(route("web").key(), v + 100);
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().message.rfind("conflict:", 0), 0u) << stale.error().message;
  EXPECT_TRUE(store_->get(route("web").key()).has_value());
  auto removed = store_->remove(route("web").key(), v);
  ASSERT_TRUE(removed);
  EXPECT_TRUE(*removed);
}

TEST_F(SqliteStoreTest, UnchangedPutKeepsVersionAndRevision) {
  Resource r = route("web", "default", {{"hosts", {"a", "b"}}, {"n", 1}});
  r.labels = {{"app", "web"}};
  auto first = store_->put(r);
  ASSERT_TRUE(first);
  uint64_t revision = store_->revision();

  auto again = store_->put(r);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->outcome, PutOutcome::kUnchanged);
  EXPECT_EQ(again->stored.resource_version, first->stored.resource_version);
  EXPECT_EQ(store_->revision(), revision);

  Resource with_version = r;
  with_version.resource_version = first->stored.resource_version;
  auto same = store_->put(with_version);
  ASSERT_TRUE(same);
  EXPECT_EQ(same->outcome, PutOutcome::kUnchanged);

  Resource relabeled = r;
  relabeled.labels["tier"] = "front";
  auto labels = store_->put(relabeled);
  ASSERT_TRUE(labels);
  EXPECT_EQ(labels->outcome, PutOutcome::kUpdated) << "labels are content";

  Resource promoted = relabeled;
  promoted.api_version = "gateway.networking.k8s.io/v2";
  auto api = store_->put(promoted);
  ASSERT_TRUE(api);
  EXPECT_EQ(api->outcome, PutOutcome::kUpdated) << "apiVersion is content";
  EXPECT_GT(store_->revision(), revision);
}

TEST_F(SqliteStoreTest, SpecRoundTripsExactly) {
  Json spec = Json::parse(R"({"rules":[{"matches":[{"path":{"type":"PathPrefix","value":"/api"}}],
      "backendRefs":[{"name":"web","port":8080,"weight":0.25},{"name":"web-v2","weight":-3}]}],
      "note":"caf\u00e9 \ud83d\ude80","empty":{},"none":null,"big":18446744073709551615})");
  ASSERT_TRUE(store_->put(route("web", "default", spec)));
  reopen();
  auto got = store_->get(route("web").key());
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->spec, spec);
  EXPECT_EQ(got->spec.dump(), spec.dump());
}

TEST_F(SqliteStoreTest, InvalidUtf8IsAnErrorNotAnException) {
  Resource r = route("web", "default", {{"name", std::string("\xff\xfe")}});
  auto put = store_->put(r);
  ASSERT_FALSE(put);
  EXPECT_NE(put.error().message.find("spec"), std::string::npos) << put.error().message;
  Instance i = instance("web-1");
  i.labels["bad"] = std::string("\xc3");
  auto upsert = store_->upsert_instance(i);
  ASSERT_FALSE(upsert);
  EXPECT_NE(upsert.error().message.find("labels"), std::string::npos) << upsert.error().message;
  EXPECT_TRUE(store_->instances().empty());
}

TEST_F(SqliteStoreTest, VersionsNeverRepeatAcrossReopenAndDelete) {
  auto a = store_->put(route("a"));
  ASSERT_TRUE(a);
  auto b = store_->put(route("b"));
  ASSERT_TRUE(b);
  ASSERT_TRUE(store_->remove(route("b").key()));
  uint64_t revision = store_->revision();
  EXPECT_GT(b->stored.resource_version, a->stored.resource_version);
  EXPECT_GE(revision, b->stored.resource_version + 1) << "a delete is a change too";

  reopen();
  EXPECT_EQ(store_->revision(), revision) << "the counter is stored";
  auto b_again = store_->put(route("b"));
  ASSERT_TRUE(b_again);
  EXPECT_EQ(b_again->outcome, PutOutcome::kCreated);
  EXPECT_GT(b_again->stored.resource_version, revision)
      << "a re-created resource never gets a version a client has seen";
}

TEST_F(SqliteStoreTest, StateSurvivesReopen) {
  Resource r = route("web", "shop", {{"rules", {{{"backendRefs", {{{"name", "web"}}}}}}}});
  r.labels = {{"team", "shop"}};
  auto put = store_->put(r);
  ASSERT_TRUE(put);
  Instance i = instance("web-1");
  i.address = "[fd00::1]:9000";
  i.labels = {{"version", "v2"}, {"app.kubernetes.io/name", "web"}};
  i.last_heartbeat_ms = 1700000000123;
  i.registered_by = "node-7";
  i.ports = {{"http", 9080, 8080, "http"}, {"grpc", 9090, 9090, ""}};
  ASSERT_TRUE(store_->upsert_instance(i));

  reopen();
  auto got = store_->get(r.key());
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->labels, r.labels);
  EXPECT_EQ(got->spec, r.spec);
  EXPECT_EQ(got->resource_version, put->stored.resource_version);
  auto all = store_->instances();
  ASSERT_EQ(all.size(), 1u);
  const Instance& back = all[0];
  EXPECT_EQ(back.id, i.id);
  EXPECT_EQ(back.service, i.service);
  EXPECT_EQ(back.namespace_, i.namespace_);
  EXPECT_EQ(back.address, i.address);
  EXPECT_EQ(back.zone, i.zone);
  EXPECT_EQ(back.weight, i.weight);
  EXPECT_EQ(back.labels, i.labels);
  EXPECT_EQ(back.ttl_seconds, i.ttl_seconds);
  EXPECT_EQ(back.last_heartbeat_ms, i.last_heartbeat_ms);
  EXPECT_EQ(back.registered_by, i.registered_by);
  EXPECT_EQ(back.ports, i.ports);
}

TEST_F(SqliteStoreTest, InstancesUpsertTouchRemoveList) {
  auto created = store_->upsert_instance(instance("web-2"));
  ASSERT_TRUE(created);
  EXPECT_TRUE(*created);
  ASSERT_TRUE(store_->upsert_instance(instance("web-1")));
  ASSERT_TRUE(store_->upsert_instance(instance("api-1", "api")));
  auto all = store_->instances();
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].id, "api-1") << "listed by id";
  EXPECT_EQ(all[2].id, "web-2");
  uint64_t revision = store_->revision();

  Instance beat = instance("web-1");
  beat.last_heartbeat_ms = 5000;
  auto refreshed = store_->upsert_instance(beat);
  ASSERT_TRUE(refreshed);
  EXPECT_FALSE(*refreshed) << "only the heartbeat moved";
  EXPECT_EQ(store_->revision(), revision);
  EXPECT_EQ(store_->instances()[1].last_heartbeat_ms, 5000);

  Instance heavier = beat;
  heavier.weight = 20;
  auto changed = store_->upsert_instance(heavier);
  ASSERT_TRUE(changed);
  EXPECT_TRUE(*changed);
  EXPECT_GT(store_->revision(), revision);
  EXPECT_EQ(store_->instances()[1].weight, 20u);
  revision = store_->revision();

  auto touched = store_->touch_instance("web-1", 9000);
  ASSERT_TRUE(touched);
  EXPECT_TRUE(*touched);
  EXPECT_EQ(store_->instances()[1].last_heartbeat_ms, 9000);
  EXPECT_EQ(store_->revision(), revision) << "a heartbeat is not a change";
  auto unknown = store_->touch_instance("nope", 9000);
  ASSERT_TRUE(unknown);
  EXPECT_FALSE(*unknown);

  EXPECT_TRUE(store_->remove_instance("web-1"));
  EXPECT_GT(store_->revision(), revision);
  revision = store_->revision();
  EXPECT_FALSE(store_->remove_instance("web-1"));
  EXPECT_EQ(store_->revision(), revision);
  EXPECT_EQ(store_->instances().size(), 2u);

  auto no_id = store_->upsert_instance(instance(""));
  EXPECT_FALSE(no_id);
}

TEST_F(SqliteStoreTest, RevisionBumpsOnEveryChangeAndNoOtherCall) {
  uint64_t r0 = store_->revision();
  ASSERT_TRUE(store_->put(route("web")));
  uint64_t r1 = store_->revision();
  EXPECT_GT(r1, r0);
  ASSERT_TRUE(store_->put(route("web")));  // unchanged
  ASSERT_TRUE(store_->remove(route("missing").key()));
  store_->get(route("web").key());
  store_->list("HTTPRoute", "");
  ASSERT_TRUE(store_->upsert_instance(instance("web-1")));
  uint64_t r2 = store_->revision();
  EXPECT_GT(r2, r1);
  ASSERT_TRUE(store_->upsert_instance(instance("web-1")));  // identical
  ASSERT_TRUE(store_->touch_instance("web-1", 2000));
  EXPECT_FALSE(store_->remove_instance("missing"));
  store_->instances();
  EXPECT_EQ(store_->revision(), r2);
  ASSERT_TRUE(store_->remove(route("web").key()));
  EXPECT_GT(store_->revision(), r2);
}

// What a burst of registrations costs is one transaction per call; the batch
// call makes it one for all. Both must simply finish: tests never time things.
TEST_F(SqliteStoreTest, TenThousandInstanceUpserts) {
  constexpr int kCount = 10000;
  std::vector<Instance> batch;
  batch.reserve(kCount);
  for (int n = 0; n < kCount; ++n) batch.push_back(instance("web-" + std::to_string(n)));
  auto stored = store_->upsert_instances(batch);
  ASSERT_TRUE(stored) << stored.error().message;
  EXPECT_EQ(*stored, static_cast<size_t>(kCount));
  EXPECT_EQ(store_->instances().size(), static_cast<size_t>(kCount));

  for (Instance& i : batch) i.last_heartbeat_ms += 1000;
  for (const Instance& i : batch) {
    auto r = store_->upsert_instance(i);
    ASSERT_TRUE(r) << r.error().message;
    ASSERT_FALSE(*r);
  }
  reopen();
  auto all = store_->instances();
  ASSERT_EQ(all.size(), static_cast<size_t>(kCount));
  EXPECT_EQ(all[0].last_heartbeat_ms, 2000);
}

TEST_F(SqliteStoreTest, BatchIsAllOrNothing) {
  std::vector<Instance> batch = {instance("web-1"), instance("web-2"), instance("")};
  auto stored = store_->upsert_instances(batch);
  EXPECT_FALSE(stored);
  EXPECT_TRUE(store_->instances().empty());
  EXPECT_EQ(store_->revision(), 0u);
}

TEST_F(SqliteStoreTest, CorruptedDatabaseIsAnError) {
  store_.reset();
  {
    std::ofstream out(db_path(), std::ios::binary | std::ios::trunc);
    out << std::string(8192, 'x');
  }
  std::filesystem::remove(db_path() + "-wal");
  std::filesystem::remove(db_path() + "-shm");
  auto opened = SqliteStore::open(dir_);
  ASSERT_FALSE(opened);
  EXPECT_NE(opened.error().message.find("not a database"), std::string::npos) << opened.error().message;
}

TEST_F(SqliteStoreTest, LockedDatabaseIsAnErrorAfterTheBusyTimeout) {
  store_.reset();
  auto opened = SqliteStore::open(dir_, /*busy_timeout_ms=*/50);
  ASSERT_TRUE(opened);
  store_ = std::move(*opened);
  ASSERT_TRUE(store_->put(route("web")));

  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open(db_path().c_str(), &other), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);

  auto put = store_->put(route("api"));
  ASSERT_FALSE(put);
  EXPECT_NE(put.error().message.find("locked"), std::string::npos) << put.error().message;
  auto upsert = store_->upsert_instance(instance("web-1"));
  EXPECT_FALSE(upsert);
  EXPECT_FALSE(store_->remove_instance("web-1"));
  EXPECT_FALSE(store_->last_error().empty());
  EXPECT_TRUE(store_->get(route("web").key()).has_value()) << "readers are not blocked in WAL mode";

  ASSERT_EQ(sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(other);
  auto later = store_->put(route("api"));
  ASSERT_TRUE(later) << later.error().message;
  EXPECT_EQ(later->outcome, PutOutcome::kCreated);
}

TEST_F(SqliteStoreTest, NewerSchemaIsRefused) {
  store_.reset();
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(db_path().c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "UPDATE schema_version SET version = 99", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  auto opened = SqliteStore::open(dir_);
  ASSERT_FALSE(opened);
  EXPECT_NE(opened.error().message.find("schema version 99"), std::string::npos) << opened.error().message;
}

TEST_F(SqliteStoreTest, OpensInWalModeWithTheCurrentSchemaVersion) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(db_path().c_str(), &db), SQLITE_OK);
  auto scalar = [db](const char* sql) {
    sqlite3_stmt* stmt = nullptr;
    std::string out;
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) == SQLITE_OK && sqlite3_step(stmt) == SQLITE_ROW) {
      out = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
    }
    sqlite3_finalize(stmt);
    return out;
  };
  EXPECT_EQ(scalar("PRAGMA journal_mode"), "wal");
  EXPECT_EQ(scalar("SELECT version FROM schema_version"), std::to_string(SqliteStore::kSchemaVersion));
  sqlite3_close(db);
}

TEST_F(SqliteStoreTest, DataDirThatIsAFileIsAnError) {
  std::string file = root_ + "/file";
  std::ofstream(file) << "x";
  auto opened = SqliteStore::open(file);
  EXPECT_FALSE(opened);
  EXPECT_FALSE(SqliteStore::open(""));
}

TEST_F(SqliteStoreTest, TokensAreStoredRevokedAndKeptAcrossARestart) {
  TokenRecord t;
  t.id = "tok-0000beef";
  t.kind = "join";
  t.namespace_ = "bookinfo";
  t.service_account = "reviews";
  t.description = "for reviews";
  t.secret_sha256 = std::string("\0\x01\xff", 3) + std::string(29, 'h');
  t.created_ms = 1000;
  t.expires_ms = 5000;
  uint64_t revision = store_->revision();
  ASSERT_TRUE(store_->insert_token(t));
  auto clash = store_->insert_token(t);
  ASSERT_FALSE(clash);
  EXPECT_EQ(clash.error().message.rfind("conflict:", 0), 0u) << clash.error().message;
  auto revoked = store_->revoke_token(t.id, 2000);
  ASSERT_TRUE(revoked);
  EXPECT_TRUE(*revoked);
  EXPECT_TRUE(*store_->revoke_token(t.id, 3000));
  EXPECT_FALSE(*store_->revoke_token("tok-ffffffff", 3000));
  EXPECT_EQ(store_->revision(), revision) << "tokens are not mesh changes";

  reopen();
  auto got = store_->get_token(t.id);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->secret_sha256, t.secret_sha256) << "binary hashes survive as they are";
  EXPECT_EQ(got->namespace_, "bookinfo");
  EXPECT_EQ(got->service_account, "reviews");
  EXPECT_EQ(got->description, "for reviews");
  EXPECT_EQ(got->expires_ms, 5000);
  EXPECT_EQ(got->revoked_ms, 2000) << "the first revocation stays";
  EXPECT_FALSE(got->bootstrap);
  EXPECT_FALSE(store_->get_token("tok-ffffffff").has_value());
  ASSERT_EQ(store_->tokens().size(), 1u);
}

TEST_F(SqliteStoreTest, AVersionOneDatabaseGainsTheTokensTable) {
  ASSERT_TRUE(store_->put(route("kept")));
  store_.reset();
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(db_path().c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         "DROP TABLE tokens; ALTER TABLE instances DROP COLUMN ports_json; "
                         "UPDATE schema_version SET version = 1",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  reopen();
  EXPECT_TRUE(store_->get(route("kept").key()).has_value());
  TokenRecord t;
  t.id = "tok-00000001";
  t.kind = "admin";
  t.secret_sha256 = std::string(32, 'h');
  EXPECT_TRUE(store_->insert_token(t));
}

TEST_F(SqliteStoreTest, AVersionTwoDatabaseGainsInstancePorts) {
  ASSERT_TRUE(store_->upsert_instance(instance("web-1")));
  store_.reset();
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(db_path().c_str(), &db), SQLITE_OK);
  ASSERT_EQ(
      sqlite3_exec(db, "ALTER TABLE instances DROP COLUMN ports_json; UPDATE schema_version SET version = 2",
                   nullptr, nullptr, nullptr),
      SQLITE_OK);
  sqlite3_close(db);
  reopen();
  auto all = store_->instances();
  ASSERT_EQ(all.size(), 1u) << "the instances are kept";
  EXPECT_TRUE(all[0].ports.empty());
  Instance i = instance("web-1");
  i.ports = {{"", 80, 8080, ""}};
  auto changed = store_->upsert_instance(i);
  ASSERT_TRUE(changed);
  EXPECT_TRUE(*changed) << "new ports are a change a proxy sees";
  EXPECT_EQ(store_->instances()[0].ports, i.ports);
}

TEST_F(SqliteStoreTest, ADataDirectoryItMakesIsPrivate) {
  EXPECT_EQ(std::filesystem::status(dir_).permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_all);
}

}  // namespace
}  // namespace trellis::control
