// UpstreamIncidents (daemon/upstream_incidents.h): an upstream's failure and
// recovery as the operator sees it, against a real Scheduler, a fixed clock
// and a recording AlertSink. Rows of SessionFailures (a refused login, a
// provider's throttling and quota replies, a connection failure) and what
// each one makes: the suspension's reason, the log lines (once per outage),
// the alert and its hint; then a delivery that resolves the alerts.
#include <doctest/doctest.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/alerter.h"
#include "daemon/config.h"
#include "daemon/providers.h"
#include "daemon/upstream_incidents.h"
#include "protocol/client_session.h"
#include "queue/scheduler.h"
#include "unit/daemon/log_capture.h"

using namespace std::chrono_literals;
using outbox::daemon::Alert;
using outbox::daemon::AlertKind;
using outbox::daemon::AlertSink;
using outbox::UpstreamConfig;
using outbox::daemon::UpstreamIncidents;
using outbox::daemon::test::log_capture;
using outbox::protocol::EnhancedStatus;
using outbox::protocol::SmtpReply;
namespace client = outbox::protocol::client;
namespace queue = outbox::queue;

namespace {

constexpr std::int64_t S = 1'000'000;   // µs per second
constexpr std::int64_t T0 = 1'700'000'000 * S;

struct Resolved {
  AlertKind kind;
  std::string subject;
};

// What the Alerter would have been given.
struct RecordingAlerts final : AlertSink {
  std::vector<Alert> raised;
  std::vector<Resolved> resolved;
  void raise(Alert a) override { raised.push_back(std::move(a)); }
  void resolve(AlertKind k, const std::string& subject) override { resolved.push_back({k, subject}); }
};

std::string detail(const Alert& a, const std::string& key) {
  for (const auto& [k, v] : a.details)
    if (k == key) return v;
  return "(absent)";
}

// One upstream "mail" (optionally with a provider's reply rules), its
// scheduler (no jitter) and the incidents object under test.
struct Rig {
  UpstreamConfig cfg;
  queue::Scheduler sched{params(), [] { return 0.5; }};
  RecordingAlerts alerts;
  UpstreamIncidents inc{sched, [this](std::string_view name) -> const UpstreamConfig* {
                          return name == cfg.name ? &cfg : nullptr;
                        }};

  explicit Rig(std::string provider = "", std::string auth = "auto", std::size_t max_connections = 2) {
    log_capture().clear();
    cfg.name = "mail";
    cfg.host = "smtp.example.net";
    cfg.port = 587;
    cfg.tls = outbox::TlsMode::StartTls;
    cfg.username = "me@example.net";
    cfg.auth = std::move(auth);
    cfg.max_connections = max_connections;
    if (!provider.empty()) {
      auto p = outbox::find_provider(provider);
      REQUIRE(p);
      cfg.provider = provider;
      cfg.replies = p->replies;
    }
    queue::UpstreamSpec s;
    s.name = cfg.name;
    s.max_connections = max_connections;
    sched.set_upstreams({s}, T0);
    inc.set_alerter(&alerts);
  }

  static queue::SchedulerParams params() {
    queue::SchedulerParams p;
    p.retry = queue::RetryParams{60s, 3600s, 2.0, 0.0, 5 * 86400s};
    return p;
  }

  // Connections opened now for `n` waiting messages (the scheduler's Open decisions).
  std::vector<queue::ConnId> open(int n, std::int64_t now) {
    for (int i = 0; i < n; ++i) sched.add_due(queue::DueWork{"m" + std::to_string(i), now, 0, {"mail"}}, now);
    std::vector<queue::ConnId> conns;
    for (const auto& d : sched.poll(now))
      if (d.kind == queue::Decision::Kind::Open) conns.push_back(d.conn);
    return conns;
  }

  std::size_t lines(std::initializer_list<std::string_view> parts) { return log_capture().count(parts); }
};

client::SessionFailure failure(client::Stage stage, std::optional<SmtpReply> reply, std::string detail_text = "") {
  client::SessionFailure f;
  f.stage = stage;
  f.reply = std::move(reply);
  f.detail = std::move(detail_text);
  return f;
}

SmtpReply reply(int code, std::optional<EnhancedStatus> e, std::string text) {
  return SmtpReply::make(code, e, std::move(text));
}

constexpr const char* kPlainLoginHint = "fix the account or secret and reload, or run `outboxctl resume mail`";

}  // namespace

TEST_CASE("each kind of upstream failure suspends with its reason, one line and one alert") {
  struct Row {
    const char* name;
    const char* provider;
    client::SessionFailure f;
    const char* reason;                  // upstream_suspended reason=
    std::int64_t min_wait;               // the suspension lasts at least this long (µs)
    AlertKind alert;                     // the last alert raised
    std::size_t alerts;                  // alerts raised in all
    bool login_refused;                  // upstream_login_refused logged
    const char* provider_fields;         // "" or the provider/action part of the line
  };
  auto credential = [](client::CredentialFailure c) {
    auto f = failure(client::Stage::Auth, std::nullopt, "token refresh failed");
    f.credential = c;
    return f;
  };
  const std::vector<Row> rows = {
      {"auth refused 535", "", failure(client::Stage::Auth, reply(535, EnhancedStatus{5, 7, 8}, "Authentication failed")),
       "auth_failed", 300 * S, AlertKind::AuthFailed, 1, true, ""},
      {"throttled 421 4.7.0 (gmail: pause 5m)", "gmail",
       failure(client::Stage::Mail, reply(421, EnhancedStatus{4, 7, 0}, "Try again later, closing connection")),
       "throttled", 300 * S, AlertKind::UpstreamSuspended, 1, false, "provider=gmail action=pause"},
      {"throttled 451 MI:SFQ (163: pause 15m)", "163",
       failure(client::Stage::Mail, reply(451, std::nullopt, "MI:SFQ mail sent too often")),
       "throttled", 900 * S, AlertKind::UpstreamSuspended, 1, false, "provider=163 action=pause"},
      {"throttled 421 without a provider (the generic table: pause)", "",
       failure(client::Stage::Greeting, reply(421, EnhancedStatus{4, 3, 2}, "too busy")),
       "throttled", 60 * S, AlertKind::UpstreamSuspended, 1, false, "provider=smtp action=pause"},
      {"throttled 451 4.7.1, no rule", "",
       failure(client::Stage::Rcpt, reply(451, EnhancedStatus{4, 7, 1}, "rate limit reached")),
       "throttled", 60 * S, AlertKind::UpstreamSuspended, 1, false, ""},
      {"a 451 that is no throttle: refused", "",
       failure(client::Stage::Mail, reply(451, EnhancedStatus{4, 3, 0}, "local error in processing")),
       "refused", 60 * S, AlertKind::UpstreamSuspended, 1, false, ""},
      {"connection refused", "", failure(client::Stage::Connect, std::nullopt, "connection refused"),
       "unreachable", 60 * S, AlertKind::UpstreamSuspended, 1, false, ""},
      {"quota used up 550 5.4.5 (gmail: hold 24h)", "gmail",
       failure(client::Stage::Data, reply(550, EnhancedStatus{5, 4, 5}, "Daily user sending limit exceeded")),
       "quota_reached", 86400 * S, AlertKind::UpstreamSuspended, 2, false, "provider=gmail action=hold"},
      {"the provider asks to stop 550 5.2.252 (microsoft365: suspend 1h)", "microsoft365",
       failure(client::Stage::Data, reply(550, EnhancedStatus{5, 2, 252}, "sender throttled due to continuous errors")),
       "provider_stop", 3600 * S, AlertKind::UpstreamSuspended, 1, false, "provider=microsoft365 action=suspend"},
      {"no credential, the operator's to fix", "", credential(client::CredentialFailure::NeedsOperator),
       "auth_failed", 300 * S, AlertKind::AuthFailed, 1, true, ""},
      {"no credential for now", "", credential(client::CredentialFailure::Transient),
       "unreachable", 60 * S, AlertKind::UpstreamSuspended, 1, false, ""},
  };
  for (const auto& row : rows) {
    const std::string row_name = row.name;
    CAPTURE(row_name);
    Rig r(row.provider);
    const std::int64_t now = T0 + 10 * S;
    auto s = r.inc.failed("mail", row.f, 7, now);
    REQUIRE(s);   // news: the relay persists it
    CHECK(std::string(outbox::daemon::suspend_reason_name(s->reason)) == row.reason);
    CHECK(s->failures == 1);
    CHECK(s->until - now >= row.min_wait);
    auto st = r.sched.state("mail");
    REQUIRE(st);
    CHECK(st->suspended_until == s->until);

    const std::string reason = std::string("reason=") + row.reason;
    CHECK(r.lines({"event=upstream_suspended", "upstream=mail", reason, "failures=1"}) == 1);
    if (*row.provider_fields) CHECK(r.lines({"event=upstream_suspended", row.provider_fields, "meaning="}) == 1);
    else CHECK(r.lines({"event=upstream_suspended", "provider="}) == 0);
    CHECK(r.lines({"event=upstream_login_refused", "upstream=mail"}) == (row.login_refused ? 1u : 0u));
    if (row.login_refused) CHECK(r.lines({"event=upstream_login_refused", kPlainLoginHint}) == 1);

    REQUIRE(r.alerts.raised.size() == row.alerts);
    const Alert& a = r.alerts.raised.back();
    CHECK(a.kind == row.alert);
    CHECK(a.subject == "mail");
    CHECK(detail(a, "reason") == row.reason);
    CHECK(detail(a, "stage") == std::string(client::stage_name(row.f.stage)));
    CHECK(detail(a, "failures") == "1");
    CHECK(!a.hint.empty());
    if (row.alert == AlertKind::AuthFailed) {
      CHECK(a.summary.rfind("upstream mail refused the login (auth_failed), next try in ", 0) == 0);
      CHECK(a.hint.find(kPlainLoginHint) != std::string::npos);
    } else {
      CHECK(a.summary.rfind(std::string("upstream mail is suspended (") + row.reason + "), next try in ", 0) == 0);
    }
    if (row.alerts == 2) CHECK(r.alerts.raised.front().kind == AlertKind::QuotaExhausted);
    CHECK(r.alerts.resolved.empty());
  }
}

TEST_CASE("a provider's stop request names the way out in the line") {
  Rig r("microsoft365");
  r.inc.failed("mail", failure(client::Stage::Data, reply(550, EnhancedStatus{5, 2, 251}, "sender throttled")), 1, T0);
  CHECK(r.lines({"event=upstream_suspended", "reason=provider_stop",
                 "the provider asks this account to stop sending for a while", "outboxctl resume mail"}) == 1);
}

TEST_CASE("too many connections: one fewer for an hour, and the upstream waits the rule's time") {
  Rig r("microsoft365", "auto", 3);
  auto conns = r.open(3, T0);
  REQUIRE(conns.size() == 3);
  auto s = r.inc.failed("mail", failure(client::Stage::Greeting,
                                        reply(432, EnhancedStatus{4, 3, 2}, "Concurrent connections limit exceeded")),
                        conns[0], T0 + S);
  REQUIRE(s);
  CHECK(s->reason == queue::SuspendReason::Throttled);
  CHECK(r.sched.concurrency("mail", T0 + S) == 2);
  CHECK(r.lines({"event=upstream_concurrency_lowered", "upstream=mail", "max_connections=2", "for_s=3600.0",
                 "meaning="}) == 1);
  CHECK(r.lines({"event=upstream_suspended", "reason=throttled", "action=lower-concurrency"}) == 1);
}

TEST_CASE("connections of one outage: the first one's line and alert only") {
  Rig r;
  auto conns = r.open(2, T0);
  REQUIRE(conns.size() == 2);
  const auto refused = failure(client::Stage::Connect, std::nullopt, "connection refused");
  auto first = r.inc.failed("mail", refused, conns[0], T0 + S);
  REQUIRE(first);
  const auto until = first->until;
  // The second connection was opened before the first failed: the same outage.
  CHECK_FALSE(r.inc.failed("mail", refused, conns[1], T0 + 2 * S));
  CHECK(r.lines({"event=upstream_suspended"}) == 1);
  CHECK(r.alerts.raised.size() == 1);
  CHECK(r.sched.state("mail")->suspended_until == until);   // nothing moved
}

TEST_CASE("a refused login tells the operator once per suspension") {
  Rig r;
  const auto refused = failure(client::Stage::Auth, reply(535, EnhancedStatus{5, 7, 8}, "Authentication failed"));
  auto s1 = r.inc.failed("mail", refused, 1, T0);
  REQUIRE(s1);
  CHECK(s1->tell_operator);
  // The next probe after the suspension ended, refused again: a second step.
  auto s2 = r.inc.failed("mail", refused, 2, s1->until + S);
  REQUIRE(s2);
  CHECK(s2->failures == 2);
  CHECK(r.lines({"event=upstream_suspended", "reason=auth_failed"}) == 2);
  CHECK(r.lines({"event=upstream_login_refused"}) == 1);
  // One alert per failure: the AlertBook (the Alerter's) de-duplicates them.
  CHECK(r.alerts.raised.size() == 2);
}

TEST_CASE("an OAuth2 upstream's refused login points at outboxctl oauth2 login") {
  Rig r("", "oauth2");
  r.inc.failed("mail", failure(client::Stage::Auth, reply(535, EnhancedStatus{5, 7, 3}, "Authentication unsuccessful")), 1,
               T0);
  const std::string hint = "run `outboxctl oauth2 login mail`: outboxd uses the new login at once";
  CHECK(r.lines({"event=upstream_login_refused", hint}) == 1);
  REQUIRE(r.alerts.raised.size() == 1);
  CHECK(r.alerts.raised[0].kind == AlertKind::AuthFailed);
  CHECK(r.alerts.raised[0].hint.find(hint) != std::string::npos);
}

TEST_CASE("a later delivery ends the suspension and resolves the upstream's alerts") {
  Rig r("gmail");
  auto s = r.inc.failed("mail", failure(client::Stage::Data, reply(550, EnhancedStatus{5, 4, 5}, "Daily limit")), 1, T0);
  REQUIRE(s);
  REQUIRE(r.alerts.raised.size() == 2);   // quota_exhausted, upstream_suspended
  r.inc.delivered("mail", s->until + S);
  REQUIRE(r.alerts.resolved.size() == 3);
  CHECK(r.alerts.resolved[0].kind == AlertKind::UpstreamSuspended);
  CHECK(r.alerts.resolved[1].kind == AlertKind::AuthFailed);
  CHECK(r.alerts.resolved[2].kind == AlertKind::QuotaExhausted);
  for (const auto& x : r.alerts.resolved) CHECK(x.subject == "mail");
  CHECK_FALSE(r.sched.state("mail")->suspended_until);
  // A new outage counts from one again, with a new line and alert.
  auto again = r.inc.failed("mail", failure(client::Stage::Connect, std::nullopt, "connection refused"), 2,
                            s->until + 2 * S);
  REQUIRE(again);
  CHECK(again->failures == 1);
  CHECK(r.lines({"event=upstream_suspended", "reason=unreachable", "failures=1"}) == 1);
  CHECK(r.alerts.raised.size() == 3);
}

TEST_CASE("a message under way when the upstream refused another does not end the suspension") {
  // 163's "451 MI:SFQ" to one message's final dot, the next message already
  // pipelined behind it (RFC 2920 §3.1) and accepted: the 15 minutes stand.
  Rig r("163");
  const std::int64_t handed_before = T0 - S;
  auto s = r.inc.failed("mail", failure(client::Stage::DataEnd, reply(451, std::nullopt, "MI:SFQ sender frequency limited")),
                        1, T0);
  REQUIRE(s);
  CHECK(s->until - T0 >= 900 * S);
  r.inc.delivered("mail", handed_before);
  CHECK(r.sched.state("mail")->suspended_until == s->until);
  CHECK(r.alerts.resolved.empty());
  // Another failure of the same outage moves the mark: a message handed over
  // between the two is under way at the second one.
  r.inc.failed("mail", failure(client::Stage::Data, reply(451, std::nullopt, "MI:SFQ")), 2, T0 + 10 * S);
  r.inc.delivered("mail", T0 + 5 * S);
  CHECK(r.sched.state("mail")->suspended_until);
  // One handed over after the last refusal (the suspension ran out, or
  // `outboxctl resume`) is news: the upstream is well.
  r.inc.delivered("mail", T0 + 20 * S);
  CHECK_FALSE(r.sched.state("mail")->suspended_until);
  CHECK(r.alerts.resolved.size() == 3);
  // ... and from then on every delivery counts again.
  r.inc.delivered("mail", T0);
  CHECK(r.alerts.resolved.size() == 6);
}

TEST_CASE("without an alerter: the same lines, nothing else") {
  Rig r;
  r.inc.set_alerter(nullptr);
  auto s = r.inc.failed("mail", failure(client::Stage::Auth, reply(535, EnhancedStatus{5, 7, 8}, "no")), 1, T0);
  REQUIRE(s);
  r.inc.window_full("mail", "full", T0 + 7200 * S, T0);
  r.inc.delivered("mail", T0 + S);
  CHECK(r.lines({"event=upstream_suspended"}) == 1);
  CHECK(r.lines({"event=upstream_login_refused"}) == 1);
  CHECK(r.alerts.raised.empty());
  CHECK(r.alerts.resolved.empty());
}

TEST_CASE("an upstream removed by a reload: nothing to report") {
  Rig r;
  CHECK_FALSE(r.inc.failed("gone", failure(client::Stage::Connect, std::nullopt, "connection refused"), 1, T0));
  CHECK(log_capture().lines().empty());
  CHECK(r.alerts.raised.empty());
}

TEST_CASE("a full rate window is a quota_exhausted alert from an hour's wait") {
  Rig r;
  const std::int64_t hour = UpstreamIncidents::kQuotaAlertWait;
  r.inc.window_full("mail", "upstream \"mail\" 500/day full", T0 + hour - 1, T0);
  CHECK(r.alerts.raised.empty());
  r.inc.window_full("mail", "upstream \"mail\" 500/day full", T0 + hour, T0);
  REQUIRE(r.alerts.raised.size() == 1);
  const Alert& a = r.alerts.raised[0];
  CHECK(a.kind == AlertKind::QuotaExhausted);
  CHECK(a.subject == "mail");
  CHECK(a.summary == "upstream mail: the sending quota is used up, mail waits 3600.0 s: upstream \"mail\" 500/day full");
  CHECK(a.hint.find("`outboxctl resume mail`") != std::string::npos);
  CHECK(detail(a, "waits_s") == "3600.0");
  CHECK(detail(a, "reason") == "upstream \"mail\" 500/day full");
}

TEST_CASE("restored suspensions: one line each for those still running and known") {
  Rig r;
  queue::UpstreamState running;
  running.name = "mail";
  running.suspended_until = T0 + 90 * S;
  running.reason = queue::SuspendReason::AuthFailed;
  running.last_reply = "535 5.7.8 no";
  queue::UpstreamState over = running;
  over.suspended_until = T0 - S;
  queue::UpstreamState unknown = running;
  unknown.name = "gone";
  r.inc.restored({running, over, unknown}, T0);
  CHECK(r.lines({"event=upstream_suspended", "upstream=mail", "reason=auth_failed", "until_s=90.0", "restored=yes"}) == 1);
  CHECK(r.lines({"event=upstream_suspended"}) == 1);
  CHECK(r.alerts.raised.empty());
}
