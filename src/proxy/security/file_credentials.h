// Credentials from files, for a sidecar without a control plane or a
// gateway: a certificate chain, its private key and a trust bundle, checked
// and built into the same TLS contexts as a CA-issued certificate, and
// reloaded when the files change (a tool that renews them, a Kubernetes
// secret updated in place).
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <ctime>
#include <memory>
#include <string>
#include <utility>

#include "common/result.h"
#include "proxy/security/certificate_metrics.h"
#include "proxy/security/tls_credentials.h"

namespace trellis::proxy {

struct CredentialFiles {
  std::string certificate_chain;  // PEM: the leaf, then its intermediates
  // Unencrypted PEM, readable by its owner only (mode 0600 or stricter).
  std::string private_key;
  std::string trust_bundle;  // PEM: the roots peers' chains may end at
};

// Main thread only: the owner calls reload_if_changed() from a timer and
// rebuilds its config snapshot when generation() changes.
class FileCredentials {
 public:
  // Files larger than this are refused: a mistaken path should not read a
  // disk image into memory.
  static constexpr size_t kMaxFileBytes = 1 << 20;

  // Reads and checks the three files: the key is mode 0600 or stricter (the
  // error says to chmod 600 otherwise) and matches the leaf; the leaf is
  // valid at `now`, chains to the bundle and, when `expected_identity` is
  // set, names exactly that URI. Errors name the file at fault and never
  // hold key material.
  static Result<FileCredentials> load(CredentialFiles files, SystemTime now, TlsProfile profile = {},
                                      std::string expected_identity = {});

  // Whether any file changed (inode, size, mtime or mode) since it was last
  // read; if so, all three are read and checked again. True: new
  // credentials are in force. False: nothing changed. An error: the new
  // files were refused (the message names the file) and the last good
  // credentials stay; the same files are not retried until one changes.
  Result<bool> reload_if_changed(SystemTime now);

  // Never null.
  const std::shared_ptr<const TlsCredentials>& current() const { return current_; }
  // 1 after load(); one more after each reload that installed new files.
  uint64_t generation() const { return current_->generation; }
  const CredentialFiles& files() const { return files_; }
  // Loads and reloads, the first one included, count as renewals.
  CertificateStats stats() const;

  // What identifies a file's content without reading it.
  struct Stamp {
    dev_t device = 0;
    ino_t inode = 0;
    off_t size = 0;
    timespec modified{};
    mode_t mode = 0;
    bool operator==(const Stamp& other) const;
  };

 private:
  FileCredentials(CredentialFiles files, TlsProfile profile, std::string expected_identity)
      : files_(std::move(files)),
        profile_(std::move(profile)),
        expected_identity_(std::move(expected_identity)) {}
  // Reads and checks the files; records what was read in seen_ either way.
  Result<std::shared_ptr<const TlsCredentials>> read_and_build(SystemTime now, uint64_t generation);
  std::array<Stamp, 3> current_stamps() const;

  CredentialFiles files_;
  TlsProfile profile_;
  std::string expected_identity_;
  std::shared_ptr<const TlsCredentials> current_;
  std::array<Stamp, 3> seen_{};  // certificate chain, key, trust bundle
  uint64_t loads_ok_ = 0;
  uint64_t loads_failed_ = 0;
};

// A small file read whole, with the checks the credential files get: a
// regular file of at most FileCredentials::kMaxFileBytes and, when `secret`
// (a key, a join token), readable by its owner only. Errors name `what`
// ("join token file /etc/trellis/token"), never the content; the caller
// wipes a secret's text when done.
Result<std::string> read_credential_file(const std::string& path, const std::string& what, bool secret);

}  // namespace trellis::proxy
