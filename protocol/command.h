// Command-line parsing (RFC 5321 §4.1.1): the verb, its argument, and the
// ESMTP parameters of MAIL/RCPT (RFC 5321 §4.1.2 esmtp-param) with the ones
// we advertise: SIZE (RFC 1870), BODY (RFC 6152), SMTPUTF8 (RFC 6531), AUTH=
// (RFC 4954 §5). Verbs are case-insensitive (RFC 5321 §2.4).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace outbox::protocol {

enum class Verb {
  Empty,    // an empty line
  Unknown,
  Http,     // an HTTP request line sent to the SMTP port
  Helo, Ehlo, Mail, Rcpt, Data, Rset, Noop, Quit, Vrfy, Expn, Help, StartTls, Auth,
};

struct Command {
  Verb verb = Verb::Empty;
  std::string_view arg;  // after the verb, outer spaces trimmed
};

// line: one command line without its CRLF.
Command parse_command(std::string_view line);

// For MAIL: arg must start with "FROM:" (any case); returns what follows, or
// nullopt. Same for RCPT with "TO:". A space after the colon is tolerated
// like Postfix does; RFC 5321 §4.1.1.2 has none.
std::optional<std::string_view> strip_path_keyword(std::string_view arg, std::string_view keyword);

struct MailParams {
  std::optional<std::uint64_t> size;  // RFC 1870 SIZE=
  bool body_8bit = false;             // RFC 6152 BODY=8BITMIME
  bool smtputf8 = false;              // RFC 6531 §3.4
};

enum class ParamError {
  None,
  Syntax,       // not keyword[=value] (RFC 5321 §4.1.2 esmtp-param)
  BadSize,      // SIZE= not 1*20DIGIT (RFC 1870 §6)
  BadBody,      // BODY= not 7BIT or 8BITMIME
  Unsupported,  // a parameter we did not advertise (RFC 5321 §4.1.1.11: 555)
};

struct ParamResult {
  ParamError error = ParamError::None;
  std::string keyword;  // the offending keyword, upper-cased, for the reply
};

ParamResult parse_mail_params(std::string_view params, MailParams& out);
ParamResult parse_rcpt_params(std::string_view params);  // none are supported

}  // namespace outbox::protocol
