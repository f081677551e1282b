// outboxctl: the command line only. Finds the spool (--spool, or spool.path
// of the configuration), opens it read-only to look and read-write to change
// (SQLite WAL: both work while outboxd runs; a change waits up to 5 s for the
// daemon's write batch and takes effect at once, as the daemon reads the
// spool). The commands themselves live in commands.cpp.
#include <sqlite3.h>
#include <syslog.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include "daemon/config.h"
#include "daemon/config_check.h"
#include "daemon/password.h"
#include "daemon/upstream_probe.h"
#include "queue/spool.h"
#include "tools/outboxctl/commands.h"

namespace {

using outbox::queue::Spool;
namespace ctl = outbox::ctl;

std::int64_t now_us() {
  using namespace std::chrono;
  return duration_cast<microseconds>(system_clock::now().time_since_epoch()).count();
}

struct Globals {
  std::string config;   // empty: $OUTBOX_CONFIG or /etc/outbox/outbox.toml
  std::string spool;    // overrides spool.path
};

// Reads only what it needs: with --spool, no configuration at all.
int with_spool(const Globals& g, Spool::Mode mode, const std::function<int(Spool&)>& fn) {
  std::string path = g.spool;
  if (path.empty()) {
    try {
      path = outbox::load_config(g.config.empty() ? outbox::default_config_path() : g.config).spool_path;
    } catch (const std::exception& e) {
      std::cerr << "outboxctl: " << e.what() << "\n";
      return ctl::kExitFailure;
    }
  }
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    // Never create a spool from here: a typo in --spool would look like an empty queue.
    std::cerr << "outboxctl: no spool at " << path << " (has outboxd run with this spool.path?)\n";
    return ctl::kExitFailure;
  }
  try {
    auto spool = Spool::open(path, mode);
    // A change may wait longer than the spool's default for outboxd's
    // writer under load: retry every 0.5 ms for up to 30 s.
    sqlite3_busy_handler(spool->handle(), [](void*, int tries) -> int {
      if (tries >= 60000) return 0;
      usleep(500);
      return 1;
    }, nullptr);
    // Every change outboxctl makes is logged in operator_log with who made it.
    if (mode == Spool::Mode::ReadWrite) spool->set_operator(static_cast<std::int64_t>(getuid()));
    return fn(*spool);
  } catch (const outbox::queue::SpoolError& e) {
    std::cerr << "outboxctl: " << e.what() << "\n";
    return ctl::kExitFailure;
  }
}

// The [[upstream]] names of the configuration, in order. With --spool and no
// readable configuration: none (the spool's own rows are still listed).
bool configured_upstreams(const Globals& g, std::vector<std::string>& names) {
  try {
    auto cfg = outbox::load_config(g.config.empty() ? outbox::default_config_path() : g.config);
    for (const auto& u : cfg.upstreams) names.push_back(u.name);
    return true;
  } catch (const std::exception& e) {
    if (!g.spool.empty() && g.config.empty()) return true;
    std::cerr << "outboxctl: " << e.what() << "\n";
    return false;
  }
}

void log_to_syslog(const std::string& line) {
  openlog("outboxctl", LOG_PID, LOG_MAIL);
  syslog(LOG_INFO, "%s", line.c_str());
  closelog();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"outboxctl: inspect and control the outbox mail queue"};
  app.name("outboxctl");
  app.require_subcommand(1);
  app.fallthrough();   // global options may also follow the command
  Globals g;
  app.add_option("--config", g.config, "configuration file (default: $OUTBOX_CONFIG or /etc/outbox/outbox.toml)");
  app.add_option("--spool", g.spool, "spool database file; overrides spool.path of the configuration");
  app.set_version_flag("--version", std::string("outboxctl ") + OUTBOX_VERSION);

  std::string id, state;
  bool json = false, body = false, all = false, prometheus = false;

  auto* queue_cmd = app.add_subcommand("queue", "list messages (every state unless --state)");
  queue_cmd->add_option("--state", state, "only this state: queued, active, deferred, held, sent, failed");
  queue_cmd->add_flag("--json", json, "a JSON array, one object per message");

  auto* show = app.add_subcommand("show", "one message: envelope, recipients, attempt history, headers");
  show->add_option("id", id, "queue id")->required();
  auto* show_json = show->add_flag("--json", json, "one JSON object, with attempts_history");
  show->add_flag("--body", body, "write the stored message, byte for byte, and nothing else")->excludes(show_json);

  auto* hold = app.add_subcommand("hold", "keep a queued or deferred message from delivery");
  hold->add_option("id", id, "queue id")->required();
  auto* release = app.add_subcommand("release", "let a held message go (due now)");
  release->add_option("id", id, "queue id")->required();
  auto* del = app.add_subcommand("delete", "remove a message from the spool");
  del->add_option("id", id, "queue id")->required();

  auto* retry = app.add_subcommand("retry", "make a queued or deferred message due now");
  auto* retry_id = retry->add_option("id", id, "queue id");
  retry->add_flag("--all", all, "every queued and deferred message")->excludes(retry_id);

  auto* stats = app.add_subcommand("stats", "counts by state, oldest age, recent deliveries and deferrals");
  auto* stats_json = stats->add_flag("--json", json, "one JSON object");
  stats->add_flag("--prometheus", prometheus, "Prometheus text format")->excludes(stats_json);

  auto* upstreams = app.add_subcommand("upstreams",
                                       "each upstream: ok or suspended (until, why), failures, last failure, "
                                       "messages in flight and waiting");
  upstreams->add_flag("--json", json, "a JSON array, one object per upstream");
  std::string resume_name;
  auto* resume = app.add_subcommand("resume", "lift an upstream's suspension now (its waiting mail is due at once)");
  resume->add_option("name", resume_name, "the [[upstream]] name")->required();

  std::string upstream_name;
  auto* test_up = app.add_subcommand("test-upstream",
                                     "connect to an upstream, negotiate TLS, authenticate, QUIT; explain any failure");
  test_up->add_option("name", upstream_name, "the [[upstream]] name")->required();
  bool verbose = false;
  test_up->add_flag("-v,--verbose", verbose, "print the SMTP dialogue (credentials redacted)");

  auto* check = app.add_subcommand("check",
                                   "validate the configuration as outboxd --check does (secrets, TLS files, "
                                   "ports, provider rules), sending no mail");
  auto* hash = app.add_subcommand("hash-password",
                                  "read a password (one line on stdin, or a no-echo prompt on a terminal) "
                                  "and print its password_hash");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);   // prints help, version or the error
    return rc == 0 ? ctl::kExitOk : ctl::kExitUsage;
  }

  if (retry->parsed() && !all && id.empty()) {
    std::cerr << "outboxctl: retry needs a message id or --all\nRun with --help for more information.\n";
    return ctl::kExitUsage;
  }

  // `outboxctl queue | head`: a closed pipe is an EPIPE the streaming listing
  // notices and stops on, not a signal.
  std::signal(SIGPIPE, SIG_IGN);
  ctl::Io io{std::cout, std::cerr};
  if (check->parsed()) {
    std::string path = g.config.empty() ? outbox::default_config_path() : g.config;
    return outbox::run_check("outboxctl", path, "outbox", [&](const outbox::Config& c) {
      std::vector<std::string> out;
      for (std::size_t i = 0; i < c.users.size(); ++i)
        if (!outbox::password::is_valid_hash(c.users[i].password_hash))
          out.push_back(path + ": user[" + std::to_string(i) + "].password_hash: not a $scrypt$ or $pbkdf2-sha256$ "
                        "hash (user " + c.users[i].name + "; make one with outboxctl hash-password)");
      return out;
    });
  }
  if (hash->parsed()) return ctl::cmd_hash_password(std::cin, isatty(STDIN_FILENO) == 1, io);

  if (test_up->parsed()) {
    outbox::Config cfg;
    try {
      cfg = outbox::load_config(g.config.empty() ? outbox::default_config_path() : g.config);
    } catch (const std::exception& e) {
      std::cerr << "outboxctl: " << e.what() << "\n";
      return ctl::kExitFailure;
    }
    const outbox::UpstreamConfig* up = nullptr;
    for (const auto& u : cfg.upstreams)
      if (u.name == upstream_name) up = &u;
    if (!up) {
      std::cerr << "outboxctl: no [[upstream]] named \"" << upstream_name << "\" in " << cfg.source << "\n";
      return ctl::kExitFailure;
    }
    auto r = outbox::probe::probe_upstream(cfg, *up);
    if (verbose || !r.ok)
      for (const auto& line : r.transcript) std::cout << "  " << line << "\n";
    std::cout << (r.ok ? "ok: " : "FAILED: ") << r.summary << "\n";
    if (!r.hint.empty()) std::cout << "hint: " << r.hint << "\n";
    return r.ok ? ctl::kExitOk : ctl::kExitFailure;
  }

  std::int64_t now = now_us();
  if (upstreams->parsed() || resume->parsed()) {
    std::vector<std::string> names;
    if (!configured_upstreams(g, names)) return ctl::kExitFailure;
    if (upstreams->parsed())
      return with_spool(g, Spool::Mode::ReadOnly, [&](Spool& s) { return ctl::cmd_upstreams(s, names, json, now, io); });
    return with_spool(g, Spool::Mode::ReadWrite,
                      [&](Spool& s) { return ctl::cmd_resume(s, resume_name, names, now, io); });
  }
  if (queue_cmd->parsed())
    return with_spool(g, Spool::Mode::ReadOnly, [&](Spool& s) { return ctl::cmd_queue(s, state, json, now, io); });
  if (show->parsed())
    return with_spool(g, Spool::Mode::ReadOnly, [&](Spool& s) { return ctl::cmd_show(s, id, json, body, now, io); });
  if (stats->parsed()) {
    auto fmt = json ? ctl::StatsFormat::Json : prometheus ? ctl::StatsFormat::Prometheus : ctl::StatsFormat::Human;
    return with_spool(g, Spool::Mode::ReadOnly, [&](Spool& s) { return ctl::cmd_stats(s, fmt, now, io); });
  }
  if (hold->parsed())
    return with_spool(g, Spool::Mode::ReadWrite, [&](Spool& s) { return ctl::cmd_hold(s, id, io); });
  if (release->parsed())
    return with_spool(g, Spool::Mode::ReadWrite, [&](Spool& s) { return ctl::cmd_release(s, id, io); });
  if (del->parsed())
    return with_spool(g, Spool::Mode::ReadWrite, [&](Spool& s) { return ctl::cmd_delete(s, id, io, log_to_syslog); });
  if (retry->parsed())
    return with_spool(g, Spool::Mode::ReadWrite, [&](Spool& s) { return ctl::cmd_retry(s, id, all, now, io); });
  return ctl::kExitUsage;
}
