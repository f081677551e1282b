// libFuzzer target: the DATA decoder must not depend on how the input is
// split or how small the output buffer is (a smuggling sequence split across
// TCP segments is the classic bug). The first byte seeds the split sizes and
// output limits; the rest is the DATA stream. The decoder is run once over
// the whole input with a big limit and once in fragments with small limits:
// the decoded bytes, where the end of data was found and the bare CR/LF/NUL
// flag must be the same. Also checked against a plain reference reading of
// RFC 5321 §4.1.1.4 / §4.5.2: the end is the first "\r\n.\r\n" (counting the
// CRLF that ended DATA), and the output is the dot-unstuffed text before it.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "protocol/data_decoder.h"

using outbox::protocol::DataDecoder;

namespace {

[[noreturn]] void violated(const char* what) {
  std::fprintf(stderr, "invariant violated: %s\n", what);
  std::abort();
}

struct Outcome {
  std::string out;
  std::size_t consumed = 0;  // input bytes up to and including the end of data
  bool ended = false;
  bool bad = false;
};

Outcome whole(std::string_view in) {
  DataDecoder d;
  Outcome o;
  while (!o.ended && o.consumed < in.size()) {
    auto r = d.decode(in.substr(o.consumed), o.out, o.out.size() + (1 << 20));
    o.consumed += r.consumed;
    o.ended = r.ended;
    if (r.consumed == 0 && !r.ended) violated("no progress with a big limit");
  }
  o.bad = d.saw_bare_cr_lf_nul();
  return o;
}

Outcome fragmented(std::string_view in, std::uint8_t seed) {
  DataDecoder d;
  Outcome o;
  std::uint32_t x = seed * 2654435761u + 1;
  auto next = [&x] {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return x;
  };
  std::size_t pos = 0;
  std::string chunk;
  int stalls = 0;
  while (!o.ended && pos < in.size()) {
    std::size_t n = 1 + next() % 7;
    if (next() % 4 == 0) n = 1 + next() % 300;
    n = std::min(n, in.size() - pos);
    std::string_view piece = in.substr(pos, n);
    // Feed the piece until it is consumed, with small output limits; the
    // session empties its chunk between calls the same way.
    while (!piece.empty() && !o.ended) {
      std::size_t limit = chunk.size() + 1 + next() % 9;
      auto r = d.decode(piece, chunk, limit);
      if (chunk.size() > limit) violated("output over the limit");
      piece.remove_prefix(r.consumed);
      pos += r.consumed;
      o.ended = r.ended;
      if (r.consumed == 0 && !r.ended) {
        if (++stalls > 64) violated("no progress with room in the output");
        o.out += chunk;
        chunk.clear();
      } else {
        stalls = 0;
      }
      if (chunk.size() > 16) {
        o.out += chunk;
        chunk.clear();
      }
    }
  }
  o.out += chunk;
  o.consumed = pos;
  o.bad = d.saw_bare_cr_lf_nul();
  return o;
}

// The reference: first "\r\n.\r\n" with the DATA line's CRLF in front.
Outcome reference(std::string_view in) {
  Outcome o;
  std::string s = "\r\n";
  s.append(in);
  auto end = s.find("\r\n.\r\n");
  std::string_view body = end == std::string::npos ? std::string_view(s) : std::string_view(s).substr(0, end + 2);
  o.ended = end != std::string::npos;
  o.consumed = o.ended ? end + 5 - 2 : in.size();
  // Drop the leading CRLF we added, then unstuff: a "." at a line start goes.
  body.remove_prefix(2);
  bool line_start = true;
  for (std::size_t i = 0; i < body.size(); ++i) {
    char c = body[i];
    if (line_start && c == '.') {
      line_start = false;
      continue;
    }
    o.out += c;
    line_start = c == '\n' && i > 0 && body[i - 1] == '\r';
  }
  return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  std::uint8_t seed = data[0];
  std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  Outcome a = whole(in);
  Outcome b = fragmented(in, seed);
  if (a.ended != b.ended) violated("end of data depends on the split");
  if (a.consumed != b.consumed) violated("consumed bytes depend on the split");
  if (a.out != b.out) violated("output depends on the split");
  if (a.bad != b.bad) violated("bare CR/LF/NUL flag depends on the split");
  // Against the reference only for clean input: with bare CR/LF the decoder's
  // line-start notion is its own (the message is refused anyway).
  bool clean = in.substr(0, a.consumed).find('\0') == std::string_view::npos;
  for (std::size_t i = 0; clean && i < a.consumed; ++i) {
    if (in[i] == '\r' && (i + 1 >= in.size() || in[i + 1] != '\n')) clean = false;
    if (in[i] == '\n' && (i == 0 || in[i - 1] != '\r')) clean = false;
  }
  if (clean && a.consumed > 0 && in[0] == '\n') clean = false;
  if (clean) {
    Outcome r = reference(in);
    if (r.ended != a.ended) violated("end of data differs from RFC 5321 §4.1.1.4");
    if (r.ended && r.consumed != a.consumed) violated("end position differs from the reference");
    if (r.ended && r.out != a.out) violated("unstuffed body differs from the reference");
    if (a.bad) violated("clean input flagged as bare CR/LF/NUL");
  }
  return 0;
}
