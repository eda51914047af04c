// Reading the resources named by `-f PATH` (apply, delete): one file, the
// *.yaml, *.yml and *.json files of a folder, or stdin, each holding one or
// more documents.
#pragma once

#include <string>
#include <vector>

#include "cli/yaml_json.h"

namespace trellis::cli {

// One resource document and where it came from.
struct SourceDocument {
  std::string file;  // as the user named it; "stdin" for -
  YamlDocument doc;  // JSON files carry no line numbers (line 0, no lines)

  // "FILE:LINE" of the document, or of the field at `path` when known.
  std::string where(std::string_view path = {}) const;
};

struct ResourceFiles {
  std::vector<SourceDocument> documents;
  std::vector<std::string> errors;  // "FILE:LINE: message" or "PATH: message"
};

// Reads PATH: a file (YAML, or JSON when it ends in .json), a folder (its
// *.yaml, *.yml and *.json files in name order; sub-folders too with
// `recursive`), or "-" for stdin (JSON when it starts with "{", else YAML).
// A document of kind "...List" with "items" (what `trellis get -o json`
// prints) stands for its items. Every document must be a map. Any error
// is reported, and the caller should apply nothing: half a folder applied
// because of a typo in one file helps nobody.
ResourceFiles read_resource_files(const std::string& path, bool recursive);

// Reads one text already in memory, named `file` in messages (for tests and stdin).
void read_resource_text(const std::string& file, const std::string& text, bool json, ResourceFiles& out);

}  // namespace trellis::cli
