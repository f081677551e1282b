// ServerSession DATA phase: end of data, dot-unstuffing across every feed
// split, smuggling sequences, bare CR/LF/NUL, size limits, chunking, the
// trace prefix and added headers, pipelining across messages.
#include <doctest/doctest.h>

#include "session_harness.h"

using namespace outbox::protocol;
using outbox::protocol::test::Harness;
using outbox::protocol::test::loopback_peer;
using outbox::protocol::test::test_config;

using Lines = std::vector<std::string>;

namespace {
const std::string kEnvelope = "EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n";
}

TEST_CASE("body split across two feeds at every byte position") {
  const std::string body = "Subject: s\r\n\r\n..leading dot\r\nline\r\n";
  const std::string stream = kEnvelope + body + ".\r\nNOOP\r\n";
  for (std::size_t split = 0; split <= stream.size(); ++split) {
    CAPTURE(split);
    Harness h;
    h.feed(stream.substr(0, split));
    h.feed(stream.substr(split));
    CHECK(h.codes() == Lines{"250", "250", "250", "354", "250", "250"});
    REQUIRE(h.messages.size() == 1);
    CHECK(h.messages[0].body == "Subject: s\r\n\r\n.leading dot\r\nline\r\n");
    CHECK(h.messages[0].committed);
  }
}

TEST_CASE("terminator split three ways at every pair of positions") {
  const std::string tail = "x\r\n.\r\nQUIT\r\n";
  for (std::size_t i = 0; i <= tail.size(); ++i) {
    for (std::size_t j = i; j <= tail.size(); ++j) {
      Harness h;
      h.feed(kEnvelope);
      h.feed(tail.substr(0, i));
      CHECK(h.session->in_data() == (i < 6));
      h.feed(tail.substr(i, j - i));
      h.feed(tail.substr(j));
      CHECK(h.codes() == Lines{"250", "250", "250", "354", "250", "221"});
      REQUIRE(h.messages.size() == 1);
      CHECK(h.messages[0].body == "x\r\n");
    }
  }
}

TEST_CASE("byte-at-a-time feeding gives the same message") {
  const std::string stream = kEnvelope + "a\r\n..\r\n.b\r\n\r\n.\r\n";
  Harness h;
  for (char c : stream) h.feed(std::string_view(&c, 1));
  REQUIRE(h.messages.size() == 1);
  CHECK(h.messages[0].body == "a\r\n.\r\nb\r\n\r\n");
}

TEST_CASE("empty message and a lone dot line") {
  Harness h;
  h.feed(kEnvelope + ".\r\n");
  REQUIRE(h.messages.size() == 1);
  CHECK(h.messages[0].body.empty());
  CHECK(h.messages[0].chunks == 0);
  CHECK(h.messages[0].committed);
}

TEST_CASE("bare CR, bare LF or NUL anywhere in the data: 550 after the real end, nothing stored") {
  const std::string clean = "Subject: t\r\n\r\nline one\r\nline two\r\n";
  for (const std::string& bad : Lines{"\r", "\n", std::string(1, '\0')}) {
    for (std::size_t pos = 0; pos <= clean.size(); ++pos) {
      CAPTURE(pos);
      std::string body = clean.substr(0, pos) + bad + clean.substr(pos);
      Harness h;
      h.feed(kEnvelope + body + "\r\n.\r\nNOOP\r\n");
      auto r = h.take();
      REQUIRE(r.size() == 6);
      CHECK(r[4] == "550 5.6.0 Message contains bare CR, LF or NUL; not accepted\r\n");
      CHECK(r[5] == "250 2.0.0 Ok\r\n");
      REQUIRE(h.messages.size() == 1);
      CHECK(h.messages[0].aborted);
      CHECK_FALSE(h.messages[0].committed);
      CHECK(h.logged("rejected", "bare_cr_lf_nul"));
    }
  }
}

TEST_CASE("smuggling: fake terminators are body bytes; the message is refused, nothing executed") {
  const std::vector<std::string> fakes{"\n.\n", "\r.\r", "\n.\r\n", "\r\n.\n", "\r.\n", "\n.\r",
                                       "\r.\r\n", "\r\n.\r", std::string("\r\n\0.\r\n", 6),
                                       std::string("\r\n.\0\r\n", 6), "\r\n.\r\r\n", "\r\r\n.\r\r\n"};
  for (const auto& v : fakes) {
    CAPTURE(v);
    Harness h;
    h.feed(kEnvelope + "Testing" + v +
           "MAIL FROM:<smuggler@attacker.test>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\n"
           "X-Test-Id: ID-SMUGGLED\r\n\r\nsmuggled\r\n");
    CHECK(h.session->in_data());
    h.feed("\r\n.\r\n");
    CHECK(h.codes() == Lines{"250", "250", "250", "354", "550"});
    CHECK(h.messages.size() == 1);
    CHECK(h.messages[0].aborted);
  }
}

TEST_CASE("route_size_limit: the route's smaller upstream limit, at MAIL and after the data") {
  SessionConfig cfg = test_config();
  cfg.max_message_size = 100000;
  std::vector<std::string> asked;
  cfg.route_size_limit = [&asked](const std::string& sender) {
    asked.push_back(sender);
    RouteSizeLimit r;
    if (sender == "small@example.org") r = {1000, "tiny"};
    if (sender == "large@example.org") r = {500000, "huge"};   // larger than the listener: no effect
    return r;
  };
  const std::string refused = "552 5.3.4 Message size exceeds the limit of upstream \"tiny\" (1000 bytes)\r\n";
  Harness h(cfg);
  h.feed("EHLO c\r\nMAIL FROM:<small@example.org> SIZE=1001\r\nMAIL FROM:<small@example.org> SIZE=1000\r\n");
  auto r = h.take();
  REQUIRE(r.size() == 3);
  CHECK(r[1] == refused);
  CHECK(r[2] == "250 2.1.0 Ok\r\n");
  CHECK(h.logged("rejected", "message_too_big"));
  CHECK(asked == std::vector<std::string>{"small@example.org", "small@example.org"});

  std::string big;
  while (big.size() < 5000) big += "0123456789012345678901234567890123456789\r\n";
  h.feed("RCPT TO:<b@example.net>\r\nDATA\r\n" + big + ".\r\n");
  r = h.take();
  REQUIRE(r.size() == 3);
  CHECK(r[2] == refused);
  REQUIRE(h.messages.size() == 1);
  CHECK(h.messages[0].aborted);

  // The next transaction's sender has no smaller limit: the listener's.
  h.feed("MAIL FROM:<large@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n" + big + ".\r\n");
  r = h.take();
  REQUIRE(r.size() == 4);
  CHECK(r[3].rfind("250 2.0.0 Ok", 0) == 0);
  REQUIRE(h.messages.size() == 2);
  CHECK(h.messages[1].committed);
}

TEST_CASE("a message over the size limit: 552 after the end, nothing committed") {
  SessionConfig cfg = test_config();
  cfg.max_message_size = 1000;
  std::string big;
  while (big.size() < 5000) big += "0123456789012345678901234567890123456789\r\n";
  for (std::string mail : {"MAIL FROM:<a@example.org>\r\n", "MAIL FROM:<a@example.org> SIZE=500\r\n"}) {
    Harness h(cfg);
    h.feed("EHLO c\r\n" + mail + "RCPT TO:<b@example.net>\r\nDATA\r\n" + big + ".\r\nNOOP\r\n");
    auto r = h.take();
    REQUIRE(r.size() == 6);
    CHECK(r[4] == "552 5.3.4 Message size exceeds fixed maximum message size\r\n");
    CHECK(r[5] == "250 2.0.0 Ok\r\n");
    REQUIRE(h.messages.size() == 1);
    CHECK(h.messages[0].aborted);
    CHECK(h.messages[0].body.size() <= 1000);  // nothing past the limit reaches the store
    CHECK(h.logged("rejected", "message_too_big"));
  }
  // Exactly at the limit is fine.
  Harness ok(cfg);
  std::string exact(998, 'x');
  ok.feed(kEnvelope + exact + "\r\n.\r\n");
  REQUIRE(ok.messages.size() == 1);
  CHECK(ok.messages[0].committed);
  CHECK(ok.messages[0].body.size() == 1000);
}

TEST_CASE("a 5 MiB body in one feed: chunks of at most 64 KiB") {
  SessionConfig cfg = test_config();
  cfg.max_message_size = 10u << 20;
  std::string line(78, 'm');
  line += "\r\n";
  std::string body;
  while (body.size() < (5u << 20)) body += line;
  body += ".stuffed\r\n";
  Harness h(cfg);
  h.feed(kEnvelope + body + ".\r\n");
  REQUIRE(h.messages.size() == 1);
  auto& m = h.messages[0];
  CHECK(m.committed);
  CHECK(m.largest_chunk <= 64u * 1024);
  CHECK(m.chunks >= 80);
  CHECK(m.body.size() == body.size() - 1);
  CHECK(m.body.substr(m.body.size() - 9) == "stuffed\r\n");
  CHECK(m.size == m.prefix.size() + m.body.size());
}

TEST_CASE("Received:, Date:, Message-ID: added only when missing") {
  struct Case {
    std::string headers;
    bool adds_date;
    bool adds_id;
  };
  std::vector<Case> cases{
      {"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <x@y>\r\n\r\nbody\r\n", false, false},
      {"date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMESSAGE-ID: <x@y>\r\n\r\nbody\r\n", false, false},
      {"Subject: s\r\nMessage-Id: <x@y>\r\n\r\nbody\r\n", true, false},
      {"Subject: s\r\nDATE: now\r\n\r\nbody\r\n", false, true},
      {"Subject: s\r\n\r\nDate: body\r\nMessage-ID: <body@y>\r\n", true, true},
      {"Subject: s\r\n X-Fold: Date: folded\r\n\r\n", true, true},
      {"\r\nDate: x\r\n", true, true},
  };
  for (auto& c : cases) {
    CAPTURE(c.headers);
    Harness h;
    h.feed(kEnvelope + c.headers + ".\r\n");
    REQUIRE(h.messages.size() == 1);
    auto& p = h.messages[0].prefix;
    CHECK(p.rfind("Received: from c ([127.0.0.1])\r\n\tby mx.test (outbox) with ESMTP id ID1\r\n"
                  "\tfor <b@example.net>; Tue, 14 Nov 2023 22:13:20 +0000\r\n", 0) == 0);
    CHECK((p.find("\r\nDate: Tue, 14 Nov 2023 22:13:20 +0000\r\n") != std::string::npos) == c.adds_date);
    CHECK((p.find("\r\nMessage-ID: <ID1@mx.test>\r\n") != std::string::npos) == c.adds_id);
    CHECK(h.messages[0].body == c.headers);  // the body is never rewritten
  }
}

TEST_CASE("Received: client and protocol forms") {
  PeerInfo v6 = loopback_peer();
  v6.address = "::1";
  Harness a(test_config(), v6);
  a.feed("HELO old.test\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n.\r\n");
  REQUIRE(a.messages.size() == 1);
  CHECK(a.messages[0].prefix.rfind("Received: from old.test ([IPv6:::1])\r\n\tby mx.test (outbox) with SMTP id ID1\r\n", 0) == 0);

  PeerInfo ux;
  ux.unix_socket = true;
  ux.uid = 33;
  ux.user = "www-data";
  ux.trusted = true;
  Harness b(test_config(), ux);
  b.feed(kEnvelope + ".\r\n");
  REQUIRE(b.messages.size() == 1);
  CHECK(b.messages[0].prefix.rfind("Received: from c (unix socket, uid 33, user www-data)\r\n", 0) == 0);

  SessionConfig tls = test_config();
  tls.tls = ListenerTls::Implicit;
  Harness c(tls);
  c.feed(kEnvelope + ".\r\n");
  REQUIRE(c.messages.size() == 1);
  CHECK(c.messages[0].prefix.find(" with ESMTPS id ID1") != std::string::npos);
}

TEST_CASE("pipelining across messages while a commit is pending") {
  Harness h;
  h.auto_commit = false;
  std::string two = kEnvelope + "first\r\n.\r\nMAIL FROM:<c@example.org>\r\nRCPT TO:<d@example.net>\r\nDATA\r\nsecond\r\n.\r\nQUIT\r\n";
  h.feed(two);
  CHECK(h.codes() == Lines{"250", "250", "250", "354"});
  REQUIRE(h.messages.size() == 1);
  h.commit(true);
  CHECK(h.codes() == Lines{"250", "250", "250", "354"});
  REQUIRE(h.messages.size() == 2);
  CHECK(h.messages[1].body == "second\r\n");
  CHECK(h.messages[1].envelope.sender == "c@example.org");
  h.commit(true);
  CHECK(h.take() == Lines{"250 2.0.0 Ok: queued as ID2\r\n", "221 2.0.0 Bye\r\n"});
}

TEST_CASE("input fed while a commit is pending is held, counted, and run in order after it") {
  Harness h;
  h.auto_commit = false;
  h.feed(kEnvelope + "body\r\n.\r\n");
  REQUIRE(h.session->awaiting_commit());
  CHECK(h.session->held_input() == 0);
  // Later segments, as a client pipelining behind the dot sends them while
  // the daemon keeps reading (the I/O layer bounds it by held_input()).
  h.feed("NOOP\r\nNO");
  h.feed("OP\r\nQUIT\r\n");
  CHECK(h.session->held_input() == 18);
  CHECK(h.codes() == Lines{"250", "250", "250", "354"});
  h.commit(true);
  CHECK(h.session->held_input() == 0);
  CHECK(h.take() == Lines{"250 2.0.0 Ok: queued as ID1\r\n", "250 2.0.0 Ok\r\n", "250 2.0.0 Ok\r\n", "221 2.0.0 Bye\r\n"});
}

TEST_CASE("DATA refused (no recipient): following body lines are commands, as RFC 2920 warns") {
  Harness h;
  h.feed("EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<bad address>\r\nDATA\r\nNOOP\r\n.\r\n");
  CHECK(h.codes() == Lines{"250", "250", "501", "503", "250", "502"});
  CHECK(h.messages.empty());
}
