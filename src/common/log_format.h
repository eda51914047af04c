// The shape of access-log lines: the fields a line may have and the text
// template syntax. Pure string code, so trellis-control checks a
// MeshConfig's access log exactly as the proxies read their own.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace trellis {

// What a line may say. Names as in the config (AccessLogConfig).
enum class LogField : uint8_t {
  kTime,
  kListener,
  kClient,
  kMethod,
  kPath,
  kHost,
  kProtocol,
  kStatus,
  kGrpcStatus,
  kBytesReceived,
  kBytesSent,
  kDurationMs,
  kUpstream,
  kCluster,
  kRoute,
  kRequestId,
  kRetries,
  kResponseFlags,
  kTraceId,
  kClientIdentity,
  kDeniedBy,
  kSourceService,
  kDestinationService,
};
inline constexpr size_t kLogFields = 23;
std::optional<LogField> parse_log_field(std::string_view name);
std::string_view log_field_name(LogField field);
// "time, listener, ..." for error messages.
std::string log_field_names();
// A field a config lists (a JSON line's fields) after `earlier`: the field,
// or why not ("unknown field "x" (known: ...)", "field "x" is listed twice").
Result<LogField> parse_listed_log_field(std::string_view name, const std::vector<LogField>& earlier);

// A line's shape: JSON with `fields` (empty: the default set, where fields
// without a value are left out), or text from a template.
struct LogFormat {
  bool text = false;
  std::vector<LogField> fields;
  struct Piece {
    std::string literal;
    std::optional<LogField> field;  // after the literal
    bool operator==(const Piece&) const = default;
  };
  std::vector<Piece> pieces;  // text
  bool operator==(const LogFormat&) const = default;
};

// A text template: "$name" or "${name}" for a field, "$$" for "$"; the
// error names the first unknown field or stray "$".
Result<LogFormat> parse_log_template(std::string_view text);
// The template back ("${name}" for each field).
std::string format_log_template(const LogFormat& format);

}  // namespace trellis
