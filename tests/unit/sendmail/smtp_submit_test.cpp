// The SMTP transaction against a scripted server on a socketpair: what is
// sent, and the sysexits code for each kind of refusal.
#include <doctest/doctest.h>
#include <sys/socket.h>
#include <sysexits.h>
#include <unistd.h>

#include <functional>
#include <map>
#include <thread>

#include "tools/common/smtp_submit.h"

using namespace outbox::sendmail;
using V = std::vector<std::string>;

namespace {

// Answers each command by its first word (or the whole line when it is in
// `replies`), and collects what the client sent.
class FakeServer {
 public:
  std::string greeting = "220 test ESMTP\r\n";
  std::string ehlo = "250-test\r\n250-PIPELINING\r\n250-SIZE 1000000\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 ENHANCEDSTATUSCODES\r\n";
  std::map<std::string, std::string> replies;   // "MAIL", "RCPT TO:<x>", "DATA", "." ...
  std::string close_after;                      // drop the connection after reading this command
  bool silent = false;                          // never answer anything

  V commands;
  std::string data;

  SubmitResult run(const Submission& s, Timeouts t = {}) {
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    std::thread server([this, fd = sv[1]] { serve(fd); ::close(fd); });
    SmtpChannel channel(sv[0]);
    SubmitResult r = submit(channel, s, t);
    ::close(sv[0]);
    server.join();
    return r;
  }

 private:
  void put(int fd, const std::string& s) { (void)!::write(fd, s.data(), s.size()); }

  bool get_line(int fd, std::string& buf, std::string& line) {
    for (;;) {
      auto p = buf.find("\r\n");
      if (p != std::string::npos) {
        line = buf.substr(0, p);
        buf.erase(0, p + 2);
        return true;
      }
      char c[4096];
      ssize_t n = ::read(fd, c, sizeof c);
      if (n <= 0) return false;
      buf.append(c, static_cast<std::size_t>(n));
    }
  }

  std::string reply_for(const std::string& cmd) {
    if (auto it = replies.find(cmd); it != replies.end()) return it->second;
    std::string verb = cmd.substr(0, cmd.find_first_of(" :"));
    if (auto it = replies.find(verb); it != replies.end()) return it->second;
    if (verb == "EHLO") return ehlo;
    if (verb == "DATA") return "354 go ahead\r\n";
    if (verb == ".") return "250 2.0.0 Ok: queued as 0AbCdEfGhIjKlM\r\n";
    if (verb == "QUIT") return "221 2.0.0 bye\r\n";
    return "250 2.1.0 Ok\r\n";
  }

  void serve(int fd) {
    if (silent) {
      char c[64];
      while (::read(fd, c, sizeof c) > 0) {}
      return;
    }
    put(fd, greeting);
    if (greeting[0] != '2') {
      std::string buf, line;
      if (get_line(fd, buf, line)) commands.push_back(line);
      put(fd, "221 bye\r\n");
      return;
    }
    std::string buf, line;
    bool in_data = false;
    while (get_line(fd, buf, line)) {
      if (in_data) {
        if (line != ".") {
          data += line + "\r\n";
          continue;
        }
        in_data = false;
      }
      commands.push_back(line);
      if (line == close_after) return;
      std::string r = reply_for(line);
      put(fd, r);
      if (line == "DATA" && r[0] == '3') in_data = true;
      if (line == "QUIT") return;
    }
  }
};

Submission sample() {
  Submission s;
  s.helo = "host.example.com";
  s.sender = "me@example.com";
  s.recipients = {"a@example.org", "b@example.org"};
  s.data = "Subject: hi\r\n\r\n..dot\r\n";
  return s;
}

}  // namespace

namespace {
// A reply as the wire carries it, through protocol::ReplyParser.
Reply parsed(const std::string& wire) {
  outbox::protocol::ReplyParser p;
  p.feed(wire);
  Reply r;
  REQUIRE(p.next(r) == outbox::protocol::ReplyParser::Result::Reply);
  return r;
}
}  // namespace

TEST_CASE("a message is submitted: EHLO, MAIL, RCPT each, DATA, QUIT") {
  FakeServer f;
  SubmitResult r = f.run(sample());
  CHECK(r.exit_code == 0);
  CHECK(r.errors.empty());
  CHECK(r.queue_id == "0AbCdEfGhIjKlM");
  CHECK(f.commands == V{"EHLO host.example.com", "MAIL FROM:<me@example.com> SIZE=22", "RCPT TO:<a@example.org>",
                        "RCPT TO:<b@example.org>", "DATA", ".", "QUIT"});
  CHECK(f.data == "Subject: hi\r\n\r\n..dot\r\n");   // sent as given: already dot-stuffed
}

TEST_CASE("null sender, 8BITMIME and SMTPUTF8 when offered") {
  FakeServer f;
  Submission s = sample();
  s.sender = "";
  s.body_8bit = true;
  s.smtputf8 = true;
  CHECK(f.run(s).exit_code == 0);
  CHECK(f.commands[1] == "MAIL FROM:<> SIZE=22 BODY=8BITMIME SMTPUTF8");

  FakeServer plain;
  plain.ehlo = "250 test\r\n";
  CHECK(plain.run(s).exit_code == 0);
  CHECK(plain.commands[1] == "MAIL FROM:<>");
}

TEST_CASE("a refused recipient: 67, every refusal reported, no DATA") {
  FakeServer f;
  f.replies["RCPT TO:<a@example.org>"] = "550 5.1.1 <a@example.org>: no such user\r\n";
  SubmitResult r = f.run(sample());
  CHECK(r.exit_code == EX_NOUSER);
  CHECK(r.errors == V{"recipient <a@example.org> refused: 550 5.1.1 <a@example.org>: no such user",
                      "message not sent"});
  CHECK(f.commands == V{"EHLO host.example.com", "MAIL FROM:<me@example.com> SIZE=22", "RCPT TO:<a@example.org>",
                        "RCPT TO:<b@example.org>", "QUIT"});
}

TEST_CASE("a deferred recipient: 75; a permanent refusal wins over a temporary one") {
  FakeServer f;
  f.replies["RCPT TO:<b@example.org>"] = "452 4.5.3 Too many recipients\r\n";
  SubmitResult r = f.run(sample());
  CHECK(r.exit_code == EX_TEMPFAIL);
  CHECK(r.errors[0] == "recipient <b@example.org> deferred: 452 4.5.3 Too many recipients");

  FakeServer g;
  g.replies["RCPT TO:<a@example.org>"] = "451 4.3.0 later\r\n";
  g.replies["RCPT TO:<b@example.org>"] = "550 5.1.1 unknown\r\n";
  CHECK(g.run(sample()).exit_code == EX_NOUSER);
}

TEST_CASE("policy refusals: 77") {
  FakeServer mail;
  mail.replies["MAIL"] = "550 5.7.1 <me@example.com>: not allowed to send as this address\r\n";
  SubmitResult r = mail.run(sample());
  CHECK(r.exit_code == EX_NOPERM);
  CHECK(r.errors[0] == "sender <me@example.com> refused: 550 5.7.1 <me@example.com>: not allowed to send as this address");
  CHECK(std::find(mail.commands.begin(), mail.commands.end(), "DATA") == mail.commands.end());

  FakeServer auth;
  auth.replies["MAIL"] = "530 5.7.0 Authentication required\r\n";
  CHECK(auth.run(sample()).exit_code == EX_NOPERM);

  FakeServer rcpt;
  rcpt.replies["RCPT"] = "550 5.7.1 relaying denied\r\n";
  CHECK(rcpt.run(sample()).exit_code == EX_NOPERM);
}

TEST_CASE("content refusals: 65") {
  FakeServer big;
  big.replies["MAIL"] = "552 5.3.4 Message size exceeds fixed limit\r\n";
  CHECK(big.run(sample()).exit_code == EX_DATAERR);

  FakeServer bad;
  bad.replies["."] = "550 5.6.0 Bare CR or LF in message\r\n";
  SubmitResult r = bad.run(sample());
  CHECK(r.exit_code == EX_DATAERR);
  CHECK(r.errors == V{"message refused: 550 5.6.0 Bare CR or LF in message", "message not sent"});
}

TEST_CASE("temporary failures: 75") {
  FakeServer eod;
  eod.replies["."] = "451 4.3.0 Spool write failed\r\n";
  CHECK(eod.run(sample()).exit_code == EX_TEMPFAIL);

  FakeServer busy;
  busy.greeting = "421 4.7.0 Too many connections, try again later\r\n";
  SubmitResult r = busy.run(sample());
  CHECK(r.exit_code == EX_TEMPFAIL);
  CHECK(r.errors[0] == "outboxd is not accepting mail now: 421 4.7.0 Too many connections, try again later");

  FakeServer down;
  down.greeting = "554 5.3.2 No service\r\n";
  CHECK(down.run(sample()).exit_code == EX_UNAVAILABLE);
}

TEST_CASE("a lost connection is a temporary failure") {
  FakeServer early;
  early.close_after = "MAIL FROM:<me@example.com> SIZE=22";
  SubmitResult r = early.run(sample());
  CHECK(r.exit_code == EX_TEMPFAIL);
  CHECK(r.errors == V{"connection to outboxd lost at MAIL FROM (connection closed by outboxd)", "message not sent"});
  CHECK_FALSE(r.maybe_queued);

  FakeServer late;
  late.close_after = ".";
  SubmitResult l = late.run(sample());
  CHECK(l.exit_code == EX_TEMPFAIL);
  CHECK(l.maybe_queued);
  CHECK(l.errors == V{"connection lost waiting for the reply to the message (connection closed by outboxd); it may "
                      "or may not have been queued"});
}

TEST_CASE("a silent server times out") {
  FakeServer f;
  f.silent = true;
  Timeouts t;
  t.reply_ms = 100;
  // The fake server reads until the client closes, so the client must give up.
  SubmitResult r = f.run(sample(), t);
  CHECK(r.exit_code == EX_TEMPFAIL);
  CHECK(r.errors[0] == "connection to outboxd lost at the greeting (timed out waiting for a reply)");
}

TEST_CASE("exit_code_for") {
  auto reply = [](int code, std::string text) { return parsed(std::to_string(code) + " " + text + "\r\n"); };
  CHECK(exit_code_for(Stage::Rcpt, reply(550, "5.1.1 no")) == EX_NOUSER);
  CHECK(exit_code_for(Stage::Rcpt, reply(553, "bad address")) == EX_NOUSER);
  CHECK(exit_code_for(Stage::Rcpt, reply(550, "5.7.1 denied")) == EX_NOPERM);
  CHECK(exit_code_for(Stage::Rcpt, reply(450, "4.2.0 busy")) == EX_TEMPFAIL);
  CHECK(exit_code_for(Stage::Mail, reply(553, "5.1.8 bad sender")) == EX_NOPERM);
  CHECK(exit_code_for(Stage::Mail, reply(552, "5.3.4 too big")) == EX_DATAERR);
  CHECK(exit_code_for(Stage::Mail, reply(530, "5.7.0 auth")) == EX_NOPERM);
  CHECK(exit_code_for(Stage::EndOfData, reply(554, "5.6.0 bad")) == EX_DATAERR);
  CHECK(exit_code_for(Stage::EndOfData, reply(554, "5.7.1 spam")) == EX_NOPERM);
  CHECK(exit_code_for(Stage::Greeting, reply(554, "no")) == EX_UNAVAILABLE);
  CHECK(exit_code_for(Stage::Data, reply(250, "what")) == EX_PROTOCOL);
}

TEST_CASE("sendmail reads replies with the protocol's parser: one reply type") {
  CHECK(enhanced_code(parsed("250 2.0.0 Ok: queued as X\r\n")) == "2.0.0");
  CHECK(enhanced_code(parsed("550 5.1.1\r\n")) == "5.1.1");
  CHECK(enhanced_code(parsed("550 no code here\r\n")).empty());
  CHECK(enhanced_code(parsed("550 5.1 short\r\n")).empty());
  CHECK(parsed("250-a\r\n250 b\r\n").one_line() == "250 a b");
}
