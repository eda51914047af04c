// A port of a Service as one instance serves it, and the rules every
// instance's list of them follows. Shared by the proxy (its bootstrap file's
// instance.ports) and trellis-control (registrations), so both refuse the
// same lists with the same words.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace trellis {

struct ServicePort {
  std::string name;          // a DNS label; may be empty when it is the only port
  uint32_t port = 0;         // the Service's port, what callers name
  uint32_t target_port = 0;  // where the application listens for it
  // "http", "h2c" or "grpc"; empty: each request as its caller spoke it.
  std::string protocol;
  bool operator==(const ServicePort&) const = default;
};

inline constexpr size_t kMaxServicePorts = 64;

// One problem with a list of ports: the port's index, the field ("name",
// "port", "target_port", "protocol"; empty for the whole list) and why.
struct ServicePortProblem {
  size_t index = 0;
  std::string field;
  std::string message;
};

// Names are DNS labels, unique; a name may be left empty only when the list
// has one port. Port numbers are 1 to 65535 and unique; protocols are one of
// those above. At most kMaxServicePorts ports.
std::vector<ServicePortProblem> check_service_ports(const std::vector<ServicePort>& ports);

// "http=9080:8080/grpc" (name=port:target/protocol; "=", ":target" and
// "/protocol" parts optional: "9080" is an unnamed port served on 9080), as
// the CLI takes it. Empty `error` when read.
ServicePort parse_service_port(std::string_view text, std::string& error);

}  // namespace trellis
