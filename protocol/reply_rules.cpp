#include "protocol/reply_rules.h"
#include "protocol/ascii.h"

#include <array>

namespace outbox::protocol {

namespace {

using ascii::icontains;

constexpr std::array<std::pair<ReplyAction, std::string_view>, 6> kNames = {{
    {ReplyAction::Retry, "retry"},
    {ReplyAction::Pause, "pause"},
    {ReplyAction::Hold, "hold"},
    {ReplyAction::LowerConcurrency, "lower-concurrency"},
    {ReplyAction::Suspend, "suspend"},
    {ReplyAction::Fail, "fail"},
}};

ReplyRule rule(int code, std::optional<EnhancedStatus> esc, std::string text, ReplyAction a, std::string meaning,
               std::string source) {
  ReplyRule r;
  r.code = code;
  r.enhanced = esc;
  r.text = std::move(text);
  r.action = a;
  r.meaning = std::move(meaning);
  r.source = std::move(source);
  return r;
}

}  // namespace

std::string_view action_name(ReplyAction a) {
  for (const auto& [v, n] : kNames)
    if (v == a) return n;
  return "";
}

std::optional<ReplyAction> parse_action(std::string_view s) {
  for (const auto& [v, n] : kNames)
    if (n == s) return v;
  return std::nullopt;
}

bool upstream_action(ReplyAction a) {
  return a == ReplyAction::Pause || a == ReplyAction::Hold || a == ReplyAction::LowerConcurrency ||
         a == ReplyAction::Suspend;
}

bool ReplyRule::matches(const SmtpReply& r) const {
  if (code != 0 && r.code != code) return false;
  if (enhanced) {
    if (!r.enhanced) return false;
    const auto& e = *r.enhanced;
    if (e.cls != enhanced->cls || e.subject != enhanced->subject) return false;
    int hi = detail_max > enhanced->detail ? detail_max : enhanced->detail;
    if (e.detail < enhanced->detail || e.detail > hi) return false;
  }
  return icontains(r.text(), text);
}

std::string after_words(std::chrono::seconds s) {
  auto n = s.count();
  auto unit = [](long long v, const char* one) {
    return std::to_string(v) + " " + one + (v == 1 ? "" : "s");
  };
  if (n > 0 && n % 86400 == 0 && n / 86400 > 1) return unit(n / 86400, "day");
  if (n > 0 && n % 3600 == 0) return unit(n / 3600, "hour");
  if (n > 0 && n % 60 == 0) return unit(n / 60, "minute");
  return unit(n, "second");
}

std::string ReplyVerdict::words() const {
  std::string w = provider + ": " + meaning + "; ";
  const bool timed = after.count() > 0;
  switch (action) {
    case ReplyAction::Retry:
      w += timed ? "outbox retries the message in " + after_words(after) : "outbox retries the message later";
      break;
    case ReplyAction::Pause:
      w += timed ? "outbox pauses this upstream for " + after_words(after) + " (the message is not charged)"
                 : "outbox backs this upstream off (the message is not charged)";
      break;
    case ReplyAction::Hold:
      w += "outbox holds this upstream's mail " + (timed ? "for " + after_words(after) + " " : std::string()) +
           "until the quota window frees (not bounced)";
      break;
    case ReplyAction::LowerConcurrency:
      w += "outbox opens one connection fewer to this upstream and retries" +
           (timed ? " in " + after_words(after) : std::string());
      break;
    case ReplyAction::Suspend:
      w += "outbox suspends this upstream" + (timed ? " for " + after_words(after) : std::string()) +
           " (`outboxctl resume` lifts it)";
      break;
    case ReplyAction::Fail:
      w += "permanent: not retried";
      break;
  }
  return w;
}

const ReplyTable& generic_replies() {
  // RFC 3463 and RFC 5321 meanings every server shares; `after` 0: the
  // upstream's own backoff curve decides.
  static const ReplyTable table{
      "smtp",
      {
          rule(0, EnhancedStatus{4, 4, 5}, "", ReplyAction::Pause,
               "the server is congested or the account's quota is reached (RFC 3463 4.4.5)", "RFC 3463 §3.5"),
          rule(0, EnhancedStatus{5, 4, 5}, "", ReplyAction::Hold,
               "the account's quota at the provider is used up (RFC 3463 X.4.5)", "RFC 3463 §3.5"),
          rule(421, std::nullopt, "", ReplyAction::Pause,
               "the server is closing the connection (busy, or limiting this client)", "RFC 5321 §4.2.3, §3.8"),
      }};
  return table;
}

std::optional<ReplyVerdict> match_reply(const ReplyTable* provider, const SmtpReply& reply) {
  if (!reply.transient() && !reply.permanent()) return std::nullopt;
  for (const ReplyTable* t : {provider, &generic_replies()}) {
    if (!t) continue;
    for (const auto& r : t->rules)
      if (r.matches(reply)) return ReplyVerdict{t->provider, r.action, r.after, r.meaning};
  }
  return std::nullopt;
}

}  // namespace outbox::protocol
