// The dashboard's files (src/control/ui/), built into trellis-control so it
// serves them with nothing to install beside it.
#pragma once

#include <string_view>

namespace trellis::control {

struct UiFile {
  std::string_view name;  // "index.html"
  std::string_view body;
};

// The file named `name`; nullptr when there is none.
const UiFile* find_ui_file(std::string_view name);

}  // namespace trellis::control
