// The relay client's vocabulary: where a connection or message stood
// (Stage), whom a failure is about (Scope), how a recipient ended (Outcome),
// what the server offered (Capabilities), and the reports a session gives
// (RecipientResult, MessageReport, SessionFailure), with the rules that read
// a reply into them (classify, is_throttle, suggested_backoff).
// ClientSession (protocol/client_session.h) speaks it; the relay, the DSN
// writer and the diagnosis read it without the session's machinery.
#pragma once
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/reply_parser.h"
#include "protocol/reply_rules.h"

namespace outbox::protocol::client {

// Where a connection or a message stood when something happened.
enum class Stage {
  Connect, Tls, Greeting, Ehlo, StartTls, Auth,
  Rset, Mail, Rcpt, Data,      // Data: the DATA command, waiting for 354
  Body,                        // sending the message text
  DataEnd,                     // final "." sent, waiting for the reply
  Quit, Idle
};
// "connect", "tls", "greeting", "ehlo", "starttls", "auth", "rset", "mail",
// "rcpt", "data", "body", "end-of-data", "quit", "idle"
std::string_view stage_name(Stage s);
// For DSNs and operators: "MAIL FROM", "RCPT TO", "DATA", "end of DATA", ...
std::string_view stage_command(Stage s);

// Who a failure is about (STYLE lesson 10):
//   Upstream   the provider refused or throttled the account or connection
//              (setup failures, 421, 432/4.3.2, 4.7.x, X.4.5, 530, 454
//              Throttling, 451 MI:SFQ ...): back off the whole upstream, do
//              not count it against the message, never bounce.
//   Connection this connection broke (timeout, drop, protocol error): retry
//              the message; the upstream is not known to be at fault.
//   Message    the MAIL FROM or the data was refused.
//   Recipient  only this recipient was refused at RCPT.
enum class Scope { Recipient, Message, Connection, Upstream };
std::string_view scope_name(Scope s);   // "recipient", "message", "connection", "upstream"

enum class Outcome { Delivered, Temporary, Permanent };
std::string_view outcome_name(Outcome o);  // "delivered", "temporary", "permanent"

// What the server's last EHLO advertised (RFC 5321 §4.1.1.1).
struct Capabilities {
  bool esmtp = false;                 // false after a HELO fallback
  bool pipelining = false;            // RFC 2920
  bool starttls = false;              // RFC 3207
  bool smtputf8 = false;              // RFC 6531
  bool eightbitmime = false;          // RFC 6152
  bool enhancedstatuscodes = false;   // RFC 2034
  bool size = false;                  // RFC 1870
  std::uint64_t size_limit = 0;       // 0: none announced
  std::vector<std::string> auth;      // mechanisms, upper case ("AUTH=" lines too)

  static Capabilities parse(const SmtpReply& ehlo);
  bool offers_auth(std::string_view mechanism) const;
};

// One command and the reply to it, for `outboxctl show`. AUTH lines never
// carry credentials ("AUTH PLAIN <redacted>").
struct Exchange {
  std::string command;   // "MAIL FROM:<a@b> SIZE=1234", "end of data"
  SmtpReply reply;
};

struct RecipientResult {
  std::string address;
  Outcome outcome = Outcome::Temporary;
  Scope scope = Scope::Recipient;
  Stage stage = Stage::Rcpt;       // where it was decided
  EnhancedStatus status;           // 2.x.x / 4.x.x / 5.x.x (Upstream-scope: never 5)
  std::optional<SmtpReply> reply;  // the server's reply that decided, if any
  std::string detail;              // our words, when there is no reply or to add to it
  // What the provider's (or the generic) reply table says about the reply.
  std::optional<ReplyVerdict> verdict;
  // For last_reply, logs and DSNs: the reply's one_line(), else
  // "X.Y.Z detail" ("5.3.4 message size 40000000 exceeds the upstream's limit of 35882577").
  std::string text() const;
};

struct MessageReport {
  std::string id;
  std::vector<RecipientResult> recipients;   // one per recipient given, same order
  bool possible_duplicate = false;           // the final "." went out, no reply came (RFC 1047)
  std::vector<Exchange> exchanges;           // every reply for this message, in order

  bool all_delivered() const;
  // The widest scope among the recipients not delivered (Upstream first); a
  // fully delivered message gives Recipient.
  Scope scope() const;
  const RecipientResult* first_failure() const;   // nullptr when all delivered
};

// A credential that could not be obtained before connecting (an OAuth2
// token request failed): a passing outage, or one the operator must fix
// (the login is dead, the client is misconfigured).
enum class CredentialFailure { None, Transient, NeedsOperator };

struct SessionFailure {
  Stage stage = Stage::Connect;
  Scope scope = Scope::Upstream;
  std::optional<SmtpReply> reply;
  std::string detail;        // "STARTTLS not offered", TLS or socket error text
  CredentialFailure credential = CredentialFailure::None;
  std::string text() const;  // "detail: reply" / reply / detail
};

// Scope of a failure reply at a stage (see Scope). Exposed for the table tests
// and for the scheduler's logs.
Scope classify(Stage stage, const SmtpReply& reply);
// true for the replies that mean "slow down" rather than "no".
bool is_throttle(const SmtpReply& reply);
// A lower bound for the upstream's backoff a throttling reply asks for
// (163 "451 MI:SFQ": 15 minutes; SES "454 Throttling failure: Daily message
// quota exceeded": 1 hour, "Maximum sending rate exceeded": 1 minute, as
// AWS advises), else zero.
std::chrono::seconds suggested_backoff(const SmtpReply& reply);

}  // namespace outbox::protocol::client
