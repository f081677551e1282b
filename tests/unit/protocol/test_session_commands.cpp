// ServerSession transcripts: greeting, EHLO, each command's reply, sequence
// and syntax errors, addresses, aliases, policy, limits on commands.
#include <doctest/doctest.h>

#include "session_harness.h"

using namespace outbox::protocol;
using outbox::protocol::test::Harness;
using outbox::protocol::test::loopback_peer;
using outbox::protocol::test::test_config;

using Lines = std::vector<std::string>;

TEST_CASE("greeting and EHLO on a plain listener") {
  Harness h;
  h.start();
  CHECK(h.take() == Lines{"220 mx.test ESMTP outbox\r\n"});
  h.feed("EHLO client.test\r\n");
  CHECK(h.take() == Lines{"250-mx.test\r\n250-PIPELINING\r\n250-SIZE 10000\r\n250-8BITMIME\r\n"
                          "250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250 HELP\r\n"});
  h.feed("HELO client.test\r\n");
  CHECK(h.take() == Lines{"250 mx.test\r\n"});
}

TEST_CASE("EHLO advertises STARTTLS and AUTH only where they apply") {
  auto ehlo = [](SessionConfig cfg, PeerInfo peer) {
    Harness h(cfg, peer);
    h.feed("EHLO c\r\n");
    auto r = h.take();
    REQUIRE(r.size() == 1);
    return r[0];
  };
  SessionConfig cfg = test_config();
  cfg.tls = ListenerTls::StartTls;
  cfg.auth = ListenerAuth::Optional;
  std::string plain = ehlo(cfg, loopback_peer());
  CHECK(plain.find("250-STARTTLS\r\n") != std::string::npos);
  CHECK(plain.find("AUTH") == std::string::npos);  // never on plaintext TCP

  cfg.tls = ListenerTls::Implicit;
  std::string implicit = ehlo(cfg, loopback_peer());
  CHECK(implicit.find("STARTTLS") == std::string::npos);
  CHECK(implicit.find("250-AUTH PLAIN LOGIN\r\n") != std::string::npos);

  cfg.tls = ListenerTls::None;
  PeerInfo unix_peer;
  unix_peer.unix_socket = true;
  unix_peer.trusted = true;
  CHECK(ehlo(cfg, unix_peer).find("250-AUTH PLAIN LOGIN\r\n") != std::string::npos);

  cfg.auth = ListenerAuth::None;
  CHECK(ehlo(cfg, unix_peer).find("AUTH") == std::string::npos);

  cfg.max_message_size = 0;
  CHECK(ehlo(cfg, unix_peer).find("250-SIZE\r\n") != std::string::npos);
}

TEST_CASE("happy path, everything pipelined in one feed") {
  Harness h;
  h.start().take();
  h.feed("EHLO client.test\r\nMAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.net>\r\n"
         "RCPT TO:<carol@example.net>\r\nDATA\r\nSubject: hi\r\n\r\nhello\r\n.\r\nQUIT\r\n");
  auto r = h.take();
  REQUIRE(r.size() == 7);
  CHECK(r[0].substr(0, 12) == "250-mx.test\r");
  CHECK(r[1] == "250 2.1.0 Ok\r\n");
  CHECK(r[2] == "250 2.1.5 Ok\r\n");
  CHECK(r[3] == "250 2.1.5 Ok\r\n");
  CHECK(r[4] == "354 End data with <CR><LF>.<CR><LF>\r\n");
  CHECK(r[5] == "250 2.0.0 Ok: queued as ID1\r\n");
  CHECK(r[6] == "221 2.0.0 Bye\r\n");
  CHECK(h.closes == 1);
  CHECK(h.session->closed());
  REQUIRE(h.messages.size() == 1);
  auto& m = h.messages[0];
  CHECK(m.committed);
  CHECK(m.envelope.sender == "alice@example.org");
  CHECK(m.envelope.recipients == Lines{"bob@example.net", "carol@example.net"});
  CHECK(m.envelope.helo == "client.test");
  CHECK(m.body == "Subject: hi\r\n\r\nhello\r\n");
  CHECK(m.prefix ==
        "Received: from client.test ([127.0.0.1])\r\n\tby mx.test (outbox) with ESMTP id ID1; "
        "Tue, 14 Nov 2023 22:13:20 +0000\r\n"
        "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
        "Message-ID: <ID1@mx.test>\r\n");
  CHECK(m.size == m.prefix.size() + m.body.size());
}

TEST_CASE("the 250 waits for the commit; pipelined input waits with it") {
  Harness h;
  h.auto_commit = false;
  h.ehlo();
  h.feed("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\nx\r\n.\r\nNOOP\r\nQUIT\r\n");
  CHECK(h.codes() == Lines{"250", "250", "354"});
  CHECK(h.session->awaiting_commit());
  CHECK_FALSE(h.session->in_data());
  h.feed("NOOP\r\n");  // still held
  CHECK(h.take().empty());
  h.commit(true);
  CHECK(h.take() == Lines{"250 2.0.0 Ok: queued as ID1\r\n", "250 2.0.0 Ok\r\n", "221 2.0.0 Bye\r\n"});
  CHECK(h.closes == 1);
}

TEST_CASE("a failed commit answers 451 and the session goes on") {
  Harness h;
  h.commit_ok = false;
  h.ehlo();
  h.feed("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\nx\r\n.\r\n");
  CHECK(h.take().back() == "451 4.3.0 Error: queue file write error, try again later\r\n");
  h.feed("RCPT TO:<b@example.net>\r\n");  // the transaction is over
  CHECK(h.take() == Lines{"503 5.5.1 Error: need MAIL command\r\n"});
  h.commit_ok = true;
  h.feed("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\ny\r\n.\r\n");
  CHECK(h.take().back() == "250 2.0.0 Ok: queued as ID2\r\n");
}

TEST_CASE("simple commands") {
  Harness h;
  h.ehlo();
  h.feed("NOOP\r\nNOOP anything\r\nRSET\r\nVRFY bob\r\nHELP\r\n");
  CHECK(h.take() == Lines{"250 2.0.0 Ok\r\n", "250 2.0.0 Ok\r\n", "250 2.0.0 Ok\r\n",
                          "252 2.0.0 Cannot VRFY user; try RCPT to attempt delivery\r\n",
                          "214 2.0.0 Commands: HELO EHLO STARTTLS MAIL RCPT DATA RSET NOOP QUIT VRFY HELP\r\n"});
  h.feed("XYZZY\r\nEXPN staff\r\n\r\nRSET now\r\nVRFY\r\n");
  CHECK(h.take() == Lines{"502 5.5.2 Error: command not recognized\r\n",
                          "502 5.5.2 Error: command not recognized\r\n", "500 5.5.2 Error: bad syntax\r\n",
                          "501 5.5.4 Syntax: RSET\r\n", "501 5.5.4 Syntax: VRFY address\r\n"});
  h.feed("QUIT\r\nNOOP\r\n");
  CHECK(h.take() == Lines{"221 2.0.0 Bye\r\n"});
  CHECK(h.actions_after_close == 0);
}

TEST_CASE("commands are case-insensitive; a space after the colon is accepted") {
  Harness h;
  h.feed("ehlo c\r\nmail from: <a@example.org>\r\nrcpt to: <b@example.net>\r\nMaIl FrOm:<x@y.test>\r\n");
  CHECK(h.codes() == Lines{"250", "250", "250", "503"});
  h.feed("data\r\n.\r\n");
  CHECK(h.codes() == Lines{"354", "250"});
}

TEST_CASE("bad sequence") {
  Harness h;
  h.feed("MAIL FROM:<a@example.org>\r\n");
  CHECK(h.take() == Lines{"503 5.5.1 Error: send HELO/EHLO first\r\n"});
  h.ehlo();
  h.feed("RCPT TO:<b@example.net>\r\nDATA\r\n");
  CHECK(h.take() == Lines{"503 5.5.1 Error: need MAIL command\r\n", "503 5.5.1 Error: need MAIL command\r\n"});
  h.feed("MAIL FROM:<a@example.org>\r\nMAIL FROM:<a@example.org>\r\nDATA\r\n");
  CHECK(h.take() == Lines{"250 2.1.0 Ok\r\n", "503 5.5.1 Error: nested MAIL command\r\n",
                          "503 5.5.1 Error: need RCPT command\r\n"});
}

TEST_CASE("EHLO, HELO and RSET reset the transaction") {
  for (std::string reset : {"EHLO again\r\n", "HELO again\r\n", "RSET\r\n"}) {
    Harness h;
    h.ehlo();
    h.feed("MAIL FROM:<a@example.org>\r\n" + reset + "RCPT TO:<b@example.net>\r\n");
    CHECK(h.codes() == Lines{"250", "250", "503"});
  }
}

TEST_CASE("syntax errors in MAIL, RCPT, DATA") {
  SessionConfig cfg = test_config();
  cfg.max_errors = 100;
  Harness h(cfg);
  h.ehlo();
  h.feed("MAIL <a@example.org>\r\nMAIL FROM:<a@@example.org>\r\nMAIL FROM:<a@example.org> RET=HDRS\r\n"
         "MAIL FROM:<a@example.org> SIZE=big\r\nMAIL FROM:<a@example.org> BODY=BINARYMIME\r\n"
         "MAIL FROM:<a@example.org> =x\r\n");
  CHECK(h.take() == Lines{"501 5.5.4 Syntax: MAIL FROM:<address>\r\n", "501 5.1.7 Bad sender address syntax\r\n",
                          "555 5.5.4 Unsupported option: RET\r\n", "501 5.5.4 Bad message size syntax\r\n",
                          "501 5.5.4 Bad BODY keyword syntax\r\n", "501 5.5.4 Error: bad parameter syntax\r\n"});
  h.feed("MAIL FROM:<a@example.org>\r\nRCPT <b@example.net>\r\nRCPT TO:<>\r\nRCPT TO:<b@exa mple.net>\r\n"
         "RCPT TO:<b@example.net> NOTIFY=NEVER\r\nRCPT TO:<b@example.net>\r\nDATA now\r\n");
  CHECK(h.take() == Lines{"250 2.1.0 Ok\r\n", "501 5.5.4 Syntax: RCPT TO:<address>\r\n",
                          "501 5.1.3 Bad recipient address syntax\r\n", "501 5.1.3 Bad recipient address syntax\r\n",
                          "555 5.5.4 Unsupported option: NOTIFY\r\n", "250 2.1.5 Ok\r\n", "501 5.5.4 Syntax: DATA\r\n"});
  h.feed("EHLO\r\nHELO\r\nEHLO a\x01" "b\r\n");
  CHECK(h.take() == Lines{"501 5.5.4 Syntax: EHLO hostname\r\n", "501 5.5.4 Syntax: HELO hostname\r\n",
                          "501 5.5.4 Syntax: EHLO hostname\r\n"});
}

TEST_CASE("addresses the relay could not write between <> are refused at MAIL and RCPT, not bounced later") {
  SessionConfig cfg = test_config();
  cfg.max_errors = 100;
  Harness h(cfg);
  h.ehlo();
  h.feed("MAIL FROM:<\"a>b\"@example.org>\r\nMAIL FROM:<a@example.org>\r\n"
         "RCPT TO:<\"a b>c\"@d.com>\r\nRCPT TO:<\"x<y\"@d.com>\r\nRCPT TO:<\"a b\"@d.com>\r\n");
  CHECK(h.take() == Lines{"553 5.1.7 Bad sender address syntax\r\n", "250 2.1.0 Ok\r\n",
                          "553 5.1.3 Bad recipient address syntax\r\n", "553 5.1.3 Bad recipient address syntax\r\n",
                          "250 2.1.5 Ok\r\n"});
}

TEST_CASE("null sender, qualification, aliases, duplicates") {
  SessionConfig cfg = test_config();
  cfg.aliases = {{"root", "ops@example.com"}, {"Webmaster", "web"}, {"abuse@example.net", "sec@example.com"}};
  Harness h(cfg);
  h.ehlo();
  h.feed("MAIL FROM:<>\r\nRCPT TO:<ROOT>\r\nRCPT TO:<root@example.org>\r\nRCPT TO:<root@other.test>\r\n"
         "RCPT TO:<webmaster@mx.test>\r\nRCPT TO:<abuse@example.net>\r\nRCPT TO:<postmaster>\r\n"
         "RCPT TO:<Bob@Example.NET>\r\nRCPT TO:<Bob@example.net>\r\nRCPT TO:<bob@example.net>\r\nDATA\r\n.\r\n");
  CHECK(h.codes() == Lines{"250", "250", "250", "250", "250", "250", "250", "250", "250", "250", "354", "250"});
  REQUIRE(h.messages.size() == 1);
  auto& e = h.messages[0].envelope;
  CHECK(e.sender.empty());
  CHECK(e.recipients == Lines{"ops@example.com", "root@other.test", "web@example.org", "sec@example.com",
                              "postmaster@example.org", "Bob@Example.NET", "bob@example.net"});

  SessionConfig bare = test_config();
  bare.domain.clear();
  Harness b(bare);
  b.ehlo();
  b.feed("MAIL FROM:<cron>\r\nRCPT TO:<root>\r\nDATA\r\n.\r\n");
  REQUIRE(b.messages.size() == 1);
  CHECK(b.messages[0].envelope.sender == "cron");
  CHECK(b.messages[0].envelope.recipients == Lines{"root"});

  Harness q;
  q.ehlo();
  q.feed("MAIL FROM:<cron> BODY=8BITMIME SIZE=5\r\nRCPT TO:<\"john doe\"@example.net>\r\nDATA\r\n.\r\n");
  REQUIRE(q.messages.size() == 1);
  CHECK(q.messages[0].envelope.sender == "cron@example.org");
  CHECK(q.messages[0].envelope.body_8bit);
  CHECK(q.messages[0].envelope.declared_size == 5u);
  CHECK(q.messages[0].envelope.recipients == Lines{"\"john doe\"@example.net"});
}

TEST_CASE("SIZE= over the limit is refused at MAIL") {
  Harness h;
  h.ehlo();
  h.feed("MAIL FROM:<a@example.org> SIZE=10001\r\nMAIL FROM:<a@example.org> SIZE=10000\r\n");
  CHECK(h.take() == Lines{"552 5.3.4 Message size exceeds fixed maximum message size\r\n", "250 2.1.0 Ok\r\n"});
  CHECK(h.logged("rejected", "message_too_big"));
}

TEST_CASE("SMTPUTF8 and UTF-8 addresses") {
  Harness h;
  h.ehlo();
  h.feed("MAIL FROM:<j\xc3\xb6rg@example.org>\r\n");
  CHECK(h.take() == Lines{"553 5.6.7 Non-ASCII address requires SMTPUTF8\r\n"});
  h.feed("MAIL FROM:<bad\xc3\x28utf8@example.org> SMTPUTF8\r\n");
  CHECK(h.take() == Lines{"501 5.1.7 Bad sender address syntax\r\n"});
  CHECK(h.logged("rejected", "invalid_utf8"));
  h.feed("MAIL FROM:<plain@example.org>\r\nRCPT TO:<m\xc3\xbcller@example.net>\r\nRCPT TO:<x\xff@example.net>\r\nRSET\r\n");
  CHECK(h.take() == Lines{"250 2.1.0 Ok\r\n", "553 5.6.7 Non-ASCII address requires SMTPUTF8\r\n",
                          "501 5.1.3 Bad recipient address syntax\r\n", "250 2.0.0 Ok\r\n"});
  h.feed("MAIL FROM:<j\xc3\xb6rg@example.org> SMTPUTF8\r\nRCPT TO:<m\xc3\xbcller@b\xc3\xbc" "cher.test>\r\nDATA\r\n.\r\n");
  CHECK(h.codes() == Lines{"250", "250", "354", "250"});
  REQUIRE(h.messages.size() == 1);
  CHECK(h.messages[0].envelope.smtputf8);
  CHECK(h.messages[0].envelope.body_8bit);
  CHECK(h.messages[0].prefix.find("with UTF8SMTP id") != std::string::npos);
  CHECK(h.messages[0].prefix.find("\tfor <m\xc3\xbcller@b\xc3\xbc" "cher.test>;") != std::string::npos);
}

TEST_CASE("unauthenticated mail only from trusted peers") {
  Harness untrusted(test_config(), loopback_peer(false));
  untrusted.ehlo();
  untrusted.feed("MAIL FROM:<a@example.org>\r\n");
  CHECK(untrusted.take() == Lines{"530 5.7.0 Authentication required\r\n"});
  CHECK(untrusted.logged("rejected", "authentication_required"));

  SessionConfig required = test_config();
  required.auth = ListenerAuth::Required;
  Harness h(required);
  h.ehlo();
  h.feed("MAIL FROM:<a@example.org>\r\n");
  CHECK(h.take() == Lines{"530 5.7.0 Authentication required\r\n"});
}

TEST_CASE("AUTH: 503 before EHLO, 538 on plaintext TCP, 502 where the listener takes none") {
  SessionConfig cfg = test_config();
  cfg.auth = ListenerAuth::Optional;
  Harness h(cfg);
  h.feed("AUTH PLAIN\r\n");
  CHECK(h.take() == Lines{"503 5.5.1 Error: send HELO/EHLO first\r\n"});
  h.ehlo();
  h.feed("AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n");
  CHECK(h.take() == Lines{"538 5.7.11 Encryption required for requested authentication mechanism\r\n"});
  CHECK(h.checks.empty());  // the password never left the session
  h.feed("MAIL FROM:<a@example.org>\r\nAUTH PLAIN\r\n");
  CHECK(h.take() == Lines{"250 2.1.0 Ok\r\n", "538 5.7.11 Encryption required for requested authentication mechanism\r\n"});

  cfg.tls = ListenerTls::Implicit;
  Harness t(cfg);
  t.ehlo();
  t.feed("MAIL FROM:<a@example.org>\r\nAUTH LOGIN\r\n");
  CHECK(t.take() == Lines{"250 2.1.0 Ok\r\n", "503 5.5.1 Error: MAIL transaction in progress\r\n"});
  Harness none;
  none.ehlo();
  none.feed("AUTH LOGIN\r\n");
  CHECK(none.take() == Lines{"502 5.5.1 AUTH not available\r\n"});
}

TEST_CASE("1000 recipients: exactly max_recipients accepted, then 452, session fine") {
  Harness h;
  h.ehlo();
  std::string in = "MAIL FROM:<a@example.org>\r\n";
  for (int i = 0; i < 1000; ++i) in += "RCPT TO:<r" + std::to_string(i) + "@example.net>\r\n";
  h.feed(in);
  auto r = h.take();
  REQUIRE(r.size() == 1001);
  CHECK(std::count(r.begin(), r.end(), "250 2.1.5 Ok\r\n") == 100);
  CHECK(std::count(r.begin(), r.end(), "452 4.5.3 Too many recipients\r\n") == 900);
  for (std::size_t i = 101; i < r.size(); ++i) CHECK(r[i] == "452 4.5.3 Too many recipients\r\n");
  CHECK_FALSE(h.session->closed());  // 452 is not a client error (RFC 5321 §4.5.3.1.10)
  std::size_t logs = 0;
  for (auto& l : h.logs) logs += l.event == "rejected";
  CHECK(logs == 1);
  CHECK(h.logged("rejected", "too_many_recipients"));
  h.feed("DATA\r\nhi\r\n.\r\n");
  CHECK(h.codes() == Lines{"354", "250"});
  REQUIRE(h.messages.size() == 1);
  CHECK(h.messages[0].envelope.recipients.size() == 100);
  CHECK(h.messages[0].prefix.find("\tfor <") == std::string::npos);
  h.feed("MAIL FROM:<a@example.org>\r\nRCPT TO:<x@example.net>\r\n");
  CHECK(h.codes() == Lines{"250", "250"});
}

TEST_CASE("10,000-byte command line: one 500, session still works") {
  Harness h;
  h.ehlo();
  std::string line = "MAIL FROM:<" + std::string(10000, 'a') + "@client.test>\r\n";
  h.feed(line + "NOOP\r\n");
  CHECK(h.take() == Lines{"500 5.5.2 Line too long\r\n", "250 2.0.0 Ok\r\n"});
  CHECK(h.logged("rejected", "line_too_long"));
  // Byte by byte too.
  for (char c : line) h.feed(std::string_view(&c, 1));
  CHECK(h.take() == Lines{"500 5.5.2 Line too long\r\n"});
  h.feed("MAIL FROM:<a@example.org>\r\n");
  CHECK(h.codes() == Lines{"250"});
}

TEST_CASE("bare CR, bare LF or NUL in a command line: one 500 up to the next CRLF") {
  Harness h;
  h.ehlo();
  h.feed("MAIL FROM:<a@example.org>\nRCPT TO:<c@example.net>\r\n");
  CHECK(h.take() == Lines{"500 5.5.2 Error: command line contains bare CR, LF or NUL\r\n"});
  CHECK(h.logged("rejected", "bare_cr_lf_nul_in_command"));
  h.feed(std::string("MAIL FROM:<nul\0byte@example.org>\r\nNOOP\rNOOP\r\nNOOP\r\n", 51));
  CHECK(h.codes() == Lines{"500", "500", "250"});
  h.feed("MAIL FROM:<a@example.org>\r\n");
  CHECK(h.codes() == Lines{"250"});
}

TEST_CASE("error cap: max_errors client errors, then 421 and close") {
  Harness h;
  h.ehlo();
  std::string in;
  for (int i = 0; i < 15; ++i) in += "BOGUS\r\n";
  h.feed(in);
  auto r = h.take();
  REQUIRE(r.size() == 11);
  for (int i = 0; i < 10; ++i) CHECK(r[static_cast<std::size_t>(i)] == "502 5.5.2 Error: command not recognized\r\n");
  CHECK(r[10] == "421 4.7.0 mx.test Error: too many errors\r\n");
  CHECK(h.closes == 1);
  CHECK(h.logged("disconnect", "too_many_errors"));
  h.feed("NOOP\r\n");
  CHECK(h.take().empty());
  CHECK(h.actions_after_close == 0);
}

TEST_CASE("an HTTP request is logged and closed with 421") {
  Harness h;
  h.start().take();
  h.feed("GET / HTTP/1.1\r\nHost: mx.test\r\n\r\n");
  CHECK(h.take() == Lines{"421 4.7.0 mx.test Error: HTTP requests are not accepted\r\n"});
  CHECK(h.logged("rejected", "http_request"));
  CHECK(h.session->closed());
  Harness p;
  p.ehlo();
  p.feed("POST /submit HTTP/1.0\r\n");
  CHECK(p.codes() == Lines{"421"});
}

TEST_CASE("timeout and shutdown") {
  Harness idle;
  idle.ehlo();
  idle.session->on_timeout();
  idle.collect();
  CHECK(idle.take() == Lines{"421 4.4.2 mx.test Error: timeout exceeded\r\n"});
  CHECK(idle.logged("disconnect", "timeout"));
  CHECK(idle.closes == 1);

  Harness data;
  data.ehlo();
  data.feed("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\npartial");
  CHECK(data.session->in_data());
  data.session->on_timeout();
  data.collect();
  CHECK(data.take().back() == "421 4.4.2 mx.test Error: timeout exceeded\r\n");
  REQUIRE(data.messages.size() == 1);
  CHECK(data.messages[0].aborted);

  Harness down;
  down.ehlo();
  down.session->on_shutdown();
  down.collect();
  CHECK(down.take() == Lines{"421 4.3.2 Service shutting down\r\n"});
  CHECK(down.closes == 1);

  Harness forced;  // the daemon forces shutdown mid-DATA: the message goes
  forced.ehlo();
  forced.feed("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\nhalf");
  forced.session->on_shutdown();
  forced.collect();
  CHECK(forced.take().back() == "421 4.3.2 Service shutting down\r\n");
  REQUIRE(forced.messages.size() == 1);
  CHECK(forced.messages[0].aborted);
  CHECK_FALSE(forced.session->in_data());

  Harness busy;
  busy.auto_commit = false;
  busy.ehlo();
  busy.feed("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\nx\r\n.\r\nNOOP\r\n");
  busy.take();
  busy.session->on_shutdown();
  busy.collect();
  CHECK(busy.take().empty());
  CHECK(busy.closes == 0);
  busy.commit(true);
  CHECK(busy.take() == Lines{"250 2.0.0 Ok: queued as ID1\r\n", "421 4.3.2 Service shutting down\r\n"});
  CHECK(busy.closes == 1);

  Harness slow;
  slow.auto_commit = false;
  slow.ehlo();
  slow.feed("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\nx\r\n.\r\n");
  slow.take();
  slow.session->on_timeout();
  slow.collect();
  CHECK(slow.take().empty());
  slow.commit(false);
  CHECK(slow.take() == Lines{"451 4.3.0 Error: queue file write error, try again later\r\n",
                             "421 4.4.2 mx.test Error: timeout exceeded\r\n"});
}
