#include "daemon/sender_policy.h"

#include "protocol/address_glob.h"

#include <vector>

namespace outbox::daemon {

namespace {

bool any_matches(const std::vector<std::string>& patterns, const std::string& sender) {
  for (const auto& p : patterns)
    if (sender_matches(p, sender)) return true;
  return false;
}

// RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets with its code and
// CRLF; a 254-octet address and a 256-octet user name would not fit both.
constexpr std::size_t kMaxReplyText = 512 - 6;

protocol::PolicyRejection not_owned(const std::string& sender, const std::string& user) {
  std::string text = "5.7.1 Sender address <" + sender + "> not owned by user " + user;
  if (text.size() > kMaxReplyText) text = "5.7.1 Sender address not owned by user " + user;
  if (text.size() > kMaxReplyText) text = "5.7.1 Sender address not owned by user";
  return {550, std::move(text), "sender_not_owned"};
}

}  // namespace

bool sender_matches(std::string_view pattern, std::string_view sender) {
  // One glob for every address pattern (protocol/address_glob.h).
  return protocol::address_matches(pattern, sender);
}

std::optional<protocol::PolicyRejection> check_sender(const Config& config, const Submitter& who,
                                                      const std::string& sender, const std::string& auth_user) {
  if (!auth_user.empty()) {
    // RFC 6409 §6.1: the submission server may check that the
    // authenticated identity is allowed to use this sender.
    for (const auto& u : config.users)
      if (u.name == auth_user) {
        if (any_matches(u.may_send_as, sender)) return std::nullopt;
        break;
      }
    return not_owned(sender, auth_user);
  }
  using LI = LimitsConfig::LoopbackIdentity;
  if (who.loopback && !who.uid &&
      (config.limits.loopback_identity == LI::Required ||
       (config.limits.loopback_identity == LI::BestEffort && !config.local_users.empty())))
    return protocol::PolicyRejection{
        451, "4.7.1 Cannot tell which local user owns this connection; use the Unix socket (sendmail) or AUTH",
        "loopback_identity_unknown"};
  const bool local = who.unix_socket || (who.loopback && config.limits.loopback_identity != LI::Off);
  if (!local || config.local_users.empty()) return std::nullopt;
  // Like Postfix's authorized_submit_users: with a list, only those listed.
  std::string name = who.local_user;
  if (name.empty()) name = who.uid ? "uid " + std::to_string(*who.uid) : "unknown";
  for (const auto& u : config.local_users)
    if (!who.local_user.empty() && u.name == who.local_user) {
      if (any_matches(u.may_send_as, sender)) return std::nullopt;
      return not_owned(sender, name);
    }
  std::string text = "5.7.1 Local user " + name + " may not submit mail";
  if (text.size() > kMaxReplyText) text = "5.7.1 Local user may not submit mail";
  return protocol::PolicyRejection{550, std::move(text), "local_user_not_allowed"};
}

}  // namespace outbox::daemon
