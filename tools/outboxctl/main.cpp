// outboxctl: the command line only. Finds the spool (--spool, or spool.path
// of the configuration), opens it read-only to look and read-write to change
// (SQLite WAL: both work while outboxd runs; a change waits up to 5 s for the
// daemon's write batch and takes effect at once, as the daemon reads the
// spool). The commands themselves live in commands.cpp.
#include <syslog.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <functional>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "daemon/config.h"
#include "daemon/config_check.h"
#include "daemon/password.h"
#include "daemon/upstream_probe.h"
#include "queue/spool.h"
#include "tools/outboxctl/bulk.h"
#include "tools/common/query_client.h"
#include "tools/outboxctl/commands.h"
#include "tools/outboxctl/config_dump.h"
#include "tools/outboxctl/format.h"
#include "tools/outboxctl/oauth2_cmd.h"
#include "daemon/http_client.h"
#include "daemon/oauth2/token_source.h"
#include "daemon/oauth2/token_store.h"
#include "tools/outboxctl/providers.h"
#include "tools/outboxctl/route.h"

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

// The configuration as the commands read it: an unknown key (a typo in a
// part a command does not use) is a warning on stderr, said once per run,
// not a refusal to run (outboxctl check and config stay strict).
outbox::Config load_for_command(const Globals& g) {
  static bool warned = false;
  std::vector<std::string> warnings;
  auto cfg = outbox::load_config(g.config.empty() ? outbox::default_config_path() : g.config, &warnings);
  if (!warned)
    for (const auto& w : warnings) std::cerr << "outboxctl: warning: " << w << "\n";
  warned = true;
  return cfg;
}

// The configuration and its [[upstream]] NAME (oauth2, test-upstream);
// nullptr after saying why on stderr.
const outbox::UpstreamConfig* upstream_for_command(const Globals& g, const std::string& name, outbox::Config& cfg) {
  try {
    cfg = load_for_command(g);
  } catch (const std::exception& e) {
    std::cerr << "outboxctl: " << e.what() << "\n";
    return nullptr;
  }
  for (const auto& u : cfg.upstreams)
    if (u.name == name) return &u;
  std::cerr << "outboxctl: no [[upstream]] named \"" << name << "\" in " << cfg.source << "\n";
  return nullptr;
}

// Reads only what it needs: with --spool, no configuration at all.
int with_spool(const Globals& g, Spool::Mode mode, const std::function<int(Spool&)>& fn) {
  std::string path = g.spool;
  if (path.empty()) {
    try {
      path = load_for_command(g).spool_path;
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
    // writer under load.
    spool->set_busy_timeout(std::chrono::seconds(30));
    // Every change outboxctl makes is logged in operator_log with who made it.
    if (mode == Spool::Mode::ReadWrite) spool->set_operator(static_cast<std::int64_t>(getuid()));
    return fn(*spool);
  } catch (const outbox::queue::SpoolError& e) {
    std::cerr << "outboxctl: " << e.what() << "\n";
    return ctl::kExitFailure;
  }
}

// queue and show for a caller who may not read the spool file (an ordinary
// user): through outboxd's query socket. 0 when it does not apply (go on
// reading the spool), else the exit code of the command run remotely.
// With --spool the caller named a file: it is read, or fails, as such.
std::optional<int> via_daemon(const Globals& g, const std::function<int(outbox::tools::QueryClient&)>& fn) {
  if (!g.spool.empty()) return std::nullopt;
  outbox::Config cfg;
  try {
    cfg = load_for_command(g);
  } catch (const std::exception&) {
    return std::nullopt;   // with_spool says what is wrong with the file
  }
  if (::access(cfg.spool_path.c_str(), R_OK) == 0 || (errno != EACCES && errno != EPERM)) return std::nullopt;
  if (cfg.query_socket.empty()) {
    std::cerr << "outboxctl: cannot read the spool " << cfg.spool_path
              << ": Permission denied (only root and the outbox group may, and [spool] query_socket is off in "
              << cfg.source << ")\n";
    return ctl::kExitFailure;
  }
  std::string error;
  auto client = outbox::tools::QueryClient::open(cfg.query_socket, error);
  if (!client) {
    std::cerr << "outboxctl: cannot read the spool " << cfg.spool_path << " (Permission denied) nor ask outboxd: "
              << error << "\n";
    return ctl::kExitFailure;
  }
  return fn(*client);
}

// The [[upstream]] names of the configuration, in order. With --spool and no
// readable configuration: none (the spool's own rows are still listed).
bool configured_upstreams(const Globals& g, std::vector<std::string>& names,
                          std::map<std::string, std::vector<outbox::queue::RateWindow>>* windows = nullptr) {
  try {
    auto cfg = load_for_command(g);
    for (const auto& u : cfg.upstreams) {
      names.push_back(u.name);
      if (!windows) continue;
      auto& w = (*windows)[u.name];
      for (const auto& [list, recipients] : {std::pair{&u.rate, false}, std::pair{&u.recipient_rate, true}})
        for (const auto& r : *list)
          if (auto rl = outbox::parse_rate_limit(r))
            w.push_back(outbox::queue::RateWindow{rl->count, static_cast<std::int64_t>(rl->per.count()) * 1'000'000, recipients});
    }
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

  // Each of these takes one id, or selects with filters (bulk: counts and
  // asks unless --yes).
  ctl::Filter filter;
  std::string older_than;
  bool yes = false;
  auto add_filters = [&](CLI::App* sub, const char* all_help) {
    auto* one = sub->add_option("id", id, "queue id");
    std::vector<CLI::Option*> opts;
    opts.push_back(sub->add_option("--state", filter.state, "only messages in this state"));
    opts.push_back(sub->add_option("--sender", filter.sender, "envelope sender glob (* ?), <> for the null sender"));
    opts.push_back(sub->add_option("--recipient", filter.recipient, "recipient glob (any recipient matches)"));
    opts.push_back(sub->add_option("--older-than", older_than, "accepted longer ago than this (30m, 2h, 3d)"));
    opts.push_back(sub->add_option("--upstream", filter.upstream, "waiting for this upstream"));
    opts.push_back(sub->add_flag("--all", all, all_help));
    for (auto* o : opts) o->excludes(one);
    sub->add_flag("-y,--yes", yes, "act without asking");
  };
  auto* hold = app.add_subcommand("hold", "keep queued or deferred messages from delivery");
  add_filters(hold, "every queued and deferred message");
  auto* release = app.add_subcommand("release", "let held messages go (due now)");
  add_filters(release, "every held message");
  auto* del = app.add_subcommand("delete", "remove messages from the spool");
  add_filters(del, "every message");
  auto* retry = app.add_subcommand("retry", "make queued or deferred messages due now");
  add_filters(retry, "every queued and deferred message");

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

  std::string route_sender;
  std::optional<std::string> route_rcpt;
  auto* route = app.add_subcommand("route", "which upstreams a sender's mail takes, in which order, with which "
                                            "sender rewriting; whether submission accepts it (sends nothing)");
  route->add_option("sender", route_sender, "envelope sender (<> for the null sender)")->required();
  route->add_option("recipient", route_rcpt, "a recipient address, checked as RCPT TO would");
  route->add_flag("--json", json, "one JSON object");

  bool changed = false;
  auto* config_cmd = app.add_subcommand("config", "the effective configuration as TOML, defaults filled in, secrets "
                                                  "redacted (like postconf)");
  config_cmd->add_flag("-n,--changed", changed, "only values that differ from the defaults (like postconf -n)");

  std::string upstream_name;
  auto* test_up = app.add_subcommand("test-upstream",
                                     "connect to an upstream, negotiate TLS, authenticate, QUIT; explain any failure");
  test_up->add_option("name", upstream_name, "the [[upstream]] name")->required();
  bool verbose = false;
  test_up->add_flag("-v,--verbose", verbose, "print the SMTP dialogue (credentials redacted)");
  std::string probe_timeout = "30s";
  test_up->add_option("--timeout", probe_timeout, "give up after this long in all (default 30s)");

  auto* oauth2_cmd = app.add_subcommand("oauth2", "OAuth2 logins of auth = \"oauth2\" upstreams");
  oauth2_cmd->require_subcommand(1);
  std::string oauth2_name;
  bool browser = false;
  std::string login_timeout = "15m";
  auto* oauth2_login = oauth2_cmd->add_subcommand(
      "login", "log in once (device code; --browser: authorization code with PKCE; client credentials: no "
               "interaction) and store the tokens for outboxd");
  oauth2_login->add_option("name", oauth2_name, "the [[upstream]] name")->required();
  oauth2_login->add_flag("--browser", browser, "sign in through a browser with a loopback redirect (RFC 8252)");
  oauth2_login->add_option("--timeout", login_timeout, "how long to wait for the browser's sign-in (default 15m)");
  auto* oauth2_status = oauth2_cmd->add_subcommand(
      "status", "the stored login: account, scope, access-token expiry, refresh-token age, last refresh (never a token)");
  oauth2_status->add_option("name", oauth2_name, "the [[upstream]] name")->required();
  std::string provider_name;
  auto* providers = app.add_subcommand("providers",
                                       "the provider profiles (provider = \"NAME\"): settings, limits with their "
                                       "sources, and what outbox does with each provider reply");
  providers->add_option("name", provider_name, "one profile (ses:REGION fills the region)");
  providers->add_flag("--json", json, "a JSON array, one object per profile");

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

  if (!older_than.empty()) {
    filter.older_than = outbox::parse_duration(older_than);
    if (!filter.older_than) {
      std::cerr << "outboxctl: --older-than \"" << older_than << "\" is not a duration (30m, 2h, 3d)\n";
      return ctl::kExitUsage;
    }
  }
  filter.all = all;
  for (auto* sub : {hold, release, del, retry})
    if (sub->parsed() && id.empty() && !filter.any()) {
      std::cerr << "outboxctl: " << sub->get_name() << " needs a message id, a filter or --all\n"
                   "Run with --help for more information.\n";
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

  if (config_cmd->parsed()) {
    try {
      auto cfg = outbox::load_config(g.config.empty() ? outbox::default_config_path() : g.config);
      std::cout << ctl::render_config(cfg, changed);
      return ctl::kExitOk;
    } catch (const std::exception& e) {
      std::cerr << "outboxctl: " << e.what() << "\n";
      return ctl::kExitFailure;
    }
  }

  if (route->parsed()) {
    try {
      auto cfg = load_for_command(g);
      return ctl::cmd_route(cfg, route_sender, route_rcpt, json, io);
    } catch (const std::exception& e) {
      std::cerr << "outboxctl: " << e.what() << "\n";
      return ctl::kExitFailure;
    }
  }

  if (oauth2_cmd->parsed()) {
    outbox::Config cfg;
    const outbox::UpstreamConfig* up = upstream_for_command(g, oauth2_name, cfg);
    if (!up) return ctl::kExitFailure;
    if (oauth2_status->parsed()) return ctl::cmd_oauth2_status(cfg, *up, now_us() / 1'000'000, io);
    ctl::LoginOptions lo;
    lo.browser = browser;
    auto t = outbox::parse_duration(login_timeout);
    if (!t || t->count() == 0) {
      std::cerr << "outboxctl: --timeout \"" << login_timeout << "\" is not a duration (90s, 15m)\n";
      return ctl::kExitUsage;
    }
    lo.timeout = *t;
    outbox::http::global_init();
    return ctl::cmd_oauth2_login(cfg, *up, lo, io);
  }
  if (providers->parsed()) return ctl::cmd_providers(provider_name, json, io);

  if (test_up->parsed()) {
    outbox::Config cfg;
    const outbox::UpstreamConfig* up = upstream_for_command(g, upstream_name, cfg);
    if (!up) return ctl::kExitFailure;
    outbox::probe::ProbeOptions po;
    auto total = outbox::parse_duration(probe_timeout);
    if (!total || total->count() == 0) {
      std::cerr << "outboxctl: --timeout \"" << probe_timeout << "\" is not a duration (30s, 2m)\n";
      return ctl::kExitUsage;
    }
    po.total = *total;
    // Each step as it completes, with its time: a stall shows where it is.
    po.on_step = [](const outbox::probe::ProbeStep& s) {
      std::cout << "  " << ctl::probe_step_line(s.stage, s.detail, s.ms) << std::flush;
    };
    if (up->auth == "oauth2") {
      // A fresh token, as outboxd would get after a refusal: proves the
      // refresh works now, and says how long the new token lives.
      namespace o2 = outbox::oauth2;
      outbox::http::global_init();
      o2::Request req;
      req.mode = o2::Mode::Force;
      auto t0 = std::chrono::steady_clock::now();
      o2::Obtained got = o2::obtain(*up, o2::store::dir_for_spool(cfg.spool_path), req);
      long long ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
      if (!got.ok) {
        const o2::Failure& f = *got.failure;
        std::cout << "FAILED: upstream \"" << ctl::printable(up->name) << "\": OAuth2 token: " << f.text
                  << (f.detail.empty() ? "" : " (" + f.detail + ")") << "\n";
        std::cout << "hint: " << f.fix << "\n";
        return ctl::kExitFailure;
      }
      const std::int64_t now_s = o2::wall_clock_now();
      std::cout << "  " << ctl::probe_step_line("oauth2", std::string(got.requested ? "new access token" : "access token") +
                                                              " for " + up->username + ", valid " +
                                                              ctl::human_duration(got.tokens.access_expires_at - now_s) +
                                                              (got.rotated ? "; refresh token rotated" : ""), ms)
                << std::flush;
      po.secret = std::move(got.access_token);
    }
    auto r = outbox::probe::probe_upstream(cfg, *up, po);
    if (verbose || !r.ok)
      for (const auto& line : r.transcript) std::cout << "  " << line << "\n";
    std::cout << (r.ok ? "ok: " : "FAILED: ") << r.summary << "\n";
    if (!r.hint.empty()) std::cout << "hint: " << r.hint << "\n";
    return r.ok ? ctl::kExitOk : ctl::kExitFailure;
  }

  std::int64_t now = now_us();
  if (upstreams->parsed() || resume->parsed()) {
    std::vector<std::string> names;
    std::map<std::string, std::vector<outbox::queue::RateWindow>> windows;
    if (!configured_upstreams(g, names, &windows)) return ctl::kExitFailure;
    if (upstreams->parsed())
      return with_spool(g, Spool::Mode::ReadOnly,
                        [&](Spool& s) { return ctl::cmd_upstreams(s, names, json, now, io, windows); });
    return with_spool(g, Spool::Mode::ReadWrite,
                      [&](Spool& s) { return ctl::cmd_resume(s, resume_name, names, now, io); });
  }
  if (queue_cmd->parsed()) {
    auto remote = via_daemon(g, [&](outbox::tools::QueryClient& c) {
      return ctl::cmd_queue_remote([&](const outbox::query::ListRequest& r) { return c.list(r); }, state, json, now, io);
    });
    if (remote) return *remote;
    return with_spool(g, Spool::Mode::ReadOnly, [&](Spool& s) { return ctl::cmd_queue(s, state, json, now, io); });
  }
  if (show->parsed()) {
    auto remote = via_daemon(g, [&](outbox::tools::QueryClient& c) {
      return ctl::cmd_show_remote([&](const std::string& i) { return c.show(i); }, id, json, body, now, io);
    });
    if (remote) return *remote;
    return with_spool(g, Spool::Mode::ReadOnly, [&](Spool& s) { return ctl::cmd_show(s, id, json, body, now, io); });
  }
  if (stats->parsed()) {
    auto fmt = json ? ctl::StatsFormat::Json : prometheus ? ctl::StatsFormat::Prometheus : ctl::StatsFormat::Human;
    return with_spool(g, Spool::Mode::ReadOnly, [&](Spool& s) { return ctl::cmd_stats(s, fmt, now, io); });
  }
  // Bulk: a filter or --all (`retry --all` alone keeps its one-statement form).
  const bool bulk = id.empty() && filter.any() && !(retry->parsed() && all && !filter.state && !filter.sender &&
                                                      !filter.recipient && !filter.older_than && !filter.upstream);
  if (bulk) {
    ctl::BulkAction a = hold->parsed()      ? ctl::BulkAction::Hold
                        : release->parsed() ? ctl::BulkAction::Release
                        : del->parsed()     ? ctl::BulkAction::Delete
                                            : ctl::BulkAction::Retry;
    ctl::Confirm c{yes, isatty(STDIN_FILENO) == 1 && isatty(STDERR_FILENO) == 1, &std::cin};
    return with_spool(g, Spool::Mode::ReadWrite, [&](Spool& s) {
      return ctl::cmd_bulk(s, a, filter, c, now, io, a == ctl::BulkAction::Delete ? log_to_syslog
                                                                                     : std::function<void(const std::string&)>{});
    });
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
