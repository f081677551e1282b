#include "daemon/upstream_incidents.h"

#include <algorithm>
#include <cstdio>

#include "daemon/logging.h"
#include "daemon/upstream_settings.h"
#include "protocol/diagnosis.h"
#include "protocol/reply_rules.h"

namespace outbox::daemon {

namespace client = protocol::client;

namespace {

// Why an upstream-scope failure suspends its upstream, typed once here.
queue::SuspendReason suspend_reason(const client::SessionFailure& f) {
  // No credential to log in with (an OAuth2 refresh failed): a dead login
  // waits on the slow auth schedule for the operator, an outage on the
  // upstream's ordinary one.
  if (f.credential == client::CredentialFailure::NeedsOperator) return queue::SuspendReason::AuthFailed;
  if (f.credential == client::CredentialFailure::Transient) return queue::SuspendReason::Unreachable;
  if (f.reply && client::is_throttle(*f.reply)) return queue::SuspendReason::Throttled;
  // A refused login (RFC 4954 §6: 535, 534, 530...): the account is wrong,
  // not busy; retried on the slow auth schedule.
  if (f.stage == client::Stage::Auth && f.reply && f.reply->permanent()) return queue::SuspendReason::AuthFailed;
  if (!f.reply) return queue::SuspendReason::Unreachable;   // resolve, connect, TLS, timeout, drop
  return queue::SuspendReason::Refused;
}

}  // namespace

const char* suspend_reason_name(queue::SuspendReason r) {
  switch (r) {
    case queue::SuspendReason::None: return "none";
    case queue::SuspendReason::AuthFailed: return "auth_failed";
    case queue::SuspendReason::Throttled: return "throttled";
    case queue::SuspendReason::Unreachable: return "unreachable";
    case queue::SuspendReason::Refused: return "refused";
    case queue::SuspendReason::Operator: return "operator";
    case queue::SuspendReason::QuotaReached: return "quota_reached";
    case queue::SuspendReason::ProviderStop: return "provider_stop";
  }
  return "unknown";
}

std::optional<queue::Suspension> UpstreamIncidents::failed(const std::string& upstream,
                                                           const client::SessionFailure& f, queue::ConnId conn,
                                                           std::int64_t now) {
  queue::UpstreamFailure uf;
  uf.reason = suspend_reason(f);
  uf.stage = std::string(client::stage_name(f.stage));
  uf.reply = f.text();
  uf.floor = f.reply ? client::suggested_backoff(*f.reply) : std::chrono::seconds{0};
  // The provider's table (SPEC "Provider profiles"): how long, and what
  // else (fewer connections, the operator told), in its own words.
  std::optional<protocol::ReplyVerdict> verdict;
  if (f.reply) {
    const UpstreamConfig* cfg = find_(upstream);
    verdict = protocol::match_reply(cfg ? cfg->replies.get() : nullptr, *f.reply);
    if (verdict && !protocol::upstream_action(verdict->action)) verdict.reset();
  }
  if (verdict) {
    uf.floor = std::max(uf.floor, verdict->after);
    if (verdict->action == protocol::ReplyAction::Hold) uf.reason = queue::SuspendReason::QuotaReached;
    else if (verdict->action == protocol::ReplyAction::Suspend) uf.reason = queue::SuspendReason::ProviderStop;
    else if (uf.reason != queue::SuspendReason::AuthFailed) uf.reason = queue::SuspendReason::Throttled;
    uf.reply += " [" + verdict->words() + "]";
    if (verdict->action == protocol::ReplyAction::LowerConcurrency) {
      if (auto n = sched_.lower_concurrency(upstream, now))
        log::warn(log::Line("upstream_concurrency_lowered").kv("upstream", upstream).kv("max_connections", *n)
                      .kv("for_s", log::seconds_text(queue::Scheduler::kLoweredFor)).kv("reply", f.text())
                      .kv("meaning", verdict->meaning));
    }
  }
  auto s = sched_.upstream_failed(upstream, uf, now, conn);
  if (!s) return std::nullopt;   // removed by a reload while this connection was in flight
  // Another connection of the same outage: the suspension, its line and its
  // alert are the first one's (this connection's own upstream_failed line
  // still says what it met).
  if (s->same_outage) return std::nullopt;
  log::Line l("upstream_suspended");
  l.kv("upstream", upstream).kv("reason", suspend_reason_name(s->reason)).kv("failures", s->failures)
      .kv("until_s", log::seconds_text(s->until - now)).kv("reply", f.text());
  if (verdict)
    l.kv("provider", verdict->provider).kv("action", protocol::action_name(verdict->action))
        .kv("meaning", verdict->meaning);
  if (verdict && verdict->action == protocol::ReplyAction::Suspend)
    l.kv("hint", "the provider asks this account to stop sending for a while; mail waits here. `outboxctl resume " +
                     upstream + "` lifts the suspension early");
  log::warn(l);
  const UpstreamConfig* cfg = find_(upstream);
  const bool oauth2 = cfg && cfg->auth == "oauth2";
  const std::string login_hint = oauth2 ? "run `outboxctl oauth2 login " + upstream +
                                              "`: outboxd uses the new login at once"
                                        : "fix the account or secret and reload, or run `outboxctl resume " +
                                              upstream + "`";
  if (s->tell_operator) {
    // Once per suspension: the account or password is wrong; retrying at the
    // message pace would only earn a login ban at the provider.
    log::error(log::Line("upstream_login_refused").kv("upstream", upstream).kv("reply", uf.reply)
                   .kv("retry_in_s", log::seconds_text(s->until - now)).kv("hint", login_hint));
  }
  if (alerter_) {
    // One alert per incident (the AlertBook de-duplicates the repeats); the
    // incident ends when the upstream delivers again (delivered()).
    if (s->reason == queue::SuspendReason::QuotaReached) quota_exhausted(upstream, uf.reply, s->until, now);
    Alert a;
    const bool auth = s->reason == queue::SuspendReason::AuthFailed;
    a.kind = auth ? AlertKind::AuthFailed : AlertKind::UpstreamSuspended;
    a.subject = upstream;
    a.summary = "upstream " + upstream + (auth ? " refused the login" : " is suspended") + " (" +
                std::string(suspend_reason_name(s->reason)) + "), next try in " + log::seconds_text(s->until - now) +
                " s: " + uf.reply;
    std::string hint = cfg ? protocol::diagnose(upstream::summary(*cfg), f).hint : "";
    a.hint = auth ? (hint.empty() ? login_hint : hint + "; " + login_hint)
                  : (hint.empty() ? "outbox keeps the mail and retries; `outboxctl upstreams` shows the state" : hint);
    a.details = {{"reason", std::string(suspend_reason_name(s->reason))}, {"stage", uf.stage}, {"reply", uf.reply},
                 {"failures", std::to_string(s->failures)}, {"retry_in_s", log::seconds_text(s->until - now)}};
    alerter_->raise(std::move(a));
  }
  return s;
}

void UpstreamIncidents::delivered(const std::string& upstream, std::int64_t started) {
  if (!sched_.upstream_ok(upstream, started)) return;
  if (alerter_) {
    alerter_->resolve(AlertKind::UpstreamSuspended, upstream);
    alerter_->resolve(AlertKind::AuthFailed, upstream);
    alerter_->resolve(AlertKind::QuotaExhausted, upstream);
  }
}

void UpstreamIncidents::window_full(const std::string& upstream, const std::string& why, std::int64_t until,
                                    std::int64_t now) {
  // The upstream's own daily-scale window is full: mail waits an hour or
  // more for it, which an operator wants to know without reading logs.
  if (until - now >= kQuotaAlertWait) quota_exhausted(upstream, why, until, now);
}

void UpstreamIncidents::quota_exhausted(const std::string& upstream, const std::string& why, std::int64_t until,
                                        std::int64_t now) {
  if (!alerter_) return;
  Alert a;
  a.kind = AlertKind::QuotaExhausted;
  a.subject = upstream;
  a.summary = "upstream " + upstream + ": the sending quota is used up, mail waits " + log::seconds_text(until - now) +
              " s: " + why;
  a.hint = "outbox keeps the mail and sends it when the window frees; `outboxctl upstreams` shows the quota's use. "
           "If the provider's limit was raised, update rate/recipient_rate and reload, or `outboxctl resume " +
           upstream + "`";
  a.details = {{"waits_s", log::seconds_text(until - now)}, {"reason", why}};
  alerter_->raise(std::move(a));
}

void UpstreamIncidents::restored(const std::vector<queue::UpstreamState>& states, std::int64_t now) const {
  for (const auto& s : states)
    if (s.suspended_until && *s.suspended_until > now && sched_.knows(s.name))
      log::warn(log::Line("upstream_suspended").kv("upstream", s.name).kv("reason", suspend_reason_name(s.reason))
                    .kv("until_s", log::seconds_text(*s.suspended_until - now)).kv("reply", s.last_reply)
                    .kv("restored", "yes"));
}

}  // namespace outbox::daemon
