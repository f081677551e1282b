// SMTP AUTH in the session (RFC 4954, RFC 4616 PLAIN, LOGIN): exchanges,
// cancel, bad base64, line caps, once per session, not in a transaction,
// failure cap, input held during the check, secrets never logged; sender
// policy, pre-greet, slow data.
#include <doctest/doctest.h>

#include "protocol/base64.h"
#include "unit/protocol/session_harness.h"

using namespace outbox::protocol;
using outbox::protocol::test::Harness;
using outbox::protocol::test::loopback_peer;
using outbox::protocol::test::test_config;

using Lines = std::vector<std::string>;

namespace {

const std::string kAuthOk = "235 2.7.0 Authentication successful\r\n";
const std::string kBad = "535 5.7.8 Authentication credentials invalid\r\n";

SessionConfig tls_config(ListenerAuth auth = ListenerAuth::Required) {
  SessionConfig c = test_config();
  c.tls = ListenerTls::Implicit;
  c.auth = auth;
  return c;
}

std::string plain(std::string_view authzid, std::string_view user, std::string_view pw) {
  std::string m(authzid);
  m += '\0';
  m += user;
  m += '\0';
  m += pw;
  return base64_encode(m);
}

Harness authed_harness(SessionConfig cfg = tls_config(), PeerInfo peer = loopback_peer(false)) {
  Harness h(std::move(cfg), std::move(peer));
  h.users = {{"alice", "s3cret"}};
  h.ehlo();
  return h;
}

bool any_log_holds(const Harness& h, std::string_view secret) {
  for (const auto& l : h.logs) {
    if (l.event.find(secret) != std::string::npos) return true;
    for (const auto& [k, v] : l.fields)
      if (k.find(secret) != std::string::npos || v.find(secret) != std::string::npos) return true;
  }
  return false;
}

std::string field(const LogEvent& l, std::string_view key) {
  for (const auto& [k, v] : l.fields)
    if (k == key) return v;
  return "<none>";
}

const LogEvent* find_log(const Harness& h, std::string_view event) {
  for (const auto& l : h.logs)
    if (l.event == event) return &l;
  return nullptr;
}

}  // namespace

TEST_CASE("base64: RFC 4648 vectors, strict alphabet, padding optional") {
  CHECK(base64_encode("") == "");
  CHECK(base64_encode("f") == "Zg==");
  CHECK(base64_encode("fo") == "Zm8=");
  CHECK(base64_encode("foobar") == "Zm9vYmFy");
  CHECK(base64_decode("Zm9vYmFy") == std::optional<std::string>("foobar"));
  CHECK(base64_decode("Zg==") == std::optional<std::string>("f"));
  CHECK(base64_decode("Zg") == std::optional<std::string>("f"));
  CHECK(base64_decode("") == std::optional<std::string>(""));
  for (const char* bad : {"Z", "Zg=", "Zh==", "Zm9v YmFy", "Zm9v\tYmFy", "Zm-v", "Zm_v", "Z===", "=Zg=", "Zg==Zg==",
                          "Zm9vYmFy=", "\x80\x81"}) {
    CAPTURE(bad);
    CHECK_FALSE(base64_decode(bad));
  }
}

TEST_CASE("AUTH PLAIN with an initial response, then mail carries the user and ESMTPSA") {
  Harness h = authed_harness();
  h.feed("AUTH PLAIN " + plain("", "alice", "s3cret") + "\r\n");
  CHECK(h.take() == Lines{kAuthOk});
  REQUIRE(h.checks.size() == 1);
  CHECK(h.checks[0].user == "alice");
  CHECK(h.checks[0].password == "s3cret");
  const LogEvent* l = find_log(h, "auth");
  REQUIRE(l);
  CHECK(field(*l, "user") == "alice");
  CHECK(field(*l, "mechanism") == "PLAIN");
  h.feed("MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.net>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\n");
  CHECK(h.codes() == Lines{"250", "250", "354", "250"});
  REQUIRE(h.messages.size() == 1);
  CHECK(h.messages[0].envelope.auth_user == "alice");
  CHECK(h.messages[0].prefix.find(" with ESMTPSA id ID1") != std::string::npos);
  CHECK_FALSE(any_log_holds(h, "s3cret"));
}

TEST_CASE("AUTH PLAIN without initial response: empty 334 challenge") {
  Harness h = authed_harness();
  h.feed("AUTH PLAIN\r\n");
  CHECK(h.take() == Lines{"334 \r\n"});
  h.feed(plain("alice", "alice", "s3cret") + "\r\n");  // authzid equal to authcid is fine
  CHECK(h.take() == Lines{kAuthOk});
}

TEST_CASE("AUTH LOGIN: Username:, Password:, with or without initial response") {
  Harness h = authed_harness();
  h.feed("auth login\r\n");
  CHECK(h.take() == Lines{"334 VXNlcm5hbWU6\r\n"});
  h.feed(base64_encode("alice") + "\r\n");
  CHECK(h.take() == Lines{"334 UGFzc3dvcmQ6\r\n"});
  h.feed(base64_encode("s3cret") + "\r\n");
  CHECK(h.take() == Lines{kAuthOk});
  CHECK(field(*find_log(h, "auth"), "mechanism") == "LOGIN");

  Harness i = authed_harness();
  i.feed("AUTH LOGIN " + base64_encode("alice") + "\r\n");
  CHECK(i.take() == Lines{"334 UGFzc3dvcmQ6\r\n"});
  i.feed(base64_encode("wrong") + "\r\n");
  CHECK(i.take() == Lines{kBad});

  // The whole exchange pipelined in one segment works in order.
  Harness p = authed_harness();
  p.feed("AUTH LOGIN\r\n" + base64_encode("alice") + "\r\n" + base64_encode("s3cret") + "\r\nMAIL FROM:<a@example.org>\r\n");
  CHECK(p.take() == Lines{"334 VXNlcm5hbWU6\r\n", "334 UGFzc3dvcmQ6\r\n", kAuthOk, "250 2.1.0 Ok\r\n"});
}

TEST_CASE("wrong credentials: 535, auth_failed logged with user and mechanism, never the password") {
  Harness h = authed_harness();
  h.feed("AUTH PLAIN " + plain("", "alice", "hunter2") + "\r\n");
  CHECK(h.take() == Lines{kBad});
  const LogEvent* l = find_log(h, "auth_failed");
  REQUIRE(l);
  CHECK(field(*l, "user") == "alice");
  CHECK(field(*l, "mechanism") == "PLAIN");
  h.feed("AUTH PLAIN " + plain("", "mallory", "hunter2") + "\r\n");
  CHECK(h.take() == Lines{kBad});
  CHECK_FALSE(any_log_holds(h, "hunter2"));
  // Still not authenticated.
  h.feed("MAIL FROM:<a@example.org>\r\n");
  CHECK(h.take() == Lines{"530 5.7.0 Authentication required\r\n"});
}

TEST_CASE("malformed PLAIN messages and foreign authzids fail without a check") {
  SessionConfig cfg = tls_config();
  cfg.max_auth_failures = 0;
  Harness g(cfg, loopback_peer(false));
  g.users = {{"alice", "s3cret"}};
  g.ehlo();
  for (std::string msg : {std::string("alice"), std::string("\0alice", 6), std::string("a\0b\0c\0d", 7),
                          std::string("\0\0s3cret", 8), std::string("bob\0alice\0s3cret", 16),
                          std::string("\0al\x01ice\0s3cret", 14), std::string("\0al\xffice\0s3cret", 14),
                          std::string("\0", 1) + std::string(300, 'u') + std::string("\0s3cret", 7)}) {
    g.feed("AUTH PLAIN " + base64_encode(msg) + "\r\n");
    CHECK(g.take() == Lines{kBad});
  }
  CHECK(g.checks.empty());
  // "=" is the empty initial response (RFC 4954 §4): an empty PLAIN message.
  g.feed("AUTH PLAIN =\r\n");
  CHECK(g.take() == Lines{kBad});
  CHECK(g.checks.empty());
}

TEST_CASE("'*' cancels with 501 5.7.0 at every step; it is not an authentication failure") {
  SessionConfig cfg = tls_config();
  cfg.max_errors = 0;
  Harness h = authed_harness(cfg);
  for (int i = 0; i < 4; ++i) {
    h.feed("AUTH PLAIN\r\n*\r\n");
    CHECK(h.take() == Lines{"334 \r\n", "501 5.7.0 Authentication aborted\r\n"});
    h.feed("AUTH LOGIN\r\n*\r\nAUTH LOGIN\r\n" + base64_encode("alice") + "\r\n*\r\n");
    CHECK(h.codes() == Lines{"334", "501", "334", "334", "501"});
  }
  CHECK(h.checks.empty());
  CHECK(h.closes == 0);
  h.feed("AUTH LOGIN " + base64_encode("alice") + "\r\n" + base64_encode("s3cret") + "\r\n");
  CHECK(h.codes() == Lines{"334", "235"});
}

TEST_CASE("bad base64: 501 5.5.2, initial or continuation") {
  Harness h = authed_harness();
  h.feed("AUTH PLAIN AGFsaWNl!AHNlY3JldA==\r\n");
  CHECK(h.take() == Lines{"501 5.5.2 Cannot decode response\r\n"});
  h.feed("AUTH LOGIN\r\nnot base64\r\n");
  CHECK(h.take() == Lines{"334 VXNlcm5hbWU6\r\n", "501 5.5.2 Cannot decode response\r\n"});
  // Back in command mode afterwards.
  h.feed("NOOP\r\n");
  CHECK(h.take() == Lines{"250 2.0.0 Ok\r\n"});
}

TEST_CASE("AUTH syntax and mechanisms") {
  Harness h = authed_harness();
  h.feed("AUTH\r\nAUTH PLAIN a b\r\nAUTH CRAM-MD5\r\nAUTH XOAUTH2 abc\r\n");
  CHECK(h.take() == Lines{"501 5.5.4 Syntax: AUTH mechanism [initial-response]\r\n",
                          "501 5.5.4 Syntax: AUTH mechanism [initial-response]\r\n",
                          "504 5.5.4 Unrecognized authentication type\r\n",
                          "504 5.5.4 Unrecognized authentication type\r\n"});
}

TEST_CASE("AUTH twice and AUTH in a transaction: 503 5.5.1") {
  Harness h = authed_harness();
  h.feed("AUTH PLAIN " + plain("", "alice", "s3cret") + "\r\n");
  CHECK(h.take() == Lines{kAuthOk});
  h.feed("AUTH PLAIN " + plain("", "alice", "s3cret") + "\r\n");
  CHECK(h.take() == Lines{"503 5.5.1 Error: already authenticated\r\n"});

  SessionConfig cfg = tls_config(ListenerAuth::Optional);
  Harness t(cfg, loopback_peer(true));
  t.users = {{"alice", "s3cret"}};
  t.ehlo();
  t.feed("MAIL FROM:<a@example.org>\r\nAUTH PLAIN " + plain("", "alice", "s3cret") + "\r\n");
  CHECK(t.take() == Lines{"250 2.1.0 Ok\r\n", "503 5.5.1 Error: MAIL transaction in progress\r\n"});
  CHECK(t.checks.empty());
}

TEST_CASE("AUTH lines: 12,288 octets taken, longer gets 500 5.5.6; other commands stay at 512") {
  Harness h = authed_harness();
  // A PLAIN initial response longer than 512 octets (smtplib sends those).
  std::string longpw(600, 'p');
  h.users["alice"] = longpw;
  std::string line = "AUTH PLAIN " + plain("", "alice", longpw);
  REQUIRE(line.size() + 2 > 512);
  h.feed(line + "\r\n");
  CHECK(h.take() == Lines{kAuthOk});

  Harness g = authed_harness();
  g.feed("AUTH LOGIN\r\n");
  g.take();
  std::string exact(12288 - 2, 'A');  // valid base64 of 9,214 zero bytes, exactly at the cap
  g.feed(exact + "\r\n");
  CHECK(g.take() == Lines{"334 UGFzc3dvcmQ6\r\n"});
  g.feed(std::string(12288 - 1, 'A') + "\r\n");
  CHECK(g.take() == Lines{"500 5.5.6 Authentication exchange line is too long\r\n"});
  g.feed("NOOP " + std::string(600, 'x') + "\r\n");
  CHECK(g.take() == Lines{"500 5.5.2 Line too long\r\n"});
  g.feed("AUTH PLAIN " + std::string(12288, 'A') + "\r\n");
  CHECK(g.take() == Lines{"500 5.5.2 Line too long\r\n"});
  g.feed("NOOP\r\n");
  CHECK(g.take() == Lines{"250 2.0.0 Ok\r\n"});
}

TEST_CASE("a bare LF inside an AUTH response ends the exchange with one 500") {
  Harness h = authed_harness();
  h.feed("AUTH PLAIN\r\nAGFs\naWNl\r\nNOOP\r\n");
  CHECK(h.take() == Lines{"334 \r\n", "500 5.5.2 Error: command line contains bare CR, LF or NUL\r\n",
                          "250 2.0.0 Ok\r\n"});
  CHECK(h.checks.empty());
}

TEST_CASE("max_auth_failures: the third 535 is followed by 421 4.7.0 and close") {
  Harness h = authed_harness();
  for (int i = 0; i < 2; ++i) {
    h.feed("AUTH PLAIN " + plain("", "alice", "guess" + std::to_string(i)) + "\r\n");
    CHECK(h.take() == Lines{kBad});
  }
  h.feed("AUTH PLAIN " + plain("", "alice", "guess2") + "\r\nNOOP\r\n");
  CHECK(h.take() == Lines{kBad, "421 4.7.0 mx.test Error: too many authentication failures\r\n"});
  CHECK(h.closes == 1);
  CHECK(h.session->closed());
  CHECK(h.logged("disconnect", "too_many_auth_failures"));
  // Failures that never reach a check count too.
  Harness g = authed_harness();
  g.feed("AUTH PLAIN " + base64_encode("junk") + "\r\nAUTH PLAIN =\r\nAUTH LOGIN =\r\n=\r\n");
  CHECK(g.codes() == Lines{"535", "535", "334", "535", "421"});
  CHECK(g.checks.empty());
}

TEST_CASE("535s count towards max_errors as well") {
  SessionConfig cfg = tls_config();
  cfg.max_auth_failures = 0;
  cfg.max_errors = 2;
  Harness h = authed_harness(cfg);
  h.feed("AUTH PLAIN " + plain("", "alice", "x") + "\r\nAUTH PLAIN " + plain("", "alice", "y") + "\r\n");
  CHECK(h.take() == Lines{kBad, kBad, "421 4.7.0 mx.test Error: too many errors\r\n"});
}

TEST_CASE("no input is processed while the credential check is pending") {
  Harness h = authed_harness();
  h.auto_auth = false;
  h.feed("AUTH PLAIN " + plain("", "alice", "s3cret") + "\r\nMAIL FROM:<a@example.org>\r\n");
  CHECK(h.take().empty());
  CHECK(h.session->awaiting_auth());
  h.feed("RCPT TO:<b@example.net>\r\n");
  CHECK(h.take().empty());
  h.session->on_commit_result(true);  // a stray result for something else changes nothing
  CHECK(h.take().empty());
  h.auth_result(true);
  CHECK(h.take() == Lines{kAuthOk, "250 2.1.0 Ok\r\n", "250 2.1.5 Ok\r\n"});
  CHECK_FALSE(h.session->awaiting_auth());
  h.auth_result(false);  // late or duplicate: ignored
  CHECK(h.take().empty());
}

TEST_CASE("a timeout during the check waits for its answer; shutdown does not") {
  Harness h = authed_harness();
  h.auto_auth = false;
  h.feed("AUTH PLAIN " + plain("", "alice", "bad") + "\r\n");
  h.session->on_timeout();
  h.collect();
  CHECK(h.take().empty());
  h.auth_result(false);
  CHECK(h.take() == Lines{kBad, "421 4.4.2 mx.test Error: timeout exceeded\r\n"});
  CHECK(h.closes == 1);

  Harness s = authed_harness();
  s.auto_auth = false;
  s.feed("AUTH PLAIN " + plain("", "alice", "s3cret") + "\r\n");
  s.session->on_shutdown();
  s.collect();
  CHECK(s.take() == Lines{"421 4.3.2 Service shutting down\r\n"});
  s.auth_result(true);
  CHECK(s.take().empty());
}

TEST_CASE("AUTH on a Unix socket needs no TLS; required listeners want it before MAIL") {
  SessionConfig cfg = test_config();
  cfg.auth = ListenerAuth::Required;
  PeerInfo unix_peer;
  unix_peer.unix_socket = true;
  unix_peer.trusted = true;
  Harness h(cfg, unix_peer);
  h.users = {{"alice", "s3cret"}};
  h.ehlo();
  h.feed("MAIL FROM:<a@example.org>\r\n");
  CHECK(h.take() == Lines{"530 5.7.0 Authentication required\r\n"});
  h.feed("AUTH PLAIN " + plain("", "alice", "s3cret") + "\r\nMAIL FROM:<a@example.org>\r\n");
  CHECK(h.take() == Lines{kAuthOk, "250 2.1.0 Ok\r\n"});
}

TEST_CASE("authentication survives EHLO and RSET but not STARTTLS") {
  SessionConfig cfg = test_config();
  cfg.auth = ListenerAuth::Optional;
  cfg.tls = ListenerTls::StartTls;
  PeerInfo unix_peer;
  unix_peer.unix_socket = true;
  unix_peer.trusted = false;
  Harness h(cfg, unix_peer);
  h.users = {{"alice", "s3cret"}};
  h.ehlo();
  h.feed("AUTH PLAIN " + plain("", "alice", "s3cret") + "\r\nRSET\r\nEHLO again\r\nMAIL FROM:<a@example.org>\r\nRSET\r\n");
  CHECK(h.codes() == Lines{"235", "250", "250", "250", "250"});
  h.feed("STARTTLS\r\n");
  CHECK(h.codes() == Lines{"220"});
  h.session->on_tls_established();
  h.feed("EHLO c\r\nMAIL FROM:<a@example.org>\r\n");
  CHECK(h.codes() == Lines{"250", "530"});
}

TEST_CASE("sender policy: asked at MAIL with the stored sender and the user; its refusal is sent and logged") {
  std::vector<std::pair<std::string, std::string>> asked;
  SessionConfig cfg = tls_config();
  cfg.sender_policy = [&asked](const std::string& sender, const std::string& user) -> std::optional<PolicyRejection> {
    asked.emplace_back(sender, user);
    if (sender == "alice@example.org" || sender.empty()) return std::nullopt;
    return PolicyRejection{550, "5.7.1 Sender address <" + sender + "> not owned by user " + user, "sender_not_owned"};
  };
  Harness h = authed_harness(cfg);
  h.feed("AUTH PLAIN " + plain("", "alice", "s3cret") + "\r\n");
  h.take();
  h.feed("MAIL FROM:<ceo@Example.org>\r\nMAIL FROM:<alice>\r\nRSET\r\nMAIL FROM:<>\r\n");
  CHECK(h.take() == Lines{"550 5.7.1 Sender address <ceo@Example.org> not owned by user alice\r\n",
                          "250 2.1.0 Ok\r\n", "250 2.0.0 Ok\r\n", "250 2.1.0 Ok\r\n"});
  REQUIRE(asked.size() == 3);
  CHECK(asked[0] == std::pair<std::string, std::string>{"ceo@Example.org", "alice"});
  CHECK(asked[1] == std::pair<std::string, std::string>{"alice@example.org", "alice"});  // qualified first
  CHECK(asked[2] == std::pair<std::string, std::string>{"", "alice"});
  const LogEvent* l = find_log(h, "rejected");
  REQUIRE(l);
  CHECK(field(*l, "reason") == "sender_not_owned");
  CHECK(field(*l, "from") == "ceo@Example.org");
  CHECK(field(*l, "user") == "alice");
  // Not asked before the authentication check: 530 comes first.
  Harness u(cfg, loopback_peer(false));
  u.ehlo();
  asked.clear();
  u.feed("MAIL FROM:<ceo@example.org>\r\n");
  CHECK(u.take() == Lines{"530 5.7.0 Authentication required\r\n"});
  CHECK(asked.empty());
}

TEST_CASE("sender policy for an unauthenticated local user gets an empty user") {
  SessionConfig cfg = test_config();
  std::string seen = "unset";
  cfg.sender_policy = [&seen](const std::string&, const std::string& user) -> std::optional<PolicyRejection> {
    seen = user;
    return PolicyRejection{550, "5.7.1 Local user www-data may not submit mail", "local_user_not_allowed"};
  };
  PeerInfo p;
  p.unix_socket = true;
  p.trusted = true;
  p.uid = 33;
  p.user = "www-data";
  Harness h(cfg, p);
  h.ehlo();
  h.feed("MAIL FROM:<x@example.org>\r\n");
  CHECK(h.take() == Lines{"550 5.7.1 Local user www-data may not submit mail\r\n"});
  CHECK(seen.empty());
  CHECK(field(*find_log(h, "rejected"), "user") == "www-data");
}

TEST_CASE("pre-greet traffic: untrusted peers get 554 5.5.1 and are closed, trusted ones the 220") {
  Harness u(test_config(), loopback_peer(false));
  u.session->start(true);
  u.collect();
  CHECK(u.take() == Lines{"554 5.5.1 Error: SMTP protocol synchronization\r\n"});
  CHECK(u.closes == 1);
  CHECK(u.logged("rejected", "pregreet"));
  u.feed("EHLO x\r\n");
  CHECK(u.take().empty());

  Harness t(test_config(), loopback_peer(true));
  t.session->start(true);
  t.collect();
  CHECK(t.take() == Lines{"220 mx.test ESMTP outbox\r\n"});
  Harness n(test_config(), loopback_peer(false));
  n.session->start(false);
  n.collect();
  CHECK(n.take() == Lines{"220 mx.test ESMTP outbox\r\n"});
}

TEST_CASE("slow data: 421 4.4.2, the message aborted, only during DATA") {
  Harness h;
  h.ehlo();
  h.session->on_slow_data(5, 20);
  h.collect();
  CHECK(h.take().empty());
  h.feed("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\nSubject: slow\r\n");
  h.take();
  h.session->on_slow_data(17, 12);
  h.collect();
  CHECK(h.take() == Lines{"421 4.4.2 mx.test Error: data rate too low\r\n"});
  REQUIRE(h.messages.size() == 1);
  CHECK(h.messages[0].aborted);
  CHECK_FALSE(h.messages[0].committed);
  CHECK(h.closes == 1);
  const LogEvent* l = find_log(h, "disconnect");
  REQUIRE(l);
  CHECK(field(*l, "reason") == "slow_data");
  CHECK(field(*l, "bytes") == "17");
  CHECK(field(*l, "seconds") == "12");
}
