// Delivery status notifications (bounces): RFC 3464 message/delivery-status
// inside an RFC 6522 multipart/report, built as the bytes to enqueue.
//
// The notice has three parts: a plain-text explanation naming each failed
// recipient and what the remote server said; the machine-readable
// delivery-status; and the original message's header section only
// (text/rfc822-headers), so a 30 MB attachment is not sent back. With
// internationalized addresses the RFC 6533 types are used
// (message/global-delivery-status, message/global-headers, "utf-8;"
// addresses) and the notice needs SMTPUTF8 to travel.
//
// The envelope sender of a DSN is the null path <> (RFC 5321 §4.5.5), and no
// DSN is ever made for mail whose sender is <>: callers check should_bounce().
// Date and Message-ID are passed in: no clock here. CRLF line ends only;
// no line longer than 998 octets (RFC 5322 §2.1.1).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/client_outcomes.h"
#include "protocol/reply_parser.h"

namespace outbox::protocol {

struct DsnRecipient {
  enum class Action { Failed, Delayed };
  std::string address;                       // Final-Recipient
  Action action = Action::Failed;
  EnhancedStatus status{5, 0, 0};            // Status:
  std::string remote_mta;                    // Remote-MTA: dns; HOST ("" = none)
  std::string diagnostic;                    // the reply's one_line(), or our words
  bool smtp_diagnostic = true;               // "smtp;" (a server reply) or "X-Outbox;"
  std::string in_reply_to;                   // "RCPT TO", "end of DATA" ("" = none)
  bool expired = false;                      // failed because retry.lifetime ran out
  std::optional<std::int64_t> last_attempt;  // µs
};

// From a relay result: status, reply or detail, stage, remote host.
DsnRecipient dsn_recipient(const client::RecipientResult& result, std::string remote_mta);

struct DsnInput {
  enum class Kind { Failure, Delay };
  Kind kind = Kind::Failure;
  std::string reporting_host;        // [host] name: Reporting-MTA, From:, the text
  std::string queue_id;              // of the original message
  std::string original_sender;       // To: of the notice (never empty: see should_bounce)
  std::int64_t arrival = 0;          // µs, when the original was accepted
  std::int64_t date = 0;             // µs, Date: of the notice
  std::string message_id;            // "<...@host>", Message-ID: of the notice
  std::vector<DsnRecipient> recipients;
  std::string original_headers;      // the original's header section (CRLF), with or without the blank line
  bool original_smtputf8 = false;    // the original needed SMTPUTF8
  std::optional<std::int64_t> retry_until;   // Delay: until when it is retried (µs)
  std::string lifetime_text;         // for expired recipients: "5 days"
};

struct DsnMessage {
  std::string bytes;          // the whole message, CRLF, ready for the spool
  bool smtputf8 = false;      // send with SMTPUTF8 (RFC 6533)
  bool body_8bit = false;     // contains octets > 127: BODY=8BITMIME
};

DsnMessage build_dsn(const DsnInput& input);

// false for the null sender (never bounce a bounce) or when disabled.
bool should_bounce(std::string_view sender, bool bounces_enabled);

// RFC 5322 §3.3 date in UTC: "Tue, 14 Nov 2023 22:13:20 +0000".
std::string rfc5322_date_us(std::int64_t microseconds);

// The header section of a stored message: everything before the first empty
// line (CRLF CRLF), or all of it when there is none.
std::string_view header_section(std::string_view message);

}  // namespace outbox::protocol
