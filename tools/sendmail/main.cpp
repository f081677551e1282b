// outbox-sendmail (and mailq by name): sendmail(8)-compatible submission to
// outboxd over its Unix socket (SPEC "outbox-sendmail"). Wiring only: the
// options, the message transform, the SMTP transaction and the mailq layout
// live in the other files of this directory and are unit-tested there.
#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <sysexits.h>
#include <variant>
#include <vector>

#include "daemon/config.h"
#include "queue/spool.h"
#include "tools/sendmail/mailq.h"
#include "tools/sendmail/message.h"
#include "tools/sendmail/options.h"
#include "tools/common/maildrop_file.h"
#include "tools/common/smtp_submit.h"
#include "tools/common/query_client.h"

namespace {

using namespace outbox::sendmail;

constexpr const char* kDefaultSocket = "/run/outbox/submit.sock";
constexpr const char* kDefaultSpool = "/var/lib/outbox/spool.db";
constexpr const char* kDefaultQuerySocket = "/run/outbox/query.sock";

std::string g_prog = "outbox-sendmail";

void say(const std::string& text) { std::fprintf(stderr, "%s: %s\n", g_prog.c_str(), text.c_str()); }

const char* kUsage =
    "usage: %s [options] [--] recipient...\n"
    "       %s -t [options] [recipient...]   (recipients from To:, Cc:, Bcc:)\n"
    "       mailq, %s -bp                    (list the queue)\n"
    "Reads a message on standard input and submits it to outboxd.\n"
    "  -t            add the To:, Cc: and Bcc: recipients; remove Bcc:\n"
    "  -i, -oi       a line holding only \".\" does not end the message\n"
    "  -f ADDR       envelope sender (also -fADDR, -r ADDR; \"<>\" for none)\n"
    "  -F NAME       full name for a From: header when the message has none\n"
    "  -C FILE       configuration file (also --config FILE)\n"
    "  -v            show the SMTP dialogue on standard error\n"
    "  -bp           list the queue      -bs  speak SMTP on standard input\n"
    "  -q            retry every queued or deferred message now\n"
    "  -bi, -I       do nothing (there is no alias database)\n"
    "Accepted and ignored: -B -N -R -V -L -O -X -h -o* -G -U -m -n.\n";

struct Settings {
  std::string socket_path = kDefaultSocket;
  std::string spool_path = kDefaultSpool;
  std::string query_socket = kDefaultQuerySocket;   // "" when [spool] query_socket = "" turns it off
  std::string host_name;
  std::string host_domain;
  bool has_socket = true;
  std::string config_path;
};

// SPEC: the first [[listen]] path; the defaults when the file cannot be
// read. A file that exists but is invalid still lets mail through (cron must
// not lose its report because of a typo), with a warning.
Settings load_settings(const std::optional<std::string>& path) {
  Settings s;
  s.config_path = path ? *path : outbox::default_config_path();
  try {
    // Only the keys sendmail uses matter: an unknown key elsewhere is a
    // warning, not a reason to ignore the file (and submit to the default
    // socket, where no daemon may listen).
    std::vector<std::string> unknown;
    outbox::Config c = outbox::load_config(s.config_path, &unknown);
    for (const auto& w : unknown) say("warning: " + w);
    const outbox::ListenConfig* l = c.first_unix_listener();
    s.has_socket = l != nullptr;
    if (l) s.socket_path = l->path;
    s.spool_path = c.spool_path;
    s.query_socket = c.query_socket;
    s.host_name = c.host_name;
    s.host_domain = c.host_domain;
    return s;
  } catch (const outbox::ConfigError& e) {
    if (::access(s.config_path.c_str(), R_OK) == 0) say(std::string("warning: ") + e.what() + "; using the defaults");
  }
  s.host_name = outbox::machine_fqdn();
  auto dot = s.host_name.find('.');
  s.host_domain = dot == std::string::npos ? s.host_name : s.host_name.substr(dot + 1);
  return s;
}

int connect_or_explain(const Settings& s, int* errno_out = nullptr) {
  if (!s.has_socket) {
    say(s.config_path + " has no [[listen]] with a path (a Unix socket) to submit to");
    return -1;
  }
  int err = 0;
  int fd = outbox::tools::connect_unix_socket(s.socket_path, err);
  if (errno_out) {
    *errno_out = err;
    return fd;   // the caller decides what to say (the maildrop may take it)
  }
  // Not running, or running but no permission: say which (SPEC).
  if (fd < 0) say("cannot submit: " + outbox::tools::explain_connect_error(s.socket_path, err));
  return fd;
}

bool write_all(int fd, const char* p, std::size_t n);

// outbox-postdrop beside this program (both in /usr/sbin under the package).
std::string postdrop_path() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "/usr/sbin/outbox-postdrop";
  std::string self(buf, static_cast<std::size_t>(n));
  return self.substr(0, self.rfind('/') + 1) + "outbox-postdrop";
}

// outboxd is not running: hand the message to outbox-postdrop, which writes
// it into the maildrop (durable once it exits 0); outboxd imports it when it
// starts (SPEC "The maildrop"). "" on success, else why not.
std::string drop_message(const Settings& s, const Submission& sub, std::string& name) {
  outbox::maildrop::Entry e;
  e.time = static_cast<std::int64_t>(std::time(nullptr));
  e.submission = sub;
  const std::string text = outbox::maildrop::serialize(e);
  const std::string prog = postdrop_path();
  int in[2], out[2];
  if (::pipe2(in, O_CLOEXEC) != 0) return std::string("pipe: ") + std::strerror(errno);
  if (::pipe2(out, O_CLOEXEC) != 0) {
    ::close(in[0]);
    ::close(in[1]);
    return std::string("pipe: ") + std::strerror(errno);
  }
  pid_t pid = ::fork();
  if (pid < 0) return std::string("fork: ") + std::strerror(errno);
  if (pid == 0) {
    ::dup2(in[0], STDIN_FILENO);
    ::dup2(out[1], STDOUT_FILENO);
    const char* argv[] = {prog.c_str(), "-C", s.config_path.c_str(), nullptr};
    ::execv(prog.c_str(), const_cast<char* const*>(argv));
    std::fprintf(stderr, "%s: cannot run %s: %s\n", g_prog.c_str(), prog.c_str(), std::strerror(errno));
    ::_exit(EX_UNAVAILABLE);
  }
  ::close(in[0]);
  ::close(out[1]);
  bool wrote = write_all(in[1], text.data(), text.size());
  ::close(in[1]);
  char buf[256];
  for (;;) {
    ssize_t n = ::read(out[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    name.append(buf, static_cast<std::size_t>(n));
  }
  ::close(out[0]);
  while (!name.empty() && name.back() == '\n') name.pop_back();
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && wrote) return "";
  if (WIFEXITED(status)) return prog + " exited with status " + std::to_string(WEXITSTATUS(status));
  return prog + " failed";
}

// The calling user's login name (the default sender's local part).
std::string calling_user() {
  if (const passwd* pw = ::getpwuid(::getuid())) return pw->pw_name;
  return "uid" + std::to_string(::getuid());
}

bool is_ascii(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char ch) { return static_cast<unsigned char>(ch) < 0x80; });
}

int send_message(const Options& o, const Settings& s) {
  InputCollector in(o.ignore_dots);
  char buf[65536];
  while (!in.done()) {
    ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      say(std::string("cannot read the message: ") + std::strerror(errno));
      return EX_IOERR;
    }
    if (n == 0) break;
    in.feed(std::string_view(buf, static_cast<std::size_t>(n)));
  }
  in.finish();
  std::string raw = in.take();
  // Repaired, not refused (exit 65 lost a cron job's output for one byte):
  // NULs go, bare CR and LF become CRLF line ends (split_lines).
  if (std::size_t nul = strip_nul(raw); nul > 0 && o.verbose)
    say("removed " + std::to_string(nul) + " NUL byte" + (nul == 1 ? "" : "s") + " (SMTP cannot carry them)");
  Message msg(split_lines(raw));

  std::string sender = o.sender ? *o.sender : calling_user() + "@" + s.host_domain;
  std::vector<std::string> recipients = o.recipients;
  if (o.extract_recipients) {
    for (auto& r : msg.header_recipients()) {
      if (!is_safe_address(r)) {
        say("invalid recipient address in the header: " + r);
        return EX_DATAERR;
      }
      recipients.push_back(std::move(r));
    }
    msg.remove_fields("Bcc");
  }
  std::set<std::string> seen;
  recipients.erase(std::remove_if(recipients.begin(), recipients.end(),
                                  [&](const std::string& r) { return !seen.insert(r).second; }),
                   recipients.end());
  if (recipients.empty()) {
    say("no recipient addresses found in the message header");
    return EX_USAGE;
  }
  // RFC 5322 §3.6 requires From:; like Postfix's cleanup for sendmail(1)
  // mail, a missing one names the envelope sender (with -F's full name).
  if (!msg.has_field("From") && !sender.empty()) msg.append_field(from_field(o.full_name.value_or(""), sender));

  Submission sub;
  sub.helo = s.host_name.empty() ? "localhost" : s.host_name;
  sub.sender = sender;
  sub.recipients = recipients;
  sub.data = msg.wire();
  sub.body_8bit = msg.has_8bit();
  sub.smtputf8 = !is_ascii(sender) ||
                 std::any_of(recipients.begin(), recipients.end(), [](const std::string& r) { return !is_ascii(r); });

  int err = 0;
  int fd = connect_or_explain(s, &err);
  if (fd < 0) {
    if (!s.has_socket) return EX_CONFIG;
    // Not running (no socket, or nobody listening): the maildrop keeps the
    // message, as Postfix's postdrop does; cron's output is never lost. A
    // permission error is not "not running": it is said, not hidden.
    if (err == ENOENT || err == ECONNREFUSED) {
      std::string name;
      std::string why = drop_message(s, sub, name);
      if (why.empty()) {
        if (o.verbose) say("outboxd is not running: the message waits in the maildrop (" + name + ")");
        return EX_OK;
      }
      say("cannot submit: " + outbox::tools::explain_connect_error(s.socket_path, err) +
          "; the maildrop did not take it either: " + why);
      return EX_TEMPFAIL;
    }
    say("cannot submit: " + outbox::tools::explain_connect_error(s.socket_path, err));
    return EX_TEMPFAIL;
  }
  Trace trace;
  if (o.verbose)
    trace = [](char dir, std::string_view line) {
      std::fprintf(stderr, "%s %.*s\n", dir == '>' ? ">>>" : "<<<", static_cast<int>(line.size()), line.data());
    };
  SmtpChannel channel(fd, trace);
  SubmitResult r = submit(channel, sub);
  ::close(fd);
  for (const auto& e : r.errors) say(e);
  if (r.exit_code == 0 && o.verbose) say("queued as " + r.queue_id);
  return r.exit_code;
}

bool write_all(int fd, const char* p, std::size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

// -bs: the caller speaks SMTP; bytes go through unchanged except that a bare
// LF from the caller becomes CRLF (sendmail -bs accepts LF line ends, the
// daemon does not: RFC 5321 §2.3.8).
int smtp_stdin(const Settings& s) {
  int fd = connect_or_explain(s);
  if (fd < 0) {
    const char* reply = "421 4.3.0 outboxd is not available, try again later\r\n";
    write_all(STDOUT_FILENO, reply, std::strlen(reply));
    return s.has_socket ? EX_TEMPFAIL : EX_CONFIG;
  }
  bool stdin_open = true, prev_cr = false;
  char buf[65536];
  std::string out;
  for (;;) {
    pollfd p[2] = {{fd, POLLIN, 0}, {stdin_open ? STDIN_FILENO : -1, POLLIN, 0}};
    if (::poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0 || !write_all(STDOUT_FILENO, buf, static_cast<std::size_t>(n))) break;
    }
    if (stdin_open && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
      ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        stdin_open = false;
        ::shutdown(fd, SHUT_WR);
        continue;
      }
      out.clear();
      for (ssize_t i = 0; i < n; ++i) {
        if (buf[i] == '\n' && !prev_cr) out += '\r';
        out += buf[i];
        prev_cr = buf[i] == '\r';
      }
      if (!write_all(fd, out.data(), out.size())) break;
    }
  }
  ::close(fd);
  return EX_OK;
}

std::unique_ptr<outbox::queue::Spool> open_spool(const Settings& s, outbox::queue::Spool::Mode mode) {
  // ReadWrite would create a missing database: a wrong spool.path must show.
  if (::access(s.spool_path.c_str(), F_OK) != 0) {
    say("cannot open the queue " + s.spool_path + ": " + std::strerror(errno));
    return nullptr;
  }
  try {
    return outbox::queue::Spool::open(s.spool_path, mode);
  } catch (const std::exception& e) {
    say("cannot open the queue " + s.spool_path + ": " + e.what());
    return nullptr;
  }
}

// A user who may not read the spool file asks outboxd, which lists that
// user's own messages and counts the others (SPEC "The queue for every user").
int list_queue_via_daemon(const Settings& s) {
  if (s.query_socket.empty()) {
    say("cannot open the queue " + s.spool_path + ": " + std::strerror(EACCES) +
        " (only root and the outbox group read it, and [spool] query_socket is off in " + s.config_path + ")");
    return EX_UNAVAILABLE;
  }
  std::string error;
  auto client = outbox::tools::QueryClient::open(s.query_socket, error);
  if (!client) {
    say("cannot list the queue: " + error);
    return EX_UNAVAILABLE;
  }
  std::vector<outbox::queue::MessageRecord> mine;
  std::optional<std::int64_t> others;
  outbox::query::ListRequest req;
  req.unfinished = true;
  req.limit = outbox::query::kMaxPage;
  for (;;) {
    auto a = client->list(req);
    if (auto* e = std::get_if<outbox::query::ErrorAnswer>(&a)) {
      say("cannot list the queue: " + e->error);
      return EX_UNAVAILABLE;
    }
    auto& page = std::get<outbox::query::ListAnswer>(a);
    if (page.others) others = page.others;
    for (auto& m : page.messages) mine.push_back(std::move(m));
    if (page.next_after.empty()) break;
    req.after = page.next_after;
  }
  std::fputs(format_mailq(mine, others).c_str(), stdout);
  return std::fflush(stdout) == 0 ? EX_OK : EX_IOERR;
}

int list_queue(const Settings& s) {
  // Root and the outbox group read the spool themselves, with or without
  // outboxd (Postfix's mailq likewise reads the queue when its daemon is down).
  if (::access(s.spool_path.c_str(), R_OK) != 0 && (errno == EACCES || errno == EPERM))
    return list_queue_via_daemon(s);
  auto spool = open_spool(s, outbox::queue::Spool::Mode::ReadOnly);
  if (!spool) return EX_UNAVAILABLE;
  try {
    std::fputs(format_mailq(spool->list()).c_str(), stdout);
  } catch (const std::exception& e) {
    say("cannot read the queue " + s.spool_path + ": " + e.what());
    return EX_UNAVAILABLE;
  }
  return std::fflush(stdout) == 0 ? EX_OK : EX_IOERR;
}

int retry_queue(const Settings& s, bool verbose) {
  auto spool = open_spool(s, outbox::queue::Spool::Mode::ReadWrite);
  if (!spool) return EX_UNAVAILABLE;
  // An operator action like `outboxctl retry --all`: logged with the uid in
  // operator_log, so outboxd picks it up within a second and says who.
  spool->set_operator(static_cast<std::int64_t>(getuid()));
  try {
    auto now = std::chrono::duration_cast<std::chrono::microseconds>(
                   std::chrono::system_clock::now().time_since_epoch()).count();
    int due = spool->retry_all(now);
    if (verbose) say(std::to_string(due) + " message" + (due == 1 ? "" : "s") + " due now");
  } catch (const std::exception& e) {
    say("cannot update the queue " + s.spool_path + ": " + e.what());
    return EX_UNAVAILABLE;
  }
  return EX_OK;
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  if (argc > 0 && argv[0]) {
    std::string a0 = argv[0];
    g_prog = a0.substr(a0.rfind('/') == std::string::npos ? 0 : a0.rfind('/') + 1);
    if (g_prog.empty()) g_prog = "outbox-sendmail";
  }
  if (g_prog == "newaliases") return EX_OK;   // no alias database to rebuild, like -bi
  std::vector<std::string> args(argv + (argc > 0 ? 1 : 0), argv + argc);
  // outbox-mailq: the package's own name for mailq, which it cannot take
  // from another MTA (the plain names come from update-alternatives).
  auto parsed = parse_arguments(args, g_prog == "mailq" || g_prog == "outbox-mailq");
  if (auto* err = std::get_if<UsageError>(&parsed)) {
    say(err->message);
    std::fprintf(stderr, "Try '%s --help' for more information.\n", g_prog.c_str());
    return EX_USAGE;
  }
  const Options& o = std::get<Options>(parsed);
  for (const auto& w : o.warnings) say("warning: " + w);
  if (o.help) {
    std::printf(kUsage, g_prog.c_str(), g_prog.c_str(), g_prog.c_str());
    return EX_OK;
  }
  if (o.version) {
    std::printf("%s %s\n", g_prog.c_str(), OUTBOX_VERSION);
    return EX_OK;
  }
  if (o.mode == Mode::Initialize) return EX_OK;

  Settings s = load_settings(o.config_path);
  switch (o.mode) {
    case Mode::ListQueue: return list_queue(s);
    case Mode::RetryQueue: return retry_queue(s, o.verbose);
    case Mode::SmtpStdin: return smtp_stdin(s);
    case Mode::Send:
    case Mode::Initialize: break;
  }
  return send_message(o, s);
}
