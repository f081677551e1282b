// Unit tests for the pieces the session is built from: reply formatting,
// UTF-8, paths, commands and ESMTP parameters, trace fields.
#include <doctest/doctest.h>

#include <limits>

#include "protocol/address.h"
#include "protocol/command.h"
#include "protocol/reply.h"
#include "protocol/trace.h"
#include "protocol/utf8.h"

using namespace outbox::protocol;

TEST_CASE("format_reply: single and multi-line") {
  CHECK(format_reply(250, "2.0.0 Ok") == "250 2.0.0 Ok\r\n");
  CHECK(format_reply(250, std::vector<std::string>{"a", "b", "c"}) == "250-a\r\n250-b\r\n250 c\r\n");
  CHECK(format_reply(250, std::vector<std::string>{"only"}) == "250 only\r\n");
}

TEST_CASE("UTF-8 validation per RFC 3629") {
  CHECK(is_valid_utf8("plain"));
  CHECK(is_valid_utf8("j\xc3\xb6rg"));                 // ö
  CHECK(is_valid_utf8("\xe6\x97\xa5\xe6\x9c\xac"));     // 日本
  CHECK(is_valid_utf8("\xf0\x9f\x93\xa7"));             // 📧
  CHECK_FALSE(is_valid_utf8("bad\xc3\x28"));            // bad continuation
  CHECK_FALSE(is_valid_utf8("\xc0\xaf"));               // overlong '/'
  CHECK_FALSE(is_valid_utf8("\xe0\x80\xaf"));           // overlong 3-byte
  CHECK_FALSE(is_valid_utf8("\xed\xa0\x80"));           // surrogate
  CHECK_FALSE(is_valid_utf8("\xf4\x90\x80\x80"));       // > U+10FFFF
  CHECK_FALSE(is_valid_utf8("\xff"));
  CHECK_FALSE(is_valid_utf8("\xe6\x97"));               // truncated
  CHECK(is_ascii("abc"));
  CHECK_FALSE(is_ascii("\xc3\xb6"));
}

TEST_CASE("parse_path: ordinary, null, bare, quoted, source route") {
  auto p = parse_path("<user@example.com>", true);
  CHECK(p.error == PathError::None);
  CHECK(p.mailbox() == "user@example.com");
  CHECK(p.rest.empty());

  p = parse_path("<>", true);
  CHECK(p.error == PathError::None);
  CHECK(p.null_path);
  CHECK(parse_path("<>", false).error == PathError::Syntax);

  p = parse_path(" <root> SIZE=10", true);  // space after the colon, params after
  CHECK(p.error == PathError::None);
  CHECK(p.local == "root");
  CHECK(p.domain.empty());
  CHECK(p.rest == "SIZE=10");

  p = parse_path("user@example.com BODY=8BITMIME", true);  // no brackets (Postfix-liberal)
  CHECK(p.error == PathError::None);
  CHECK(p.mailbox() == "user@example.com");
  CHECK(p.rest == "BODY=8BITMIME");

  p = parse_path("<\"john doe>\"@example.com>", false);
  CHECK(p.error == PathError::None);
  CHECK(p.local == "\"john doe>\"");

  p = parse_path("<@relay1.test,@relay2.test:user@example.com>", false);  // RFC 5321 §4.1.2, App. C
  CHECK(p.error == PathError::None);
  CHECK(p.mailbox() == "user@example.com");

  p = parse_path("<user@[127.0.0.1]>", false);
  CHECK(p.error == PathError::None);
  CHECK(parse_path("<user@[IPv6:::1]>", false).error == PathError::None);
  CHECK(parse_path("<user@[300.0.0.1]>", false).error == PathError::Syntax);
}

TEST_CASE("parse_path: rejects") {
  CHECK(parse_path("", true).error == PathError::Syntax);
  CHECK(parse_path("<user@example.com", true).error == PathError::Syntax);
  CHECK(parse_path("<user@example.com>junk", true).error == PathError::Syntax);
  CHECK(parse_path("<user@>", true).error == PathError::Syntax);
  CHECK(parse_path("<@example.com>", true).error == PathError::Syntax);
  CHECK(parse_path("<us er@example.com>", true).error == PathError::Syntax);
  CHECK(parse_path("<user@exa mple.com>", true).error == PathError::Syntax);
  CHECK(parse_path("<user@example.com.>", true).error == PathError::Syntax);
  CHECK(parse_path("<user@-example.com>", true).error == PathError::Syntax);
  CHECK(parse_path("<user@a..b>", true).error == PathError::Syntax);
  CHECK(parse_path("<;sleep 66;>", true).error == PathError::Syntax);   // CVE-2020-7247 shape
  CHECK(parse_path("<\"x\rX: 1\"@d.test>", true).error == PathError::Syntax);  // S5
  CHECK(parse_path("<a\x01@d.test>", true).error == PathError::Syntax);
  CHECK(parse_path("<\"unterminated@d.test>", true).error == PathError::Syntax);
  CHECK(parse_path("<@relay:>", true).error == PathError::Syntax);
  std::string long_local(65, 'a');
  CHECK(parse_path("<" + long_local + "@d.test>", true).error == PathError::TooLong);
  std::string long_domain;
  for (int i = 0; i < 30; ++i) long_domain += "abcdefghi.";
  long_domain += "test";
  CHECK(parse_path("<a@" + long_domain + ">", true).error != PathError::None);
}

TEST_CASE("parse_path: UTF-8 addresses") {
  auto p = parse_path("<j\xc3\xb6rg@b\xc3\xbc" "cher.test>", false);
  CHECK(p.error == PathError::None);
  CHECK(p.non_ascii);
  CHECK(parse_path("<bad\xc3\x28utf8@d.test>", false).error == PathError::InvalidUtf8);
  CHECK(parse_path("<ok@d\xff.test>", false).error == PathError::InvalidUtf8);
  CHECK_FALSE(parse_path("<plain@d.test>", false).non_ascii);
}

TEST_CASE("parse_command: verbs are case-insensitive, arguments trimmed") {
  auto c = parse_command("mail FROM:<a@b.test>");
  CHECK(c.verb == Verb::Mail);
  CHECK(c.arg == "FROM:<a@b.test>");
  CHECK(parse_command("EhLo  x.test  ").arg == "x.test");
  CHECK(parse_command("").verb == Verb::Empty);
  CHECK(parse_command("   ").verb == Verb::Empty);
  CHECK(parse_command("XYZZY").verb == Verb::Unknown);
  CHECK(parse_command("MAILX FROM:<a@b>").verb == Verb::Unknown);
  CHECK(parse_command("GET / HTTP/1.1").verb == Verb::Http);
  CHECK(parse_command("CONNECT host:25 HTTP/1.0").verb == Verb::Http);
  CHECK(parse_command("POST /x HTTP/1.1").verb == Verb::Http);
  CHECK(parse_command("starttls").verb == Verb::StartTls);
}

TEST_CASE("strip_path_keyword: with and without a space after the colon") {
  CHECK(strip_path_keyword("FROM:<a@b>", "FROM").value() == "<a@b>");
  CHECK(strip_path_keyword("from: <a@b>", "FROM").value() == " <a@b>");
  CHECK_FALSE(strip_path_keyword("FROM <a@b>", "FROM"));
  CHECK_FALSE(strip_path_keyword("TO:<a@b>", "FROM"));
  CHECK_FALSE(strip_path_keyword("FRO", "FROM"));
}

TEST_CASE("parse_mail_params") {
  MailParams m;
  CHECK(parse_mail_params("SIZE=1000 BODY=8BITMIME SMTPUTF8", m).error == ParamError::None);
  CHECK(m.size == 1000u);
  CHECK(m.body_8bit);
  CHECK(m.smtputf8);

  MailParams m2;
  CHECK(parse_mail_params("size=99999999999999999999 body=7bit auth=<>", m2).error == ParamError::None);
  CHECK(m2.size == std::numeric_limits<std::uint64_t>::max());
  CHECK_FALSE(m2.body_8bit);

  MailParams m3;
  CHECK(parse_mail_params("SIZE=12a", m3).error == ParamError::BadSize);
  CHECK(parse_mail_params("SIZE", m3).error == ParamError::BadSize);
  CHECK(parse_mail_params("SIZE=123456789012345678901", m3).error == ParamError::BadSize);
  CHECK(parse_mail_params("BODY=BINARYMIME", m3).error == ParamError::BadBody);
  auto r = parse_mail_params("RET=FULL", m3);
  CHECK(r.error == ParamError::Unsupported);
  CHECK(r.keyword == "RET");
  CHECK(parse_mail_params("SMTPUTF8=yes", m3).error == ParamError::Unsupported);
  CHECK(parse_mail_params("=x", m3).error == ParamError::Syntax);
  CHECK(parse_mail_params("SIZE=", m3).error == ParamError::Syntax);

  CHECK(parse_rcpt_params("").error == ParamError::None);
  CHECK(parse_rcpt_params("NOTIFY=NEVER").error == ParamError::Unsupported);
}

TEST_CASE("trace: date, client, protocol names, Received:") {
  CHECK(rfc5322_date(0) == "Thu, 01 Jan 1970 00:00:00 +0000");
  CHECK(rfc5322_date(1700000000) == "Tue, 14 Nov 2023 22:13:20 +0000");

  PeerInfo v4;
  v4.address = "127.0.0.1";
  CHECK(describe_client(v4) == "[127.0.0.1]");
  PeerInfo v6;
  v6.address = "::1";
  CHECK(describe_client(v6) == "[IPv6:::1]");
  PeerInfo ux;
  ux.unix_socket = true;
  ux.uid = 1000;
  ux.user = "alice";
  CHECK(describe_client(ux) == "unix socket, uid 1000, user alice");
  ux.user = "ev(il)\r\n";
  CHECK(describe_client(ux) == "unix socket, uid 1000, user ev?il???");

  CHECK(with_protocol({false, false, false, false}) == "SMTP");
  CHECK(with_protocol({true, false, false, false}) == "ESMTP");
  CHECK(with_protocol({true, true, false, false}) == "ESMTPS");
  CHECK(with_protocol({true, false, true, false}) == "ESMTPA");
  CHECK(with_protocol({true, true, true, false}) == "ESMTPSA");
  CHECK(with_protocol({true, false, false, true}) == "UTF8SMTP");
  CHECK(with_protocol({true, true, true, true}) == "UTF8SMTPSA");

  TraceInfo t{"client.test", "[127.0.0.1]", "mx.test", "ESMTP", "ID1", std::string("a@b.test"), 0};
  CHECK(received_field(t) ==
        "Received: from client.test ([127.0.0.1])\r\n\tby mx.test (outbox) with ESMTP id ID1\r\n"
        "\tfor <a@b.test>; Thu, 01 Jan 1970 00:00:00 +0000\r\n");
  t.recipient.reset();
  CHECK(received_field(t) ==
        "Received: from client.test ([127.0.0.1])\r\n\tby mx.test (outbox) with ESMTP id ID1; "
        "Thu, 01 Jan 1970 00:00:00 +0000\r\n");
}
