#include "control/ca/certificate_builder.h"

#include <openssl/bn.h>
#include <openssl/rand.h>

namespace trellis::control {
namespace {

Result<bool> add_extension(X509* certificate, X509V3_CTX* context, int nid, const char* value) {
  X509_EXTENSION* extension = X509V3_EXT_conf_nid(nullptr, context, nid, value);
  if (extension == nullptr) {
    return make_error(std::string("cannot make the ") + OBJ_nid2sn(nid) + " extension: " + openssl_reason());
  }
  int added = X509_add_ext(certificate, extension, -1);
  X509_EXTENSION_free(extension);
  if (added != 1) return make_error(std::string("cannot add the ") + OBJ_nid2sn(nid) + " extension");
  return true;
}

bool push_name(GENERAL_NAMES* names, int type, const std::string& value) {
  ASN1_IA5STRING* text = ASN1_IA5STRING_new();
  GENERAL_NAME* name = GENERAL_NAME_new();
  if (text == nullptr || name == nullptr ||
      ASN1_STRING_set(text, value.data(), static_cast<int>(value.size())) != 1) {
    ASN1_IA5STRING_free(text);
    GENERAL_NAME_free(name);
    return false;
  }
  GENERAL_NAME_set0_value(name, type, text);
  if (sk_GENERAL_NAME_push(names, name) == 0) {
    GENERAL_NAME_free(name);
    return false;
  }
  return true;
}

bool push_ip(GENERAL_NAMES* names, const std::vector<unsigned char>& bytes) {
  ASN1_OCTET_STRING* address = ASN1_OCTET_STRING_new();
  GENERAL_NAME* name = GENERAL_NAME_new();
  if (address == nullptr || name == nullptr ||
      ASN1_OCTET_STRING_set(address, bytes.data(), static_cast<int>(bytes.size())) != 1) {
    ASN1_OCTET_STRING_free(address);
    GENERAL_NAME_free(name);
    return false;
  }
  GENERAL_NAME_set0_value(name, GEN_IPADD, address);
  if (sk_GENERAL_NAME_push(names, name) == 0) {
    GENERAL_NAME_free(name);
    return false;
  }
  return true;
}

// Built as structures rather than from OpenSSL's "URI:...,DNS:..." text, so
// that no value can smuggle in another name through a comma.
Result<bool> add_subject_alt_names(X509* certificate, const CertificateTemplate& spec) {
  if (spec.uris.empty() && spec.dns_names.empty() && spec.ip_addresses.empty()) return true;
  UniqueGeneralNames names(sk_GENERAL_NAME_new_null());
  if (!names) return make_error("out of memory");
  for (const std::string& uri : spec.uris) {
    if (!push_name(names.get(), GEN_URI, uri)) return make_error("out of memory");
  }
  for (const std::string& dns : spec.dns_names) {
    if (!push_name(names.get(), GEN_DNS, dns)) return make_error("out of memory");
  }
  for (const auto& ip : spec.ip_addresses) {
    if (ip.size() != 4 && ip.size() != 16) return make_error("an IP address SAN must have 4 or 16 bytes");
    if (!push_ip(names.get(), ip)) return make_error("out of memory");
  }
  int critical = spec.subject.empty() ? 1 : 0;
  X509_EXTENSION* extension = X509V3_EXT_i2d(NID_subject_alt_name, critical, names.get());
  if (extension == nullptr)
    return make_error("cannot encode the subjectAltName extension: " + openssl_reason());
  int added = X509_add_ext(certificate, extension, -1);
  X509_EXTENSION_free(extension);
  if (added != 1) return make_error("cannot add the subjectAltName extension");
  return true;
}

}  // namespace

Result<std::array<unsigned char, 16>> random_serial() {
  std::array<unsigned char, 16> serial{};
  if (RAND_bytes(serial.data(), static_cast<int>(serial.size())) != 1) {
    return make_error("no randomness for a serial number: " + openssl_reason());
  }
  serial[0] &= 0x7f;
  serial[0] |= 0x40;  // keeps the encoding at exactly 16 bytes, as promised
  return serial;
}

Result<UniqueX509> build_certificate(const CertificateTemplate& spec, const X509* issuer,
                                     const EVP_PKEY* issuer_key) {
  if (spec.public_key == nullptr || issuer_key == nullptr)
    return make_error("no key to certify or sign with");
  UniqueX509 certificate(X509_new());
  if (!certificate) return make_error("out of memory");
  X509* c = certificate.get();

  Result<std::array<unsigned char, 16>> serial = random_serial();
  if (!serial) return serial.error();
  BIGNUM* number = BN_bin2bn(serial->data(), static_cast<int>(serial->size()), nullptr);
  bool serial_set = number != nullptr && BN_to_ASN1_INTEGER(number, X509_get_serialNumber(c)) != nullptr;
  BN_free(number);
  if (!serial_set) return make_error("cannot set the serial number: " + openssl_reason());

  X509_NAME* subject = X509_get_subject_name(c);
  for (const auto& [field, value] : spec.subject) {
    if (X509_NAME_add_entry_by_txt(subject, field.c_str(), MBSTRING_UTF8,
                                   reinterpret_cast<const unsigned char*>(value.c_str()), -1, -1, 0) != 1) {
      return make_error("cannot set the subject's " + field + ": " + openssl_reason());
    }
  }
  const X509_NAME* issuer_name = issuer != nullptr ? X509_get_subject_name(issuer) : subject;
  if (X509_set_version(c, X509_VERSION_3) != 1 || X509_set_issuer_name(c, issuer_name) != 1 ||
      X509_set_pubkey(c, const_cast<EVP_PKEY*>(spec.public_key)) != 1 ||
      ASN1_TIME_set(X509_getm_notBefore(c), std::chrono::system_clock::to_time_t(spec.not_before)) ==
          nullptr ||
      ASN1_TIME_set(X509_getm_notAfter(c), std::chrono::system_clock::to_time_t(spec.not_after)) == nullptr) {
    return make_error("cannot fill in the certificate: " + openssl_reason());
  }

  X509V3_CTX context;
  X509V3_set_ctx(&context, issuer != nullptr ? const_cast<X509*>(issuer) : c, c, nullptr, nullptr, 0);
  struct Extension {
    int nid;
    const char* value;
  };
  std::vector<Extension> extensions;
  if (spec.ca) {
    extensions = {{NID_basic_constraints, "critical,CA:TRUE"},
                  {NID_key_usage, "critical,keyCertSign,cRLSign"},
                  {NID_subject_key_identifier, "hash"}};
  } else {
    extensions = {{NID_basic_constraints, "critical,CA:FALSE"},
                  {NID_key_usage, "critical,digitalSignature"},
                  {NID_ext_key_usage, "serverAuth,clientAuth"},
                  {NID_subject_key_identifier, "hash"}};
  }
  // A self-signed certificate is its own authority: the identifier would
  // only repeat the subject key identifier.
  if (issuer != nullptr) extensions.push_back({NID_authority_key_identifier, "keyid:always"});
  for (const Extension& e : extensions) {
    if (auto added = add_extension(c, &context, e.nid, e.value); !added) return added.error();
  }
  if (auto added = add_subject_alt_names(c, spec); !added) return added.error();

  if (X509_sign(c, const_cast<EVP_PKEY*>(issuer_key), EVP_sha256()) <= 0) {
    return make_error("cannot sign the certificate: " + openssl_reason());
  }
  return certificate;
}

}  // namespace trellis::control
