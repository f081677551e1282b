// ClientSession transcripts against scripted upstream replies.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>

#include "client_harness.h"
#include "protocol/sasl.h"

using namespace relaytest;
using outbox::protocol::EnhancedStatus;
using outbox::protocol::SmtpReply;

namespace {

// Greeting + EHLO + AUTH PLAIN on an implicit-TLS connection, ready to send.
void login(Harness& h, std::string_view caps = "250-PIPELINING\r\n250-SIZE 35882577\r\n250-8BITMIME\r\n"
                                                "250-AUTH LOGIN PLAIN XOAUTH2\r\n250 SMTPUTF8") {
  h.connect();
  h.script("S: 220 smtp.163.com Anti-spam GT for Coremail System\n"
           "C: EHLO client.example");
  h.server("250-mail\r\n" + std::string(caps) + "\r\n");
  CHECK(h.client() == "AUTH PLAIN AHNvbWVvbmVAMTYzLmNvbQBzM2NyZXQtQXV0aC1Db2Rl\r\n");
  h.script("S: 235 Authentication successful");
  REQUIRE(h.s.ready());
  REQUIRE(h.count<Ready>() == 1);
}

// Ready session; sends the message and answers up to the 354.
void to_body(Harness& h, OutgoingMessage m) {
  h.s.send_message(std::move(m));
  h.pump();
  h.client();
  std::string replies = "250 2.1.0 Ok\r\n";
  for (std::size_t i = 0; i < 1; ++i) replies += "250 2.1.5 Ok\r\n";
  h.server(replies + "354 End data with <CR><LF>.<CR><LF>\r\n");
  REQUIRE(h.count<NeedBody>() >= 1);
}

std::string wire_body(const std::vector<std::string>& chunks) {
  Harness h(implicit_config());
  login(h);
  to_body(h, message("B1", {"a@example.com"}));
  for (const auto& c : chunks) h.s.body_chunk(c);
  h.s.body_end();
  h.pump();
  return h.client();
}

}  // namespace

TEST_CASE("happy path with PIPELINING: one write for MAIL, RCPTs and DATA") {
  Harness h(implicit_config());
  login(h);
  CHECK(h.s.tls_active());
  CHECK(h.s.authenticated());
  CHECK(h.s.mechanism() == "PLAIN");
  h.writes.clear();
  h.s.send_message(message("Q1", {"a@example.com", "b@example.com"}, 1234));
  h.pump();
  REQUIRE(h.writes.size() == 1);   // RFC 2920: one group
  h.script("C: MAIL FROM:<someone@163.com> SIZE=1234\n"
           "C: RCPT TO:<a@example.com>\n"
           "C: RCPT TO:<b@example.com>\n"
           "C: DATA\n"
           "S: 250 2.1.0 Ok\n"
           "S: 250 2.1.5 Ok\n"
           "S: 250 2.1.5 Ok\n"
           "S: 354 End data with <CR><LF>.<CR><LF>");
  REQUIRE(h.last<NeedBody>());
  CHECK(h.last<NeedBody>()->id == "Q1");
  CHECK(h.s.deadline() == std::chrono::seconds(180));
  h.s.body_chunk("Subject: hi\r\n\r\nhello\r\n");
  h.s.body_end();
  h.pump();
  h.script("C: Subject: hi\n"
           "C: \n"
           "C: hello\n"
           "C: .\n"
           "S: 250 Mail OK queued as smtp14,EsCowADX");
  auto reps = h.reports();
  REQUIRE(reps.size() == 1);
  CHECK(reps[0].id == "Q1");
  CHECK(reps[0].all_delivered());
  CHECK_FALSE(reps[0].possible_duplicate);
  CHECK(reps[0].recipients[1].reply->one_line() == "250 Mail OK queued as smtp14,EsCowADX");
  CHECK(reps[0].recipients[1].text() == "250 Mail OK queued as smtp14,EsCowADX");
  CHECK(reps[0].exchanges.size() == 5);
  CHECK(reps[0].exchanges[0].command == "MAIL FROM:<someone@163.com> SIZE=1234");
  CHECK(reps[0].exchanges[4].command == "end of data");
  CHECK(h.count<Ready>() == 2);
  h.s.quit();
  h.pump();
  h.script("C: QUIT\n"
           "S: 221 Bye");
  CHECK(h.last_is_close());
  CHECK(h.s.finished());
}

TEST_CASE("happy path without PIPELINING: one command per reply") {
  Harness h(implicit_config());
  login(h, "250 AUTH PLAIN");
  h.s.send_message(message("Q1", {"a@example.com", "b@example.com"}));
  h.pump();
  h.script("C: MAIL FROM:<someone@163.com>\n"
           "S: 250 2.1.0 Ok\n"
           "C: RCPT TO:<a@example.com>\n"
           "S: 250 2.1.5 Ok\n"
           "C: RCPT TO:<b@example.com>\n"
           "S: 250 2.1.5 Ok\n"
           "C: DATA\n"
           "S: 354 go ahead");
  h.s.body_chunk("x\r\n");
  h.s.body_end();
  h.pump();
  h.script("C: x\n"
           "C: .\n"
           "S: 250 2.0.0 queued");
  REQUIRE(h.reports().size() == 1);
  CHECK(h.reports()[0].all_delivered());
}

TEST_CASE("STARTTLS: EHLO again after the handshake, old capabilities forgotten") {
  ClientConfig c = implicit_config();
  c.tls = TlsPolicy::StartTls;
  Harness h(c);
  h.connect();
  CHECK_FALSE(h.s.tls_active());
  h.script("S: 220 smtp.office365.com Microsoft ESMTP MAIL Service ready\n"
           "C: EHLO client.example\n"
           "S: 250-smtp.office365.com Hello\n"
           "S: 250-PIPELINING\n"
           "S: 250-AUTH PLAIN\n"
           "S: 250 STARTTLS\n"
           "C: STARTTLS\n"
           "S: 220 2.0.0 SMTP server ready");
  REQUIRE(h.last<StartTls>());
  CHECK(h.s.deadline() == std::chrono::seconds(300));
  CHECK(h.client().empty());          // nothing in plaintext after STARTTLS
  h.s.on_tls_established();
  h.pump();
  CHECK(h.s.tls_active());
  CHECK_FALSE(h.s.capabilities().pipelining);
  h.script("C: EHLO client.example\n"
           "S: 250-smtp.office365.com Hello\n"
           "S: 250-SIZE 157286400\n"
           "S: 250 AUTH LOGIN XOAUTH2\n"
           // PLAIN was offered only before TLS: forgotten; LOGIN now.
           "C: AUTH LOGIN\n"
           "S: 334 VXNlcm5hbWU6\n"
           "C: c29tZW9uZUAxNjMuY29t\n"
           "S: 334 UGFzc3dvcmQ6\n"
           "C: czNjcmV0LUF1dGgtQ29kZQ==\n"
           "S: 235 2.7.0 Authentication successful");
  CHECK(h.s.ready());
  CHECK(h.s.mechanism() == "LOGIN");
  CHECK_FALSE(h.s.capabilities().pipelining);
  CHECK(h.s.capabilities().size_limit == 157286400);
  // The transcript has neither the secret nor its base64.
  for (const auto& line : h.s.transcript()) {
    CHECK(line.find("s3cret") == std::string::npos);
    CHECK(line.find("czNjcmV0") == std::string::npos);
    CHECK(line.find("c29tZW9uZUAxNjMuY29t") == std::string::npos);
  }
}

TEST_CASE("STARTTLS not offered: temporary upstream failure, never plaintext") {
  ClientConfig c = implicit_config();
  c.tls = TlsPolicy::StartTls;
  Harness h(c);
  h.connect();
  h.script("S: 220 mx ESMTP\n"
           "C: EHLO client.example\n"
           "S: 250-mx\n"
           "S: 250 AUTH PLAIN LOGIN\n"
           "C: QUIT");
  auto* f = h.last<SessionFailed>();
  REQUIRE(f);
  CHECK(f->failure.stage == Stage::StartTls);
  CHECK(f->failure.scope == Scope::Upstream);
  CHECK(f->failure.text() == "STARTTLS not offered");
  CHECK(h.last_is_close());
  CHECK(h.count<Ready>() == 0);
}

TEST_CASE("STARTTLS refused with a reply other than 220") {
  ClientConfig c = implicit_config();
  c.tls = TlsPolicy::StartTls;
  Harness h(c);
  h.connect();
  h.script("S: 220 mx ESMTP\n"
           "C: EHLO client.example\n"
           "S: 250-mx\n"
           "S: 250 STARTTLS\n"
           "C: STARTTLS\n"
           "S: 454 4.7.0 TLS not available due to local problem\n"
           "C: QUIT");
  auto* f = h.last<SessionFailed>();
  REQUIRE(f);
  CHECK(f->failure.stage == Stage::StartTls);
  CHECK(f->failure.text() == "STARTTLS refused: 454 4.7.0 TLS not available due to local problem");
  CHECK(h.count<StartTls>() == 0);
}

TEST_CASE("bytes after the 220 to STARTTLS are a protocol violation") {
  ClientConfig c = implicit_config();
  c.tls = TlsPolicy::StartTls;
  SUBCASE("in the same packet as the 220") {
    Harness h(c);
    h.connect();
    h.script("S: 220 mx ESMTP\nC: EHLO client.example\nS: 250-mx\nS: 250 STARTTLS\nC: STARTTLS");
    h.server("220 Ready to start TLS\r\n250-injected\r\n");
    CHECK(h.count<StartTls>() == 0);   // never handshakes over an injected stream
    REQUIRE(h.last<SessionFailed>());
    CHECK(h.last<SessionFailed>()->failure.detail.find("protocol violation") == 0);
    CHECK(h.last_is_close());
    CHECK(h.client().empty());
  }
  SUBCASE("in a later packet, before the handshake completed") {
    Harness h(c);
    h.connect();
    h.script("S: 220 mx ESMTP\nC: EHLO client.example\nS: 250-mx\nS: 250 STARTTLS\nC: STARTTLS\nS: 220 go");
    REQUIRE(h.count<StartTls>() == 1);
    h.server("250 late\r\n");
    REQUIRE(h.last<SessionFailed>());
    CHECK(h.last<SessionFailed>()->failure.stage == Stage::StartTls);
    CHECK(h.last_is_close());
    h.s.on_tls_established();   // too late: ignored
    h.pump();
    CHECK(h.client().empty());
  }
}

TEST_CASE("AUTH mechanism choice") {
  struct Row { AuthPolicy policy; const char* offered; const char* first_line; const char* failure; };
  const Row rows[] = {
      {AuthPolicy::Auto, "LOGIN PLAIN", "AUTH PLAIN ", nullptr},
      {AuthPolicy::Auto, "LOGIN", "AUTH LOGIN", nullptr},
      {AuthPolicy::Auto, "CRAM-MD5 XOAUTH2", nullptr,
       "no usable AUTH mechanism: the server offers CRAM-MD5 XOAUTH2; auth = \"auto\" uses PLAIN or LOGIN"},
      {AuthPolicy::Login, "LOGIN PLAIN", "AUTH LOGIN", nullptr},
      {AuthPolicy::Plain, "LOGIN", nullptr, "the server does not offer AUTH PLAIN (it offers LOGIN)"},
      {AuthPolicy::XOAuth2, "PLAIN XOAUTH2", "AUTH XOAUTH2 ", nullptr},
  };
  for (const auto& r : rows) {
    CAPTURE(r.offered);
    ClientConfig c = implicit_config();
    c.auth = r.policy;
    Harness h(c);
    h.connect();
    h.script("S: 220 mx\nC: EHLO client.example");
    h.server(std::string("250-mx\r\n250 AUTH ") + r.offered + "\r\n");
    std::string sent = h.client();
    if (r.first_line) {
      CHECK(sent.rfind(r.first_line, 0) == 0);
    } else {
      CHECK(sent == "QUIT\r\n");
      REQUIRE(h.last<SessionFailed>());
      CHECK(h.last<SessionFailed>()->failure.detail == r.failure);
      CHECK(h.last<SessionFailed>()->failure.stage == Stage::Auth);
    }
  }
}

TEST_CASE("old-style AUTH= capability line is understood") {
  Harness h(implicit_config());
  h.connect();
  h.script("S: 220 mx\nC: EHLO client.example\nS: 250-mx\nS: 250 AUTH=LOGIN\nC: AUTH LOGIN");
}

TEST_CASE("AUTH XOAUTH2: success, and a refused token with its JSON error") {
  ClientConfig c = implicit_config();
  c.auth = AuthPolicy::XOAuth2;
  c.secret = "ya29.token";
  SUBCASE("accepted") {
    Harness h(c);
    h.connect();
    h.script("S: 220 smtp.gmail.com ESMTP\n"
             "C: EHLO client.example\n"
             "S: 250-smtp.gmail.com at your service\n"
             "S: 250 AUTH LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN OAUTHBEARER XOAUTH\n"
             "C: AUTH XOAUTH2 dXNlcj1zb21lb25lQDE2My5jb20BYXV0aD1CZWFyZXIgeWEyOS50b2tlbgEB\n"
             "S: 235 2.7.0 Accepted");
    CHECK(h.s.ready());
    CHECK(h.s.transcript().back() == "S: 235 2.7.0 Accepted");
  }
  SUBCASE("refused") {
    Harness h(c);
    h.connect();
    h.script("S: 220 smtp.gmail.com ESMTP\n"
             "C: EHLO client.example\n"
             "S: 250-smtp.gmail.com at your service\n"
             "S: 250 AUTH XOAUTH2\n"
             "C: AUTH XOAUTH2 dXNlcj1zb21lb25lQDE2My5jb20BYXV0aD1CZWFyZXIgeWEyOS50b2tlbgEB\n"
             "S: 334 eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xlLmNvbS8ifQ==\n"
             "C: \n"
             "S: 535-5.7.8 Username and Password not accepted.\n"
             "S: 535 5.7.8 https://support.google.com/mail/?p=BadCredentials\n"
             "C: QUIT");
    auto* f = h.last<SessionFailed>();
    REQUIRE(f);
    CHECK(f->failure.stage == Stage::Auth);
    CHECK(f->failure.scope == Scope::Upstream);
    CHECK(f->failure.reply->code == 535);
    CHECK(f->failure.detail ==
          "token refused {\"status\":\"400\",\"schemes\":\"Bearer\",\"scope\":\"https://mail.google.com/\"}");
    for (const auto& line : h.s.transcript()) CHECK(line.find("ya29") == std::string::npos);
  }
}

TEST_CASE("535 at AUTH: upstream-scope failure, never a message outcome") {
  Harness h(implicit_config());
  h.connect();
  h.script("S: 220 newxmesmtplogicsvrszc\n"
           "C: EHLO client.example\n"
           "S: 250-newxmesmtplogicsvrszc\n"
           "S: 250 AUTH LOGIN PLAIN\n"
           "C: AUTH PLAIN AHNvbWVvbmVAMTYzLmNvbQBzM2NyZXQtQXV0aC1Db2Rl\n"
           "S: 535 Login Fail. Please enter your authorization code to login. More information in "
           "https://service.mail.qq.com/detail/0/53\n"
           "C: QUIT");
  auto* f = h.last<SessionFailed>();
  REQUIRE(f);
  CHECK(f->failure.stage == Stage::Auth);
  CHECK(f->failure.scope == Scope::Upstream);
  CHECK(f->failure.text().rfind("535 Login Fail.", 0) == 0);
  CHECK(h.reports().empty());
  CHECK(h.last_is_close());
  const auto& t = h.s.transcript();
  CHECK(std::find(t.begin(), t.end(), "C: AUTH PLAIN <redacted>") != t.end());
  CHECK(t.back() == "C: QUIT");
}

TEST_CASE("a reply that echoes the AUTH argument is redacted before anyone keeps it (issue 12)") {
  struct Row { const char* name; const char* auth_line; const char* reply; };
  // The argument of AUTH PLAIN for someone@163.com / s3cret-Auth-Code, with and without padding, the raw
  // secret, and AUTH LOGIN's base64 password.
  const Row rows[] = {
      {"PLAIN blob", "AUTH PLAIN", "S: 535 5.7.8 Bad credentials for AHNvbWVvbmVAMTYzLmNvbQBzM2NyZXQtQXV0aC1Db2Rl\n"},
      {"raw secret", "AUTH PLAIN", "S: 535 5.7.8 password s3cret-Auth-Code is wrong\n"},
      {"LOGIN base64 password, padding dropped", "AUTH PLAIN", "S: 501 5.5.2 cannot decode czNjcmV0LUF1dGgtQ29kZQ\n"},
  };
  for (const auto& r : rows) {
    CAPTURE(r.name);
    Harness h(implicit_config());
    h.connect();
    h.script(std::string("S: 220 relay\nC: EHLO client.example\nS: 250-relay\nS: 250 AUTH PLAIN\n"
                         "C: AUTH PLAIN AHNvbWVvbmVAMTYzLmNvbQBzM2NyZXQtQXV0aC1Db2Rl\n") +
             r.reply + "C: QUIT");
    auto* f = h.last<SessionFailed>();
    REQUIRE(f);
    const std::string text = f->failure.text();
    CHECK(text.find("<redacted>") != std::string::npos);
    for (const char* leak : {"s3cret", "AHNvbWVvbmVAMTYzLmNvbQBzM2NyZXQtQXV0aC1Db2Rl", "czNjcmV0LUF1dGgtQ29kZQ"}) {
      CHECK(text.find(leak) == std::string::npos);
      for (const auto& line : h.s.transcript()) CHECK(line.find(leak) == std::string::npos);
    }
  }
}

TEST_CASE("secret_forms and redact") {
  namespace sasl = outbox::protocol::sasl;
  auto forms = sasl::secret_forms("someone@163.com", "s3cret-Auth-Code");
  CHECK(sasl::redact("x s3cret-Auth-Code y", forms) == "x <redacted> y");
  CHECK(sasl::redact("AHNvbWVvbmVAMTYzLmNvbQBzM2NyZXQtQXV0aC1Db2Rl", forms) == "<redacted>");
  CHECK(sasl::redact("nothing secret here", forms) == "nothing secret here");
  CHECK(sasl::secret_forms("u", "abc").empty());   // too short to look for
}

TEST_CASE("no AUTH over a connection without TLS") {
  ClientConfig c = implicit_config();
  c.tls = TlsPolicy::None;
  Harness h(c);
  h.connect();
  h.script("S: 220 relay\nC: EHLO client.example\nS: 250-relay\nS: 250 AUTH PLAIN\nC: QUIT");
  REQUIRE(h.last<SessionFailed>());
  CHECK(h.last<SessionFailed>()->failure.detail == "refusing to send credentials over a connection without TLS");
}

TEST_CASE("no credentials: no AUTH, even when offered; plaintext relay allowed") {
  ClientConfig c = implicit_config();
  c.tls = TlsPolicy::None;
  c.username.clear();
  Harness h(c);
  h.connect();
  h.script("S: 220 relay\nC: EHLO client.example\nS: 250-relay\nS: 250 AUTH PLAIN");
  CHECK(h.s.ready());
  CHECK_FALSE(h.s.authenticated());
}

TEST_CASE("credentials configured, server offers no AUTH") {
  Harness h(implicit_config());
  h.connect();
  h.script("S: 220 mx\nC: EHLO client.example\nS: 250-mx\nS: 250 8BITMIME\nC: QUIT");
  CHECK(h.last<SessionFailed>()->failure.detail == "the server does not offer AUTH");
}

TEST_CASE("EHLO refused: HELO fallback only when no extension is needed") {
  ClientConfig c = implicit_config();
  c.username.clear();
  Harness h(c);
  h.connect();
  h.script("S: 220 old\nC: EHLO client.example\nS: 502 5.5.2 Error: command not recognized\n"
           "C: HELO client.example\nS: 250 old");
  CHECK(h.s.ready());
  CHECK_FALSE(h.s.capabilities().esmtp);

  Harness a(implicit_config());   // needs AUTH
  a.connect();
  a.script("S: 220 old\nC: EHLO client.example\nS: 502 5.5.2 Error\nC: QUIT");
  CHECK(a.last<SessionFailed>()->failure.stage == Stage::Ehlo);
}

TEST_CASE("greeting refusals") {
  Harness h(implicit_config());
  h.connect();
  h.script("S: 554 5.7.1 mx.example: no SMTP service for you\nC: QUIT");
  auto* f = h.last<SessionFailed>();
  REQUIRE(f);
  CHECK(f->failure.stage == Stage::Greeting);
  CHECK(f->failure.scope == Scope::Upstream);
  CHECK(f->failure.text() == "554 5.7.1 mx.example: no SMTP service for you");

  Harness b(implicit_config());
  b.connect();
  b.server("421 4.3.2 Service not available\r\n");
  CHECK(b.client().empty());   // 421: the server is closing; no QUIT
  CHECK(b.last<SessionFailed>()->failure.reply->code == 421);
  CHECK(b.last_is_close());
}

TEST_CASE("550 for one of three recipients") {
  Harness h(implicit_config());
  login(h);
  h.s.send_message(message("Q2", {"a@x.example", "nobody@x.example", "c@x.example"}));
  h.pump();
  h.client();
  h.script("S: 250 2.1.0 Ok\n"
           "S: 250 2.1.5 Ok\n"
           "S: 550 5.1.1 <nobody@x.example>: Recipient address rejected: User unknown\n"
           "S: 250 2.1.5 Ok\n"
           "S: 354 go");
  h.s.body_chunk("body\r\n");
  h.s.body_end();
  h.pump();
  h.script("C: body\nC: .\nS: 250 2.0.0 Ok: queued as 4Xyz");
  auto rep = h.reports().at(0);
  CHECK_FALSE(rep.all_delivered());
  CHECK(rep.recipients[0].outcome == Outcome::Delivered);
  CHECK(rep.recipients[2].outcome == Outcome::Delivered);
  const auto& bad = rep.recipients[1];
  CHECK(bad.outcome == Outcome::Permanent);
  CHECK(bad.scope == Scope::Recipient);
  CHECK(bad.stage == Stage::Rcpt);
  CHECK(bad.status == EnhancedStatus{5, 1, 1});
  CHECK(bad.text() == "550 5.1.1 <nobody@x.example>: Recipient address rejected: User unknown");
  CHECK(rep.scope() == Scope::Recipient);
  CHECK(rep.first_failure() == &rep.recipients[1]);
  CHECK(h.s.ready());
}

TEST_CASE("451 after the final dot: temporary for the accepted, the refused stay refused") {
  Harness h(implicit_config());
  login(h);
  h.s.send_message(message("Q3", {"a@x.example", "b@x.example"}));
  h.pump();
  h.client();
  h.server("250 2.1.0 Ok\r\n550 5.1.1 no such user\r\n250 2.1.5 Ok\r\n354 go\r\n");
  h.s.body_chunk("body\r\n");
  h.s.body_end();
  h.pump();
  h.script("C: body\nC: .\nS: 451 4.3.0 Error: queue file write error");
  auto rep = h.reports().at(0);
  CHECK(rep.recipients[0].outcome == Outcome::Permanent);
  CHECK(rep.recipients[1].outcome == Outcome::Temporary);
  CHECK(rep.recipients[1].scope == Scope::Message);
  CHECK(rep.recipients[1].stage == Stage::DataEnd);
  CHECK(rep.recipients[1].status.str() == "4.3.0");
  CHECK_FALSE(rep.possible_duplicate);
  CHECK(h.s.ready());   // an ordinary 4xx: the connection stays usable
}

TEST_CASE("connection lost after the final dot: possible duplicate (RFC 1047)") {
  for (bool timeout : {false, true}) {
    CAPTURE(timeout);
    Harness h(implicit_config());
    login(h);
    to_body(h, message("Q4", {"a@x.example"}));
    h.s.body_chunk("body\r\n");
    h.s.body_end();
    h.pump();
    CHECK(h.s.deadline() == std::chrono::seconds(600));
    if (timeout) h.s.on_timeout();
    else h.s.on_closed("connection reset by peer");
    h.pump();
    auto rep = h.reports().at(0);
    CHECK(rep.possible_duplicate);
    CHECK(rep.recipients[0].outcome == Outcome::Temporary);
    CHECK(rep.recipients[0].scope == Scope::Connection);
    CHECK(rep.recipients[0].stage == Stage::DataEnd);
    CHECK(rep.recipients[0].text() ==
          std::string("4.4.2 ") +
              (timeout ? "timeout waiting for the reply to end of DATA"
                       : "connection closed by the server (connection reset by peer)") +
              " after the end of data was sent; the message may have been delivered");
    CHECK(h.last_is_close());
    CHECK(h.s.finished());
  }
}

TEST_CASE("connection lost before the dot: no duplicate") {
  Harness h(implicit_config());
  login(h);
  to_body(h, message("Q5", {"a@x.example"}));
  h.s.body_chunk("half of it");
  h.s.on_closed();
  h.pump();
  auto rep = h.reports().at(0);
  CHECK_FALSE(rep.possible_duplicate);
  CHECK(rep.recipients[0].stage == Stage::Body);
  CHECK(rep.recipients[0].text() == "4.4.2 connection closed by the server at message text");
  h.s.body_chunk("more");   // late chunks from the daemon are ignored
  h.s.body_end();
  h.pump();
  CHECK(h.client().find("more") == std::string::npos);
}

TEST_CASE("timeouts at every stage") {
  using std::chrono::seconds;
  struct Row {
    const char* name;
    std::string server;     // replies before the timeout (after connect)
    bool send;              // a message is handed over once ready
    bool body;              // the 354 arrives; body pending
    seconds deadline;
    Stage stage;
    bool session_failure;
  };
  const std::string greet = "220 mx\r\n";
  const std::string ehlo = "250-mx\r\n250 AUTH PLAIN\r\n";
  const std::string auth = "235 ok\r\n";
  const Row rows[] = {
      {"greeting", "", false, false, seconds(300), Stage::Greeting, true},
      {"ehlo", greet, false, false, seconds(300), Stage::Ehlo, true},
      {"auth", greet + ehlo, false, false, seconds(300), Stage::Auth, true},
      {"mail", greet + ehlo + auth, true, false, seconds(300), Stage::Mail, false},
      {"rcpt", greet + ehlo + auth + "250 ok\r\n", true, false, seconds(300), Stage::Rcpt, false},
      {"data", greet + ehlo + auth + "250 ok\r\n250 ok\r\n", true, false, seconds(120), Stage::Data, false},
      {"body", greet + ehlo + auth + "250 ok\r\n250 ok\r\n354 go\r\n", true, true, seconds(180), Stage::Body, false},
  };
  for (const auto& r : rows) {
    CAPTURE(r.name);
    Harness h(implicit_config());
    h.connect();
    // Not pipelined: feed replies one at a time so each command goes out.
    std::string rest = r.server;
    auto step = [&] {
      while (!rest.empty()) {
        // One line at a time; the parser joins multi-line replies.
        auto eol = rest.find("\r\n");
        std::string line = rest.substr(0, eol + 2);
        rest.erase(0, eol + 2);
        h.server(line);
        if (h.s.ready() && r.send) h.s.send_message(message("T", {"a@x.example"})), h.pump();
      }
    };
    step();
    CHECK(h.s.stage() == r.stage);
    CHECK(h.s.deadline() == r.deadline);
    h.s.on_timeout();
    h.pump();
    CHECK(h.last_is_close());
    if (r.session_failure) {
      REQUIRE(h.last<SessionFailed>());
      CHECK(h.last<SessionFailed>()->failure.stage == r.stage);
      CHECK(h.last<SessionFailed>()->failure.scope == Scope::Upstream);
    } else {
      auto rep = h.reports().at(0);
      CHECK(rep.recipients[0].outcome == Outcome::Temporary);
      CHECK(rep.recipients[0].scope == Scope::Connection);
      CHECK(rep.recipients[0].stage == r.stage);
      CHECK_FALSE(rep.possible_duplicate);
      if (r.stage == Stage::Rcpt) CHECK(rep.recipients[0].text() == "4.4.2 timeout waiting for the reply to RCPT TO");
      if (r.stage == Stage::Body) CHECK(rep.recipients[0].text() == "4.4.2 timeout while sending the message text");
    }
  }
}

TEST_CASE("timeout while idle or quitting just closes") {
  Harness h(implicit_config());
  login(h);
  CHECK(h.s.deadline() == std::chrono::seconds(0));
  h.s.quit();
  h.pump();
  CHECK(h.s.deadline() == std::chrono::seconds(60));
  h.s.on_timeout();
  h.pump();
  CHECK(h.last_is_close());
  CHECK(h.count<SessionFailed>() == 0);
}

TEST_CASE("TLS handshake failure and connect failure are session failures") {
  Harness h(implicit_config());
  h.s.on_tls_failed("wrong version number");
  h.pump();
  REQUIRE(h.last<SessionFailed>());
  CHECK(h.last<SessionFailed>()->failure.stage == Stage::Tls);
  CHECK(h.last<SessionFailed>()->failure.text() == "wrong version number");

  Harness c(implicit_config());
  c.s.on_connect_failed("connection refused");
  c.pump();
  CHECK(c.last<SessionFailed>()->failure.stage == Stage::Connect);
  CHECK(c.last_is_close());
}

TEST_CASE("SIZE: a message over the upstream's limit fails permanently with 5.3.4, nothing sent") {
  Harness h(implicit_config());
  login(h);
  h.s.send_message(message("BIG", {"a@x.example", "b@x.example"}, 40'000'000));
  h.pump();
  CHECK(h.client().empty());
  auto rep = h.reports().at(0);
  for (const auto& r : rep.recipients) {
    CHECK(r.outcome == Outcome::Permanent);
    CHECK(r.scope == Scope::Message);
    CHECK(r.text() == "5.3.4 message size 40000000 exceeds the upstream's limit of 35882577");
  }
  CHECK(h.s.ready());
  CHECK(h.count<Ready>() == 2);
}

TEST_CASE("max_message_size: a message over the configured limit fails with 5.3.4 before SIZE is even asked") {
  ClientConfig cfg = implicit_config();
  cfg.max_message_size = 1'000'000;
  Harness h(cfg);
  login(h);   // the server announces SIZE 35882577: the configured limit is lower
  h.s.send_message(message("BIG", {"a@x.example"}, 2'000'000));
  h.pump();
  CHECK(h.client().empty());
  auto rep = h.reports().at(0);
  CHECK(rep.recipients[0].outcome == Outcome::Permanent);
  CHECK(rep.recipients[0].text() == "5.3.4 message size 2000000 exceeds this upstream's max_message_size of 1000000");
  // At the limit the message goes.
  h.s.send_message(message("OK", {"a@x.example"}, 1'000'000));
  h.pump();
  CHECK(h.client().rfind("MAIL FROM:<someone@163.com> SIZE=1000000", 0) == 0);
}

TEST_CASE("SMTPUTF8 needed but not offered: permanent 5.6.7") {
  Harness h(implicit_config());
  login(h, "250 AUTH PLAIN");
  auto m = message("U", {"用户@例子.中国"});
  m.smtputf8 = true;
  h.s.send_message(m);
  h.pump();
  CHECK(h.client().empty());
  auto rep = h.reports().at(0);
  CHECK(rep.recipients[0].status == EnhancedStatus{5, 6, 7});
  CHECK(rep.recipients[0].outcome == Outcome::Permanent);
  CHECK(rep.recipients[0].text() ==
        "5.6.7 the message needs SMTPUTF8 (RFC 6531) and the upstream does not offer it");
}

TEST_CASE("MAIL parameters: SIZE, BODY=8BITMIME, SMTPUTF8 when offered and needed") {
  Harness h(implicit_config());
  login(h);
  auto m = message("P", {"用户@例子.中国"}, 42);
  m.smtputf8 = true;
  m.body_8bit = true;
  h.s.send_message(m);
  h.pump();
  CHECK(h.client().rfind("MAIL FROM:<someone@163.com> SIZE=42 BODY=8BITMIME SMTPUTF8\r\n", 0) == 0);

  Harness n(implicit_config());
  login(n, "250 AUTH PLAIN");   // no SIZE, no 8BITMIME: no parameters
  auto m2 = message("P", {"a@x"}, 42);
  m2.body_8bit = true;          // sent as is (RFC 6152 offers no downgrade here)
  n.s.send_message(m2);
  n.pump();
  CHECK(n.client() == "MAIL FROM:<someone@163.com>\r\n");
}

TEST_CASE("null sender and unsafe addresses") {
  Harness h(implicit_config());
  login(h);
  auto m = message("N", {"a@x", "evil>\r\nRCPT TO:<b@y"});
  m.sender = "";
  h.s.send_message(m);
  h.pump();
  CHECK(h.client() == "MAIL FROM:<> SIZE=100\r\nRCPT TO:<a@x>\r\nDATA\r\n");
  h.server("250 ok\r\n250 ok\r\n354 go\r\n");
  h.s.body_end();
  h.server("250 ok\r\n");
  auto rep = h.reports().at(0);
  CHECK(rep.recipients[0].outcome == Outcome::Delivered);
  CHECK(rep.recipients[1].outcome == Outcome::Permanent);
  CHECK(rep.recipients[1].status.str() == "5.1.3");

  Harness b(implicit_config());
  login(b);
  auto bad = message("S", {"a@x"});
  bad.sender = "a@x> BODY=8BITMIME";
  b.s.send_message(bad);
  b.pump();
  CHECK(b.client().empty());
  CHECK(b.reports().at(0).recipients[0].status.str() == "5.1.7");
}

TEST_CASE("several messages on one connection: no RSET after a completed transaction") {
  // RFC 5321 §4.1.1.4: the end of data clears the transaction, whatever its
  // reply; RSET is for one that ended before it (see the next cases).
  Harness h(implicit_config());
  login(h);
  for (int i = 0; i < 3; ++i) {
    CAPTURE(i);
    h.writes.clear();
    std::string id = "M";
    id += std::to_string(i);
    h.s.send_message(message(id, {"a@x.example"}));
    h.pump();
    REQUIRE(h.writes.size() == 1);
    CHECK(h.client() == "MAIL FROM:<someone@163.com> SIZE=100\r\nRCPT TO:<a@x.example>\r\nDATA\r\n");
    h.server(std::string(i == 1 ? "554 5.7.1 refused\r\n" : "250 ok\r\n") + "250 ok\r\n354 go\r\n");
    if (i == 1) {   // MAIL refused, DATA started anyway: ended empty, and the next MAIL gets an RSET
      CHECK(h.client() == ".\r\n");
      h.server("554 no valid recipients\r\n");
      CHECK(h.s.ready());
      h.s.send_message(message("M1b", {"a@x.example"}));
      h.pump();
      CHECK(h.client() == "RSET\r\nMAIL FROM:<someone@163.com> SIZE=100\r\nRCPT TO:<a@x.example>\r\nDATA\r\n");
      h.server("250 2.0.0 Ok\r\n250 ok\r\n250 ok\r\n354 go\r\n");
    }
    h.s.body_chunk("m\r\n");
    h.s.body_end();
    h.pump();
    CHECK(h.client() == "m\r\n.\r\n");
    h.server("250 queued\r\n");
    CHECK(h.s.ready());
  }
  auto reps = h.reports();
  REQUIRE(reps.size() == 4);
  CHECK(reps[0].all_delivered());
  CHECK_FALSE(reps[1].all_delivered());
  CHECK(reps[2].exchanges[0].command == "RSET");
  CHECK(reps[2].all_delivered());
  CHECK(reps[3].exchanges[0].command.rfind("MAIL FROM", 0) == 0);
  CHECK(reps[3].all_delivered());
}

TEST_CASE("MAIL refused in a pipelined group: all recipients take the MAIL reply") {
  Harness h(implicit_config());
  login(h);
  h.s.send_message(message("R", {"a@x", "b@x"}));
  h.pump();
  h.client();
  SUBCASE("DATA refused too") {
    h.server("553 Mail from must equal authorized user\r\n503 bad sequence\r\n503 bad sequence\r\n"
             "503 5.5.1 Error: need RCPT command\r\n");
    CHECK(h.client().empty());
  }
  SUBCASE("server starts DATA anyway: end it empty") {
    h.server("553 Mail from must equal authorized user\r\n503 bad\r\n503 bad\r\n354 go\r\n");
    CHECK(h.count<NeedBody>() == 0);
    CHECK(h.client() == ".\r\n");
    h.server("554 5.5.1 Error: no valid recipients\r\n");
  }
  auto rep = h.reports().at(0);
  for (const auto& r : rep.recipients) {
    CHECK(r.outcome == Outcome::Permanent);
    CHECK(r.scope == Scope::Message);
    CHECK(r.stage == Stage::Mail);
    CHECK(r.text() == "553 Mail from must equal authorized user");
  }
  CHECK(h.s.ready());
}

TEST_CASE("every recipient refused: no DATA without PIPELINING") {
  Harness h(implicit_config());
  login(h, "250 AUTH PLAIN");
  h.s.send_message(message("R", {"a@x"}));
  h.pump();
  h.script("C: MAIL FROM:<someone@163.com>\nS: 250 ok\nC: RCPT TO:<a@x>\nS: 550 5.1.1 unknown");
  CHECK(h.client().empty());
  CHECK(h.reports().at(0).recipients[0].outcome == Outcome::Permanent);
  CHECK(h.s.ready());
  h.s.send_message(message("R2", {"b@x"}));
  h.pump();
  CHECK(h.client() == "RSET\r\n");
}

TEST_CASE("throttling replies: upstream scope, temporary, connection given up") {
  struct Row { const char* at; const char* reply; bool quit; const char* status; };
  const Row rows[] = {
      {"mail", "451 MI:SFQ Sender over limit", true, "4.0.0"},
      {"mail", "454 Throttling failure: Maximum sending rate exceeded.", true, "4.0.0"},
      {"mail", "432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded", true, "4.3.2"},
      {"mail", "530 5.7.57 Client not authenticated to send mail", true, "4.7.57"},
      {"mail", "550 5.4.5 Daily user sending quota exceeded", true, "4.4.5"},
      {"rcpt", "450 4.7.1 Try again later", true, "4.7.1"},
      {"mail", "421 4.7.0 Try again later, closing connection", false, "4.7.0"},
      {"rcpt", "421 4.7.0 Try again later, closing connection", false, "4.7.0"},
      {"dot", "454 Throttling failure: Daily message quota exceeded.", true, "4.0.0"},
  };
  for (const auto& r : rows) {
    CAPTURE(r.reply);
    Harness h(implicit_config());
    login(h);
    h.s.send_message(message("T", {"a@x"}));
    h.pump();
    h.client();
    std::string at = r.at;
    std::string reply = std::string(r.reply) + "\r\n";
    if (at == "mail") h.server(reply + (std::string(r.reply).substr(0, 3) == "421" ? "" : "503 x\r\n503 x\r\n"));
    else if (at == "rcpt") h.server("250 ok\r\n" + reply + (reply.substr(0, 3) == "421" ? "" : "503 no rcpt\r\n"));
    else {
      h.server("250 ok\r\n250 ok\r\n354 go\r\n");
      h.s.body_end();
      h.pump();
      h.client();
      h.server(reply);
    }
    auto rep = h.reports().at(0);
    CHECK(rep.recipients[0].outcome == Outcome::Temporary);
    CHECK(rep.recipients[0].scope == Scope::Upstream);
    CHECK(rep.recipients[0].status.str() == r.status);
    CHECK(rep.scope() == Scope::Upstream);
    CHECK_FALSE(h.s.ready());
    CHECK(h.client() == (r.quit ? "QUIT\r\n" : ""));
    if (r.quit) h.server("221 bye\r\n");
    CHECK(h.last_is_close());
    CHECK(h.count<Ready>() == 1);
  }
}

TEST_CASE("a protocol error mid-transaction is a connection failure") {
  Harness h(implicit_config());
  login(h);
  h.s.send_message(message("E", {"a@x"}));
  h.pump();
  h.server("250 ok\n");
  auto rep = h.reports().at(0);
  CHECK(rep.recipients[0].scope == Scope::Connection);
  CHECK(rep.recipients[0].text() == "4.4.2 protocol error: bare LF in reply at MAIL FROM");
  CHECK(h.last_is_close());
}

TEST_CASE("an unexpected reply during the body") {
  Harness h(implicit_config());
  login(h);
  to_body(h, message("X", {"a@x"}));
  h.server("554 5.7.0 go away\r\n");
  auto rep = h.reports().at(0);
  CHECK(rep.recipients[0].outcome == Outcome::Temporary);
  CHECK(rep.recipients[0].scope == Scope::Connection);
  CHECK(h.last_is_close());
}

TEST_CASE("replies split at every byte still drive the session") {
  Harness h(implicit_config());
  h.connect();
  std::string greet = "220 mx ESMTP\r\n";
  for (char c : greet) h.server(std::string(1, c));
  CHECK(h.client() == "EHLO client.example\r\n");
  std::string ehlo = "250-mx\r\n250-PIPELINING\r\n250 AUTH PLAIN\r\n";
  for (char c : ehlo) h.server(std::string(1, c));
  CHECK(h.client().rfind("AUTH PLAIN ", 0) == 0);
  for (char c : std::string("235 2.7.0 ok\r\n")) h.server(std::string(1, c));
  CHECK(h.s.ready());
}

TEST_CASE("idle connection: a 421 from the server closes quietly") {
  Harness h(implicit_config());
  login(h);
  h.server("421 4.4.2 mx Error: timeout exceeded\r\n");
  CHECK(h.last_is_close());
  CHECK(h.count<SessionFailed>() == 0);
  CHECK(h.reports().empty());
}

TEST_CASE("dot-stuffing and the final line end") {
  CHECK(wire_body({".hidden\r\n..two\r\nnot.start\r\n.\r\n"}) ==
        "..hidden\r\n...two\r\nnot.start\r\n..\r\n.\r\n");
  CHECK(wire_body({"no final CRLF"}) == "no final CRLF\r\n.\r\n");
  CHECK(wire_body({}) == ".\r\n");
  CHECK(wire_body({"a\r\n"}) == "a\r\n.\r\n");
  CHECK(wire_body({"."}) == "..\r\n.\r\n");
}

TEST_CASE("bare CR and bare LF never reach the wire") {
  CHECK(wire_body({"a\nb\rc\r\n"}) == "a\r\nb\r\nc\r\n.\r\n");
  CHECK(wire_body({"a\r"}) == "a\r\n.\r\n");
  CHECK(wire_body({"a\r", "\nb"}) == "a\r\nb\r\n.\r\n");
  CHECK(wire_body({"x\n.\n"}) == "x\r\n..\r\n.\r\n");   // the smuggling shape, neutralised
}

TEST_CASE("lines over 998 octets are folded with CRLF SP") {
  std::string line(1200, 'x');
  std::string wire = wire_body({line + "\r\n"});
  CHECK(wire == std::string(998, 'x') + "\r\n " + std::string(202, 'x') + "\r\n.\r\n");
}

TEST_CASE("a body split at every position gives the same bytes") {
  const std::string body =
      "From: a@x\r\nSubject: dots\r\n\r\n.leading dot\r\n..two\r\n.\r\nmiddle.\r\n\r\n.\r\nend.";
  const std::string whole = wire_body({body});
  CHECK(whole == "From: a@x\r\nSubject: dots\r\n\r\n..leading dot\r\n...two\r\n..\r\nmiddle.\r\n\r\n..\r\nend.\r\n.\r\n");
  for (std::size_t i = 0; i <= body.size(); ++i) {
    CAPTURE(i);
    CHECK(wire_body({body.substr(0, i), body.substr(i)}) == whole);
  }
  for (std::size_t i = 0; i <= body.size(); ++i)
    for (std::size_t j = i; j <= body.size(); j += 7) {
      CAPTURE(i);
      CAPTURE(j);
      CHECK(wire_body({body.substr(0, i), body.substr(i, j - i), body.substr(j)}) == whole);
    }
  std::vector<std::string> bytes;
  for (char c : body) bytes.emplace_back(1, c);
  CHECK(wire_body(bytes) == whole);
}

TEST_CASE("capabilities parse") {
  SmtpReply r;
  r.code = 250;
  r.lines = {"smtp.example Hello", "size", "auth=LOGIN PLAIN", "AUTH PLAIN CRAM-MD5", "pipelining",
             "ENHANCEDSTATUSCODES", "8bitmime", "SMTPUTF8", "STARTTLS", "X-UNKNOWN stuff"};
  auto c = Capabilities::parse(r);
  CHECK(c.esmtp);
  CHECK(c.size);
  CHECK(c.size_limit == 0);
  CHECK(c.auth == std::vector<std::string>{"LOGIN", "PLAIN", "CRAM-MD5"});
  CHECK(c.pipelining);
  CHECK(c.enhancedstatuscodes);
  CHECK(c.eightbitmime);
  CHECK(c.smtputf8);
  CHECK(c.starttls);
  r.lines = {"x", "SIZE 1000", "SIZE nonsense"};
  CHECK(Capabilities::parse(r).size_limit == 0);
  r.lines = {"x", "SIZE 35882577"};
  CHECK(Capabilities::parse(r).size_limit == 35882577);
}

TEST_CASE("classification table") {
  auto rep = [](int code, const char* text) {
    SmtpReply r;
    r.code = code;
    r.lines = {text};
    auto e = outbox::protocol::EnhancedStatus::parse(std::string(text).substr(0, std::string(text).find(' ')));
    if (e && e->cls == code / 100) r.enhanced = e;
    return r;
  };
  struct Row { Stage stage; int code; const char* text; Scope scope; bool throttle; };
  const Row rows[] = {
      {Stage::Rcpt, 550, "5.1.1 User unknown", Scope::Recipient, false},
      {Stage::Rcpt, 452, "4.5.3 Too many recipients", Scope::Recipient, false},
      {Stage::Rcpt, 452, "4.2.2 Mailbox full", Scope::Recipient, false},
      {Stage::Rcpt, 450, "4.2.1 The user you are trying to contact is receiving mail too quickly", Scope::Upstream, true},
      {Stage::Mail, 553, "Mail from must equal authorized user", Scope::Message, false},
      {Stage::Mail, 501, "mail from address must be same as authorization user", Scope::Message, false},
      {Stage::Mail, 554, "Message rejected: Email address is not verified.", Scope::Message, false},
      {Stage::Mail, 451, "MI:SFQ Sender over limit", Scope::Upstream, true},
      {Stage::Mail, 450, "MI:DMC too many mails per connection", Scope::Upstream, true},
      {Stage::Rcpt, 450, "RP:DRC too many recipients per connection", Scope::Upstream, true},
      {Stage::Mail, 530, "5.7.0 Authentication required", Scope::Upstream, false},
      {Stage::DataEnd, 554, "DT:SPM spam", Scope::Message, false},
      {Stage::DataEnd, 451, "DT:SPM temporary spam suspicion", Scope::Message, false},
      {Stage::DataEnd, 550, "5.4.5 Daily SMTP relay limit exceeded for user", Scope::Upstream, true},
      {Stage::Mail, 421, "HL:ICC too many connections", Scope::Upstream, true},
      {Stage::Mail, 432, "4.3.2 Concurrent connections limit exceeded", Scope::Upstream, true},
      {Stage::Auth, 454, "4.7.0 Too many login attempts", Scope::Upstream, true},
      {Stage::Auth, 535, "5.7.8 Username and Password not accepted", Scope::Upstream, false},
      {Stage::Greeting, 554, "no service", Scope::Upstream, false},
      {Stage::Rset, 500, "5.5.1 huh", Scope::Connection, false},
      {Stage::Mail, 550, "Sender frequency limited", Scope::Message, false},   // 5xx text match: not throttle
  };
  for (const auto& r : rows) {
    CAPTURE(r.text);
    auto reply = rep(r.code, r.text);
    CHECK(classify(r.stage, reply) == r.scope);
    CHECK(is_throttle(reply) == r.throttle);
  }
  CHECK(suggested_backoff(rep(451, "MI:SFQ Sender over limit")) == std::chrono::minutes(15));
  CHECK(suggested_backoff(rep(454, "Throttling failure: Daily message quota exceeded.")) == std::chrono::hours(1));
  CHECK(suggested_backoff(rep(454, "Throttling failure: Maximum sending rate exceeded.")) == std::chrono::minutes(1));
  CHECK(suggested_backoff(rep(550, "5.1.1 unknown")) == std::chrono::seconds(0));
}

TEST_CASE("send_message when not ready is a programming error") {
  Harness h(implicit_config());
  CHECK_THROWS_AS(h.s.send_message(message("x", {"a@x"})), std::logic_error);
}
