#include "proxy/upstream/grpc_health.h"

#include <cstdint>

namespace trellis::proxy {

namespace {

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

bool get_varint(std::string_view& in, uint64_t& v) {
  v = 0;
  for (int shift = 0; shift < 64 && !in.empty(); shift += 7) {
    auto byte = static_cast<uint8_t>(in.front());
    in.remove_prefix(1);
    v |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) return true;
  }
  return false;
}

}  // namespace

std::string grpc_health_request(std::string_view service) {
  std::string message;
  if (!service.empty()) {
    message.push_back(0x0a);  // field 1, length-delimited
    put_varint(message, service.size());
    message.append(service);
  }
  std::string framed(5, '\0');  // not compressed, then the length, big-endian
  auto n = static_cast<uint32_t>(message.size());
  for (int i = 0; i < 4; ++i) framed[1 + i] = static_cast<char>((n >> (24 - 8 * i)) & 0xff);
  return framed + message;
}

std::optional<int> parse_grpc_health_response(std::string_view framed, std::string& why) {
  if (framed.size() < 5) {
    why = "no response message";
    return std::nullopt;
  }
  if (framed[0] != 0) {
    why = "compressed response message";
    return std::nullopt;
  }
  uint32_t n = 0;
  for (int i = 1; i <= 4; ++i) n = (n << 8) | static_cast<uint8_t>(framed[i]);
  std::string_view message = framed.substr(5);
  if (message.size() != n) {
    why = "response message length does not match its frame";
    return std::nullopt;
  }
  int status = 0;
  while (!message.empty()) {
    uint64_t tag = 0, value = 0;
    if (!get_varint(message, tag)) {
      why = "malformed response message";
      return std::nullopt;
    }
    uint64_t field = tag >> 3;
    switch (tag & 7) {
      case 0:  // varint
        if (!get_varint(message, value)) break;
        if (field == 1) status = static_cast<int>(value & 0x7fffffff);
        continue;
      case 1:  // 64-bit
        if (message.size() < 8) break;
        message.remove_prefix(8);
        continue;
      case 2:  // length-delimited
        if (!get_varint(message, value) || value > message.size()) break;
        message.remove_prefix(value);
        continue;
      case 5:  // 32-bit
        if (message.size() < 4) break;
        message.remove_prefix(4);
        continue;
      default:
        break;
    }
    // A field cut short, or of an unknown wire type.
    why = "malformed response message";
    return std::nullopt;
  }
  return status;
}

std::string serving_status_name(int status) {
  switch (status) {
    case 0:
      return "UNKNOWN";
    case 1:
      return "SERVING";
    case 2:
      return "NOT_SERVING";
    case 3:
      return "SERVICE_UNKNOWN";
    default:
      return "status " + std::to_string(status);
  }
}

}  // namespace trellis::proxy
