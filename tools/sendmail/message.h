// The message as outbox-sendmail submits it: stdin collected with the
// sendmail end-of-input rule, split into lines (LF, CRLF or bare CR ends a
// line), header fields for -t / -F, and the DATA wire form (CRLF line ends,
// dot-stuffed, RFC 5321 §4.5.2). Pure: no I/O.
#pragma once
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace outbox::sendmail {

// Collects stdin. Without -i, a line holding only "." (optionally "\r")
// ends the input, as with sendmail and Postfix; what follows is not read.
class InputCollector {
 public:
  explicit InputCollector(bool ignore_dots) : ignore_dots_(ignore_dots) {}
  void feed(std::string_view chunk);
  void finish();                       // end of file
  bool done() const { return done_; }  // a lone "." line was seen
  std::string take() { return std::move(data_); }
  std::size_t size() const { return data_.size(); }

 private:
  void scan();
  bool ignore_dots_;
  bool done_ = false;
  std::string data_;
  std::size_t line_start_ = 0;         // first line not checked yet
};

// Removes NUL bytes, which SMTP cannot carry (RFC 5321 §4.5.2: text is
// 7-bit or 8-bit octets other than NUL; the daemon refuses them with 550):
// a cron job's stray byte must not cost its whole output. Returns how many.
std::size_t strip_nul(std::string& raw);

// Splits on LF, CRLF, CR+LF runs ("\r\r\n" is one line end) and bare CR (a
// line end too: the daemon refuses bare CR in DATA with 550 5.6.0).
std::vector<std::string> split_lines(std::string_view raw);

// RFC 5322 §3.4 address-list: "a@x, Name <b@y>, \"Doe, J\" <c@z> (c), G: d@w;"
// -> the addr-specs in order; display names, comments, group names and
// source routes are dropped; empty groups give nothing.
std::vector<std::string> parse_address_list(std::string_view text);

class Message {
 public:
  explicit Message(std::vector<std::string> lines);

  // Header fields (RFC 5322 §2.2): name, unfolded value.
  bool has_field(std::string_view name) const;
  std::vector<std::string> field_values(std::string_view name) const;
  // The addresses of every To:, Cc: and Bcc: field (sendmail -t).
  std::vector<std::string> header_recipients() const;
  void remove_fields(std::string_view name);   // with their continuation lines
  void append_field(const std::string& line);  // "Name: value", at the end of the header

  bool has_8bit() const;                       // any byte >= 0x80
  // DATA content without the final ".": CRLF line ends, leading dots doubled.
  std::string wire() const;

 private:
  struct Field {
    std::string name;
    std::vector<std::string> lines;
  };
  std::vector<Field> header_;
  bool separator_ = false;                     // an empty line ended the header
  bool header_was_empty_ = false;
  std::vector<std::string> body_;
};

// The From: line added for a message without one (sendmail -F, Postfix's
// cleanup): "From: Name <sender>", or "From: sender" without a name. The name
// is quoted when it holds RFC 5322 specials and RFC 2047-encoded when it is
// not ASCII.
std::string from_field(const std::string& full_name, const std::string& sender);

}  // namespace outbox::sendmail
