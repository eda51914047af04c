#include "proxy/http2/session_io.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace trellis::proxy::http2 {
namespace {

std::vector<std::string> names_of(FieldBlock& block) {
  std::vector<std::string> names;
  for (const nghttp2_nv& nv : block.nv())
    names.emplace_back(reinterpret_cast<const char*>(nv.name), nv.namelen);
  return names;
}

TEST(FieldBlock, LeavesOutConnectionSpecificFieldsAndLowerCasesNames) {
  http::HeaderList fields = {
      {"X-Custom", "1"},  {"Connection", "close"}, {"keep-alive", "5"},     {"TE", "trailers"},
      {"Upgrade", "h2c"}, {":path", "/"},          {"Content-Length", "6"}, {"Host", "a"}};
  FieldBlock block;
  block.add_fields(fields);
  EXPECT_EQ(names_of(block), (std::vector<std::string>{"x-custom", "content-length", "host"}));
}

TEST(FieldBlock, ATrailerSectionHasNoFramingOrRoutingFieldsAndKeepsItsValues) {
  // As an HTTP/1.1 client's chunked trailers may carry them.
  http::HeaderList fields = {{"x-checksum", "abc"},
                             {"Content-Length", "6"},
                             {"host", "a"},
                             {"Transfer-Encoding", "chunked"},
                             {"grpc-status", "0"}};
  FieldBlock block;
  block.add_fields(fields, /*trailers=*/true);
  fields.clear();  // the values were copied
  const std::vector<nghttp2_nv>& nv = block.nv();
  ASSERT_EQ(nv.size(), 2u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(nv[0].value), nv[0].valuelen), "abc");
  EXPECT_EQ(names_of(block), (std::vector<std::string>{"x-checksum", "grpc-status"}));
}

}  // namespace
}  // namespace trellis::proxy::http2
