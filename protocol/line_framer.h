// Command-line framing: splits the input into CRLF-terminated lines without
// ever holding more than one capped line. RFC 5321 §2.3.8: a line ends only
// at CRLF; a bare CR, a bare LF or a NUL makes the line invalid (S2 in the
// security notes: "MAIL ..\nRCPT ..\r\n" must be one bad line, not two
// commands). Over-long lines (RFC 5321 §4.5.3.1.4) are discarded up to the
// next CRLF and reported once, so memory stays bounded. Byte-exact across
// feed boundaries: a CR at the end of one feed pairs with an LF at the start
// of the next.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

namespace outbox::protocol {

class LineFramer {
 public:
  enum class Status {
    NeedMore,  // all input consumed, no line complete yet
    Line,      // line() holds the line, without CRLF
    TooLong,   // a line longer than the cap ended (its bytes were dropped)
    BadBytes,  // a line holding bare CR, bare LF or NUL ended
  };
  struct Result {
    std::size_t consumed = 0;
    Status status = Status::NeedMore;
  };

  // max_octets counts the CRLF, like RFC 5321 §4.5.3.1.4 (512).
  explicit LineFramer(std::size_t max_octets);

  // Consumes input up to and including the end of the next line.
  Result next(std::string_view in);
  const std::string& line() const { return line_; }
  // Forget any partial line (STARTTLS, RFC 3207 §4.2).
  void reset();
  // True when some bytes of an unfinished line are held.
  bool partial() const { return length_ > 0 || cr_; }
  void set_max_octets(std::size_t max_octets) { max_content_ = max_octets - 2; }

 private:
  Status finish();

  std::size_t max_content_;
  std::string line_;
  std::size_t length_ = 0;  // bytes of the current line seen so far
  bool cr_ = false;         // previous byte was a CR
  bool bad_ = false;
  bool taken_ = false;      // line_ holds a finished line
};

}  // namespace outbox::protocol
