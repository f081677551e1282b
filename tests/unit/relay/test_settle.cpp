// attempt_notes() and settled_lines(): what Relay::settle adds to an
// attempt's outcome (hint, verdict action, "retry after") and the log lines
// it writes once the outcome is on disk (daemon/settle.h). The lines are
// compared as written: their fields and their order are the log's contract
// (SPEC "Logs"; `grep id=ID` must tell the story).
#include <doctest/doctest.h>

#include <optional>
#include <string>
#include <vector>

#include "daemon/settle.h"
#include "protocol/reply_rules.h"
#include "unit/relay/recipient_results.h"

using namespace outbox;
using namespace outbox::daemon;
namespace client = protocol::client;
using client::Outcome;
using client::Stage;
using protocol::ReplyAction;

namespace {

constexpr std::int64_t S = 1'000'000;
constexpr std::int64_t T0 = 1'700'000'000 * S;

client::MessageReport report_of(std::vector<client::RecipientResult> rs) {
  client::MessageReport r;
  r.id = "0000000000000A";
  r.recipients = std::move(rs);
  return r;
}

protocol::ReplyVerdict verdict(ReplyAction a, std::chrono::seconds after) {
  protocol::ReplyVerdict v;
  v.provider = "example";
  v.action = a;
  v.after = after;
  v.meaning = "the provider says so";
  return v;
}

protocol::UpstreamSummary upstream() {
  protocol::UpstreamSummary u;
  u.name = "relay";
  u.host = "smtp.example.net";
  u.port = 587;
  u.tls = client::TlsPolicy::StartTls;
  return u;
}

// 550 at MAIL with "not allowed to send": the generic diagnosis reads a
// sender mismatch (its hint below).
client::RecipientResult sender_refused() {
  return outbox::test::recipient_result("a@x.test", Outcome::Permanent, 550, {5, 7, 1}, "sender not allowed to send",
                                        Stage::Mail);
}
const std::string kSenderHint =
    "the server refused this envelope sender: set envelope_from to an address the account may use";
// 451 DT:SPM after the dot: temporary, with 163's spam hint.
client::RecipientResult spam_later() {
  return outbox::test::recipient_result("a@x.test", Outcome::Temporary, 451, {4, 3, 0}, "DT:SPM 163 smtp",
                                        Stage::DataEnd);
}
const std::string kSpamHint = "163 classified the message as spam: change its content, or send fewer similar messages";

}  // namespace

TEST_CASE("attempt_notes: the hint, the verdict's action and its retry after") {
  const std::string retry2m = verdict(ReplyAction::Retry, std::chrono::seconds(120)).words();
  const std::string suspend = verdict(ReplyAction::Suspend, std::chrono::seconds(3600)).words();
  const std::string fail = verdict(ReplyAction::Fail, std::chrono::seconds(0)).words();
  struct Row {
    const char* name;
    client::RecipientResult failure;
    std::optional<protocol::ReplyVerdict> verdict;
    bool has_upstream;
    bool expired;
    std::int64_t next_in;           // the scheduler's next, from T0
    std::string hint, action;
    std::int64_t want_next_in;
  };
  const Row rows[] = {
      {"no verdict: the diagnosis alone", sender_refused(), std::nullopt, true, false, 60 * S, kSenderHint, "", 60 * S},
      {"a message verdict comes first, the diagnosis after", sender_refused(),
       verdict(ReplyAction::Fail, std::chrono::seconds(0)), true, false, 60 * S, fail + "; " + kSenderHint, "fail",
       60 * S},
      {"an upstream action clears the generic hint", sender_refused(),
       verdict(ReplyAction::Suspend, std::chrono::seconds(3600)), true, false, 60 * S, suspend, "suspend", 60 * S},
      {"retry after pushes next", spam_later(), verdict(ReplyAction::Retry, std::chrono::seconds(120)), true, false,
       60 * S, retry2m + "; " + kSpamHint, "retry", 120 * S},
      {"retry after never pulls next earlier", spam_later(), verdict(ReplyAction::Retry, std::chrono::seconds(120)),
       true, false, 300 * S, retry2m + "; " + kSpamHint, "retry", 300 * S},
      {"an expired message is not pushed", spam_later(), verdict(ReplyAction::Retry, std::chrono::seconds(120)), true,
       true, 60 * S, retry2m + "; " + kSpamHint, "retry", 60 * S},
      {"no upstream reached: nothing to say", spam_later(), verdict(ReplyAction::Retry, std::chrono::seconds(120)),
       false, false, 60 * S, "", "", 60 * S},
  };
  const auto u = upstream();
  for (const auto& r : rows) {
    INFO(r.name);
    auto f = r.failure;
    f.verdict = r.verdict;
    auto report = report_of({f});
    queue::AfterAttempt after;
    after.expired = r.expired;
    after.next = T0 + r.next_in;
    after.failover = true;
    auto n = attempt_notes(report, r.has_upstream ? &u : nullptr, after, T0);
    CHECK(n.hint == r.hint);
    CHECK(n.action == r.action);
    CHECK(n.after.next == T0 + r.want_next_in);
    CHECK(n.after.expired == r.expired);
    CHECK(n.after.failover);   // the rest of the scheduler's answer is kept
  }
}

TEST_CASE("attempt_notes: a delivered message has no notes, whatever its replies say") {
  auto ok = outbox::test::recipient_result("a@x.test", Outcome::Delivered, 250, {2, 0, 0}, "ok", Stage::DataEnd);
  ok.verdict = verdict(ReplyAction::Retry, std::chrono::seconds(120));
  auto report = report_of({ok});
  queue::AfterAttempt after;
  after.next = T0 + 60 * S;
  const auto u = upstream();
  auto n = attempt_notes(report, &u, after, T0);
  CHECK(n.hint.empty());
  CHECK(n.action.empty());
  CHECK(n.after.next == T0 + 60 * S);
}

namespace {

struct Done {
  queue::DueMessage msg;
  AttemptOutcome out;
  queue::MessageAfter after;
  SettledInput in;
  explicit Done(std::vector<OutcomeLine> lines, std::string sender = "app@example.test") {
    msg.id = "0000000000000A";
    msg.sender = std::move(sender);
    msg.created = T0 - 90 * S;
    out.lines = std::move(lines);
    out.record.upstream = "relay";
    after.state = "delivered";
    after.attempts = 2;
    in.msg = &msg;
    in.outcome = &out;
    in.after = &after;
    in.relay = "relay[smtp.example.net:587]";
    in.now = T0;
  }
  std::vector<std::string> said() const {
    std::vector<std::string> s;
    for (const auto& e : settled_lines(in).lines) s.push_back(e.line.str());
    return s;
  }
};

const OutcomeLine kDelivered{"a@x.test", "delivered", "2.0.0", "250 2.0.0 ok"};
const OutcomeLine kDeferred{"b@x.test", "deferred", "4.7.0", "451 4.7.0 try later"};
const OutcomeLine kBounced{"c@x.test", "bounced", "5.1.1", "550 5.1.1 no such user"};
const OutcomeLine kExpired{"d@x.test", "expired", "4.4.7", "expired after 5 days; last reply: 451 4.7.0 try later"};

const std::string kHead = "id=0000000000000A from=app@example.test ";
const std::string kDeliveredText = "event=delivered " + kHead +
    "to=a@x.test relay=relay[smtp.example.net:587] delay=90.0 attempt=2 dsn=2.0.0 reply=\"250 2.0.0 ok\"";
const std::string kDeferredText = "event=deferred " + kHead +
    "to=b@x.test relay=relay[smtp.example.net:587] delay=90.0 attempt=2 dsn=4.7.0 reply=\"451 4.7.0 try later\"";

}  // namespace

TEST_CASE("settled_lines: one line per recipient, every field in its place") {
  Done d({kDelivered});
  auto s = settled_lines(d.in);
  REQUIRE(s.lines.size() == 1);
  CHECK(s.lines[0].level == log::Level::Info);
  CHECK(s.lines[0].line.str() == kDeliveredText);
  CHECK_FALSE(s.kick);
}

TEST_CASE("settled_lines: the null sender is written <>") {
  Done d({kDelivered}, "");
  REQUIRE(d.said().size() == 1);
  CHECK(d.said()[0] == "event=delivered id=0000000000000A from=<> to=a@x.test relay=relay[smtp.example.net:587] "
                       "delay=90.0 attempt=2 dsn=2.0.0 reply=\"250 2.0.0 ok\"");
}

TEST_CASE("settled_lines: action and hint go on deferred and bounced lines only") {
  Done d({kDelivered, kDeferred, kBounced, kExpired});
  d.after.state = "deferred";
  d.in.action = "retry";
  d.in.hint = "outbox retries";
  auto s = settled_lines(d.in);
  REQUIRE(s.lines.size() == 4);
  CHECK(s.lines[0].line.str() == kDeliveredText);
  CHECK(s.lines[1].line.str() == kDeferredText + " action=retry hint=\"outbox retries\"");
  CHECK(s.lines[2].line.str() == "event=bounced " + kHead +
                                     "to=c@x.test relay=relay[smtp.example.net:587] delay=90.0 attempt=2 dsn=5.1.1 "
                                     "reply=\"550 5.1.1 no such user\" action=retry hint=\"outbox retries\"");
  CHECK(s.lines[3].line.str() == "event=expired " + kHead +
                                     "to=d@x.test relay=relay[smtp.example.net:587] delay=90.0 attempt=2 dsn=4.4.7 "
                                     "reply=\"expired after 5 days; last reply: 451 4.7.0 try later\"");
  // Only a delivery is good news.
  CHECK(s.lines[0].level == log::Level::Info);
  for (std::size_t i = 1; i < 4; ++i) CHECK(s.lines[i].level == log::Level::Warn);
}

TEST_CASE("settled_lines: an empty action or hint is left out") {
  Done d({kDeferred});
  d.in.hint = "only a hint";
  CHECK(d.said() == std::vector<std::string>{kDeferredText + " hint=\"only a hint\""});
  d.in.hint.clear();
  d.in.action = "pause";
  CHECK(d.said() == std::vector<std::string>{kDeferredText + " action=pause"});
}

TEST_CASE("settled_lines: possible duplicates, from this try's report or an earlier try's uncertain mark") {
  SUBCASE("the report's flag marks every recipient") {
    Done d({kDelivered, kDeferred});
    d.in.possible_duplicate = true;
    CHECK(d.said() == std::vector<std::string>{kDeliveredText + " possible_duplicate=yes",
                                               kDeferredText + " possible_duplicate=yes"});
  }
  SUBCASE("m.uncertain marks only its recipients, before the action and the hint") {
    Done d({kDelivered, kDeferred});
    d.msg.uncertain = {"b@x.test"};
    d.in.action = "retry";
    CHECK(d.said() == std::vector<std::string>{kDeliveredText,
                                               kDeferredText + " possible_duplicate=yes action=retry"});
  }
}

TEST_CASE("settled_lines: what follows the recipients' lines") {
  struct Row {
    const char* name;
    bool dsn_made, failover, exists, held_uncertain;
    const char* state;
    std::vector<std::string> after_lines;   // the lines after the recipient's
    std::vector<log::Level> levels;
    bool kick;
  };
  const std::string bounce = "event=bounce_queued id=0000000000000B original=0000000000000A to=app@example.test";
  const std::string failover = "event=failover id=0000000000000A from_upstream=relay";
  const std::string dropped = "event=delivery_dropped id=0000000000000A reason=\"deleted during delivery\"";
  const std::string held = "event=held id=0000000000000A reason=\"outcome uncertain\" "
                           "hint=\"check with the recipient, then outboxctl release or delete it\"";
  using L = log::Level;
  const Row rows[] = {
      {"nothing more", false, false, true, false, "deferred", {}, {}, false},
      {"a DSN queued", true, false, true, false, "bounced", {bounce}, {L::Info}, true},
      {"failover of a deferred message", false, true, true, false, "deferred", {failover}, {L::Info}, true},
      {"no failover once it is not deferred", false, true, true, false, "held", {}, {}, false},
      {"deleted during delivery", false, true, false, true, "deferred", {dropped}, {L::Info}, false},
      {"held uncertain", false, false, true, true, "held", {held}, {L::Warn}, false},
      {"uncertain but not held (released meanwhile)", false, false, true, true, "deferred", {}, {}, false},
      {"all at once, in order", true, true, true, false, "deferred", {bounce, failover}, {L::Info, L::Info}, true},
  };
  for (const auto& r : rows) {
    INFO(r.name);
    Done d({kDeferred});
    d.in.dsn_made = r.dsn_made;
    d.in.dsn_id = r.dsn_made ? "0000000000000B" : "";
    d.out.failover = r.failover;
    d.out.held_uncertain = r.held_uncertain;
    d.after.exists = r.exists;
    d.after.state = r.state;
    auto s = settled_lines(d.in);
    REQUIRE(s.lines.size() == 1 + r.after_lines.size());
    CHECK(s.lines[0].line.str() == kDeferredText);
    for (std::size_t i = 0; i < r.after_lines.size(); ++i) {
      CHECK(s.lines[i + 1].line.str() == r.after_lines[i]);
      CHECK(s.lines[i + 1].level == r.levels[i]);
    }
    CHECK(s.kick == r.kick);
  }
}

TEST_CASE("seconds_text: µs as tenths of seconds") {
  CHECK(log::seconds_text(0) == "0.0");
  CHECK(log::seconds_text(90 * S) == "90.0");
  CHECK(log::seconds_text(1'260'000) == "1.3");
  CHECK(log::seconds_text(-2 * S) == "-2.0");
}

TEST_CASE("recovery_lines: the count, then each uncertain recipient and each held message") {
  queue::Recovery r;
  CHECK(recovery_lines(r, false).empty());   // nothing was left active: nothing to say
  r.interrupted = {"0000000000000A", "0000000000000B", "0000000000000C"};
  r.uncertain = {{"0000000000000A", {"a@x.test", "b@x.test"}}, {"0000000000000B", {"c@x.test"}}};
  r.held = {"0000000000000B"};
  auto lines = recovery_lines(r, true);
  std::vector<std::string> said;
  for (const auto& e : lines) said.push_back(e.line.str());
  CHECK(said == std::vector<std::string>{
                    "event=recovered interrupted_deliveries=3 while_running=yes",
                    "event=uncertain id=0000000000000A to=a@x.test possible_duplicate=yes action=resend",
                    "event=uncertain id=0000000000000A to=b@x.test possible_duplicate=yes action=resend",
                    "event=uncertain id=0000000000000B to=c@x.test possible_duplicate=yes action=hold",
                    "event=held id=0000000000000B reason=\"outcome uncertain\" "
                    "hint=\"check with the recipient, then outboxctl release or delete it\"",
                });
  REQUIRE(lines.size() == 5);
  CHECK(lines[0].level == log::Level::Info);
  for (std::size_t i = 1; i < lines.size(); ++i) CHECK(lines[i].level == log::Level::Warn);
  CHECK(recovery_lines(r, false)[0].line.str() == "event=recovered interrupted_deliveries=3");
}

TEST_CASE("recorder_line: a failed outcome write, and one written late") {
  OutcomeRecorder::Event failed;
  failed.kind = OutcomeRecorder::Event::Kind::WriteFailed;
  failed.id = "0000000000000A";
  failed.error = "database or disk is full";
  failed.retry_in = 2 * S;
  auto f = recorder_line(failed);
  CHECK(f.level == log::Level::Error);
  CHECK(f.line.str() == "event=spool_error id=0000000000000A op=\"delivery outcome\" "
                        "error=\"database or disk is full\" retry_in_s=2.0");
  OutcomeRecorder::Event late;
  late.kind = OutcomeRecorder::Event::Kind::RecordedLate;
  late.id = "0000000000000A";
  late.tries = 3;
  late.late_by = 6'500'000;
  auto l = recorder_line(late);
  CHECK(l.level == log::Level::Info);
  CHECK(l.line.str() == "event=outcome_recorded_late id=0000000000000A tries=3 late_s=6.5");
}
