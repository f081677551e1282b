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

std::optional<std::string> base64_decode(std::string_view text);
std::string base64_encode(std::string_view bytes);  // with padding

}  // namespace outbox::protocol
