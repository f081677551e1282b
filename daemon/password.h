// Password hashes for [[user]] password_hash (SPEC "Configuration"), as
// library `outbox_password` (OpenSSL libcrypto only): outboxd verifies SMTP
// AUTH credentials with it, `outboxctl hash-password` makes the hashes.
//
// Format written (PHC string format, standard base64 without padding):
//   $scrypt$ln=15,r=8,p=1$<salt>$<key>        scrypt (RFC 7914), N = 2^ln,
//                                               16-byte random salt, 32-byte key
// Formats read, besides that one:
//   $pbkdf2-sha256$i=N$<salt>$<key>            PBKDF2-HMAC-SHA256 (RFC 8018)
//   $pbkdf2-sha256$N$<salt>$<key>              passlib's spelling ("ab64":
//                                               '.' instead of '+')
// Parameters are bounded (see password.cpp): a hostile or mistyped hash in
// the configuration must not make the daemon allocate a GiB or spin for
// minutes per login attempt.
#pragma once
#include <string>
#include <string_view>

namespace outbox::password {

struct ScryptParams {
  int ln = 15;  // log2(N): 128 * r * 2^15 = 32 MiB of memory per check
  int r = 8;
  int p = 1;
};

// A fresh hash of password with a random salt. Throws std::runtime_error when
// the random source or scrypt fails, or the parameters are out of bounds.
std::string hash_password(std::string_view password, const ScryptParams& params = {});

// True when password matches the encoded hash. The comparison of the derived
// key is constant-time (CRYPTO_memcmp); a malformed hash is false, never an
// exception. Slow on purpose (tens of milliseconds): call it off the event
// loop.
bool verify_password(std::string_view encoded_hash, std::string_view password);

// True when encoded_hash is well-formed and within the bounds verify accepts
// (for checking the configuration at start).
bool is_valid_hash(std::string_view encoded_hash);

// Standard base64 (RFC 4648 §4) without padding, as in PHC strings.
std::string base64_encode(std::string_view bytes);

}  // namespace outbox::password
