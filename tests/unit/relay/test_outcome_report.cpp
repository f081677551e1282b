// compose_outcome() and failure_dsn(): what one try means for its message,
// as tables (daemon/outcome_report.h). No spool, no clock.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "daemon/outcome_report.h"
#include "unit/relay/recipient_results.h"

using namespace outbox;
using namespace outbox::daemon;
namespace client = protocol::client;
using Outcome = client::Outcome;
using client::Stage;
using queue::RecipientResult;

namespace {

constexpr std::int64_t S = 1'000'000;
constexpr std::int64_t T0 = 1'700'000'000 * S;

client::RecipientResult result(std::string address, Outcome o, int code, protocol::EnhancedStatus st,
                               std::string text, Stage stage = Stage::Rcpt) {
  return outbox::test::recipient_result(std::move(address), o, code, st, std::move(text), stage);
}

client::RecipientResult sent(std::string a) { return result(std::move(a), Outcome::Delivered, 250, {2, 0, 0}, "ok"); }
client::RecipientResult refused(std::string a) {
  return result(std::move(a), Outcome::Permanent, 550, {5, 1, 1}, "no such user");
}
client::RecipientResult later(std::string a) {
  return result(std::move(a), Outcome::Temporary, 451, {4, 3, 0}, "try later", Stage::DataEnd);
}
client::RecipientResult no_reply_after_dot(std::string a) {
  client::RecipientResult r;
  r.address = std::move(a);
  r.outcome = Outcome::Temporary;
  r.stage = Stage::DataEnd;
  r.status = {4, 4, 2};
  r.detail = "connection closed";
  return r;
}

queue::DueMessage message(std::vector<std::string> rcpts, std::string sender = "app@example.test") {
  queue::DueMessage m;
  m.id = "0000000000000A";
  m.sender = std::move(sender);
  m.recipients = std::move(rcpts);
  m.created = T0 - 60 * S;
  return m;
}

struct Try {
  queue::DueMessage msg;
  client::MessageReport report;
  OutcomeInput in;
  Try(queue::DueMessage m, std::vector<client::RecipientResult> rs, bool possible_dup = false) : msg(std::move(m)) {
    report.id = msg.id;
    report.recipients = std::move(rs);
    report.possible_duplicate = possible_dup;
    in.msg = &msg;
    in.report = &report;
    in.upstream = "relay";
    in.host = "smtp.example.net";
    in.lifetime = std::chrono::seconds(5 * 86400);
    in.after.next = T0 + 120 * S;
    in.now = T0;
  }
};

std::vector<std::string> events(const AttemptOutcome& o) {
  std::vector<std::string> e;
  for (const auto& l : o.lines) e.push_back(l.event);
  return e;
}

}  // namespace

TEST_CASE("each recipient's result becomes its record, its log line and, when final, its DSN recipient") {
  struct Row {
    const char* name;
    std::vector<client::RecipientResult> results;
    bool expired;
    std::vector<std::string> events;
    std::vector<RecipientResult> states;
    const char* outcome;
    std::size_t dsn;
  };
  const Row rows[] = {
      {"all delivered", {sent("a@x.test"), sent("b@x.test")}, false, {"delivered", "delivered"},
       {RecipientResult::Sent, RecipientResult::Sent}, "delivered", 0},
      {"one refused", {sent("a@x.test"), refused("b@x.test")}, false, {"delivered", "bounced"},
       {RecipientResult::Sent, RecipientResult::Failed}, "bounced", 1},
      {"one deferred", {sent("a@x.test"), later("b@x.test")}, false, {"delivered", "deferred"},
       {RecipientResult::Sent, RecipientResult::Deferred}, "deferred", 0},
      {"deferred past the lifetime", {later("a@x.test"), refused("b@x.test")}, true, {"expired", "bounced"},
       {RecipientResult::Failed, RecipientResult::Failed}, "expired", 2},
  };
  for (const auto& r : rows) {
    CAPTURE(r.name);
    Try t(message({"a@x.test", "b@x.test"}), r.results);
    t.in.after.expired = r.expired;
    auto o = compose_outcome(t.in);
    CHECK(events(o) == r.events);
    REQUIRE(o.record.recipients.size() == r.states.size());
    for (std::size_t i = 0; i < r.states.size(); ++i) CHECK(o.record.recipients[i].result == r.states[i]);
    CHECK(o.record.outcome == r.outcome);
    CHECK(o.dsn_recipients.size() == r.dsn);
    CHECK(o.record.count_attempt);   // every try counts (issue 8 item 9)
    CHECK(o.record.upstream == "relay");
    CHECK(o.record.time == T0);
  }
}

TEST_CASE("expiry: failed with 5.4.7 in the DSN (RFC 3464 §2.3.3), the lifetime in words in the record") {
  Try t(message({"a@x.test"}), {later("a@x.test")});
  t.in.after.expired = true;
  t.in.lifetime = std::chrono::seconds(2 * 3600);
  auto o = compose_outcome(t.in);
  REQUIRE(o.dsn_recipients.size() == 1);
  CHECK(o.dsn_recipients[0].action == protocol::DsnRecipient::Action::Failed);
  CHECK(o.dsn_recipients[0].expired);
  CHECK(o.dsn_recipients[0].status == protocol::EnhancedStatus{5, 4, 7});
  CHECK(o.lines[0].dsn == "4.4.7");
  CHECK(o.record.recipients[0].reply.rfind("expired after 2 hours; last reply: 451 4.3.0", 0) == 0);
  CHECK(o.record.last_error == o.record.recipients[0].reply);
}

TEST_CASE("a deferred recipient is due at the scheduler's time; the hint goes into last_error") {
  Try t(message({"a@x.test"}), {later("a@x.test")});
  t.in.hint = "the provider throttles: lower max_connections";
  auto o = compose_outcome(t.in);
  CHECK(o.record.recipients[0].next_attempt == T0 + 120 * S);
  CHECK(o.next_at == T0 + 120 * S);
  CHECK(o.record.last_error == "451 4.3.0 try later (the provider throttles: lower max_connections)");
  CHECK(o.lines[0].dsn == "4.3.0");
}

TEST_CASE("no reply after the final dot: uncertain, possible_duplicate, held only under uncertain = hold") {
  struct Row { bool hold; bool held; };
  for (const auto& r : {Row{false, false}, Row{true, true}}) {
    CAPTURE(r.hold);
    Try t(message({"a@x.test", "b@x.test"}), {no_reply_after_dot("a@x.test"), no_reply_after_dot("b@x.test")}, true);
    t.in.hold_uncertain = r.hold;
    auto o = compose_outcome(t.in);
    CHECK(o.record.outcome == "possible_duplicate");
    CHECK(o.record.recipients[0].uncertain);
    CHECK(o.record.recipients[1].uncertain);
    CHECK(o.held_uncertain == r.held);
    CHECK(o.record.hold_uncertain == r.held);
  }
  // A 451 after the dot is a reply: not uncertain, never held.
  Try t(message({"a@x.test"}), {later("a@x.test")});
  t.in.hold_uncertain = true;
  auto o = compose_outcome(t.in);
  CHECK_FALSE(o.record.recipients[0].uncertain);
  CHECK_FALSE(o.held_uncertain);
  CHECK(o.record.outcome == "deferred");
}

TEST_CASE("an upstream fault: the message waits for that upstream, unless another of its route takes it now") {
  struct Row { bool fault; bool failover_possible; bool failover; queue::WaitReason waits; };
  const Row rows[] = {
      {false, false, false, queue::WaitReason::None},
      {true, false, false, queue::WaitReason::UpstreamSuspended},
      {true, true, true, queue::WaitReason::None},
      {false, true, false, queue::WaitReason::None},   // after.failover only matters for an upstream fault
  };
  for (const auto& r : rows) {
    CAPTURE(r.fault);
    CAPTURE(r.failover_possible);
    auto f = later("a@x.test");
    Try t(message({"a@x.test"}), {f});
    t.in.upstream_fault = r.fault;
    t.in.after.failover = r.failover_possible;
    auto o = compose_outcome(t.in);
    CHECK(o.failover == r.failover);
    CHECK(o.waits_for == r.waits);
  }
}

TEST_CASE("setup_result: a connection that failed before the message is temporary, never 5xx (SPEC Relay)") {
  struct Row { Stage stage; std::string detail; std::optional<protocol::SmtpReply> reply; protocol::EnhancedStatus st; };
  const Row rows[] = {
      {Stage::Connect, "connection refused", std::nullopt, {4, 4, 1}},
      {Stage::Greeting, "timeout waiting for the greeting", std::nullopt, {4, 4, 2}},
      {Stage::Tls, "certificate verify failed", std::nullopt, {4, 7, 5}},
      {Stage::StartTls, "STARTTLS not offered", std::nullopt, {4, 7, 4}},
      {Stage::Auth, "", protocol::SmtpReply::make(535, protocol::EnhancedStatus{5, 7, 8}, "bad credentials"), {4, 7, 8}},
      {Stage::Greeting, "", protocol::SmtpReply::make(554, std::nullopt, "go away"), {4, 0, 0}},
  };
  for (const auto& r : rows) {
    CAPTURE(r.detail);
    client::SessionFailure f;
    f.stage = r.stage;
    f.detail = r.detail;
    f.reply = r.reply;
    auto res = setup_result("a@x.test", f);
    CHECK(res.outcome == Outcome::Temporary);
    CHECK(res.scope == client::Scope::Upstream);
    CHECK(res.status == r.st);
  }
}

TEST_CASE("unsent_report: a message taken but never sent is retried as not sent, never a possible duplicate") {
  queue::DueMessage m = message({"a@x.test", "b@x.test"});
  auto report = unsent_report(m, "the connection ended before this message was sent");
  CHECK(report.id == m.id);
  CHECK_FALSE(report.possible_duplicate);
  REQUIRE(report.recipients.size() == 2);
  for (const auto& r : report.recipients) {
    CHECK(r.outcome == Outcome::Temporary);
    CHECK(r.scope == client::Scope::Connection);
    CHECK(r.status == protocol::EnhancedStatus{4, 4, 2});
    CHECK_FALSE(r.reply.has_value());
  }
  CHECK(report.recipients[1].address == "b@x.test");
  // Composed as the relay does: deferred, its recipients back to pending
  // (not uncertain), due at the retry time, counted as an attempt.
  Try t(m, report.recipients);
  auto o = compose_outcome(t.in);
  CHECK(o.record.outcome == "deferred");
  CHECK(o.record.count_attempt);
  CHECK_FALSE(o.held_uncertain);
  REQUIRE(o.record.recipients.size() == 2);
  for (const auto& r : o.record.recipients) {
    CHECK(r.result == RecipientResult::Deferred);
    CHECK_FALSE(r.uncertain);
    CHECK(r.status == "4.4.2");
  }
  CHECK(o.next_at == T0 + 120 * S);
  CHECK(o.lines[0].reply.find("before this message was sent") != std::string::npos);
}

TEST_CASE("failure_dsn: one DSN naming only the recipients that failed now; none for <> or with bounces off") {
  queue::DueMessage m = message({"a@x.test", "b@x.test", "c@x.test"});
  Try t(m, {refused("a@x.test"), refused("b@x.test"), sent("c@x.test")});
  auto o = compose_outcome(t.in);
  int header_reads = 0;
  FailureDsnInput in;
  in.msg = &m;
  in.failed = &o.dsn_recipients;
  in.newly_failed = {"b@x.test"};   // a@ had failed in an earlier report already
  in.dsn_id = "0000000000000B";
  in.host_name = "host.example.test";
  in.original_headers = [&] {
    ++header_reads;
    return std::string("Subject: hello\r\n\r\n");
  };
  in.lifetime_text = "5 days";
  in.now = T0;
  auto d = failure_dsn(in);
  REQUIRE(d);
  CHECK(header_reads == 1);
  CHECK(d->message.id == "0000000000000B");
  CHECK(d->message.sender.empty());
  CHECK(d->message.recipients == std::vector<std::string>{"app@example.test"});
  CHECK(d->message.created == T0);
  CHECK(d->bytes.find("b@x.test") != std::string::npos);
  CHECK(d->bytes.find("a@x.test") == std::string::npos);
  CHECK(d->bytes.find("Message-ID: <0000000000000B@host.example.test>") != std::string::npos);

  struct Row { const char* name; std::string sender; bool bounces; std::vector<std::string> newly; std::string id; };
  const Row none[] = {
      {"null sender", "", true, {"b@x.test"}, "0000000000000B"},
      {"bounces off", "app@example.test", false, {"b@x.test"}, "0000000000000B"},
      {"nothing newly failed", "app@example.test", true, {}, "0000000000000B"},
      {"newly failed is not among these", "app@example.test", true, {"z@x.test"}, "0000000000000B"},
      {"no id drawn", "app@example.test", true, {"b@x.test"}, ""},
  };
  for (const auto& r : none) {
    CAPTURE(r.name);
    queue::DueMessage m2 = message({"a@x.test", "b@x.test"}, r.sender);
    FailureDsnInput i2 = in;
    i2.msg = &m2;
    i2.bounces = r.bounces;
    i2.newly_failed = r.newly;
    i2.dsn_id = r.id;
    header_reads = 0;
    CHECK_FALSE(failure_dsn(i2));
    CHECK(header_reads == 0);   // the spool is not read for a DSN that is not made
  }
}

TEST_CASE("duration_words") {
  CHECK(duration_words(std::chrono::seconds(5 * 86400)) == "5 days");
  CHECK(duration_words(std::chrono::seconds(86400)) == "1 day");
  CHECK(duration_words(std::chrono::seconds(3600)) == "1 hour");
  CHECK(duration_words(std::chrono::seconds(120)) == "2 minutes");
  CHECK(duration_words(std::chrono::seconds(90)) == "90 seconds");
}

TEST_CASE("setup_report: every recipient gets the set-up failure, and the verdict on its reply") {
  queue::DueMessage m = message({"a@x.test", "b@x.test"});
  client::SessionFailure f;
  f.stage = Stage::Auth;
  f.reply = protocol::SmtpReply::make(535, protocol::EnhancedStatus{5, 7, 8}, "authentication failed");
  protocol::ReplyVerdict v;
  v.provider = "example";
  v.action = protocol::ReplyAction::Suspend;
  auto report = setup_report(m, f, v);
  CHECK(report.id == m.id);
  CHECK_FALSE(report.possible_duplicate);
  REQUIRE(report.recipients.size() == 2);
  CHECK(report.recipients[0].address == "a@x.test");
  CHECK(report.recipients[1].address == "b@x.test");
  for (const auto& r : report.recipients) {
    CHECK(r.outcome == Outcome::Temporary);   // an upstream failure never bounces
    CHECK(r.scope == client::Scope::Upstream);
    CHECK(r.stage == Stage::Auth);
    CHECK(r.status == protocol::EnhancedStatus{4, 7, 8});
    REQUIRE(r.verdict);
    CHECK(r.verdict->action == protocol::ReplyAction::Suspend);
  }
  // Expiry while waiting: only the reason, no reply, no verdict.
  client::SessionFailure why;
  why.detail = "upstream \"relay\" suspended";
  auto expired = setup_report(m, why);
  REQUIRE(expired.recipients.size() == 2);
  CHECK_FALSE(expired.recipients[0].verdict);
  CHECK(expired.recipients[0].detail == why.detail);
}

TEST_CASE("failure_of: the failure an upstream is suspended for, from a message's report") {
  auto r = result("b@x.test", Outcome::Temporary, 421, {4, 7, 0}, "too many messages", Stage::DataEnd);
  r.detail = "closing";
  client::MessageReport report;
  report.recipients = {sent("a@x.test"), r};
  auto f = failure_of(report);
  CHECK(f.stage == Stage::DataEnd);
  REQUIRE(f.reply);
  CHECK(f.reply->code == 421);
  CHECK(f.detail == "closing");
  client::MessageReport none;
  none.recipients = {sent("a@x.test")};
  auto g = failure_of(none);
  CHECK(g.detail == "failed");
  CHECK_FALSE(g.reply);
}
