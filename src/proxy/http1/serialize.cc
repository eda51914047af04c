#include "proxy/http1/serialize.h"

namespace trellis::proxy::http1 {
namespace {

// Tokens listed in Connection headers: those fields are hop-by-hop too.
struct ConnectionTokens {
  std::string_view tokens[8];
  size_t count = 0;
  bool overflow = false;

  explicit ConnectionTokens(const HeaderList& headers) {
    for (const Header& h : headers) {
      if (!http::iequals(h.name, "connection")) continue;
      std::string_view v = h.value;
      while (!v.empty()) {
        size_t comma = v.find(',');
        std::string_view t = v.substr(0, comma);
        while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
        while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
        if (!t.empty()) {
          if (count < 8) tokens[count++] = t;
          else overflow = true;
        }
        if (comma == std::string_view::npos) break;
        v.remove_prefix(comma + 1);
      }
    }
  }

  bool lists(std::string_view name, const HeaderList& headers) const {
    for (size_t i = 0; i < count; ++i)
      if (name.size() == tokens[i].size() && connection_lists_one(name, tokens[i])) return true;
    return overflow && connection_lists(headers, name);
  }

  static bool connection_lists_one(std::string_view a, std::string_view b) {
    for (size_t i = 0; i < a.size(); ++i) {
      char x = a[i], y = b[i];
      if (x >= 'A' && x <= 'Z') x = static_cast<char>(x + 32);
      if (y >= 'A' && y <= 'Z') y = static_cast<char>(y + 32);
      if (x != y) return false;
    }
    return true;
  }
};

void append_field(Buffer& out, std::string_view name, std::string_view value) {
  char* p = out.prepare(name.size() + value.size() + 4);
  std::memcpy(p, name.data(), name.size());
  p += name.size();
  *p++ = ':';
  *p++ = ' ';
  std::memcpy(p, value.data(), value.size());
  p += value.size();
  *p++ = '\r';
  *p++ = '\n';
  out.commit(name.size() + value.size() + 4);
}

// The origin-form target to send upstream.
std::string_view origin_target(const RequestHead& req) {
  std::string_view t = req.target;
  if (!t.empty() && t.front() == '/') return t;
  if (t == "*") return t;
  size_t scheme_end = t.find("://");
  if (scheme_end == std::string_view::npos) return t;
  std::string_view rest = t.substr(scheme_end + 3);
  size_t slash = rest.find_first_of("/?");
  if (slash == std::string_view::npos) return "/";
  return rest.substr(slash);
}

}  // namespace

void serialize_request(const RequestHead& req, const ForwardedRequest& fwd, Buffer& out) {
  std::string_view target = origin_target(req);
  bool absolute = target.data() != req.target.data() && target != "*";
  out.append(req.method);
  out.append(' ');
  if (absolute && target.front() == '?') out.append('/');
  out.append(target);
  out.append(" HTTP/1.1\r\n");

  ConnectionTokens conn(req.headers);
  bool have_host = false;
  bool xff_written = false;
  for (const Header& h : req.headers) {
    std::string_view n = h.name;
    if (is_hop_by_hop(n) || http::iequals(n, "content-length") || http::iequals(n, "expect") ||
        conn.lists(n, req.headers)) {
      continue;
    }
    if (http::iequals(n, "host")) {
      if (have_host) continue;
      have_host = true;
      append_field(out, n, absolute ? req.host : h.value);
      continue;
    }
    if (http::iequals(n, "x-forwarded-for")) {
      // Every x-forwarded-for field, in order, joined and then the client.
      if (xff_written) continue;
      xff_written = true;
      out.append(n);
      out.append(": ");
      bool first = true;
      for (const Header& x : req.headers) {
        if (!http::iequals(x.name, "x-forwarded-for") || x.value.empty()) continue;
        if (!first) out.append(", ");
        out.append(x.value);
        first = false;
      }
      if (!first) out.append(", ");
      out.append(fwd.client_ip);
      out.append("\r\n");
      continue;
    }
    append_field(out, n, h.value);
  }
  if (!have_host && !req.host.empty()) append_field(out, "host", req.host);
  if (!xff_written) append_field(out, "x-forwarded-for", fwd.client_ip);
  if (!fwd.request_id.empty()) append_field(out, "x-request-id", fwd.request_id);
  switch (req.info.body) {
    case BodyKind::kContentLength:
      out.append("content-length: ");
      out.append_decimal(req.info.content_length);
      out.append("\r\n");
      break;
    case BodyKind::kChunked:
      out.append("transfer-encoding: chunked\r\n");
      break;
    default:
      // A request that may carry a body by method but has none says so.
      if (req.method == "POST" || req.method == "PUT" || req.method == "PATCH")
        out.append("content-length: 0\r\n");
      break;
  }
  if (req.info.connection_upgrade && !req.info.upgrade.empty()) {
    append_field(out, "upgrade", req.info.upgrade);
    out.append("connection: upgrade\r\n");
  }
  out.append("\r\n");
}

ResponseFraming response_framing(const ResponseHead& resp, bool head_request, int client_minor) {
  if (head_request || resp.status == 204 || resp.status == 304 || resp.status < 200)
    return ResponseFraming::kNone;
  switch (resp.info.body) {
    case BodyKind::kNone:
      return ResponseFraming::kNone;
    case BodyKind::kContentLength:
      return ResponseFraming::kContentLength;
    case BodyKind::kChunked:
    case BodyKind::kUntilClose:
      return client_minor >= 1 ? ResponseFraming::kChunked : ResponseFraming::kClose;
  }
  return ResponseFraming::kClose;
}

void serialize_response(const ResponseHead& resp, ResponseFraming framing, bool close,
                        int client_minor, Buffer& out) {
  out.append("HTTP/1.1 ");
  out.append_decimal(static_cast<unsigned>(resp.status));
  out.append(' ');
  out.append(resp.reason.empty() ? reason_phrase(resp.status) : resp.reason);
  out.append("\r\n");
  ConnectionTokens conn(resp.headers);
  bool upgrade = resp.status == 101;
  for (const Header& h : resp.headers) {
    std::string_view n = h.name;
    if (upgrade && http::iequals(n, "upgrade")) {
      append_field(out, n, h.value);
      continue;
    }
    if (is_hop_by_hop(n) || conn.lists(n, resp.headers)) continue;
    // HEAD/204/304 keep the upstream's Content-Length: it describes the
    // representation, not this message's body.
    if (http::iequals(n, "content-length") && framing != ResponseFraming::kNone) continue;
    append_field(out, n, h.value);
  }
  switch (framing) {
    case ResponseFraming::kContentLength:
      out.append("content-length: ");
      out.append_decimal(resp.info.content_length);
      out.append("\r\n");
      break;
    case ResponseFraming::kChunked:
      out.append("transfer-encoding: chunked\r\n");
      break;
    default:
      break;
  }
  if (upgrade) {
    out.append("connection: upgrade\r\n");
  } else if (close || framing == ResponseFraming::kClose) {
    out.append("connection: close\r\n");
  } else if (client_minor == 0) {
    out.append("connection: keep-alive\r\n");
  }
  out.append("\r\n");
}

void serialize_local_reply(int status, std::string_view body, bool close, Buffer& out) {
  out.append("HTTP/1.1 ");
  out.append_decimal(static_cast<unsigned>(status));
  out.append(' ');
  out.append(reason_phrase(status));
  out.append("\r\n");
  if (status >= 200) {
    out.append("content-type: text/plain\r\ncontent-length: ");
    out.append_decimal(body.size());
    out.append("\r\n");
    if (close) out.append("connection: close\r\n");
  }
  out.append("\r\n");
  out.append(body);
}

void serialize_last_chunk(const HeaderList& trailers, Buffer& out) {
  out.append("0\r\n");
  for (const Header& h : trailers) {
    // Framing and hop-by-hop fields are never allowed in trailers.
    if (is_hop_by_hop(h.name) || http::iequals(h.name, "content-length") ||
        http::iequals(h.name, "host"))
      continue;
    append_field(out, h.name, h.value);
  }
  out.append("\r\n");
}

std::string_view reason_phrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

}  // namespace trellis::proxy::http1
