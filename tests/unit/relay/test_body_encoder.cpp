// BodyEncoder (protocol/body_encoder.h) on its own: the wire form of the
// stored text, and its contract with the caller's buffer (take what fits,
// say how much was taken). The session's use of it, with the dot and the
// Sends, is in test_client_session_body.cpp.
#include <doctest/doctest.h>

#include <random>
#include <string>
#include <string_view>

#include "protocol/body_encoder.h"

using outbox::protocol::client::BodyEncoder;

namespace {

// One encoder, the whole text in one call with no limit, then finish().
std::string encode_all(std::string_view text) {
  BodyEncoder e;
  std::string out;
  CHECK(e.encode(text, out, std::string::npos) == text.size());
  e.finish(out);
  CHECK(e.octets() == text.size());
  return out;
}

}  // namespace

TEST_CASE("body encoder: line ends, transparency and folding, table") {
  struct Row {
    std::string_view in;
    std::string_view wire;
  };
  const std::string long_line(998, 'a');
  const std::string too_long(999, 'a');
  const std::string dotted_long = "." + std::string(997, 'b');   // 998 octets
  const Row rows[] = {
      {"", ""},
      {"a\r\n", "a\r\n"},
      {"a", "a\r\n"},                          // the final dot must start a line
      {"a\nb\n", "a\r\nb\r\n"},                // bare LF: CRLF
      {"a\rb\r", "a\r\nb\r\n"},                // bare CR: CRLF
      {"a\r\r\nb", "a\r\n\r\nb\r\n"},          // CR CR LF: a bare CR, then CRLF
      {".\r\n", "..\r\n"},                     // RFC 5321 §4.5.2
      {"a\r\n.b\r\n..\r\n", "a\r\n..b\r\n...\r\n"},
      {"a.b\r\n", "a.b\r\n"},                  // only at a line start
      {"\n.", "\r\n..\r\n"},
  };
  for (const auto& r : rows) {
    CAPTURE(r.in);
    CHECK(encode_all(r.in) == r.wire);
  }
  // §4.5.3.1.6: 998 octets pass whole; the 999th goes on a folded line.
  CHECK(encode_all(long_line + "\r\n") == long_line + "\r\n");
  CHECK(encode_all(too_long + "\r\n") == long_line + "\r\n a\r\n");
  // The transparency dot is not part of the line's 998.
  CHECK(encode_all(dotted_long + "\r\n") == "." + dotted_long + "\r\n");
}

TEST_CASE("body encoder: any split of the input gives the same octets") {
  const std::string text = "Subject: x\r\n\r\n.line\r\nbare\nlf\rcr\r\n" + std::string(2500, 'z') + "\r\n.\r\nend";
  const std::string whole = encode_all(text);
  for (std::size_t cut = 0; cut <= text.size(); ++cut) {
    BodyEncoder e;
    std::string out;
    CHECK(e.encode(std::string_view(text).substr(0, cut), out, std::string::npos) == cut);
    CHECK(e.encode(std::string_view(text).substr(cut), out, std::string::npos) == text.size() - cut);
    e.finish(out);
    CHECK(out == whole);
  }
  // A CR ending one chunk and an LF starting the next are one CRLF.
  BodyEncoder e;
  std::string out;
  e.encode("a\r", out, std::string::npos);
  e.encode("\nb", out, std::string::npos);
  e.finish(out);
  CHECK(out == "a\r\nb\r\n");
}

TEST_CASE("body encoder: it stops at the caller's limit and says how much it took") {
  std::mt19937 rng(13);
  const std::string_view alphabet = "ab.\r\n";
  for (int round = 0; round < 300; ++round) {
    std::string text(std::uniform_int_distribution<std::size_t>(0, 5000)(rng), 'x');
    for (auto& c : text) c = alphabet[std::uniform_int_distribution<std::size_t>(0, alphabet.size() - 1)(rng)];
    if (round % 3 == 0) text += std::string(3000, 'L');   // folds
    const std::size_t limit = std::uniform_int_distribution<std::size_t>(1, 600)(rng);
    CAPTURE(round);
    CAPTURE(limit);
    BodyEncoder e;
    std::string out, wire;
    std::string_view rest = text;
    int calls = 0;
    while (!rest.empty()) {
      const std::size_t took = e.encode(rest, out, limit);
      REQUIRE(took <= rest.size());
      if (took < rest.size()) REQUIRE(out.size() >= limit);   // it stops only when full...
      CHECK(out.size() <= limit + 4);                         // ...and overshoots by a fold and a dot at most
      rest.remove_prefix(took);
      if (out.size() >= limit) {   // what the session does: write it away
        wire += out;
        out.clear();
      }
      REQUIRE(++calls < 100000);
    }
    e.finish(out);
    wire += out;
    CHECK(e.octets() == text.size());
    CHECK(wire == encode_all(text));
  }
}

TEST_CASE("body encoder: reset starts the next message at a line start") {
  BodyEncoder e;
  std::string out;
  e.encode("half a line\r", out, std::string::npos);
  e.reset();
  out.clear();
  e.encode(".next", out, std::string::npos);
  e.finish(out);
  CHECK(out == "..next\r\n");   // no LF owed to the old message; the dot is at a line start
  CHECK(e.octets() == 5);
}
