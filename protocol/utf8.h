// UTF-8 checks for SMTPUTF8 (RFC 6531 §3.3 requires well-formed UTF-8, RFC 3629).
#pragma once
#include <string_view>

namespace outbox::protocol {

// Well-formed per RFC 3629 §4: no overlong forms, no surrogates, <= U+10FFFF.
bool is_valid_utf8(std::string_view s);
bool is_ascii(std::string_view s);

}  // namespace outbox::protocol
