#include "proxy/http/route_actions.h"

#include <algorithm>
#include <cstdio>

namespace trellis::proxy {

void apply_request_modifier(const HeaderModifier& modifier, http::RequestHeadersCopy& request) {
  for (const auto& [name, value] : modifier.set) request.set(name, value);
  for (const auto& [name, value] : modifier.add) request.add(name, value);
  for (const std::string& name : modifier.remove) request.remove(name);
}

void apply_response_modifier(const HeaderModifier& modifier, http::ResponseHeaders& response) {
  http::HeaderList& h = response.headers;
  for (const auto& field : modifier.set) {
    std::erase_if(h, [&](const http::Header& f) { return http::iequals(f.name, field.first); });
    h.push_back({field.first, field.second});
  }
  for (const auto& [name, value] : modifier.add) h.push_back({name, value});
  for (const std::string& name : modifier.remove)
    std::erase_if(h, [&](const http::Header& f) { return http::iequals(f.name, name); });
}

void rewrite_path(const PathModifier& modifier, std::string_view matched_prefix, std::string_view path,
                  std::string& out) {
  std::string_view query;
  if (size_t q = path.find('?'); q != std::string_view::npos) {
    query = path.substr(q);
    path = path.substr(0, q);
  }
  out.clear();
  switch (modifier.kind) {
    case PathModifier::Kind::kNone:
      out += path;
      break;
    case PathModifier::Kind::kFull:
      out += modifier.value;
      break;
    case PathModifier::Kind::kPrefix: {
      // The route matched this prefix by whole segments; a trailing '/' of
      // the prefix is part of what is replaced.
      std::string_view prefix = matched_prefix;
      if (prefix.size() > 1 && prefix.back() == '/') prefix.remove_suffix(1);
      std::string_view rest = path.size() >= prefix.size() ? path.substr(prefix.size()) : std::string_view{};
      if (prefix == "/") rest = path;
      std::string_view replacement = modifier.value;
      if (!replacement.empty() && replacement.back() == '/' && !rest.empty() && rest.front() == '/')
        replacement.remove_suffix(1);
      out += replacement;
      if (!rest.empty() && rest.front() != '/' && (out.empty() || out.back() != '/')) out += '/';
      out += rest;
      if (out.empty()) out = "/";
      break;
    }
  }
  out += query;
}

void redirect_location(const RedirectConfig& redirect, std::string_view matched_prefix,
                       const http::RequestHeaders& request, std::string& out) {
  std::string_view request_scheme = request.scheme.empty() ? "http" : request.scheme;
  std::string_view scheme = redirect.scheme.empty() ? request_scheme : std::string_view(redirect.scheme);
  // The request's host and port, from its authority ("[v6]:port" aware).
  std::string_view authority = request.authority;
  std::string_view host = authority;
  std::string_view port;
  if (size_t colon = authority.rfind(':');
      colon != std::string_view::npos && authority.find(']', colon) == std::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  if (!redirect.hostname.empty()) host = redirect.hostname;
  char port_buf[8];
  if (redirect.port != 0) {
    int n = std::snprintf(port_buf, sizeof(port_buf), "%u", static_cast<unsigned>(redirect.port));
    port = std::string_view(port_buf, static_cast<size_t>(n));
  } else if (scheme != request_scheme) {
    port = {};  // the old port belongs to the old scheme
  }
  if ((scheme == "http" && port == "80") || (scheme == "https" && port == "443")) port = {};
  std::string path;
  rewrite_path(redirect.path, matched_prefix, request.path, path);
  out.clear();
  out += scheme;
  out += "://";
  out += host;
  if (!port.empty()) {
    out += ':';
    out += port;
  }
  out += path;
}

std::string_view find_cookie(const http::HeaderList& headers, std::string_view name) {
  for (const http::Header& h : headers) {
    if (!http::iequals(h.name, "cookie")) continue;
    std::string_view rest = h.value;
    while (!rest.empty()) {
      size_t semi = rest.find(';');
      std::string_view pair = rest.substr(0, semi);
      rest = semi == std::string_view::npos ? std::string_view{} : rest.substr(semi + 1);
      while (!pair.empty() && (pair.front() == ' ' || pair.front() == '\t')) pair.remove_prefix(1);
      size_t eq = pair.find('=');
      if (eq == std::string_view::npos || pair.substr(0, eq) != name) continue;
      std::string_view value = pair.substr(eq + 1);
      while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
      if (value.size() >= 2 && value.front() == '"' && value.back() == '"')
        value = value.substr(1, value.size() - 2);
      return value;
    }
  }
  return {};
}

void format_set_cookie(std::string_view name, std::string_view value, Millis ttl, std::string& out) {
  out.clear();
  out += name;
  out += '=';
  out += value;
  out += "; Path=/";
  if (ttl.count() > 0) {
    out += "; Max-Age=";
    out += std::to_string(std::max<int64_t>(1, ttl.count() / 1000));
  }
  out += "; HttpOnly";
}

}  // namespace trellis::proxy
