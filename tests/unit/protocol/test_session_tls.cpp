// STARTTLS (RFC 3207) and the CVE-2011-0411 command injection: plaintext
// pipelined after STARTTLS is never executed.
#include <doctest/doctest.h>

#include "session_harness.h"

using namespace outbox::protocol;
using outbox::protocol::test::Harness;
using outbox::protocol::test::loopback_peer;
using outbox::protocol::test::test_config;

using Lines = std::vector<std::string>;

namespace {
SessionConfig starttls_config() {
  SessionConfig c = test_config();
  c.tls = ListenerTls::StartTls;
  return c;
}
}  // namespace

TEST_CASE("STARTTLS not offered, offered, already active") {
  Harness plain;
  plain.ehlo();
  plain.feed("STARTTLS\r\n");
  CHECK(plain.take() == Lines{"502 5.5.1 STARTTLS not available\r\n"});
  CHECK(plain.starttls == 0);

  Harness h(starttls_config());
  h.ehlo();
  h.feed("STARTTLS now\r\n");
  CHECK(h.take() == Lines{"501 5.5.4 Syntax: STARTTLS\r\n"});
  h.feed("STARTTLS\r\n");
  CHECK(h.take() == Lines{"220 2.0.0 Ready to start TLS\r\n"});
  CHECK(h.starttls == 1);
  CHECK_FALSE(h.session->tls_active());
  h.session->on_tls_established();
  h.collect();
  CHECK(h.session->tls_active());
  CHECK(h.take().empty());  // RFC 3207 §4.2: no new greeting
  h.feed("MAIL FROM:<a@example.org>\r\n");
  CHECK(h.take() == Lines{"503 5.5.1 Error: send HELO/EHLO first\r\n"});
  h.feed("EHLO c\r\n");
  auto r = h.take();
  REQUIRE(r.size() == 1);
  CHECK(r[0].find("STARTTLS") == std::string::npos);
  h.feed("STARTTLS\r\n");
  CHECK(h.take() == Lines{"503 5.5.1 Error: TLS already active\r\n"});
  h.feed("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n.\r\n");
  REQUIRE(h.messages.size() == 1);
  CHECK(h.messages[0].prefix.find(" with ESMTPS id ") != std::string::npos);
}

TEST_CASE("STARTTLS injection: pipelined plaintext is discarded, never answered") {
  for (std::string injected : {"NOOP\r\n", "EHLO evil\r\n", "MAIL FROM:<i@attacker.test>\r\n", "RSET\r\n", "RSET",
                               "QUIT\r\n", "GET / HTTP/1.1\r\n"}) {
    CAPTURE(injected);
    Harness h(starttls_config());
    h.ehlo();
    h.feed("MAIL FROM:<a@example.org>\r\nSTARTTLS\r\n" + injected);
    CHECK(h.take() == Lines{"250 2.1.0 Ok\r\n", "220 2.0.0 Ready to start TLS\r\n"});
    CHECK(h.logged("discarded", "pipelined_after_starttls"));
    // More plaintext before the handshake completes is dropped as well.
    h.feed("NOOP\r\n");
    CHECK(h.take().empty());
    h.session->on_tls_established();
    h.collect();
    CHECK(h.take().empty());
    CHECK(h.closes == 0);
    // The pre-TLS transaction is gone too; the first TLS command gets its own reply.
    h.feed("RCPT TO:<b@example.net>\r\n");
    CHECK(h.take() == Lines{"503 5.5.1 Error: need MAIL command\r\n"});
  }
}

TEST_CASE("STARTTLS split from the injected bytes still discards them") {
  Harness h(starttls_config());
  h.ehlo();
  h.feed("STARTTLS\r");
  CHECK(h.take().empty());
  h.feed("\nNOOP\r\n");
  CHECK(h.take() == Lines{"220 2.0.0 Ready to start TLS\r\n"});
  h.session->on_tls_established();
  h.collect();
  h.feed("NOOP\r\n");
  CHECK(h.take() == Lines{"250 2.0.0 Ok\r\n"});
}

TEST_CASE("a partial command before STARTTLS does not survive the handshake") {
  Harness h(starttls_config());
  h.ehlo();
  h.feed("STARTTLS\r\nNO");
  h.take();
  h.session->on_tls_established();
  h.collect();
  h.feed("OP\r\nNOOP\r\n");
  CHECK(h.take() == Lines{"502 5.5.2 Error: command not recognized\r\n", "250 2.0.0 Ok\r\n"});
}
