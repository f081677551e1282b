// Test certificates made at test time with OpenSSL's API (no checked-in keys):
// a CA and leaf certificates signed by it (or self-signed), with DNS and IP
// subjectAltNames. Test-only code.
#pragma once
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

namespace outbox::testing {

struct KeyCert {
  EVP_PKEY* key = nullptr;
  X509* cert = nullptr;
  KeyCert() = default;
  KeyCert(const KeyCert&) = delete;
  KeyCert& operator=(const KeyCert&) = delete;
  KeyCert(KeyCert&& o) noexcept : key(o.key), cert(o.cert) { o.key = nullptr; o.cert = nullptr; }
  ~KeyCert() { EVP_PKEY_free(key); X509_free(cert); }

  void write(const std::string& cert_path, const std::string& key_path) const {
    FILE* f = std::fopen(cert_path.c_str(), "w");
    if (!f) throw std::runtime_error("cannot write " + cert_path);
    PEM_write_X509(f, cert);
    std::fclose(f);
    f = std::fopen(key_path.c_str(), "w");
    if (!f) throw std::runtime_error("cannot write " + key_path);
    PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
    std::fclose(f);
  }
};

inline void add_ext(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (!ext) throw std::runtime_error("bad extension " + value);
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

// issuer == nullptr: self-signed. sans: "DNS:localhost,IP:127.0.0.1".
inline KeyCert make_cert(const std::string& cn, const std::string& sans, const KeyCert* issuer,
                         bool is_ca, long valid_from_s = -3600, long valid_for_s = 86400) {
  KeyCert kc;
  kc.key = EVP_EC_gen("P-256");
  if (!kc.key) throw std::runtime_error("key generation failed");
  kc.cert = X509_new();
  X509_set_version(kc.cert, 2);
  static long serial = 1;
  ASN1_INTEGER_set(X509_get_serialNumber(kc.cert), serial++);
  X509_gmtime_adj(X509_getm_notBefore(kc.cert), valid_from_s);
  X509_gmtime_adj(X509_getm_notAfter(kc.cert), valid_from_s + valid_for_s);
  X509_set_pubkey(kc.cert, kc.key);
  X509_NAME* name = X509_get_subject_name(kc.cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509* issuer_cert = issuer ? issuer->cert : kc.cert;
  X509_set_issuer_name(kc.cert, X509_get_subject_name(issuer_cert));
  if (is_ca) {
    add_ext(kc.cert, issuer_cert, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(kc.cert, issuer_cert, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    add_ext(kc.cert, issuer_cert, NID_basic_constraints, "CA:FALSE");
    add_ext(kc.cert, issuer_cert, NID_ext_key_usage, "serverAuth");
  }
  add_ext(kc.cert, issuer_cert, NID_subject_key_identifier, "hash");
  if (!sans.empty()) add_ext(kc.cert, issuer_cert, NID_subject_alt_name, sans);
  if (!X509_sign(kc.cert, issuer ? issuer->key : kc.key, EVP_sha256()))
    throw std::runtime_error("signing failed");
  return kc;
}

}  // namespace outbox::testing
