// FromRewriter: the relay's from_header = "rewrite", streamed.
//
// Providers that accept only their own account in From: (QQ, 163, Outlook's
// SendAs) get it there; the author's From: field moves, folded lines and all,
// to Reply-To: (RFC 5322 §3.6.2) unless the message already has one, so
// replies still reach the author. Every other byte is kept.
//
// Only the header block is buffered (up to max_header octets): once the
// separator (the first CRLF CRLF, RFC 5322 §2.1) is seen, the rewritten block
// goes out and every later byte passes through untouched. A header block
// longer than max_header is passed through unchanged (no rewrite): the
// filter's memory stays bounded whatever the message, and such a message is
// not one a provider's From: check would accept anyway. A message with no
// separator at all is all header and is rewritten at finish().
// Pure, single-threaded, no I/O.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

namespace outbox::protocol {

// true when the field (a header line) is named `name` (lower case),
// allowing WSP before the colon (RFC 5322 §4.5.3 obs-optional).
bool field_named(std::string_view line, std::string_view name);

// The rewrite on a complete header block (ending with its last CRLF, without
// the empty line), as rewrite_from did on whole messages.
std::string rewrite_from_header(std::string_view head, std::string_view account);

class FromRewriter {
 public:
  static constexpr std::size_t kMaxHeader = 256 * 1024;

  explicit FromRewriter(std::string account, std::size_t max_header = kMaxHeader);

  // Appends to out what can be sent for these bytes (any split).
  void feed(std::string_view bytes, std::string& out);
  // End of the message: appends what is still held back.
  void finish(std::string& out);

  bool passing_through() const { return state_ != State::Header; }
  bool gave_up() const { return gave_up_; }   // the header block was over max_header

 private:
  enum class State { Header, Body };
  std::string account_;
  std::size_t max_header_;
  State state_ = State::Header;
  bool gave_up_ = false;
  std::string head_;
};

}  // namespace outbox::protocol
