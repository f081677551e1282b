// MaildropImporter (daemon/maildrop_importer.h) wired as daemon/main.cpp
// wires it: its Adopt is a real Server::adopt_local and its Ledger is
// MaildropImporter::spool_ledger over a real StoreWorker and spool, all on
// a loop run by the test's thread, in a temporary directory. A real Server
// rather than a scripted SMTP peer because nothing here needs a listener:
// adopt_local serves the socketpair directly, so the assertions can be about
// what reached the spool (sender, recipients, uid, import record) instead
// of what a fake peer was told. The two seams are only wrapped, to record
// what went through them (the uid adopt was given, the files forgotten).
// The refusals come from the real server's rules (a sender the file's owner
// may not use for the 5xx, max_connections for the 4xx), and "the spool
// cannot tell" from a real spool whose lookup fails.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <pwd.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "daemon/config.h"
#include "daemon/loop_poster.h"
#include "daemon/maildrop_importer.h"
#include "daemon/server.h"
#include "queue/spool.h"
#include "queue/store_worker.h"
#include "tools/common/maildrop_file.h"
#include "unit/daemon/log_capture.h"
#include "unit/daemon/run_loop.h"
#include "unit/queue/helpers.h"

using namespace std::chrono_literals;
using outbox::daemon::LoopPoster;
using outbox::daemon::MaildropImporter;
using outbox::daemon::Server;
using outbox::daemon::test::log_capture;
using outbox::queue::Spool;
using outbox::queue::StoreWorker;
using outbox::queue::test::TempDir;

namespace {

struct Owner {
  std::uint32_t uid = 0;
  std::string name;
};

// As root, files are given to another user, so that a uid reaching adopt
// can only have come from the file, not from this process.
Owner file_owner() {
  if (::geteuid() == 0)
    if (const passwd* pw = ::getpwnam("nobody")) return {pw->pw_uid, pw->pw_name};
  const passwd* pw = ::getpwuid(::geteuid());
  return {static_cast<std::uint32_t>(::geteuid()), pw ? pw->pw_name : ""};
}

outbox::maildrop::Entry entry(std::string from, std::vector<std::string> rcpts,
                              std::string data = "Subject: cron\r\n\r\nnightly report\r\n") {
  outbox::maildrop::Entry e;
  e.time = 1796472000;
  e.submission.helo = "app.example.test";
  e.submission.sender = std::move(from);
  e.submission.recipients = std::move(rcpts);
  e.submission.data = std::move(data);
  e.submission.body_8bit = true;
  return e;
}

bool exists(const std::string& path) {
  struct stat st{};
  return ::lstat(path.c_str(), &st) == 0;
}

mode_t lmode(const std::string& path) {
  struct stat st{};
  return ::lstat(path.c_str(), &st) == 0 ? st.st_mode : 0;
}

struct Rig {
  TempDir dir;
  std::string spool = dir.file("spool.db");
  std::string drop = dir.file("maildrop");
  Owner owner = file_owner();
  uv_loop_t loop{};
  std::unique_ptr<LoopPoster> poster;
  std::unique_ptr<StoreWorker> store;
  std::unique_ptr<Server> server;
  std::unique_ptr<MaildropImporter> importer;
  std::vector<std::pair<std::uint32_t, std::string>> adopted;   // loop thread
  std::mutex mu;
  std::vector<std::string> forgotten;                           // importer's thread, under mu
  int configs = 0;

  explicit Rig(const std::string& limits = "") {
    REQUIRE(!owner.name.empty());
    std::signal(SIGPIPE, SIG_IGN);   // as outboxd does: the server's write to a session gone away is EPIPE
    log_capture().clear();
    REQUIRE(::mkdir(drop.c_str(), 01770) == 0);
    uv_loop_init(&loop);
    poster = std::make_unique<LoopPoster>(&loop);
    store = std::make_unique<StoreWorker>(spool, [p = poster.get()](std::function<void()> fn) { p->post(std::move(fn)); });
    server = std::make_unique<Server>(&loop, config(limits), *store);
  }
  ~Rig() {
    // The importer first: its stop() may still run a posted adopt, which
    // needs the server.
    importer.reset();
    bool drained = false;
    server->shutdown(0ms, [&] { drained = true; });
    CHECK(run_until([&] { return drained; }));
    server.reset();
    store.reset();
    poster->close();
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (uv_loop_alive(&loop) && std::chrono::steady_clock::now() < deadline) uv_run(&loop, UV_RUN_NOWAIT);
    CHECK(uv_loop_close(&loop) == 0);   // nothing left open behind the importer
  }
  Rig(const Rig&) = delete;
  Rig& operator=(const Rig&) = delete;

  std::shared_ptr<const outbox::Config> config(const std::string& limits) {
    const std::string path = dir.file("outbox" + std::to_string(++configs) + ".toml");
    std::ofstream(path) << "[spool]\npath = \"" << spool << "\"\nmaildrop = \"" << drop << "\"\n"
                        << "[[listen]]\nname = \"local\"\npath = \"" << dir.file("submit.sock") << "\"\n"
                        << "[host]\nname = \"outbox.test\"\ndomain = \"example.test\"\n"
                        << "[[local_user]]\nname = \"" << owner.name << "\"\nmay_send_as = [\"app@example.test\"]\n"
                        << "[[upstream]]\nname = \"local\"\ndeliver = \"maildir:" << dir.file("Maildir") << "\"\n"
                        << "[[route]]\nsender = \"*\"\nupstreams = [\"local\"]\n"
                        << "[limits]\nmax_message_size = \"16K\"\n" << limits;
    return std::make_shared<const outbox::Config>(outbox::load_config(path));
  }

  void start() {
    Server* srv = server.get();
    auto ledger = MaildropImporter::spool_ledger(*store);
    ledger.forget = [this, real = ledger.forget](const std::string& file) {
      {
        std::lock_guard lk(mu);
        forgotten.push_back(file);
      }
      real(file);
    };
    importer = std::make_unique<MaildropImporter>(
        &loop, drop, srv->config().limits.max_message_size,
        [this, srv](int fd, std::uint32_t uid, std::string file) {
          adopted.emplace_back(uid, file);
          return srv->adopt_local(fd, uid, std::move(file));
        },
        std::move(ledger));
    REQUIRE(importer->start());
  }
  // The next scan, without waiting up to 30 s for the importer's timer.
  void restart() {
    importer.reset();
    start();
  }

  bool run_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 20s) {
    return outbox::daemon::test::run_loop_until(&loop, pred, timeout);
  }
  // Until the importer logged what became of `file`, whatever it was: a
  // wrong outcome then fails on its own CHECK, not on a timeout.
  bool decided(const std::string& file, std::chrono::milliseconds timeout = 20s) {
    return run_until([&] { return log_capture().count({"event=maildrop_", "file=" + file}) > 0; }, timeout);
  }
  bool handled(std::uint64_t n) {
    return run_until([&] { return importer->imported() >= n; });
  }

  // Written as outbox-postdrop leaves it: complete, owned by its sender.
  std::string put(const std::string& name, const std::string& text) {
    const std::string path = drop + "/" + name;
    std::ofstream(path, std::ios::binary) << text;
    REQUIRE(::chown(path.c_str(), owner.uid, static_cast<gid_t>(-1)) == 0);
    return path;
  }
  std::string put(const std::string& name, const outbox::maildrop::Entry& e) {
    return put(name, outbox::maildrop::serialize(e));
  }
  std::string corrupt(const std::string& name) const { return drop + "/corrupt/" + name; }
  std::string uid_kv() const { return "uid=" + std::to_string(owner.uid); }

  std::vector<outbox::queue::MessageRecord> queued() { return Spool::open(spool, Spool::Mode::ReadOnly)->list("queued"); }
  std::optional<std::string> import_record(const std::string& file) {
    return Spool::open(spool, Spool::Mode::ReadOnly)->imported_as(file);
  }
  std::string body(const std::string& id) {
    std::string out;
    Spool::open(spool, Spool::Mode::ReadOnly)->read_body(id, [&](std::string_view b) { out.append(b); });
    return out;
  }
  std::vector<std::string> forgotten_files() {
    std::lock_guard lk(mu);
    return forgotten;
  }
  // Spool work on the writer, as the importer's ledger does it.
  void on_writer(std::function<void(Spool&)> work) {
    REQUIRE(outbox::daemon::test::run_on_writer(&loop, *store, std::move(work)));
  }
};

}  // namespace

TEST_CASE("maildrop: a file is submitted as its owner with its envelope, then removed and its record forgotten") {
  Rig rig;
  const std::string name = "1796472000.4242.aaaa";
  const auto e = entry("app@example.test", {"ops@example.org", "dev@example.org"});
  const std::string path = rig.put(name, e);
  rig.start();
  REQUIRE(rig.decided(name));

  // The owner's uid, never the process's, went to the server with the file's name.
  REQUIRE(rig.adopted.size() == 1);
  CHECK(rig.adopted[0].first == rig.owner.uid);
  CHECK(rig.adopted[0].second == name);

  // One message, with what the file said and who owned it.
  auto q = rig.queued();
  REQUIRE(q.size() == 1);
  const auto& m = q[0];
  CHECK(m.sender == "app@example.test");
  REQUIRE(m.recipients.size() == 2);
  CHECK(m.recipients[0].address == "ops@example.org");
  CHECK(m.recipients[1].address == "dev@example.org");
  CHECK(m.uid == std::optional<std::int64_t>(rig.owner.uid));
  CHECK(m.client == "unix");
  CHECK(m.helo == "app.example.test");
  CHECK(m.body_8bit);
  CHECK(rig.body(m.id).find(e.submission.data) != std::string::npos);

  // After the 250: the file is gone, its record forgotten.
  CHECK_FALSE(exists(path));
  CHECK_FALSE(exists(rig.corrupt(name)));
  CHECK(rig.forgotten_files() == std::vector<std::string>{name});
  CHECK(rig.run_until([&] { return !rig.import_record(name); }));
  CHECK(log_capture().count_at(spdlog::level::info, {"maildrop_imported", "id=" + m.id, rig.uid_kv(), "file=" + name,
                                                     "submitted=2026-12-05T12:00:00Z", "nrcpt=2"}) == 1);
  CHECK(rig.importer->imported() == 1);
}

TEST_CASE("maildrop: a file the spool has already taken is removed, not submitted again") {
  Rig rig;
  const std::string name = "1796472000.4242.bbbb";
  // What a crash between the import's commit and the file's removal leaves:
  // the message and its record in the spool, the file still in the maildrop.
  const std::string id = rig.server->next_id();
  auto msg = outbox::queue::test::new_message(id, {"ops@example.org"}, 0, "app@example.test");
  msg.import_key = name;
  const std::string text = "Subject: x\r\n\r\nx\r\n";
  bool stored = false;
  rig.store->store_message(msg, text, "", text.size(), [&](bool ok, std::string) { stored = ok; });
  REQUIRE(rig.run_until([&] { return stored; }));
  REQUIRE(rig.import_record(name) == std::optional<std::string>(id));
  const std::string path = rig.put(name, entry("app@example.test", {"ops@example.org"}));

  rig.start();
  REQUIRE(rig.decided(name));
  CHECK(log_capture().count_at(spdlog::level::info,
                               {"maildrop_imported", "id=" + id, rig.uid_kv(), "file=" + name, "already=yes"}) == 1);
  CHECK(rig.adopted.empty());
  CHECK(rig.queued().size() == 1);
  CHECK_FALSE(exists(path));
  CHECK(rig.forgotten_files() == std::vector<std::string>{name});
  CHECK(rig.run_until([&] { return !rig.import_record(name); }));
}

TEST_CASE("maildrop: when the spool cannot say whether a file was taken, the file waits") {
  Rig rig;
  const std::string name = "1796472000.4242.cccc";
  // A spool whose lookup fails, as a damaged one would: the records' table is gone.
  rig.on_writer([](Spool& s) {
    if (sqlite3_exec(s.handle(), "DROP TABLE maildrop_imports", nullptr, nullptr, nullptr) != SQLITE_OK)
      throw std::runtime_error(sqlite3_errmsg(s.handle()));
  });
  const std::string path = rig.put(name, entry("app@example.test", {"ops@example.org"}));

  rig.start();
  REQUIRE(rig.decided(name));
  CHECK(log_capture().count_at(spdlog::level::warn, {"maildrop_deferred", "file=" + name,
                                                     "cannot tell whether it is queued already", "maildrop_imports"}) == 1);
  CHECK(rig.adopted.empty());
  CHECK(exists(path));
  CHECK_FALSE(exists(rig.corrupt(name)));
  CHECK(rig.importer->imported() == 0);
  CHECK(rig.queued().empty());
}

TEST_CASE("maildrop: a malformed file is moved to corrupt/ and logged, never submitted") {
  Rig rig;
  const std::string good = outbox::maildrop::serialize(entry("app@example.test", {"ops@example.org"}));
  struct Bad {
    std::string name, text, reason;
  };
  const std::vector<Bad> bad = {
      {"1.1.no-magic", "OUTBOX-MAILDROP 2" + good.substr(good.find('\n')), "not a maildrop file"},
      {"1.2.truncated", good.substr(0, good.size() - 3), "truncated or appended to"},
      {"1.3.cr-in-sender", "OUTBOX-MAILDROP 1\ntime 1\nhelo h\nfrom a@example.test\r\nrcpt b@example.test\nflags\nsize 0\n\n",
       "a control byte"},
      {"1.4.no-rcpt", "OUTBOX-MAILDROP 1\ntime 1\nhelo h\nfrom a@example.test\nflags\nsize 0\n\n", "no recipient"},
  };
  for (const auto& b : bad) rig.put(b.name, b.text);

  rig.start();
  REQUIRE(rig.handled(bad.size()));
  CHECK(rig.adopted.empty());
  CHECK(rig.queued().empty());
  CHECK((lmode(rig.drop + "/corrupt") & 07777) == 0700);
  for (const auto& b : bad) {
    CAPTURE(b.name);
    CHECK_FALSE(exists(rig.drop + "/" + b.name));
    CHECK(S_ISREG(lmode(rig.corrupt(b.name))));
    CHECK(log_capture().count_at(spdlog::level::err, {"maildrop_corrupt", "file=" + b.name, rig.uid_kv(), b.reason,
                                                      "kept=" + rig.corrupt(b.name)}) == 1);
  }
}

TEST_CASE("maildrop: a 5xx from the submission sets the file aside; a 4xx leaves it for the next scan") {
  // One connection at most: the test holds it, so the importer's gets 421.
  Rig rig("max_connections = 1\n");

  SUBCASE("5xx: a sender the owner may not use ([[local_user]] may_send_as)") {
    const std::string name = "1796472000.4242.dddd";
    rig.put(name, entry("ceo@example.test", {"ops@example.org"}));
    rig.start();
    REQUIRE(rig.handled(1));
    CHECK(rig.adopted.size() == 1);
    CHECK(rig.queued().empty());
    CHECK_FALSE(exists(rig.drop + "/" + name));
    CHECK(S_ISREG(lmode(rig.corrupt(name))));
    CHECK(log_capture().count_at(spdlog::level::err, {"maildrop_rejected", "file=" + name, rig.uid_kv(), "5.7.1"}) == 1);
    CHECK(rig.forgotten_files().empty());
  }

  SUBCASE("4xx: too many connections now") {
    int held[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, held) == 0);
    REQUIRE(rig.server->adopt_local(held[0], rig.owner.uid, ""));
    const std::string name = "1796472000.4242.eeee";
    const std::string path = rig.put(name, entry("app@example.test", {"ops@example.org"}));
    rig.start();
    REQUIRE(rig.decided(name));
    CHECK(log_capture().count_at(spdlog::level::warn,
                                 {"maildrop_deferred", "file=" + name, rig.uid_kv(), "4.7.0", "maybe_queued=no"}) == 1);
    CHECK(rig.adopted.size() == 1);
    CHECK(exists(path));
    CHECK_FALSE(exists(rig.corrupt(name)));
    CHECK(rig.queued().empty());
    ::close(held[1]);

    // Room again: the next scan takes it.
    rig.server->reload(rig.config(""));
    log_capture().clear();
    rig.restart();
    REQUIRE(rig.decided(name));
    CHECK(log_capture().count({"maildrop_imported", "file=" + name}) == 1);
    CHECK(rig.adopted.size() == 2);
    CHECK(rig.queued().size() == 1);
    CHECK_FALSE(exists(path));
  }
}

TEST_CASE("maildrop: what is not a regular file is never read through: a symlink, a FIFO") {
  Rig rig;
  // A well-formed file outside the maildrop, owned like the others: only
  // the link's following could submit it.
  const std::string target = rig.dir.file("elsewhere");
  const std::string text = outbox::maildrop::serialize(entry("app@example.test", {"ops@example.org"}));
  std::ofstream(target, std::ios::binary) << text;
  REQUIRE(::chown(target.c_str(), rig.owner.uid, static_cast<gid_t>(-1)) == 0);
  const std::string link = "1796472000.4242.link";
  REQUIRE(::symlink(target.c_str(), (rig.drop + "/" + link).c_str()) == 0);
  // Opened for reading, a FIFO without a writer would block the import forever.
  const std::string fifo = "1796472000.4242.pipe";
  REQUIRE(::mkfifo((rig.drop + "/" + fifo).c_str(), 0644) == 0);

  rig.start();
  REQUIRE(rig.handled(2));
  CHECK(rig.adopted.empty());
  CHECK(rig.queued().empty());
  CHECK(S_ISLNK(lmode(rig.corrupt(link))));
  CHECK(S_ISFIFO(lmode(rig.corrupt(fifo))));
  std::ifstream in(target, std::ios::binary);
  CHECK(std::string(std::istreambuf_iterator<char>(in), {}) == text);
  CHECK(log_capture().count_at(spdlog::level::err, {"maildrop_corrupt", "file=" + link, "cannot open it"}) == 1);
  CHECK(log_capture().count_at(spdlog::level::err, {"maildrop_corrupt", "file=" + fifo, "not a regular file"}) == 1);
}

TEST_CASE("maildrop: a corrupt/ planted by someone else is never used; the file stays") {
  // The maildrop is 1770: a member of its group can make `corrupt` before
  // outboxd does. Mail set aside there would leave outbox's hands.
  Rig rig;
  const std::string name = "1796472000.4242.bad";
  rig.put(name, "not a maildrop file\n");
  std::string expect;
  const std::string elsewhere = rig.dir.file("elsewhere");
  SUBCASE("a symlink to another directory") {
    REQUIRE(::mkdir(elsewhere.c_str(), 0700) == 0);
    REQUIRE(::symlink(elsewhere.c_str(), (rig.drop + "/corrupt").c_str()) == 0);
    expect = "corrupt/ cannot be opened as a directory";
  }
  SUBCASE("a directory that others may read") {
    REQUIRE(::mkdir((rig.drop + "/corrupt").c_str(), 0700) == 0);
    REQUIRE(::chmod((rig.drop + "/corrupt").c_str(), 0750) == 0);
    expect = "not outboxd's own directory";
  }
  SUBCASE("a directory of another user") {
    if (::geteuid() != 0) return;   // only root can give one away
    REQUIRE(::mkdir((rig.drop + "/corrupt").c_str(), 0700) == 0);
    REQUIRE(::chown((rig.drop + "/corrupt").c_str(), rig.owner.uid, static_cast<gid_t>(-1)) == 0);
    expect = "not outboxd's own directory";
  }
  rig.start();
  REQUIRE(rig.handled(1));
  CHECK(rig.adopted.empty());
  CHECK(S_ISREG(lmode(rig.drop + "/" + name)));
  CHECK_FALSE(exists(elsewhere + "/" + name));
  CHECK_FALSE(exists(rig.corrupt(name)));
  CHECK(log_capture().count_at(spdlog::level::err, {"maildrop_corrupt", "file=" + name, expect, "hint="}) == 1);
}

TEST_CASE("maildrop: a message over limits.max_message_size is set aside, not submitted") {
  Rig rig;   // max_message_size = 16K
  const std::string body = "Subject: big\r\n\r\n" + std::string(17 * 1024, 'x') + "\r\n";
  // The header says the size: refused by the parser before any submission.
  const std::string said = "1796472000.4242.big1";
  rig.put(said, entry("app@example.test", {"ops@example.org"}, body));
  // Larger than any message plus its header lines may be: refused by its size, unread.
  const std::string huge = "1796472000.4242.big2";
  rig.put(huge, std::string(16 * 1024 + outbox::maildrop::kMaxHeaderBytes + 1, 'x'));

  rig.start();
  REQUIRE(rig.handled(2));
  CHECK(rig.adopted.empty());
  CHECK(rig.queued().empty());
  CHECK(S_ISREG(lmode(rig.corrupt(said))));
  CHECK(S_ISREG(lmode(rig.corrupt(huge))));
  CHECK(log_capture().count_at(spdlog::level::err, {"maildrop_corrupt", "file=" + said, rig.uid_kv(),
                                                    "is larger than 16384 bytes"}) == 1);
  CHECK(log_capture().count_at(spdlog::level::err, {"maildrop_corrupt", "file=" + huge, rig.uid_kv(),
                                                    "larger than limits.max_message_size"}) == 1);
}

TEST_CASE("maildrop: a missing maildrop is made (1770) and watched: a file arriving later is taken") {
  Rig rig;
  REQUIRE(::rmdir(rig.drop.c_str()) == 0);
  rig.start();
  CHECK((lmode(rig.drop) & 07777) == 01770);
  CHECK(log_capture().count_at(spdlog::level::info, {"maildrop_created", "dir=" + rig.drop}) == 1);

  // As outbox-postdrop writes it: tmp.NAME (never taken: it may be half
  // written), then renamed to NAME.
  const std::string name = "1796472000.4242.late";
  const std::string tmp = rig.put("tmp." + name, entry("app@example.test", {"ops@example.org"}));
  REQUIRE(::rename(tmp.c_str(), (rig.drop + "/" + name).c_str()) == 0);
  // inotify at once; 40 s covers the 30 s rescan where the watch is missing.
  REQUIRE(rig.decided(name, 40s));
  CHECK(log_capture().count({"maildrop_imported", "file=" + name}) == 1);
  CHECK(rig.queued().size() == 1);
  CHECK_FALSE(exists(rig.drop + "/" + name));
  CHECK_FALSE(exists(rig.drop + "/corrupt"));
}

TEST_CASE("maildrop: more recipients than limits.max_recipients: one message to all of them") {
  // Through the socket sendmail would send them in two transactions; the
  // file's import record allows one commit, so the second would be refused
  // and the file then removed as imported, its last recipient never queued.
  Rig rig("max_recipients = 2\n");
  const std::string name = "1796472000.4242.many";
  const std::string path = rig.put(name, entry("app@example.test", {"a@example.org", "b@example.org", "c@example.org"}));
  rig.start();
  REQUIRE(rig.decided(name));
  CHECK(log_capture().count({"maildrop_imported", "file=" + name, "nrcpt=3"}) == 1);
  CHECK_FALSE(exists(path));
  auto q = rig.queued();
  REQUIRE(q.size() == 1);
  std::vector<std::string> got;
  for (const auto& r : q[0].recipients) got.push_back(r.address);
  CHECK(got == std::vector<std::string>{"a@example.org", "b@example.org", "c@example.org"});
}
