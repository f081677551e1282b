#include "tools/outboxctl/commands.h"

#include <openssl/crypto.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>

#include "tools/outboxctl/format.h"
#include "daemon/password.h"
#include "daemon/query_answer.h"

namespace outbox::ctl {

namespace {

constexpr std::size_t kMaxHeaderBytes = 1 << 20;

int no_such_message(const std::string& id, Io io) {
  io.err << "outboxctl: no such message: " << printable(id) << "\n";
  return kExitNoSuchMessage;
}

// After a change did not apply: explain why (exit 1), or say it is gone (3).
int not_applicable(queue::Spool& spool, const std::string& id, const char* what, Io io) {
  auto m = spool.get(id);
  if (!m) return no_such_message(id, io);
  io.err << "outboxctl: " << m->id << " is " << m->state << "; " << what << "\n";
  return kExitFailure;
}

// Interactive password entry: echo off on the terminal, restored on every
// exit path, including ^C.
struct termios g_saved_termios;
volatile std::sig_atomic_t g_termios_saved = 0;

void restore_echo_and_exit(int sig) {
  if (g_termios_saved) tcsetattr(STDIN_FILENO, TCSAFLUSH, &g_saved_termios);
  const char nl = '\n';
  (void)!write(STDERR_FILENO, &nl, 1);
  signal(sig, SIG_DFL);
  raise(sig);
}

std::optional<std::string> read_secret_line(std::istream& in, std::ostream& err, const char* prompt) {
  err << prompt << std::flush;
  struct termios t;
  bool have = tcgetattr(STDIN_FILENO, &t) == 0;
  if (have) {
    g_saved_termios = t;
    g_termios_saved = 1;
    std::signal(SIGINT, restore_echo_and_exit);
    std::signal(SIGTERM, restore_echo_and_exit);
    t.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    t.c_lflag |= ECHONL;
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &t);
  }
  std::string line;
  bool got = static_cast<bool>(std::getline(in, line));
  if (have) {
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &g_saved_termios);
    g_termios_saved = 0;
    std::signal(SIGINT, SIG_DFL);
    std::signal(SIGTERM, SIG_DFL);
  }
  if (!got) return std::nullopt;
  return line;
}

}  // namespace

bool is_listed_state(std::string_view s) {
  for (const char* k : {queue::kQueued, queue::kActive, queue::kDeferred, queue::kHeld, queue::kSent, queue::kFailed})
    if (s == k) return true;
  return false;
}

std::string log_value(std::string_view v) {
  bool quote = v.empty();
  std::string body;
  for (unsigned char c : v) {
    if (c == ' ' || c == '"' || c == '=' || c == '\\') quote = true;
    if (c == '"' || c == '\\') {
      body += '\\';
      body += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      body += buf;
    } else {
      body += static_cast<char>(c);
    }
  }
  return quote ? "\"" + body + "\"" : body;
}

std::string read_headers(queue::Spool& spool, const std::string& id) {
  return query::read_header_section(spool, id, kMaxHeaderBytes);
}

namespace {

// One listed message, as a table row or as an element of the JSON array:
// the same text as dumping the whole array at once, element by element.
void emit_queue_entry(const queue::MessageRecord& m, bool json, bool first, std::int64_t now, Io io) {
  if (!json) {
    if (first) render_queue_header(io.out);
    render_queue_entry(io.out, m, now);
    return;
  }
  std::string obj = dump_json(message_json(m, false));
  obj.pop_back();   // its newline
  std::string indented = "  ";
  for (char c : obj) {
    indented += c;
    if (c == '\n') indented += "  ";
  }
  io.out << (first ? "[\n" : ",\n") << indented;
}

}  // namespace

int cmd_queue(queue::Spool& spool, const std::string& state, bool json, std::int64_t now, Io io, int page_size) {
  if (!state.empty() && !is_listed_state(state)) {
    io.err << "outboxctl: unknown state '" << printable(state)
           << "' (queued, active, deferred, held, sent, failed)\n";
    return kExitUsage;
  }
  auto filter = state.empty() ? std::nullopt : std::optional<std::string>(state);
  std::string after;
  std::uint64_t count = 0, total = 0;
  for (;;) {
    auto page = spool.list_page(filter, after, page_size);
    for (const auto& m : page) {
      emit_queue_entry(m, json, count == 0, now, io);
      ++count;
      total += m.size;
    }
    io.out.flush();
    if (!io.out) return kExitOk;   // the reader went away (EPIPE): nothing more to say
    if (static_cast<int>(page.size()) < page_size) break;
    after = page.back().id;
  }
  if (json)
    io.out << (count == 0 ? "[]\n" : "\n]\n");
  else
    render_queue_footer(io.out, count, total, state);
  return kExitOk;
}

namespace {
std::string others_text(std::int64_t n) {
  return std::to_string(n) + (n == 1 ? " message" : " messages") + " of other users not shown";
}
}  // namespace

int cmd_queue_remote(const ListQuery& ask, const std::string& state, bool json, std::int64_t now, Io io) {
  if (!state.empty() && !is_listed_state(state)) {
    io.err << "outboxctl: unknown state '" << printable(state)
           << "' (queued, active, deferred, held, sent, failed)\n";
    return kExitUsage;
  }
  query::ListRequest req;
  if (!state.empty()) req.state = state;
  req.limit = 500;
  std::uint64_t count = 0, total = 0;
  std::optional<std::int64_t> others;
  for (;;) {
    auto a = ask(req);
    if (const auto* e = std::get_if<query::ErrorAnswer>(&a)) {
      io.err << "outboxctl: cannot list the queue: " << e->error << "\n";
      return kExitFailure;
    }
    const auto& page = std::get<query::ListAnswer>(a);
    if (page.others) others = page.others;
    for (const auto& m : page.messages) {
      emit_queue_entry(m, json, count == 0, now, io);
      ++count;
      total += m.size;
    }
    io.out.flush();
    if (!io.out) return kExitOk;
    if (page.next_after.empty()) break;
    req.after = page.next_after;
  }
  if (json) {
    io.out << (count == 0 ? "[]\n" : "\n]\n");
    if (others && *others > 0) io.err << "outboxctl: " << others_text(*others) << "\n";
  } else {
    render_queue_footer(io.out, count, total, state);
    if (others && *others > 0) io.out << "-- " << others_text(*others) << "\n";
  }
  return kExitOk;
}

int cmd_show_remote(const ShowQuery& ask, const std::string& id, bool json, bool body, std::int64_t now, Io io) {
  if (body) {
    io.err << "outboxctl: show --body reads the spool file itself, which only root and the outbox group may read\n";
    return kExitFailure;
  }
  auto a = ask(id);
  if (const auto* e = std::get_if<query::ErrorAnswer>(&a)) {
    if (e->code == query::ErrorCode::NotFound) return no_such_message(id, io);
    io.err << "outboxctl: cannot show " << printable(id) << ": " << e->error << "\n";
    return kExitFailure;
  }
  const auto& s = std::get<query::ShowAnswer>(a);
  if (json)
    io.out << dump_json(message_json(s.message, true));
  else
    render_message(io.out, s.message, s.headers, now);
  return kExitOk;
}

int cmd_upstreams(queue::Spool& spool, const std::vector<std::string>& configured, bool json, std::int64_t now,
                  Io io, const std::map<std::string, std::vector<queue::RateWindow>>& windows) {
  std::vector<UpstreamRow> rows;
  for (const auto& name : configured) {
    UpstreamRow r;
    r.name = name;
    r.configured = true;
    r.state.name = name;
    rows.push_back(std::move(r));
  }
  for (auto& u : spool.upstream_states()) {
    auto it = std::find_if(rows.begin(), rows.end(), [&](const UpstreamRow& r) { return r.name == u.name; });
    if (it == rows.end()) {
      rows.push_back(UpstreamRow{u.name, false, {}, 0, 0});
      it = rows.end() - 1;
    }
    it->state = std::move(u);
  }
  auto loads = spool.upstream_loads();
  for (auto& r : rows) {
    if (auto w = windows.find(r.name); w != windows.end() && !w->second.empty()) {
      queue::QuotaLedger ledger;
      ledger.set_windows(w->second);
      ledger.restore(spool.quota_ledger(r.name, now - ledger.span()));
      r.quota = ledger.use(now);
    }
    if (auto it = loads.find(r.name); it != loads.end()) {
      r.in_flight = it->second.in_flight;
      r.waiting = it->second.waiting;
    }
  }
  if (json) {
    auto arr = nlohmann::ordered_json::array();
    for (const auto& r : rows) arr.push_back(upstream_json(r, now));
    io.out << dump_json(arr);
  } else {
    render_upstreams(io.out, rows, now);
  }
  return kExitOk;
}

int cmd_resume(queue::Spool& spool, const std::string& name, const std::vector<std::string>& configured,
               std::int64_t now, Io io) {
  switch (spool.resume_upstream(name, now)) {
    case queue::Spool::ResumeResult::Resumed:
      io.out << printable(name) << ": resumed (its waiting messages are due at once)\n";
      return kExitOk;
    case queue::Spool::ResumeResult::NotSuspended:
      io.err << "outboxctl: upstream " << printable(name) << " is not suspended\n";
      return kExitFailure;
    case queue::Spool::ResumeResult::Unknown:
      break;
  }
  if (std::find(configured.begin(), configured.end(), name) != configured.end()) {
    // Configured, but never failed: no row yet.
    io.err << "outboxctl: upstream " << printable(name) << " is not suspended\n";
    return kExitFailure;
  }
  io.err << "outboxctl: no upstream named " << printable(name) << "\n";
  return kExitNoSuchMessage;
}

int cmd_show(queue::Spool& spool, const std::string& id, bool json, bool body, std::int64_t now, Io io) {
  if (body) {
    // Straight through, byte for byte: the stored message is the output.
    bool found = spool.read_body(id, [&](std::string_view b) { io.out.write(b.data(), static_cast<std::streamsize>(b.size())); });
    if (!found) return no_such_message(id, io);
    io.out.flush();
    return io.out ? kExitOk : kExitFailure;
  }
  auto m = spool.get(id);
  if (!m) return no_such_message(id, io);
  if (json)
    io.out << dump_json(message_json(*m, true));
  else
    render_message(io.out, *m, read_headers(spool, id), now);
  return kExitOk;
}

int cmd_hold(queue::Spool& spool, const std::string& id, Io io) {
  if (!spool.hold(std::string_view(id)))
    return not_applicable(spool, id, "only queued or deferred messages can be held", io);
  io.out << id << ": held\n";
  return kExitOk;
}

int cmd_release(queue::Spool& spool, const std::string& id, Io io) {
  if (!spool.release(std::string_view(id))) return not_applicable(spool, id, "it is not held", io);
  auto m = spool.get(id);
  io.out << id << ": released" << (m ? " (" + m->state + ", due now)" : std::string()) << "\n";
  return kExitOk;
}

int cmd_delete(queue::Spool& spool, const std::string& id, Io io,
               const std::function<void(const std::string&)>& log) {
  auto m = spool.get(id);
  if (!m) return no_such_message(id, io);
  // Between get() and remove() the relay may finish it, or retention purge
  // it; whichever: report only what this call removed.
  if (!spool.remove(std::string_view(id))) return no_such_message(id, io);
  std::string to;
  for (const auto& r : m->recipients) to += (to.empty() ? "" : ",") + r.address;
  std::string line = "event=deleted id=" + m->id + " state=" + m->state +
                     " from=" + log_value(m->sender.empty() ? "<>" : m->sender) +
                     " to=" + log_value(to) + " nrcpt=" + std::to_string(m->recipients.size()) +
                     " size=" + std::to_string(m->size);
  io.out << line << "\n";
  if (log) log(line);
  return kExitOk;
}

int cmd_retry(queue::Spool& spool, const std::string& id, bool all, std::int64_t now, Io io) {
  if (all == !id.empty()) {
    io.err << "outboxctl: retry needs a message id or --all (not both)\n";
    return kExitUsage;
  }
  if (all) {
    int n = spool.retry_all(now);
    io.out << n << (n == 1 ? " message" : " messages") << " due now\n";
    return kExitOk;
  }
  if (!spool.retry(id, now))
    return not_applicable(spool, id, "only queued or deferred messages are retried (release held ones)", io);
  // Due now does not mean it goes now when its upstream is suspended: say so,
  // and how to lift it, rather than let the operator wait for nothing.
  auto wait = spool.wait_of(id);
  std::optional<queue::UpstreamState> up;
  if (wait && !wait->upstream.empty()) up = spool.upstream_state(wait->upstream);
  bool up_suspended = up && up->suspended_until && *up->suspended_until > now;
  if (wait && (up_suspended || wait->reason == queue::WaitReason::UpstreamSuspended)) {
    io.out << id << ": due now, but ";
    if (up_suspended)
      io.out << "upstream " << printable(up->name) << " is suspended until " << rfc3339(*up->suspended_until) << " ("
             << suspend_reason_words(up->reason) << "); `outboxctl resume " << printable(up->name)
             << "` to lift it\n";
    else if (!wait->upstream.empty())
      io.out << "it waits for upstream " << printable(wait->upstream) << ", which was suspended; `outboxctl resume "
             << printable(wait->upstream) << "` to lift it\n";
    else
      io.out << "every upstream of its route is suspended; see `outboxctl upstreams`\n";
    return kExitOk;
  }
  io.out << id << ": due now\n";
  return kExitOk;
}

int cmd_stats(queue::Spool& spool, StatsFormat format, std::int64_t now, Io io) {
  auto s = spool.stats();
  switch (format) {
    case StatsFormat::Json:
      io.out << dump_json(stats_json(s, now));
      break;
    case StatsFormat::Prometheus:
      render_prometheus(io.out, s, now);
      break;
    case StatsFormat::Human:
      render_stats(io.out, s, now);
      break;
  }
  return kExitOk;
}

int cmd_hash_password(std::istream& in, bool interactive, Io io) {
  std::string password;
  if (interactive) {
    auto first = read_secret_line(in, io.err, "Password: ");
    if (!first) {
      io.err << "outboxctl: no password read\n";
      return kExitFailure;
    }
    auto second = read_secret_line(in, io.err, "Repeat password: ");
    if (!second || *second != *first) {
      io.err << "outboxctl: the passwords differ\n";
      return kExitFailure;
    }
    password = std::move(*first);
  } else {
    // One line; its line end (LF or CRLF) is not part of the password.
    if (!std::getline(in, password) && password.empty()) {
      io.err << "outboxctl: no password on standard input\n";
      return kExitFailure;
    }
    if (!password.empty() && password.back() == '\r') password.pop_back();
  }
  if (password.empty()) {
    io.err << "outboxctl: refusing an empty password\n";
    return kExitFailure;
  }
  std::string hash;
  try {
    hash = outbox::password::hash_password(password);
  } catch (const std::exception& e) {
    OPENSSL_cleanse(password.data(), password.size());
    io.err << "outboxctl: " << e.what() << "\n";
    return kExitFailure;
  }
  OPENSSL_cleanse(password.data(), password.size());
  io.out << hash << "\n";
  return kExitOk;
}

}  // namespace outbox::ctl
