// outbox-sendmail command line: sendmail(8)-compatible options (SPEC
// "outbox-sendmail") turned into an Options value. Pure: no I/O, no
// environment; main.cpp prints the warnings and usage errors.
#pragma once
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace outbox::sendmail {

enum class Mode {
  Send,        // -bm (default): read a message on stdin and submit it
  ListQueue,   // -bp, or invoked as "mailq"
  SmtpStdin,   // -bs: SMTP on stdin/stdout, relayed to the daemon
  Initialize,  // -bi, -I (newaliases): nothing to do, exit 0
  RetryQueue,  // -q: every queued or deferred message due now
};

struct Options {
  Mode mode = Mode::Send;
  bool extract_recipients = false;          // -t
  bool ignore_dots = false;                 // -i, -oi: a lone "." line is data
  bool verbose = false;                     // -v: the SMTP dialogue on stderr
  bool help = false;                        // --help
  bool version = false;                     // --version
  std::optional<std::string> sender;        // -f/-r; "" is the null sender <>
  std::optional<std::string> full_name;     // -F
  std::optional<std::string> config_path;   // -C, --config
  std::vector<std::string> recipients;      // from the arguments, one address each
  std::vector<std::string> warnings;        // options accepted but not understood
};

struct UsageError {
  std::string message;
};

// args excludes argv[0]. invoked_as_mailq: argv[0]'s basename is "mailq".
std::variant<Options, UsageError> parse_arguments(const std::vector<std::string>& args, bool invoked_as_mailq);

// "<a@b>", "Name <a@b>", "a@b" -> "a@b"; "<>" and "" -> "" (null sender);
// nullopt when it is not exactly one address or holds CR/LF/NUL or other
// control bytes that would corrupt the SMTP command.
std::optional<std::string> normalize_sender(const std::string& text);

// false for bytes that must never reach an SMTP command line.
bool is_safe_address(const std::string& address);

}  // namespace outbox::sendmail
