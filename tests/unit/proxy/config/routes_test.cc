// Routes in the bootstrap file (src/proxy/config_routes.cc): matching, rate
// limits, backends, redirects, rewrites, header changes, mirrors and faults.
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "config_test_helpers.h"
#include "proxy/config/config.h"

namespace trellis::proxy {
namespace {

using namespace config_test;
using policy::PathMatchKind;
using Pairs = std::vector<std::pair<std::string, std::string>>;

const RouteConfig& only_route(const ConfigLoad& result) {
  return result.config.listeners.at(0).virtual_hosts.at(0).routes.at(0);
}

std::string at(const std::string& field) { return std::string(kRoute) + "." + field; }

// ---- match

TEST(ConfigRoutesTest, MatchOnRegexMethodHeadersQueryAndHosts) {
  ConfigLoad result = load_route(R"(
match:
  regex: "/api/v[0-9]+/.*"
  method: PATCH
  headers:
    - { name: X-Canary, value: "yes" }
    - { name: user-agent, regex: ".*Mobile.*" }
    - { name: x-empty, value: "" }
  query_params:
    - { name: Debug, value: "1" }
    - { name: page, regex: "[0-9]+" }
  hosts: [API.example.com, "*.Example.org"]
cluster: web
)");
  ASSERT_TRUE(result.ok()) << all_errors(result);
  const policy::RouteMatch& m = only_route(result).match;
  EXPECT_EQ(m.path_kind, PathMatchKind::kRegex);
  EXPECT_EQ(m.path, "/api/v[0-9]+/.*");
  EXPECT_EQ(m.method, "PATCH");
  ASSERT_EQ(m.headers.size(), 3u);
  // Header names compare without case, so they are kept in lower case; query names are kept as sent.
  EXPECT_EQ(m.headers[0].name, "x-canary");
  EXPECT_FALSE(m.headers[0].regex);
  EXPECT_EQ(m.headers[0].value, "yes");
  EXPECT_EQ(m.headers[1].name, "user-agent");
  EXPECT_TRUE(m.headers[1].regex);
  EXPECT_EQ(m.headers[1].value, ".*Mobile.*");
  EXPECT_EQ(m.headers[2].value, "");
  ASSERT_EQ(m.query_params.size(), 2u);
  EXPECT_EQ(m.query_params[0].name, "Debug");
  EXPECT_EQ(m.query_params[0].value, "1");
  EXPECT_TRUE(m.query_params[1].regex);
  EXPECT_EQ(m.hosts, (std::vector<std::string>{"api.example.com", "*.example.org"}));
}

TEST(ConfigRoutesTest, MatchDefaultsToAnyMethodHeaderAndHost) {
  ConfigLoad result = load_route("match: { prefix: /v1 }\ncluster: web\n");
  ASSERT_TRUE(result.ok()) << all_errors(result);
  const policy::RouteMatch& m = only_route(result).match;
  EXPECT_EQ(m.path_kind, PathMatchKind::kPrefix);
  EXPECT_TRUE(m.method.empty());
  EXPECT_TRUE(m.headers.empty());
  EXPECT_TRUE(m.query_params.empty());
  EXPECT_TRUE(m.hosts.empty());
}

TEST(ConfigRoutesTest, RegexThatDoesNotCompile) {
  ConfigLoad result = load_route("match: { regex: \"/api/(v1\" }\ncluster: web\n");
  ASSERT_EQ(result.errors.size(), 1u) << all_errors(result);
  EXPECT_EQ(result.errors[0].line, 8);
  EXPECT_EQ(result.errors[0].column, 29);
  EXPECT_EQ(result.errors[0].path, at("match.regex"));
  EXPECT_EQ(result.errors[0].message, "invalid regular expression: missing ): /api/(v1");

  EXPECT_EQ(
      only_error(load_route("match: { prefix: /, headers: [{ name: x, regex: \"a**\" }] }\ncluster: web\n")),
      at("match.headers[0].regex") + ": invalid regular expression: bad repetition operator: **");
  EXPECT_EQ(only_error(load_route(
                "match: { prefix: /, query_params: [{ name: q, regex: \"[\" }] }\ncluster: web\n")),
            at("match.query_params[0].regex") + ": invalid regular expression: missing ]: [");
}

TEST(ConfigRoutesTest, UnknownMethodSuggestsTheNearMiss) {
  EXPECT_EQ(only_error(load_route("match: { prefix: /, method: get }\ncluster: web\n")),
            at("match.method") + ": unknown method \"get\" (did you mean \"GET\"?)");
  EXPECT_EQ(only_error(load_route("match: { prefix: /, method: POTS }\ncluster: web\n")),
            at("match.method") + ": unknown method \"POTS\" (did you mean \"POST\"?)");
  EXPECT_EQ(only_error(load_route("match: { prefix: /, method: SUBSCRIBE }\ncluster: web\n")),
            at("match.method") +
                ": unknown method \"SUBSCRIBE\" (expected \"GET\", \"HEAD\", \"POST\", \"PUT\", \"DELETE\", "
                "\"CONNECT\", \"OPTIONS\", \"TRACE\" or \"PATCH\")");
  EXPECT_EQ(only_error(load_route("match: { prefix: /, method: [GET] }\ncluster: web\n")),
            at("match.method") + ": expected a string");
}

TEST(ConfigRoutesTest, HeaderAndQueryConditionRules) {
  auto match_error = [](const std::string& match) {
    return only_error(load_route(("match: { prefix: /, " + match + " }\ncluster: web\n").c_str()));
  };
  EXPECT_EQ(
      match_error("headers: [{ name: \"x y\", value: a }]"),
      at("match.headers[0].name") + ": invalid header name \"x y\": use letters, digits and !#$%&'*+-.^_`|~");
  EXPECT_EQ(match_error("headers: [{ value: a }]"),
            at("match.headers[0].name") + ": required field is missing");
  EXPECT_EQ(match_error("headers: [{ name: x }]"), at("match.headers[0]") + ": needs \"value\" or \"regex\"");
  EXPECT_EQ(match_error("headers: [{ name: x, value: a, regex: b }]"),
            at("match.headers[0]") + ": set only one of \"value\" or \"regex\"");
  EXPECT_EQ(match_error("headers: [{ name: x, value: \"a\\r\\nb\" }]"),
            at("match.headers[0].value") + ": must not contain CR, LF or NUL");
  EXPECT_EQ(match_error("headers: [{ name: x, valeu: a }]"),
            "(2 errors)\ntest.yaml:8:43: " + at("match.headers[0]") + ": needs \"value\" or \"regex\"\n" +
                "test.yaml:8:54: " + at("match.headers[0].valeu") +
                ": unknown field \"valeu\" (did you mean \"value\"?)\n");
  EXPECT_EQ(match_error("headers: { name: x, value: a }"), at("match.headers") + ": expected a list");
  EXPECT_EQ(match_error("query_params: [{ name: \"a=b\", value: c }]"),
            at("match.query_params[0].name") +
                ": invalid query parameter name \"a=b\": no spaces, controls, '&', '=' or '#'");
  EXPECT_EQ(match_error("query_params: [{ name: \"\", value: c }]"),
            at("match.query_params[0].name") + ": must not be empty");
}

TEST(ConfigRoutesTest, HostConditionRules) {
  auto host_error = [](const std::string& hosts) {
    return only_error(load_route(("match: { prefix: /, hosts: " + hosts + " }\ncluster: web\n").c_str()));
  };
  const std::string shape =
      ": expected a host name without a port, or \"*.\" and one (e.g. \"*.example.com\")";
  EXPECT_EQ(host_error("[\"a.example:80\"]"),
            at("match.hosts[0]") + ": invalid host \"a.example:80\"" + shape);
  EXPECT_EQ(host_error("[\"a.*.example\"]"), at("match.hosts[0]") + ": invalid host \"a.*.example\"" + shape);
  EXPECT_EQ(host_error("[\"*\"]"), at("match.hosts[0]") + ": invalid host \"*\"" + shape);
  EXPECT_EQ(host_error("[\"\"]"), at("match.hosts[0]") + ": must not be empty");
  EXPECT_EQ(host_error("a.example"), at("match.hosts") + ": expected a list");
}

// ---- rate limits

TEST(ConfigRoutesTest, RateLimits) {
  ConfigLoad result = load_route(R"(
match: { prefix: / }
cluster: web
rate_limits:
  - name: per-client
    match:
      prefix: /api
      method: POST
      headers: [{ name: X-Tier, value: free }, { name: user-agent, regex: ".*bot.*" }]
    key: { header: X-User }
    token_bucket: { requests_per_unit: 100, unit: minute, burst: 20 }
  - key: address
    leaky_bucket: { rate_per_second: 0.5, queue_size: 4 }
  - name: uploads
    match: { exact: /upload }
    key: identity
    leaky_bucket: { rate_per_second: 20, queue_size: 10, max_delay: 250ms }
  - key: all
    leaky_bucket: { rate_per_second: 2.5e3 }
)");
  ASSERT_TRUE(result.ok()) << all_errors(result);
  const std::vector<RateLimitConfig>& limits = only_route(result).rate_limits;
  ASSERT_EQ(limits.size(), 4u);

  EXPECT_EQ(limits[0].name, "per-client");
  EXPECT_EQ(limits[0].match.path_kind, PathMatchKind::kPrefix);
  EXPECT_EQ(limits[0].match.path, "/api");
  EXPECT_EQ(limits[0].match.method, "POST");
  ASSERT_EQ(limits[0].match.headers.size(), 2u);
  EXPECT_EQ(limits[0].match.headers[0].name, "x-tier");
  EXPECT_EQ(limits[0].match.headers[0].value, "free");
  EXPECT_TRUE(limits[0].match.headers[1].regex);
  EXPECT_EQ(limits[0].key, RateLimitConfig::Key::kHeader);
  EXPECT_EQ(limits[0].key_header, "x-user");
  EXPECT_FALSE(limits[0].leaky);
  EXPECT_EQ(limits[0].token_bucket.requests_per_unit, 100u);
  EXPECT_EQ(limits[0].token_bucket.unit, policy::RateUnit::kMinute);
  // The file's burst is on top of the rate; the bucket's is its whole capacity.
  EXPECT_EQ(limits[0].token_bucket.burst, 120u);

  // Without a match a limit counts every request of the route.
  EXPECT_TRUE(limits[1].name.empty());
  EXPECT_EQ(limits[1].match.path_kind, PathMatchKind::kPrefix);
  EXPECT_EQ(limits[1].match.path, "/");
  EXPECT_TRUE(limits[1].match.method.empty());
  EXPECT_EQ(limits[1].key, RateLimitConfig::Key::kAddress);
  EXPECT_TRUE(limits[1].leaky);
  EXPECT_EQ(limits[1].leaky_bucket.rate_per_second, 0.5);
  EXPECT_EQ(limits[1].leaky_bucket.queue, 4u);
  // A full queue of 4 drains in 4 / 0.5 s.
  EXPECT_EQ(limits[1].leaky_bucket.max_delay, Millis(8000));

  EXPECT_EQ(limits[2].match.path_kind, PathMatchKind::kExact);
  EXPECT_EQ(limits[2].match.path, "/upload");
  EXPECT_EQ(limits[2].key, RateLimitConfig::Key::kIdentity);
  EXPECT_EQ(limits[2].leaky_bucket.queue, 10u);
  EXPECT_EQ(limits[2].leaky_bucket.max_delay, Millis(250));

  EXPECT_EQ(limits[3].key, RateLimitConfig::Key::kAll);
  EXPECT_EQ(limits[3].leaky_bucket.rate_per_second, 2500.0);
  EXPECT_EQ(limits[3].leaky_bucket.queue, 0u);
  EXPECT_EQ(limits[3].leaky_bucket.max_delay, Millis(0));
}

TEST(ConfigRoutesTest, RateLimitDefaults) {
  EXPECT_TRUE(only_route(load_route("match: { prefix: / }\ncluster: web\n")).rate_limits.empty());
  EXPECT_TRUE(
      only_route(load_route("match: { prefix: / }\ncluster: web\nrate_limits: []\n")).rate_limits.empty());

  ConfigLoad result = load_route(R"(
match: { prefix: / }
cluster: web
rate_limits:
  - token_bucket: { requests_per_unit: 10 }
  - token_bucket: { requests_per_unit: 1000000000, unit: hour, burst: 4294967295 }
)");
  ASSERT_TRUE(result.ok()) << all_errors(result);
  const std::vector<RateLimitConfig>& limits = only_route(result).rate_limits;
  ASSERT_EQ(limits.size(), 2u);
  EXPECT_EQ(limits[0].key, RateLimitConfig::Key::kAll);
  EXPECT_EQ(limits[0].token_bucket.unit, policy::RateUnit::kSecond);
  // No burst: one unit's worth at once, and no more.
  EXPECT_EQ(limits[0].token_bucket.burst, 10u);
  // The capacity is capped at what the bucket holds.
  EXPECT_EQ(limits[1].token_bucket.unit, policy::RateUnit::kHour);
  EXPECT_EQ(limits[1].token_bucket.burst, 4294967295u);
}

TEST(ConfigRoutesTest, LeakyBucketDelayDefaultsToDrainingAFullQueue) {
  auto max_delay = [](const std::string& bucket) {
    ConfigLoad result = load_route(
        ("match: { prefix: / }\ncluster: web\nrate_limits: [{ leaky_bucket: " + bucket + " }]\n").c_str());
    EXPECT_TRUE(result.ok()) << all_errors(result);
    return result.ok() ? only_route(result).rate_limits.at(0).leaky_bucket.max_delay : Millis(-1);
  };
  EXPECT_EQ(max_delay("{ rate_per_second: 100, queue_size: 100 }"), Millis(1000));
  // Rounded up to the millisecond, from the interval the bucket keeps
  // (1/3 s rounded up to the nanosecond), so that the last place of the queue
  // is within the delay: 3 x 333333334 ns.
  EXPECT_EQ(max_delay("{ rate_per_second: 3, queue_size: 3 }"), Millis(1001));
  EXPECT_EQ(max_delay("{ rate_per_second: 7, queue_size: 3 }"), Millis(429));
  // At least a millisecond with a queue, at most the longest duration.
  EXPECT_EQ(max_delay("{ rate_per_second: 1000000000, queue_size: 1 }"), Millis(1));
  EXPECT_EQ(max_delay("{ rate_per_second: 0.000001, queue_size: 4294967295 }"), std::chrono::hours(8760));
}

TEST(ConfigRoutesTest, RateLimitRules) {
  auto limit_error = [](const std::string& limits) {
    return only_error(
        load_route(("match: { prefix: / }\ncluster: web\nrate_limits: " + limits + "\n").c_str()));
  };
  const std::string token = "token_bucket: { requests_per_unit: 1 }";
  EXPECT_EQ(limit_error("{ " + token + " }"), at("rate_limits") + ": expected a list");
  EXPECT_EQ(limit_error("[per-client]"), at("rate_limits[0]") + ": expected a map");
  EXPECT_EQ(limit_error("[{ nmae: a, " + token + " }]"),
            at("rate_limits[0].nmae") + ": unknown field \"nmae\" (did you mean \"name\"?)");

  // Names
  EXPECT_EQ(
      limit_error("[{ name: \"a b\", " + token + " }]"),
      at("rate_limits[0].name") + ": invalid name \"a b\": use only letters, digits, '_', '.', '-' and '/'");
  EXPECT_EQ(limit_error("[{ name: \"\", " + token + " }]"),
            at("rate_limits[0].name") + ": must not be empty");
  EXPECT_EQ(limit_error("[{ name: a, " + token + " }, { " + token + " }, { name: a, " + token + " }]"),
            at("rate_limits[2].name") + ": duplicate rate limit name \"a\"");

  // Buckets
  EXPECT_EQ(limit_error("[{ name: a }]"),
            at("rate_limits[0]") + ": needs \"token_bucket\" or \"leaky_bucket\"");
  EXPECT_EQ(limit_error("[{ " + token + ", leaky_bucket: { rate_per_second: 1 } }]"),
            at("rate_limits[0].leaky_bucket") + ": set only one of \"token_bucket\" or \"leaky_bucket\"");
}

TEST(ConfigRoutesTest, RateLimitMatchRules) {
  auto match_error = [](const std::string& match) {
    return only_error(load_route(("match: { prefix: / }\ncluster: web\nrate_limits: [{ match: " + match +
                                  ", token_bucket: { requests_per_unit: 1 } }]\n")
                                     .c_str()));
  };
  const std::string m = at("rate_limits[0].match");
  // The route match's own checks, and only path, method and headers.
  EXPECT_EQ(match_error("{ prefix: /a, exact: /b }"), m + ": set only one of \"prefix\" or \"exact\"");
  EXPECT_EQ(match_error("{ exact: a }"), m + ".exact: must start with \"/\"");
  EXPECT_EQ(match_error("{ prefix: \"/a b\" }"),
            m + ".prefix: must not contain spaces or control characters");
  EXPECT_EQ(match_error("{ method: get }"), m + ".method: unknown method \"get\" (did you mean \"GET\"?)");
  EXPECT_EQ(match_error("{ headers: [{ name: \"x y\", value: a }] }"),
            m + ".headers[0].name: invalid header name \"x y\": use letters, digits and !#$%&'*+-.^_`|~");
  EXPECT_EQ(match_error("{ headers: [{ name: x, regex: \"a**\" }] }"),
            m + ".headers[0].regex: invalid regular expression: bad repetition operator: **");
  EXPECT_EQ(match_error("{ headers: [{ name: x }] }"), m + ".headers[0]: needs \"value\" or \"regex\"");
  EXPECT_EQ(match_error("{ regex: \"/a.*\" }"), m + ".regex: unknown field \"regex\"");
  EXPECT_EQ(match_error("{ prefix: /, hosts: [a.example] }"), m + ".hosts: unknown field \"hosts\"");
  EXPECT_EQ(match_error("{ query_params: [] }"), m + ".query_params: unknown field \"query_params\"");
  EXPECT_EQ(match_error("[/a]"), m + ": expected a map");
}

TEST(ConfigRoutesTest, RateLimitKeyRules) {
  auto key_error = [](const std::string& key) {
    return only_error(load_route(("match: { prefix: / }\ncluster: web\nrate_limits: [{ key: " + key +
                                  ", token_bucket: { requests_per_unit: 1 } }]\n")
                                     .c_str()));
  };
  const std::string k = at("rate_limits[0].key");
  const std::string choices = "\"all\", \"address\", \"identity\" or { header: NAME }";
  EXPECT_EQ(key_error("adress"), k + ": unknown key \"adress\" (did you mean \"address\"?)");
  EXPECT_EQ(key_error("header"), k + ": unknown key \"header\" (expected " + choices + ")");
  EXPECT_EQ(key_error("[all]"), k + ": expected " + choices);
  EXPECT_EQ(key_error("{ header: \"x y\" }"),
            k + ".header: invalid header name \"x y\": use letters, digits and !#$%&'*+-.^_`|~");
  EXPECT_EQ(key_error("{ header: \"\" }"), k + ".header: must not be empty");
  EXPECT_EQ(key_error("{}"), k + ".header: required field is missing");
  EXPECT_EQ(key_error("{ header: x, cookie: y }"), k + ".cookie: unknown field \"cookie\"");
}

TEST(ConfigRoutesTest, TokenBucketRules) {
  auto bucket_error = [](const std::string& bucket) {
    return only_error(load_route(
        ("match: { prefix: / }\ncluster: web\nrate_limits: [{ token_bucket: " + bucket + " }]\n").c_str()));
  };
  const std::string b = at("rate_limits[0].token_bucket");
  EXPECT_EQ(bucket_error("{ unit: second }"), b + ".requests_per_unit: required field is missing");
  EXPECT_EQ(bucket_error("{ requests_per_unit: 0 }"),
            b + ".requests_per_unit: must be between 1 and 1000000000");
  EXPECT_EQ(bucket_error("{ requests_per_unit: 1000000001 }"),
            b + ".requests_per_unit: must be between 1 and 1000000000");
  EXPECT_EQ(bucket_error("{ requests_per_unit: \"10\" }"), b + ".requests_per_unit: expected an integer");
  EXPECT_EQ(bucket_error("{ requests_per_unit: 1.5 }"), b + ".requests_per_unit: expected an integer");
  EXPECT_EQ(bucket_error("{ requests_per_unit: 1, unit: seconds }"),
            b + ".unit: unknown unit \"seconds\" (did you mean \"second\"?)");
  EXPECT_EQ(bucket_error("{ requests_per_unit: 1, unit: day }"),
            b + ".unit: unknown unit \"day\" (expected \"second\", \"minute\" or \"hour\")");
  EXPECT_EQ(bucket_error("{ requests_per_unit: 1, burst: -1 }"),
            b + ".burst: must be between 0 and 4294967295");
  EXPECT_EQ(bucket_error("{ requests_per_unit: 1, burst: 4294967296 }"),
            b + ".burst: must be between 0 and 4294967295");
  EXPECT_EQ(bucket_error("{ requests_per_unit: 1, brust: 5 }"),
            b + ".brust: unknown field \"brust\" (did you mean \"burst\"?)");
  EXPECT_EQ(bucket_error("100"), b + ": expected a map");
  EXPECT_EQ(bucket_error(""), b + ".requests_per_unit: required field is missing");
}

TEST(ConfigRoutesTest, LeakyBucketRules) {
  auto bucket_error = [](const std::string& bucket) {
    return only_error(load_route(
        ("match: { prefix: / }\ncluster: web\nrate_limits: [{ leaky_bucket: " + bucket + " }]\n").c_str()));
  };
  const std::string b = at("rate_limits[0].leaky_bucket");
  const std::string range = ": must be greater than 0 and at most 1000000000";
  const std::string shape = ": expected a number, e.g. 100 or 0.5";
  EXPECT_EQ(bucket_error("{ queue_size: 1 }"), b + ".rate_per_second: required field is missing");
  for (const char* rate : {"0", "0.0", "-1", "1000000000.5", "1e10", "1e400", "-1e400", "1e-400"}) {
    EXPECT_EQ(bucket_error("{ rate_per_second: " + std::string(rate) + " }"), b + ".rate_per_second" + range)
        << rate;
  }
  for (const char* rate :
       {"fast", "\"5\"", "!!str 5", "0x10", ".5", "1.", "1e", "1e+", ".inf", "nan", "5/s"}) {
    EXPECT_EQ(bucket_error("{ rate_per_second: " + std::string(rate) + " }"), b + ".rate_per_second" + shape)
        << rate;
  }
  EXPECT_EQ(bucket_error("{ rate_per_second: 1, queue_size: -1 }"),
            b + ".queue_size: must be between 0 and 4294967295");
  EXPECT_EQ(bucket_error("{ rate_per_second: 1, queue_size: 1, max_delay: 0s }"),
            b + ".max_delay: must be greater than 0");
  EXPECT_EQ(bucket_error("{ rate_per_second: 1, queue_size: 1, max_delay: 5 }"),
            b + ".max_delay: a unit is required (ns, us, ms, s, m or h), e.g. \"10s\"");
  EXPECT_EQ(bucket_error("{ rate_per_second: 1, max_delay: 1s }"),
            b + ".max_delay: needs a \"queue_size\" greater than 0: without a queue nothing waits");
  EXPECT_EQ(bucket_error("{ rate_per_second: 1, queue_size: 0, max_delay: 1s }"),
            b + ".max_delay: needs a \"queue_size\" greater than 0: without a queue nothing waits");
  EXPECT_EQ(bucket_error("{ rate_per_second: 1, queue: 5 }"), b + ".queue: unknown field \"queue\"");
}

TEST(ConfigRoutesTest, RateLimitErrorsAllAtOnce) {
  ConfigLoad result = load_route(R"(
match: { prefix: / }
cluster: web
rate_limits:
  - name: a
    key: adress
    token_bucket: { requests_per_unit: 0, unit: minutes }
  - name: a
    leaky_bucket: { rate_per_second: 0, max_delay: 1s }
)");
  ASSERT_EQ(result.errors.size(), 6u) << all_errors(result);
  EXPECT_EQ(all_errors(result),
            "test.yaml:12:22: " + at("rate_limits[0].key") +
                ": unknown key \"adress\" (did you mean \"address\"?)\n"
                "test.yaml:13:52: " +
                at("rate_limits[0].token_bucket.requests_per_unit") +
                ": must be between 1 and 1000000000\n"
                "test.yaml:13:61: " +
                at("rate_limits[0].token_bucket.unit") +
                ": unknown unit \"minutes\" (did you mean \"minute\"?)\n"
                "test.yaml:14:23: " +
                at("rate_limits[1].name") +
                ": duplicate rate limit name \"a\"\n"
                "test.yaml:15:50: " +
                at("rate_limits[1].leaky_bucket.rate_per_second") +
                ": must be greater than 0 and at most 1000000000\n"
                "test.yaml:15:53: " +
                at("rate_limits[1].leaky_bucket.max_delay") +
                ": needs a \"queue_size\" greater than 0: without a queue nothing waits\n");
}

// ---- where the request goes

TEST(ConfigRoutesTest, WeightedBackendsWithTheirOwnHeaders) {
  ConfigLoad result = load_route(R"(
match: { prefix: / }
backends:
  - cluster: api
    weight: 90
  - cluster: shadow
    weight: 0
  - cluster: web
    request_headers: { set: { X-Version: v2 } }
    response_headers: { remove: [Server] }
)");
  ASSERT_TRUE(result.ok()) << all_errors(result);
  const RouteConfig& route = only_route(result);
  ASSERT_EQ(route.backends.size(), 3u);
  EXPECT_EQ(route.backends[0].cluster, "api");
  EXPECT_EQ(route.backends[0].cluster_index, 1u);
  EXPECT_EQ(route.backends[0].weight, 90u);
  EXPECT_EQ(route.backends[1].cluster_index, 2u);
  EXPECT_EQ(route.backends[1].weight, 0u);
  EXPECT_EQ(route.backends[2].cluster_index, 0u);
  EXPECT_EQ(route.backends[2].weight, 1u);
  EXPECT_EQ(route.backends[2].request_headers.set, (Pairs{{"x-version", "v2"}}));
  EXPECT_EQ(route.backends[2].response_headers.remove, std::vector<std::string>{"server"});
  EXPECT_FALSE(route.redirect.enabled);
}

TEST(ConfigRoutesTest, ABackendHasItsOwnRewriteMirrorsAndFault) {
  ConfigLoad result = load_route(R"(
match: { prefix: /api }
backends:
  - cluster: api
  - cluster: web
    rewrite: { hostname: V2.example, path: { prefix: /v2 } }
    mirror: [{ cluster: shadow, percent: 5 }]
    fault: { abort: { status: 503, percent: 1 } }
  - cluster: api
    weight: 0
    redirect: { scheme: https, status: 301 }
)");
  ASSERT_TRUE(result.ok()) << all_errors(result);
  const RouteConfig& route = only_route(result);
  ASSERT_EQ(route.backends.size(), 3u);
  EXPECT_TRUE(route.backends[0].only_headers());
  EXPECT_TRUE(route.backends[2].redirect.enabled);
  EXPECT_EQ(route.backends[2].redirect.scheme, "https");
  EXPECT_EQ(route.backends[2].redirect.status, 301);
  const BackendConfig& b = route.backends[1];
  EXPECT_EQ(b.rewrite.hostname, "v2.example");
  EXPECT_EQ(b.rewrite.path.kind, PathModifier::Kind::kPrefix);
  ASSERT_EQ(b.mirrors.size(), 1u);
  EXPECT_EQ(b.mirrors[0].cluster_index, 2u);
  EXPECT_EQ(std::pair(b.mirrors[0].numerator, b.mirrors[0].denominator), std::pair(5u, 100u));
  EXPECT_EQ(b.fault.abort_status, 503);
  EXPECT_EQ(b.fault.abort_per_million, 10000u);
  EXPECT_TRUE(route.rewrite.empty());
  EXPECT_TRUE(route.mirrors.empty());
}

TEST(ConfigRoutesTest, ABackendsActionsAreCheckedAsARoutes) {
  auto backend_error = [](const std::string& match, const std::string& backend) {
    return only_error(load_route(("match: " + match + "\nbackends: [" + backend + "]\n").c_str()));
  };
  EXPECT_EQ(backend_error("{ exact: /api }", "{ cluster: api, rewrite: { path: { prefix: /v2 } } }"),
            at("backends[0].rewrite.path.prefix") + ": a prefix rewrite needs a \"prefix\" match");
  EXPECT_EQ(backend_error("{ prefix: / }", "{ cluster: api, mirror: [{ cluster: nowhere }] }"),
            at("backends[0].mirror[0].cluster") + ": unknown cluster \"nowhere\"");
  EXPECT_EQ(backend_error("{ prefix: / }", "{ cluster: api, fault: { abort: { status: 99, percent: 1 } } }"),
            at("backends[0].fault.abort.status") + ": must be between 200 and 599");
  EXPECT_EQ(
      backend_error("{ prefix: / }",
                    "{ cluster: api, redirect: { hostname: a.example }, rewrite: { hostname: b.example } }"),
      at("backends[0].rewrite") + ": \"rewrite\" cannot be combined with \"redirect\"");
  EXPECT_EQ(
      backend_error("{ prefix: / }",
                    "{ cluster: api, redirect: { hostname: a.example }, mirror: [{ cluster: web }] }"),
      at("backends[0]") +
          ": a backend with a redirect answers its share: its header changes, rewrite, mirrors and fault "
          "would never act");
  EXPECT_EQ(backend_error("{ exact: /a }", "{ cluster: api, redirect: { path: { prefix: /b } } }"),
            at("backends[0].redirect.path.prefix") + ": a prefix redirect needs a \"prefix\" match");
  // More mirrors than a request may have: refused, not cut short.
  std::string many = "[";
  for (int i = 0; i < 20; ++i) many += std::string(i ? ", " : "") + "{ cluster: shadow }";
  many += "]";
  ConfigLoad result = load_route(
      ("match: { prefix: / }\nmirror: " + many + "\nbackends: [{ cluster: api, mirror: " + many + " }]\n")
          .c_str());
  EXPECT_NE(
      all_errors(result).find("a request may be mirrored 32 times at most; this route mirrors 20 and one "
                              "of its backends 20 more"),
      std::string::npos)
      << all_errors(result);
}

TEST(ConfigRoutesTest, ClusterIsOneBackendOfWeightOne) {
  ConfigLoad result = load_route("match: { prefix: / }\ncluster: api\n");
  ASSERT_TRUE(result.ok()) << all_errors(result);
  const RouteConfig& route = only_route(result);
  ASSERT_EQ(route.backends.size(), 1u);
  EXPECT_EQ(route.backends[0].cluster, "api");
  EXPECT_EQ(route.backends[0].cluster_index, 1u);
  EXPECT_EQ(route.backends[0].weight, 1u);
}

TEST(ConfigRoutesTest, BackendRules) {
  auto backend_error = [](const std::string& backends) {
    return only_error(load_route(("match: { prefix: / }\nbackends: " + backends + "\n").c_str()));
  };
  EXPECT_EQ(backend_error("[{ cluster: api, weight: 1000001 }]"),
            at("backends[0].weight") + ": must be between 0 and 1000000");
  EXPECT_EQ(backend_error("[{ cluster: api, weight: -1 }]"),
            at("backends[0].weight") + ": must be between 0 and 1000000");
  EXPECT_EQ(backend_error("[{ cluster: api, weight: \"5\" }]"),
            at("backends[0].weight") + ": expected an integer");
  EXPECT_EQ(backend_error("[{ cluster: apis }]"), at("backends[0].cluster") + ": unknown cluster \"apis\"");
  EXPECT_EQ(backend_error("[{ weight: 1 }]"), at("backends[0].cluster") + ": required field is missing");
  EXPECT_EQ(backend_error("[{ cluster: api, wieght: 1 }]"),
            at("backends[0].wieght") + ": unknown field \"wieght\" (did you mean \"weight\"?)");
  EXPECT_EQ(backend_error("[]"), at("backends") + ": must list at least one backend");
  EXPECT_EQ(backend_error("api"), at("backends") + ": expected a list");
}

TEST(ConfigRoutesTest, ClusterBackendsAndRedirectExcludeEachOther) {
  ConfigLoad result = load_route("match: { prefix: / }\ncluster: web\nbackends: [{ cluster: api }]\n");
  expect_single_error(result, 10, 13, at("backends"),
                      "set only one of \"cluster\", \"backends\" or \"redirect\"");
  EXPECT_EQ(only_error(load_route("match: { prefix: / }\nredirect: { scheme: https }\ncluster: web\n")),
            at("redirect") + ": set only one of \"cluster\", \"backends\" or \"redirect\"");
  expect_single_error(load_route("match: { prefix: / }\ntimeout: 1s\n"), 8, 13, kRoute,
                      "needs \"cluster\", \"backends\" or \"redirect\"");
}

// ---- header changes

TEST(ConfigRoutesTest, HeaderModifiers) {
  ConfigLoad result = load_route(R"(
match: { prefix: / }
cluster: web
request_headers:
  set: { X-Env: prod, x-count: 5 }
  add: { Via: trellis }
  remove: [Cookie, X-Debug]
response_headers:
  set: { Cache-Control: "no-store" }
)");
  ASSERT_TRUE(result.ok()) << all_errors(result);
  const RouteConfig& route = only_route(result);
  EXPECT_EQ(route.request_headers.set, (Pairs{{"x-env", "prod"}, {"x-count", "5"}}));
  EXPECT_EQ(route.request_headers.add, (Pairs{{"via", "trellis"}}));
  EXPECT_EQ(route.request_headers.remove, (std::vector<std::string>{"cookie", "x-debug"}));
  EXPECT_EQ(route.response_headers.set, (Pairs{{"cache-control", "no-store"}}));
  EXPECT_TRUE(route.response_headers.add.empty());
}

TEST(ConfigRoutesTest, HeaderModifierRules) {
  auto modifier_error = [](const std::string& modifier) {
    return only_error(
        load_route(("match: { prefix: / }\ncluster: web\nrequest_headers: " + modifier + "\n").c_str()));
  };
  EXPECT_EQ(modifier_error("{ set: { \"x y\": a } }"),
            at("request_headers.set.x y") +
                ": invalid header name \"x y\": use letters, digits and !#$%&'*+-.^_`|~");
  EXPECT_EQ(modifier_error("{ set: { x-a: \"a\\nb\" } }"),
            at("request_headers.set.x-a") + ": must not contain CR, LF or NUL");
  EXPECT_EQ(modifier_error("{ add: { x-a: \"a\\0b\" } }"),
            at("request_headers.add.x-a") + ": must not contain CR, LF or NUL");
  EXPECT_EQ(modifier_error("{ set: { Content-Length: 5 } }"),
            at("request_headers.set.Content-Length") +
                ": \"content-length\" is managed by the proxy and cannot be modified");
  EXPECT_EQ(modifier_error("{ remove: [Transfer-Encoding] }"),
            at("request_headers.remove[0]") +
                ": \"transfer-encoding\" is managed by the proxy and cannot be modified");
  EXPECT_EQ(modifier_error("{ set: { X-A: 1, x-a: 2 } }"),
            at("request_headers.set.x-a") + ": duplicate header \"x-a\"");
  EXPECT_EQ(modifier_error("{ set: { x-a: 1 }, remove: [X-A] }"),
            at("request_headers.remove[0]") + ": \"x-a\" is both removed and set or added");
  EXPECT_EQ(modifier_error("{ set: [x-a] }"), at("request_headers.set") + ": expected a map of headers");
  EXPECT_EQ(modifier_error("{ set: { x-a: [1] } }"),
            at("request_headers.set") + ": headers are name: value pairs of strings");
  EXPECT_EQ(modifier_error("{ sett: {} }"),
            at("request_headers.sett") + ": unknown field \"sett\" (did you mean \"set\"?)");
}

// ---- redirects and rewrites

TEST(ConfigRoutesTest, Redirect) {
  ConfigLoad result = load_route(R"(
match: { prefix: /old }
redirect:
  scheme: https
  hostname: New.Example.com
  port: 8443
  path: { prefix: /new }
  status: 308
)");
  ASSERT_TRUE(result.ok()) << all_errors(result);
  const RouteConfig& route = only_route(result);
  EXPECT_TRUE(route.redirect.enabled);
  EXPECT_TRUE(route.backends.empty());
  EXPECT_EQ(route.redirect.scheme, "https");
  EXPECT_EQ(route.redirect.hostname, "new.example.com");
  EXPECT_EQ(route.redirect.port, 8443);
  EXPECT_EQ(route.redirect.path.kind, PathModifier::Kind::kPrefix);
  EXPECT_EQ(route.redirect.path.value, "/new");
  EXPECT_EQ(route.redirect.status, 308);

  ConfigLoad plain = load_route("match: { exact: /a }\nredirect: { path: { full: /b } }\n");
  ASSERT_TRUE(plain.ok()) << all_errors(plain);
  EXPECT_EQ(only_route(plain).redirect.status, 302);
  EXPECT_TRUE(only_route(plain).redirect.scheme.empty());
  EXPECT_EQ(only_route(plain).redirect.port, 0);
  EXPECT_EQ(only_route(plain).redirect.path.kind, PathModifier::Kind::kFull);
}

TEST(ConfigRoutesTest, RedirectRules) {
  auto redirect_error = [](const std::string& match, const std::string& redirect) {
    return only_error(load_route(("match: " + match + "\nredirect: " + redirect + "\n").c_str()));
  };
  const std::string prefix = "{ prefix: / }";
  EXPECT_EQ(redirect_error(prefix, "{ status: 200 }"),
            at("redirect.status") + ": must be 301, 302, 303, 307 or 308");
  EXPECT_EQ(redirect_error(prefix, "{ status: moved }"), at("redirect.status") + ": expected an integer");
  EXPECT_EQ(redirect_error(prefix, "{ scheme: htps }"),
            at("redirect.scheme") + ": unknown scheme \"htps\" (did you mean \"https\"?)");
  EXPECT_EQ(redirect_error(prefix, "{ scheme: gopher }"),
            at("redirect.scheme") + ": unknown scheme \"gopher\" (expected \"http\" or \"https\")");
  EXPECT_EQ(redirect_error(prefix, "{ port: 0 }"), at("redirect.port") + ": must be between 1 and 65535");
  EXPECT_EQ(redirect_error(prefix, "{ hostname: \"a.example:80\" }"),
            at("redirect.hostname") + ": invalid host name \"a.example:80\" (no port, no wildcard)");
  EXPECT_EQ(redirect_error(prefix, "{ path: { full: /a, prefix: /b } }"),
            at("redirect.path") + ": set only one of \"full\" or \"prefix\"");
  EXPECT_EQ(redirect_error(prefix, "{ path: {} }"), at("redirect.path") + ": needs \"full\" or \"prefix\"");
  EXPECT_EQ(redirect_error(prefix, "{ path: { full: a } }"),
            at("redirect.path.full") + ": must start with \"/\"");
  EXPECT_EQ(redirect_error("{ exact: /a }", "{ path: { prefix: /b } }"),
            at("redirect.path.prefix") + ": a prefix redirect needs a \"prefix\" match");
}

TEST(ConfigRoutesTest, Rewrite) {
  ConfigLoad result = load_route(R"(
match: { prefix: /api }
cluster: api
rewrite: { hostname: Internal.example, path: { prefix: /v2 } }
)");
  ASSERT_TRUE(result.ok()) << all_errors(result);
  const RewriteConfig& rewrite = only_route(result).rewrite;
  EXPECT_EQ(rewrite.hostname, "internal.example");
  EXPECT_EQ(rewrite.path.kind, PathModifier::Kind::kPrefix);
  EXPECT_EQ(rewrite.path.value, "/v2");

  // A whole-path rewrite goes with any match.
  ConfigLoad full =
      load_route("match: { regex: \"/a/.*\" }\ncluster: api\nrewrite: { path: { full: /b } }\n");
  ASSERT_TRUE(full.ok()) << all_errors(full);
  EXPECT_EQ(only_route(full).rewrite.path.kind, PathModifier::Kind::kFull);
}

TEST(ConfigRoutesTest, RewriteRules) {
  ConfigLoad exact = load_route("match: { exact: /api }\ncluster: api\nrewrite: { path: { prefix: /v2 } }\n");
  expect_single_error(exact, 10, 40, at("rewrite.path.prefix"), "a prefix rewrite needs a \"prefix\" match");
  EXPECT_EQ(only_error(load_route(
                "match: { regex: \"/api.*\" }\ncluster: api\nrewrite: { path: { prefix: /v2 } }\n")),
            at("rewrite.path.prefix") + ": a prefix rewrite needs a \"prefix\" match");
  EXPECT_EQ(only_error(load_route("match: { prefix: / }\ncluster: api\nrewrite: {}\n")),
            at("rewrite") + ": needs \"hostname\" or \"path\"");
  EXPECT_EQ(
      only_error(load_route("match: { prefix: / }\nredirect: { scheme: https }\nrewrite: { hostname: a }\n")),
      at("rewrite") + ": \"rewrite\" cannot be combined with \"redirect\"");
}

// ---- mirrors and faults

TEST(ConfigRoutesTest, MirrorPercentagesStayExact) {
  ConfigLoad result = load_route(R"(
match: { prefix: / }
cluster: web
mirror:
  - cluster: shadow
  - cluster: api
    percent: 0.5
  - cluster: api
    percent: 12.25
  - cluster: shadow
    percent: 0
)");
  ASSERT_TRUE(result.ok()) << all_errors(result);
  const std::vector<MirrorConfig>& mirrors = only_route(result).mirrors;
  ASSERT_EQ(mirrors.size(), 4u);
  EXPECT_EQ(mirrors[0].cluster_index, 2u);
  EXPECT_EQ(std::pair(mirrors[0].numerator, mirrors[0].denominator), std::pair(100u, 100u));
  EXPECT_EQ(mirrors[1].cluster, "api");
  EXPECT_EQ(mirrors[1].cluster_index, 1u);
  EXPECT_EQ(std::pair(mirrors[1].numerator, mirrors[1].denominator), std::pair(5u, 1000u));
  EXPECT_EQ(std::pair(mirrors[2].numerator, mirrors[2].denominator), std::pair(1225u, 10000u));
  EXPECT_EQ(mirrors[3].numerator, 0u);
}

TEST(ConfigRoutesTest, MirrorRules) {
  auto mirror_error = [](const std::string& mirror) {
    return only_error(load_route(("match: { prefix: / }\ncluster: web\nmirror: " + mirror + "\n").c_str()));
  };
  EXPECT_EQ(mirror_error("[{ cluster: shadow, percent: 100.5 }]"),
            at("mirror[0].percent") + ": must be between 0 and 100");
  EXPECT_EQ(mirror_error("[{ cluster: shadow, percent: -1 }]"),
            at("mirror[0].percent") + ": must be between 0 and 100");
  EXPECT_EQ(mirror_error("[{ cluster: shadow, percent: 0.00001 }]"),
            at("mirror[0].percent") + ": must have at most 4 decimals");
  EXPECT_EQ(mirror_error("[{ cluster: shadow, percent: \"50\" }]"),
            at("mirror[0].percent") + ": expected a number from 0 to 100, e.g. 25 or 0.5");
  EXPECT_EQ(mirror_error("[{ cluster: shadow, percent: 1e2 }]"),
            at("mirror[0].percent") + ": expected a number from 0 to 100, e.g. 25 or 0.5");
  EXPECT_EQ(mirror_error("[{ cluster: shadows }]"),
            at("mirror[0].cluster") + ": unknown cluster \"shadows\"");
  EXPECT_EQ(mirror_error("[{ percent: 5 }]"), at("mirror[0].cluster") + ": required field is missing");
  EXPECT_EQ(mirror_error("{ cluster: shadow }"), at("mirror") + ": expected a list");
}

TEST(ConfigRoutesTest, FaultsInPartsPerMillion) {
  ConfigLoad result = load_route(R"(
match: { prefix: / }
cluster: web
fault:
  abort: { status: 503, percent: 10 }
  delay: { duration: 1.5s, percent: 0.5 }
)");
  ASSERT_TRUE(result.ok()) << all_errors(result);
  const FaultConfig& fault = only_route(result).fault;
  EXPECT_EQ(fault.abort_status, 503);
  EXPECT_EQ(fault.abort_per_million, 100000u);
  EXPECT_EQ(fault.delay, Millis(1500));
  EXPECT_EQ(fault.delay_per_million, 5000u);
}

TEST(ConfigRoutesTest, FaultRules) {
  auto fault_error = [](const std::string& fault) {
    return only_error(load_route(("match: { prefix: / }\ncluster: web\nfault: " + fault + "\n").c_str()));
  };
  EXPECT_EQ(fault_error("{ abort: { status: 600, percent: 1 } }"),
            at("fault.abort.status") + ": must be between 200 and 599");
  EXPECT_EQ(fault_error("{ abort: { status: 503 } }"),
            at("fault.abort.percent") + ": required field is missing");
  EXPECT_EQ(fault_error("{ abort: { percent: 5 } }"),
            at("fault.abort.status") + ": required field is missing");
  EXPECT_EQ(fault_error("{ delay: { duration: 0s, percent: 5 } }"),
            at("fault.delay.duration") + ": must be greater than 0");
  EXPECT_EQ(fault_error("{ delay: { duration: 1s, percent: 101 } }"),
            at("fault.delay.percent") + ": must be between 0 and 100");
  EXPECT_EQ(fault_error("{}"), at("fault") + ": needs \"abort\" or \"delay\"");
  EXPECT_EQ(fault_error("{ abrot: {} }"),
            "(2 errors)\ntest.yaml:10:20: " + at("fault") +
                ": needs \"abort\" or \"delay\"\ntest.yaml:10:22: " + at("fault.abrot") +
                ": unknown field \"abrot\" (did you mean \"abort\"?)\n");
}

// ---- timeouts

TEST(ConfigRoutesTest, PerTryTimeout) {
  ConfigLoad result = load_route("match: { prefix: / }\ncluster: web\nper_try_timeout: 250ms\n");
  ASSERT_TRUE(result.ok()) << all_errors(result);
  EXPECT_EQ(only_route(result).per_try_timeout, Millis(250));
  EXPECT_EQ(only_route(load_route("match: { prefix: / }\ncluster: web\n")).per_try_timeout, Millis(0));
  EXPECT_EQ(only_error(load_route("match: { prefix: / }\ncluster: web\nper_try_timeout: 5\n")),
            at("per_try_timeout") + ": a unit is required (ns, us, ms, s, m or h), e.g. \"10s\"");
}

}  // namespace
}  // namespace trellis::proxy
