#include "cli/resource_files.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#include <fmt/format.h>

namespace trellis::cli {
namespace {

namespace fs = std::filesystem;

bool is_resource_file(const fs::path& p) {
  std::string ext = p.extension().string();
  return ext == ".yaml" || ext == ".yml" || ext == ".json";
}

bool read_stream(std::istream& in, std::string& text) {
  text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return !in.bad();
}

// nlohmann reports a byte offset; people want a line.
int line_at(const std::string& text, size_t byte) {
  byte = std::min(byte, text.size());
  return 1 +
         static_cast<int>(std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(byte), '\n'));
}

// "[json.exception.parse_error.101] parse error at line 1, column 5: syntax error ..." -> "syntax error ...".
std::string json_message(const std::string& what) {
  size_t column = what.find("column ");
  size_t colon = column == std::string::npos ? std::string::npos : what.find(": ", column);
  if (colon != std::string::npos) return what.substr(colon + 2);
  size_t bracket = what.find("] ");
  return bracket == std::string::npos ? what : what.substr(bracket + 2);
}

bool is_list(const Json& doc) {
  if (!doc.is_object() || !doc.contains("items") || !doc["items"].is_array()) return false;
  const Json* kind = doc.contains("kind") ? &doc["kind"] : nullptr;
  if (kind == nullptr || !kind->is_string()) return false;
  const std::string& k = kind->get_ref<const std::string&>();
  return k.size() >= 4 && k.compare(k.size() - 4, 4, "List") == 0;
}

// The item's own lines: "items[2].spec.x" becomes "spec.x".
YamlDocument list_item(const YamlDocument& list, size_t index) {
  YamlDocument item;
  std::string prefix = "items[" + std::to_string(index) + "]";
  item.json = list.json["items"][index];
  item.line = list.line_of(prefix);
  for (const auto& [path, line] : list.lines) {
    if (path.compare(0, prefix.size(), prefix) != 0) continue;
    std::string rest = path.substr(prefix.size());
    if (rest.empty()) {
      item.lines.emplace("", line);
    } else if (rest.front() == '.') {
      item.lines.emplace(rest.substr(1), line);
    }
  }
  return item;
}

void add_document(const std::string& file, YamlDocument doc, ResourceFiles& out) {
  if (is_list(doc.json)) {
    for (size_t i = 0; i < doc.json["items"].size(); ++i) add_document(file, list_item(doc, i), out);
    return;
  }
  SourceDocument source{file, std::move(doc)};
  if (!source.doc.json.is_object()) {
    out.errors.push_back(source.where() +
                         ": a resource must be a map with apiVersion, kind, metadata and spec");
    return;
  }
  out.documents.push_back(std::move(source));
}

void read_file(const fs::path& path, const std::string& name, ResourceFiles& out) {
  std::ifstream in(path, std::ios::binary);
  std::string text;
  if (!in || !read_stream(in, text)) {
    out.errors.push_back(fmt::format("{}: cannot read: {}", name, std::strerror(errno)));
    return;
  }
  read_resource_text(name, text, path.extension() == ".json", out);
}

}  // namespace

std::string SourceDocument::where(std::string_view path) const {
  int line = path.empty() ? doc.line : doc.line_of(path);
  return line > 0 ? fmt::format("{}:{}", file, line) : file;
}

void read_resource_text(const std::string& file, const std::string& text, bool json, ResourceFiles& out) {
  if (json) {
    try {
      YamlDocument doc;
      doc.json = Json::parse(text);  // no line numbers: nlohmann does not keep them
      add_document(file, std::move(doc), out);
    } catch (const Json::parse_error& e) {
      out.errors.push_back(fmt::format("{}:{}: {}", file, line_at(text, e.byte == 0 ? 0 : e.byte - 1),
                                       json_message(e.what())));
    } catch (const std::exception& e) {
      out.errors.push_back(fmt::format("{}: {}", file, e.what()));
    }
    return;
  }
  YamlParse parsed = parse_yaml_documents(text);
  if (parsed.error) {
    if (parsed.error->line > 0) {
      out.errors.push_back(fmt::format("{}:{}: {}", file, parsed.error->line, parsed.error->message));
    } else {
      out.errors.push_back(fmt::format("{}: {}", file, parsed.error->message));
    }
    return;
  }
  for (YamlDocument& doc : parsed.documents) add_document(file, std::move(doc), out);
}

ResourceFiles read_resource_files(const std::string& path, bool recursive) {
  ResourceFiles out;
  if (path == "-") {
    std::string text;
    if (!read_stream(std::cin, text)) {
      out.errors.push_back("stdin: cannot read");
      return out;
    }
    size_t first = text.find_first_not_of(" \t\r\n");
    bool json = first != std::string::npos && text[first] == '{';
    read_resource_text("stdin", text, json, out);
    return out;
  }

  std::error_code ec;
  fs::file_status status = fs::status(path, ec);
  if (ec || !fs::exists(status)) {
    out.errors.push_back(fmt::format("{}: {}", path, ec ? ec.message() : "no such file or folder"));
    return out;
  }
  if (!fs::is_directory(status)) {
    read_file(path, path, out);
    return out;
  }

  std::vector<fs::path> files;
  auto collect = [&](auto&& iterator) {
    for (auto it = iterator; it != std::decay_t<decltype(iterator)>(); it.increment(ec)) {
      if (ec) break;
      std::error_code type_ec;
      if (it->is_regular_file(type_ec) && is_resource_file(it->path())) files.push_back(it->path());
    }
  };
  if (recursive) {
    collect(fs::recursive_directory_iterator(path, fs::directory_options::skip_permission_denied, ec));
  } else {
    collect(fs::directory_iterator(path, fs::directory_options::skip_permission_denied, ec));
  }
  if (ec) {
    out.errors.push_back(fmt::format("{}: {}", path, ec.message()));
    return out;
  }
  if (files.empty()) {
    out.errors.push_back(fmt::format("{}: no .yaml, .yml or .json files{}", path,
                                     recursive ? "" : " (use -R to look in sub-folders)"));
    return out;
  }
  std::sort(files.begin(), files.end());
  for (const fs::path& file : files) read_file(file, file.string(), out);
  return out;
}

}  // namespace trellis::cli
