#include "policy/route_table.h"

#include <algorithm>

#include <re2/re2.h>

namespace trellis::policy {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
  return out;
}

bool iends_with(std::string_view s, std::string_view lower_suffix) {
  if (s.size() < lower_suffix.size()) return false;
  s = s.substr(s.size() - lower_suffix.size());
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
    if (c != lower_suffix[i]) return false;
  }
  return true;
}

bool istarts_with(std::string_view s, std::string_view lower_prefix) {
  if (s.size() < lower_prefix.size()) return false;
  for (size_t i = 0; i < lower_prefix.size(); ++i) {
    char c = s[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
    if (c != lower_prefix[i]) return false;
  }
  return true;
}

}  // namespace

struct RouteTable::CompiledRoute {
  RouteMatch match;
};

RouteTable::RouteTable() = default;
RouteTable::~RouteTable() = default;
RouteTable::RouteTable(RouteTable&&) noexcept = default;
RouteTable& RouteTable::operator=(RouteTable&&) noexcept = default;

Regex::~Regex() = default;

Result<std::shared_ptr<const Regex>> Regex::compile(const std::string& pattern) {
  RE2::Options options;
  options.set_log_errors(false);
  std::shared_ptr<Regex> out(new Regex());
  out->re_ = std::make_unique<re2::RE2>(pattern, options);
  if (!out->re_->ok()) return make_error(out->re_->error());
  return std::shared_ptr<const Regex>(std::move(out));
}

bool Regex::full_match(std::string_view text) const { return RE2::FullMatch(text, *re_); }

Result<size_t> RouteTable::add_virtual_host(const std::vector<std::string>& domains,
                                            const std::vector<RouteMatch>& routes) {
  size_t index = routes_.size();
  std::vector<CompiledRoute> compiled;
  for (const RouteMatch& m : routes) compiled.push_back({m});
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
  auto longest_first = [](const Wildcard& a, const Wildcard& b) {
    return a.fixed.size() > b.fixed.size();
  };
  std::stable_sort(suffix_.begin(), suffix_.end(), longest_first);
  std::stable_sort(prefix_.begin(), prefix_.end(), longest_first);
  return index;
}

bool RouteTable::match_host(std::string_view host, size_t& vhost) const {
  // Exact lookups need a lower-case key; hosts are short, so a stack copy.
  char buf[256];
  auto try_exact = [&](std::string_view h) {
    if (exact_.empty() || h.size() > sizeof(buf)) return false;
    for (size_t i = 0; i < h.size(); ++i) {
      char c = h[i];
      buf[i] = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
    }
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
  std::string_view without_port = host;
  if (size_t colon = host.rfind(':'); colon != std::string_view::npos &&
                                      host.find(']', colon) == std::string_view::npos) {
    without_port = host.substr(0, colon);
  }
  if (try_exact(host) || (without_port.size() != host.size() && try_exact(without_port))) return true;
  if (try_wildcards(host) || (without_port.size() != host.size() && try_wildcards(without_port)))
    return true;
  if (any_ != SIZE_MAX) {
    vhost = any_;
    return true;
  }
  return false;
}

bool RouteTable::path_prefix_matches(std::string_view prefix, std::string_view path) {
  if (path.size() < prefix.size() || path.compare(0, prefix.size(), prefix) != 0) return false;
  if (path.size() == prefix.size() || prefix.back() == '/') return true;
  return path[prefix.size()] == '/';
}

bool RouteTable::match(const RequestView& request, RouteRef& out) const {
  size_t vhost;
  if (!match_host(request.authority, vhost)) return false;
  std::string_view path = request.path;
  if (size_t q = path.find('?'); q != std::string_view::npos) path = path.substr(0, q);
  const auto& routes = routes_[vhost];
  for (size_t i = 0; i < routes.size(); ++i) {
    const RouteMatch& m = routes[i].match;
    bool ok = m.path_kind == PathMatchKind::kExact ? path == m.path : path_prefix_matches(m.path, path);
    if (ok) {
      out = {vhost, i};
      return true;
    }
  }
  return false;
}

}  // namespace trellis::policy
