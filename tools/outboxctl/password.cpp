#include "tools/outboxctl/password.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <charconv>
#include <stdexcept>

namespace outbox::ctl {

namespace {

constexpr std::size_t kSaltBytes = 16;
constexpr std::size_t kKeyBytes = 32;
constexpr int kMaxLn = 20;   // 2^20 * 8 * 128 = 1 GiB: beyond that, refuse
constexpr int kMaxR = 32;
constexpr int kMaxP = 16;
constexpr std::string_view kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string derive(std::string_view password, std::string_view salt, const ScryptParams& p, std::size_t len) {
  std::uint64_t n = std::uint64_t{1} << p.ln;
  // scrypt needs 128·r·N bytes for V plus 128·r·p for B; OpenSSL's default
  // cap (32 MiB) is just below what ln=15, r=8 needs, so pass our own.
  std::uint64_t maxmem = 128ull * static_cast<std::uint64_t>(p.r) * (n + 2) +
                         128ull * static_cast<std::uint64_t>(p.r) * static_cast<std::uint64_t>(p.p) + (1 << 20);
  std::string out(len, '\0');
  if (EVP_PBE_scrypt(password.data(), password.size(), reinterpret_cast<const unsigned char*>(salt.data()),
                     salt.size(), n, static_cast<std::uint64_t>(p.r), static_cast<std::uint64_t>(p.p), maxmem,
                     reinterpret_cast<unsigned char*>(out.data()), out.size()) != 1)
    throw std::runtime_error("scrypt failed");
  return out;
}

bool params_ok(const ScryptParams& p) {
  return p.ln >= 1 && p.ln <= kMaxLn && p.r >= 1 && p.r <= kMaxR && p.p >= 1 && p.p <= kMaxP;
}

bool parse_int(std::string_view s, int& out) {
  if (s.empty() || s.size() > 4) return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

}  // namespace

std::string base64_encode(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  auto b = [&](std::size_t k) { return static_cast<unsigned char>(in[k]); };
  for (; i + 3 <= in.size(); i += 3) {
    std::uint32_t v = (b(i) << 16) | (b(i + 1) << 8) | b(i + 2);
    for (int s = 18; s >= 0; s -= 6) out += kAlphabet[(v >> s) & 63];
  }
  if (in.size() - i == 1) {
    std::uint32_t v = b(i) << 16;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
  } else if (in.size() - i == 2) {
    std::uint32_t v = (b(i) << 16) | (b(i + 1) << 8);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
  }
  return out;
}

std::optional<std::string> base64_decode(std::string_view in) {
  while (!in.empty() && in.back() == '=') in.remove_suffix(1);
  if (in.size() % 4 == 1) return std::nullopt;
  std::string out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    auto pos = kAlphabet.find(c);
    if (pos == std::string_view::npos) return std::nullopt;
    acc = (acc << 6) | static_cast<std::uint32_t>(pos);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  // Leftover bits must be zero, or two texts would decode to the same bytes.
  if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) return std::nullopt;
  return out;
}

std::string hash_password(std::string_view password, const ScryptParams& params) {
  if (!params_ok(params)) throw std::runtime_error("scrypt parameters out of range");
  std::string salt(kSaltBytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(salt.data()), static_cast<int>(salt.size())) != 1)
    throw std::runtime_error("no random bytes for the salt");
  std::string key = derive(password, salt, params, kKeyBytes);
  std::string out = "$scrypt$ln=" + std::to_string(params.ln) + ",r=" + std::to_string(params.r) +
                    ",p=" + std::to_string(params.p) + "$" + base64_encode(salt) + "$" + base64_encode(key);
  OPENSSL_cleanse(key.data(), key.size());
  return out;
}

std::optional<ParsedHash> parse_password_hash(std::string_view s) {
  constexpr std::string_view kPrefix = "$scrypt$";
  if (s.substr(0, kPrefix.size()) != kPrefix) return std::nullopt;
  s.remove_prefix(kPrefix.size());
  auto d1 = s.find('$');
  if (d1 == std::string_view::npos) return std::nullopt;
  auto d2 = s.find('$', d1 + 1);
  if (d2 == std::string_view::npos) return std::nullopt;
  std::string_view params = s.substr(0, d1), salt = s.substr(d1 + 1, d2 - d1 - 1), key = s.substr(d2 + 1);

  ParsedHash h;
  // Exactly "ln=A,r=B,p=C", in that order: one spelling per hash.
  auto take = [&](std::string_view name, int& out) {
    if (params.substr(0, name.size()) != name) return false;
    params.remove_prefix(name.size());
    auto end = params.find(',');
    bool ok = parse_int(params.substr(0, end), out);
    params.remove_prefix(end == std::string_view::npos ? params.size() : end + 1);
    return ok;
  };
  if (!take("ln=", h.params.ln) || !take("r=", h.params.r) || !take("p=", h.params.p) || !params.empty())
    return std::nullopt;
  if (!params_ok(h.params)) return std::nullopt;
  auto salt_bytes = base64_decode(salt);
  auto key_bytes = base64_decode(key);
  if (!salt_bytes || !key_bytes || salt_bytes->empty() || key_bytes->size() < 16 || key_bytes->size() > 64)
    return std::nullopt;
  h.salt = std::move(*salt_bytes);
  h.key = std::move(*key_bytes);
  return h;
}

bool verify_password(std::string_view password, std::string_view encoded) {
  auto h = parse_password_hash(encoded);
  if (!h) return false;
  std::string key;
  try {
    key = derive(password, h->salt, h->params, h->key.size());
  } catch (const std::exception&) {
    return false;
  }
  bool same = CRYPTO_memcmp(key.data(), h->key.data(), key.size()) == 0;
  OPENSSL_cleanse(key.data(), key.size());
  return same;
}

}  // namespace outbox::ctl
