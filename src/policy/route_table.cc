// Route selection: virtual host by Host, then the first route whose conditions
// all hold. The match path reads views only and never allocates.
#include "policy/route_table.h"

#include <re2/re2.h>

#include <algorithm>
#include <optional>
#include <string>
#include <utility>

namespace trellis::policy {
namespace {

char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = ascii_lower(c);
  return out;
}

bool iequals(std::string_view s, std::string_view lower_other) {
  if (s.size() != lower_other.size()) return false;
  for (size_t i = 0; i < s.size(); ++i)
    if (ascii_lower(s[i]) != lower_other[i]) return false;
  return true;
}

bool iends_with(std::string_view s, std::string_view lower_suffix) {
  return s.size() >= lower_suffix.size() && iequals(s.substr(s.size() - lower_suffix.size()), lower_suffix);
}

bool istarts_with(std::string_view s, std::string_view lower_prefix) {
  return s.size() >= lower_prefix.size() && iequals(s.substr(0, lower_prefix.size()), lower_prefix);
}

// "host:port" -> "host"; "[::1]:8080" -> "[::1]"; a bare "[::1]" is left whole
// (its colons are inside the brackets).
std::string_view strip_port(std::string_view authority) {
  size_t colon = authority.rfind(':');
  if (colon == std::string_view::npos || authority.find(']', colon) != std::string_view::npos)
    return authority;
  return authority.substr(0, colon);
}

std::pair<std::string_view, std::string_view> split_query(std::string_view path) {
  size_t q = path.find('?');
  if (q == std::string_view::npos) return {path, {}};
  return {path.substr(0, q), path.substr(q + 1)};
}

}  // namespace

// --- Regex -----------------------------------------------------------------

Regex::~Regex() = default;

Result<std::shared_ptr<const Regex>> Regex::compile(const std::string& pattern) {
  RE2::Options options;
  // The reason goes back to the caller in the Result; RE2 must not also log it.
  options.set_log_errors(false);
  auto re = std::make_unique<RE2>(pattern, options);
  if (!re->ok()) return make_error(re->error());
  std::shared_ptr<Regex> regex(new Regex());
  regex->re_ = std::move(re);
  return std::shared_ptr<const Regex>(std::move(regex));
}

bool Regex::full_match(std::string_view text) const {
  return RE2::FullMatch(re2::StringPiece(text.data(), text.size()), *re_);
}

// --- compiled routes -------------------------------------------------------

struct RouteTable::CompiledRoute {
  struct Value {
    std::string name;  // headers: lower case
    std::string value;
    std::shared_ptr<const Regex> regex;  // set when the value is a regular expression

    bool matches(std::string_view v) const { return regex ? regex->full_match(v) : v == value; }
  };

  PathMatchKind path_kind = PathMatchKind::kPrefix;
  std::string path;
  std::shared_ptr<const Regex> path_regex;
  std::string method;
  std::vector<Value> headers;
  std::vector<Value> query_params;
  std::vector<std::string> hosts;  // lower case; "*.x" kept as ".x" (a suffix)

  bool path_matches(std::string_view path_without_query) const;
  bool host_matches(std::string_view host) const;
  bool headers_match(const std::vector<HeaderField>* fields) const;
  bool query_matches(std::string_view query) const;
};

bool RouteTable::CompiledRoute::path_matches(std::string_view p) const {
  switch (path_kind) {
    case PathMatchKind::kExact:
      return p == path;
    case PathMatchKind::kRegex:
      return path_regex->full_match(p);
    case PathMatchKind::kPrefix:
      break;
  }
  return path_prefix_matches(path, p);
}

bool RouteTable::CompiledRoute::host_matches(std::string_view host) const {
  if (hosts.empty()) return true;
  for (const std::string& h : hosts) {
    // A suffix needs at least one more character: "*.example" is not "example"
    // and not ".example" either.
    if (h.front() == '.' ? host.size() > h.size() && iends_with(host, h) : iequals(host, h)) return true;
  }
  return false;
}

bool RouteTable::CompiledRoute::headers_match(const std::vector<HeaderField>* fields) const {
  for (const Value& want : headers) {
    bool found = false;
    if (fields != nullptr) {
      for (const HeaderField& f : *fields) {
        if (iequals(f.name, want.name) && want.matches(f.value)) {
          found = true;
          break;
        }
      }
    }
    if (!found) return false;
  }
  return true;
}

bool RouteTable::CompiledRoute::query_matches(std::string_view query) const {
  for (const Value& want : query_params) {
    bool found = false;
    std::string_view rest = query;
    while (!found && !rest.empty()) {
      size_t amp = rest.find('&');
      std::string_view param = rest.substr(0, amp);
      rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
      size_t eq = param.find('=');
      std::string_view name = param.substr(0, eq);
      if (name != want.name) continue;
      // Only the first parameter of that name counts: a later duplicate must
      // not let a request pick the route it wants.
      std::string_view value = eq == std::string_view::npos ? std::string_view() : param.substr(eq + 1);
      if (!want.matches(value)) return false;
      found = true;
    }
    if (!found) return false;
  }
  return true;
}

// --- RouteTable ------------------------------------------------------------

RouteTable::RouteTable() = default;
RouteTable::~RouteTable() = default;
RouteTable::RouteTable(RouteTable&&) noexcept = default;
RouteTable& RouteTable::operator=(RouteTable&&) noexcept = default;

Result<size_t> RouteTable::add_virtual_host(const std::vector<std::string>& domains,
                                            const std::vector<RouteMatch>& routes) {
  // Compile everything first so that a bad expression leaves the table as it was.
  std::vector<CompiledRoute> compiled;
  compiled.reserve(routes.size());
  auto compile_values = [](const std::vector<ValueMatch>& in, bool lower_names, const std::string& where,
                           std::vector<CompiledRoute::Value>& out) -> std::optional<Error> {
    for (size_t j = 0; j < in.size(); ++j) {
      CompiledRoute::Value v{lower_names ? lower(in[j].name) : in[j].name, in[j].value, nullptr};
      if (in[j].regex) {
        auto re = Regex::compile(in[j].value);
        if (!re) return make_error(where + "[" + std::to_string(j) + "].value: " + re.error().message);
        v.regex = std::move(*re);
      }
      out.push_back(std::move(v));
    }
    return std::nullopt;
  };
  for (size_t i = 0; i < routes.size(); ++i) {
    const RouteMatch& m = routes[i];
    const std::string route = "routes[" + std::to_string(i) + "]";
    CompiledRoute c;
    c.path_kind = m.path_kind;
    c.path = m.path;
    if (m.path_kind == PathMatchKind::kRegex) {
      auto re = Regex::compile(m.path);
      if (!re) return make_error(route + ".path: " + re.error().message);
      c.path_regex = std::move(*re);
    }
    c.method = m.method;
    if (auto err = compile_values(m.headers, true, route + ".headers", c.headers)) return std::move(*err);
    if (auto err = compile_values(m.query_params, false, route + ".query_params", c.query_params))
      return std::move(*err);
    for (const std::string& h : m.hosts) {
      if (h.empty()) continue;
      c.hosts.push_back(h.size() > 1 && h[0] == '*' && h[1] == '.' ? lower(h.substr(1)) : lower(h));
    }
    compiled.push_back(std::move(c));
  }

  size_t index = routes_.size();
  routes_.push_back(std::move(compiled));
  for (const std::string& raw : domains) {
    std::string d = lower(raw);
    if (d == "*") {
      if (any_ == SIZE_MAX) any_ = index;
    } else if (d.size() > 1 && d.front() == '*') {
      suffix_.push_back({d.substr(1), index});
    } else if (d.size() > 1 && d.back() == '*') {
      prefix_.push_back({d.substr(0, d.size() - 1), index});
    } else {
      exact_.emplace(d, index);
    }
  }
  auto longest_first = [](const Wildcard& a, const Wildcard& b) { return a.fixed.size() > b.fixed.size(); };
  std::stable_sort(suffix_.begin(), suffix_.end(), longest_first);
  std::stable_sort(prefix_.begin(), prefix_.end(), longest_first);
  return index;
}

bool RouteTable::match_host(std::string_view host, size_t& vhost) const {
  // Exact lookups need a lower-case key; hosts are short, so a stack copy.
  char buf[256];
  auto try_exact = [&](std::string_view h) {
    if (exact_.empty() || h.size() > sizeof(buf)) return false;
    for (size_t i = 0; i < h.size(); ++i) buf[i] = ascii_lower(h[i]);
    auto it = exact_.find(std::string_view(buf, h.size()));
    if (it == exact_.end()) return false;
    vhost = it->second;
    return true;
  };
  auto try_wildcards = [&](std::string_view h) {
    for (const Wildcard& w : suffix_) {
      if (h.size() > w.fixed.size() && iends_with(h, w.fixed)) {
        vhost = w.vhost;
        return true;
      }
    }
    for (const Wildcard& w : prefix_) {
      if (h.size() > w.fixed.size() && istarts_with(h, w.fixed)) {
        vhost = w.vhost;
        return true;
      }
    }
    return false;
  };
  std::string_view without_port = strip_port(host);
  bool has_port = without_port.size() != host.size();
  if (try_exact(host) || (has_port && try_exact(without_port))) return true;
  if (try_wildcards(host) || (has_port && try_wildcards(without_port))) return true;
  if (any_ != SIZE_MAX) {
    vhost = any_;
    return true;
  }
  return false;
}

bool RouteTable::path_prefix_matches(std::string_view prefix, std::string_view path) {
  if (prefix.empty()) return true;
  if (path.size() < prefix.size() || path.compare(0, prefix.size(), prefix) != 0) return false;
  if (path.size() == prefix.size() || prefix.back() == '/') return true;
  return path[prefix.size()] == '/';
}

bool RouteTable::match(const RequestView& request, RouteRef& out) const {
  size_t vhost;
  if (!match_host(request.authority, vhost)) return false;
  auto [path, query] = split_query(request.path);
  std::string_view host = strip_port(request.authority);
  const auto& routes = routes_[vhost];
  for (size_t i = 0; i < routes.size(); ++i) {
    const CompiledRoute& r = routes[i];
    // Cheapest conditions first; regular expressions last.
    if (!r.method.empty() && r.method != request.method) continue;
    if (!r.host_matches(host)) continue;
    if (!r.path_matches(path)) continue;
    if (!r.headers_match(request.headers)) continue;
    if (!r.query_matches(query)) continue;
    out = {vhost, i};
    return true;
  }
  return false;
}

}  // namespace trellis::policy
