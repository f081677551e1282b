// Reply tables (SPEC "Provider profiles"): the providers' real reply texts,
// what each profile's table says, and what the client session makes of it
// (scope and outcome: nothing bounced that the provider would accept later,
// nothing retried that it refuses for good).
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "client_harness.h"
#include "daemon/providers.h"
#include "protocol/reply_rules.h"

using namespace outbox;
using namespace outbox::protocol;
using namespace std::chrono_literals;

namespace {

SmtpReply parse_one(const std::string& line) {
  ReplyParser p;
  SmtpReply r;
  p.feed(line + "\r\n");
  REQUIRE(p.next(r) == ReplyParser::Result::Reply);
  return r;
}

std::shared_ptr<const ReplyTable> table_of(const std::string& spec) {
  if (spec.empty()) return nullptr;
  auto p = find_provider(spec);
  REQUIRE(p);
  return p->replies;
}

struct Row {
  const char* provider;     // "" = plain SMTP (the generic table)
  const char* reply;
  std::optional<ReplyAction> action;   // nullopt: no rule, the code's class decides
  std::chrono::seconds after;
};

const std::vector<Row> kRows = {
    // Gmail: the daily limit is a quota, held, never bounced.
    {"gmail", "550 5.4.5 Daily user sending limit exceeded. For more information on Gmail sending limits go to "
              "https://support.google.com/a/answer/166852 a1-20020a05600c", ReplyAction::Hold, 24h},
    {"google-workspace", "550-5.4.5 Daily user sending limit exceeded. For more information on Gmail\r\n550 5.4.5 sending limits go to https://support.google.com/a/answer/166852", ReplyAction::Hold, 24h},
    {"gmail", "421 4.7.0 Try again later, closing connection. (EHLO) s5sm123", ReplyAction::Pause, 5min},
    {"gmail", "450 4.2.1 The user you are trying to contact is receiving mail too quickly.", ReplyAction::Pause, 5min},
    {"gmail", "550 5.1.1 The email account that you tried to reach does not exist.", std::nullopt, 0s},
    // SES drops throttled mail: outbox keeps it and waits.
    {"ses:us-east-1", "454 Throttling failure: Maximum sending rate exceeded.", ReplyAction::Pause, 1min},
    {"ses:us-east-1", "454 Throttling failure: Daily message quota exceeded.", ReplyAction::Hold, 1h},
    {"ses:us-east-1", "554 Message rejected: Email address is not verified. The following identities failed the "
                      "check in region US-EAST-1: cron@example.com", ReplyAction::Fail, 0s},
    // Microsoft: concurrency, continuous-error throttling.
    {"microsoft365", "432 4.3.2 Concurrent connections limit exceeded. Visit https://aka.ms/concurrent_sending for "
                     "more information. [Hostname=AM0PR01MB1234]", ReplyAction::LowerConcurrency, 1min},
    {"microsoft365", "432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded", ReplyAction::LowerConcurrency,
     1min},
    {"microsoft365", "550 5.2.251 Sender throttled due to continuous send as denied errors", ReplyAction::Suspend, 1h},
    {"microsoft365", "550 5.2.254 Sender throttled due to continuous invalid recipients errors", ReplyAction::Suspend,
     1h},
    {"microsoft365", "550 5.2.255 Sender throttled due to continuous delivery errors", ReplyAction::Suspend, 1h},
    {"microsoft365", "550 5.2.250 Some other refusal", std::nullopt, 0s},   // outside the range
    {"outlook", "550 5.2.252 SendAsDenied; sender throttled due to continuous send as denied errors",
     ReplyAction::Suspend, 1h},
    // NetEase 163 / 126.
    {"163", "451 MI:SFQ 163 smtp14,EsCowAD3Xq1kZ2Vm9A,0 1733400000", ReplyAction::Pause, 15min},
    {"163", "554 DT:SPM 163 smtp10,DsCowADHfYtkZ2VmeW,0 1733400000, please see "
            "http://mail.163.com/help/help_spam_16.htm?ip=203.0.113.7", ReplyAction::Fail, 0s},
    {"163", "451 DT:SPM 163 smtp10,DsCowADHfYtkZ2VmeW,0 1733400000", ReplyAction::Retry, 2min},
    {"163", "421 HL:ICC 163 smtp14,EsCowAD3Xq1kZ2Vm9A,0 1733400000, please see http://mail.163.com/help/",
     ReplyAction::LowerConcurrency, 1min},
    {"163", "553 Mail from must equal authorized user", ReplyAction::Fail, 0s},
    {"163", "553 Local user only,163 smtp3,GdxpCgD3", ReplyAction::Fail, 0s},
    {"126", "451 MI:SFQ 126 smtp5,M8mowAD", ReplyAction::Pause, 15min},
    // QQ.
    {"qq", "501 mail from address must be same as authorization user", ReplyAction::Fail, 0s},
    {"qq", "550 Sender frequency limited", ReplyAction::Pause, 15min},
    // Plain SMTP: only the standard meanings.
    {"", "421 4.7.0 mx.example closing transmission channel", ReplyAction::Pause, 0s},
    {"", "452 4.4.5 Insufficient system storage", ReplyAction::Pause, 0s},
    {"", "550 5.4.5 Daily limit", ReplyAction::Hold, 0s},
    {"", "550 5.1.1 User unknown", std::nullopt, 0s},
    {"", "250 2.0.0 Ok", std::nullopt, 0s},
};

client::ClientConfig plain(std::shared_ptr<const ReplyTable> t) {
  client::ClientConfig c;
  c.helo_name = "client.example";
  c.tls = client::TlsPolicy::None;
  c.replies = std::move(t);
  return c;
}

}  // namespace

TEST_CASE("each provider's real reply texts map to the profile's action") {
  for (const auto& row : kRows) {
    CAPTURE(row.provider);
    CAPTURE(row.reply);
    auto t = table_of(row.provider);
    auto v = match_reply(t.get(), parse_one(row.reply));
    REQUIRE(v.has_value() == row.action.has_value());
    if (!v) continue;
    CHECK(v->action == *row.action);
    CHECK(v->after == row.after);
    CHECK_FALSE(v->words().empty());
  }
}

TEST_CASE("a provider rule comes before the generic one; other providers' texts stay generic") {
  auto gmail = table_of("gmail");
  auto v = match_reply(gmail.get(), parse_one("421 4.7.0 Try again later, closing connection."));
  REQUIRE(v);
  CHECK(v->provider == "gmail");
  CHECK(v->after == 5min);
  // 163's code means nothing special at Gmail.
  CHECK_FALSE(match_reply(gmail.get(), parse_one("554 DT:SPM 163 smtp10")));
  auto generic = match_reply(nullptr, parse_one("421 4.7.0 closing"));
  REQUIRE(generic);
  CHECK(generic->provider == "smtp");
}

TEST_CASE("the verdict in plain words names the provider, the meaning and what outbox does") {
  auto v = match_reply(table_of("gmail").get(), parse_one("550 5.4.5 Daily user sending limit exceeded."));
  REQUIRE(v);
  CHECK(v->words() ==
        "gmail: the account's daily sending limit is reached (it clears within a rolling 24 hours); outbox holds "
        "this upstream's mail for 24 hours until the quota window frees (not bounced)");
  auto f = match_reply(table_of("163").get(), parse_one("554 DT:SPM 163 smtp10"));
  REQUIRE(f);
  CHECK(f->words() == "163: 163 classified the message as spam; permanent: not retried");
  CHECK(after_words(90s) == "90 seconds");
  CHECK(after_words(1min) == "1 minute");
  CHECK(after_words(48h) == "2 days");
}

TEST_CASE("the session applies the verdict: scope and outcome of a reply to MAIL FROM") {
  struct SRow {
    const char* provider;
    const char* reply;
    client::Scope scope;
    client::Outcome outcome;
  };
  using client::Outcome;
  using client::Scope;
  const std::vector<SRow> rows = {
      // Would be a bounce by its code; the provider says it clears: kept, the upstream waits.
      {"gmail", "550 5.4.5 Daily user sending limit exceeded.", Scope::Upstream, Outcome::Temporary},
      {"microsoft365", "550 5.2.254 Sender throttled due to continuous invalid recipients errors", Scope::Upstream,
       Outcome::Temporary},
      {"microsoft365", "432 4.3.2 Concurrent connections limit exceeded.", Scope::Upstream, Outcome::Temporary},
      {"ses:eu-west-1", "454 Throttling failure: Maximum sending rate exceeded.", Scope::Upstream,
       Outcome::Temporary},
      // Would be retried by its code; this message only, later.
      {"163", "451 DT:SPM 163 smtp10", Scope::Message, Outcome::Temporary},
      // Permanent refusals stay permanent, with the provider's meaning.
      {"163", "554 DT:SPM 163 smtp10", Scope::Message, Outcome::Permanent},
      {"163", "553 Mail from must equal authorized user", Scope::Message, Outcome::Permanent},
      {"qq", "501 mail from address must be same as authorization user", Scope::Message, Outcome::Permanent},
      // Without a profile the same 550 5.2.254 is the code's: a permanent refusal of the message.
      {"", "550 5.2.254 Sender throttled due to continuous invalid recipients errors", Scope::Message,
       Outcome::Permanent},
  };
  for (const auto& row : rows) {
    CAPTURE(row.provider);
    CAPTURE(row.reply);
    relaytest::Harness h(plain(table_of(row.provider)));
    h.connect();
    h.script("S: 220 smtp.example ESMTP\nC: EHLO client.example\nS: 250 smtp.example");
    REQUIRE(h.s.ready());
    client::OutgoingMessage m;
    m.id = "P1";
    m.sender = "cron@example.com";
    m.recipients = {"a@example.net"};
    m.size = 10;
    h.s.send_message(m);
    h.pump();
    CHECK(h.client() == "MAIL FROM:<cron@example.com>\r\n");
    h.server(std::string(row.reply) + "\r\n");
    auto reps = h.reports();
    REQUIRE(reps.size() == 1);
    const auto& r = reps[0].recipients.at(0);
    CHECK(r.scope == row.scope);
    CHECK(r.outcome == row.outcome);
    CHECK(r.verdict.has_value() == (row.provider[0] != '\0'));
    CHECK(r.status.cls == (row.outcome == Outcome::Permanent ? 5 : 4));
  }
}
