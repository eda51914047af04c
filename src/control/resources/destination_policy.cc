// DestinationPolicy: how clients treat one Service's instances (load
// balancing, connection limits, outlier detection, retries, health checks)
// and the label-selected subsets that routes may split traffic between.
#include <algorithm>
#include <set>

#include "control/resources/common_fields.h"
#include "control/resources/formats.h"
#include "control/resources/kinds.h"
#include "policy/retry.h"

namespace trellis::control {
namespace {

constexpr int64_t kMaxCount = UINT32_MAX;
constexpr int64_t kDefaultBaseIntervalMs = 25;
constexpr int64_t kDefaultHealthIntervalMs = 10000;
constexpr int64_t kDefaultHealthTimeoutMs = 1000;

const Names kAlgorithms = {"RoundRobin", "WeightedRoundRobin", "Random", "LeastRequest",
                           "PeakEWMA",   "RingHash",           "Maglev"};
const Names kRetryOn(policy::kRetryOnNames.begin(), policy::kRetryOnNames.end());

void check_hash(const MapReader& hash) {
  hash.exactly_one_of({"header", "cookie", "sourceIP"});
  if (std::optional<std::string> header = hash.string("header")) {
    if (auto problem = check_token(*header, "header name")) hash.error("header", *problem);
  }
  if (std::optional<MapReader> cookie = hash.map("cookie", {"name", "ttl"})) {
    if (std::optional<std::string> name = cookie->string("name", Need::kRequired)) {
      if (auto problem = check_token(*name, "cookie name")) cookie->error("name", *problem);
    }
    cookie->duration("ttl");
  }
  std::optional<bool> source_ip = hash.boolean("sourceIP");
  if (source_ip && !*source_ip) {
    hash.error("sourceIP", "must be true when set (to hash on a header or cookie, set that instead)");
  }
}

void check_load_balancer(const MapReader& spec) {
  std::optional<MapReader> lb =
      spec.map("loadBalancer", {"algorithm", "hash", "ringPoints", "locality", "slowStart"});
  if (!lb) return;
  std::optional<std::string> algorithm = std::string("PeakEWMA");
  if (lb->has("algorithm")) algorithm = lb->enumeration("algorithm", kAlgorithms);
  bool hashing = algorithm && (*algorithm == "RingHash" || *algorithm == "Maglev");
  std::string which = lb->has("algorithm") ? "" : " (the default algorithm is PeakEWMA)";

  if (std::optional<MapReader> hash = lb->map("hash", {"header", "cookie", "sourceIP"})) {
    if (algorithm && !hashing) lb->error("hash", "only allowed when algorithm is RingHash or Maglev" + which);
    check_hash(*hash);
  } else if (hashing && !lb->has("hash")) {
    lb->error("hash", "required when algorithm is " + *algorithm + ": what to hash requests on");
  }

  lb->integer("ringPoints", 1, 65536);
  if (lb->has("ringPoints") && algorithm && *algorithm != "RingHash") {
    lb->error("ringPoints", "only allowed when algorithm is RingHash" + which);
  }

  if (std::optional<MapReader> locality = lb->map("locality", {"enabled", "minHealthyPercent"})) {
    locality->boolean("enabled");
    locality->integer("minHealthyPercent", 0, 100);
  }

  if (std::optional<MapReader> slow_start = lb->map("slowStart", {"window"})) {
    slow_start->duration("window", Need::kRequired, /*positive=*/true);
    if (hashing) {
      lb->error("slowStart", "not supported with " + *algorithm +
                                 ": hashing keeps each key on its instance, so new instances "
                                 "cannot be ramped up gradually");
    }
  }
}

void check_connection_pool(const MapReader& spec) {
  std::optional<MapReader> pool =
      spec.map("connectionPool", {"maxConnections", "maxPendingRequests", "maxRequests", "maxRetries",
                                  "connectTimeout", "idleTimeout", "requestIdleTimeout"});
  if (!pool) return;
  for (std::string_view key : {"maxConnections", "maxPendingRequests", "maxRequests", "maxRetries"}) {
    pool->integer(key, 1, kMaxCount);
  }
  pool->duration("connectTimeout", Need::kOptional, /*positive=*/true);
  pool->duration("idleTimeout", Need::kOptional, /*positive=*/true);
  pool->duration("requestIdleTimeout", Need::kOptional, /*positive=*/true);
}

void check_outlier_detection(const MapReader& spec) {
  std::optional<MapReader> outlier =
      spec.map("outlierDetection", {"consecutive5xx", "consecutiveGatewayErrors", "successRate", "interval",
                                    "baseEjectionTime", "maxEjectionPercent", "panicThresholdPercent"});
  if (!outlier) return;
  outlier->integer("consecutive5xx", 0, kMaxCount);
  outlier->integer("consecutiveGatewayErrors", 0, kMaxCount);
  if (std::optional<MapReader> success_rate =
          outlier->map("successRate", {"minimumHosts", "requestVolume", "stdevFactor"})) {
    success_rate->integer("minimumHosts", 1, kMaxCount);
    success_rate->integer("requestVolume", 1, kMaxCount);
    std::optional<double> factor = success_rate->number("stdevFactor", 0, 100);
    if (factor && *factor == 0) success_rate->error("stdevFactor", "must be greater than 0");
  }
  outlier->duration("interval", Need::kOptional, /*positive=*/true);
  outlier->duration("baseEjectionTime", Need::kOptional, /*positive=*/true);
  outlier->integer("maxEjectionPercent", 0, 100);
  outlier->integer("panicThresholdPercent", 0, 100);
}

void check_adaptive_concurrency(const MapReader& spec) {
  std::optional<MapReader> ac = spec.map(
      "adaptiveConcurrency", {"initialLimit", "minLimit", "maxLimit", "sampleWindow", "baselineInterval"});
  if (!ac) return;
  std::optional<int64_t> initial = ac->integer("initialLimit", 1, 1000000);
  std::optional<int64_t> min = ac->integer("minLimit", 1, 1000000);
  std::optional<int64_t> max = ac->integer("maxLimit", 1, 1000000);
  ac->duration("sampleWindow", Need::kOptional, /*positive=*/true);
  ac->duration("baselineInterval", Need::kOptional, /*positive=*/true);
  int64_t lo = min.value_or(3), hi = max.value_or(1000), start = initial.value_or(20);
  if (lo > hi)
    ac->error("minLimit", "must not be above maxLimit (" + std::to_string(hi) + ")");
  else if (start < lo || start > hi)
    ac->error("initialLimit", "must be between minLimit and maxLimit (" + std::to_string(lo) + " to " +
                                  std::to_string(hi) + ")");
}

void check_retries(Checker& checker, const MapReader& spec) {
  std::optional<MapReader> retries = spec.map(
      "retries",
      {"attempts", "perTryTimeout", "retryOn", "retriableStatusCodes", "backoff", "budget", "nonIdempotent"});
  if (!retries) return;
  retries->integer("attempts", 0, 10);
  retries->boolean("nonIdempotent");
  retries->duration("perTryTimeout", Need::kOptional, /*positive=*/true);

  std::set<std::string> conditions;
  std::optional<std::string> codes_condition_path;
  bool conditions_valid = !retries->has("retryOn") || retries->raw("retryOn")->is_array();
  for (const Item& item : retries->list("retryOn", 1, 16)) {
    std::optional<std::string> condition = checker.enumeration(*item.json, item.path, kRetryOn);
    if (!condition) {
      conditions_valid = false;
      continue;
    }
    if (!conditions.insert(*condition).second) {
      checker.error(item.path, quote(*condition) + " is listed twice");
    }
    if (*condition == "retriable-status-codes") codes_condition_path = item.path;
  }
  std::set<int64_t> codes;
  for (const Item& item : retries->list("retriableStatusCodes", 1, 100)) {
    std::optional<int64_t> code = checker.integer(*item.json, item.path, 100, 599);
    if (code && !codes.insert(*code).second) {
      checker.error(item.path, std::to_string(*code) + " is listed twice");
    }
  }
  bool has_codes = retries->has("retriableStatusCodes");
  // With an invalid retryOn entry the user's intent is unknown: that entry's
  // own error is enough.
  if (has_codes && !codes_condition_path && conditions_valid) {
    retries->error(
        "retriableStatusCodes",
        std::string("only used when retryOn includes \"retriable-status-codes\"") +
            (retries->has("retryOn") ? "" : " (the default retryOn is connect-failure and reset)"));
  }
  if (codes_condition_path && !has_codes) {
    checker.error(*codes_condition_path,
                  "\"retriable-status-codes\" needs retriableStatusCodes, the codes to retry on");
  }

  if (std::optional<MapReader> backoff = retries->map("backoff", {"baseInterval", "maxInterval"})) {
    std::optional<int64_t> base = backoff->duration("baseInterval", Need::kOptional, true);
    std::optional<int64_t> max = backoff->duration("maxInterval", Need::kOptional, true);
    int64_t base_ms = base.value_or(kDefaultBaseIntervalMs);
    if (max && (base || !backoff->has("baseInterval")) && *max < base_ms) {
      backoff->error("maxInterval", "must not be shorter than baseInterval (" +
                                        (base ? backoff->raw("baseInterval")->get<std::string>()
                                              : std::string("25ms, the default")) +
                                        ")");
    }
  }
  if (std::optional<MapReader> budget = retries->map("budget", {"percent", "minRetriesPerSecond"})) {
    budget->integer("percent", 0, 100);
    budget->integer("minRetriesPerSecond", 0, kMaxCount);
  }
}

void check_expected_status(Checker& checker, const Item& item) {
  static const std::string kShape =
      "must be a status code (e.g. 204) or an inclusive range of them (e.g. \"200-299\"), "
      "between 100 and 599";
  const Json& value = *item.json;
  if (value.is_number_integer()) {
    checker.integer(value, item.path, 100, 599);
    return;
  }
  if (!value.is_string()) {
    checker.error(item.path, kShape);
    return;
  }
  const std::string& text = value.get_ref<const std::string&>();
  auto code = [](std::string_view digits) -> int {
    if (digits.size() != 3) return -1;
    int n = 0;
    for (char c : digits) {
      if (c < '0' || c > '9') return -1;
      n = n * 10 + (c - '0');
    }
    return (n >= 100 && n <= 599) ? n : -1;
  };
  size_t dash = text.find('-');
  int low = code(std::string_view(text).substr(0, dash));
  int high = dash == std::string::npos ? low : code(std::string_view(text).substr(dash + 1));
  if (low < 0 || high < 0) {
    checker.error(item.path, quote(text) + ": " + kShape);
  } else if (high < low) {
    checker.error(item.path, quote(text) + ": the range must not end below its start");
  }
}

void check_health_check(Checker& checker, const MapReader& spec) {
  std::optional<MapReader> health =
      spec.map("healthCheck", {"http", "tcp", "grpc", "interval", "timeout", "healthyThreshold",
                               "unhealthyThreshold", "jitterPercent"});
  if (!health) return;
  health->exactly_one_of({"http", "tcp", "grpc"});
  if (std::optional<MapReader> http = health->map("http", {"path", "expectedStatuses"})) {
    if (std::optional<std::string> path = http->string("path", Need::kRequired)) {
      if (auto problem = check_http_path(*path)) http->error("path", *problem);
    }
    for (const Item& item : http->list("expectedStatuses", 1, 32)) check_expected_status(checker, item);
  }
  health->map("tcp", {});
  if (std::optional<MapReader> grpc = health->map("grpc", {"service"})) {
    if (std::optional<std::string> service = grpc->string("service")) {
      bool printable =
          std::all_of(service->begin(), service->end(), [](char c) { return c > ' ' && c < 0x7f; });
      if (service->size() > 200 || !printable)
        grpc->error("service", "must be at most 200 printable ASCII characters without spaces");
    }
  }

  std::optional<int64_t> interval = health->duration("interval", Need::kOptional, true);
  std::optional<int64_t> timeout = health->duration("timeout", Need::kOptional, true);
  if (timeout && (interval || !health->has("interval")) &&
      *timeout >= interval.value_or(kDefaultHealthIntervalMs)) {
    health->error(
        "timeout",
        "must be shorter than interval (" +
            (interval ? health->raw("interval")->get<std::string>() : std::string("10s, the default")) + ")");
  } else if (interval && !health->has("timeout") && *interval <= kDefaultHealthTimeoutMs) {
    health->error("interval", "must be longer than timeout (1s, the default)");
  }
  health->integer("healthyThreshold", 1, kMaxCount);
  health->integer("unhealthyThreshold", 1, kMaxCount);
  health->integer("jitterPercent", 0, 100);
}

void check_subsets(Checker& checker, const MapReader& spec) {
  std::set<std::string> names;
  for (const Item& item : spec.list("subsets", 0, 64)) {
    MapReader subset = checker.map(*item.json, item.path, {"name", "labels"});
    if (!subset.ok()) continue;
    if (std::optional<std::string> name = subset.string("name", Need::kRequired)) {
      if (auto problem = check_dns_label(*name)) {
        subset.error("name", *problem);
      } else if (!names.insert(*name).second) {
        subset.error("name", "subset " + quote(*name) + " is defined twice");
      }
    }
    std::optional<std::map<std::string, std::string>> labels = subset.string_map("labels", Need::kRequired);
    if (!labels) continue;
    const Json* written = subset.raw("labels");
    if (written->is_null() || (written->is_object() && written->empty())) {
      subset.error("labels",
                   "must have at least one label (a subset without labels would be the "
                   "whole Service)");
    }
    std::string labels_path = subset.path_of("labels");
    for (const auto& [key, value] : *labels) {
      if (auto problem = check_label_key(key)) checker.error(key_path(labels_path, key), *problem);
      if (auto problem = check_label_value(value)) checker.error(key_path(labels_path, key), *problem);
    }
  }
}

}  // namespace

void validate_destination_policy(Checker& checker, const Json& spec_json) {
  MapReader spec = checker.map(spec_json, "spec",
                               {"targetRef", "loadBalancer", "connectionPool", "outlierDetection", "retries",
                                "healthCheck", "subsets", "adaptiveConcurrency", "mtls", "tls"});
  if (!spec.ok()) return;
  if (std::optional<MapReader> tls = spec.map("tls", {"sni", "caCertificates"})) {
    if (std::optional<std::string> sni = tls->string("sni", Need::kRequired)) {
      if (check_hostname(*sni, /*allow_wildcard=*/false))
        tls->error("sni", "must be the DNS name the service's certificate carries, e.g. api.example.com");
    }
    if (std::optional<std::string> ca = tls->string("caCertificates")) {
      if (ca->find("-----BEGIN CERTIFICATE-----") == std::string::npos)
        tls->error("caCertificates", "must be PEM certificates (-----BEGIN CERTIFICATE-----)");
    }
  }
  if (std::optional<MapReader> mtls = spec.map("mtls", {"mode"})) {
    mtls->enumeration("mode", {"STRICT", "PERMISSIVE", "DISABLE"}, Need::kRequired);
  }
  check_target_ref(spec, {"Service"});
  check_load_balancer(spec);
  check_connection_pool(spec);
  check_outlier_detection(spec);
  check_adaptive_concurrency(spec);
  check_retries(checker, spec);
  check_health_check(checker, spec);
  check_subsets(checker, spec);
}

}  // namespace trellis::control
