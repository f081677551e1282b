// outboxd: wiring only. Parse the command line, load the configuration, open
// the spool (StoreWorker), bind the listeners, run the libuv loop until
// SIGTERM/SIGINT, then drain and exit 0.
#include <uv.h>

#include <fcntl.h>
#include <malloc.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <filesystem>
#include <chrono>
#include <memory>
#include <string>
#include <variant>
#include <optional>
#include <stdexcept>
#include <vector>

#include "daemon/config.h"
#include "daemon/config_check.h"
#include "daemon/logging.h"
#include "daemon/http_client.h"
#include "daemon/loop_poster.h"
#include "daemon/maildrop_importer.h"
#include "daemon/spool_reader.h"
#include "daemon/password.h"
#include "daemon/query_service.h"
#include "daemon/relay_thread.h"
#include "daemon/server.h"
#include "daemon/spool_lock.h"
#include "queue/spool.h"
#include "queue/store_worker.h"

#ifdef OUTBOX_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

namespace {

constexpr int kExitConfig = 78;   // sysexits.h EX_CONFIG
constexpr const char* kServiceUser = "outbox";   // systemd/outboxd.service User=
constexpr int kExitSoftware = 70; // EX_SOFTWARE
constexpr int kExitTempFail = 75; // EX_TEMPFAIL: another outboxd holds the spool
constexpr int kExitIoErr = 74;    // EX_IOERR: the spool file is damaged
constexpr auto kCheckBudget = std::chrono::milliseconds(2000);   // of the start, for PRAGMA quick_check
constexpr auto kStopGrace = std::chrono::milliseconds(8000);   // SPEC: exit within 10 s
constexpr std::uint64_t kStatusEveryMs = 30'000;                 // STATUS= refresh

void notify(const std::string& state) {
#ifdef OUTBOX_HAVE_SYSTEMD
  sd_notify(0, state.c_str());
#else
  (void)state;
#endif
}

// The watchdog interval systemd asks for (WatchdogSec=), 0 when none.
std::uint64_t watchdog_usec() {
#ifdef OUTBOX_HAVE_SYSTEMD
  std::uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) > 0) return usec;
#endif
  return 0;
}

// Sockets passed by the service manager (sd_listen_fds(3)). The variables are
// removed from the environment either way so that programs outboxd starts
// (oauth2_token_command) do not believe the sockets are theirs.
std::vector<outbox::daemon::InheritedSocket> inherited_sockets() {
  std::vector<outbox::daemon::InheritedSocket> out;
#ifdef OUTBOX_HAVE_SYSTEMD
  char** names = nullptr;
  int n = sd_listen_fds_with_names(1, &names);
  for (int i = 0; i < n; ++i) {
    std::string name = names && names[i] ? names[i] : "";
    out.push_back({SD_LISTEN_FDS_START + i, name});
  }
  if (names) {
    for (int i = 0; i < n; ++i) std::free(names[i]);
    std::free(names);
  }
#else
  // The protocol itself, for builds without libsystemd: LISTEN_PID must be
  // ours, fds start at 3, LISTEN_FDNAMES is colon-separated.
  const char* pid = std::getenv("LISTEN_PID");
  const char* fds = std::getenv("LISTEN_FDS");
  const char* fdnames = std::getenv("LISTEN_FDNAMES");
  if (pid && fds && std::strtol(pid, nullptr, 10) == static_cast<long>(::getpid())) {
    long n = std::strtol(fds, nullptr, 10);
    std::vector<std::string> names;
    if (fdnames) {
      std::string all = fdnames, cur;
      for (char c : all) {
        if (c == ':') names.push_back(cur), cur.clear();
        else cur += c;
      }
      names.push_back(cur);
    }
    for (long i = 0; i < n && i < 1024; ++i) {
      int fd = 3 + static_cast<int>(i);
      ::fcntl(fd, F_SETFD, FD_CLOEXEC);
      out.push_back({fd, static_cast<std::size_t>(i) < names.size() ? names[i] : ""});
    }
  }
  ::unsetenv("LISTEN_PID");
  ::unsetenv("LISTEN_FDS");
  ::unsetenv("LISTEN_FDNAMES");
#endif
  // systemd names an fd "unknown" when the unit sets no FileDescriptorName=
  // and socket-activate tools do the same: that is no name at all.
  for (auto& s : out)
    if (s.name == "unknown") s.name.clear();
  return out;
}

// The config library links no crypto, so the hash format is checked here:
// a typo must stop the start (or the reload), not lock the user out silently.
std::optional<std::string> bad_password_hash(const outbox::Config& c, const std::string& path) {
  for (std::size_t i = 0; i < c.users.size(); ++i) {
    const auto& u = c.users[i];
    if (!outbox::password::is_valid_hash(u.password_hash))
      return path + ": user[" + std::to_string(i) + "].password_hash: not a $scrypt$ or $pbkdf2-sha256$ hash (user " +
             u.name + "; make one with outboxctl hash-password)";
  }
  return std::nullopt;
}

bool same_listeners(const outbox::Config& a, const outbox::Config& b) {
  if (a.listen.size() != b.listen.size() || a.query_socket != b.query_socket) return false;
  for (std::size_t i = 0; i < a.listen.size(); ++i) {
    const auto &x = a.listen[i], &y = b.listen[i];
    if (x.name != y.name || x.address != y.address || x.path != y.path || x.mode != y.mode || x.group != y.group)
      return false;
  }
  return true;
}

struct Daemon {
  uv_loop_t* loop = nullptr;
  std::shared_ptr<const outbox::Config> config;   // the generation in effect
  std::unique_ptr<outbox::daemon::LoopPoster> poster;
  std::unique_ptr<outbox::queue::StoreWorker> store;
  // Before server and relay: they hold it and are destroyed first.
  std::unique_ptr<outbox::daemon::Alerter> alerter;
  std::unique_ptr<outbox::daemon::Server> server;
  // On a thread and loop of its own; after poster, which it posts to.
  std::unique_ptr<outbox::daemon::RelayThread> relay;
  // After server: it hands the server its sessions, and goes first.
  std::unique_ptr<outbox::daemon::MaildropImporter> maildrop;
  // After poster: destroyed (its reader thread joined) before the poster it posts to.
  std::unique_ptr<outbox::daemon::QueryService> query;
  uv_signal_t sigterm{}, sigint{}, sighup{};
  uv_timer_t relay_grace{};
  uv_timer_t status_timer{}, watchdog_timer{};
  bool watchdog = false;
  std::int64_t watchdog_interval_us = 0;
  bool stopping = false;
  bool server_drained = false, relay_stopped = false;

  void stop(const char* why) {
    if (stopping) return;
    stopping = true;
    if (maildrop) maildrop->stop();   // no new import; the one in progress ends
    uv_timer_stop(&status_timer);
    notify("STOPPING=1\nSTATUS=Stopping: finishing the sessions and deliveries in flight");
    outbox::log::info(outbox::log::Line("stopping").kv("signal", why));
    // Deliveries in flight may finish their message within the grace period;
    // after it their connections are dropped and the messages stay in the
    // spool, retried after the next start (nothing accepted is lost).
    uv_timer_init(loop, &relay_grace);
    relay_grace.data = this;
    uv_timer_start(&relay_grace, [](uv_timer_t* t) { static_cast<Daemon*>(t->data)->relay->abort(); },
                   static_cast<std::uint64_t>(kStopGrace.count()), 0);
    if (query) query->close();
    relay->stop([this] {
      relay_stopped = true;
      uv_timer_stop(&relay_grace);
      maybe_finish();
    });
    server->shutdown(kStopGrace, [this] {
      server_drained = true;
      maybe_finish();
    });
  }

  // SIGHUP (SPEC "systemd": ExecReload): re-read the configuration, the TLS
  // certificate and the upstream secrets without dropping a connection or a
  // message. A bad new configuration is refused, the old one stays. Earlier
  // generations are shared: connections and deliveries in flight finish
  // with the settings they started with, and each generation is freed when
  // its last user ends (400 reloads must not keep 400 configurations).
  std::string config_path;

  void reload() {
    if (stopping) return;
    // sd_notify(3): RELOADING=1 ... READY=1 brackets the reload, whether the
    // new configuration is taken or refused (the daemon serves either way).
    notify("RELOADING=1");
    struct Ready {
      ~Ready() { notify("READY=1"); }
    } ready;
    std::shared_ptr<const outbox::Config> fresh;
    try {
      fresh = std::make_shared<const outbox::Config>(outbox::load_config(config_path));
      if (auto bad = bad_password_hash(*fresh, config_path)) throw std::runtime_error(*bad);
      if (fresh->spool_path != config->spool_path)
        throw std::runtime_error("spool.path changed: restart outboxd to move the spool");
      server->reload(fresh);   // throws when the new certificate or key is unusable
    } catch (const std::exception& e) {
      outbox::log::error(outbox::log::Line("reload").kv("status", "refused").kv("error", e.what())
                             .kv("hint", "the running configuration stays in effect"));
      return;
    }
    if (!same_listeners(*config, *fresh))
      outbox::log::warn(outbox::log::Line("reload").kv("listeners", "unchanged")
                            .kv("hint", "listener changes take effect when outboxd restarts"));
    relay->reload(fresh);
    alerter->configure(fresh->alerts);
    store->set_retention(fresh->retention);
    outbox::log::set_level(fresh->log_level);
    config = std::move(fresh);
    outbox::log::info(outbox::log::Line("reload").kv("status", "ok").kv("config", config_path));
  }

  void maybe_finish() {
    if (!server_drained || !relay_stopped) return;
    uv_close(reinterpret_cast<uv_handle_t*>(&relay_grace), nullptr);
    finish();
  }

  // STATUS= for systemctl status: the messages not finished yet (queued,
  // being delivered, deferred or held), counted on the SpoolReader's own
  // read-only connection: never on the loop thread, never inside the
  // StoreWorker's transaction (where it would delay every 250). A count still
  // running when the next is due is not doubled.
  std::unique_ptr<outbox::daemon::SpoolReader> status_reader;
  bool status_running = false;

  void report_status() {
    if (stopping || status_running) return;
    if (!status_reader) {
      auto* p = poster.get();
      status_reader = std::make_unique<outbox::daemon::SpoolReader>(
          config->spool_path, [p](std::function<void()> fn) { p->post(std::move(fn)); });
    }
    status_running = true;
    auto count = std::make_shared<std::int64_t>(0);
    status_reader->run(
        [count](outbox::queue::Spool& s) {
          *count = s.count_unfinished();   // not stats(): its attempt-history walks cost 0.3-0.9 s at 1M
        },
        [this, count](bool ok, const std::string&) {
          status_running = false;
          if (!ok || stopping) return;
          notify("STATUS=" + std::to_string(*count) + (*count == 1 ? " message" : " messages") + " queued");
        });
  }

  void start_timers() {
    uv_timer_init(loop, &status_timer);
    status_timer.data = this;
    report_status();
    uv_timer_start(&status_timer, [](uv_timer_t* t) { static_cast<Daemon*>(t->data)->report_status(); },
                   kStatusEveryMs, kStatusEveryMs);
    uv_timer_init(loop, &watchdog_timer);
    watchdog_timer.data = this;
    // Half the interval, as sd_watchdog_enabled(3) recommends; the ping comes
    // from the submission loop, and only while the relay's loop has beaten
    // within the interval too: a wedged loop of either stops it and systemd
    // restarts us.
    if (std::uint64_t usec = watchdog_usec(); usec > 0) {
      watchdog = true;
      watchdog_interval_us = static_cast<std::int64_t>(usec);
      std::uint64_t ms = std::max<std::uint64_t>(usec / 2000, 1);
      notify("WATCHDOG=1");
      uv_timer_start(&watchdog_timer, [](uv_timer_t* t) {
        auto* d = static_cast<Daemon*>(t->data);
        if (d->relay && !d->relay->alive_within(d->watchdog_interval_us)) return;
        notify("WATCHDOG=1");
      }, ms, ms);
    }
  }

  void finish() {
    uv_close(reinterpret_cast<uv_handle_t*>(&status_timer), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&watchdog_timer), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&sigterm), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&sigint), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&sighup), nullptr);
    status_reader.reset();   // joins its thread before the poster goes
    store.reset();    // finishes every queued spool request, joins the thread
    poster->close();  // runs the completions that were still pending
  }
};

}  // namespace

int main(int argc, char** argv) {
  // glibc gives the free top of an arena back to the kernel once it passes
  // 128 KiB. The store writer's batches allocate and free a few hundred KiB
  // each, so under load nearly every batch paid madvise(MADV_DONTNEED), a
  // TLB shootdown across the threads and fresh page faults to get the same
  // memory back: 3.9 madvise calls per message and a quarter of outboxd's
  // CPU in the 20-session benchmark (docs/performance.md, "malloc trim").
  // A few MiB kept per arena ends that; fixing the mmap threshold (setting
  // the trim threshold turns off glibc's dynamic one) keeps body buffers of
  // up to 1 MiB out of mmap/munmap too.
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  mallopt(M_TRIM_THRESHOLD, 4 << 20);
  CLI::App app{"outboxd: local mail submission daemon"};
  std::string config_path = outbox::default_config_path();
  bool check = false;
  app.add_option("--config", config_path, "configuration file");
  app.add_flag("--check", check, "validate the configuration and exit");
  app.set_version_flag("--version", std::string("outboxd ") + OUTBOX_VERSION);
  CLI11_PARSE(app, argc, argv);
  // libcurl's global state (the OAuth2 token endpoint), set up while the
  // process has one thread, as curl_global_init(3) asks.
  outbox::http::global_init();

  if (check) {
    // As the unit's User= (systemd/outboxd.service): secrets are checked as
    // the daemon will open them, not as the root that runs --check.
    return outbox::run_check("outboxd", config_path, kServiceUser, [&](const outbox::Config& c) {
      std::vector<std::string> out;
      if (auto bad = bad_password_hash(c, config_path)) out.push_back(*bad);
      return out;
    });
  }
  // Declared before the daemon, so it is released only after the spool is
  // closed (locals are destroyed in reverse order).
  std::optional<outbox::daemon::SpoolLock> spool_lock;
  Daemon d;
  try {
    d.config = std::make_shared<const outbox::Config>(outbox::load_config(config_path));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "outboxd: %s\n", e.what());
    return kExitConfig;
  }
  if (auto bad = bad_password_hash(*d.config, config_path)) {
    std::fprintf(stderr, "outboxd: %s\n", bad->c_str());
    return kExitConfig;
  }
  // Before any thread exists: this edits the environment.
  const auto inherited = inherited_sockets();
  outbox::log::init(d.config->log_level);
  std::signal(SIGPIPE, SIG_IGN);
  // Under a file-size limit (systemd LimitFSIZE=) a full spool must be a write
  // error (EFBIG -> 451 4.3.0), not a signal that kills every session.
  std::signal(SIGXFSZ, SIG_IGN);

  // One daemon per spool, before the spool is opened.
  {
    auto r = outbox::daemon::SpoolLock::acquire(d.config->spool_path);
    if (auto* held = std::get_if<outbox::daemon::SpoolLock::Held>(&r)) {
      std::string who = held->pid ? "outboxd pid " + std::to_string(held->pid) : std::string("another outboxd");
      std::fprintf(stderr, "outboxd: %s already runs on spool %s (it holds %s); stop it first, or give this one "
                   "its own spool.path\n", who.c_str(), d.config->spool_path.c_str(), held->lock_path.c_str());
      outbox::log::error(outbox::log::Line("fatal").kv("spool", d.config->spool_path)
                             .kv("error", "spool in use").kv("holder_pid", static_cast<std::int64_t>(held->pid)));
      return kExitTempFail;
    }
    if (auto* failed = std::get_if<outbox::daemon::SpoolLock::Failed>(&r)) {
      outbox::log::error(outbox::log::Line("fatal").kv("spool", d.config->spool_path).kv("error", failed->error));
      return kExitSoftware;
    }
    spool_lock.emplace(std::move(std::get<outbox::daemon::SpoolLock>(r)));
  }

  // A damaged spool stops the start, saying so (it used to run and answer
  // 451 to everything). Bounded: a spool too large to check within the
  // budget is checked as far as it goes, and the start goes on.
  if (std::error_code ec; std::filesystem::exists(d.config->spool_path, ec)) {
    try {
      auto ro = outbox::queue::Spool::open(d.config->spool_path, outbox::queue::Spool::Mode::ReadOnly);
      auto check = ro->quick_check(kCheckBudget);
      using R = outbox::queue::Spool::Check::Result;
      if (check.result == R::Damaged) {
        std::string first = check.problems.front();
        std::fprintf(stderr, "outboxd: the spool %s is damaged (%s%s); outboxd will not use it. Keep a copy, then "
                     "recover what it holds with: sqlite3 %s .recover | sqlite3 NEW.db\n",
                     d.config->spool_path.c_str(), first.c_str(), check.problems.size() > 1 ? ", ..." : "",
                     d.config->spool_path.c_str());
        outbox::log::error(outbox::log::Line("fatal").kv("spool", d.config->spool_path).kv("error", "spool damaged")
                               .kv("problem", first).kv("problems", check.problems.size()));
        return kExitIoErr;
      }
      outbox::log::info(outbox::log::Line("spool_check")
                            .kv("result", check.result == R::Ok ? "ok" : "unfinished")
                            .kv("budget_ms", static_cast<std::int64_t>(kCheckBudget.count())));
    } catch (const std::exception& e) {
      // Not even readable: the StoreWorker's open below reports it (exit 70).
    }
  }

  d.loop = uv_default_loop();
  d.poster = std::make_unique<outbox::daemon::LoopPoster>(d.loop);
  try {
    auto* poster = d.poster.get();
    d.store = std::make_unique<outbox::queue::StoreWorker>(
        d.config->spool_path, [poster](std::function<void()> fn) { poster->post(std::move(fn)); });
  } catch (const std::exception& e) {
    outbox::log::error(outbox::log::Line("fatal").kv("spool", d.config->spool_path).kv("error", e.what()));
    return kExitSoftware;
  }
  d.store->set_retention(d.config->retention);
  d.store->on_purged([](int n) { outbox::log::info(outbox::log::Line("purged").kv("messages", n)); });
  d.store->on_checkpoint_error([](std::string error) {
    outbox::log::warn(outbox::log::Line("checkpoint_failed").kv("error", error));
  });
  if (d.store->purged_at_start() > 0)
    outbox::log::info(outbox::log::Line("recovered").kv("discarded_incomplete", d.store->purged_at_start()));

  d.alerter = std::make_unique<outbox::daemon::Alerter>(d.config->host_name, d.config->spool_path);
  d.alerter->configure(d.config->alerts);
  d.server = std::make_unique<outbox::daemon::Server>(d.loop, d.config, *d.store);
  d.server->set_alerter(d.alerter.get());
  {
    auto* server = d.server.get();
    d.relay = std::make_unique<outbox::daemon::RelayThread>(
        d.config, *d.store, [server] { return server->next_id(); }, d.alerter.get(), *d.poster);
    auto* relay = d.relay.get();
    d.server->set_on_accepted([relay](const std::string& id, std::string text) { relay->accepted(id, std::move(text)); },
                              [relay] { return relay->keeps_bodies(); });
  }
  try {
    d.server->bind_listeners(inherited);
  } catch (const outbox::daemon::ListenerMismatch& e) {
    std::fprintf(stderr, "outboxd: %s: %s\n", config_path.c_str(), e.what());
    return kExitConfig;
  } catch (const std::exception& e) {
    outbox::log::error(outbox::log::Line("fatal").kv("error", e.what()));
    return kExitSoftware;
  }

  // The queue for every user (SPEC): mailq and outboxctl of any local user
  // ask here; what they see is decided per connection.
  if (!d.config->query_socket.empty()) {
    auto* poster = d.poster.get();
    d.query = std::make_unique<outbox::daemon::QueryService>(
        d.loop, d.config->query_socket, d.config->spool_path,
        [poster](std::function<void()> fn) { poster->post(std::move(fn)); });
    try {
      d.query->start();
    } catch (const std::exception& e) {
      outbox::log::error(outbox::log::Line("fatal").kv("error", e.what()));
      return kExitSoftware;
    }
  }

  uv_signal_init(d.loop, &d.sigterm);
  uv_signal_init(d.loop, &d.sigint);
  uv_signal_init(d.loop, &d.sighup);
  d.sigterm.data = d.sigint.data = d.sighup.data = &d;
  uv_signal_start(&d.sigterm, [](uv_signal_t* s, int) { static_cast<Daemon*>(s->data)->stop("TERM"); }, SIGTERM);
  uv_signal_start(&d.sigint, [](uv_signal_t* s, int) { static_cast<Daemon*>(s->data)->stop("INT"); }, SIGINT);
  d.config_path = config_path;
  uv_signal_start(&d.sighup, [](uv_signal_t* s, int) { static_cast<Daemon*>(s->data)->reload(); }, SIGHUP);

  std::string listeners;
  for (const auto& n : d.server->listener_names()) listeners += (listeners.empty() ? "" : ",") + n;
  outbox::log::info(outbox::log::Line("ready").kv("version", OUTBOX_VERSION).kv("listeners", listeners)
                        .kv("spool", d.config->spool_path).kv("activated", d.server->activated_count()));
  d.relay->start();
  {
    // Mail outbox-sendmail left while outboxd was down, and what arrives later.
    auto* server = d.server.get();
    d.maildrop = std::make_unique<outbox::daemon::MaildropImporter>(
        d.loop, d.config->maildrop, d.config->limits.max_message_size,
        [server](int fd, std::uint32_t uid, std::string file) { return server->adopt_local(fd, uid, std::move(file)); },
        outbox::daemon::MaildropImporter::spool_ledger(*d.store));
    d.maildrop->start();
  }
  notify("READY=1");
  d.start_timers();

  uv_run(d.loop, UV_RUN_DEFAULT);
  d.query.reset();   // joins its reader thread while the poster it posts to still exists
  d.relay.reset();
  d.server.reset();
  d.poster.reset();
  uv_run(d.loop, UV_RUN_NOWAIT);
  uv_loop_close(d.loop);
  outbox::log::info(outbox::log::Line("stopped"));
  return 0;
}
