// ReplyParser: RFC 5321 §4.2 replies from an upstream, strict CRLF, bounded.
#include <doctest/doctest.h>

#include <string>

#include "protocol/reply_parser.h"

using outbox::protocol::EnhancedStatus;
using outbox::protocol::ReplyParser;
using outbox::protocol::SmtpReply;
using Result = ReplyParser::Result;

namespace {

// Feeds everything at once and expects exactly one reply.
SmtpReply parse_one(const std::string& bytes) {
  ReplyParser p;
  p.feed(bytes);
  SmtpReply r;
  REQUIRE(p.next(r) == Result::Reply);
  CHECK(p.buffered() == 0);
  return r;
}

std::string parse_error(const std::string& bytes, ReplyParser::Limits limits = {}) {
  ReplyParser p(limits);
  p.feed(bytes);
  SmtpReply r;
  Result res;
  while ((res = p.next(r)) == Result::Reply) {}
  if (res != Result::Error) return "(no error)";
  return p.error();
}

}  // namespace

TEST_CASE("single-line reply with an enhanced code") {
  auto r = parse_one("451 4.7.1 Try again later\r\n");
  CHECK(r.code == 451);
  REQUIRE(r.enhanced);
  CHECK(r.enhanced->str() == "4.7.1");
  CHECK(r.transient());
  CHECK(r.lines == std::vector<std::string>{"4.7.1 Try again later"});
  CHECK(r.text() == "Try again later");
  CHECK(r.one_line() == "451 4.7.1 Try again later");
}

TEST_CASE("reply without text and without enhanced code") {
  auto r = parse_one("250\r\n");
  CHECK(r.code == 250);
  CHECK_FALSE(r.enhanced);
  CHECK(r.one_line() == "250");
  CHECK(r.status() == EnhancedStatus{2, 0, 0});
  auto q = parse_one("220 mx.example ESMTP\r\n");
  CHECK_FALSE(q.enhanced);
  CHECK(q.status().str() == "2.0.0");
  CHECK(q.one_line() == "220 mx.example ESMTP");
}

TEST_CASE("multi-line reply joins lines and drops the repeated enhanced code") {
  auto r = parse_one(
      "535-5.7.8 Username and Password not accepted. For more information, go to\r\n"
      "535 5.7.8  https://support.google.com/mail/?p=BadCredentials x1-20020a\r\n");
  CHECK(r.code == 535);
  CHECK(r.enhanced->str() == "5.7.8");
  CHECK(r.lines.size() == 2);
  CHECK(r.one_line() ==
        "535 5.7.8 Username and Password not accepted. For more information, go to "
        "https://support.google.com/mail/?p=BadCredentials x1-20020a");
}

TEST_CASE("EHLO reply keeps every keyword line") {
  auto r = parse_one("250-smtp.gmail.com at your service\r\n250-SIZE 35882577\r\n250-8BITMIME\r\n"
                     "250-AUTH LOGIN PLAIN XOAUTH2\r\n250 SMTPUTF8\r\n");
  CHECK(r.lines.size() == 5);
  CHECK(r.lines[3] == "AUTH LOGIN PLAIN XOAUTH2");
  CHECK_FALSE(r.enhanced);
}

TEST_CASE("enhanced code whose class disagrees with the reply code is ignored") {
  auto r = parse_one("550 4.1.1 odd server\r\n");
  CHECK_FALSE(r.enhanced);
  CHECK(r.status().str() == "5.0.0");
  CHECK(r.text() == "4.1.1 odd server");
  CHECK_FALSE(parse_one("250 2.1.0.1 no\r\n").enhanced);
  CHECK_FALSE(parse_one("250 2.1000.0 no\r\n").enhanced);
  CHECK(parse_one("250 2.1.0\r\n").enhanced->str() == "2.1.0");
}

TEST_CASE("EnhancedStatus::parse is exact") {
  CHECK(EnhancedStatus::parse("5.7.139")->detail == 139);
  CHECK_FALSE(EnhancedStatus::parse("3.1.1"));
  CHECK_FALSE(EnhancedStatus::parse("5.7"));
  CHECK_FALSE(EnhancedStatus::parse("5.7.1 "));
  CHECK_FALSE(EnhancedStatus::parse("55.7.1"));
  CHECK_FALSE(EnhancedStatus::parse(""));
}

TEST_CASE("bytes arriving one at a time give the same replies") {
  std::string wire = "250-first\r\n250-second\r\n250 third\r\n354 go ahead\r\n";
  ReplyParser p;
  std::vector<SmtpReply> got;
  for (char c : wire) {
    p.feed(std::string(1, c));
    SmtpReply r;
    while (p.next(r) == Result::Reply) got.push_back(r);
  }
  REQUIRE(got.size() == 2);
  CHECK(got[0].lines.size() == 3);
  CHECK(got[1].code == 354);
  CHECK(p.buffered() == 0);
}

TEST_CASE("pipelined replies come out in order, partial one stays buffered") {
  ReplyParser p;
  p.feed("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 no\r\n354 ");
  SmtpReply r;
  REQUIRE(p.next(r) == Result::Reply);
  CHECK(r.enhanced->str() == "2.1.0");
  REQUIRE(p.next(r) == Result::Reply);
  REQUIRE(p.next(r) == Result::Reply);
  CHECK(r.code == 550);
  CHECK(p.next(r) == Result::NeedMore);
  CHECK(p.buffered() == 4);
  p.feed("End data\r\n");
  REQUIRE(p.next(r) == Result::Reply);
  CHECK(r.code == 354);
}

TEST_CASE("protocol errors") {
  CHECK(parse_error("250 ok\n") == "bare LF in reply");
  CHECK(parse_error("250 o\rk\r\n") == "bare CR in reply");
  CHECK(parse_error(std::string("250 o\0k\r\n", 9)) == "NUL in reply");
  CHECK(parse_error("250-one\r\n251 two\r\n") == "reply lines with different codes (250 and 251)");
  CHECK(parse_error("25 short\r\n") == "malformed reply line (no reply code)");
  CHECK(parse_error("abc\r\n") == "malformed reply line (no reply code)");
  CHECK(parse_error("199 too low\r\n") == "malformed reply line (no reply code)");
  CHECK(parse_error("260 bad second digit\r\n") == "malformed reply line (no reply code)");
  CHECK(parse_error("250_ok\r\n") == "malformed reply line (no space or '-' after the code)");
  CHECK(parse_error("HTTP/1.1 400 Bad Request\r\n") == "malformed reply line (no reply code)");
  CHECK(parse_error("\r\n") == "malformed reply line (no reply code)");
}

TEST_CASE("limits: line length, line count, reply size") {
  ReplyParser::Limits small{32, 3, 60};
  CHECK(parse_error("250 " + std::string(28, 'x') + "\r\n", small) == "(no error)");
  CHECK(parse_error("250 " + std::string(29, 'x') + "\r\n", small) == "reply line too long");
  // No CRLF at all: refused as soon as the line exceeds the limit.
  CHECK(parse_error("250 " + std::string(40, 'x'), small) == "reply line too long");
  CHECK(parse_error("250-a\r\n250-b\r\n250-c\r\n250 d\r\n", small) == "reply has too many lines");
  CHECK(parse_error("250-" + std::string(24, 'a') + "\r\n250-" + std::string(24, 'b') + "\r\n250 c\r\n", small) ==
        "reply too long");
  // Defaults: 4096 per line, 100 lines.
  CHECK(parse_error("250 " + std::string(4092, 'x') + "\r\n") == "(no error)");
  CHECK(parse_error("250 " + std::string(4093, 'x') + "\r\n") == "reply line too long");
  std::string many;
  for (int i = 0; i < 100; ++i) many += "250-x\r\n";
  CHECK(parse_error(many + "250 x\r\n") == "reply has too many lines");
}

TEST_CASE("an error is final") {
  ReplyParser p;
  p.feed("250 ok\n");
  SmtpReply r;
  CHECK(p.next(r) == Result::Error);
  p.feed("250 ok\r\n");
  CHECK(p.next(r) == Result::Error);
}

TEST_CASE("a missing CRLF means waiting, not a reply") {
  ReplyParser p;
  p.feed("250 ok");
  SmtpReply r;
  CHECK(p.next(r) == Result::NeedMore);
  p.feed("\r");
  CHECK(p.next(r) == Result::NeedMore);
  p.feed("\n");
  CHECK(p.next(r) == Result::Reply);
}

TEST_CASE("one_line caps the length at a UTF-8 boundary") {
  const std::string e2 = "\xC3\xA9\xC3\xA9\xC3\xA9";   // three é, 6 octets
  auto r = SmtpReply::make(550, EnhancedStatus{5, 7, 1}, std::string(20, 'a') + e2);
  CHECK(r.one_line() == "550 5.7.1 " + std::string(20, 'a') + e2);
  // 30 octets of ASCII, then é é é: a cut at 31 lands inside the first é.
  CHECK(r.one_line(34) == "550 5.7.1 " + std::string(20, 'a') + "...");
  CHECK(r.one_line(35) == "550 5.7.1 " + std::string(20, 'a') + "\xC3\xA9...");
  CHECK(r.lines.front() == "5.7.1 " + std::string(20, 'a') + e2);
}
