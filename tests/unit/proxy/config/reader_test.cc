// Typed reads of the bootstrap file (src/proxy/config_reader.cc): durations.
#include <gtest/gtest.h>

#include <string>

#include "config_test_helpers.h"
#include "proxy/config/config.h"

namespace trellis::proxy {
namespace {

using namespace config_test;

// A valid config whose listener route timeout is `value`, to exercise duration parsing.
ConfigLoad load_with_timeout(const std::string& value) {
  return load(yaml(R"(
listeners:
  - name: web
    address: 127.0.0.1:10000
    virtual_hosts:
      - name: default
        domains: ["*"]
        routes:
          - match: { prefix: / }
            cluster: web
            timeout: )") +
              value + "\nclusters:\n  - name: web\n");
}

TEST(ConfigReaderTest, ValidDurations) {
  struct Case {
    const char* text;
    int64_t ms;
  };
  for (const Case& c : {Case{"0s", 0}, Case{"0ms", 0}, Case{"250ms", 250}, Case{"1s", 1000},
                        Case{"1.5s", 1500}, Case{"0.001s", 1}, Case{"2m", 120000}, Case{"1.5m", 90000},
                        Case{"1h", 3600000}, Case{"0.25h", 900000}, Case{"\"30s\"", 30000},
                        Case{"1.000s", 1000}, Case{"007s", 7000}, Case{"8760h", 31536000000}}) {
    ConfigLoad result = load_with_timeout(c.text);
    ASSERT_TRUE(result.ok()) << c.text << "\n" << all_errors(result);
    EXPECT_EQ(result.config.listeners[0].virtual_hosts[0].routes[0].timeout, Millis(c.ms)) << c.text;
  }
}

TEST(ConfigReaderTest, InvalidDurations) {
  struct Case {
    const char* text;
    const char* message;
  };
  const char* shape = "expected a duration like \"250ms\", \"1.5s\" or \"1h30m\"";
  for (const Case& c :
       {Case{"10", "a unit is required (ns, us, ms, s, m or h), e.g. \"10s\""},
        Case{"1.5", "a unit is required (ns, us, ms, s, m or h), e.g. \"10s\""},
        Case{"-1s", "must not be negative"}, Case{"1d", "unknown unit \"d\" (use ns, us, ms, s, m or h)"},
        Case{"1 s", "unknown unit \" s\" (use ns, us, ms, s, m or h)"},
        Case{"0.5ms", "must be a whole number of milliseconds"},
        Case{"1.0001s", "must be a whole number of milliseconds"}, Case{"8760.001h", "must be at most 8760h"},
        Case{"99999999999999999999h", "must be at most 8760h"}, Case{"s", shape}, Case{".5s", shape},
        Case{"1.s", shape}, Case{"soon", shape}, Case{"\"\"", shape}, Case{"[1s]", shape}}) {
    ConfigLoad result = load_with_timeout(c.text);
    ASSERT_EQ(result.errors.size(), 1u) << c.text << "\n" << all_errors(result);
    EXPECT_EQ(result.errors[0].path, "listeners[0].virtual_hosts[0].routes[0].timeout") << c.text;
    EXPECT_EQ(result.errors[0].line, 10) << c.text;
    EXPECT_EQ(result.errors[0].column, 22) << c.text;
    EXPECT_EQ(result.errors[0].message, c.message) << c.text;
  }
}

}  // namespace
}  // namespace trellis::proxy
