#include "control/ca/certificate_authority.h"

#include <arpa/inet.h>
#include <openssl/rand.h>
#include <spdlog/spdlog.h>
#include <time.h>

#include <algorithm>
#include <ctime>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <utility>

#include "control/ca/certificate_builder.h"
#include "control/ca/files.h"
#include "control/ca/workload_csr.h"

namespace trellis::control {

// The directory's layout is in the header, at open(). state.json is the
// commit point: a step writes its new files first and state.json last, so a
// crash anywhere leaves the previous step in force. Root numbers count up
// with every rotation, so a new root never reuses a name.
namespace {

constexpr const char* kStateFile = "state.json";
constexpr const char* kBundleFile = "trust-bundle.pem";
constexpr int kStateVersion = 1;
constexpr int kMaxGeneration = 999999;  // six digits in root-<N>.*
constexpr mode_t kKeyMode = 0600;
constexpr mode_t kPublicMode = 0644;

std::string format_utc(SystemTime t) {
  std::time_t seconds = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char out[32];
  std::strftime(out, sizeof out, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return out;
}

std::string describe(std::chrono::seconds d) {
  auto count = d.count();
  auto unit = [&](int64_t size, const char* name) {
    int64_t n = count / size;
    return std::to_string(n) + " " + name + (n == 1 ? "" : "s");
  };
  if (count != 0 && count % 86400 == 0) return unit(86400, "day");
  if (count != 0 && count % 3600 == 0) return unit(3600, "hour");
  if (count != 0 && count % 60 == 0) return unit(60, "minute");
  return unit(1, "second");
}

CertificateSummary summarize(const X509* certificate) {
  return CertificateSummary{subject_line(certificate), sha256_fingerprint(certificate),
                            serial_hex(certificate), not_before(certificate), not_after(certificate)};
}

std::optional<RotationPhase> parse_phase(std::string_view name) {
  for (RotationPhase p :
       {RotationPhase::kIdle, RotationPhase::kNewRootTrusted, RotationPhase::kIssuingFromNew}) {
    if (name == rotation_phase_name(p)) return p;
  }
  return std::nullopt;
}

std::string_view next_step(RotationPhase phase) {
  switch (phase) {
    case RotationPhase::kIdle:
      return "begin";
    case RotationPhase::kNewRootTrusted:
      return "switch";
    case RotationPhase::kIssuingFromNew:
      return "finish";
  }
  return "?";
}

// A DNS name for the control plane's certificate: dot-separated labels of
// letters, digits and '-', in lower case. No wildcards: the control plane
// names itself exactly.
std::optional<std::string> check_dns_name(std::string_view name) {
  if (name.empty() || name.size() > 253) return "must be 1 to 253 characters";
  size_t start = 0;
  while (true) {
    size_t dot = name.find('.', start);
    std::string_view label = name.substr(start, dot == std::string_view::npos ? dot : dot - start);
    if (label.empty() || label.size() > 63) return "has a label that is empty or longer than 63 characters";
    for (char c : label) {
      bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
      if (!ok) return "may hold only lower-case letters, digits, '-' and '.'";
    }
    if (label.front() == '-' || label.back() == '-') return "has a label starting or ending with '-'";
    if (dot == std::string_view::npos) return std::nullopt;
    start = dot + 1;
  }
}

Result<std::vector<unsigned char>> parse_ip(const std::string& text) {
  unsigned char bytes[16];
  if (inet_pton(AF_INET, text.c_str(), bytes) == 1) return std::vector<unsigned char>(bytes, bytes + 4);
  if (inet_pton(AF_INET6, text.c_str(), bytes) == 1) return std::vector<unsigned char>(bytes, bytes + 16);
  return make_error("\"" + text + "\" is not an IPv4 or IPv6 address");
}

Result<std::string> random_hex(size_t bytes) {
  std::vector<unsigned char> raw(bytes);
  if (RAND_bytes(raw.data(), static_cast<int>(raw.size())) != 1) return make_error("no randomness available");
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : raw) {
    out += kDigits[b >> 4];
    out += kDigits[b & 0xf];
  }
  return out;
}

Error in_file(const std::string& path, const Error& error) { return make_error(path + ": " + error.message); }

// N for "root-<N>.key" or "root-<N>.crt", exactly; nothing for other names.
std::optional<int> root_generation(std::string_view name) {
  constexpr std::string_view kPrefix = "root-";
  if (name.size() < kPrefix.size() + 5 || name.substr(0, kPrefix.size()) != kPrefix) return std::nullopt;
  std::string_view extension = name.substr(name.size() - 4);
  if (extension != ".key" && extension != ".crt") return std::nullopt;
  std::string_view digits = name.substr(kPrefix.size(), name.size() - kPrefix.size() - 4);
  if (digits.empty() || digits.size() > 6 || digits.front() == '0') return std::nullopt;  // kMaxGeneration
  int n = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + (c - '0');
  }
  return n;
}

// Every root-<N>.{key,crt} in the directory, by N.
std::vector<int> root_files(const std::string& directory) {
  std::vector<int> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(directory, ec)) {
    if (auto n = root_generation(entry.path().filename().string())) out.push_back(*n);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace

struct CertificateAuthority::Root {
  int generation = 0;  // own roots: N in root-<N>.*; 0 for an operator's root
  UniqueX509 certificate;
  UniquePkey key;  // null for an operator's root: the CA never holds it
};

struct CertificateAuthority::State {
  RotationPhase phase = RotationPhase::kIdle;
  std::vector<int> roots;  // generations in the bundle, oldest first
  int issuing = 0;
  int64_t switched_at_ms = 0;
};

std::string_view ca_mode_name(CaMode mode) {
  return mode == CaMode::kOwnRoot ? "own-root" : "operator-intermediate";
}

std::string_view rotation_phase_name(RotationPhase phase) {
  switch (phase) {
    case RotationPhase::kIdle:
      return "idle";
    case RotationPhase::kNewRootTrusted:
      return "new-root-trusted";
    case RotationPhase::kIssuingFromNew:
      return "issuing-from-new";
  }
  return "?";
}

CertificateAuthority::CertificateAuthority(CaMode mode, std::string trust_domain, const WallClock& clock)
    : mode_(mode), trust_domain_(std::move(trust_domain)), clock_(clock) {}

CertificateAuthority::~CertificateAuthority() = default;

SystemTime CertificateAuthority::now() const {
  return SystemTime{} + std::chrono::milliseconds(clock_.now_ms());
}

std::string CertificateAuthority::root_path(int generation, std::string_view extension) const {
  return (std::filesystem::path(directory_) / ("root-" + std::to_string(generation) + std::string(extension)))
      .string();
}

// ---- opening ---------------------------------------------------------------

Result<std::unique_ptr<CertificateAuthority>> CertificateAuthority::open(const std::string& directory,
                                                                         const std::string& trust_domain,
                                                                         const WallClock& clock) {
  if (auto problem = SpiffeId::check_trust_domain(trust_domain)) return make_error("CA: " + *problem);
  if (directory.empty()) return make_error("CA directory: must not be empty");
  std::error_code ec;
  bool created = std::filesystem::create_directories(directory, ec);
  if (ec) return make_error("CA directory " + directory + ": " + ec.message());
  if (created) {
    std::filesystem::permissions(directory, std::filesystem::perms::owner_all,
                                 std::filesystem::perm_options::replace, ec);
    if (ec) return make_error("CA directory " + directory + ": " + ec.message());
  }

  std::unique_ptr<CertificateAuthority> ca(new CertificateAuthority(CaMode::kOwnRoot, trust_domain, clock));
  ca->directory_ = directory;
  bool has_state = std::filesystem::exists(std::filesystem::path(directory) / kStateFile, ec);
  if (ec) return make_error("CA directory " + directory + ": " + ec.message());
  if (has_state) {
    if (auto loaded = ca->load_state(); !loaded) return loaded.error();
  } else {
    std::vector<int> found = root_files(directory);
    // Root 1 alone is what a first start leaves when it stops short of
    // state.json, and what state.json would say: carry on with it. Anything
    // else without state.json is a directory someone took apart, and
    // replacing a root every proxy trusts must not happen silently.
    if (found == std::vector<int>{1}) {
      if (auto adopted = ca->adopt_first_root(); !adopted) return adopted.error();
    } else if (found.empty()) {
      if (auto made = ca->create_first_root(); !made) return made.error();
    } else {
      return make_error(
          "CA directory " + directory + " holds root-" + std::to_string(found.back()) + " files but no " +
          kStateFile +
          ": restore it, or remove the root-* files to start over with a new root (every proxy then "
          "needs new certificates)");
    }
  }
  ca->refresh_bundle();

  // trust-bundle.pem is derived from state.json; a crash between the two
  // leaves it behind, so it is brought up to date on every start.
  std::string bundle_path = (std::filesystem::path(directory) / kBundleFile).string();
  Result<std::string> on_disk = read_small_file(bundle_path);
  if (!on_disk || *on_disk != ca->bundle_pem_) {
    if (auto written = ca->write_trust_bundle(); !written) return written.error();
  }
  ca->remove_unused_files();
  return ca;
}

Result<bool> CertificateAuthority::create_first_root() {
  Result<std::unique_ptr<Root>> root = make_root(1);
  if (!root) return root.error();
  if (auto saved = save_root(**root); !saved) return saved.error();
  State state{RotationPhase::kIdle, {1}, 1, 0};
  if (auto saved = save_state(state); !saved) return saved.error();
  roots_.push_back(std::move(*root));
  issuing_root_ = 0;
  phase_ = RotationPhase::kIdle;
  const X509* c = roots_.back()->certificate.get();
  spdlog::info("CA: created a new mesh root ({}, SHA-256 {}, valid until {}) in {}", subject_line(c),
               sha256_fingerprint(c), format_utc(not_after(c)), directory_);
  return true;
}

Result<bool> CertificateAuthority::adopt_first_root() {
  Result<std::unique_ptr<Root>> root = load_root(1);
  if (!root) {
    return make_error("CA: " + root.error().message + " (found root-1 files but no " + kStateFile +
                      "; remove them to start over with a new root)");
  }
  State state{RotationPhase::kIdle, {1}, 1, 0};
  if (auto saved = save_state(state); !saved) return saved.error();
  roots_.push_back(std::move(*root));
  spdlog::info("CA: completed the setup of root 1 in {}, cut short by an earlier stop", directory_);
  return true;
}

void CertificateAuthority::remove_unused_files() const {
  // Roots that state.json does not name are retired or never finished (an
  // interrupted begin), and temporary files are what a crash left half way:
  // neither is of use, and either may hold a key.
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(directory_, ec)) {
    std::string name = entry.path().filename().string();
    std::optional<int> generation = root_generation(name);
    bool unused_root = generation && std::none_of(roots_.begin(), roots_.end(), [&](const auto& root) {
                         return root->generation == *generation;
                       });
    bool leftover = name.find(".tmp-") != std::string::npos;
    if (unused_root || leftover) {
      std::error_code removed;
      std::filesystem::remove(entry.path(), removed);
    }
  }
}

void CertificateAuthority::refresh_bundle() {
  bundle_pem_.clear();
  for (const auto& root : roots_) bundle_pem_ += certificate_pem(root->certificate.get());
}

Result<std::unique_ptr<CertificateAuthority::Root>> CertificateAuthority::make_root(int generation) const {
  Result<UniquePkey> key = generate_p256_key();
  if (!key) return key.error();
  Result<std::string> suffix = random_hex(4);
  if (!suffix) return suffix.error();
  CertificateTemplate spec;
  spec.public_key = key->get();
  // The random suffix tells roots apart in tools that show only the subject.
  spec.subject = {{"O", "Trellis"}, {"CN", "Trellis mesh root " + *suffix}};
  SystemTime t = now();
  spec.not_before = t - kClockSkew;
  spec.not_after = t + kRootLifetime;
  spec.ca = true;
  Result<UniqueX509> certificate = build_certificate(spec, nullptr, key->get());
  if (!certificate) return make_error("CA: cannot make a root: " + certificate.error().message);
  auto root = std::make_unique<Root>();
  root->generation = generation;
  root->certificate = std::move(*certificate);
  root->key = std::move(*key);
  return root;
}

Result<bool> CertificateAuthority::save_root(const Root& root) const {
  SecretText key(private_key_pem(root.key.get()));
  if (key.view().empty()) return make_error("CA: cannot encode a root key: " + openssl_reason());
  // The key first: a certificate on disk without its key would be useless.
  if (auto written = write_file_atomically(root_path(root.generation, ".key"), key.view(), kKeyMode);
      !written) {
    return written.error();
  }
  return write_file_atomically(root_path(root.generation, ".crt"), certificate_pem(root.certificate.get()),
                               kPublicMode);
}

Result<std::unique_ptr<CertificateAuthority::Root>> CertificateAuthority::load_root(int generation) const {
  std::string cert_path = root_path(generation, ".crt");
  Result<std::string> cert_text = read_small_file(cert_path);
  if (!cert_text) return cert_text.error();
  Result<std::vector<UniqueX509>> certificates = parse_pem_certificates(*cert_text);
  if (!certificates) return in_file(cert_path, certificates.error());
  if (certificates->size() != 1) return make_error(cert_path + ": holds more than one certificate");
  UniqueX509 certificate = std::move(certificates->front());
  if (!is_self_signed(certificate.get()))
    return make_error(cert_path + ": not a self-signed root certificate");
  if (auto can_sign = check_can_sign_certificates(certificate.get()); !can_sign) {
    return in_file(cert_path, can_sign.error());
  }

  std::string key_path = root_path(generation, ".key");
  Result<SecretText> key_text = read_private_file(key_path);
  if (!key_text) return key_text.error();
  Result<UniquePkey> key = parse_pem_private_key(key_text->view());
  if (!key) return in_file(key_path, key.error());
  if (!key_matches_certificate(key->get(), certificate.get())) {
    return make_error(key_path + ": the key does not match the certificate in " + cert_path);
  }
  auto root = std::make_unique<Root>();
  root->generation = generation;
  root->certificate = std::move(certificate);
  root->key = std::move(*key);
  return root;
}

Result<bool> CertificateAuthority::load_state() {
  std::string path = (std::filesystem::path(directory_) / kStateFile).string();
  Result<std::string> text = read_small_file(path);
  if (!text) return text.error();
  nlohmann::json json = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  auto bad = [&](const std::string& why) { return make_error(path + ": " + why); };
  if (json.is_discarded() || !json.is_object()) return bad("not a JSON object");
  if (!json.contains("version") || json["version"] != kStateVersion) {
    return bad("unknown version (this trellis-control reads version " + std::to_string(kStateVersion) + ")");
  }
  State state;
  nlohmann::json phase = json.value("phase", nlohmann::json());
  std::optional<RotationPhase> parsed =
      phase.is_string() ? parse_phase(phase.get<std::string>()) : std::nullopt;
  if (!parsed) return bad("\"phase\" must be idle, new-root-trusted or issuing-from-new");
  state.phase = *parsed;
  nlohmann::json roots = json.value("roots", nlohmann::json());
  if (!roots.is_array()) return bad("\"roots\" must be a list of root numbers");
  for (const auto& r : roots) {
    if (!r.is_number_integer() || r.get<int64_t>() < 1 || r.get<int64_t>() > kMaxGeneration) {
      return bad("\"roots\" must hold root numbers from 1");
    }
    state.roots.push_back(r.get<int>());
  }
  nlohmann::json issuing = json.value("issuing", nlohmann::json());
  if (!issuing.is_number_integer()) return bad("\"issuing\" must be a root number");
  state.issuing = issuing.get<int>();
  nlohmann::json switched = json.value("switched_at_ms", nlohmann::json(0));
  if (!switched.is_number_integer()) return bad("\"switched_at_ms\" must be an integer");
  state.switched_at_ms = switched.get<int64_t>();

  // The shape each phase has; anything else was not written by this CA.
  size_t expected_roots = state.phase == RotationPhase::kIdle ? 1 : 2;
  if (state.roots.size() != expected_roots) {
    return bad("phase " + std::string(rotation_phase_name(state.phase)) + " has " +
               std::to_string(expected_roots) + " root(s) in the bundle, the file names " +
               std::to_string(state.roots.size()));
  }
  if (state.roots.size() == 2 && state.roots[0] >= state.roots[1]) {
    return bad("\"roots\" must be oldest first");
  }
  int expected_issuing =
      state.phase == RotationPhase::kIssuingFromNew ? state.roots.back() : state.roots.front();
  if (state.issuing != expected_issuing) {
    return bad("in phase " + std::string(rotation_phase_name(state.phase)) + " root " +
               std::to_string(expected_issuing) + " issues, the file says " + std::to_string(state.issuing));
  }

  for (int generation : state.roots) {
    Result<std::unique_ptr<Root>> root = load_root(generation);
    if (!root) return make_error("CA: " + root.error().message);
    roots_.push_back(std::move(*root));
  }
  phase_ = state.phase;
  issuing_root_ = state.phase == RotationPhase::kIssuingFromNew ? 1 : 0;
  switched_at_ms_ = state.switched_at_ms;
  const X509* issuer = roots_[issuing_root_]->certificate.get();
  spdlog::info(
      "CA: {} root(s) in the trust bundle, rotation {}, issuing from {} (SHA-256 {}, valid until {})",
      roots_.size(), rotation_phase_name(phase_), subject_line(issuer), sha256_fingerprint(issuer),
      format_utc(not_after(issuer)));
  return true;
}

CertificateAuthority::State CertificateAuthority::current_state() const {
  State state;
  state.phase = phase_;
  for (const auto& root : roots_) state.roots.push_back(root->generation);
  state.issuing = roots_.empty() ? 0 : roots_[issuing_root_]->generation;
  state.switched_at_ms = switched_at_ms_;
  return state;
}

Result<bool> CertificateAuthority::save_state(const State& state) const {
  nlohmann::json json = {{"version", kStateVersion},
                         {"phase", std::string(rotation_phase_name(state.phase))},
                         {"roots", state.roots},
                         {"issuing", state.issuing}};
  if (state.phase == RotationPhase::kIssuingFromNew) json["switched_at_ms"] = state.switched_at_ms;
  return write_file_atomically((std::filesystem::path(directory_) / kStateFile).string(), json.dump(2) + "\n",
                               kPublicMode);
}

Result<bool> CertificateAuthority::write_trust_bundle() const {
  return write_file_atomically((std::filesystem::path(directory_) / kBundleFile).string(), bundle_pem_,
                               kPublicMode);
}

Result<std::unique_ptr<CertificateAuthority>> CertificateAuthority::with_intermediate(
    const std::string& certificate_file, const std::string& key_file, const std::string& trust_domain,
    const WallClock& clock) {
  if (auto problem = SpiffeId::check_trust_domain(trust_domain)) return make_error("CA: " + *problem);
  Result<std::string> text = read_small_file(certificate_file);
  if (!text) return text.error();
  Result<std::vector<UniqueX509>> certificates = parse_pem_certificates(*text);
  if (!certificates) return in_file(certificate_file, certificates.error());
  std::vector<UniqueX509>& chain = *certificates;
  const X509* intermediate = chain.front().get();
  const X509* root = chain.back().get();

  Result<SecretText> key_text = read_private_file(key_file);
  if (!key_text) return key_text.error();
  Result<UniquePkey> key = parse_pem_private_key(key_text->view());
  if (!key) return in_file(key_file, key.error());
  if (!key_matches_certificate(key->get(), intermediate)) {
    return make_error(key_file + ": the key does not match the first certificate in " + certificate_file +
                      " (" + subject_line(intermediate) + ")");
  }
  // Leaves are signed with SHA-256, which Ed25519 and Ed448 keys do not take.
  if (EVP_PKEY_is_a(key->get(), "EC") != 1 && EVP_PKEY_is_a(key->get(), "RSA") != 1) {
    return make_error(key_file + ": the intermediate's key is " + describe_key(key->get()) +
                      "; an ECDSA or RSA key is required");
  }
  if (EVP_PKEY_is_a(key->get(), "RSA") == 1 && EVP_PKEY_get_bits(key->get()) < 2048) {
    return make_error(key_file + ": the intermediate's key is " + describe_key(key->get()) +
                      "; RSA keys must have at least 2048 bits");
  }
  if (auto can_sign = check_can_sign_certificates(intermediate); !can_sign) {
    return make_error(certificate_file + ": the first certificate (" + subject_line(intermediate) + ") " +
                      can_sign.error().message);
  }
  if (!is_self_signed(root)) {
    return make_error(certificate_file + ": the last certificate (" + subject_line(root) +
                      ") is not self-signed; the file must hold the intermediate, then its chain up to and "
                      "including the organisation's root");
  }
  SystemTime t = SystemTime{} + std::chrono::milliseconds(clock.now_ms());
  if (t < not_before(intermediate) || t >= not_after(intermediate)) {
    return make_error(certificate_file + ": the intermediate (" + subject_line(intermediate) +
                      ") is valid from " + format_utc(not_before(intermediate)) + " to " +
                      format_utc(not_after(intermediate)) + ", not now (" + format_utc(t) + ")");
  }
  std::vector<const X509*> untrusted;
  for (size_t i = 1; i + 1 < chain.size(); ++i) untrusted.push_back(chain[i].get());
  if (auto verified = verify_chain(intermediate, untrusted, {root}, t); !verified) {
    return make_error(certificate_file +
                      ": the chain does not verify to its root: " + verified.error().message);
  }

  std::unique_ptr<CertificateAuthority> ca(
      new CertificateAuthority(CaMode::kOperatorIntermediate, trust_domain, clock));
  auto trusted = std::make_unique<Root>();
  trusted->certificate = std::move(chain.back());
  chain.pop_back();
  ca->roots_.push_back(std::move(trusted));
  // A self-signed "intermediate" is the operator's root itself: nothing to
  // send along.
  if (!chain.empty()) {
    ca->intermediate_ = std::move(chain.front());
    for (size_t i = 1; i < chain.size(); ++i) ca->intermediate_chain_.push_back(std::move(chain[i]));
    ca->chain_pem_ = certificate_pem(ca->intermediate_.get());
    for (const auto& c : ca->intermediate_chain_) ca->chain_pem_ += certificate_pem(c.get());
  } else {
    ca->intermediate_.reset(X509_dup(ca->roots_.front()->certificate.get()));
  }
  ca->intermediate_key_ = std::move(*key);
  ca->refresh_bundle();
  spdlog::info("CA: issuing from the operator's intermediate {} (SHA-256 {}, valid until {}), root {}",
               subject_line(ca->intermediate_.get()), sha256_fingerprint(ca->intermediate_.get()),
               format_utc(not_after(ca->intermediate_.get())),
               subject_line(ca->roots_.front()->certificate.get()));
  return ca;
}

// ---- issuing ---------------------------------------------------------------

const X509* CertificateAuthority::issuer_certificate() const {
  if (mode_ == CaMode::kOperatorIntermediate) return intermediate_.get();
  return roots_[issuing_root_]->certificate.get();
}

const EVP_PKEY* CertificateAuthority::issuer_key() const {
  if (mode_ == CaMode::kOperatorIntermediate) return intermediate_key_.get();
  return roots_[issuing_root_]->key.get();
}

SystemTime CertificateAuthority::issuer_chain_not_after() const {
  SystemTime end = not_after(issuer_certificate());
  if (mode_ == CaMode::kOperatorIntermediate) {
    for (const auto& c : intermediate_chain_) end = std::min(end, not_after(c.get()));
    end = std::min(end, not_after(roots_.front()->certificate.get()));
  }
  return end;
}

Result<IssuedCertificate> CertificateAuthority::issue(const EVP_PKEY* public_key,
                                                      std::vector<std::string> uris,
                                                      std::vector<std::string> dns_names,
                                                      std::vector<std::vector<unsigned char>> ip_addresses,
                                                      std::chrono::seconds lifetime,
                                                      std::chrono::seconds max_lifetime) const {
  if (lifetime < kMinLifetime) {
    return make_error("the lifetime " + describe(lifetime) + " is shorter than the minimum " +
                      describe(kMinLifetime));
  }
  if (lifetime > max_lifetime) {
    return make_error("the lifetime " + describe(lifetime) + " is longer than the maximum " +
                      describe(max_lifetime));
  }
  const X509* issuer = issuer_certificate();
  SystemTime t = now();
  SystemTime issuer_start = not_before(issuer);
  SystemTime chain_end = issuer_chain_not_after();
  if (t < issuer_start) {
    return make_error("the issuing CA certificate is not valid before " + format_utc(issuer_start) +
                      " (is the clock right?)");
  }
  if (chain_end - t < kMinLifetime) {
    return make_error("the issuing CA certificate or its chain expires at " + format_utc(chain_end) +
                      "; rotate the CA");
  }

  CertificateTemplate spec;
  spec.public_key = public_key;
  spec.not_before = std::max(t - kClockSkew, issuer_start);
  spec.not_after = std::min(t + lifetime, chain_end);
  spec.uris = std::move(uris);
  spec.dns_names = std::move(dns_names);
  spec.ip_addresses = std::move(ip_addresses);
  Result<UniqueX509> certificate = build_certificate(spec, issuer, issuer_key());
  if (!certificate) return certificate.error();

  IssuedCertificate out;
  out.certificate_pem = certificate_pem(certificate->get());
  out.chain_pem = chain_pem_;
  out.trust_bundle_pem = bundle_pem_;
  out.not_before = not_before(certificate->get());
  out.not_after = not_after(certificate->get());
  out.serial = serial_hex(certificate->get());
  return out;
}

Result<IssuedCertificate> CertificateAuthority::sign_workload(std::string_view csr_pem,
                                                              const SpiffeId& entitled,
                                                              std::chrono::seconds lifetime) const {
  if (entitled.trust_domain != trust_domain_) {
    return make_error("the identity \"" + entitled.to_string() + "\" is not in this CA's trust domain \"" +
                      trust_domain_ + "\"");
  }
  if (entitled.namespace_ == kControlNamespace) {
    return make_error("the namespace \"" + std::string(kControlNamespace) +
                      "\" is reserved for the control plane: no workload is issued a certificate in it");
  }
  Result<UniquePkey> key = check_workload_csr(csr_pem, entitled);
  if (!key) return key.error();
  return issue(key->get(), {entitled.to_string()}, {}, {}, lifetime, kMaxWorkloadLifetime);
}

bool CertificateAuthority::issued_by_current(std::string_view certificate_pem) const {
  auto certificates = parse_pem_certificates(certificate_pem);
  if (!certificates || certificates->empty()) return false;
  EVP_PKEY* key = X509_get0_pubkey(issuer_certificate());
  return key != nullptr && X509_verify((*certificates)[0].get(), key) == 1;
}

Result<ServerCredentials> CertificateAuthority::issue_server(const std::vector<std::string>& dns_names,
                                                             const std::vector<std::string>& ip_addresses,
                                                             std::chrono::seconds lifetime) const {
  for (const std::string& name : dns_names) {
    if (auto problem = check_dns_name(name)) return make_error("DNS name \"" + name + "\" " + *problem);
  }
  std::vector<std::vector<unsigned char>> ips;
  for (const std::string& text : ip_addresses) {
    Result<std::vector<unsigned char>> ip = parse_ip(text);
    if (!ip) return ip.error();
    ips.push_back(std::move(*ip));
  }
  Result<SpiffeId> identity = SpiffeId::make(trust_domain_, kControlNamespace, kControlServiceAccount);
  if (!identity) return identity.error();
  Result<UniquePkey> key = generate_p256_key();
  if (!key) return key.error();
  Result<IssuedCertificate> issued =
      issue(key->get(), {identity->to_string()}, dns_names, std::move(ips), lifetime, kMaxServerLifetime);
  if (!issued) return issued.error();
  ServerCredentials out;
  out.private_key_pem = private_key_pem(key->get());
  if (out.private_key_pem.empty()) return make_error("cannot encode the server key: " + openssl_reason());
  out.certificate = std::move(*issued);
  return out;
}

std::string CertificateAuthority::trust_bundle_pem() const { return bundle_pem_; }

CaStatus CertificateAuthority::status() const {
  CaStatus status;
  status.mode = mode_;
  status.phase = phase_;
  status.trust_domain = trust_domain_;
  for (const auto& root : roots_) status.roots.push_back(summarize(root->certificate.get()));
  status.issuer = summarize(issuer_certificate());
  if (phase_ == RotationPhase::kIssuingFromNew) {
    status.old_root_leaves_valid_until =
        SystemTime{} + std::chrono::milliseconds(switched_at_ms_) + kMaxWorkloadLifetime;
  }
  return status;
}

// ---- rotation --------------------------------------------------------------

Result<bool> CertificateAuthority::check_can_rotate(RotationPhase expected, std::string_view step) const {
  if (mode_ == CaMode::kOperatorIntermediate) {
    return make_error(
        "cannot " + std::string(step) +
        " a root rotation: this CA issues from an operator's intermediate; rotate it in your own PKI "
        "and restart trellis-control with the new files");
  }
  if (phase_ != expected) {
    return make_error("cannot " + std::string(step) + " a root rotation: the rotation is at " +
                      std::string(rotation_phase_name(phase_)) + ", the next step is " +
                      std::string(next_step(phase_)));
  }
  return true;
}

Result<CaStatus> CertificateAuthority::begin_rotation() {
  if (auto ok = check_can_rotate(RotationPhase::kIdle, "begin"); !ok) return ok.error();
  int generation = roots_.back()->generation + 1;
  Result<std::unique_ptr<Root>> root = make_root(generation);
  if (!root) return root.error();
  if (auto saved = save_root(**root); !saved) return saved.error();
  State next = current_state();
  next.phase = RotationPhase::kNewRootTrusted;
  next.roots.push_back(generation);
  if (auto saved = save_state(next); !saved) return saved.error();
  roots_.push_back(std::move(*root));
  phase_ = RotationPhase::kNewRootTrusted;
  refresh_bundle();
  if (auto written = write_trust_bundle(); !written) {
    spdlog::warn("CA: {} (rewritten at the next start)", written.error().message);
  }
  const X509* c = roots_.back()->certificate.get();
  spdlog::info("CA: root rotation begun: new root {} (SHA-256 {}) trusted, still issuing from the old one",
               subject_line(c), sha256_fingerprint(c));
  return status();
}

Result<CaStatus> CertificateAuthority::switch_issuer() {
  if (auto ok = check_can_rotate(RotationPhase::kNewRootTrusted, "switch"); !ok) return ok.error();
  State next = current_state();
  next.phase = RotationPhase::kIssuingFromNew;
  next.issuing = roots_.back()->generation;
  next.switched_at_ms = clock_.now_ms();
  if (auto saved = save_state(next); !saved) return saved.error();
  phase_ = RotationPhase::kIssuingFromNew;
  issuing_root_ = roots_.size() - 1;
  switched_at_ms_ = next.switched_at_ms;
  spdlog::info("CA: root rotation: now issuing from the new root (SHA-256 {})",
               sha256_fingerprint(roots_.back()->certificate.get()));
  return status();
}

Result<CaStatus> CertificateAuthority::finish_rotation(bool force) {
  if (auto ok = check_can_rotate(RotationPhase::kIssuingFromNew, "finish"); !ok) return ok.error();
  SystemTime old_leaves_end = *status().old_root_leaves_valid_until;
  if (!force && now() < old_leaves_end) {
    return make_error(
        "cannot finish the root rotation yet: certificates signed by the old root may be valid until " +
        format_utc(old_leaves_end) +
        " and would stop verifying; finish after that, or force it once every proxy has renewed");
  }
  State next = current_state();
  next.phase = RotationPhase::kIdle;
  next.roots.erase(next.roots.begin());
  next.switched_at_ms = 0;
  if (auto saved = save_state(next); !saved) return saved.error();
  int retired = roots_.front()->generation;
  std::string retired_fingerprint = sha256_fingerprint(roots_.front()->certificate.get());
  roots_.erase(roots_.begin());
  issuing_root_ = 0;
  phase_ = RotationPhase::kIdle;
  switched_at_ms_ = 0;
  refresh_bundle();
  if (auto written = write_trust_bundle(); !written) {
    spdlog::warn("CA: {} (rewritten at the next start)", written.error().message);
  }
  // The retired key is of no further use; should removing it fail,
  // remove_unused_files() does at the next start.
  std::error_code ec;
  std::filesystem::remove(root_path(retired, ".key"), ec);
  std::filesystem::remove(root_path(retired, ".crt"), ec);
  spdlog::info("CA: root rotation finished: old root (SHA-256 {}) removed from the trust bundle",
               retired_fingerprint);
  return status();
}

}  // namespace trellis::control
