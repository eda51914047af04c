#include "common/log_format.h"

namespace trellis {
namespace {

constexpr std::string_view kFieldNames[kLogFields] = {"time",
                                                      "listener",
                                                      "client",
                                                      "method",
                                                      "path",
                                                      "host",
                                                      "protocol",
                                                      "status",
                                                      "grpc_status",
                                                      "bytes_received",
                                                      "bytes_sent",
                                                      "duration_ms",
                                                      "upstream",
                                                      "cluster",
                                                      "route",
                                                      "request_id",
                                                      "retries",
                                                      "response_flags",
                                                      "trace_id",
                                                      "client_identity",
                                                      "denied_by",
                                                      "source_service",
                                                      "destination_service"};

}  // namespace

std::optional<LogField> parse_log_field(std::string_view name) {
  for (size_t i = 0; i < kLogFields; ++i)
    if (kFieldNames[i] == name) return static_cast<LogField>(i);
  return std::nullopt;
}

std::string_view log_field_name(LogField field) { return kFieldNames[static_cast<size_t>(field)]; }

std::string log_field_names() {
  std::string out;
  for (std::string_view n : kFieldNames) {
    if (!out.empty()) out += ", ";
    out += n;
  }
  return out;
}

Result<LogField> parse_listed_log_field(std::string_view name, const std::vector<LogField>& earlier) {
  std::optional<LogField> field = parse_log_field(name);
  if (!field) return Error{"unknown field \"" + std::string(name) + "\" (known: " + log_field_names() + ")"};
  for (LogField f : earlier)
    if (f == *field) return Error{"field \"" + std::string(name) + "\" is listed twice"};
  return *field;
}

Result<LogFormat> parse_log_template(std::string_view text) {
  LogFormat format;
  format.text = true;
  LogFormat::Piece piece;
  auto is_name_char = [](char c) { return (c >= 'a' && c <= 'z') || c == '_'; };
  for (size_t i = 0; i < text.size();) {
    char c = text[i];
    if (c == '\n' || c == '\r') return Error{"a template is one line: no line breaks"};
    if (c != '$') {
      piece.literal += c;
      ++i;
      continue;
    }
    if (i + 1 < text.size() && text[i + 1] == '$') {
      piece.literal += '$';
      i += 2;
      continue;
    }
    size_t start = i + 1, end = start;
    bool braced = start < text.size() && text[start] == '{';
    if (braced) {
      end = text.find('}', start);
      if (end == std::string_view::npos) return Error{"unclosed \"${\" at offset " + std::to_string(i)};
      ++start;
    } else {
      while (end < text.size() && is_name_char(text[end])) ++end;
    }
    std::string_view name = text.substr(start, end - start);
    std::optional<LogField> field = parse_log_field(name);
    if (!field) {
      return Error{name.empty()
                       ? "a \"$\" names no field (write \"$$\" for a \"$\")"
                       : "unknown field \"" + std::string(name) + "\" (known: " + log_field_names() + ")"};
    }
    piece.field = field;
    format.pieces.push_back(std::move(piece));
    piece = {};
    i = braced ? end + 1 : end;
  }
  if (!piece.literal.empty()) format.pieces.push_back(std::move(piece));
  return format;
}

std::string format_log_template(const LogFormat& format) {
  std::string out;
  for (const LogFormat::Piece& p : format.pieces) {
    for (char c : p.literal) {
      if (c == '$') out += '$';
      out += c;
    }
    if (p.field) {
      out += "${";
      out += log_field_name(*p.field);
      out += '}';
    }
  }
  return out;
}

}  // namespace trellis
