#include "proxy/security/file_credentials.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include <fmt/format.h>
#include <openssl/crypto.h>

#include "common/unique_fd.h"

namespace trellis::proxy {
namespace {

FileCredentials::Stamp stamp_of(const struct stat& info) {
  FileCredentials::Stamp stamp;
  stamp.device = info.st_dev;
  stamp.inode = info.st_ino;
  stamp.size = info.st_size;
  stamp.modified = info.st_mtim;
  stamp.mode = info.st_mode;
  return stamp;
}

// A missing file stamps as all zeros, so one that stays missing is not
// retried on every call.
FileCredentials::Stamp stamp_of_path(const std::string& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) return {};
  return stamp_of(info);
}

// A file's text, wiped when it goes away when it may be a private key.
struct FileText {
  explicit FileText(bool secret) : secret(secret) {}
  ~FileText() {
    if (secret) OPENSSL_cleanse(text.data(), text.size());
  }
  FileText(const FileText&) = delete;
  FileText& operator=(const FileText&) = delete;

  bool secret;
  std::string text;
  FileCredentials::Stamp stamp;
};

std::string system_reason(int error) { return std::strerror(error); }

// Reads `path` whole into `out`, recording what was read in out.stamp (or
// the path's stamp when it cannot be opened). The checks run on the opened
// file, so a swap between them and the read changes nothing. `what` names
// the file in errors ("key file /etc/trellis/key.pem").
Result<bool> read_file(const std::string& path, const std::string& what, FileText& out) {
  out.stamp = stamp_of_path(path);
  if (path.empty()) return make_error(what + ": no path given");
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (fd.get() < 0) return make_error(what + ": cannot open it: " + system_reason(errno));
  struct stat info {};
  if (::fstat(fd.get(), &info) != 0) return make_error(what + ": cannot stat it: " + system_reason(errno));
  out.stamp = stamp_of(info);
  if (!S_ISREG(info.st_mode)) return make_error(what + " is not a regular file");
  if (out.secret && (info.st_mode & 077) != 0) {
    return make_error(fmt::format(
        "{} may be read or written by group or others (mode {:04o}); a private key must be readable by its "
        "owner only: chmod 600 {}",
        what, info.st_mode & 07777, path));
  }
  if (static_cast<uint64_t>(info.st_size) > FileCredentials::kMaxFileBytes) {
    return make_error(what + " is larger than " + std::to_string(FileCredentials::kMaxFileBytes) + " bytes");
  }
  // One allocation of the size fstat gave, so a key's text is never copied
  // into a buffer that is freed unwiped; one more byte checks for the end.
  out.text.resize(static_cast<size_t>(info.st_size));
  size_t done = 0;
  while (done < out.text.size()) {
    ssize_t n = ::read(fd.get(), out.text.data() + done, out.text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return make_error(what + ": cannot read it: " + system_reason(errno));
    if (n == 0) return make_error(what + " changed while it was read; it will be read again when it changes");
    done += static_cast<size_t>(n);
  }
  char extra = 0;
  ssize_t n = 0;
  do {
    n = ::read(fd.get(), &extra, 1);
  } while (n < 0 && errno == EINTR);
  if (n != 0) return make_error(what + " changed while it was read; it will be read again when it changes");
  return true;
}

}  // namespace

bool FileCredentials::Stamp::operator==(const Stamp& other) const {
  return device == other.device && inode == other.inode && size == other.size &&
         modified.tv_sec == other.modified.tv_sec && modified.tv_nsec == other.modified.tv_nsec &&
         mode == other.mode;
}

Result<FileCredentials> FileCredentials::load(CredentialFiles files, SystemTime now, TlsProfile profile,
                                              std::string expected_identity) {
  FileCredentials credentials(std::move(files), std::move(profile), std::move(expected_identity));
  auto built = credentials.read_and_build(now, 1);
  if (!built) return built.error();
  credentials.current_ = std::move(*built);
  credentials.loads_ok_ = 1;
  return credentials;
}

Result<bool> FileCredentials::reload_if_changed(SystemTime now) {
  if (current_stamps() == seen_) return false;
  auto built = read_and_build(now, current_->generation + 1);
  if (!built) {
    ++loads_failed_;
    return built.error();
  }
  current_ = std::move(*built);
  ++loads_ok_;
  return true;
}

std::array<FileCredentials::Stamp, 3> FileCredentials::current_stamps() const {
  return {stamp_of_path(files_.certificate_chain), stamp_of_path(files_.private_key),
          stamp_of_path(files_.trust_bundle)};
}

Result<std::shared_ptr<const TlsCredentials>> FileCredentials::read_and_build(SystemTime now,
                                                                              uint64_t generation) {
  CredentialParts parts;
  parts.certificate_name = "certificate file " + files_.certificate_chain;
  parts.key_name = "key file " + files_.private_key;
  parts.bundle_name = "trust bundle file " + files_.trust_bundle;
  parts.expected_identity = expected_identity_;

  // All three are read, whatever fails, so that each one's stamp is what
  // was last seen of it.
  FileText certificate(false);
  FileText key(true);
  FileText bundle(false);
  Result<bool> read_certificate = read_file(files_.certificate_chain, parts.certificate_name, certificate);
  Result<bool> read_key = read_file(files_.private_key, parts.key_name, key);
  Result<bool> read_bundle = read_file(files_.trust_bundle, parts.bundle_name, bundle);
  seen_ = {certificate.stamp, key.stamp, bundle.stamp};
  if (!read_certificate) return read_certificate.error();
  if (!read_key) return read_key.error();
  if (!read_bundle) return read_bundle.error();

  auto chain = parse_certificates(certificate.text, parts.certificate_name);
  if (!chain) return chain.error();
  parts.chain = std::move(*chain);
  auto roots = parse_certificates(bundle.text, parts.bundle_name);
  if (!roots) return roots.error();
  parts.roots = std::move(*roots);
  auto private_key = parse_private_key(key.text, parts.key_name);
  if (!private_key) return private_key.error();
  parts.key = private_key->get();
  return build_tls_credentials(parts, profile_, now, generation);
}

CertificateStats FileCredentials::stats() const {
  CertificateStats stats;
  stats.not_after = current_->not_after;
  stats.renewals_ok = loads_ok_;
  stats.renewals_failed = loads_failed_;
  return stats;
}

Result<std::string> read_credential_file(const std::string& path, const std::string& what, bool secret) {
  FileText file(secret);
  if (Result<bool> read = read_file(path, what, file); !read) return read.error();
  return std::move(file.text);  // the caller owns the text now, and wipes it
}

}  // namespace trellis::proxy
