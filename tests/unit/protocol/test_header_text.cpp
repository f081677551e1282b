// Header fields made readable: unfolding and RFC 2047 encoded-words, as tables.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "protocol/header_text.h"
#include "protocol/printable.h"

using namespace outbox::protocol;

TEST_CASE("unfold_fields: continuation lines joined, the blank line ends the section") {
  CHECK(unfold_fields("Received: from a\r\n\tby b; Sat\r\nSubject: x\r\n\r\nbody: no\r\n") ==
        std::vector<std::string>{"Received: from a\tby b; Sat", "Subject: x"});
  CHECK(unfold_fields("Subject: a\n  b\n") == std::vector<std::string>{"Subject: a  b"});
  CHECK(unfold_fields("").empty());
  CHECK(unfold_fields("\r\nSubject: after the blank line\r\n").empty());
}

TEST_CASE("decode_encoded_words: RFC 2047 B and Q, charsets through iconv, kept as written when broken") {
  struct Row { const char* in; const char* out; };
  const Row rows[] = {
      {"plain text", "plain text"},
      {"=?UTF-8?B?w6l0w6k=?=", "\xc3\xa9t\xc3\xa9"},                       // été
      {"=?utf-8?q?caf=C3=A9_au_lait?=", "caf\xc3\xa9 au lait"},
      {"=?ISO-8859-1?Q?Andr=E9?= Pirard", "Andr\xc3\xa9 Pirard"},          // RFC 2047 §8
      {"=?GB2312?B?suLK1A==?=", "\xe6\xb5\x8b\xe8\xaf\x95"},              // 测试, as 163/QQ send it
      {"=?gbk?B?suLK1A==?=", "\xe6\xb5\x8b\xe8\xaf\x95"},
      {"(=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=)", "(ab)"},                 // RFC 2047 §8: space between words dropped
      {"=?ISO-8859-1?Q?a?=  \t =?ISO-8859-1?Q?b?=", "ab"},
      {"=?ISO-8859-1?Q?a_b?= c", "a b c"},
      {"x =?UTF-8?Q?y?= z", "x y z"},
      {"=?UTF-8*en?Q?lang?=", "lang"},                                      // RFC 2231 §5
      {"=?X-UNKNOWN?Q?a?=", "=?X-UNKNOWN?Q?a?="},                          // unknown charset: as written
      {"=?UTF-8?B?not base64?=", "=?UTF-8?B?not base64?="},
      {"=?UTF-8?Q?bad=ZZ?=", "=?UTF-8?Q?bad=ZZ?="},
      {"=?UTF-8?X?x?=", "=?UTF-8?X?x?="},
      {"=?UTF-8?Q?unterminated", "=?UTF-8?Q?unterminated"},
      {"=?UTF-8?Q?esc=1B[31mred?=", "esc\xef\xbf\xbd[31mred"},                 // no terminal control
      {"=?UTF-8?Q?c1=C2=9B2J?=", "c1\xef\xbf\xbd" "2J"},                     // C1 CSI either
  };
  for (const auto& r : rows) {
    CAPTURE(r.in);
    CHECK(decode_encoded_words(r.in) == r.out);
  }
}

TEST_CASE("printable: control bytes as \\xNN, backslash doubled, the rest as is") {
  CHECK(outbox::protocol::printable("plain \xc3\xa9 text") == "plain \xc3\xa9 text");
  CHECK(outbox::protocol::printable("a\x1b[31mb\x7f\tc") == "a\\x1b[31mb\\x7f\\x09c");
  CHECK(outbox::protocol::printable("back\\slash") == "back\\\\slash");
}
