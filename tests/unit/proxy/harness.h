// A proxy worker on simulated time with in-memory connections: a config from
// YAML, one Worker whose loop the test drives, clients and upstreams as
// FakePeers. The request path (codecs, router, pools, balancers, timers) runs
// as in production; nothing binds a socket or sleeps.
#pragma once

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/random.h"
#include "common/time.h"
#include "proxy/config/config.h"
#include "proxy/runtime/snapshot_builder.h"
#include "proxy/runtime/worker.h"
#include "proxy/upstream/health_checker.h"
#include "support/fake_network.h"

namespace trellis::testing {

// What most tests need: one HTTP listener "web" whose only route sends
// `prefix` to the cluster "app". The extras are YAML lines added to the route
// and to the cluster (each indented and ending in a newline).
// A listener on 127.0.0.1:10000 with one virtual host for every domain:
// `routes` are its routes' list items (indented 10 spaces), `clusters` the
// top-level clusters' (indented 2).
inline std::string one_listener_yaml(const std::string& routes, const std::string& clusters) {
  return "listeners:\n"
         "  - name: web\n"
         "    address: 127.0.0.1:10000\n"
         "    virtual_hosts:\n"
         "      - name: all\n"
         "        domains: [\"*\"]\n"
         "        routes:\n" +
         routes + "clusters:\n" + clusters;
}

struct OneRoute {
  std::string prefix = "/";
  std::string route_extra;
  std::string cluster_extra;
  std::string endpoints = "[{address: 10.1.0.1:80}]";

  std::string yaml() const {
    return one_listener_yaml(
        "          - match: { prefix: " + prefix + " }\n            cluster: app\n" + route_extra,
        "  - name: app\n    endpoints: " + endpoints + "\n" + cluster_extra);
  }
};

class ProxyHarness {
 public:
  explicit ProxyHarness(std::string_view yaml) {
    network_ = std::make_shared<FakeNetwork>();
    builder_.set_open_listener([](const proxy::ListenerConfig&, std::string&) { return nullptr; });
    builder_.set_transport(network_);
    load(yaml);
    worker_ = std::make_unique<proxy::Worker>(0, snapshot_, clock_, /*seed=*/7);
  }
  ~ProxyHarness() {
    health_.reset();
    worker_.reset();
  }

  // A new config, as a reload puts it in force.
  void reload(std::string_view yaml) {
    load(yaml);
    worker_->update(snapshot_);
    run();
    if (health_) health_->update(*snapshot_);
  }

  // Active health checks from a second loop on the same clock (the proxy's
  // main thread); advance() drives both.
  proxy::HealthChecker& health() {
    if (!health_) {
      main_loop_ = std::make_unique<net::EventLoop>(clock_);
      health_ = std::make_unique<proxy::HealthChecker>(*main_loop_, /*seed=*/11);
      health_->update(*snapshot_);
    }
    return *health_;
  }

  // A client connecting to listener `index`; the test's side of it.
  FakePeer connect(size_t listener = 0, std::string_view client_ip = "10.0.0.9") {
    sockaddr_storage peer{};
    auto* in = reinterpret_cast<sockaddr_in*>(&peer);
    in->sin_family = AF_INET;
    in->sin_port = htons(40000);
    inet_pton(AF_INET, std::string(client_ip).c_str(), &in->sin_addr);
    worker_->adopt_connection(listener, -1, peer);
    return network_->last_accepted();
  }

  // Runs what is ready now; time does not move.
  void run() {
    worker_->loop().run_until_idle();
    if (main_loop_) main_loop_->run_until_idle();
  }
  // Moves time on by `d` (both loops), firing every timer due meanwhile.
  void advance(Duration d) {
    MonoTime target = clock_.now() + d;
    for (;;) {
      run();
      MonoTime next = target;
      MonoTime t;
      if (worker_->loop().next_deadline(t) && t < next) next = t;
      if (main_loop_ && main_loop_->next_deadline(t) && t < next) next = t;
      if (next > clock_.now()) clock_.set(next);
      run();
      if (clock_.now() >= target) break;
    }
  }

  // The next connection the proxy opened to `address`, accepted.
  FakePeer upstream(const std::string& address) {
    run();
    EXPECT_TRUE(network_->has_pending(address)) << "no connection to " << address;
    FakePeer p = network_->next(address);
    if (!p.connected()) p.accept();
    run();
    return p;
  }

  // The connection the proxy opened to one of `addresses` (whichever the
  // balancer chose), accepted; `which` tells which.
  FakePeer upstream_any(std::initializer_list<const char*> addresses, std::string* which = nullptr) {
    run();
    for (const char* a : addresses) {
      if (!network_->has_pending(a)) continue;
      if (which) *which = a;
      return upstream(a);
    }
    ADD_FAILURE() << "no new upstream connection";
    return FakePeer(std::make_shared<FakeLink>(worker_->loop()));
  }

  FakeNetwork& network() { return *network_; }
  proxy::Worker& worker() { return *worker_; }
  const proxy::Snapshot& snapshot() const { return *snapshot_; }
  proxy::StatsRegistry& stats() { return builder_.stats(); }
  SimulatedClock& clock() { return clock_; }

 private:
  void load(std::string_view yaml) {
    proxy::ConfigLoad load = proxy::load_config_text(std::string(yaml), "test.yaml");
    std::string errors;
    for (const auto& e : load.errors) errors += e.to_string() + "\n";
    if (!load.ok()) ADD_FAILURE() << errors;
    auto config = std::make_shared<const proxy::ProxyConfig>(std::move(load.config));
    auto built = builder_.build(config, snapshot_.get(), clock_.now());
    if (!built) ADD_FAILURE() << built.error().message;
    snapshot_ = std::move(*built);
  }

  SimulatedClock clock_;
  FastRandom random_{42};
  std::shared_ptr<FakeNetwork> network_;
  proxy::SnapshotBuilder builder_{1, random_};
  std::shared_ptr<const proxy::Snapshot> snapshot_;
  std::unique_ptr<proxy::Worker> worker_;
  std::unique_ptr<net::EventLoop> main_loop_;
  std::unique_ptr<proxy::HealthChecker> health_;
};

// "HTTP/1.1 200 OK" ... as the client saw it: the status of the first response in `wire`.
inline int status_of(std::string_view wire) {
  if (wire.size() < 12 || wire.substr(0, 5) != "HTTP/") return 0;
  return std::atoi(std::string(wire.substr(9, 3)).c_str());
}

inline std::string ok_response(std::string_view body = "ok", std::string_view extra = "") {
  return "HTTP/1.1 200 OK\r\ncontent-length: " + std::to_string(body.size()) + "\r\n" + std::string(extra) +
         "\r\n" + std::string(body);
}

inline std::string response(int status, std::string_view body = "", std::string_view extra = "") {
  return "HTTP/1.1 " + std::to_string(status) + " X\r\ncontent-length: " + std::to_string(body.size()) +
         "\r\n" + std::string(extra) + "\r\n" + std::string(body);
}

// Plays every endpoint of `addresses`: accepts each connection the proxy
// opens and answers each request with 200 and the endpoint's address as the
// body, so a test can tell who served what.
class NamedUpstreams {
 public:
  NamedUpstreams(ProxyHarness& h, std::vector<std::string> addresses)
      : h_(h), addresses_(std::move(addresses)) {}

  void serve() {
    for (int round = 0; round < 4; ++round) {
      h_.run();
      for (const std::string& a : addresses_) {
        while (h_.network().has_pending(a)) peers_.push_back({a, h_.upstream(a)});
      }
      for (auto& [address, peer] : peers_) {
        if (peer.take().empty()) continue;
        peer.send(ok_response(address));
      }
    }
    h_.run();
  }

  // Sends `n` requests, one at a time, on one client connection; how many
  // each endpoint served.
  std::map<std::string, int> spread(int n, std::string_view path = "/") {
    std::map<std::string, int> counts;
    FakePeer client = h_.connect();
    for (int i = 0; i < n; ++i) {
      client.send("GET " + std::string(path) + " HTTP/1.1\r\nHost: h\r\n\r\n");
      serve();
      std::string answer = client.take();
      size_t body = answer.find("\r\n\r\n");
      ++counts[status_of(answer) == 200 && body != std::string::npos
                   ? answer.substr(body + 4)
                   : "status " + std::to_string(status_of(answer))];
    }
    return counts;
  }

 private:
  ProxyHarness& h_;
  std::vector<std::string> addresses_;
  std::vector<std::pair<std::string, FakePeer>> peers_;
};

}  // namespace trellis::testing
