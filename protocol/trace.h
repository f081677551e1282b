// Trace and added header fields for a submitted message: the Received: field
// (RFC 5321 §4.4, with the "with" protocol names of RFC 3848 and RFC 6531
// §3.7.3) and the Date:/Message-ID: fields a submission server adds when the
// message lacks them (RFC 6409 §8.2, §8.3). Pure formatting; the session
// decides what goes in.
#pragma once
#include <ctime>
#include <optional>
#include <string>
#include <string_view>

#include "protocol/server_session.h"

namespace outbox::protocol {

// RFC 5322 §3.3 date-time in UTC: "Mon, 02 Jan 2006 15:04:05 +0000".
std::string rfc5322_date(std::time_t t);

// "[127.0.0.1]", "[IPv6:::1]" (RFC 5321 §4.1.3), or
// "unix socket, uid N, user NAME" for a local peer.
std::string describe_client(const PeerInfo& peer);

struct ProtocolFlags {
  bool esmtp = false;     // EHLO rather than HELO
  bool tls = false;
  bool authenticated = false;
  bool smtputf8 = false;
};
// RFC 3848 / RFC 6531 §3.7.3: SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA,
// UTF8SMTP, UTF8SMTPS, UTF8SMTPA, UTF8SMTPSA.
std::string with_protocol(const ProtocolFlags& f);

struct TraceInfo {
  std::string helo;
  std::string client;     // from describe_client()
  std::string hostname;
  std::string protocol;   // from with_protocol()
  std::string id;
  std::optional<std::string> recipient;  // only with exactly one recipient (RFC 5321 §4.4)
  std::time_t time = 0;
};

// The Received: field, folded over three lines, ending in CRLF.
std::string received_field(const TraceInfo& t);

// Makes text safe inside a header comment or a trace token: control bytes,
// parentheses and backslashes become '?'. Never lets CR/LF through (S5).
std::string sanitize_trace_token(std::string_view s);

}  // namespace outbox::protocol
