#include "tools/sendmail/options.h"

#include <algorithm>

#include "tools/sendmail/message.h"

namespace outbox::sendmail {

namespace {

// Options that take an argument (attached "-Bx" or the next word) and that
// outbox has no use for: accepted so that callers written for sendmail,
// Postfix or Exim keep working (SPEC: -B -N -R -V -L -O -X ...).
constexpr std::string_view kIgnoredWithArgument = "ABLMNORVXhp";
// Flags without an argument that outbox ignores: -G (gateway), -U (initial
// submission), -m (me too), -n (no aliasing), -s, -x, -c.
constexpr std::string_view kIgnoredFlags = "GUmnsxc";

bool has(std::string_view set, char c) { return set.find(c) != std::string_view::npos; }

// Control bytes in an argument: a caller's bug or an injection attempt
// ("x@y\r\nRCPT TO:<...>"); refused before any parsing can hide them.
bool has_control(const std::string& s) {
  return std::any_of(s.begin(), s.end(), [](char ch) {
    auto c = static_cast<unsigned char>(ch);
    return (c < 0x20 && c != '\t') || c == 0x7f;
  });
}

// For messages: control bytes written \xNN, as in the daemon's logs.
std::string printable(const std::string& s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7f) {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += ch;
    }
  }
  return out;
}

std::string trim(std::string s) {
  auto not_space = [](unsigned char c) { return c != ' ' && c != '\t'; };
  s.erase(s.begin(), std::find_if(s.begin(), s.end(), not_space));
  s.erase(std::find_if(s.rbegin(), s.rend(), not_space).base(), s.end());
  return s;
}

}  // namespace

bool is_safe_address(const std::string& address) {
  for (unsigned char c : address)
    if (c < 0x20 || c == 0x7f || c == '<' || c == '>') return false;
  return true;
}

std::optional<std::string> normalize_sender(const std::string& text) {
  if (has_control(text)) return std::nullopt;
  std::string t = trim(text);
  if (t.empty() || t == "<>") return std::string();
  auto list = parse_address_list(t);
  if (list.size() != 1 || !is_safe_address(list[0])) return std::nullopt;
  return list[0];
}

std::variant<Options, UsageError> parse_arguments(const std::vector<std::string>& args, bool invoked_as_mailq) {
  Options o;
  if (invoked_as_mailq) o.mode = Mode::ListQueue;
  std::vector<std::string> words;
  bool options_done = false;
  // Options may follow recipients until "--", as with glibc getopt, which
  // Postfix's sendmail uses on Linux ("sendmail root -oi" works there).
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (options_done || a.size() < 2 || a[0] != '-') {
      words.push_back(a);
      continue;
    }
    if (a == "--") {
      options_done = true;
      continue;
    }
    if (a.rfind("--", 0) == 0) {
      if (a == "--help") o.help = true;
      else if (a == "--version") o.version = true;
      else if (a == "--config") {
        if (i + 1 >= args.size()) return UsageError{"option --config requires an argument"};
        o.config_path = args[++i];
      } else if (a.rfind("--config=", 0) == 0) {
        o.config_path = a.substr(9);
      } else {
        o.warnings.push_back("ignoring unknown option " + a);
      }
      continue;
    }
    // A cluster of short options: "-ti", "-oem", "-FCronDaemon", "-f" "x".
    for (std::size_t j = 1; j < a.size(); ++j) {
      char c = a[j];
      std::string attached = a.substr(j + 1);
      auto argument = [&]() -> std::optional<std::string> {
        j = a.size();
        if (!attached.empty()) return attached;
        if (i + 1 < args.size()) return args[++i];
        return std::nullopt;
      };
      auto missing = [&] { return UsageError{std::string("option -") + c + " requires an argument"}; };
      if (c == 't') {
        o.extract_recipients = true;
      } else if (c == 'i') {
        o.ignore_dots = true;
      } else if (c == 'v') {
        o.verbose = true;
      } else if (c == 'I') {
        o.mode = Mode::Initialize;
      } else if (c == 'q') {
        // -q, -q1h, -qR..., -qS...: outbox has one queue and no queue
        // runner intervals, so every form means "retry everything now".
        o.mode = Mode::RetryQueue;
        j = a.size();
      } else if (c == 'f' || c == 'r') {
        auto v = argument();
        if (!v) return missing();
        auto s = normalize_sender(*v);
        if (!s) return UsageError{"invalid sender address: " + printable(*v)};
        o.sender = *s;
      } else if (c == 'F') {
        auto v = argument();
        if (!v) return missing();
        if (v->find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos)
          return UsageError{"invalid full name: it holds a line break"};
        o.full_name = *v;
      } else if (c == 'C') {
        auto v = argument();
        if (!v) return missing();
        o.config_path = *v;
      } else if (c == 'o') {
        // -oi is "ignore dots"; -oem, -oee, -odb, -oQ..., -o7 and the rest
        // are sendmail queue/error-mode settings with no meaning here.
        auto v = argument();
        if (!v) return missing();
        if (*v == "i") o.ignore_dots = true;
      } else if (c == 'b') {
        auto v = argument();
        if (!v) return missing();
        if (*v == "m") o.mode = Mode::Send;
        else if (*v == "p") o.mode = Mode::ListQueue;
        else if (*v == "s") o.mode = Mode::SmtpStdin;
        else if (*v == "i") o.mode = Mode::Initialize;
        else if (*v == "d" || *v == "D")
          return UsageError{"-b" + *v + " is not supported: outboxd is the daemon (systemctl start outboxd)"};
        else
          return UsageError{"-b" + *v + " is not supported (outbox knows -bm, -bp, -bs and -bi)"};
      } else if (c == 'd') {
        j = a.size();   // sendmail debug flags: "-d0.1"
      } else if (has(kIgnoredWithArgument, c)) {
        if (!argument()) return missing();
      } else if (has(kIgnoredFlags, c)) {
        // accepted, nothing to do
      } else {
        o.warnings.push_back(std::string("ignoring unknown option -") + c);
      }
    }
  }
  if (o.help || o.version) return o;
  for (const auto& w : words) {
    // A word may hold a list: "a@x, Name <b@y>" (sendmail splits on commas).
    if (has_control(w)) return UsageError{"invalid recipient address: " + printable(w)};
    auto list = parse_address_list(w);
    if (list.empty() && o.mode == Mode::Send) return UsageError{"invalid recipient address: " + w};
    for (auto& r : list) {
      if (!is_safe_address(r)) return UsageError{"invalid recipient address: " + w};
      o.recipients.push_back(std::move(r));
    }
  }
  if (o.mode == Mode::Send && !o.extract_recipients && o.recipients.empty())
    return UsageError{"no recipients given (name them as arguments, or use -t to read To:, Cc: and Bcc:)"};
  return o;
}

}  // namespace outbox::sendmail
