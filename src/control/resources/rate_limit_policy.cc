// RateLimitPolicy: request rate limits on a Service or an HTTPRoute, each a
// token bucket or a leaky bucket per client key.
#include <set>

#include "control/resources/common_fields.h"
#include "control/resources/formats.h"
#include "control/resources/kinds.h"

namespace trellis::control {
namespace {

constexpr size_t kMaxLimits = 32;
constexpr int64_t kMaxCount = UINT32_MAX;

void check_match(Checker& checker, const MapReader& limit) {
  std::optional<MapReader> match = limit.map("match", {"path", "method", "headers"});
  if (!match) return;
  if (const Json* path = match->raw("path")) {
    check_path_match(checker, *path, match->path_of("path"), /*allow_regex=*/false);
  }
  match->enumeration("method", kHttpMethods);
  check_header_matches(checker, *match, "headers");
}

void check_key(const MapReader& limit) {
  std::optional<MapReader> key = limit.map("key", {"source", "header"}, Need::kRequired);
  if (!key) return;
  key->exactly_one_of({"source", "header"});
  key->enumeration("source", {"Address", "Identity"});
  if (std::optional<std::string> header = key->string("header")) {
    if (auto problem = check_token(*header, "header name")) key->error("header", *problem);
  }
}

void check_buckets(const MapReader& limit) {
  limit.exactly_one_of({"tokenBucket", "leakyBucket"});
  if (std::optional<MapReader> token = limit.map("tokenBucket", {"requestsPerUnit", "unit", "burst"})) {
    token->integer("requestsPerUnit", 1, kMaxCount, Need::kRequired);
    token->enumeration("unit", {"Second", "Minute", "Hour"}, Need::kRequired);
    token->integer("burst", 0, kMaxCount);
  }
  if (std::optional<MapReader> leaky = limit.map("leakyBucket", {"ratePerSecond", "queueSize", "maxDelay"})) {
    std::optional<double> rate = leaky->number("ratePerSecond", 0, 1e9, Need::kRequired);
    if (rate && *rate == 0) leaky->error("ratePerSecond", "must be greater than 0");
    std::optional<int64_t> queue = leaky->integer("queueSize", 0, kMaxCount);
    leaky->duration("maxDelay", Need::kOptional, /*positive=*/true);
    if (leaky->has("maxDelay") && (!leaky->has("queueSize") || (queue && *queue == 0))) {
      leaky->error("maxDelay",
                   "only allowed when queueSize is greater than 0: without a queue no "
                   "request waits");
    }
  }
}

}  // namespace

void validate_rate_limit_policy(Checker& checker, const Json& spec_json) {
  MapReader spec = checker.map(spec_json, "spec", {"targetRef", "limits"});
  if (!spec.ok()) return;
  check_target_ref(spec, {"Service", "HTTPRoute"});
  std::set<std::string> names;
  for (const Item& item : spec.list("limits", 1, kMaxLimits, Need::kRequired)) {
    MapReader limit =
        checker.map(*item.json, item.path, {"name", "match", "key", "tokenBucket", "leakyBucket"});
    if (!limit.ok()) continue;
    if (std::optional<std::string> name = limit.string("name")) {
      if (auto problem = check_dns_label(*name)) {
        limit.error("name", *problem);
      } else if (!names.insert(*name).second) {
        limit.error("name", "limit " + quote(*name) + " is defined twice");
      }
    }
    check_match(checker, limit);
    check_key(limit);
    check_buckets(limit);
  }
}

}  // namespace trellis::control
