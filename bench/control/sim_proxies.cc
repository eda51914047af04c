// trellis-sim-proxies: many simulated sidecars for the control-plane scale
// benchmark. Each proxy is one gRPC stream to trellis-control, run on a few
// event loops with the proxy's own stream client; it says hello like a sidecar
// that calls K of M services, ACKs every update at once and records when each
// endpoint appeared in, or left, each of its clusters. A line protocol on
// stdin/stdout (one JSON object per answer) lets the driver ask what was seen.
#include <signal.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <future>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "common/random.h"
#include "http/grpc_stream.h"
#include "net/address.h"
#include "net/event_loop.h"
#include "net/tls_context.h"
#include "net/tls_transport.h"
#include "trellis/v1/discovery.pb.h"

namespace trellis::bench {
namespace {

using Json = nlohmann::ordered_json;

constexpr const char* kStreamPath = "/trellis.v1.ProxyDiscovery/Stream";
constexpr auto kReconnectDelay = std::chrono::seconds(1);

// Receive times are wall-clock milliseconds: the driver compares them with the
// moment its API call returned, on the same machine. The one read of the wall clock.
int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct Options {
  std::string control = "127.0.0.1:15010";
  size_t proxies = 1000;
  size_t services = 100;        // M: services the mesh offers ("<prefix><j>")
  size_t calls = 3;             // K: services each proxy calls
  size_t client_services = 10;  // S: proxy i sits beside "sim-client-<i % S>"
  size_t threads = 1;
  uint64_t seed = 1;
  std::string service_prefix = "svc-";
  std::string namespace_ = "default";
  std::string outbound_address = "127.0.0.1:15001";
  std::string trust_bundle;  // trellis-control's <data-dir>/trust-bundle.pem
  std::string trust_domain = "cluster.local";
  // "sim-client-<n> <join token>" per line: a join token per client service.
  std::string join_tokens;
};

void usage(FILE* out) {
  std::fputs(
      "usage: trellis-sim-proxies [options]\n"
      "\n"
      "  --control IP:PORT       trellis-control's gRPC address (default 127.0.0.1:15010)\n"
      "  --proxies N             streams to open (default 1000)\n"
      "  --services M            services in the mesh, named <prefix>0 .. <prefix>M-1 (default 100)\n"
      "  --calls K               services each proxy calls, drawn without repetition (default 3)\n"
      "  --client-services S     proxy i is a sidecar of sim-client-<i % S> (default 10)\n"
      "  --threads T             event loops the streams are spread over (default 1)\n"
      "  --seed N                seed of the draw of called services (default 1)\n"
      "  --service-prefix P      (default svc-)\n"
      "  --trust-bundle FILE     the roots trellis-control's certificate chains to (required)\n"
      "  --join-tokens FILE      lines \"SERVICE TOKEN\": a join token for each sim-client-<n> (required)\n"
      "\n"
      "Commands on stdin, one JSON line answered on stdout for each:\n"
      "  status                                  streams open, proxies synced, updates, memory\n"
      "  seen CLUSTER ADDRESS added|removed MS   per proxy calling CLUSTER's service: when it first\n"
      "                                          received an update (at or after wall-clock MS)\n"
      "                                          that added ADDRESS to, or removed it from, CLUSTER\n"
      "  quit\n",
      out);
}

// Cluster names and endpoint addresses as small numbers: every proxy of a
// shard holds the same few hundred of them.
class Interner {
 public:
  uint32_t id(const std::string& text) {
    auto [it, inserted] = ids_.try_emplace(text, static_cast<uint32_t>(ids_.size()));
    return it->second;
  }
  std::optional<uint32_t> find(const std::string& text) const {
    auto it = ids_.find(text);
    if (it == ids_.end()) return std::nullopt;
    return it->second;
  }

 private:
  std::unordered_map<std::string, uint32_t> ids_;
};

// One endpoint entering or leaving one cluster of one proxy.
struct EndpointEvent {
  uint32_t cluster;
  uint32_t address;
  bool added;
  int64_t at_ms;
  uint64_t version;
};

struct Counters {
  size_t open = 0;
  size_t synced = 0;  // received at least one whole configuration
  int64_t last_first_sync_ms = 0;
  uint64_t updates = 0;
  uint64_t full_updates = 0;
  uint64_t update_bytes = 0;
  uint64_t max_update_bytes = 0;
  uint64_t unreadable = 0;
  uint64_t closes = 0;
  std::string last_close;
};

struct SeenAnswer {
  struct Hit {
    size_t proxy;
    int64_t at_ms;
    uint64_t version;
  };
  size_t expected = 0;
  std::vector<Hit> received;  // proxies calling the service that saw the change
  std::vector<size_t> missing;
  size_t unexpected = 0;  // proxies not calling it that saw it all the same
};

class Shard;

class SimProxy final : public http::grpc::StreamCallbacks {
 public:
  SimProxy(Shard& shard, size_t index, std::string hello, std::vector<uint32_t> calls);
  ~SimProxy() { stream_.reset(); }

  void start();
  void add_counters(Counters& out) const;
  void answer(uint32_t cluster, std::optional<uint32_t> address, bool added, int64_t since_ms,
              SeenAnswer& out) const;

  void on_stream_ready() override;
  void on_stream_message(std::string_view payload) override;
  void on_stream_closed(int grpc_status, std::string_view message) override;

 private:
  void apply(const v1::ConfigUpdate& update, int64_t now_ms);
  void replace_cluster(uint32_t cluster, std::vector<uint32_t> endpoints, uint64_t version, int64_t now_ms);

  Shard& shard_;
  const size_t index_;
  const std::string hello_;            // a serialized ProxyMessage
  const std::vector<uint32_t> calls_;  // cluster ids of the called services, sorted
  http::grpc::StreamClient stream_;
  net::Timer reconnect_timer_;
  bool open_ = false;
  std::map<uint32_t, std::vector<uint32_t>> clusters_;  // endpoint ids, sorted
  std::vector<EndpointEvent> events_;
  uint64_t updates_ = 0;
  uint64_t full_updates_ = 0;
  uint64_t update_bytes_ = 0;
  uint64_t max_update_bytes_ = 0;
  uint64_t unreadable_ = 0;
  uint64_t closes_ = 0;
  int64_t first_sync_ms_ = 0;
  std::string last_close_;
};

// One event loop on its own thread and the proxies it runs. Everything a
// shard owns is touched on its thread only; the driver's questions are posted.
class Shard {
 public:
  Shard(net::SocketAddress control, std::shared_ptr<net::TransportFactory> transport)
      : control_(std::move(control)), transport_(std::move(transport)) {}

  net::EventLoop& loop() { return loop_; }
  const std::shared_ptr<net::TransportFactory>& transport() const { return transport_; }
  Interner& names() { return names_; }
  const net::SocketAddress& control() const { return control_; }

  void add(size_t index, const v1::Hello& hello) {
    std::vector<uint32_t> calls;
    for (const std::string& s : hello.upstream_services())
      calls.push_back(names_.id(s + "." + hello.node().namespace_()));
    std::sort(calls.begin(), calls.end());
    v1::ProxyMessage message;
    *message.mutable_hello() = hello;
    proxies_.push_back(
        std::make_unique<SimProxy>(*this, index, message.SerializeAsString(), std::move(calls)));
  }

  void run() {
    thread_ = std::thread([this] {
      for (auto& p : proxies_) p->start();
      loop_.run();
      proxies_.clear();  // on the loop's thread, like every other use of them
      loop_.run_deferred();
    });
  }

  void stop() {
    loop_.stop();
    if (thread_.joinable()) thread_.join();
  }

  // Runs `task` on the shard's thread and waits for its answer.
  template <class T>
  T ask(std::function<T(Shard&)> task) {
    std::promise<T> answer;
    std::future<T> result = answer.get_future();
    loop_.post([this, &answer, &task] { answer.set_value(task(*this)); });
    return result.get();
  }

  Counters counters() const {
    Counters c;
    for (const auto& p : proxies_) p->add_counters(c);
    return c;
  }

  SeenAnswer seen(const std::string& cluster, const std::string& address, bool added,
                  int64_t since_ms) const {
    SeenAnswer out;
    std::optional<uint32_t> cluster_id = names_.find(cluster);
    if (!cluster_id) return out;  // no proxy here calls it, and none received it
    std::optional<uint32_t> address_id = names_.find(address);
    for (const auto& p : proxies_) p->answer(*cluster_id, address_id, added, since_ms, out);
    return out;
  }

 private:
  net::EventLoop loop_;
  Interner names_;
  net::SocketAddress control_;
  std::shared_ptr<net::TransportFactory> transport_;
  std::vector<std::unique_ptr<SimProxy>> proxies_;
  std::thread thread_;
};

http::grpc::StreamOptions stream_options(std::shared_ptr<net::TransportFactory> transport) {
  http::grpc::StreamOptions options;
  options.transport = std::move(transport);
  options.scheme = "https";
  return options;
}

SimProxy::SimProxy(Shard& shard, size_t index, std::string hello, std::vector<uint32_t> calls)
    : shard_(shard),
      index_(index),
      hello_(std::move(hello)),
      calls_(std::move(calls)),
      stream_(shard.loop(), *this, stream_options(shard.transport())),
      reconnect_timer_(shard.loop(), [this] { start(); }) {}

void SimProxy::start() {
  stream_.reset();
  if (!stream_.start(shard_.control(), shard_.control().text, kStreamPath))
    reconnect_timer_.arm(kReconnectDelay);
}

void SimProxy::on_stream_ready() {
  open_ = true;
  stream_.send(hello_);
}

void SimProxy::on_stream_message(std::string_view payload) {
  const int64_t now = wall_ms();
  v1::ControlMessage message;
  if (!message.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    ++unreadable_;
    return;
  }
  // The trust bundle a proxy admitted without a CSR is sent: nothing to do
  // for a simulated proxy, which holds no certificate.
  if (message.has_certificate()) return;
  if (!message.has_update()) {
    ++unreadable_;
    return;
  }
  const v1::ConfigUpdate& update = message.update();
  // A proxy that puts every update in force at once: the ACK goes first, the
  // bookkeeping after it.
  v1::ProxyMessage ack;
  ack.mutable_ack()->set_version(update.version());
  stream_.send(ack.SerializeAsString());
  ++updates_;
  update_bytes_ += payload.size();
  max_update_bytes_ = std::max<uint64_t>(max_update_bytes_, payload.size());
  if (update.full()) {
    ++full_updates_;
    if (first_sync_ms_ == 0) first_sync_ms_ = now;
  }
  apply(update, now);
}

void SimProxy::on_stream_closed(int grpc_status, std::string_view message) {
  open_ = false;
  ++closes_;
  last_close_ = "sim-" + std::to_string(index_) + ": grpc-status " + std::to_string(grpc_status) + " " +
                std::string(message);
  reconnect_timer_.arm(kReconnectDelay);
}

void SimProxy::apply(const v1::ConfigUpdate& update, int64_t now_ms) {
  Interner& names = shard_.names();
  std::vector<uint32_t> present;
  for (const v1::Cluster& c : update.clusters()) {
    uint32_t cluster = names.id(c.name());
    std::vector<uint32_t> endpoints;
    endpoints.reserve(static_cast<size_t>(c.endpoints_size()));
    for (const v1::Endpoint& e : c.endpoints()) endpoints.push_back(names.id(e.address()));
    std::sort(endpoints.begin(), endpoints.end());
    endpoints.erase(std::unique(endpoints.begin(), endpoints.end()), endpoints.end());
    replace_cluster(cluster, std::move(endpoints), update.version(), now_ms);
    present.push_back(cluster);
  }
  std::vector<uint32_t> gone;
  if (update.full()) {
    // A whole configuration: what it leaves out is gone.
    std::sort(present.begin(), present.end());
    for (const auto& [cluster, endpoints] : clusters_)
      if (!std::binary_search(present.begin(), present.end(), cluster)) gone.push_back(cluster);
  } else {
    for (const std::string& name : update.removed_clusters()) gone.push_back(names.id(name));
  }
  for (uint32_t cluster : gone) {
    replace_cluster(cluster, {}, update.version(), now_ms);
    clusters_.erase(cluster);
  }
}

void SimProxy::replace_cluster(uint32_t cluster, std::vector<uint32_t> endpoints, uint64_t version,
                               int64_t now_ms) {
  std::vector<uint32_t>& old = clusters_[cluster];
  // Both sorted: one merge finds what came and what went.
  size_t i = 0;
  size_t j = 0;
  while (i < old.size() || j < endpoints.size()) {
    if (j == endpoints.size() || (i < old.size() && old[i] < endpoints[j])) {
      events_.push_back({cluster, old[i++], false, now_ms, version});
    } else if (i == old.size() || endpoints[j] < old[i]) {
      events_.push_back({cluster, endpoints[j++], true, now_ms, version});
    } else {
      ++i;
      ++j;
    }
  }
  old = std::move(endpoints);
}

void SimProxy::add_counters(Counters& out) const {
  out.open += open_ ? 1 : 0;
  if (first_sync_ms_ != 0) {
    ++out.synced;
    out.last_first_sync_ms = std::max(out.last_first_sync_ms, first_sync_ms_);
  }
  out.updates += updates_;
  out.full_updates += full_updates_;
  out.update_bytes += update_bytes_;
  out.max_update_bytes = std::max(out.max_update_bytes, max_update_bytes_);
  out.unreadable += unreadable_;
  out.closes += closes_;
  if (!last_close_.empty()) out.last_close = last_close_;
}

void SimProxy::answer(uint32_t cluster, std::optional<uint32_t> address, bool added, int64_t since_ms,
                      SeenAnswer& out) const {
  bool expected = std::binary_search(calls_.begin(), calls_.end(), cluster);
  const EndpointEvent* hit = nullptr;
  if (address) {
    for (const EndpointEvent& e : events_) {
      if (e.cluster == cluster && e.address == *address && e.added == added && e.at_ms >= since_ms) {
        hit = &e;
        break;
      }
    }
  }
  if (expected) {
    ++out.expected;
    if (hit) {
      out.received.push_back({index_, hit->at_ms, hit->version});
    } else {
      out.missing.push_back(index_);
    }
  } else if (hit) {
    ++out.unexpected;
  }
}

// VmRSS and VmHWM of this process, in KiB.
std::pair<uint64_t, uint64_t> own_memory_kib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  uint64_t rss = 0;
  uint64_t hwm = 0;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) rss = std::strtoull(line.c_str() + 6, nullptr, 10);
    if (line.rfind("VmHWM:", 0) == 0) hwm = std::strtoull(line.c_str() + 6, nullptr, 10);
  }
  return {rss, hwm};
}

std::string node_name(size_t index) { return "sim-" + std::to_string(index); }

// The hello of proxy `index`: K distinct services drawn from M with a
// generator seeded per proxy, so a run is repeatable and a proxy's draw does
// not depend on how many others there are.
v1::Hello make_hello(const Options& o, size_t index, const std::map<std::string, std::string>& tokens) {
  v1::Hello hello;
  v1::Node* node = hello.mutable_node();
  node->set_id(node_name(index));
  node->set_service("sim-client-" + std::to_string(index % o.client_services));
  if (auto it = tokens.find(node->service()); it != tokens.end()) hello.set_join_token(it->second);
  node->set_namespace_(o.namespace_);
  node->set_proxy_version("trellis-sim-proxies");
  hello.set_outbound_address(o.outbound_address);
  FastRandom random(o.seed * 0x9E3779B97F4A7C15ull + index);
  std::vector<size_t> chosen;
  while (chosen.size() < std::min(o.calls, o.services)) {
    size_t s = static_cast<size_t>(random.uniform(o.services));
    if (std::find(chosen.begin(), chosen.end(), s) == chosen.end()) chosen.push_back(s);
  }
  std::sort(chosen.begin(), chosen.end());
  for (size_t s : chosen) hello.add_upstream_services(o.service_prefix + std::to_string(s));
  return hello;
}

Json status_json(std::vector<std::unique_ptr<Shard>>& shards, size_t proxies) {
  Counters total;
  for (auto& shard : shards) {
    Counters c = shard->ask<Counters>([](Shard& s) { return s.counters(); });
    total.open += c.open;
    total.synced += c.synced;
    total.last_first_sync_ms = std::max(total.last_first_sync_ms, c.last_first_sync_ms);
    total.updates += c.updates;
    total.full_updates += c.full_updates;
    total.update_bytes += c.update_bytes;
    total.max_update_bytes = std::max(total.max_update_bytes, c.max_update_bytes);
    total.unreadable += c.unreadable;
    total.closes += c.closes;
    if (!c.last_close.empty()) total.last_close = c.last_close;
  }
  auto [rss, hwm] = own_memory_kib();
  return Json{{"proxies", proxies},
              {"open", total.open},
              {"synced", total.synced},
              {"all_synced_at_ms", total.synced == proxies ? total.last_first_sync_ms : 0},
              {"updates", total.updates},
              {"full_updates", total.full_updates},
              {"update_bytes", total.update_bytes},
              {"max_update_bytes", total.max_update_bytes},
              {"unreadable", total.unreadable},
              {"closes", total.closes},
              {"last_close", total.last_close},
              {"rss_kib", rss},
              {"hwm_kib", hwm}};
}

Json seen_json(std::vector<std::unique_ptr<Shard>>& shards, const std::string& cluster,
               const std::string& address, bool added, int64_t since_ms) {
  SeenAnswer all;
  for (auto& shard : shards) {
    SeenAnswer a =
        shard->ask<SeenAnswer>([&](Shard& s) { return s.seen(cluster, address, added, since_ms); });
    all.expected += a.expected;
    all.unexpected += a.unexpected;
    all.received.insert(all.received.end(), a.received.begin(), a.received.end());
    all.missing.insert(all.missing.end(), a.missing.begin(), a.missing.end());
  }
  std::sort(all.received.begin(), all.received.end(),
            [](const SeenAnswer::Hit& a, const SeenAnswer::Hit& b) { return a.at_ms < b.at_ms; });
  std::sort(all.missing.begin(), all.missing.end());
  Json received = Json::array();
  for (const SeenAnswer::Hit& h : all.received)
    received.push_back(Json{{"node", node_name(h.proxy)}, {"at_ms", h.at_ms}, {"version", h.version}});
  Json missing = Json::array();
  for (size_t m : all.missing) missing.push_back(node_name(m));
  return Json{{"cluster", cluster},
              {"address", address},
              {"change", added ? "added" : "removed"},
              {"expected", all.expected},
              {"received", std::move(received)},
              {"missing", std::move(missing)},
              {"unexpected", all.unexpected}};
}

bool parse_size(const std::string& text, size_t& out) {
  char* end = nullptr;
  unsigned long long v = std::strtoull(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0') return false;
  out = static_cast<size_t>(v);
  return true;
}

void reply(const Json& answer) {
  std::string line = answer.dump();
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

int run(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "trellis-sim-proxies: %s needs a value\n", arg.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    auto number = [&](size_t& out) {
      std::string v = value();
      if (!parse_size(v, out)) {
        std::fprintf(stderr, "trellis-sim-proxies: %s: not a number: %s\n", arg.c_str(), v.c_str());
        std::exit(2);
      }
    };
    if (arg == "--control") {
      o.control = value();
    } else if (arg == "--proxies") {
      number(o.proxies);
    } else if (arg == "--services") {
      number(o.services);
    } else if (arg == "--calls") {
      number(o.calls);
    } else if (arg == "--client-services") {
      number(o.client_services);
    } else if (arg == "--threads") {
      number(o.threads);
    } else if (arg == "--seed") {
      size_t seed = 0;
      number(seed);
      o.seed = seed;
    } else if (arg == "--service-prefix") {
      o.service_prefix = value();
    } else if (arg == "--trust-bundle") {
      o.trust_bundle = value();
    } else if (arg == "--join-tokens") {
      o.join_tokens = value();
    } else if (arg == "--help" || arg == "-h") {
      usage(stdout);
      return 0;
    } else {
      std::fprintf(stderr, "trellis-sim-proxies: unknown argument %s\n", arg.c_str());
      usage(stderr);
      return 2;
    }
  }
  if (o.services == 0 || o.client_services == 0 || o.threads == 0) {
    std::fprintf(stderr,
                 "trellis-sim-proxies: --services, --client-services and --threads must be positive\n");
    return 2;
  }
  net::SocketAddress control;
  std::string error;
  if (!net::parse_socket_address(o.control, control, error)) {
    std::fprintf(stderr, "trellis-sim-proxies: --control: %s\n", error.c_str());
    return 2;
  }
  if (o.trust_bundle.empty() || o.join_tokens.empty()) {
    std::fprintf(stderr, "trellis-sim-proxies: --trust-bundle and --join-tokens are required\n");
    return 2;
  }
  std::map<std::string, std::string> tokens;
  {
    std::ifstream in(o.join_tokens);
    std::string service, token;
    while (in >> service >> token) tokens[service] = token;
  }
  std::ifstream bundle_file(o.trust_bundle);
  std::stringstream bundle;
  bundle << bundle_file.rdbuf();
  net::TlsContextOptions tls;
  tls.role = net::TlsRole::kClient;
  tls.trust_bundle_pem = bundle.str();
  tls.alpn = {"h2"};
  auto context = net::TlsContext::create(tls);
  if (!context) {
    std::fprintf(stderr, "trellis-sim-proxies: --trust-bundle: %s\n", context.error().message.c_str());
    return 2;
  }
  net::TlsClientOptions verify;
  verify.accepted_identities = {"spiffe://" + o.trust_domain + "/ns/trellis-system/sa/trellis-control"};
  auto factory = net::TlsTransportFactory::client(std::move(*context), verify);
  if (!factory) {
    std::fprintf(stderr, "trellis-sim-proxies: %s\n", factory.error().message.c_str());
    return 2;
  }
  std::shared_ptr<net::TransportFactory> transport = std::move(*factory);
  signal(SIGPIPE, SIG_IGN);
  spdlog::set_level(spdlog::level::warn);
  // One socket per stream: a thousand streams need more than the usual 1,024 files.
  rlimit files{};
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }

  std::vector<std::unique_ptr<Shard>> shards;
  for (size_t t = 0; t < o.threads; ++t) shards.push_back(std::make_unique<Shard>(control, transport));
  for (size_t i = 0; i < o.proxies; ++i) shards[i % o.threads]->add(i, make_hello(o, i, tokens));
  const int64_t started = wall_ms();
  for (auto& shard : shards) shard->run();
  reply(Json{{"started_at_ms", started}, {"proxies", o.proxies}, {"threads", o.threads}});

  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream words(line);
    std::string command;
    words >> command;
    if (command.empty()) continue;
    if (command == "quit") break;
    if (command == "status") {
      reply(status_json(shards, o.proxies));
    } else if (command == "seen") {
      std::string cluster, address, change;
      int64_t since = 0;
      if (!(words >> cluster >> address >> change >> since) || (change != "added" && change != "removed")) {
        reply(Json{{"error", "usage: seen CLUSTER ADDRESS added|removed SINCE_MS"}});
        continue;
      }
      reply(seen_json(shards, cluster, address, change == "added", since));
    } else {
      reply(Json{{"error", "unknown command: " + command}});
    }
  }
  for (auto& shard : shards) shard->stop();
  return 0;
}

}  // namespace
}  // namespace trellis::bench

int main(int argc, char** argv) { return trellis::bench::run(argc, argv); }
