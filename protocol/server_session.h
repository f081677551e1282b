// ServerSession: the sans-I/O SMTP submission state machine (RFC 5321, RFC 6409).
//
// Bytes go in through feed(); what the I/O layer must do comes out of
// take_actions(). It never touches a socket, a file, a clock or a database:
// the daemon (daemon/inbound_connection.cpp) moves bytes and spool requests,
// unit tests drive it from transcripts. Single-threaded; not reentrant.
//
// Message flow: DATA accepted -> BeginMessage(id, envelope); the body arrives
// as AppendBody chunks (dot-unstuffed, CRLF line ends, at most ~64 KiB each, so
// memory does not grow with the message); at the real end of data
// (<CRLF>.<CRLF> only, RFC 5321 §4.1.1.4) -> CommitMessage(id, prefix, size)
// and the session waits: no further input is processed until the I/O layer
// calls on_commit_result(). A refused message (bare CR/LF/NUL, over size)
// yields AbortMessage(id) and the error reply instead.
#pragma once

#include <cstdint>
#include <ctime>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace outbox::protocol {

enum class ListenerTls { None, StartTls, Implicit };
enum class ListenerAuth { None, Optional, Required };

// A refusal decided outside the session (the daemon's sender rights, RFC 6409
// §6.1), so that protocol/ needs no configuration model.
struct PolicyRejection {
  int code = 550;
  std::string text;    // with its enhanced code: "5.7.1 Sender address <a@b> not owned by user app"
  std::string reason;  // for the log line event=rejected reason=...
};
// Asked at MAIL with the sender as it will be stored ("" for <>) and the
// authenticated user ("" when none); nullopt lets the sender through.
using SenderPolicy =
    std::function<std::optional<PolicyRejection>(const std::string& sender, const std::string& auth_user)>;

// An upstream may take less than the listener: the first upstream of the
// sender's route and its [[upstream]] max_message_size, asked at MAIL with the
// stored sender. bytes = 0: no lower limit.
struct RouteSizeLimit {
  std::uint64_t bytes = 0;
  std::string upstream;
};
using RouteSizeLimitFn = std::function<RouteSizeLimit(const std::string& sender)>;

struct SessionConfig {
  std::string hostname = "localhost";       // greeting, EHLO, Received:, Message-ID:
  std::string domain;                        // qualifies bare addresses ("root" -> root@domain)
  std::map<std::string, std::string> aliases;  // local part (bare or @domain) -> address, at RCPT
  std::uint64_t max_message_size = 35ull << 20;  // SIZE, RFC 1870
  std::size_t max_recipients = 100;          // RFC 5321 §4.5.3.1.8: >= 100
  std::size_t max_errors = 10;               // then 421 4.7.0 and close
  std::size_t max_auth_failures = 3;         // per connection, then 421 4.7.0 and close; 0 = no cap
  ListenerTls tls = ListenerTls::None;
  ListenerAuth auth = ListenerAuth::None;
  SenderPolicy sender_policy;                // empty: every sender allowed
  RouteSizeLimitFn route_size_limit;         // empty: max_message_size only
};

struct PeerInfo {
  bool unix_socket = false;
  std::string address;                 // "127.0.0.1", "::1"; empty on a Unix socket
  std::optional<std::uint32_t> uid;    // SO_PEERCRED on a Unix socket
  std::string user;                    // login name of uid, if known
  bool trusted = false;                // may submit without AUTH (trusted_networks, Unix)
};

struct Envelope {
  std::string sender;                  // empty string = null reverse-path <>
  std::vector<std::string> recipients;
  std::string helo;
  bool smtputf8 = false;               // RFC 6531 SMTPUTF8 parameter
  bool body_8bit = false;              // RFC 6152 BODY=8BITMIME
  std::optional<std::uint64_t> declared_size;  // RFC 1870 SIZE=
  std::string auth_user;               // RFC 4954 authenticated user; empty when none
};

// --- actions for the I/O layer -------------------------------------------
struct SendReply { std::string bytes; };                 // write as is
struct BeginMessage { std::string id; Envelope envelope; };
struct AppendBody { std::string id; std::string bytes; };
// prefix: the trace/added header lines (Received:, and Date:/Message-ID: when
// missing) that go before the body chunks, each ending in CRLF.
// size: prefix + body bytes, as stored.
struct CommitMessage {
  std::string id;
  std::string prefix;
  std::uint64_t size = 0;
  std::string message_id;   // the client's Message-ID value, or the one added ("<id@host>")
};
struct AbortMessage { std::string id; };
struct StartTls {};       // the 220 was queued; discard unread plaintext, handshake, then on_tls_established()
struct CloseConnection {};  // after flushing queued replies
struct LogEvent {         // one key=value log line, e.g. event=rejected reason=...
  std::string event;      // never holds a password
  std::vector<std::pair<std::string, std::string>> fields;
};
// SMTP AUTH (RFC 4954): verify these credentials, then on_auth_result().
// Input is held until then. The password is a secret: never log or keep it.
struct CheckCredentials { std::string user; std::string password; };
using Action = std::variant<SendReply, BeginMessage, AppendBody, CommitMessage,
                            AbortMessage, StartTls, CloseConnection, LogEvent, CheckCredentials>;

class ServerSession {
 public:
  using IdSource = std::function<std::string()>;  // a fresh queue id per message
  using Clock = std::function<std::time_t()>;     // for Received:/Date:

  ServerSession(SessionConfig config, PeerInfo peer, IdSource ids, Clock clock);
  ~ServerSession();
  ServerSession(const ServerSession&) = delete;
  ServerSession& operator=(const ServerSession&) = delete;

  // Queues the 220 greeting. pregreet: the client already sent bytes that
  // cannot have followed this greeting (postscreen's pre-greet test, RFC 5321
  // §4.3.1: the client waits for the 220); an untrusted peer then gets
  // 554 5.5.1 and is closed, a trusted one the usual 220.
  void start(bool pregreet = false);
  void feed(std::string_view bytes);    // network bytes in (buffered while awaiting a commit)
  void on_commit_result(bool ok);       // 250 2.0.0 Ok: queued as ID, or 451 4.3.0
  void on_auth_result(bool ok);         // after CheckCredentials: 235 2.7.0, or 535 5.7.8
  void on_tls_established();            // RFC 3207 §4.2: forget everything, wait for EHLO
  void on_timeout();                    // 421 4.4.2 + close
  void on_shutdown();                   // 421 4.3.2 + close (daemon stopping)
  // DATA below min_data_rate (bytes received in DATA over seconds, for the
  // log line): 421 4.4.2 + close; the message is aborted.
  void on_slow_data(std::uint64_t bytes, std::uint64_t seconds);
  std::vector<Action> take_actions();

  bool awaiting_commit() const;         // input is held, not run, until on_commit_result()
  bool awaiting_auth() const;           // stop reading until on_auth_result()
  // Bytes fed while awaiting a commit or a credential check, held in order
  // until the answer: the I/O layer bounds reading by it.
  std::size_t held_input() const;
  bool in_data() const;                 // between 354 and the end of data (data_timeout applies)
  bool closed() const;                  // CloseConnection was issued
  bool tls_active() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace outbox::protocol
