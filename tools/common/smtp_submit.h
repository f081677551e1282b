// The SMTP client side of outbox-sendmail: one transaction over a connected
// stream socket (the daemon's Unix socket; a socketpair in tests), and the
// mapping of replies to sysexits codes (SPEC "outbox-sendmail").
//
// All or nothing: every recipient is tried, and DATA is sent only when all of
// them were accepted, so a refused recipient never leaves a partial message
// queued for the others.
#pragma once
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/reply_parser.h"

namespace outbox::sendmail {

// One reply type for the server, the relay client and sendmail:
// protocol::SmtpReply, read with protocol::ReplyParser (RFC 5321 §4.2).
using Reply = protocol::SmtpReply;
// The enhanced status code of a reply ("5.1.1"), "" when it has none.
std::string enhanced_code(const Reply& r);

class ChannelError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// direction '>' for what we send, '<' for what we read; for -v.
using Trace = std::function<void(char direction, std::string_view line)>;

class SmtpChannel {
 public:
  explicit SmtpChannel(int fd, Trace trace = {}) : fd_(fd), trace_(std::move(trace)) {}
  void send_line(std::string_view line);        // appends CRLF
  void send_raw(std::string_view bytes);        // DATA content, not traced
  Reply read_reply(int timeout_ms);             // ChannelError on EOF, timeout, garbage

 private:
  void write_all(std::string_view bytes);
  int fd_;
  Trace trace_;
  protocol::ReplyParser parser_;
};

enum class Stage { Greeting, Ehlo, Mail, Rcpt, Data, EndOfData };

// sysexits code for a non-2xx reply at a stage: 75 on 4xx; on 5xx 77 for
// 5.7.x (policy) and at MAIL, 67 at RCPT, 65 for the content (DATA, or a
// size refusal at MAIL), 69 when the session itself is refused.
int exit_code_for(Stage stage, const Reply& reply);

struct Submission {
  std::string helo = "localhost";
  std::string sender;                    // "" = <>
  std::vector<std::string> recipients;
  std::string data;                      // CRLF, dot-stuffed, without the final "."
  bool body_8bit = false;
  bool smtputf8 = false;
};

struct Timeouts {
  int reply_ms = 300 * 1000;             // RFC 5321 §4.5.3.2: 5 minutes
  int end_of_data_ms = 600 * 1000;       // §4.5.3.2.6: 10 minutes
};

struct SubmitResult {
  int exit_code = 0;                     // 0 = queued
  std::string queue_id;                  // from "250 2.0.0 Ok: queued as ID"
  std::vector<std::string> errors;       // one line each, for stderr
  bool maybe_queued = false;             // connection lost after the final "."
};

SubmitResult submit(SmtpChannel& channel, const Submission& s, const Timeouts& t = {});

}  // namespace outbox::sendmail
