// Mesh resources between YAML, what users write and read, and JSON, what the
// control plane's API speaks. Pure functions over text: no files, no sockets.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace trellis::cli {

// Keys keep the order they were written in, so what goes out reads like what
// came in.
using Json = nlohmann::ordered_json;

// One document of a YAML stream, as JSON, with where its parts were written.
struct YamlDocument {
  Json json;
  int line = 0;  // 1-based line where the document's content starts
  // The 1-based line of each node by its field path from the root, in the
  // form the API reports errors in: "spec.rules[0].backendRefs[1].weight";
  // map keys are also recorded as "parent[key]" (how label keys are named).
  std::map<std::string, int> lines;

  // The line of `path`, or of its nearest recorded ancestor, or the document's.
  int line_of(std::string_view path) const;
};

struct YamlError {
  int line = 0;  // 1-based; 0 when unknown
  std::string message;
};

struct YamlParse {
  std::vector<YamlDocument> documents;  // empty documents are left out
  std::optional<YamlError> error;       // set: the stream could not be read (documents is then empty)
};

// Reads every document of a YAML stream ("---" separates them). Scalars are
// typed by YAML 1.2's core schema, the way JSON would have them: unquoted
// integers and decimals become numbers, true/false booleans, null/~/empty
// null; anything quoted, any block scalar (| >) and everything else is a
// string. So `weight: 90` is the number 90 and `value: "90"` the string "90";
// `yes`, `on` and `1.10.2` stay strings. The standard tags (!!str, !!int,
// !!float, !!bool, !!null) force a type; other tags, non-scalar map keys and
// duplicate keys are errors, as are .inf and .nan (JSON has no such numbers).
// Anchors and aliases are expanded. Never throws.
YamlParse parse_yaml_documents(std::string_view text);

// How the core schema types an unquoted scalar: a number, a boolean, null, or
// the text itself as a string.
Json resolve_plain_scalar(std::string_view text);

// `value` as one YAML document (no "---"; ends with a newline). Strings that
// would read back as something else (numbers, booleans, null, empty) are
// quoted, so parse_yaml_documents(to_yaml(v)) gives v back.
std::string to_yaml(const Json& value);

}  // namespace trellis::cli
