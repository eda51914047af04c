// What the targets that drive whole connections through a worker share
// (http2_server, http2_upstream): a proxy built once from a bootstrap text,
// on simulated time and an in-memory network; a fresh worker per input with
// one client connected; framed bodies measured the way a peer reads them.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "fuzz_check.h"
#include "http/http1/parser.h"
#include "proxy/config/config.h"
#include "proxy/runtime/snapshot_builder.h"
#include "proxy/runtime/worker.h"
#include "support/fake_network.h"

namespace fuzz_worker {

using namespace trellis;

// The one upstream endpoint: every request goes there.
inline const std::string kUpstream = "10.0.0.1:80";

// A listener that routes every request to cluster "app", up to its protocol.
constexpr std::string_view kConfigHead = R"(
admin: { address: 127.0.0.1:9901 }
listeners:
  - name: web
    address: 127.0.0.1:8080
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes: [{ match: { prefix: / }, cluster: app }]
clusters:
  - name: app
    protocol: )";

// The proxy of one target, for the fuzzer's life: one listener that routes
// every request to cluster "app" at kUpstream.
struct World {
  SimulatedClock clock;
  FastRandom random{1};
  std::shared_ptr<testing::FakeNetwork> network = std::make_shared<testing::FakeNetwork>();
  proxy::SnapshotBuilder builder{1, random};
  std::shared_ptr<const proxy::Snapshot> snapshot;

  // `cluster_protocol`: the cluster's `protocol` (http1, http2...).
  explicit World(std::string_view cluster_protocol) {
    const std::string config = std::string(kConfigHead) + std::string(cluster_protocol) +
                               "\n    endpoints: [{ address: " + kUpstream + " }]\n";
    proxy::ConfigLoad load = proxy::load_config_text(config, "fuzz.yaml");
    CHECK(load.ok());
    builder.set_open_listener([](const proxy::ListenerConfig&, std::string&) { return nullptr; });
    builder.set_transport(network);
    auto built = builder.build(std::make_shared<const proxy::ProxyConfig>(std::move(load.config)), nullptr,
                               clock.now());
    CHECK(built.ok());
    snapshot = *built;
  }

  // A worker for one input, with a client connected to the first listener.
  // What an earlier input's worker left in the network belongs to no one now.
  std::unique_ptr<proxy::Worker> fresh_worker(testing::FakePeer& client) {
    network->forget();
    auto worker = std::make_unique<proxy::Worker>(0, snapshot, clock, /*seed=*/7);
    sockaddr_storage peer{};
    peer.ss_family = AF_INET;
    worker->adopt_connection(0, -1, peer);
    client = network->last_accepted();
    return worker;
  }
};

// The end of every input: once the peers are gone and the timers have run,
// the worker holds no connection (every stream, router and session freed).
inline void check_nothing_left(World& world, proxy::Worker& worker) {
  world.clock.advance(std::chrono::seconds(30));
  worker.loop().run_until_idle();
  worker.drain();
  worker.loop().run_until_idle();
  CHECK(worker.connections() == 0);
}

// The length of the chunked body at the start of `wire`, as a peer decodes
// it; nullopt while it is not whole. A chunked body the proxy framed must
// decode.
inline std::optional<size_t> chunked_length(std::string_view wire) {
  http::http1::ChunkedDecoder decoder;
  size_t used = 0;
  for (;;) {
    http::http1::ChunkedDecoder::Step step = decoder.next(wire.substr(used));
    CHECK(step.kind != http::http1::ChunkedDecoder::Kind::kError);
    used += step.consumed;
    if (step.kind == http::http1::ChunkedDecoder::Kind::kNeedMore) return std::nullopt;
    if (step.kind == http::http1::ChunkedDecoder::Kind::kDone) return used;
  }
}

}  // namespace fuzz_worker
