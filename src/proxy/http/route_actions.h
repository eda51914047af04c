// What a matched route does to a request and its response besides sending it
// on: header modifiers, URL rewrites, redirects and the hash-balancing cookie.
// Plain functions over the neutral messages, so they are tested on their own.
#pragma once

#include <string>
#include <string_view>

#include "http/message.h"
#include "proxy/config/config.h"

namespace trellis::proxy {

// set, then add, then remove, as the Gateway API orders them.
void apply_request_modifier(const HeaderModifier& modifier, http::RequestHeadersCopy& request);
void apply_response_modifier(const HeaderModifier& modifier, http::ResponseHeaders& response);

// The path after a rewrite or redirect: `path` is the request's (with any
// query, which is kept); `matched_prefix` is the route's prefix match, for a
// prefix replacement. "/v1/reviews/7" with prefix "/v1/reviews" replaced by
// "/reviews" gives "/reviews/7"; replaced by "/" it gives "/7".
void rewrite_path(const PathModifier& modifier, std::string_view matched_prefix, std::string_view path,
                  std::string& out);

// The Location of a redirect for `request`, into `out`.
void redirect_location(const RedirectConfig& redirect, std::string_view matched_prefix,
                       const http::RequestHeaders& request, std::string& out);

// The value of cookie `name` in the request's Cookie fields, or empty.
std::string_view find_cookie(const http::HeaderList& headers, std::string_view name);

// "name=value; Path=/; HttpOnly" with Max-Age when ttl > 0.
void format_set_cookie(std::string_view name, std::string_view value, Millis ttl, std::string& out);

}  // namespace trellis::proxy
