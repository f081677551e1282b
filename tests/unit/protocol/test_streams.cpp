// Unit tests for the byte-level pieces: line framing, DATA decoding, header
// scanning. Each is checked byte-exact across arbitrary feed splits.
#include <doctest/doctest.h>

#include <random>

#include <string>
#include <vector>

#include "protocol/data_decoder.h"
#include "protocol/header_scanner.h"
#include "protocol/line_framer.h"

using namespace outbox::protocol;

namespace {

struct FramerEvent {
  LineFramer::Status status;
  std::string line;
  bool operator==(const FramerEvent&) const = default;
};

std::vector<FramerEvent> frame(LineFramer& f, std::string_view in) {
  std::vector<FramerEvent> out;
  while (!in.empty()) {
    auto r = f.next(in);
    in.remove_prefix(r.consumed);
    if (r.status != LineFramer::Status::NeedMore) out.push_back({r.status, f.line()});
  }
  return out;
}

// Decodes in pieces of the given sizes (cycled), returns body and whether it ended.
struct Decoded {
  std::string body;
  bool ended = false;
  std::size_t consumed = 0;
  bool bad = false;
};

Decoded decode_all(std::string_view in, std::size_t piece = 0, std::size_t out_limit = 1 << 20) {
  DataDecoder d;
  Decoded res;
  std::size_t pos = 0;
  while (pos < in.size() && !res.ended) {
    std::size_t n = piece ? std::min(piece, in.size() - pos) : in.size() - pos;
    std::string_view part = in.substr(pos, n);
    while (!part.empty() && !res.ended) {
      std::string out;
      auto r = d.decode(part, out, out_limit);
      REQUIRE(out.size() <= out_limit);
      res.body += out;
      part.remove_prefix(r.consumed);
      pos += r.consumed;
      res.ended = r.ended;
    }
  }
  res.consumed = pos;
  res.bad = d.saw_bare_cr_lf_nul();
  return res;
}

}  // namespace

TEST_CASE("LineFramer: CRLF lines, split anywhere") {
  std::string input = "EHLO a\r\nMAIL FROM:<x@y>\r\n\r\nQUIT\r\n";
  std::vector<FramerEvent> want{{LineFramer::Status::Line, "EHLO a"},
                                {LineFramer::Status::Line, "MAIL FROM:<x@y>"},
                                {LineFramer::Status::Line, ""},
                                {LineFramer::Status::Line, "QUIT"}};
  for (std::size_t split = 0; split <= input.size(); ++split) {
    LineFramer f(512);
    auto got = frame(f, input.substr(0, split));
    auto rest = frame(f, input.substr(split));
    got.insert(got.end(), rest.begin(), rest.end());
    CHECK(got == want);
  }
}

TEST_CASE("LineFramer: bare CR, bare LF, NUL make one bad line up to the next CRLF") {
  LineFramer f(512);
  auto ev = frame(f, "MAIL FROM:<a@b>\nRCPT TO:<c@d>\r\nNOOP\r\n");
  REQUIRE(ev.size() == 2);
  CHECK(ev[0].status == LineFramer::Status::BadBytes);
  CHECK(ev[1] == FramerEvent{LineFramer::Status::Line, "NOOP"});
  for (std::string bad : {"A\rB\r\n", "A\0B\r\n", "\r\r\n", "\n\r\n", "x\r\rx\r\n"}) {
    if (bad[1] == 0) bad = std::string("A\0B\r\n", 5);
    LineFramer g(512);
    auto e = frame(g, bad);
    REQUIRE(e.size() == 1);
    CHECK(e[0].status == LineFramer::Status::BadBytes);
  }
}

TEST_CASE("LineFramer: 512-octet cap including CRLF") {
  LineFramer f(512);
  std::string ok(510, 'a');
  auto ev = frame(f, ok + "\r\n");
  REQUIRE(ev.size() == 1);
  CHECK(ev[0].status == LineFramer::Status::Line);
  CHECK(ev[0].line.size() == 510);
  ev = frame(f, std::string(511, 'a') + "\r\nNOOP\r\n");
  REQUIRE(ev.size() == 2);
  CHECK(ev[0].status == LineFramer::Status::TooLong);
  CHECK(ev[1].line == "NOOP");
  // A 10,000-byte line fed byte by byte: one event, memory bounded.
  std::string big(10000, 'x');
  LineFramer g(512);
  std::vector<FramerEvent> all;
  for (char c : big + "\r\n") {
    auto e = frame(g, std::string_view(&c, 1));
    all.insert(all.end(), e.begin(), e.end());
    CHECK(g.line().size() <= 510);
  }
  REQUIRE(all.size() == 1);
  CHECK(all[0].status == LineFramer::Status::TooLong);
}

TEST_CASE("DataDecoder: end of data and dot-unstuffing") {
  auto d = decode_all("Subject: x\r\n\r\nhello\r\n..dot\r\n.x\r\n...\r\n.\r\nNOOP\r\n");
  CHECK(d.ended);
  CHECK_FALSE(d.bad);
  CHECK(d.body == "Subject: x\r\n\r\nhello\r\n.dot\r\nx\r\n..\r\n");
  CHECK(d.consumed == std::string("Subject: x\r\n\r\nhello\r\n..dot\r\n.x\r\n...\r\n.\r\n").size());

  auto empty = decode_all(".\r\n");  // the DATA line's CRLF is the first CRLF
  CHECK(empty.ended);
  CHECK(empty.body.empty());

  auto blank = decode_all("\r\n.\r\n");
  CHECK(blank.ended);
  CHECK(blank.body == "\r\n");
}

TEST_CASE("DataDecoder: every split of the terminator and the stuffed dot") {
  std::string input = "a\r\n..b\r\n.\r\n";
  for (std::size_t piece = 1; piece <= input.size(); ++piece) {
    auto d = decode_all(input, piece);
    CHECK(d.ended);
    CHECK(d.body == "a\r\n.b\r\n");
    CHECK_FALSE(d.bad);
  }
}

TEST_CASE("DataDecoder: smuggling sequences are not the end and are flagged") {
  const std::vector<std::string> fakes{"\n.\n", "\r.\r", "\n.\r\n", "\r\n.\n", "\r.\n", "\n.\r",
                                       "\r.\r\n", "\r\n.\r", std::string("\r\n\0.\r\n", 6),
                                       std::string("\r\n.\0\r\n", 6), "\r\n.\r\r\n", "\r\r\n.\r\r\n"};
  for (const auto& v : fakes) {
    CAPTURE(v);
    std::string body = "Testing" + v + "MAIL FROM:<smuggler@attacker.test>\r\n";
    auto d = decode_all(body);
    CHECK_FALSE(d.ended);
    CHECK(d.bad);
    auto full = decode_all(body + "\r\n.\r\n");
    CHECK(full.ended);
    CHECK(full.bad);
    CHECK(full.consumed == body.size() + 5);
  }
}

TEST_CASE("DataDecoder: output limit is respected and decoding resumes") {
  std::string line(100, 'z');
  std::string input;
  for (int i = 0; i < 50; ++i) input += line + "\r\n";
  std::string body = input;
  input += ".\r\n";
  auto d = decode_all(input, 0, 64);
  CHECK(d.ended);
  CHECK(d.body == body);
}

TEST_CASE("DataDecoder: runs of line text copied at once decode as one octet at a time does") {
  // Fed one octet at a time the decoder never copies more than that octet;
  // any other split, and any output limit, must give the same body, end and
  // flag (bare CR, LF, NUL inside the runs included).
  std::mt19937 rng(1205);
  const char alphabet[] = "ab.\r\n\0 \x80";
  for (int round = 0; round < 400; ++round) {
    CAPTURE(round);
    std::string in;
    std::size_t n = rng() % 3000;
    while (in.size() < n) {
      if (rng() % 4 == 0)
        in.append(rng() % 300, static_cast<char>('A' + rng() % 26));
      else
        in += (rng() % 3 == 0) ? std::string("\r\n.") : std::string(1, alphabet[rng() % (sizeof alphabet - 1)]);
    }
    if (rng() % 2) in += "\r\n.\r\n";
    auto ref = decode_all(in, 1);
    auto got = decode_all(in, 1 + rng() % 500, 2 + rng() % 400);
    CHECK(got.body == ref.body);
    CHECK(got.ended == ref.ended);
    CHECK(got.bad == ref.bad);
    CHECK(got.consumed == ref.consumed);
    auto whole = decode_all(in);
    CHECK(whole.body == ref.body);
    CHECK(whole.bad == ref.bad);
  }
}

TEST_CASE("HeaderScanner: names case-insensitive, only before the empty line") {
  auto scan = [](std::string_view s, std::size_t piece) {
    HeaderScanner h;
    for (std::size_t i = 0; i < s.size(); i += piece) h.feed(s.substr(i, piece));
    return std::pair{h.has_date(), h.has_message_id()};
  };
  for (std::size_t piece : {1, 3, 1000}) {
    CHECK(scan("DATE: x\r\nmessage-id: <a@b>\r\n\r\nbody", piece) == std::pair{true, true});
    CHECK(scan("Subject: x\r\n\r\nDate: y\r\nMessage-ID: <z>\r\n", piece) == std::pair{false, false});
    CHECK(scan("Subject: x\r\n Date: folded\r\n\r\n", piece) == std::pair{false, false});
    CHECK(scan("Date : obs\r\n\r\n", piece) == std::pair{true, false});
    CHECK(scan("X-Date: 1\r\nMessage-IDx: 2\r\n\r\n", piece) == std::pair{false, false});
    CHECK(scan("not a header line\r\nDate: x\r\n\r\n", piece) == std::pair{false, false});
    CHECK(scan("\r\nDate: x\r\n", piece) == std::pair{false, false});
    CHECK(scan("Subject: a\r\n\tDate: b\r\nMessage-Id:<c>\r\n\r\n", piece) == std::pair{false, true});
  }
}

TEST_CASE("HeaderScanner: the first Message-ID's value, unfolded, trimmed, bounded, without control characters") {
  auto id = [](std::string_view s, std::size_t piece) {
    HeaderScanner h;
    for (std::size_t i = 0; i < s.size(); i += piece) h.feed(s.substr(i, piece));
    return h.message_id();
  };
  for (std::size_t piece : {1, 2, 7, 1000}) {
    CAPTURE(piece);
    CHECK(id("Message-ID: <a@b.test>\r\nSubject: x\r\n\r\n", piece) == "<a@b.test>");
    CHECK(id("message-id:<a@b>\r\n\r\n", piece) == "<a@b>");
    CHECK(id("Message-ID:\r\n <folded@b.test>\r\n\r\nbody", piece) == "<folded@b.test>");
    CHECK(id("Message-ID: <first@x>\r\nMessage-ID: <second@x>\r\n\r\n", piece) == "<first@x>");
    CHECK(id("Subject: x\r\n\r\nMessage-ID: <in-body@x>\r\n", piece).empty());
    CHECK(id("Message-ID: <a\x1b[31m@x>\r\n\r\n", piece) == "<a [31m@x>");
    CHECK(id("Message-ID: <ends-in-data@x>", piece) == "<ends-in-data@x>");
    CHECK(id(std::string("Message-ID: <") + std::string(1000, 'x') + ">\r\n\r\n", piece).size() ==
          HeaderScanner::kMaxMessageId);
  }
}
