#include "common/service_port.h"

#include <charconv>
#include <set>

namespace trellis {
namespace {

bool dns_label(std::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!alnum(s.front()) || !alnum(s.back())) return false;
  for (char c : s)
    if (!alnum(c) && c != '-') return false;
  return true;
}

bool port_number(std::string_view text, uint32_t& out) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size() && out >= 1 && out <= 65535;
}

}  // namespace

std::vector<ServicePortProblem> check_service_ports(const std::vector<ServicePort>& ports) {
  std::vector<ServicePortProblem> out;
  if (ports.size() > kMaxServicePorts) {
    out.push_back({0, "", "at most " + std::to_string(kMaxServicePorts) + " ports"});
    return out;
  }
  std::set<std::string> names;
  std::set<uint32_t> numbers;
  for (size_t i = 0; i < ports.size(); ++i) {
    const ServicePort& p = ports[i];
    if (p.name.empty()) {
      if (ports.size() > 1) out.push_back({i, "name", "required when there is more than one port"});
    } else if (!dns_label(p.name)) {
      out.push_back({i, "name",
                     "\"" + p.name +
                         "\" is not a valid port name: use lower-case letters, digits and '-', starting and "
                         "ending with a letter or digit, at most 63"});
    } else if (!names.insert(p.name).second) {
      out.push_back({i, "name", "port name \"" + p.name + "\" is used twice"});
    }
    if (p.port < 1 || p.port > 65535) {
      out.push_back({i, "port", "must be between 1 and 65535"});
    } else if (!numbers.insert(p.port).second) {
      out.push_back({i, "port", "port " + std::to_string(p.port) + " is used twice"});
    }
    if (p.target_port < 1 || p.target_port > 65535)
      out.push_back({i, "target_port", "must be between 1 and 65535"});
    if (!p.protocol.empty() && p.protocol != "http" && p.protocol != "h2c" && p.protocol != "grpc") {
      out.push_back({i, "protocol",
                     "\"" + p.protocol + "\" is not one of http, h2c or grpc" +
                         (p.protocol == "tcp" ? " (the mesh carries HTTP and gRPC between sidecars)" : "")});
    }
  }
  return out;
}

ServicePort parse_service_port(std::string_view text, std::string& error) {
  ServicePort out;
  error.clear();
  std::string_view rest = text;
  if (size_t eq = rest.find('='); eq != std::string_view::npos) {
    out.name = std::string(rest.substr(0, eq));
    rest.remove_prefix(eq + 1);
  }
  if (size_t slash = rest.find('/'); slash != std::string_view::npos) {
    out.protocol = std::string(rest.substr(slash + 1));
    rest = rest.substr(0, slash);
  }
  std::string_view target = rest;
  if (size_t colon = rest.find(':'); colon != std::string_view::npos) {
    target = rest.substr(colon + 1);
    rest = rest.substr(0, colon);
  }
  if (!port_number(rest, out.port) || !port_number(target, out.target_port)) {
    error = "\"" + std::string(text) +
            "\" is not a port: write name=port:target/protocol, e.g. http=9080:8080 or grpc=9090/grpc";
  }
  return out;
}

}  // namespace trellis
