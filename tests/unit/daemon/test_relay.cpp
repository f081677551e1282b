// Relay itself (daemon/relay.h), on a loop run by the test's thread, against
// a real spool, StoreWorker and maildir upstreams (no network): delivery, one
// connection reused message after message, recovery of a crashed delivery
// (uncertain recipients included), a target that cannot be written
// (deferred, suspended, resumed by the operator), reload, and stop. The assertions read the spool (Spool, the same API
// outboxctl uses), the maildir's files and the relay's log lines.
#include <doctest/doctest.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "daemon/config.h"
#include "daemon/loop_poster.h"
#include "daemon/relay.h"
#include "queue/delivery_store.h"
#include "queue/queue_id.h"
#include "queue/spool.h"
#include "queue/store_worker.h"
#include "unit/daemon/log_capture.h"
#include "unit/daemon/run_loop.h"
#include "unit/queue/helpers.h"

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using outbox::daemon::LoopPoster;
using outbox::daemon::Relay;
using outbox::daemon::test::log_capture;
using outbox::queue::DeliveryStore;
using outbox::queue::MessageRecord;
using outbox::queue::QueueIdGenerator;
using outbox::queue::Spool;
using outbox::queue::StoreWorker;
using outbox::queue::test::new_message;
using outbox::queue::test::now_us;
using outbox::queue::test::TempDir;

namespace {

// A relay's world: the loop (run here, on the test's thread), its poster
// for the StoreWorker's completions, the spool, and configurations written
// as files and loaded like outboxd loads them.
struct Rig {
  TempDir dir;
  std::string spool = dir.file("spool.db");
  uv_loop_t loop{};
  std::unique_ptr<LoopPoster> poster;
  std::unique_ptr<StoreWorker> store;
  QueueIdGenerator ids;   // the loop's thread (the relay draws DSN ids here too)
  int configs = 0;
  bool closed = false;

  Rig() {
    log_capture().clear();
    uv_loop_init(&loop);
    poster = std::make_unique<LoopPoster>(&loop);
    store = std::make_unique<StoreWorker>(spool, [p = poster.get()](std::function<void()> fn) { p->post(std::move(fn)); });
  }
  ~Rig() {
    if (!closed) close_loop();
  }
  Rig(const Rig&) = delete;
  Rig& operator=(const Rig&) = delete;

  // The store and the poster go, then the loop must have nothing left
  // (a handle the relay forgot would keep it alive): true when it closed.
  bool close_loop() {
    closed = true;
    store.reset();
    poster->close();
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (uv_loop_alive(&loop) && std::chrono::steady_clock::now() < deadline) uv_run(&loop, UV_RUN_NOWAIT);
    return uv_loop_close(&loop) == 0;
  }

  // The part every configuration shares, then `tail` ([retry], upstreams, routes).
  std::shared_ptr<const outbox::Config> config(const std::string& tail) {
    const std::string path = dir.file("outbox" + std::to_string(++configs) + ".toml");
    std::ofstream(path) << "[spool]\npath = \"" << spool << "\"\n"
                        << "[[listen]]\nname = \"local\"\npath = \"" << dir.file("submit.sock") << "\"\n"
                        << "[host]\nname = \"outbox.test\"\ndomain = \"example.test\"\n"
                        << tail;
    return std::make_shared<const outbox::Config>(outbox::load_config(path));
  }
  static std::string upstream(const std::string& name, const std::string& maildir, const std::string& more = "") {
    return "[[upstream]]\nname = \"" + name + "\"\ndeliver = \"maildir:" + maildir + "\"\n" + more;
  }
  static std::string route(const std::string& sender, const std::string& up) {
    return "[[route]]\nsender = \"" + sender + "\"\nupstreams = [\"" + up + "\"]\n";
  }
  std::function<std::string()> next_id() {
    return [this] { return ids.next(); };
  }

  // Runs the loop until pred() holds; false after the timeout.
  bool run_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 15s) {
    return outbox::daemon::test::run_loop_until(&loop, pred, timeout);
  }


  std::string submit(const std::string& sender, std::vector<std::string> rcpts, const std::string& body) {
    const std::string id = ids.next();
    bool done = false, stored = false;
    store->store_message(new_message(id, std::move(rcpts), 0, sender), body, "", body.size(),
                         [&](bool ok, std::string) {
                           done = true;
                           stored = ok;
                         });
    REQUIRE(run_until([&] { return done; }));
    REQUIRE(stored);
    return id;
  }
  // Spool work on the writer, as the relay does it; waits for its commit.
  void on_writer(std::function<void(Spool&)> work) {
    REQUIRE(outbox::daemon::test::run_on_writer(&loop, *store, std::move(work)));
  }

  std::optional<MessageRecord> get(const std::string& id) {
    auto s = Spool::open(spool, Spool::Mode::ReadOnly);
    return s->get(id);
  }
  std::string state_of(const std::string& id) {
    auto m = get(id);
    return m ? m->state : "missing";
  }
  std::size_t count_in_state(const std::string& state) {
    auto s = Spool::open(spool, Spool::Mode::ReadOnly);
    return s->list(state).size();
  }
};

std::vector<fs::path> files_in(const std::string& d) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (auto it = fs::directory_iterator(d, ec); !ec && it != fs::directory_iterator(); ++it) out.push_back(it->path());
  std::sort(out.begin(), out.end());
  return out;
}

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// The maildir file of message `id` in `maildir`/new (its name holds the id).
std::optional<fs::path> file_of(const std::string& maildir, const std::string& id) {
  for (const auto& p : files_in(maildir + "/new"))
    if (p.filename().string().find(id) != std::string::npos) return p;
  return std::nullopt;
}

// Stops the relay and runs the loop until it says so; how many times it did.
int stop_relay(Rig& rig, Relay& relay) {
  int stopped = 0;
  relay.stop([&] { ++stopped; });
  CHECK(rig.run_until([&] { return stopped > 0; }));
  return stopped;
}

}  // namespace

TEST_CASE("relay: a queued message is delivered after start: the maildir holds it, the spool says sent") {
  Rig rig;
  const std::string maildir = rig.dir.file("Maildir");
  auto cfg = rig.config("[retry]\ninitial = \"1s\"\nmax = \"2s\"\n" + Rig::upstream("local", maildir) +
                        Rig::route("*", "local"));
  const std::string body = "Subject: hello\r\n\r\nline one\r\nline two\r\n";
  const std::string id = rig.submit("app@example.test", {"a@example.test", "b@example.test"}, body);
  CHECK(rig.state_of(id) == "queued");

  Relay relay(&rig.loop, cfg, *rig.store, rig.next_id());
  relay.start();
  REQUIRE(rig.run_until([&] { return rig.state_of(id) == "sent"; }));

  // One file in new/ (none left in tmp/): the envelope, then the message as stored.
  auto files = files_in(maildir + "/new");
  REQUIRE(files.size() == 1);
  CHECK(files_in(maildir + "/tmp").empty());
  CHECK(files[0].filename().string().find(id) != std::string::npos);
  CHECK(read_file(files[0]) ==
        "Return-Path: <app@example.test>\r\nX-Envelope-To: <a@example.test>\r\nX-Envelope-To: <b@example.test>\r\n" +
            body);

  // The spool: one attempt, one history row, every recipient sent with our "reply".
  auto m = rig.get(id);
  REQUIRE(m);
  CHECK(m->attempts == 1);
  REQUIRE(m->history.size() == 1);
  CHECK(m->history[0].outcome == "delivered");
  CHECK(m->history[0].upstream == "local");
  REQUIRE(m->recipients.size() == 2);
  for (const auto& r : m->recipients) {
    CHECK(r.state == "sent");
    CHECK(r.last_reply.find("250 2.0.0 written to " + maildir + "/new/") == 0);
  }
  // What the relay reports: one delivered line per recipient, through the
  // maildir target, attempt 1, no duplicate flag.
  auto& log = log_capture();
  CHECK(rig.run_until([&] { return log.count({"event=delivered", "id=" + id}) == 2; }));
  CHECK(log.count({"event=delivered", "id=" + id, "to=a@example.test", "relay=local[maildir:" + maildir + "]",
                   "attempt=1", "dsn=2.0.0"}) == 1);
  CHECK(log.count({"event=delivered", "to=b@example.test"}) == 1);
  CHECK(log.count({"possible_duplicate"}) == 0);
  // The idle "connection" is closed once nothing waits for it.
  CHECK(rig.run_until([&] { return relay.active_deliveries() == 0; }));
  CHECK(stop_relay(rig, relay) == 1);
}

TEST_CASE("relay: one maildir connection carries message after message, then closes when idle") {
  Rig rig;
  const std::string maildir = rig.dir.file("Maildir");
  // One connection: every message after the first needs it to be ready again.
  auto cfg = rig.config("[retry]\ninitial = \"1s\"\nmax = \"2s\"\n" +
                        Rig::upstream("local", maildir, "max_connections = 1\n") + Rig::route("*", "local"));
  Relay relay(&rig.loop, cfg, *rig.store, rig.next_id());
  relay.start();
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    ids.push_back(rig.submit("app@example.test", {"r@example.test"}, "Subject: " + std::to_string(i) + "\r\n\r\nx\r\n"));
    relay.kick();
    REQUIRE_MESSAGE(rig.run_until([&] { return rig.state_of(ids.back()) == "sent"; }), "message ", i, " not delivered");
    CHECK(file_of(maildir, ids.back()));
  }
  CHECK(files_in(maildir + "/new").size() == 3);
  // Nothing waits: the idle connection QUITs.
  CHECK(rig.run_until([&] { return relay.active_deliveries() == 0; }));
  CHECK(stop_relay(rig, relay) == 1);
}

TEST_CASE("relay: start recovers messages left active by a crash, uncertain recipients resent as possible duplicates") {
  Rig rig;
  const std::string maildir = rig.dir.file("Maildir");
  auto cfg = rig.config("[retry]\ninitial = \"1s\"\nmax = \"2s\"\n" + Rig::upstream("local", maildir) +
                        Rig::route("*", "local"));
  const std::string plain = rig.submit("app@example.test", {"p@example.test"}, "Subject: plain\r\n\r\nx\r\n");
  const std::string dotted = rig.submit("app@example.test", {"u1@example.test", "u2@example.test"},
                                        "Subject: dotted\r\n\r\ny\r\n");
  // A previous run claimed both (active) and had sent the final dot of
  // `dotted` (its recipients uncertain) when it died.
  rig.on_writer([&](Spool& s) {
    DeliveryStore ds(s);
    auto due = ds.claim_due(now_us(), 10);
    REQUIRE(due.size() == 2);
    REQUIRE(ds.mark_dot_sent(dotted, {"u1@example.test", "u2@example.test"}, "local", now_us()) == 2);
  });
  REQUIRE(rig.state_of(plain) == "active");
  REQUIRE(rig.state_of(dotted) == "active");
  {
    auto m = rig.get(dotted);
    REQUIRE(m);
    for (const auto& r : m->recipients) CHECK(r.state == "uncertain");
  }

  Relay relay(&rig.loop, cfg, *rig.store, rig.next_id());
  relay.start();
  REQUIRE(rig.run_until([&] { return rig.state_of(plain) == "sent" && rig.state_of(dotted) == "sent"; }));

  // Each written exactly once; nothing left active.
  CHECK(files_in(maildir + "/new").size() == 2);
  CHECK(file_of(maildir, plain));
  CHECK(file_of(maildir, dotted));
  CHECK(rig.count_in_state("active") == 0);
  for (const auto& id : {plain, dotted}) {
    auto m = rig.get(id);
    REQUIRE(m);
    CHECK(m->attempts == 1);
    for (const auto& r : m->recipients) CHECK(r.state == "sent");
  }
  // Reported: the recovery (both interrupted), each uncertain recipient by
  // name with action=resend (the default, RFC 1047), and its delivery
  // flagged possible_duplicate=yes; the plain message's is not.
  auto& log = log_capture();
  CHECK(rig.run_until([&] { return log.count({"event=delivered"}) == 3; }));
  CHECK(log.count({"event=recovered", "interrupted_deliveries=2"}) == 1);
  CHECK(log.count({"event=uncertain", "id=" + dotted, "possible_duplicate=yes", "action=resend"}) == 2);
  CHECK(log.count({"event=uncertain", "id=" + plain}) == 0);
  CHECK(log.count({"event=delivered", "id=" + dotted, "possible_duplicate=yes"}) == 2);
  CHECK(log.count({"event=delivered", "id=" + plain}) == 1);
  CHECK(log.count({"event=delivered", "id=" + plain, "possible_duplicate"}) == 0);
  CHECK(stop_relay(rig, relay) == 1);
}

TEST_CASE("relay: with [retry] uncertain = \"hold\" recovery holds the uncertain message until the operator releases it") {
  Rig rig;
  const std::string maildir = rig.dir.file("Maildir");
  auto cfg = rig.config("[retry]\ninitial = \"1s\"\nmax = \"2s\"\nuncertain = \"hold\"\n" +
                        Rig::upstream("local", maildir) + Rig::route("*", "local"));
  const std::string plain = rig.submit("app@example.test", {"p@example.test"}, "Subject: plain\r\n\r\nx\r\n");
  const std::string dotted = rig.submit("app@example.test", {"u@example.test"}, "Subject: dotted\r\n\r\ny\r\n");
  rig.on_writer([&](Spool& s) {
    DeliveryStore ds(s);
    REQUIRE(ds.claim_due(now_us(), 10).size() == 2);
    REQUIRE(ds.mark_dot_sent(dotted, {"u@example.test"}, "local", now_us()) == 1);
  });

  Relay relay(&rig.loop, cfg, *rig.store, rig.next_id());
  relay.start();
  // The message without uncertain recipients is resent as usual; the other
  // is held, not written again.
  REQUIRE(rig.run_until([&] { return rig.state_of(plain) == "sent"; }));
  auto& log = log_capture();
  REQUIRE(rig.run_until([&] { return log.count({"event=held", "id=" + dotted}) == 1; }));
  CHECK(rig.state_of(dotted) == "held");
  CHECK(log.count({"event=uncertain", "id=" + dotted, "possible_duplicate=yes", "action=hold"}) == 1);
  CHECK(files_in(maildir + "/new").size() == 1);
  CHECK_FALSE(file_of(maildir, dotted));
  CHECK(rig.count_in_state("active") == 0);

  // `outboxctl release ID`: the change and its operator_log row; the relay
  // notices it (within a second) and sends it, flagged as a possible duplicate.
  {
    auto s = Spool::open(rig.spool);
    s->set_operator(static_cast<std::int64_t>(::getuid()));
    REQUIRE(s->release(dotted));
  }
  REQUIRE(rig.run_until([&] { return rig.state_of(dotted) == "sent"; }));
  CHECK(file_of(maildir, dotted));
  CHECK(files_in(maildir + "/new").size() == 2);
  CHECK(rig.run_until([&] { return log.count({"event=delivered", "id=" + dotted}) == 1; }));
  CHECK(log.count({"event=operator", "action=release", "id=" + dotted}) == 1);
  CHECK(log.count({"event=delivered", "id=" + dotted, "possible_duplicate=yes"}) == 1);
  CHECK(stop_relay(rig, relay) == 1);
}

TEST_CASE("relay: a maildir that cannot be written defers the mail and suspends the upstream; resume delivers it") {
  Rig rig;
  // A regular file where the maildir's parent directory should be.
  const std::string blocker = rig.dir.file("blocked");
  std::ofstream(blocker) << "not a directory\n";
  const std::string maildir = blocker + "/Maildir";
  // A long retry curve: only the operator's resume can bring the mail out
  // within the test.
  auto cfg = rig.config("[retry]\ninitial = \"1h\"\nmax = \"2h\"\njitter = 0.0\n" + Rig::upstream("local", maildir) +
                        Rig::route("*", "local"));
  const std::string id = rig.submit("app@example.test", {"r@example.test"}, "Subject: stuck\r\n\r\nz\r\n");

  Relay relay(&rig.loop, cfg, *rig.store, rig.next_id());
  relay.start();
  REQUIRE(rig.run_until([&] { return rig.state_of(id) == "deferred"; }));

  auto& log = log_capture();
  // Deferred, never bounced: the recipient still pending, the try counted
  // (attempts count connection failures too), the reason in last_error, and
  // it waits for the suspended upstream, not for its own backoff.
  auto m = rig.get(id);
  REQUIRE(m);
  CHECK(m->attempts == 1);
  REQUIRE(m->recipients.size() == 1);
  CHECK(m->recipients[0].state == "pending");
  CHECK(m->last_error.find("cannot write to maildir " + maildir) != std::string::npos);
  REQUIRE(m->next_attempt);
  CHECK(*m->next_attempt > now_us() + 30LL * 60 * 1'000'000);
  {
    auto s = Spool::open(rig.spool, Spool::Mode::ReadOnly);
    auto w = s->wait_of(id);
    REQUIRE(w);
    CHECK(w->reason == outbox::queue::WaitReason::UpstreamSuspended);
    CHECK(w->upstream == "local");
  }
  // The upstream is suspended, persisted in the spool (outboxctl upstreams reads it).
  REQUIRE(rig.run_until([&] {
    auto s = Spool::open(rig.spool, Spool::Mode::ReadOnly);
    auto u = s->upstream_state("local");
    return u && u->suspended_until;
  }));
  {
    auto s = Spool::open(rig.spool, Spool::Mode::ReadOnly);
    auto u = s->upstream_state("local");
    CHECK(u->reason == outbox::queue::SuspendReason::Unreachable);
    CHECK(*u->suspended_until > now_us() + 30LL * 60 * 1'000'000);
  }
  CHECK(log.count({"event=upstream_failed", "upstream=local", "cannot write to maildir " + maildir}) == 1);
  CHECK(log.count({"event=upstream_suspended", "upstream=local", "reason=unreachable"}) == 1);
  CHECK(log.count({"event=deferred", "id=" + id}) == 1);
  CHECK(log.count({"event=bounced"}) == 0);
  CHECK(rig.run_until([&] { return relay.active_deliveries() == 0; }));
  CHECK_FALSE(fs::is_directory(maildir));

  // The operator fixes the target and runs `outboxctl resume local`.
  fs::remove(blocker);
  {
    auto s = Spool::open(rig.spool);
    s->set_operator(static_cast<std::int64_t>(::getuid()));
    CHECK(s->resume_upstream("local", now_us()) == Spool::ResumeResult::Resumed);
  }
  REQUIRE(rig.run_until([&] { return rig.state_of(id) == "sent"; }));
  CHECK(file_of(maildir, id));
  CHECK(files_in(maildir + "/new").size() == 1);
  m = rig.get(id);
  REQUIRE(m);
  CHECK(m->attempts == 2);
  REQUIRE(m->history.size() == 2);
  CHECK(m->history[0].outcome == "deferred");
  CHECK(m->history[1].outcome == "delivered");
  CHECK(log.count({"event=operator", "action=resume", "upstream=local"}) == 1);
  CHECK(rig.run_until([&] { return log.count({"event=delivered", "id=" + id, "attempt=2"}) == 1; }));
  {
    auto s = Spool::open(rig.spool, Spool::Mode::ReadOnly);
    auto u = s->upstream_state("local");
    REQUIRE(u);
    CHECK_FALSE(u->suspended_until);
  }
  CHECK(stop_relay(rig, relay) == 1);
}

TEST_CASE("relay: reload while idle: the new generation's routes and upstreams take the mail") {
  Rig rig;
  const std::string old_dir = rig.dir.file("old");
  const std::string new_dir = rig.dir.file("new");
  const std::string retry = "[retry]\ninitial = \"1s\"\nmax = \"2s\"\n";
  auto gen1 = rig.config(retry + Rig::upstream("old", old_dir) + Rig::route("*@example.test", "old"));
  const std::string first = rig.submit("app@example.test", {"r@example.test"}, "Subject: 1\r\n\r\n1\r\n");
  // No route takes this sender in the first generation.
  const std::string stray = rig.submit("app@elsewhere.test", {"r@example.test"}, "Subject: 2\r\n\r\n2\r\n");

  Relay relay(&rig.loop, gen1, *rig.store, rig.next_id());
  relay.start();
  REQUIRE(rig.run_until([&] { return rig.state_of(first) == "sent"; }));
  auto& log = log_capture();
  REQUIRE(rig.run_until([&] { return log.count({"event=no_route", "id=" + stray}) == 1; }));
  CHECK(rig.state_of(stray) == "queued");
  {
    auto s = Spool::open(rig.spool, Spool::Mode::ReadOnly);
    auto w = s->wait_of(stray);
    REQUIRE(w);
    CHECK(w->reason == outbox::queue::WaitReason::NoRoute);
  }
  CHECK(file_of(old_dir, first));
  REQUIRE(rig.run_until([&] { return relay.active_deliveries() == 0; }));   // idle

  // The new generation: everything to "new"; "old" is gone.
  relay.reload(rig.config(retry + Rig::upstream("new", new_dir) + Rig::route("*", "new")));
  // The waiting message is looked at again at once (not at its no-route
  // recheck, minutes away) and goes the new way.
  REQUIRE(rig.run_until([&] { return rig.state_of(stray) == "sent"; }));
  CHECK(file_of(new_dir, stray));
  // New mail, from a sender the old generation sent to "old", too.
  const std::string later = rig.submit("app@example.test", {"r@example.test"}, "Subject: 3\r\n\r\n3\r\n");
  relay.kick();
  REQUIRE(rig.run_until([&] { return rig.state_of(later) == "sent"; }));
  CHECK(file_of(new_dir, later));
  CHECK(files_in(new_dir + "/new").size() == 2);
  CHECK(files_in(old_dir + "/new").size() == 1);
  auto m = rig.get(later);
  REQUIRE(m);
  REQUIRE(m->history.size() == 1);
  CHECK(m->history[0].upstream == "new");
  CHECK(rig.run_until([&] { return log.count({"event=delivered", "id=" + later, "relay=new[maildir:" + new_dir + "]"}) == 1; }));
  CHECK(stop_relay(rig, relay) == 1);
}

TEST_CASE("relay: stop while idle reports stopped once; the relay is destroyed and the loop closes clean") {
  Rig rig;
  const std::string maildir = rig.dir.file("Maildir");
  auto cfg = rig.config("[retry]\ninitial = \"1s\"\nmax = \"2s\"\n" + Rig::upstream("local", maildir) +
                        Rig::route("*", "local"));
  const std::string id = rig.submit("app@example.test", {"r@example.test"}, "Subject: s\r\n\r\ns\r\n");
  {
    Relay relay(&rig.loop, cfg, *rig.store, rig.next_id());
    relay.start();
    REQUIRE(rig.run_until([&] { return rig.state_of(id) == "sent"; }));
    CHECK(stop_relay(rig, relay) == 1);
    CHECK(relay.active_deliveries() == 0);
    CHECK_FALSE(relay.keeps_bodies());   // the body reader went with the stop
    // Stopped: new mail is not claimed any more (a kick is ignored).
    const std::string after = rig.submit("app@example.test", {"r@example.test"}, "Subject: t\r\n\r\nt\r\n");
    // (A negative check needs a window: a running relay claims within ~10 ms
    // of a kick, so a claim after stop would show within 300 ms of loop.)
    relay.kick();
    rig.run_until([] { return false; }, 300ms);
    CHECK(rig.state_of(after) == "queued");
    CHECK(rig.count_in_state("active") == 0);
  }
  CHECK(files_in(maildir + "/new").size() == 1);
  // No handle, thread or poster of the relay outlives it.
  CHECK(rig.close_loop());
}

TEST_CASE("relay: stop lets the message in flight finish, returns the claimed ones to the spool, then reports") {
  Rig rig;
  const std::string maildir = rig.dir.file("Maildir");
  // One connection: the second message waits in memory, claimed, while the first is written.
  auto cfg = rig.config("[retry]\ninitial = \"1s\"\nmax = \"2s\"\n" +
                        Rig::upstream("local", maildir, "max_connections = 1\n") + Rig::route("*", "local"));
  // Large enough to take many body pieces (64 KiB each): the delivery is
  // seen under way.
  std::string body = "Subject: big\r\n\r\n";
  const std::string line(998, 'x');
  while (body.size() < 4 * 1024 * 1024) body += line + "\r\n";
  const std::string big = rig.submit("app@example.test", {"r@example.test"}, body);
  const std::string next = rig.submit("app@example.test", {"r@example.test"}, "Subject: n\r\n\r\nn\r\n");

  std::optional<Relay> relay;
  relay.emplace(&rig.loop, cfg, *rig.store, rig.next_id());
  relay->start();
  // Under way: its file is being written in tmp/, nothing published yet.
  REQUIRE(rig.run_until([&] { return !files_in(maildir + "/tmp").empty(); }));
  REQUIRE(files_in(maildir + "/new").empty());
  CHECK(relay->active_deliveries() == 1);
  REQUIRE(rig.state_of(next) == "active");   // claimed with the first, waiting for the connection

  int stopped = 0;
  relay->stop([&] { ++stopped; });
  CHECK(stopped == 0);   // a delivery is busy: it finishes first
  REQUIRE(rig.run_until([&] { return stopped > 0; }));
  CHECK(stopped == 1);
  CHECK(relay->active_deliveries() == 0);
  // The message in flight was finished and recorded before the report.
  CHECK(rig.state_of(big) == "sent");
  auto f = file_of(maildir, big);
  REQUIRE(f);
  CHECK(fs::file_size(*f) > body.size());
  CHECK(files_in(maildir + "/tmp").empty());
  // The one not yet handed went back to the spool, untried: not active,
  // not written, no attempt counted.
  auto m = rig.get(next);
  REQUIRE(m);
  CHECK(m->state == "queued");
  CHECK(m->attempts == 0);
  REQUIRE(m->next_attempt);
  CHECK(*m->next_attempt <= now_us());   // due at once for the next start
  CHECK_FALSE(file_of(maildir, next));
  CHECK(rig.count_in_state("active") == 0);
  // A second stop is a no-op (it returns at once, its callback dropped).
  relay->stop([&] { ++stopped; });
  CHECK(stopped == 1);
  relay.reset();
  CHECK(rig.close_loop());
}
