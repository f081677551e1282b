// The alert book (daemon/alert_book.h): one alert per incident, a clear
// condition ends it, self-resolving kinds close after a quiet period, the
// hourly cap counts what it cuts, and the JSON a hook receives.
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "daemon/alert_book.h"

using namespace outbox::daemon;
using D = AlertBook::Decision;

namespace {

std::set<AlertKind> all() { return {std::begin(kAllAlertKinds), std::end(kAllAlertKinds)}; }

}  // namespace

TEST_CASE("alert kinds: names round-trip, severities") {
  for (AlertKind k : kAllAlertKinds) {
    CAPTURE(alert_kind_name(k));
    CHECK(alert_kind_of(alert_kind_name(k)) == k);
  }
  CHECK_FALSE(alert_kind_of("upstream_down").has_value());
  CHECK(alert_severity(AlertKind::AuthFailed) == "error");
  CHECK(alert_severity(AlertKind::SpoolError) == "error");
  CHECK(alert_severity(AlertKind::UpstreamSuspended) == "warning");
  CHECK(alert_severity(AlertKind::QueueAge) == "warning");
}

TEST_CASE("alert book: a table of raises and resolves, one alert per incident") {
  struct Step {
    const char* what;
    bool resolve;
    AlertKind kind;
    const char* subject;
    std::int64_t now;
    D want;           // raise: the decision
    bool was_open;    // resolve: whether an incident was open
  };
  const Step steps[] = {
      {"first suspension of m365", false, AlertKind::UpstreamSuspended, "m365", 100, D::Send, false},
      {"the same upstream fails again", false, AlertKind::UpstreamSuspended, "m365", 160, D::Duplicate, false},
      {"and again an hour later: still the same incident", false, AlertKind::UpstreamSuspended, "m365", 3800,
       D::Duplicate, false},
      {"another upstream is another incident", false, AlertKind::UpstreamSuspended, "163", 3801, D::Send, false},
      {"a refused login on m365 is another kind", false, AlertKind::AuthFailed, "m365", 3802, D::Send, false},
      {"m365 delivers: its suspension clears", true, AlertKind::UpstreamSuspended, "m365", 3900, D::Send, true},
      {"clearing twice: nothing was open", true, AlertKind::UpstreamSuspended, "m365", 3901, D::Send, false},
      {"m365 fails again: a new incident", false, AlertKind::UpstreamSuspended, "m365", 4000, D::Send, false},
      {"spool error", false, AlertKind::SpoolError, "", 5000, D::Send, false},
      {"more spool errors within the quiet period", false, AlertKind::SpoolError, "", 5600, D::Duplicate, false},
      {"the quiet period counts from the last one", false, AlertKind::SpoolError, "", 6400, D::Duplicate, false},
      {"quiet for longer than 900 s: a new incident", false, AlertKind::SpoolError, "", 7301, D::Send, false},
      {"a suspension does not close by itself", false, AlertKind::UpstreamSuspended, "163", 90000, D::Duplicate,
       false},
  };
  AlertBook book(all(), {});
  for (const auto& s : steps) {
    CAPTURE(s.what);
    if (s.resolve) {
      CHECK(book.resolve(s.kind, s.subject) == s.was_open);
    } else {
      CHECK(book.raise(s.kind, s.subject, s.now) == s.want);
    }
  }
}

TEST_CASE("alert book: only the subscribed kinds") {
  AlertBook book({AlertKind::QueueAge}, {});
  CHECK(book.raise(AlertKind::UpstreamSuspended, "x", 1) == D::NotSubscribed);
  CHECK(book.raise(AlertKind::QueueAge, "", 1) == D::Send);
  CHECK(book.open_incidents() == 1);
}

TEST_CASE("alert book: the hourly cap cuts new incidents, counts them, and frees after an hour") {
  AlertBook::Params p;
  p.max_per_hour = 2;
  AlertBook book(all(), p);
  CHECK(book.raise(AlertKind::UpstreamSuspended, "a", 0) == D::Send);
  CHECK(book.raise(AlertKind::UpstreamSuspended, "b", 10) == D::Send);
  CHECK(book.raise(AlertKind::UpstreamSuspended, "c", 20) == D::RateLimited);
  CHECK(book.raise(AlertKind::UpstreamSuspended, "d", 30) == D::RateLimited);
  // A cut incident stays open: it is not sent later as if it were new.
  CHECK(book.raise(AlertKind::UpstreamSuspended, "c", 3700) == D::Duplicate);
  CHECK(book.raise(AlertKind::UpstreamSuspended, "e", 3601) == D::Send);   // "a" left the window
  CHECK(book.take_suppressed() == 2);
  CHECK(book.take_suppressed() == 0);
}

TEST_CASE("alert JSON: the fields a webhook reads, reply bytes that are not UTF-8 do not break it") {
  Alert a;
  a.kind = AlertKind::AuthFailed;
  a.subject = "m365";
  a.summary = "upstream m365 refused the login (auth_failed): 535 5.7.3 Authentication unsuccessful \xff";
  a.hint = "run `outboxctl oauth2 login m365`";
  a.details = {{"reply", "535 5.7.3"}, {"stage", "auth"}};
  a.time = 1796472000;   // 2026-12-05T12:00:00Z
  auto j = nlohmann::json::parse(alert_json(a, "mx1.example.com", 3));
  CHECK(j["source"] == "outbox");
  CHECK(j["host"] == "mx1.example.com");
  CHECK(j["event"] == "auth_failed");
  CHECK(j["severity"] == "error");
  CHECK(j["subject"] == "m365");
  CHECK(j["hint"] == "run `outboxctl oauth2 login m365`");
  CHECK(j["time"] == "2026-12-05T12:00:00Z");
  CHECK(j["details"]["reply"] == "535 5.7.3");
  CHECK(j["details"]["stage"] == "auth");
  CHECK(j["suppressed"] == 3);
  CHECK(j["summary"].get<std::string>().rfind("upstream m365 refused the login", 0) == 0);
}
