// The maildrop file: one message that outbox-sendmail could not hand to
// outboxd, written by outbox-postdrop into the maildrop directory and read
// back by outboxd, which treats it as untrusted input (anyone in the drop
// group could have written it). Text header lines, then the message:
//
//   OUTBOX-MAILDROP 1
//   time 1796472000                 (submission, s since the epoch)
//   helo host.example.com
//   from app@example.com            ("from " alone: the null sender <>)
//   rcpt user@example.org           (one line per recipient)
//   flags 8bit smtputf8             (either word may be absent)
//   size 1234
//                                   (an empty line)
//   <size bytes: CRLF lines, dot-stuffed, without the final ".">
//
// Pure: no I/O (tests/unit/sendmail/maildrop_file_test.cpp).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "tools/common/smtp_submit.h"

namespace outbox::maildrop {

inline constexpr std::size_t kMaxRecipients = 1000;
inline constexpr std::size_t kMaxHeaderBytes = 1 << 20;   // the lines before the message

struct Entry {
  std::int64_t time = 0;
  sendmail::Submission submission;
};

std::string serialize(const Entry& e);

// nullopt (and *error says why, in words) when the text is not a complete,
// well-formed maildrop file. max_size bounds the message.
std::optional<Entry> parse(std::string_view text, std::uint64_t max_size, std::string* error = nullptr);

}  // namespace outbox::maildrop
