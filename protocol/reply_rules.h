// Reply rules: what a provider's reply means and what outbox does about it
// (issue 10 item 2, SPEC "Provider profiles"). Pure: a table of rules (from
// daemon/providers.toml, or the generic table for plain SMTP) and a match
// function; the client session applies the verdict's scope and outcome, the
// relay its consequence for the upstream (tests/unit/relay/test_reply_rules.cpp).
//
// The generic classification (client::classify, RFC 5321 §4.2.1 and RFC
// 3463) stays the fallback: a rule only exists where the provider's dialect
// says something the code alone does not (Gmail's 550 5.4.5 is a quota that
// clears within 24 h, not a permanent refusal; Microsoft's 550 5.2.251 asks
// the sender to stop, not to bounce).
#pragma once
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/reply_parser.h"

namespace outbox::protocol {

enum class ReplyAction {
  Retry,              // temporary for this message: try it again after `after` (the upstream is fine)
  Pause,              // the account is rate-limited: the upstream waits `after`, the message is not charged
  Hold,               // the account's quota is used up: the upstream waits until its window frees (`after`)
  LowerConcurrency,   // too many connections: one fewer for the upstream, then retry after `after`
  Suspend,            // the provider asks the sender to stop: suspend the upstream for `after`, warn the operator
  Fail,               // permanent: fail the recipient (RCPT) or the message; never retried
};
std::string_view action_name(ReplyAction a);    // "retry", "pause", "hold", "lower-concurrency", "suspend", "fail"
std::optional<ReplyAction> parse_action(std::string_view s);
// The scope of the action: true when it concerns the upstream (the account
// or connection), not the message.
bool upstream_action(ReplyAction a);

struct ReplyRule {
  int code = 0;                                // 0: any code
  std::optional<EnhancedStatus> enhanced;      // nullopt: any
  // Enhanced detail range (5.2.251-5.2.255): detail in [enhanced.detail, detail_max].
  int detail_max = 0;                          // 0: exactly enhanced.detail
  std::string text;                            // case-insensitive substring of the reply text; "": any
  ReplyAction action = ReplyAction::Retry;
  std::chrono::seconds after{0};
  std::string meaning;                         // the provider's meaning, plain words
  std::string source;                          // where the reply text and the number come from

  bool matches(const SmtpReply& reply) const;
};

struct ReplyTable {
  std::string provider;                        // "gmail", "163", ...; "smtp" for the generic table
  std::vector<ReplyRule> rules;                // first match wins
};

struct ReplyVerdict {
  std::string provider;
  ReplyAction action = ReplyAction::Retry;
  std::chrono::seconds after{0};
  std::string meaning;
  // Plain words for the log and `outboxctl show`: "gmail: the account's
  // daily sending limit is reached; held 24 hours (not bounced)".
  std::string words() const;
};

// The generic table for plain SMTP (no provider): the replies whose meaning
// is standard (RFC 3463 X.4.5 quota, X.7.1 policy, 421 closing).
const ReplyTable& generic_replies();

// The provider's rule for this reply, else the generic table's; nullopt
// when neither has one (the code's class alone decides). Only failure
// replies (4xx, 5xx) are matched.
std::optional<ReplyVerdict> match_reply(const ReplyTable* provider, const SmtpReply& reply);

// "24 hours", "15 minutes", "90 seconds"
std::string after_words(std::chrono::seconds s);

}  // namespace outbox::protocol
