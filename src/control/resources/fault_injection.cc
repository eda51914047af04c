// FaultInjection: faults a route rule injects into the requests it carries
// (an abort with a status, a delay, or both), for testing how callers cope.
// Referenced from an HTTPRoute rule's ExtensionRef filter.
#include "control/resources/kinds.h"

namespace trellis::control {

void validate_fault_injection(Checker& checker, const Json& spec_json) {
  MapReader spec = checker.map(spec_json, "spec", {"abort", "delay"});
  if (!spec.ok()) return;
  if (!spec.has("abort") && !spec.has("delay")) {
    spec.error_here("set abort, delay or both: a FaultInjection without either injects nothing");
  }
  if (std::optional<MapReader> abort = spec.map("abort", {"httpStatus", "percent"})) {
    abort->integer("httpStatus", 200, 599, Need::kRequired);
    abort->number("percent", 0, 100);
  }
  if (std::optional<MapReader> delay = spec.map("delay", {"fixedDelay", "percent"})) {
    delay->duration("fixedDelay", Need::kRequired, /*positive=*/true);
    delay->number("percent", 0, 100);
  }
}

}  // namespace trellis::control
