// ClientSession: the sans-I/O SMTP client that relays messages to one
// upstream over one connection (RFC 5321, 3207, 4954, 2920, 1870, 6152, 6531).
//
// The daemon (daemon/relay_*.cpp with UpstreamLink) owns the socket, TLS and
// timers; this class owns every protocol decision. Events and server bytes go
// in; take_actions() says what to do: Send bytes, StartTls, Close, and the
// results (Ready, NeedBody, MessageDone, SessionFailed). No sockets, no
// OpenSSL, no clock: deadline() says how long the daemon should wait for the
// server right now. Single-threaded; not reentrant.
//
// Life of a connection:
//   on_connected()            TCP up; with TlsPolicy::Implicit, TLS already done
//   greeting, EHLO, [STARTTLS, handshake, EHLO again], [AUTH]
//   Ready                     -> send_message(m)            (one at a time)
//   NeedBody{id}              -> body_chunk(..)* body_end()
//   MessageDone{report}       -> then Ready again, or the session ends itself
// With pipeline_messages and PIPELINING, body_end() gives Ready{id} at once
// and the next message's commands follow the dot; MessageDone{id} comes
// with the dot's reply, so two messages may be in flight.
//   quit()                    -> QUIT, Close
// Setup failures (connect, TLS, greeting, EHLO, STARTTLS, AUTH) give one
// SessionFailed (scope Upstream, always temporary) and Close. Every message
// handed over gets exactly one MessageDone, whatever happens.
//
// Never: plaintext fallback when STARTTLS is required; AUTH without TLS;
// credentials in the transcript; bare CR or LF in the data (RFC 5321 §2.3.8).
#pragma once
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "protocol/client_outcomes.h"
#include "protocol/reply_parser.h"
#include "protocol/reply_rules.h"

namespace outbox::protocol::client {

enum class TlsPolicy { None, StartTls, Implicit };
enum class AuthPolicy { Auto, Plain, Login, XOAuth2 };   // Auto: PLAIN, else LOGIN

struct Timeouts {   // RFC 5321 §4.5.3.2 minimums; SMTP-level waits for a reply
  std::chrono::seconds greeting{300};
  std::chrono::seconds ehlo{300};       // also STARTTLS, AUTH, RSET
  std::chrono::seconds tls{300};        // the handshake after STARTTLS
  std::chrono::seconds mail{300};
  std::chrono::seconds rcpt{300};
  std::chrono::seconds data_init{120};
  std::chrono::seconds data_block{180}; // while the body is being sent
  std::chrono::seconds data_end{600};
  std::chrono::seconds quit{60};
};

struct ClientConfig {
  std::string helo_name = "localhost";   // EHLO argument: [host] name
  TlsPolicy tls = TlsPolicy::Implicit;
  AuthPolicy auth = AuthPolicy::Auto;
  std::string username;                  // empty: no AUTH
  std::string secret;                    // password / authorization code, or the OAuth2 token
  Timeouts timeouts;
  // The provider's reply rules (daemon/providers.toml); null: the generic
  // table only. A rule's action decides the scope and outcome of a reply
  // (protocol/reply_rules.h).
  std::shared_ptr<const ReplyTable> replies;
  // [[upstream]] max_message_size: a larger message is refused here without
  // a command sent, as if the server had announced it with SIZE. 0: none.
  std::uint64_t max_message_size = 0;
  // With PIPELINING: Ready as soon as the final dot is written, so the next
  // message's MAIL, RCPT and DATA can share the dot's write and one round
  // trip serves both (RFC 2920 §3.1). The first message's MessageDone comes
  // when the dot's reply does, after that Ready. Off: Ready only after it.
  bool pipeline_messages = false;
};

// A message to relay. Only the recipients still pending.
struct OutgoingMessage {
  std::string id;
  std::string sender;                     // "" = <>; already rewritten (envelope_from)
  std::vector<std::string> recipients;
  std::uint64_t size = 0;                 // as stored, for SIZE= and the size check
  bool smtputf8 = false;                  // needs SMTPUTF8 (RFC 6531)
  bool body_8bit = false;                 // BODY=8BITMIME when offered (RFC 6152)
};

// --- actions -----------------------------------------------------------------
struct Send { std::string bytes; };         // write as is, in order
struct StartTls {};                         // begin the client handshake now; then on_tls_established()
struct Close {};                            // after the queued writes are flushed
// Idle: send_message() or quit(). With pipeline_messages, `unanswered` names
// the message whose final dot is out and whose reply has not come yet.
struct Ready { std::string unanswered; };
struct NeedBody { std::string id; };        // the 354 came: body_chunk()* then body_end()
struct MessageDone { MessageReport report; };
struct SessionFailed { SessionFailure failure; };
using Action = std::variant<Send, StartTls, Close, Ready, NeedBody, MessageDone, SessionFailed>;

class ClientSession {
 public:
  explicit ClientSession(ClientConfig config);
  ~ClientSession();
  ClientSession(const ClientSession&) = delete;
  ClientSession& operator=(const ClientSession&) = delete;

  // --- events from the I/O layer ---
  void on_connect_failed(std::string_view reason);   // resolve/connect error: SessionFailed(connect)
  // The secret could not be obtained (no connection was opened):
  // SessionFailed(auth) carrying `kind`.
  void on_credential_failed(std::string_view reason, CredentialFailure kind);
  void on_connected();                              // TCP up (Implicit: and TLS done)
  void on_bytes(std::string_view bytes);            // plaintext from the server
  void on_tls_established();                        // handshake after StartTls done
  void on_tls_failed(std::string_view reason);      // handshake or TLS error, any time
  void on_timeout();                                // deadline() passed with no reply
  void on_closed(std::string_view reason = {});     // the server closed / read or write error
  // To abandon a connection (daemon shutdown), call on_closed("shutting
  // down"): the message in flight, if any, still gets its MessageDone.

  // --- requests from the scheduler ---
  void send_message(OutgoingMessage message);       // only when ready(); else std::logic_error
  // Only between NeedBody and body_end(); ignored otherwise (e.g. after the
  // connection failed while the daemon was still reading the spool).
  void body_chunk(std::string_view bytes);          // stored CRLF text, any split
  void body_end();
  void quit();                                      // when ready(): QUIT, then Close

  std::vector<Action> take_actions();

  bool ready() const;               // idle, may take a message
  bool finished() const;            // Close issued; nothing more will happen
  bool tls_active() const;
  bool authenticated() const;
  Stage stage() const;
  // How long to wait for the server now; zero when no reply is expected
  // (idle, or waiting for the daemon's body chunks: use data_block there).
  std::chrono::seconds deadline() const;
  const Capabilities& capabilities() const;
  // The dialogue so far, "C: ..." / "S: ..." lines (at most the last 400),
  // credentials redacted, no message text. For `outboxctl test-upstream`.
  const std::deque<std::string>& transcript() const;
  std::string mechanism() const;    // the AUTH mechanism used, "" when none

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace outbox::protocol::client
