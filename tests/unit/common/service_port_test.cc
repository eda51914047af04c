#include "common/service_port.h"

#include <gtest/gtest.h>

namespace trellis {
namespace {

std::vector<std::string> problems(const std::vector<ServicePort>& ports) {
  std::vector<std::string> out;
  for (const ServicePortProblem& p : check_service_ports(ports))
    out.push_back(std::to_string(p.index) + "." + p.field + ": " + p.message);
  return out;
}

TEST(ServicePorts, NamesNumbersAndProtocols) {
  EXPECT_EQ(problems({}), std::vector<std::string>{});
  EXPECT_EQ(problems({{"", 80, 8080, ""}}), std::vector<std::string>{}) << "one port needs no name";
  EXPECT_EQ(problems({{"http", 80, 8080, "http"}, {"grpc", 9090, 9090, "grpc"}, {"h2", 81, 81, "h2c"}}),
            std::vector<std::string>{});
  EXPECT_EQ(problems({{"", 80, 8080, ""}, {"b", 81, 81, ""}}),
            std::vector<std::string>{"0.name: required when there is more than one port"});
  EXPECT_EQ(
      problems({{"a", 80, 80, ""}, {"a", 80, 81, "tcp"}, {"Web", 0, 70000, ""}}),
      (std::vector<std::string>{
          "1.name: port name \"a\" is used twice", "1.port: port 80 is used twice",
          "1.protocol: \"tcp\" is not one of http, h2c or grpc (the mesh carries HTTP and gRPC between "
          "sidecars)",
          "2.name: \"Web\" is not a valid port name: use lower-case letters, digits and '-', starting and "
          "ending with a letter or digit, at most 63",
          "2.port: must be between 1 and 65535", "2.target_port: must be between 1 and 65535"}));
  std::vector<ServicePort> many;
  for (uint32_t i = 1; i <= 65; ++i) many.push_back({"p" + std::to_string(i), i, i, ""});
  EXPECT_EQ(problems(many), std::vector<std::string>{"0.: at most 64 ports"});
}

TEST(ServicePorts, TheCliForm) {
  std::string error;
  EXPECT_EQ(parse_service_port("http=9080:8080/grpc", error), (ServicePort{"http", 9080, 8080, "grpc"}));
  EXPECT_EQ(error, "");
  EXPECT_EQ(parse_service_port("9080", error), (ServicePort{"", 9080, 9080, ""}));
  EXPECT_EQ(parse_service_port("admin=9443", error), (ServicePort{"admin", 9443, 9443, ""}));
  EXPECT_EQ(parse_service_port("80:8080", error), (ServicePort{"", 80, 8080, ""}));
  EXPECT_EQ(error, "");
  for (const char* bad : {"", "http=", "http=x", "http=80:", "http=0", "http=80:65536", "=80:80:80"}) {
    parse_service_port(bad, error);
    EXPECT_NE(error, "") << bad;
  }
}

}  // namespace
}  // namespace trellis
