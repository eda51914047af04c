#include "control/rate_limit_translation.h"

#include <algorithm>
#include <vector>

#include "control/resources/checker.h"

namespace trellis::control {
namespace {

void fill_match(const Json& match, v1::RateLimit& out) {
  if (const Json* path = map_at(match, "path")) {
    out.set_has_path(true);
    out.set_path_kind(string_at(*path, "type", "PathPrefix") == "Exact" ? v1::Route::EXACT
                                                                        : v1::Route::PREFIX);
    out.set_path(string_at(*path, "value", "/"));
  }
  out.set_method(string_at(match, "method"));
  for (const Json& h : list_at(match, "headers")) {
    v1::ValueMatch* v = out.add_headers();
    v->set_name(ascii_lower(string_at(h, "name")));  // header names are compared without case
    v->set_regex(string_at(h, "type") == "RegularExpression");
    v->set_value(string_at(h, "value"));
  }
}

void fill_key(const Json& key, v1::RateLimit& out) {
  std::string source = string_at(key, "source");
  if (source == "Address") {
    out.set_key(v1::RateLimit::ADDRESS);
  } else if (source == "Identity") {
    out.set_key(v1::RateLimit::IDENTITY);
  } else if (key.contains("header")) {
    out.set_key(v1::RateLimit::HEADER);
    out.set_key_header(ascii_lower(string_at(key, "header")));
  }
}

v1::TokenBucket::Unit token_unit(const std::string& unit) {
  if (unit == "Minute") return v1::TokenBucket::MINUTE;
  if (unit == "Hour") return v1::TokenBucket::HOUR;
  return v1::TokenBucket::SECOND;
}

v1::RateLimit translate_limit(const Json& limit) {
  v1::RateLimit out;
  out.set_name(string_at(limit, "name"));
  if (const Json* match = map_at(limit, "match")) fill_match(*match, out);
  if (const Json* key = map_at(limit, "key")) fill_key(*key, out);
  if (const Json* token = map_at(limit, "tokenBucket")) {
    v1::TokenBucket& t = *out.mutable_token_bucket();
    t.set_requests_per_unit(uint_at(*token, "requestsPerUnit", 0));
    t.set_unit(token_unit(string_at(*token, "unit")));
    t.set_burst(uint_at(*token, "burst", 0));
  } else if (const Json* leaky = map_at(limit, "leakyBucket")) {
    v1::LeakyBucket& l = *out.mutable_leaky_bucket();
    l.set_rate_per_second(number_at(*leaky, "ratePerSecond", 0));
    l.set_queue_size(uint_at(*leaky, "queueSize", 0));
    // Left out: 0, which the proxy reads as the time to drain a full queue.
    l.set_max_delay_ms(duration_at(*leaky, "maxDelay", 0));
  }
  return out;
}

}  // namespace

void add_rate_limits(const MeshView& mesh, std::string_view target_kind, const std::string& namespace_,
                     const std::string& target_name, google::protobuf::RepeatedPtrField<v1::RateLimit>& out) {
  std::vector<const Resource*> policies;
  for (const Resource& p : mesh.rate_limit_policies) {
    if (p.namespace_ != namespace_) continue;
    const Json* target = map_at(p.spec, "targetRef");
    if (target == nullptr || string_at(*target, "kind") != target_kind) continue;
    if (string_at(*target, "name") == target_name) policies.push_back(&p);
  }
  // Names are unique in a namespace: a fixed order whatever the store's.
  std::sort(policies.begin(), policies.end(),
            [](const Resource* a, const Resource* b) { return a->name < b->name; });
  for (const Resource* p : policies) {
    for (const Json& limit : list_at(p->spec, "limits")) *out.Add() = translate_limit(limit);
  }
}

}  // namespace trellis::control
