// BodyEncoder: the stored message text, as the relay sends it between DATA's
// 354 and the final dot (RFC 5321 §4.5.2 transparency, §2.3.8 line ends,
// §4.5.3.1.6 line length). Streamed: chunks of any split go in, their wire
// form is appended to the caller's buffer, which it writes out whenever it
// passes a bound; never one copy of the whole message.
//
// - A line starting with "." gets a second one (transparency).
// - A bare CR or bare LF becomes CRLF: never relayed bare. A CR at the end of
//   one chunk and an LF at the start of the next are one CRLF.
// - A line of up to 998 octets before the CRLF passes unchanged, whatever it
//   starts with. The transparency dot is not part of the line's text (the
//   server removes it), so it is not counted. A longer line is folded after
//   998 octets with CRLF SPACE, as Postfix's smtp_line_length_limit does:
//   sending it whole would break the MUST in §4.5.3.1.6, and some servers
//   cut or refuse such lines.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace outbox::protocol::client {

class BodyEncoder {
 public:
  static constexpr std::size_t kMaxLine = 998;

  // A new message: at a line start, nothing pending.
  void reset() { *this = BodyEncoder{}; }
  // Appends the wire form of `in` to `out` and returns how many octets of
  // `in` it took: all of them, or fewer once `out` holds `limit` octets or
  // more (write `out` away and call again with the rest). Takes at least
  // one octet when `out` is below the limit.
  std::size_t encode(std::string_view in, std::string& out, std::size_t limit);
  // The end of the text: completes a CR left pending and ends an unfinished
  // last line, so that the final "." starts a line of its own.
  void finish(std::string& out);
  std::uint64_t octets() const { return octets_; }   // stored octets taken so far

 private:
  bool line_start_ = true;
  bool prev_cr_ = false;
  std::size_t line_len_ = 0;
  std::uint64_t octets_ = 0;
};

}  // namespace outbox::protocol::client
