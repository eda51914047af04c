// The overload manager's measures: how much the proxy has allocated, what
// limit it runs under, and what that means (OverloadLevel, observe/stats.h).
// The server applies the level once a second.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "proxy/observe/stats.h"

namespace trellis::proxy {

// What malloc holds, all arenas together (one walk of them: each arena's
// lock is taken while it is counted).
struct HeapUse {
  uint64_t allocated = 0;  // in use, mmapped blocks included
  uint64_t held_free = 0;  // freed but kept by malloc
};
HeapUse heap_use();

// The memory limit of the proxy's cgroup: v2 `memory.max`, else v1
// `memory.limit_in_bytes`; 0 when there is none.
uint64_t cgroup_memory_limit();

// The same from the text of /proc/self/cgroup, reading the limit files
// through `read` (nullopt: no such file). A v1 limit of 2^60 or more is the
// kernel's way of saying none.
using ReadFile = std::function<std::optional<std::string>(const std::string& path)>;
uint64_t cgroup_memory_limit(std::string_view proc_self_cgroup, const ReadFile& read);

// kRefuse at `limit`, kShedIdle from 90% of it; kNone without a limit.
OverloadLevel overload_level(uint64_t heap, uint64_t limit);

// The limit in force: `configured` when set, else 80% of the cgroup's.
uint64_t effective_heap_limit(const std::optional<uint64_t>& configured, uint64_t cgroup_limit);

}  // namespace trellis::proxy
