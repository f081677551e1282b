// Base64 (RFC 4648 §4) for SASL exchanges (RFC 4954 §4: AUTH responses and
// challenges are base64). Strict on the alphabet: whitespace, '-', '_' or a
// '=' before the end make the text invalid (RFC 4648 §3.3: reject non-alphabet
// characters), and so do stray bits in the last character, so one byte
// string has one spelling. Padding may be omitted.
#pragma once
#include <optional>
#include <string>
#include <string_view>

namespace outbox::protocol {

// The one decoder of the project; callers choose how strict it is:
// - padding: Optional (AUTH responses: clients differ) or Required (a
//   server's 334 challenge must be whole quanta, RFC 4648 §4);
// - passlib: '.' stands for '+' (passlib's "ab64" in $pbkdf2-sha256$ hashes);
// - canonical: stray bits in the last character are refused, so one byte
//   string has one spelling (hashes, AUTH); off where a peer's encoder is
//   not ours to judge.
// Anything outside the alphabet (whitespace, '-', '_', a '=' before the
// end) is refused in every mode (RFC 4648 §3.3).
struct Base64Options {
  enum class Padding { Optional, Required } padding = Padding::Optional;
  bool passlib = false;
  bool canonical = true;
};
std::optional<std::string> base64_decode(std::string_view text, Base64Options options);
std::optional<std::string> base64_decode(std::string_view text);   // the defaults above
std::string base64_encode(std::string_view bytes);  // with padding

}  // namespace outbox::protocol
