// Watches the start of a streamed message body to learn whether the header
// section already holds Date: and Message-ID: (RFC 6409 §8.2, §8.3: a
// submission server adds them only when missing). Field names are matched
// without regard to case (RFC 5322 §1.2.2). The header section ends at the
// first empty line (RFC 5322 §2.1) or, like Postfix's cleanup, at the first
// line that is not a header field; nothing after that counts. Holds no more
// than one field name, whatever the body size.
#pragma once
#include <string>
#include <string_view>

namespace outbox::protocol {

class HeaderScanner {
 public:
  void feed(std::string_view body);
  bool has_date() const { return date_; }
  bool has_message_id() const { return message_id_; }
  // The first Message-ID field's value, unfolded and trimmed, at most
  // kMaxMessageId octets (for the accepted log line, never parsed further).
  static constexpr std::size_t kMaxMessageId = 256;
  std::string message_id() const;
  bool done() const { return state_ == State::Done; }
  void reset();

 private:
  enum class State { LineStart, Name, NameSpace, SkipLine, Done };
  void field_name_ended();

  State state_ = State::LineStart;
  std::string name_;
  bool date_ = false;
  bool message_id_ = false;
  bool capturing_ = false;            // inside the first Message-ID field
  std::string message_id_value_;
};

}  // namespace outbox::protocol
