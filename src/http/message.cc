#include "http/message.h"

namespace trellis::http {

std::string_view find_header(const HeaderList& headers, std::string_view lower_name) {
  for (const Header& h : headers)
    if (iequals(h.name, lower_name)) return h.value;
  return {};
}

std::string_view RequestHeadersCopy::keep(std::string_view s) {
  // Callers reserve first, so appending never moves earlier views.
  size_t at = storage_.size();
  storage_.append(s);
  return std::string_view(storage_.data() + at, s.size());
}

void RequestHeadersCopy::reserve(size_t more) {
  if (storage_.size() + more <= storage_.capacity()) return;
  // Growing moves the bytes: re-point every view at the new storage.
  const char* old_base = storage_.data();
  std::string grown;
  grown.reserve((storage_.size() + more) * 2);
  grown.append(storage_);
  auto rebase = [&](std::string_view& v) {
    if (v.data() >= old_base && v.data() < old_base + storage_.size())
      v = std::string_view(grown.data() + (v.data() - old_base), v.size());
  };
  rebase(headers_.method);
  rebase(headers_.scheme);
  rebase(headers_.authority);
  rebase(headers_.path);
  rebase(headers_.upgrade);
  rebase(headers_.protocol);
  for (Header& h : headers_.headers) {
    rebase(h.name);
    rebase(h.value);
  }
  storage_.swap(grown);
}

void RequestHeadersCopy::assign(const RequestHeaders& src) {
  size_t total = src.method.size() + src.scheme.size() + src.authority.size() + src.path.size() +
                 src.upgrade.size() + src.protocol.size();
  for (const Header& h : src.headers) total += h.name.size() + h.value.size();
  storage_.clear();
  headers_.headers.clear();
  if (storage_.capacity() < total + 256) storage_.reserve(total + 256);
  headers_.method = keep(src.method);
  headers_.scheme = keep(src.scheme);
  headers_.authority = keep(src.authority);
  headers_.path = keep(src.path);
  headers_.upgrade = keep(src.upgrade);
  headers_.protocol = keep(src.protocol);
  for (const Header& h : src.headers) headers_.headers.push_back({keep(h.name), keep(h.value)});
  headers_.content_length = src.content_length;
  headers_.has_body = src.has_body;
  headers_.expect_continue = src.expect_continue;
}

void RequestHeadersCopy::add(std::string_view name, std::string_view value) {
  reserve(name.size() + value.size());
  std::string_view n = keep(name);
  std::string_view v = keep(value);
  headers_.headers.push_back({n, v});
}

void RequestHeadersCopy::set(std::string_view lower_name, std::string_view value) {
  remove(lower_name);
  add(lower_name, value);
}

void RequestHeadersCopy::remove(std::string_view lower_name) {
  std::erase_if(headers_.headers, [&](const Header& h) { return iequals(h.name, lower_name); });
}

void RequestHeadersCopy::set_authority(std::string_view authority) {
  reserve(authority.size());
  headers_.authority = keep(authority);
}

void RequestHeadersCopy::set_path(std::string_view path) {
  reserve(path.size());
  headers_.path = keep(path);
}

bool is_grpc(const HeaderList& headers) {
  std::string_view type = find_header(headers, "content-type");
  if (type.size() < 16 || !iequals(type.substr(0, 16), "application/grpc")) return false;
  return type.size() == 16 || type[16] == '+' || type[16] == ';';
}

int grpc_status(const HeaderList& fields) {
  std::string_view value = find_header(fields, "grpc-status");
  if (value.empty() || value.size() > 9) return -1;
  int code = 0;
  for (char c : value) {
    if (c < '0' || c > '9') return -1;
    code = code * 10 + (c - '0');
  }
  return code > 16 ? 2 : code;
}

bool parse_grpc_timeout(std::string_view value, Duration& out) {
  if (value.size() < 2 || value.size() > 9) return false;
  int64_t n = 0;
  for (char c : value.substr(0, value.size() - 1)) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + (c - '0');
  }
  using namespace std::chrono;
  switch (value.back()) {
    case 'H':
      out = duration_cast<Duration>(hours(n));
      return true;
    case 'M':
      out = duration_cast<Duration>(minutes(n));
      return true;
    case 'S':
      out = duration_cast<Duration>(seconds(n));
      return true;
    case 'm':
      out = duration_cast<Duration>(milliseconds(n));
      return true;
    case 'u':
      out = duration_cast<Duration>(microseconds(n));
      return true;
    case 'n':
      out = duration_cast<Duration>(nanoseconds(n));
      return true;
    default:
      return false;
  }
}

}  // namespace trellis::http
