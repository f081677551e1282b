// Replies from an upstream SMTP server, as the relay client reads them.
//
// ReplyParser is incremental, strict and bounded (RFC 5321 §4.2): every line
// is "ddd-text" or "ddd text" (or a bare "ddd") ending in CRLF; a bare CR, a
// bare LF or a NUL anywhere is a protocol error, as is a multi-line reply
// whose lines disagree on the code. Limits are liberal next to the RFC's 512
// octets (real servers send long URLs), but fixed: 4096 octets per line, 100
// lines and 64 KiB per reply. An error is final: the connection is not to be
// trusted any further.
//
// SmtpReply is a value: code, the RFC 3463 enhanced status code parsed from
// the first line (RFC 2034), and the raw text lines. one_line() is what logs,
// `outboxctl show` and DSNs print ("451 4.7.1 Try again later").
//
// Pure C++: no I/O, no clock. Used by protocol/client_session.
#pragma once
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace outbox::protocol {

// RFC 3463 status code class.subject.detail (class 2, 4 or 5).
struct EnhancedStatus {
  int cls = 0;
  int subject = 0;
  int detail = 0;

  std::string str() const;   // "4.7.1"
  // Exactly "c.s.d" (1-3 digits each, class 2/4/5); nothing before or after.
  static std::optional<EnhancedStatus> parse(std::string_view s);
  friend bool operator==(const EnhancedStatus&, const EnhancedStatus&) = default;
};

struct SmtpReply {
  int code = 0;                            // 200..599
  std::optional<EnhancedStatus> enhanced;  // from the first line, when its class matches the code
  std::vector<std::string> lines;          // the text after "ddd-" / "ddd " of each line, as received

  bool positive() const { return code >= 200 && code < 300; }
  bool intermediate() const { return code >= 300 && code < 400; }
  bool transient() const { return code >= 400 && code < 500; }
  bool permanent() const { return code >= 500 && code < 600; }

  // The enhanced code, or the RFC 3463 default for the reply's class (X.0.0).
  EnhancedStatus status() const;
  // The human text: lines joined by one space, each without its repeated
  // enhanced code prefix, trimmed.
  std::string text() const;
  // "CODE [X.Y.Z] text", at most max octets (cut at a UTF-8 boundary, "...").
  std::string one_line(std::size_t max = 900) const;

  // A reply made up locally (e.g. "552 5.3.4 ..." for an over-size message).
  static SmtpReply make(int code, std::optional<EnhancedStatus> enhanced, std::string text);
};

class ReplyParser {
 public:
  struct Limits {
    std::size_t max_line = 4096;        // octets, without CRLF
    std::size_t max_lines = 100;
    std::size_t max_bytes = 64 * 1024;  // per reply, with CRLFs
  };
  enum class Result { NeedMore, Reply, Error };

  ReplyParser() = default;
  explicit ReplyParser(Limits limits) : limits_(limits) {}

  void feed(std::string_view bytes);
  // The next complete reply, if any. After Error, always Error.
  Result next(SmtpReply& out);
  const std::string& error() const { return error_; }
  // Octets fed but not yet returned as part of a reply (a partial reply, or
  // replies not yet taken). RFC 3207 §4.2: none may remain after the 220 to
  // STARTTLS.
  std::size_t buffered() const { return buf_.size() - pos_; }

 private:
  Result fail(std::string why);
  Limits limits_;
  std::string buf_;
  std::size_t pos_ = 0;    // start of the first line not yet consumed
  std::size_t scan_ = 0;   // where the search for the next CRLF resumes
  SmtpReply cur_;          // lines of the reply being assembled
  std::size_t cur_bytes_ = 0;
  std::string error_;
};

}  // namespace outbox::protocol
