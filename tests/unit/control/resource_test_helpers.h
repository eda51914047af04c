// Helpers shared by the resource and validation tests: edit a document by
// JSON pointer, and expect exactly one error at a path.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "control/resource.h"

namespace trellis::control::testing {

inline Json with(Json doc, const std::string& pointer, Json value) {
  doc[Json::json_pointer(pointer)] = std::move(value);
  return doc;
}

inline Json without(Json doc, const std::string& pointer) {
  Json::json_pointer p(pointer);
  doc[p.parent_pointer()].erase(p.back());
  return doc;
}

inline std::vector<std::string> error_lines(const Json& doc) {
  std::vector<std::string> lines;
  for (const FieldError& e : parse_resource(doc).errors) lines.push_back(e.to_string());
  return lines;
}

inline std::string joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const std::string& line : lines) out += line + "\n";
  return out;
}

// The document has exactly one problem: `message` at `path`.
inline ::testing::AssertionResult HasOnlyError(const char* doc_text, const char*, const char*,
                                               const Json& doc, const std::string& path,
                                               const std::string& message) {
  std::vector<std::string> lines = error_lines(doc);
  std::string expected = path.empty() ? message : path + ": " + message;
  if (lines.size() == 1 && lines[0] == expected) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << doc_text << "\n  expected only: " << expected << "\n  got:\n"
                                       << joined(lines);
}

}  // namespace trellis::control::testing

#define EXPECT_ONLY_ERROR(doc, path, message) \
  EXPECT_PRED_FORMAT3(::trellis::control::testing::HasOnlyError, doc, path, message)
