#include "daemon/password.h"

#include "protocol/base64.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <charconv>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <vector>

namespace outbox::password {

namespace {

constexpr std::size_t kSaltBytes = 16;
constexpr std::size_t kKeyBytes = 32;
// Bounds on what a configured hash may ask for. scrypt's memory is
// 128 * r * N bytes: 1 GiB is far above the default (32 MiB) yet keeps a
// typo like ln=40 from exhausting the host.
constexpr std::uint64_t kMaxScryptMemory = 1ull << 30;
constexpr int kMaxLn = 24;
constexpr int kMaxR = 64;
constexpr int kMaxP = 16;
// PBKDF2: passlib's default is 29,000 rounds, OWASP 2023 says 600,000.
constexpr std::uint64_t kMaxPbkdf2Rounds = 10'000'000;
constexpr std::size_t kMinKey = 16, kMaxKey = 64;
constexpr std::size_t kMaxSalt = 64;


// Standard base64, padding optional, canonical; with ab64, passlib's '.'
// stands for '+' (protocol/base64.h).
std::optional<std::string> base64_decode(std::string_view in, bool ab64) {
  while (!in.empty() && in.back() == '=') in.remove_suffix(1);   // written without padding
  return protocol::base64_decode(in, protocol::Base64Options{protocol::Base64Options::Padding::Optional, ab64, true});
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  for (;;) {
    auto pos = s.find(sep, start);
    out.push_back(s.substr(start, pos == std::string_view::npos ? std::string_view::npos : pos - start));
    if (pos == std::string_view::npos) return out;
    start = pos + 1;
  }
}

template <typename T>
bool parse_number(std::string_view s, T& out) {
  // Digits only, no sign, no leading zero: one spelling per value.
  if (s.empty() || s.size() > 12 || (s.size() > 1 && s[0] == '0')) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

enum class Kind { Scrypt, Pbkdf2Sha256 };

struct Parsed {
  Kind kind = Kind::Scrypt;
  ScryptParams scrypt;
  std::uint64_t rounds = 0;
  std::string salt;
  std::string key;
};

bool scrypt_params_ok(const ScryptParams& p) {
  if (p.ln < 1 || p.ln > kMaxLn || p.r < 1 || p.r > kMaxR || p.p < 1 || p.p > kMaxP) return false;
  std::uint64_t mem = 128ull * static_cast<std::uint64_t>(p.r) * (std::uint64_t{1} << p.ln);
  return mem <= kMaxScryptMemory;
}

bool salt_and_key(std::string_view salt, std::string_view key, bool ab64, Parsed& out) {
  auto s = base64_decode(salt, ab64);
  auto k = base64_decode(key, ab64);
  if (!s || !k || s->empty() || s->size() > kMaxSalt || k->size() < kMinKey || k->size() > kMaxKey) return false;
  out.salt = std::move(*s);
  out.key = std::move(*k);
  return true;
}

std::optional<Parsed> parse(std::string_view encoded) {
  auto parts = split(encoded, '$');
  if (parts.size() != 5 || !parts[0].empty()) return std::nullopt;
  Parsed p;
  if (parts[1] == "scrypt") {
    p.kind = Kind::Scrypt;
    // Exactly "ln=A,r=B,p=C", in that order.
    auto kv = split(parts[2], ',');
    if (kv.size() != 3) return std::nullopt;
    auto field = [](std::string_view item, std::string_view name, int& out) {
      return item.substr(0, name.size()) == name && parse_number(item.substr(name.size()), out);
    };
    if (!field(kv[0], "ln=", p.scrypt.ln) || !field(kv[1], "r=", p.scrypt.r) || !field(kv[2], "p=", p.scrypt.p))
      return std::nullopt;
    if (!scrypt_params_ok(p.scrypt)) return std::nullopt;
    if (!salt_and_key(parts[3], parts[4], false, p)) return std::nullopt;
    return p;
  }
  if (parts[1] == "pbkdf2-sha256") {
    p.kind = Kind::Pbkdf2Sha256;
    std::string_view rounds = parts[2];
    // PHC spelling "i=N" (standard base64), or passlib's bare "N" (ab64).
    bool passlib = rounds.substr(0, 2) != "i=";
    if (!passlib) rounds.remove_prefix(2);
    if (!parse_number(rounds, p.rounds) || p.rounds < 1 || p.rounds > kMaxPbkdf2Rounds) return std::nullopt;
    if (!salt_and_key(parts[3], parts[4], passlib, p)) return std::nullopt;
    return p;
  }
  return std::nullopt;
}

// Throws on failure of the primitive itself (out of memory).
std::string derive(const Parsed& p, std::string_view password, std::size_t len) {
  std::string out(len, '\0');
  auto* salt = reinterpret_cast<const unsigned char*>(p.salt.data());
  auto* key = reinterpret_cast<unsigned char*>(out.data());
  if (p.kind == Kind::Scrypt) {
    std::uint64_t n = std::uint64_t{1} << p.scrypt.ln;
    auto r = static_cast<std::uint64_t>(p.scrypt.r), par = static_cast<std::uint64_t>(p.scrypt.p);
    // OpenSSL refuses scrypt above maxmem, whose default (32 MiB) is just
    // below what ln=15, r=8 needs: V is 128·r·N, B is 128·r·p, plus slack.
    std::uint64_t maxmem = 128 * r * (n + par + 2) + (1 << 20);
    if (EVP_PBE_scrypt(password.data(), password.size(), salt, p.salt.size(), n, r, par, maxmem, key, len) != 1)
      throw std::runtime_error("scrypt failed");
  } else {
    if (PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()), salt, static_cast<int>(p.salt.size()),
                          static_cast<int>(p.rounds), EVP_sha256(), static_cast<int>(len), key) != 1)
      throw std::runtime_error("pbkdf2 failed");
  }
  return out;
}

}  // namespace

std::string base64_encode(std::string_view in) {
  // The hash format writes base64 without '=' padding (like passlib's).
  std::string out = protocol::base64_encode(in);
  while (!out.empty() && out.back() == '=') out.pop_back();
  return out;
}

std::string hash_password(std::string_view password, const ScryptParams& params) {
  if (!scrypt_params_ok(params)) throw std::runtime_error("scrypt parameters out of range");
  Parsed p;
  p.kind = Kind::Scrypt;
  p.scrypt = params;
  p.salt.assign(kSaltBytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(p.salt.data()), static_cast<int>(p.salt.size())) != 1)
    throw std::runtime_error("no random bytes for the salt");
  std::string key = derive(p, password, kKeyBytes);
  std::string out = "$scrypt$ln=" + std::to_string(params.ln) + ",r=" + std::to_string(params.r) +
                    ",p=" + std::to_string(params.p) + "$" + base64_encode(p.salt) + "$" + base64_encode(key);
  OPENSSL_cleanse(key.data(), key.size());
  return out;
}

bool verify_password(std::string_view encoded_hash, std::string_view password) {
  auto p = parse(encoded_hash);
  if (!p) return false;
  std::string key;
  try {
    key = derive(*p, password, p->key.size());
  } catch (const std::exception&) {
    return false;
  }
  bool same = CRYPTO_memcmp(key.data(), p->key.data(), key.size()) == 0;
  OPENSSL_cleanse(key.data(), key.size());
  return same;
}

bool is_valid_hash(std::string_view encoded_hash) { return parse(encoded_hash).has_value(); }

}  // namespace outbox::password
