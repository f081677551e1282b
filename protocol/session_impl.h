// Private: the state of a ServerSession, shared by server_session.cpp (input
// loop, DATA, lifecycle) and session_commands.cpp (one handler per verb).
// Not part of the protocol library's interface.
#pragma once
#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/command.h"
#include "protocol/data_decoder.h"
#include "protocol/header_scanner.h"
#include "protocol/line_framer.h"
#include "protocol/server_session.h"

namespace outbox::protocol {

// RFC 5321 §4.5.3.1.4: 512 octets including the CRLF.
inline constexpr std::size_t kMaxCommandLine = 512;
// RFC 4954 §4: an AUTH exchange line (the initial response included) may be
// 12,288 octets; the framer takes lines that long and handle_line() holds
// every other command to kMaxCommandLine.
inline constexpr std::size_t kMaxAuthLine = 12288;
// Longest user name taken to a credential check (and into a log line).
inline constexpr std::size_t kMaxAuthUser = 256;
// Upper bound of one AppendBody chunk.
inline constexpr std::size_t kMaxChunk = 64 * 1024;

struct ServerSession::Impl {
  enum class State {
    Command,      // reading command lines
    Data,         // between 354 and the end of data
    AwaitCommit,  // CommitMessage issued; input is held until on_commit_result()
    AwaitAuth,    // CheckCredentials issued; input is held until on_auth_result()
    TlsWait,      // 220 to STARTTLS sent; input is discarded until on_tls_established()
    Closed,       // CloseConnection issued; input is ignored
  };
  enum class Greeted { None, Helo, Ehlo };
  enum class AfterCommit { Nothing, Shutdown, Timeout };
  enum class AuthStep { None, PlainResponse, LoginUser, LoginPassword };  // waiting for a 334 response

  Impl(SessionConfig c, PeerInfo p, IdSource i, Clock k);

  // --- input (server_session.cpp)
  void feed(std::string_view bytes);
  void process(std::string_view in);
  void process_data(std::string_view& in);
  void end_of_data();
  void emit_chunk();
  std::string build_prefix() const;
  void close();
  void close_421(std::string_view enhanced, std::string_view text);
  void discard(std::size_t n);

  // --- replies and bookkeeping
  void reply(int code, std::string_view text);
  void reply_lines(int code, const std::vector<std::string>& lines);
  // A reply caused by a client mistake: counts towards max_errors.
  void fail(int code, std::string_view text);
  void log(std::string event, std::vector<std::pair<std::string, std::string>> fields);
  void reset_transaction();

  // --- commands (session_commands.cpp)
  void handle_line(std::string_view line);
  void cmd_helo(const Command& c, bool extended);
  void cmd_mail(const Command& c);
  void cmd_rcpt(const Command& c);
  void cmd_data(const Command& c);
  void cmd_starttls(const Command& c);
  void cmd_auth(const Command& c);
  void auth_response(std::string_view line);
  void auth_plain(std::string& message);
  void check_credentials(std::string user, std::string& password);
  void auth_failed(const std::string& user);
  void end_auth_exchange();
  std::vector<std::string> ehlo_lines() const;
  bool auth_offered() const;
  bool param_error(const ParamResult& r);
  std::string qualify(std::string local, std::string domain) const;
  std::string resolve_recipient(const std::string& local, const std::string& domain) const;

  SessionConfig cfg;
  PeerInfo peer;
  IdSource ids;
  Clock clock;

  State state = State::Command;
  std::vector<Action> actions;
  LineFramer framer{kMaxAuthLine};
  std::string pending;  // input held while awaiting a commit
  std::size_t errors = 0;
  bool tls = false;
  bool authenticated = false;  // RFC 4954: a successful AUTH, until STARTTLS
  std::string auth_user;
  AuthStep auth_step = AuthStep::None;
  std::string auth_mechanism;  // "PLAIN" / "LOGIN" of the exchange under way
  std::string login_user;      // LOGIN: the user name, while the password is asked for
  std::string checking_user;   // the user of the CheckCredentials in flight
  std::size_t auth_failures = 0;
  AfterCommit after_commit = AfterCommit::Nothing;

  // greeting and transaction (RFC 5321 §4.1.4: EHLO/HELO and RSET clear the latter)
  Greeted greeted = Greeted::None;
  std::string helo;
  bool has_mail = false;
  Envelope envelope;
  std::set<std::string> recipient_keys;  // duplicate detection
  bool logged_too_many = false;
  // The size limit of this transaction: max_message_size, or the route's
  // upstream when it takes less (then named in the 552).
  std::uint64_t size_limit = 0;
  std::string size_limit_upstream;

  // message being received
  std::string msg_id;
  DataDecoder decoder;
  HeaderScanner headers;
  std::string chunk;
  std::uint64_t body_bytes = 0;
  bool too_big = false;
};

// 552 when the route's upstream takes less than the listener (RFC 1870 §6;
// RFC 3463 5.3.4: message too big for system).
inline std::string too_big_for(const std::string& upstream, std::uint64_t bytes) {
  return "5.3.4 Message size exceeds the limit of upstream \"" + upstream + "\" (" + std::to_string(bytes) +
         " bytes)";
}

}  // namespace outbox::protocol
