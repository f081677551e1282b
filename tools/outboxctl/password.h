// Password hashes for [[user]] password_hash (SPEC "Configuration"):
//   $scrypt$ln=15,r=8,p=1$<salt>$<hash>
// scrypt (RFC 7914) via OpenSSL EVP_PBE_scrypt, N = 2^ln, a random 16-byte
// salt and a 32-byte key, both in standard base64 without padding (the PHC
// string format). Used by `outboxctl hash-password`; verify_password is for
// the daemon's AUTH (move this file next to it when it lands: it depends only
// on OpenSSL's libcrypto, never on the spool or SMTP).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace outbox::ctl {

struct ScryptParams {
  int ln = 15;   // log2(N): 2^15 * r * 128 bytes = 32 MiB of memory per hash
  int r = 8;
  int p = 1;
};

// Throws std::runtime_error when the random source or scrypt fails.
std::string hash_password(std::string_view password, const ScryptParams& params = {});
// Constant-time comparison; false for a malformed hash or parameters beyond
// the limits below (a hostile config must not make the daemon allocate GiBs).
bool verify_password(std::string_view password, std::string_view encoded);

// Parts of an encoded hash, or nullopt when malformed.
struct ParsedHash {
  ScryptParams params;
  std::string salt;
  std::string key;
};
std::optional<ParsedHash> parse_password_hash(std::string_view encoded);

std::string base64_encode(std::string_view bytes);                      // no padding
std::optional<std::string> base64_decode(std::string_view text);        // padding optional

}  // namespace outbox::ctl
