// The CA's file handling: reading certificates and private keys with the
// checks a key file deserves, and writing files so that a crash leaves either
// the old content or the new, and a key is never readable by anyone else,
// not even for an instant.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>

#include "common/result.h"

namespace trellis::control {

// Text that wipes its bytes when it goes away: a private key's PEM.
class SecretText {
 public:
  SecretText() = default;
  explicit SecretText(std::string text) : text_(std::move(text)) {}
  SecretText(const SecretText&) = delete;
  SecretText& operator=(const SecretText&) = delete;
  SecretText(SecretText&& other) noexcept : text_(std::move(other.text_)) { other.wipe(); }
  SecretText& operator=(SecretText&& other) noexcept;
  ~SecretText() { wipe(); }

  std::string_view view() const { return text_; }
  // Access for the one caller that hands the key on.
  std::string& text() { return text_; }

 private:
  void wipe();
  std::string text_;
};

// Files larger than this are refused: certificate chains and keys are a few
// kilobytes, and a mistaken path should not read a disk image into memory.
inline constexpr size_t kMaxCaFileBytes = 1 << 20;

// The whole file. Errors name the file and the system's reason.
Result<std::string> read_small_file(const std::string& path);

// The whole file, when it is a regular file that neither group nor others
// may read or write (errors say to chmod 600). The mode is checked on the
// opened file, so a swap between check and read changes nothing.
Result<SecretText> read_private_file(const std::string& path);

// Writes `content` to `path` atomically: a fresh temporary name opened with
// O_CREAT|O_EXCL and `mode` (so a key file is 0600 from its first moment),
// written, fsynced, renamed over `path`, and the directory fsynced. Errors
// name the file, never the content.
Result<bool> write_file_atomically(const std::string& path, std::string_view content, mode_t mode);

}  // namespace trellis::control
