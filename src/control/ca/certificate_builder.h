// Makes X.509 certificates of the two shapes the mesh CA signs: CA
// certificates (its roots) and end-entity certificates (workloads and the
// control plane's own server). The caller decides names, keys and validity;
// this unit fixes the extensions each shape carries.
#pragma once

#include <array>
#include <string>
#include <utility>
#include <vector>

#include "common/result.h"
#include "control/ca/x509.h"

namespace trellis::control {

struct CertificateTemplate {
  // The key the certificate certifies (only its public half is used).
  const EVP_PKEY* public_key = nullptr;
  // Relative distinguished names in order, e.g. {{"O", "Trellis"}}. Empty
  // for a workload, whose identity is its URI SAN alone.
  std::vector<std::pair<std::string, std::string>> subject;
  SystemTime not_before;
  SystemTime not_after;
  // CA: basicConstraints CA:TRUE and keyUsage keyCertSign|cRLSign, both
  // critical. End entity: basicConstraints CA:FALSE and keyUsage
  // digitalSignature, both critical, extendedKeyUsage serverAuth+clientAuth.
  bool ca = false;
  // Subject alternative names, already validated by the caller. Critical
  // when the subject is empty (RFC 5280, 4.2.1.6).
  std::vector<std::string> uris;
  std::vector<std::string> dns_names;
  std::vector<std::vector<unsigned char>> ip_addresses;  // 4 or 16 bytes each
};

// Version 3, a random positive 128-bit serial, subject and authority key
// identifiers (the latter only when an issuer is given), signed with SHA-256
// by `issuer_key`. A null `issuer` means self-signed: `issuer_key` must then
// be the private half of `spec.public_key`.
Result<UniqueX509> build_certificate(const CertificateTemplate& spec, const X509* issuer,
                                     const EVP_PKEY* issuer_key);

// 16 random bytes, the top bit clear so the DER integer stays positive and
// 16 bytes long, never zero.
Result<std::array<unsigned char, 16>> random_serial();

}  // namespace trellis::control
