// DATA decoding (RFC 5321 §4.1.1.4, §4.5.2) as a byte state machine that
// survives any split of the input across feeds:
//   - the end of data is <CRLF>.<CRLF> and nothing else; the CRLF that ended
//     the DATA command counts as the first one, so "." alone ends an empty
//     message. "\n.\n", "\r.\r", "\n.\r\n", "\r\n.\n" and friends are body
//     bytes (SMTP smuggling, CVE-2023-51764/51765/51766);
//   - a line's leading dot is removed (dot-unstuffing, §4.5.2);
//   - any bare CR, bare LF or NUL anywhere is remembered, so the session can
//     refuse the message after the real end of data (never resync earlier);
//   - output is bounded per call, so memory does not grow with the message.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

namespace outbox::protocol {

class DataDecoder {
 public:
  struct Result {
    std::size_t consumed = 0;
    bool ended = false;  // the final ".\r\n" was consumed
  };

  // Appends decoded body bytes (CRLF line ends kept) to out, stopping at the
  // end of data, at the end of in, or before out would exceed out_limit.
  Result decode(std::string_view in, std::string& out, std::size_t out_limit);
  bool saw_bare_cr_lf_nul() const { return bad_; }
  void reset();

 private:
  enum class State { LineStart, Dot, DotCR, Mid, CR };
  State state_ = State::LineStart;
  bool bad_ = false;
};

}  // namespace outbox::protocol
