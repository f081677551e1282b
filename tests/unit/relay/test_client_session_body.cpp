// ClientSession's message text: line length (RFC 5321 §4.5.3.1.6) with the
// transparency dot (§4.5.2) not counted, longer lines folded, any split of
// the input, and bounded Sends (issue 8 items 5 and 8).
#include <doctest/doctest.h>

#include <random>
#include <string>
#include <vector>

#include "client_harness.h"

using namespace relaytest;

namespace {

void login(Harness& h) {
  h.connect();
  h.script("S: 220 smtp.example.com ESMTP\n"
           "C: EHLO client.example");
  h.server("250-mail\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-AUTH PLAIN\r\n250 SIZE 35882577\r\n");
  h.client();
  h.script("S: 235 ok");
  REQUIRE(h.s.ready());
}

void to_body(Harness& h) {
  h.s.send_message(message("B1", {"a@example.com"}));
  h.pump();
  h.client();
  h.server("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go ahead\r\n");
  REQUIRE(h.count<NeedBody>() == 1);
}

// The bytes on the wire for the body given in pieces, up to the final dot.
std::string wire(const std::vector<std::string>& chunks, std::vector<std::string>* writes = nullptr) {
  Harness h(implicit_config());
  login(h);
  to_body(h);
  h.writes.clear();
  for (const auto& c : chunks) {
    h.s.body_chunk(c);
    h.pump();
  }
  h.s.body_end();
  h.pump();
  if (writes) *writes = h.writes;
  return h.client();
}

// What the server makes of it (RFC 5321 §4.5.2): the lines up to ".", one
// leading dot removed from each.
std::string unstuff(const std::string& w) {
  std::string out;
  std::size_t pos = 0;
  for (;;) {
    std::size_t eol = w.find("\r\n", pos);
    REQUIRE(eol != std::string::npos);
    std::string line = w.substr(pos, eol - pos);
    pos = eol + 2;
    if (line == ".") break;
    if (!line.empty() && line[0] == '.') line.erase(0, 1);
    out += line + "\r\n";
  }
  CHECK(pos == w.size());
  return out;
}

std::size_t longest_line(const std::string& w) {
  std::size_t best = 0, pos = 0;
  for (std::size_t eol; (eol = w.find("\r\n", pos)) != std::string::npos; pos = eol + 2)
    best = std::max(best, eol - pos);
  return best;
}

std::string octets(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s;
  for (std::size_t i = 0; i < n; ++i) {
    char c;
    do c = static_cast<char>(rng() % 256); while (c == '\r' || c == '\n' || c == '\0');
    s += c;
  }
  return s;
}

}  // namespace

TEST_CASE("a line of 990 to 998 octets passes unchanged whatever it starts with") {
  for (std::size_t n = 990; n <= 998; ++n) {
    for (char first : {'.', 'x', ' ', '\xff'}) {
      CAPTURE(n);
      CAPTURE(first);
      std::string line = first + octets(n - 1, static_cast<unsigned>(n));
      std::string w = wire({"Subject: t\r\n\r\n" + line + "\r\n"});
      // The server sees exactly the line: the stuffing dot is not text.
      CHECK(unstuff(w) == "Subject: t\r\n\r\n" + line + "\r\n");
      CHECK(w == "Subject: t\r\n\r\n" + std::string(first == '.' ? "." : "") + line + "\r\n.\r\n");
    }
  }
}

TEST_CASE("998 dots are 999 octets on the wire: the transparency dot is not counted") {
  const std::string dots(998, '.');
  CHECK(wire({dots + "\r\n"}) == "." + dots + "\r\n.\r\n");
  CHECK(wire({dots}) == "." + dots + "\r\n.\r\n");   // no final CRLF: one is added
}

TEST_CASE("lines of 999 octets and more are folded after 998 with CRLF SPACE") {
  // (length, first octet) -> octets of the line's text on each wire line;
  // a continuation line is a SPACE and 997 octets at most.
  struct Row {
    std::size_t len;
    char first;
    std::vector<std::size_t> parts;
  };
  const Row rows[] = {
      {999, 'x', {998, 1}},         {999, '.', {998, 1}},          {1000, '.', {998, 2}},
      {1995, 'y', {998, 997}},      {1996, '.', {998, 997, 1}},    {3000, 'z', {998, 997, 997, 8}},
  };
  for (const auto& r : rows) {
    CAPTURE(r.len);
    CAPTURE(r.first);
    std::string line = r.first + std::string(r.len - 1, 'a');
    std::string w = wire({line + "\r\n"});
    std::string expect;
    std::size_t used = 0;
    for (std::size_t i = 0; i < r.parts.size(); ++i) {
      if (i == 0 && r.first == '.') expect += '.';
      if (i > 0) expect += ' ';
      expect += line.substr(used, r.parts[i]) + "\r\n";
      used += r.parts[i];
    }
    CHECK(used == line.size());
    CHECK(w == expect + ".\r\n");
    CHECK(longest_line(w) <= 999);   // 998 of text, plus at most the stuffing dot
  }
}

TEST_CASE("splits at every position around the dot and the CRLF give the same bytes") {
  const std::string a = "." + octets(997, 1);            // 998, dot first
  const std::string b = "." + std::string(998, '.');     // 999: folded once
  const std::string c = octets(998, 2);
  const std::string body = "H: v\r\n\r\n" + a + "\r\n" + b + "\r\n.\r\n" + c + "\r\n" + a;
  const std::string whole = wire({body});
  CHECK(unstuff(whole) == "H: v\r\n\r\n" + a + "\r\n" + b.substr(0, 998) + "\r\n " + b.substr(998) +
                              "\r\n.\r\n" + c + "\r\n" + a + "\r\n");
  // Every split point within 4 octets of a line start, a dot or a CRLF.
  std::vector<std::size_t> points;
  for (std::size_t i = 0; i <= body.size(); ++i) {
    bool near = false;
    for (std::size_t k = (i >= 4 ? i - 4 : 0); k < std::min(body.size(), i + 4); ++k)
      near = near || body[k] == '\r' || body[k] == '\n' || (body[k] == '.' && (k == 0 || body[k - 1] == '\n'));
    if (near || i % 97 == 0) points.push_back(i);
  }
  CHECK(points.size() > 40);
  for (std::size_t i : points) {
    CAPTURE(i);
    CHECK(wire({body.substr(0, i), body.substr(i)}) == whole);
  }
  // One octet at a time.
  std::vector<std::string> bytes;
  for (char ch : body) bytes.emplace_back(1, ch);
  CHECK(wire(bytes) == whole);
}

TEST_CASE("a large chunk goes out as bounded Sends, not one copy of the message") {
  std::string body;
  while (body.size() < 1024 * 1024) body += ".line of text " + std::to_string(body.size()) + "\r\n";
  std::vector<std::string> writes;
  std::string w = wire({body}, &writes);
  CHECK(unstuff(w) == body);
  REQUIRE(writes.size() > 16);
  for (const auto& x : writes) CHECK(x.size() <= 64 * 1024 + 3);
}

// The rules, one octet at a time: CRLF passes, a bare CR or LF becomes CRLF,
// a line-initial dot is doubled, a line is folded with CRLF SPACE after 998
// octets (the space counts, the transparency dot does not), and the text ends
// with CRLF "." CRLF. The session copies runs of line text at once; whatever
// the input and however it is split, the wire must be what this gives.
static std::string reference_wire(const std::string& body) {
  std::string out;
  bool prev_cr = false, line_start = true;
  std::size_t len = 0;
  for (char c : body) {
    if (prev_cr) {
      prev_cr = false;
      out += '\n';
      line_start = true;
      len = 0;
      if (c == '\n') continue;
    }
    if (c == '\r') {
      out += '\r';
      prev_cr = true;
      continue;
    }
    if (c == '\n') {
      out += "\r\n";
      line_start = true;
      len = 0;
      continue;
    }
    if (len >= 998) {
      out += "\r\n ";
      len = 1;
      line_start = false;
    }
    if (line_start && c == '.') out += '.';
    out += c;
    ++len;
    line_start = false;
  }
  if (prev_cr) {
    out += '\n';
    line_start = true;
  }
  if (!line_start) out += "\r\n";
  return out + ".\r\n";
}

TEST_CASE("random bodies in random pieces: the same wire as the octet-at-a-time rules") {
  std::mt19937 rng(20261205);
  // Mostly text, with CR, LF, dots, NUL and long runs in every mix.
  const char alphabet[] = "ab.\r\n \t\0\x80\xff.";
  for (int round = 0; round < 300; ++round) {
    CAPTURE(round);
    std::string body;
    std::size_t n = rng() % 6000;
    while (body.size() < n) {
      switch (rng() % 5) {
        case 0: body.append(rng() % 1500, static_cast<char>('A' + rng() % 26)); break;   // long lines, folds
        case 1: body += "\r\n."; break;
        default: body += alphabet[rng() % (sizeof alphabet - 1)]; break;
      }
    }
    std::vector<std::string> pieces;
    for (std::size_t i = 0; i < body.size();) {
      std::size_t k = std::min(body.size() - i, static_cast<std::size_t>(1 + rng() % 700));
      pieces.push_back(body.substr(i, k));
      i += k;
    }
    std::vector<std::string> writes;
    CHECK(wire(pieces, &writes) == reference_wire(body));
    for (const auto& x : writes) CHECK(x.size() <= 64 * 1024 + 3);
  }
}
