#include "control/ca/files.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "common/unique_fd.h"

namespace trellis::control {
namespace {

std::string system_reason() { return std::strerror(errno); }

// Reads all of `fd` into `out`, sized from fstat first so that a key is not
// copied around by the string growing.
Result<bool> read_all(int fd, const struct stat& info, const std::string& path, std::string& out) {
  if (static_cast<size_t>(info.st_size) > kMaxCaFileBytes) {
    return make_error(path + ": larger than " + std::to_string(kMaxCaFileBytes) +
                      " bytes, too large for a certificate, key or state file");
  }
  out.assign(static_cast<size_t>(info.st_size), '\0');
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::read(fd, out.data() + done, out.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return make_error("cannot read " + path + ": " + system_reason());
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  out.resize(done);
  return true;
}

Result<int> open_regular(const std::string& path, struct stat& info) {
  // O_NONBLOCK: a FIFO at the path must not hang the start; regular files ignore it.
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (fd.get() < 0) return make_error("cannot open " + path + ": " + system_reason());
  if (::fstat(fd.get(), &info) != 0) return make_error("cannot stat " + path + ": " + system_reason());
  if (!S_ISREG(info.st_mode)) return make_error(path + ": not a regular file");
  return fd.release();
}

}  // namespace

SecretText& SecretText::operator=(SecretText&& other) noexcept {
  if (this != &other) {
    wipe();
    text_ = std::move(other.text_);
    other.wipe();
  }
  return *this;
}

void SecretText::wipe() {
  if (!text_.empty()) OPENSSL_cleanse(text_.data(), text_.size());
  text_.clear();
}

Result<std::string> read_small_file(const std::string& path) {
  struct stat info {};
  Result<int> opened = open_regular(path, info);
  if (!opened) return opened.error();
  UniqueFd fd(*opened);
  std::string content;
  if (auto read = read_all(fd.get(), info, path, content); !read) return read.error();
  return content;
}

Result<SecretText> read_private_file(const std::string& path) {
  struct stat info {};
  Result<int> opened = open_regular(path, info);
  if (!opened) return opened.error();
  UniqueFd fd(*opened);
  if ((info.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(info.st_mode & 07777));
    return make_error("private key file " + path + " has mode " + mode +
                      ", open to group or others; it must be readable by its owner only: run chmod 600 " +
                      path);
  }
  SecretText secret;
  if (auto read = read_all(fd.get(), info, path, secret.text()); !read) return read.error();
  return secret;
}

Result<bool> write_file_atomically(const std::string& path, std::string_view content, mode_t mode) {
  std::filesystem::path target(path);
  std::string temp = path + ".tmp-" + std::to_string(::getpid());
  ::unlink(temp.c_str());  // a leftover of a crash half way; ours, in our directory
  // O_EXCL: the mode applies because the file is new; O_NOFOLLOW: the name
  // cannot be a planted link to somewhere else.
  UniqueFd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode));
  if (fd.get() < 0) return make_error("cannot create " + temp + ": " + system_reason());
  auto fail = [&](const std::string& what) -> Result<bool> {
    std::string reason = system_reason();
    ::unlink(temp.c_str());
    return make_error("cannot " + what + " " + temp + ": " + reason);
  };
  for (size_t done = 0; done < content.size();) {
    ssize_t n = ::write(fd.get(), content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail("write");
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd.get()) != 0) return fail("sync");
  if (::close(fd.release()) != 0) return fail("close");
  if (::rename(temp.c_str(), path.c_str()) != 0) return fail("rename into place");
  // The rename is durable only once the directory is.
  std::string directory = target.has_parent_path() ? target.parent_path().string() : ".";
  UniqueFd dir(::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir.get() >= 0) ::fsync(dir.get());
  return true;
}

}  // namespace trellis::control
