#include "proxy/runtime/overload.h"

#include <malloc.h>

#include <charconv>
#include <fstream>
#include <sstream>

namespace trellis::proxy {

namespace {

std::optional<uint64_t> parse_bytes(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;  // "max", or junk
  return value;
}

}  // namespace

HeapUse heap_use() {
  struct mallinfo2 info = mallinfo2();
  return {info.uordblks + info.hblkhd, info.fordblks};
}

uint64_t cgroup_memory_limit(std::string_view proc_self_cgroup, const ReadFile& read) {
  // Lines are "<id>:<controllers>:<path>": v2 has id 0 and no controllers.
  std::optional<uint64_t> v1;
  while (!proc_self_cgroup.empty()) {
    size_t eol = proc_self_cgroup.find('\n');
    std::string_view line = proc_self_cgroup.substr(0, eol);
    proc_self_cgroup.remove_prefix(eol == std::string_view::npos ? proc_self_cgroup.size() : eol + 1);
    size_t first = line.find(':');
    size_t second = first == std::string_view::npos ? first : line.find(':', first + 1);
    if (second == std::string_view::npos) continue;
    std::string_view controllers = line.substr(first + 1, second - first - 1);
    std::string path(line.substr(second + 1));
    if (path == "/") path.clear();
    if (controllers.empty()) {
      if (auto text = read("/sys/fs/cgroup" + path + "/memory.max"))
        if (auto bytes = parse_bytes(*text)) return *bytes;
    } else if (controllers == "memory" || controllers.find("memory,") == 0 ||
               controllers.find(",memory") != std::string_view::npos) {
      if (auto text = read("/sys/fs/cgroup/memory" + path + "/memory.limit_in_bytes"))
        if (auto bytes = parse_bytes(*text); bytes && *bytes < (uint64_t{1} << 60)) v1 = *bytes;
    }
  }
  return v1.value_or(0);
}

uint64_t cgroup_memory_limit() {
  auto read = [](const std::string& path) -> std::optional<std::string> {
    std::ifstream in(path);
    if (!in) return std::nullopt;
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
  };
  auto self = read("/proc/self/cgroup");
  return self ? cgroup_memory_limit(*self, read) : 0;
}

OverloadLevel overload_level(uint64_t heap, uint64_t limit) {
  if (limit == 0) return OverloadLevel::kNone;
  if (heap >= limit) return OverloadLevel::kRefuse;
  if (heap >= limit / 10 * 9) return OverloadLevel::kShedIdle;
  return OverloadLevel::kNone;
}

uint64_t effective_heap_limit(const std::optional<uint64_t>& configured, uint64_t cgroup_limit) {
  if (configured) return *configured;
  return cgroup_limit / 10 * 8;
}

}  // namespace trellis::proxy
