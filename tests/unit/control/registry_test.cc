#include "control/registry.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "control/sqlite_store.h"

namespace trellis::control {
namespace {

class FakeWallClock final : public WallClock {
 public:
  int64_t now_ms() const override { return now_ms_; }
  void advance_ms(int64_t ms) { now_ms_ += ms; }
  int64_t now_ms_ = 1700000000000;
};

// Returns a fixed sequence, to make generated ids predictable and clashes
// possible.
class ScriptedRandom final : public Random {
 public:
  explicit ScriptedRandom(std::vector<uint64_t> values) : values_(std::move(values)) {}
  uint64_t next() override { return values_[next_++ % values_.size()]; }

 private:
  std::vector<uint64_t> values_;
  size_t next_ = 0;
};

class RegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/trellis-registry-test-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
    restart();
  }
  void TearDown() override {
    registry_.reset();
    store_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // A control-plane restart: everything in memory is gone, the database stays.
  void restart() {
    registry_.reset();
    store_.reset();
    auto opened = SqliteStore::open(dir_);
    ASSERT_TRUE(opened) << opened.error().message;
    store_ = std::move(*opened);
    registry_ = std::make_unique<Registry>(*store_, clock_, random_);
    registry_->set_change_listener([this](const std::string& namespace_, const std::string& service) {
      notified_.push_back(namespace_ + "/" + service);
    });
  }

  static Instance web(std::string id = "web-1", uint32_t ttl_seconds = 30) {
    Instance i;
    i.id = std::move(id);
    i.service = "web";
    i.address = "10.0.0.1:8080";
    i.ttl_seconds = ttl_seconds;
    return i;
  }

  Instance must_register(Instance i) {
    auto r = registry_->register_instance(std::move(i));
    EXPECT_TRUE(r) << r.error().message;
    return r ? *r : Instance{};
  }

  std::string dir_;
  FakeWallClock clock_;
  FastRandom random_{42};
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<Registry> registry_;
  std::vector<std::string> notified_;
};

TEST_F(RegistryTest, RegisterFillsDefaultsAndStores) {
  Instance i;
  i.service = "web";
  i.address = "10.0.0.1:8080";
  Instance stored = must_register(i);
  EXPECT_EQ(stored.id.rfind("web-", 0), 0u) << stored.id;
  EXPECT_EQ(stored.id.size(), 4u + 8u) << "service, '-', 8 hex digits: " << stored.id;
  EXPECT_EQ(stored.id.find_first_not_of("0123456789abcdef", 4), std::string::npos) << stored.id;
  EXPECT_EQ(stored.namespace_, "default");
  EXPECT_EQ(stored.registered_by, "api");
  EXPECT_EQ(stored.weight, 1u);
  EXPECT_EQ(stored.ttl_seconds, 30u);
  EXPECT_EQ(stored.last_heartbeat_ms, clock_.now_ms_);

  auto in_store = store_->instances();
  ASSERT_EQ(in_store.size(), 1u);
  EXPECT_EQ(in_store[0].id, stored.id);
  EXPECT_EQ(in_store[0].last_heartbeat_ms, clock_.now_ms_);
  ASSERT_EQ(registry_->instances_of("web", "default").size(), 1u);
  EXPECT_EQ(registry_->instances_of("web", "").size(), 1u) << "empty namespace means default";
  EXPECT_TRUE(registry_->find(stored.id).has_value());
}

TEST_F(RegistryTest, GeneratedIdsAvoidRegisteredOnes) {
  ScriptedRandom scripted({0xabcdef01, 0xabcdef01, 0x12});
  Registry registry(*store_, clock_, scripted);
  Instance a = web("");
  auto first = registry.register_instance(a);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->id, "web-abcdef01");
  auto second = registry.register_instance(a);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->id, "web-00000012") << "a clash is re-drawn";

  ScriptedRandom stuck({0xabcdef01});
  Registry broken(*store_, clock_, stuck);
  auto third = broken.register_instance(a);
  ASSERT_FALSE(third) << "broken randomness is an error, not a hang";
}

struct BadInstance {
  const char* what;
  Instance instance;
  const char* field;
};

TEST_F(RegistryTest, ValidationNamesTheField) {
  auto with = [](auto change) {
    Instance i = web();
    change(i);
    return i;
  };
  std::vector<BadInstance> cases = {
      {"empty service", with([](Instance& i) { i.service = ""; }), "service:"},
      {"upper-case service", with([](Instance& i) { i.service = "Web"; }), "service:"},
      {"service starting with '-'", with([](Instance& i) { i.service = "-web"; }), "service:"},
      {"service with '.'", with([](Instance& i) { i.service = "web.shop"; }), "service:"},
      {"64-char service", with([](Instance& i) { i.service = std::string(64, 'a'); }), "service:"},
      {"namespace with '_'", with([](Instance& i) { i.namespace_ = "team_a"; }), "namespace:"},
      {"address without port", with([](Instance& i) { i.address = "10.0.0.1"; }), "address:"},
      {"host name", with([](Instance& i) { i.address = "web.local:80"; }), "address:"},
      {"port 0", with([](Instance& i) { i.address = "10.0.0.1:0"; }), "address:"},
      {"port 65536", with([](Instance& i) { i.address = "10.0.0.1:65536"; }), "address:"},
      {"port with sign", with([](Instance& i) { i.address = "10.0.0.1:+80"; }), "address:"},
      {"bad octet", with([](Instance& i) { i.address = "10.0.0.256:80"; }), "address:"},
      {"IPv6 without brackets", with([](Instance& i) { i.address = "fd00::1:80"; }), "address:"},
      {"IPv6 without port", with([](Instance& i) { i.address = "[fd00::1]"; }), "address:"},
      {"bad IPv6", with([](Instance& i) { i.address = "[fd00::zz]:80"; }), "address:"},
      {"unspecified IPv4", with([](Instance& i) { i.address = "0.0.0.0:80"; }), "address:"},
      {"unspecified IPv6", with([](Instance& i) { i.address = "[::]:80"; }), "address:"},
      {"NUL in address", with([](Instance& i) { i.address = std::string("10.0.0.1\0x:80", 13); }),
       "address:"},
      {"weight 0", with([](Instance& i) { i.weight = 0; }), "weight:"},
      {"weight too big", with([](Instance& i) { i.weight = 1000001; }), "weight:"},
      {"ttl 0", with([](Instance& i) { i.ttl_seconds = 0; }), "ttl_seconds:"},
      {"ttl over a day", with([](Instance& i) { i.ttl_seconds = 86401; }), "ttl_seconds:"},
      {"empty label key", with([](Instance& i) { i.labels[""] = "x"; }), "labels:"},
      {"label key with space", with([](Instance& i) { i.labels["a b"] = "x"; }), "labels:"},
      {"label key bad prefix", with([](Instance& i) { i.labels["Example.com/app"] = "x"; }), "labels:"},
      {"long label value", with([](Instance& i) { i.labels["v"] = std::string(64, 'a'); }), "labels[v]:"},
      {"label value with '/'", with([](Instance& i) { i.labels["v"] = "a/b"; }), "labels[v]:"},
      {"zone with space", with([](Instance& i) { i.zone = "us east"; }), "zone:"},
      {"id with '/'", with([](Instance& i) { i.id = "web/1"; }), "id:"},
      {"registered_by with space", with([](Instance& i) { i.registered_by = "node 1"; }), "registered_by:"},
  };
  for (const BadInstance& c : cases) {
    auto r = registry_->register_instance(c.instance);
    ASSERT_FALSE(r) << c.what;
    EXPECT_EQ(r.error().message.rfind("invalid: ", 0), 0u) << c.what << ": " << r.error().message;
    EXPECT_NE(r.error().message.find(c.field), std::string::npos) << c.what << ": " << r.error().message;
  }
  EXPECT_TRUE(store_->instances().empty()) << "nothing invalid is stored";
  EXPECT_EQ(registry_->revision(), 0u);
}

TEST_F(RegistryTest, ValidationReportsEveryProblemAtOnce) {
  Instance i = web();
  i.service = "Web";
  i.weight = 0;
  auto r = registry_->register_instance(i);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("service:"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("weight:"), std::string::npos) << r.error().message;
}

TEST_F(RegistryTest, ValidationAcceptsTheEdges) {
  std::vector<Instance> good;
  for (const char* address : {"10.0.0.1:1", "192.168.1.2:65535", "[::1]:8080", "[fd00::1:2]:443"}) {
    Instance i = web("");
    i.address = address;
    good.push_back(i);
  }
  Instance edges = web("node-1.zone_a:web");
  edges.service = std::string(63, 'a');
  edges.namespace_ = "team-a";
  edges.weight = 1000000;
  edges.ttl_seconds = 86400;
  edges.zone = "us-east-1a";
  edges.labels = {{"app.kubernetes.io/name", "web"}, {"version", "v2"}, {"empty", ""}};
  edges.registered_by = "node-7";
  good.push_back(edges);
  Instance short_ttl = web("");
  short_ttl.weight = 1;
  short_ttl.ttl_seconds = 1;
  good.push_back(short_ttl);
  for (const Instance& i : good) {
    auto r = registry_->register_instance(i);
    EXPECT_TRUE(r) << i.address << ": " << r.error().message;
  }
}

TEST_F(RegistryTest, HeartbeatOfAnUnknownIdIsNotFound) {
  auto r = registry_->heartbeat("nope");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message.rfind("not found:", 0), 0u) << r.error().message;
  EXPECT_EQ(registry_->revision(), 0u);
}

TEST_F(RegistryTest, HeartbeatExtendsLifeWithoutAChange) {
  must_register(web("web-1", 10));
  uint64_t revision = registry_->revision();
  notified_.clear();
  clock_.advance_ms(9000);
  auto beat = registry_->heartbeat("web-1");
  ASSERT_TRUE(beat) << beat.error().message;
  EXPECT_EQ(beat->last_heartbeat_ms, clock_.now_ms_);
  EXPECT_EQ(store_->instances()[0].last_heartbeat_ms, clock_.now_ms_) << "the heartbeat is stored";
  clock_.advance_ms(9000);  // 18 s after registering, 9 s after the heartbeat
  EXPECT_EQ(registry_->instances_of("web", "default").size(), 1u);
  EXPECT_TRUE(registry_->expire().empty());
  EXPECT_EQ(registry_->revision(), revision);
  EXPECT_TRUE(notified_.empty());
}

TEST_F(RegistryTest, ExpiresExactlyAfterTheTtl) {
  must_register(web("web-1", 10));
  must_register(web("web-2", 20));
  notified_.clear();

  clock_.advance_ms(10000);  // web-1's age equals its TTL: still alive
  EXPECT_EQ(registry_->instances_of("web", "default").size(), 2u);
  EXPECT_TRUE(registry_->expire().empty());
  EXPECT_TRUE(notified_.empty());

  clock_.advance_ms(1);
  auto live = registry_->instances_of("web", "default");
  ASSERT_EQ(live.size(), 1u) << "queries stop showing it at once";
  EXPECT_EQ(live[0].id, "web-2");
  EXPECT_FALSE(registry_->find("web-1").has_value());
  auto beat = registry_->heartbeat("web-1");
  ASSERT_FALSE(beat) << "too late: it must register again";
  EXPECT_EQ(beat.error().message.rfind("not found:", 0), 0u);

  uint64_t revision = registry_->revision();
  auto removed = registry_->expire();
  ASSERT_EQ(removed.size(), 1u);
  EXPECT_EQ(removed[0].id, "web-1");
  EXPECT_EQ(registry_->revision(), revision + 1);
  EXPECT_EQ(notified_, std::vector<std::string>{"default/web"});
  auto in_store = store_->instances();
  ASSERT_EQ(in_store.size(), 1u);
  EXPECT_EQ(in_store[0].id, "web-2");
  EXPECT_TRUE(registry_->expire().empty()) << "removed once";
}

TEST_F(RegistryTest, InstancesSurviveARestartWithinTheirTtl) {
  Instance stored = must_register(web("web-1", 30));
  clock_.advance_ms(20000);
  restart();
  auto live = registry_->instances_of("web", "default");
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(live[0].address, stored.address);
  EXPECT_TRUE(registry_->expire().empty());
  EXPECT_TRUE(registry_->heartbeat("web-1"));
}

TEST_F(RegistryTest, TtlRunsOutWhileTheControlPlaneIsDown) {
  must_register(web("web-1", 30));
  must_register(web("web-2", 300));
  restart();
  clock_.advance_ms(60000);  // the new process starts a minute later
  auto live = registry_->instances_of("web", "default");
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(live[0].id, "web-2");
  auto removed = registry_->expire();
  ASSERT_EQ(removed.size(), 1u);
  EXPECT_EQ(removed[0].id, "web-1");
  EXPECT_EQ(store_->instances().size(), 1u);
  restart();
  EXPECT_FALSE(registry_->find("web-1").has_value()) << "the expiry was stored";
}

TEST_F(RegistryTest, RestartTtlsGivesEveryInstanceAFullTtlToReconnect) {
  Instance a = web("web-1");
  a.ttl_seconds = 10;
  must_register(a);
  restart();
  clock_.advance_ms(60000);  // down for a minute: far past the TTL
  EXPECT_TRUE(registry_->instances_of("web", "default").empty());
  registry_->restart_ttls();
  ASSERT_EQ(registry_->instances_of("web", "default").size(), 1u) << "back for a full TTL";
  EXPECT_EQ(notified_.back(), "default/web") << "coming back is a change";
  clock_.advance_ms(9000);
  EXPECT_TRUE(registry_->expire().empty());
  EXPECT_TRUE(registry_->heartbeat("web-1")) << "its proxy reconnected in time";
  clock_.advance_ms(10001);
  EXPECT_EQ(registry_->expire().size(), 1u) << "no heartbeat after the restart: removed one TTL later";
}

TEST_F(RegistryTest, RestartGraceOutlastsAShortTtlUntilTheFirstHeartbeat) {
  Instance a = web("web-1");
  a.ttl_seconds = 2;  // shorter than a sidecar's reconnect backoff can grow
  Instance b = web("web-2");
  b.ttl_seconds = 2;
  must_register(a);
  must_register(b);
  restart();
  clock_.advance_ms(3000);
  registry_->restart_ttls(20000);
  clock_.advance_ms(5000);  // past the TTL, within the grace
  EXPECT_TRUE(registry_->expire().empty());
  EXPECT_EQ(registry_->instances_of("web", "default").size(), 2u);
  EXPECT_TRUE(registry_->heartbeat("web-1")) << "its proxy reconnected late but in time";
  clock_.advance_ms(2001);
  auto removed = registry_->expire();
  ASSERT_EQ(removed.size(), 1u) << "a heartbeat ends the grace: the TTL rules again";
  EXPECT_EQ(removed[0].id, "web-1");
  clock_.advance_ms(12999);  // 20 s after the start
  EXPECT_TRUE(registry_->expire().empty());
  clock_.advance_ms(1);
  removed = registry_->expire();
  ASSERT_EQ(removed.size(), 1u) << "no proxy came back: removed when the grace ran out";
  EXPECT_EQ(removed[0].id, "web-2");
}

TEST_F(RegistryTest, RevisionAndListenerFollowChangesOnly) {
  EXPECT_EQ(registry_->revision(), 0u);
  must_register(web("web-1"));
  EXPECT_EQ(registry_->revision(), 1u);
  EXPECT_EQ(notified_, std::vector<std::string>{"default/web"});

  clock_.advance_ms(1000);
  must_register(web("web-1"));  // the same again: only the heartbeat moves
  EXPECT_TRUE(registry_->heartbeat("web-1"));
  EXPECT_FALSE(registry_->deregister("nope"));
  EXPECT_TRUE(registry_->expire().empty());
  EXPECT_EQ(registry_->revision(), 1u);
  EXPECT_EQ(notified_.size(), 1u);

  Instance heavier = web("web-1");
  heavier.weight = 5;
  must_register(heavier);
  EXPECT_EQ(registry_->revision(), 2u);

  Instance moved = heavier;
  moved.service = "api";
  must_register(moved);
  EXPECT_EQ(registry_->revision(), 3u);
  EXPECT_TRUE(registry_->instances_of("web", "default").empty());
  EXPECT_EQ(registry_->instances_of("api", "default").size(), 1u);
  EXPECT_EQ(notified_, (std::vector<std::string>{"default/web", "default/web", "default/api", "default/web"}))
      << "a move tells both services";

  EXPECT_TRUE(registry_->deregister("web-1"));
  EXPECT_EQ(registry_->revision(), 4u);
  EXPECT_FALSE(registry_->deregister("web-1"));
  EXPECT_EQ(registry_->revision(), 4u);
  EXPECT_TRUE(store_->instances().empty());
}

TEST_F(RegistryTest, RegisteringAgainAfterTheTtlIsAChange) {
  must_register(web("web-1", 5));
  clock_.advance_ms(6000);
  uint64_t revision = registry_->revision();
  notified_.clear();
  must_register(web("web-1", 5));  // same fields, but it had stopped being visible
  EXPECT_EQ(registry_->revision(), revision + 1);
  EXPECT_EQ(notified_, std::vector<std::string>{"default/web"});
  EXPECT_EQ(registry_->instances_of("web", "default").size(), 1u);
  EXPECT_TRUE(registry_->expire().empty());
}

TEST_F(RegistryTest, ServicesCountLiveInstancesPerNamespace) {
  must_register(web("web-1"));
  must_register(web("web-2"));
  Instance shop = web("web-3");
  shop.namespace_ = "shop";
  must_register(shop);
  Instance api = web("api-1", 5);
  api.service = "api";
  must_register(api);

  auto services = registry_->services();
  ASSERT_EQ(services.size(), 3u);
  EXPECT_EQ(services[0].namespace_, "default");
  EXPECT_EQ(services[0].service, "api");
  EXPECT_EQ(services[0].instances, 1u);
  EXPECT_EQ(services[1].service, "web");
  EXPECT_EQ(services[1].instances, 2u);
  EXPECT_EQ(services[2].namespace_, "shop");
  EXPECT_EQ(services[2].instances, 1u);
  EXPECT_EQ(registry_->instances_of("web", "shop").size(), 1u);

  clock_.advance_ms(5001);
  services = registry_->services();
  ASSERT_EQ(services.size(), 2u) << "a service whose instances all expired is gone";
  EXPECT_EQ(services[0].service, "web");
}

TEST_F(RegistryTest, ManyRegistrationsAndOneSweep) {
  constexpr int kCount = 2000;
  for (int n = 0; n < kCount; ++n) {
    Instance i = web("", n % 2 == 0 ? 10 : 100);
    i.address = "10.0." + std::to_string(n / 250) + "." + std::to_string(n % 250 + 1) + ":8080";
    ASSERT_TRUE(registry_->register_instance(i));
  }
  EXPECT_EQ(registry_->instances_of("web", "default").size(), static_cast<size_t>(kCount));
  clock_.advance_ms(10001);
  notified_.clear();
  EXPECT_EQ(registry_->expire().size(), static_cast<size_t>(kCount / 2));
  EXPECT_EQ(notified_.size(), 1u) << "one notice per service, not per instance";
  EXPECT_EQ(store_->instances().size(), static_cast<size_t>(kCount / 2));
}

}  // namespace
}  // namespace trellis::control
