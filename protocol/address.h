// Reverse-path / forward-path parsing for MAIL FROM and RCPT TO (RFC 5321
// §4.1.2, with the SMTPUTF8 additions of RFC 6531 §3.3). Pure: no policy, no
// qualification, no aliases (the session does those).
//
// Liberal where Postfix is liberal (angle brackets may be missing, dots in a
// dot-string are not policed), strict where a mistake would reach a header or
// another server (control characters, bad UTF-8, bad domains, length limits).
#pragma once
#include <string>
#include <string_view>

namespace outbox::protocol {

enum class PathError {
  None,
  Syntax,       // not a path at all
  InvalidUtf8,  // bytes >= 0x80 that are not well-formed UTF-8 (RFC 6531 §3.3)
  TooLong,      // RFC 5321 §4.5.3.1.1-3 size limits
};

struct ParsedPath {
  PathError error = PathError::None;
  bool null_path = false;   // "<>"
  bool non_ascii = false;   // needs SMTPUTF8 (RFC 6531 §3.4)
  std::string local;        // as written (a quoted local part keeps its quotes)
  std::string domain;       // empty for a bare "root" (qualified later)
  std::string_view rest;    // what follows the path: ESMTP parameters
  std::string mailbox() const { return domain.empty() ? local : local + "@" + domain; }
};

// text: what follows "FROM:" / "TO:". Leading spaces are skipped.
ParsedPath parse_path(std::string_view text, bool allow_null);

// Domain syntax (RFC 5321 §4.1.2 Domain, U-labels allowed per RFC 6531 §3.3);
// exposed for tests and for qualifying with the configured domain.
bool is_valid_domain(std::string_view d);

// Whether a mailbox can go out again in a MAIL FROM:<...> / RCPT TO:<...>
// of our own: no control characters and no angle brackets, even inside a
// quoted local part (RFC 5321 §4.1.2 allows "a b>c"@d in a Quoted-string,
// but a relay that writes it between <> would end the path early, and it is
// how commands get smuggled). The server refuses at MAIL/RCPT what the relay
// would refuse later, so nothing accepted bounces for its own syntax.
bool relayable_mailbox(std::string_view mailbox);

}  // namespace outbox::protocol
