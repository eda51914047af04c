#include "cli/yaml_json.h"

#include <charconv>
#include <cstdint>
#include <exception>
#include <sstream>

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

namespace trellis::cli {
namespace {

constexpr std::string_view kTagPrefix = "tag:yaml.org,2002:";

bool is_digits(std::string_view s, bool hex = false, bool octal = false) {
  if (s.empty()) return false;
  for (char c : s) {
    bool ok = octal ? (c >= '0' && c <= '7')
                    : (c >= '0' && c <= '9') || (hex && ((c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')));
    if (!ok) return false;
  }
  return true;
}

bool is_null_word(std::string_view s) {
  return s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL";
}

std::optional<bool> bool_word(std::string_view s) {
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  return std::nullopt;
}

// .inf, -.Inf, .NaN, ...: floats in YAML that JSON cannot hold.
bool is_special_float(std::string_view s) {
  if (!s.empty() && (s.front() == '+' || s.front() == '-')) s.remove_prefix(1);
  return s == ".inf" || s == ".Inf" || s == ".INF" || s == ".nan" || s == ".NaN" || s == ".NAN";
}

// Core schema integers: [-+]?[0-9]+, 0o[0-7]+, 0x[0-9a-fA-F]+.
std::optional<Json> as_integer(std::string_view s) {
  int base = 10;
  bool negative = false;
  std::string_view digits = s;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'o')) {
    base = s[1] == 'x' ? 16 : 8;
    digits = s.substr(2);
    if (!is_digits(digits, base == 16, base == 8)) return std::nullopt;
  } else {
    if (!digits.empty() && (digits.front() == '-' || digits.front() == '+')) {
      negative = digits.front() == '-';
      digits.remove_prefix(1);
    }
    if (!is_digits(digits)) return std::nullopt;
  }
  uint64_t magnitude = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), magnitude, base);
  if (ec == std::errc() && end == digits.data() + digits.size()) {
    if (!negative) return Json(magnitude);
    if (magnitude <= static_cast<uint64_t>(INT64_MAX) + 1) {
      return Json(magnitude == static_cast<uint64_t>(INT64_MAX) + 1 ? INT64_MIN
                                                                    : -static_cast<int64_t>(magnitude));
    }
  }
  // Too large for 64 bits: JSON still calls it a number.
  if (base != 10) return std::nullopt;
  double value = 0;
  std::string text(digits);
  auto r = std::from_chars(text.data(), text.data() + text.size(), value);
  if (r.ec != std::errc()) return std::nullopt;
  return Json(negative ? -value : value);
}

// Core schema floats: [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
std::optional<Json> as_float(std::string_view s) {
  std::string_view rest = s;
  if (!rest.empty() && (rest.front() == '-' || rest.front() == '+')) rest.remove_prefix(1);
  size_t i = 0;
  size_t int_digits = 0;
  while (i < rest.size() && rest[i] >= '0' && rest[i] <= '9') ++i, ++int_digits;
  size_t frac_digits = 0;
  if (i < rest.size() && rest[i] == '.') {
    ++i;
    while (i < rest.size() && rest[i] >= '0' && rest[i] <= '9') ++i, ++frac_digits;
  }
  if (int_digits == 0 && frac_digits == 0) return std::nullopt;
  if (i < rest.size() && (rest[i] == 'e' || rest[i] == 'E')) {
    ++i;
    if (i < rest.size() && (rest[i] == '-' || rest[i] == '+')) ++i;
    size_t exp_digits = 0;
    while (i < rest.size() && rest[i] >= '0' && rest[i] <= '9') ++i, ++exp_digits;
    if (exp_digits == 0) return std::nullopt;
  }
  if (i != rest.size()) return std::nullopt;
  // from_chars takes no leading '+' and, for ".5" or "5.", the same digits.
  std::string text(s.front() == '+' ? s.substr(1) : s);
  double value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return Json(value);
}

std::string in_quotes(std::string_view s) { return "\"" + std::string(s) + "\""; }

// Builds JSON from the parser's events, one document at a time.
class JsonBuilder final : public YAML::EventHandler {
 public:
  const std::optional<YamlError>& error() const { return error_; }
  std::vector<YamlDocument>& documents() { return documents_; }
  const YAML::Mark& document_start() const { return start_; }
  bool document_had_content() const { return had_content_; }

  void OnDocumentStart(const YAML::Mark& mark) override {
    start_ = mark;
    had_content_ = false;
    stack_.clear();
    anchors_.clear();
    current_ = YamlDocument{};
    root_.reset();
  }

  void OnDocumentEnd() override {
    if (error_ || !root_ || root_->is_null()) return;
    current_.json = std::move(*root_);
    documents_.push_back(std::move(current_));
  }

  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    had_content_ = true;
    if (expecting_key()) return fail(mark, "a map key must not be empty or null");
    add(Json(nullptr), mark, anchor);
  }

  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    had_content_ = true;
    auto it = anchors_.find(anchor);
    if (it == anchors_.end()) return fail(mark, "alias to an unknown anchor");
    if (expecting_key()) {
      if (!it->second.is_string()) return fail(mark, "a map key must be a scalar");
      return take_key(it->second.get<std::string>(), mark);
    }
    add(it->second, mark, 0);
  }

  void OnScalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                const std::string& value) override {
    had_content_ = true;
    // Keys are names: "80" or "true" as a key stays that text.
    if (expecting_key()) {
      if (anchor != 0) anchors_[anchor] = Json(value);
      return take_key(value, mark);
    }
    std::optional<Json> typed = typed_scalar(tag, value, mark);
    if (!typed) return;
    add(std::move(*typed), mark, anchor);
  }

  void OnSequenceStart(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    open(mark, tag, anchor, Json::array(), "seq");
  }
  void OnSequenceEnd() override { close(); }

  void OnMapStart(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value) override {
    open(mark, tag, anchor, Json::object(), "map");
  }
  void OnMapEnd() override { close(); }

 private:
  struct Frame {
    Json value;
    std::string path;
    YAML::anchor_t anchor = 0;
    std::optional<std::string> key;  // map: the key whose value comes next
  };

  void fail(const YAML::Mark& mark, std::string message) {
    if (!error_) error_ = YamlError{mark.line + 1, std::move(message)};
  }

  bool expecting_key() const {
    return !stack_.empty() && stack_.back().value.is_object() && !stack_.back().key;
  }

  void take_key(std::string key, const YAML::Mark& mark) {
    if (error_) return;
    Frame& top = stack_.back();
    if (top.value.contains(key)) return fail(mark, "duplicate key " + in_quotes(key));
    int line = mark.line + 1;
    current_.lines.emplace(top.path.empty() ? key : top.path + "." + key, line);
    current_.lines.emplace(top.path + "[" + key + "]", line);
    top.key = std::move(key);
  }

  std::string child_path(const Frame& parent) const {
    if (parent.value.is_object()) return parent.path.empty() ? *parent.key : parent.path + "." + *parent.key;
    return parent.path + "[" + std::to_string(parent.value.size()) + "]";
  }

  void open(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor, Json empty,
            const char* kind) {
    had_content_ = true;
    if (error_) return;
    if (expecting_key()) return fail(mark, "a map key must be a scalar, not a list or map");
    if (tag != "?" && tag != "!" && tag != std::string(kTagPrefix) + kind) {
      return fail(mark,
                  "unsupported tag " + in_quotes(tag) + ": resources are plain maps, lists and scalars");
    }
    std::string path = stack_.empty() ? "" : child_path(stack_.back());
    current_.lines.emplace(path, mark.line + 1);
    if (stack_.empty()) current_.line = mark.line + 1;
    stack_.push_back(Frame{std::move(empty), std::move(path), anchor, std::nullopt});
  }

  void close() {
    if (error_ || stack_.empty()) return;
    Frame done = std::move(stack_.back());
    stack_.pop_back();
    if (done.anchor != 0) anchors_[done.anchor] = done.value;
    place(std::move(done.value));
  }

  void add(Json value, const YAML::Mark& mark, YAML::anchor_t anchor) {
    if (error_) return;
    if (anchor != 0) anchors_[anchor] = value;
    std::string path = stack_.empty() ? "" : child_path(stack_.back());
    current_.lines.emplace(path, mark.line + 1);
    if (stack_.empty()) current_.line = mark.line + 1;
    place(std::move(value));
  }

  void place(Json value) {
    if (stack_.empty()) {
      root_ = std::move(value);
      return;
    }
    Frame& top = stack_.back();
    if (top.value.is_object()) {
      top.value[*top.key] = std::move(value);
      top.key.reset();
    } else {
      top.value.push_back(std::move(value));
    }
  }

  std::optional<Json> typed_scalar(const std::string& tag, const std::string& value, const YAML::Mark& mark) {
    // "!" is yaml-cpp's mark for a quoted or block scalar: always a string.
    if (tag == "!" || tag == std::string(kTagPrefix) + "str") return Json(value);
    if (tag == "?") {
      if (is_special_float(value)) {
        fail(mark, in_quotes(value) + " is not a number JSON can hold; quote it to make it a string");
        return std::nullopt;
      }
      return resolve_plain_scalar(value);
    }
    std::string_view name = tag;
    if (name.substr(0, kTagPrefix.size()) == kTagPrefix) {
      name.remove_prefix(kTagPrefix.size());
      Json plain = resolve_plain_scalar(value);
      bool fits = (name == "int" && plain.is_number_integer()) || (name == "float" && plain.is_number()) ||
                  (name == "bool" && plain.is_boolean()) || (name == "null" && plain.is_null());
      if (fits) return name == "float" ? Json(plain.get<double>()) : plain;
      if (name == "int" || name == "float" || name == "bool" || name == "null") {
        fail(mark, in_quotes(value) + " is not a valid !!" + std::string(name));
        return std::nullopt;
      }
    }
    fail(mark, "unsupported tag " + in_quotes(tag) + ": resources are plain maps, lists and scalars");
    return std::nullopt;
  }

  std::vector<YamlDocument> documents_;
  std::optional<YamlError> error_;
  YAML::Mark start_;
  bool had_content_ = false;
  std::vector<Frame> stack_;
  std::map<YAML::anchor_t, Json> anchors_;
  YamlDocument current_;
  std::optional<Json> root_;
};

// Strings that a YAML reader would take for something else, under the core
// schema or the older YAML 1.1 rules (yes/no/on/off) that many tools still use.
bool needs_quotes(const std::string& s) {
  if (!resolve_plain_scalar(s).is_string() || is_special_float(s)) return true;
  static const char* const kYaml11Words[] = {"y",  "Y",  "yes", "Yes", "YES", "n",   "N",   "no",
                                             "No", "NO", "on",  "On",  "ON",  "off", "Off", "OFF"};
  for (const char* word : kYaml11Words) {
    if (s == word) return true;
  }
  return false;
}

void emit_string(YAML::Emitter& out, const std::string& s) {
  if (needs_quotes(s)) out << YAML::DoubleQuoted;
  out << s;
}

void emit(YAML::Emitter& out, const Json& value) {
  switch (value.type()) {
    case Json::value_t::object:
      if (value.empty()) {
        out << YAML::Flow << YAML::BeginMap << YAML::EndMap;
        return;
      }
      out << YAML::BeginMap;
      for (auto it = value.begin(); it != value.end(); ++it) {
        out << YAML::Key;
        emit_string(out, it.key());
        out << YAML::Value;
        emit(out, it.value());
      }
      out << YAML::EndMap;
      return;
    case Json::value_t::array:
      if (value.empty()) {
        out << YAML::Flow << YAML::BeginSeq << YAML::EndSeq;
        return;
      }
      out << YAML::BeginSeq;
      for (const Json& item : value) emit(out, item);
      out << YAML::EndSeq;
      return;
    case Json::value_t::string:
      emit_string(out, value.get_ref<const std::string&>());
      return;
    case Json::value_t::null:
      out << YAML::Null;
      return;
    default:
      // Numbers and booleans in JSON's own spelling, which the core schema
      // reads back as the same value.
      out << value.dump();
      return;
  }
}

}  // namespace

int YamlDocument::line_of(std::string_view path) const {
  std::string p(path);
  for (;;) {
    if (auto it = lines.find(p); it != lines.end()) return it->second;
    if (p.empty()) return line;
    size_t cut;
    if (p.back() == ']') {
      cut = p.rfind('[');
    } else {
      size_t dot = p.rfind('.');
      size_t bracket = p.rfind(']');
      if (dot != std::string::npos && (bracket == std::string::npos || dot > bracket)) {
        cut = dot;
      } else {
        cut = bracket != std::string::npos ? bracket + 1 : 0;
      }
    }
    if (cut == std::string::npos) cut = 0;
    p.resize(cut);
  }
}

Json resolve_plain_scalar(std::string_view text) {
  if (is_null_word(text)) return Json(nullptr);
  if (std::optional<bool> b = bool_word(text)) return Json(*b);
  if (std::optional<Json> i = as_integer(text)) return *i;
  if (std::optional<Json> f = as_float(text)) return *f;
  return Json(std::string(text));
}

YamlParse parse_yaml_documents(std::string_view text) {
  YamlParse result;
  try {
    std::istringstream in{std::string(text)};
    YAML::Parser parser(in);
    JsonBuilder builder;
    std::optional<YAML::Mark> previous;
    for (size_t count = 0; parser.HandleNextDocument(builder); ++count) {
      if (builder.error()) break;
      // yaml-cpp 0.7 can stall on a stray token (a lone ","), handing back
      // the same empty document forever. Every real document consumes input,
      // so a repeat at the same place, or more documents than bytes, is that.
      const YAML::Mark& start = builder.document_start();
      bool repeated = previous && previous->pos == start.pos && !builder.document_had_content();
      if (repeated || count > text.size()) {
        std::string message = "invalid YAML";
        if (start.pos >= 0 && static_cast<size_t>(start.pos) < text.size()) {
          message = "unexpected " + in_quotes(text.substr(static_cast<size_t>(start.pos), 1));
        }
        result.error = YamlError{start.line + 1, std::move(message)};
        return result;
      }
      previous = start;
    }
    if (builder.error()) {
      result.error = builder.error();
      return result;
    }
    result.documents = std::move(builder.documents());
  } catch (const YAML::Exception& e) {
    result.error = YamlError{e.mark.line >= 0 ? e.mark.line + 1 : 0, e.msg};
  } catch (const std::exception& e) {
    result.error = YamlError{0, e.what()};
  }
  return result;
}

std::string to_yaml(const Json& value) {
  try {
    YAML::Emitter out;
    out.SetNullFormat(YAML::LowerNull);
    out.SetIndent(2);
    emit(out, value);
    if (out.good()) return std::string(out.c_str()) + "\n";
  } catch (const std::exception&) {
  }
  // JSON is YAML too: a document the emitter could not take still reads back.
  return value.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
}

}  // namespace trellis::cli
