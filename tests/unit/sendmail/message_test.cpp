// The message transform: end of input, line ends, -t recipients, Bcc
// removal, the added From:, dot-stuffing.
#include <doctest/doctest.h>

#include "tools/sendmail/message.h"

using namespace outbox::sendmail;
using V = std::vector<std::string>;

namespace {

std::string collect(std::vector<std::string> chunks, bool ignore_dots, bool* done = nullptr) {
  InputCollector in(ignore_dots);
  for (const auto& c : chunks) {
    in.feed(c);
    if (in.done()) break;
  }
  in.finish();
  if (done) *done = in.done();
  return in.take();
}

std::string wire_of(const std::string& raw) { return Message(split_lines(raw)).wire(); }

}  // namespace

TEST_CASE("a lone dot ends the input without -i") {
  bool done = false;
  CHECK(collect({"Subject: x\n\nbody\n.\nnot read\n"}, false, &done) == "Subject: x\n\nbody\n");
  CHECK(done);
  CHECK(collect({"a\r\n.\r\nafter"}, false) == "a\r\n");
  CHECK(collect({".\nrest"}, false) == "");                    // the very first line
  CHECK(collect({"a\n", ".", "\n", "b\n"}, false) == "a\n");     // split across reads
  CHECK(collect({"a\n."}, false, &done) == "a\n");              // "." then end of file
  CHECK(done);
  CHECK(collect({"a\n..\n.x\n x\n"}, false) == "a\n..\n.x\n x\n");   // not lone dots
  CHECK(collect({"a.\n"}, false) == "a.\n");
}

TEST_CASE("with -i a lone dot is data") {
  bool done = true;
  CHECK(collect({"a\n.\nb\n"}, true, &done) == "a\n.\nb\n");
  CHECK_FALSE(done);
  CHECK(wire_of(collect({"a\n.\nb\n"}, true)) == "a\r\n..\r\nb\r\n");   // and is dot-stuffed
}

TEST_CASE("strip_nul: every NUL goes, counted; nothing else changes") {
  struct Row { std::string in, out; std::size_t n; };
  const Row rows[] = {
      {"", "", 0},
      {"no nul\n", "no nul\n", 0},
      {std::string("a\0b\n", 4), "ab\n", 1},
      {std::string("\0\0cron output\r\n\0", 16), "cron output\r\n", 3},
      {std::string("\xc3\0\xa9", 3), "\xc3\xa9", 1},
  };
  for (const auto& r : rows) {
    std::string s = r.in;
    CHECK(strip_nul(s) == r.n);
    CHECK(s == r.out);
  }
}

TEST_CASE("split_lines") {
  CHECK(split_lines("") == V{});
  CHECK(split_lines("a") == V{"a"});
  CHECK(split_lines("a\nb\n") == V{"a", "b"});
  CHECK(split_lines("a\r\nb\r\n") == V{"a", "b"});
  CHECK(split_lines("a\n\nb") == V{"a", "", "b"});
  CHECK(split_lines("a\rb\r") == V{"a", "b"});             // bare CR ends a line
  CHECK(split_lines("a\r\rb") == V{"a", "", "b"});
  CHECK(split_lines("a\r\r\nb") == V{"a", "b"});           // CR CR LF is one line end
  CHECK(split_lines(std::string("x\0y\n", 4)) == V{std::string("x\0y", 3)});   // NUL is the daemon's call
}

TEST_CASE("wire form: CRLF and dot-stuffing") {
  CHECK(wire_of("Subject: s\n\n.hidden\n..two\nend") == "Subject: s\r\n\r\n..hidden\r\n...two\r\nend\r\n");
  CHECK(wire_of("Subject: s\r\n\r\nbody\r\n") == "Subject: s\r\n\r\nbody\r\n");
  CHECK(wire_of("Subject: s\n\nmac\rline\r") == "Subject: s\r\n\r\nmac\r\nline\r\n");
  CHECK(wire_of("") == "");
  CHECK(wire_of("no header line\n") == "no header line\r\n");
}

TEST_CASE("parse_address_list") {
  struct Row { std::string in; V out; };
  const Row rows[] = {
      {"a@x.org", {"a@x.org"}},
      {"a@x.org, b@y.org", {"a@x.org", "b@y.org"}},
      {"A <a@x.org>", {"a@x.org"}},
      {"\"Doe, John\" <john@x.org>, jane@y.org (Jane, Doe)", {"john@x.org", "jane@y.org"}},
      {"\"quoted <not@this>\" <real@x.org>", {"real@x.org"}},
      {"Team: a@x.org, B <b@x.org>; c@y.org", {"a@x.org", "b@x.org", "c@y.org"}},
      {"undisclosed-recipients:;", {}},
      {"", {}},
      {" , ,", {}},
      {"<@relay.org:a@x.org>", {"a@x.org"}},
      {"\"john doe\"@x.org", {"\"john doe\"@x.org"}},
      {"a@x.org (comment (nested, with comma))", {"a@x.org"}},
      {"root", {"root"}},
      {"Ärger <ärger@bücher.de>", {"ärger@bücher.de"}},
      {"<a@x.org>,<b@x.org>", {"a@x.org", "b@x.org"}},
      {"a @ x.org", {"a@x.org"}},
      {"A\r\n <a@x.org>", {"a@x.org"}},
  };
  for (const auto& r : rows) {
    CAPTURE(r.in);
    CHECK(parse_address_list(r.in) == r.out);
  }
}

TEST_CASE("-t: To, Cc and Bcc with folding, groups and quoted names") {
  Message m(split_lines(
      "From: me@example.com\n"
      "To: \"Smith, Anna\" <anna@example.org>,\n"
      "\tbob@example.org\n"
      "Subject: to: not@a.recipient\n"
      "cc: Team: carol@example.org, Dan <dan@example.org>;\n"
      "Bcc: hidden@example.net,\n"
      "  \"Secret, Agent\" <agent@example.net>\n"
      "X-Note: bcc: nope@example.com\n"
      "\n"
      "To: body@example.com\n"));
  CHECK(m.header_recipients() == V{"anna@example.org", "bob@example.org", "carol@example.org", "dan@example.org",
                                   "hidden@example.net", "agent@example.net"});
  m.remove_fields("Bcc");
  CHECK(m.wire() ==
        "From: me@example.com\r\n"
        "To: \"Smith, Anna\" <anna@example.org>,\r\n"
        "\tbob@example.org\r\n"
        "Subject: to: not@a.recipient\r\n"
        "cc: Team: carol@example.org, Dan <dan@example.org>;\r\n"
        "X-Note: bcc: nope@example.com\r\n"
        "\r\n"
        "To: body@example.com\r\n");
}

TEST_CASE("header fields") {
  Message m(split_lines("Subject:  hello\n world\nFROM: a@b\nX: 1\n\nbody\n"));
  CHECK(m.has_field("From"));
  CHECK(m.has_field("subject"));
  CHECK_FALSE(m.has_field("To"));
  CHECK(m.field_values("Subject") == V{"hello world"});
  // A line that is not a field ends the header (mbox "From " line, text).
  Message body_only(split_lines("From someone Mon Jan 1 00:00:00 2024\nTo: x@y\n"));
  CHECK_FALSE(body_only.has_field("To"));
  CHECK(body_only.header_recipients().empty());
}

TEST_CASE("an added From: goes at the end of the header") {
  Message m(split_lines("Subject: s\n\nbody\n"));
  m.append_field(from_field("Cron Daemon", "root@example.com"));
  CHECK(m.wire() == "Subject: s\r\nFrom: Cron Daemon <root@example.com>\r\n\r\nbody\r\n");
  // A message without any header gets the empty line after the new field.
  Message bare(split_lines("just text\n"));
  bare.append_field(from_field("", "u@example.com"));
  CHECK(bare.wire() == "From: u@example.com\r\n\r\njust text\r\n");
  Message empty(split_lines(""));
  empty.append_field(from_field("", "u@example.com"));
  CHECK(empty.wire() == "From: u@example.com\r\n");
}

TEST_CASE("from_field quoting") {
  CHECK(from_field("CronDaemon", "root@h.example") == "From: CronDaemon <root@h.example>");
  CHECK(from_field("", "root@h.example") == "From: root@h.example");
  CHECK(from_field("Doe, John", "j@x") == "From: \"Doe, John\" <j@x>");
  CHECK(from_field("J. \"Q\" Public", "j@x") == "From: \"J. \\\"Q\\\" Public\" <j@x>");
  CHECK(from_field("J\xc3\xb6rg", "j@x") == "From: =?UTF-8?B?SsO2cmc=?= <j@x>");
  // Long non-ASCII names are split into encoded words of at most 75 characters.
  std::string name;
  for (int i = 0; i < 40; ++i) name += "\xc3\xa9";   // 80 bytes of "é"
  std::string f = from_field(name, "j@x");
  CHECK(f.find("?= =?UTF-8?B?") != std::string::npos);
  auto first_end = f.find("?=");
  CHECK(first_end - f.find("=?UTF-8?B?") + 2 <= 75);
}

TEST_CASE("8-bit detection") {
  CHECK_FALSE(Message(split_lines("Subject: a\n\nplain\n")).has_8bit());
  CHECK(Message(split_lines("Subject: a\n\ncaf\xc3\xa9\n")).has_8bit());
  CHECK(Message(split_lines("Subject: caf\xc3\xa9\n\nx\n")).has_8bit());
}
