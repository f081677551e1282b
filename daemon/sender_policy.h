// Sender rights (SPEC "SMTP submission"; RFC 6409 §6.1): which envelope
// senders an authenticated [[user]] or a Unix-socket peer listed in
// [[local_user]] may use, and which local users may submit at all. Pure
// C++ over the Config model (library `outbox_policy`); the daemon hands the
// result to the session as its SenderPolicy.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "daemon/config.h"
#include "protocol/server_session.h"

namespace outbox::daemon {

// One may_send_as entry against an envelope sender ("" = the null sender <>).
//   "*"              any sender, <> included (like [[route]] sender globs)
//   "<>"             only the null sender
//   "*@example.com"  any local part at example.com
//   "a@example.com"  exactly that address
// '*' matches any run of characters. The domain (after the last '@') is
// compared without regard to case (RFC 5321 §2.4), the local part exactly.
bool sender_matches(std::string_view pattern, std::string_view sender);

struct Submitter {
  bool unix_socket = false;
  std::optional<std::uint32_t> uid;  // SO_PEERCRED
  std::string local_user;            // login name of uid, if known
  bool loopback = false;             // TCP from this host: uid from the kernel when known (sock_diag)
};

// nullopt when the sender is allowed, else the 550 5.7.1 to answer MAIL with:
// - authenticated: the user's may_send_as (an unknown user may use none);
// - unauthenticated Unix peer, with [[local_user]] entries: only those users,
//   each with its may_send_as; without entries any local user, any sender;
// - unauthenticated loopback TCP peer: the same rules with the uid the
//   kernel named; unknown (loopback_identity best-effort with rules, or
//   required): 451 4.7.1, the identity could not be established;
// - anyone else (trusted networks): any sender.
std::optional<protocol::PolicyRejection> check_sender(const Config& config, const Submitter& who,
                                                      const std::string& sender, const std::string& auth_user);

}  // namespace outbox::daemon
