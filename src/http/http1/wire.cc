#include "http/http1/wire.h"

#include <cstring>

namespace trellis::http::http1 {
namespace {

// Tokens listed in Connection headers: those fields are hop-by-hop too.
class ConnectionTokens {
 public:
  explicit ConnectionTokens(const HeaderList& headers) : headers_(headers) {
    for (const Header& h : headers) {
      if (!http::iequals(h.name, "connection")) continue;
      std::string_view v = h.value;
      while (!v.empty()) {
        size_t comma = v.find(',');
        std::string_view t = v.substr(0, comma);
        while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
        while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
        if (!t.empty()) {
          if (count_ < kMax)
            tokens_[count_++] = t;
          else
            overflow_ = true;
        }
        if (comma == std::string_view::npos) break;
        v.remove_prefix(comma + 1);
      }
    }
  }

  bool lists(std::string_view name) const {
    for (size_t i = 0; i < count_; ++i)
      if (same_token(name, tokens_[i])) return true;
    return overflow_ && connection_lists(headers_, name);
  }

 private:
  static bool same_token(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
      char x = a[i], y = b[i];
      if (x >= 'A' && x <= 'Z') x = static_cast<char>(x + 32);
      if (y >= 'A' && y <= 'Z') y = static_cast<char>(y + 32);
      if (x != y) return false;
    }
    return true;
  }
  static constexpr size_t kMax = 8;
  const HeaderList& headers_;
  std::string_view tokens_[kMax];
  size_t count_ = 0;
  bool overflow_ = false;
};

void append_field(net::Buffer& out, std::string_view name, std::string_view value) {
  size_t n = name.size() + value.size() + 4;
  char* p = out.prepare(n);
  std::memcpy(p, name.data(), name.size());
  p += name.size();
  *p++ = ':';
  *p++ = ' ';
  std::memcpy(p, value.data(), value.size());
  p += value.size();
  *p++ = '\r';
  *p++ = '\n';
  out.commit(n);
}

// The origin-form target to send upstream.
std::string_view origin_target(const RequestHead& req) {
  std::string_view t = req.target;
  if (t.empty() || t.front() == '/' || t == "*") return t;
  size_t scheme_end = t.find("://");
  if (scheme_end == std::string_view::npos) return t;
  std::string_view rest = t.substr(scheme_end + 3);
  size_t slash = rest.find_first_of("/?");
  if (slash == std::string_view::npos) return "/";
  return rest.substr(slash);
}

bool end_to_end(std::string_view name, const ConnectionTokens& conn) {
  return !is_hop_by_hop(name) && !http::iequals(name, "content-length") && !conn.lists(name);
}

}  // namespace

void to_neutral(const RequestHead& head, http::RequestHeaders& out) {
  out.method = head.method;
  out.scheme = "http";
  out.authority = head.host;
  out.path = origin_target(head);
  // "http://a?x" has no path: the query needs one.
  out.protocol = head.version_minor == 0 ? "HTTP/1.0" : "HTTP/1.1";
  out.headers.clear();
  ConnectionTokens conn(head.headers);
  for (const Header& h : head.headers) {
    if (!end_to_end(h.name, conn) || http::iequals(h.name, "host") || http::iequals(h.name, "expect"))
      continue;
    out.headers.push_back(h);
  }
  out.has_body = head.info.body != BodyKind::kNone;
  out.content_length = head.info.body == BodyKind::kContentLength
                           ? static_cast<int64_t>(head.info.content_length)
                           : (head.info.body == BodyKind::kNone ? 0 : -1);
  out.expect_continue = head.info.expect_continue && out.has_body;
  out.upgrade = head.info.connection_upgrade ? head.info.upgrade : std::string_view();
}

void to_neutral(const ResponseHead& head, bool head_request, http::ResponseHeaders& out) {
  out.status = head.status;
  out.reason = head.reason;
  out.headers.clear();
  ConnectionTokens conn(head.headers);
  for (const Header& h : head.headers) {
    if (!end_to_end(h.name, conn)) continue;
    out.headers.push_back(h);
  }
  bool bodiless = head_request || head.status < 200 || head.status == 204 || head.status == 304;
  out.has_body = !bodiless && head.info.body != BodyKind::kNone;
  bool declared = head.info.body == BodyKind::kContentLength ||
                  (head.info.body == BodyKind::kNone && head.status >= 200 && head.status != 204 &&
                   head.status != 304 && !head_request);
  out.content_length = declared ? static_cast<int64_t>(head.info.content_length) : -1;
  // HEAD and 304 answers describe the representation: keep a declared length.
  if ((head_request || head.status == 304) && http::find_header(head.headers, "content-length").size())
    out.content_length = static_cast<int64_t>(head.info.content_length);
  out.upgrade = head.status == 101 ? head.info.upgrade : std::string_view();
}

void serialize_request(const http::RequestHeaders& req, std::string_view fallback_authority,
                       net::Buffer& out) {
  out.append(req.method);
  out.append(' ');
  if (!req.path.empty() && req.path.front() == '?') out.append('/');
  out.append(req.path.empty() ? std::string_view("/") : req.path);
  out.append(" HTTP/1.1\r\n");
  std::string_view authority = req.authority.empty() ? fallback_authority : req.authority;
  if (!authority.empty()) append_field(out, "host", authority);
  for (const Header& h : req.headers) append_field(out, h.name, h.value);
  if (req.has_body && req.content_length >= 0) {
    out.append("content-length: ");
    out.append_decimal(static_cast<unsigned long long>(req.content_length));
    out.append("\r\n");
  } else if (req.has_body) {
    out.append("transfer-encoding: chunked\r\n");
  } else if (req.method == "POST" || req.method == "PUT" || req.method == "PATCH") {
    // A method that normally carries a body says it has none.
    out.append("content-length: 0\r\n");
  }
  if (!req.upgrade.empty()) {
    append_field(out, "upgrade", req.upgrade);
    out.append("connection: upgrade\r\n");
  }
  out.append("\r\n");
}

ResponseFraming response_framing(const http::ResponseHeaders& resp, int client_minor) {
  if (!resp.has_body) return ResponseFraming::kNone;
  if (resp.content_length >= 0) return ResponseFraming::kContentLength;
  return client_minor >= 1 ? ResponseFraming::kChunked : ResponseFraming::kClose;
}

void serialize_response(const http::ResponseHeaders& resp, ResponseFraming framing, bool close,
                        int client_minor, net::Buffer& out) {
  out.append("HTTP/1.1 ");
  out.append_decimal(static_cast<unsigned>(resp.status));
  out.append(' ');
  out.append(resp.reason.empty() ? reason_phrase(resp.status) : resp.reason);
  out.append("\r\n");
  for (const Header& h : resp.headers) append_field(out, h.name, h.value);
  bool length_allowed = resp.status >= 200 && resp.status != 204;
  if (framing == ResponseFraming::kChunked) {
    out.append("transfer-encoding: chunked\r\n");
  } else if (resp.content_length >= 0 && length_allowed && framing != ResponseFraming::kClose) {
    out.append("content-length: ");
    out.append_decimal(static_cast<unsigned long long>(resp.content_length));
    out.append("\r\n");
  }
  if (resp.status == 101) {
    if (!resp.upgrade.empty()) append_field(out, "upgrade", resp.upgrade);
    out.append("connection: upgrade\r\n");
  } else if (close || framing == ResponseFraming::kClose) {
    out.append("connection: close\r\n");
  } else if (client_minor == 0) {
    out.append("connection: keep-alive\r\n");
  }
  out.append("\r\n");
}

void serialize_chunk(std::string_view data, net::Buffer& out) {
  if (data.empty()) return;  // an empty chunk would end the body
  out.append_hex(data.size());
  out.append("\r\n");
  out.append(data);
  out.append("\r\n");
}

void serialize_last_chunk(const HeaderList& trailers, net::Buffer& out) {
  out.append("0\r\n");
  for (const Header& h : trailers) {
    // Framing, routing and hop-by-hop fields are never taken from trailers.
    if (is_hop_by_hop(h.name) || barred_from_trailers(h.name)) continue;
    append_field(out, h.name, h.value);
  }
  out.append("\r\n");
}

std::string_view reason_phrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 101:
      return "Switching Protocols";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 206:
      return "Partial Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 303:
      return "See Other";
    case 304:
      return "Not Modified";
    case 307:
      return "Temporary Redirect";
    case 308:
      return "Permanent Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

}  // namespace trellis::http::http1
