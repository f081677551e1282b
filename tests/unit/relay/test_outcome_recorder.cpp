// OutcomeRecorder: an outcome that cannot be written is kept and written
// again with backoff, against a real StoreWorker and SQLite file; the clock
// and the timer are fakes driven by the test, which also plays the loop.
#include <doctest/doctest.h>
#include <sqlite3.h>

#include <atomic>
#include <future>
#include <string>
#include <vector>

#include "daemon/outcome_recorder.h"
#include "queue/delivery_store.h"
#include "queue/spool.h"
#include "queue/store_worker.h"
#include "unit/queue/helpers.h"

using namespace outbox;
using daemon::OutcomeRecorder;
using queue::test::PostQueue;
using queue::test::TempDir;

namespace {

// COMMITs on the worker's connection refused while `refuse` is set: the
// transaction is rolled back as SQLite does for a failed COMMIT.
struct CommitGate {
  std::atomic<bool> refuse{false};
  static int hook(void* p) { return static_cast<CommitGate*>(p)->refuse ? 1 : 0; }
};

struct Fixture {
  TempDir dir;
  std::string path = dir.file("spool.db");
  PostQueue loop;   // the owner's thread: StoreWorker completions wait here until the test runs them
  queue::StoreWorker worker{path, loop.poster()};
  std::int64_t clock = 1'000'000'000;
  std::vector<std::int64_t> armed;
  std::vector<OutcomeRecorder::Event> events;
  OutcomeRecorder rec{[this](OutcomeRecorder::Work w, OutcomeRecorder::Done d) { worker.run(std::move(w), std::move(d)); },
                      [this](std::int64_t at) { armed.push_back(at); }, [this] { return clock; },
                      [this](const OutcomeRecorder::Event& e) { events.push_back(e); }};
  CommitGate gate;

  // A queued message with one recipient, claimed (active), as the relay has it.
  void submit_and_claim(const std::string& id) {
    int done = 0;
    queue::NewMessage m;
    m.id = id;
    m.sender = "app@example.test";
    m.recipients = {"a@x.test"};
    m.created = clock;
    auto cb = [&](bool ok, std::string e) { REQUIRE_MESSAGE(ok, e); ++done; };
    worker.begin_message(m, cb);
    worker.append(id, 0, "Subject: x\r\n\r\nx\r\n", cb);
    worker.commit_message(id, "", 16, cb);
    worker.run([](queue::Spool& s) { queue::DeliveryStore(s).claim_due(queue::test::now_us() + 1'000'000, 10); }, cb);
    REQUIRE(loop.run_until([&] { return done == 4; }));
  }
  void install_gate() {
    bool done = false;
    worker.run([this](queue::Spool& s) { sqlite3_commit_hook(s.handle(), &CommitGate::hook, &gate); },
               [&](bool, std::string) { done = true; });
    REQUIRE(loop.run_until([&] { return done; }));
  }
  static OutcomeRecorder::Work delivered(const std::string& id, std::int64_t t) {
    return [id, t](queue::Spool& s) {
      queue::DeliveryReport rep;
      rep.id = id;
      rep.upstream = "relay";
      rep.time = t;
      rep.outcome = "delivered";
      rep.recipients = {queue::RecipientOutcome{"a@x.test", queue::RecipientResult::Sent, "250 ok", {}}};
      queue::DeliveryStore(s).apply(rep);
    };
  }
  std::string state(const std::string& id) {
    auto s = queue::Spool::open(path, queue::Spool::Mode::ReadOnly);
    auto m = s->get(id);
    return m ? m->state : "<none>";
  }
  // Advances the fake clock to the armed time and fires the timer.
  void fire() {
    REQUIRE(rec.next_retry());
    clock = *rec.next_retry();
    rec.on_timer();
  }
};

}  // namespace

TEST_CASE("outcome recorder: backoff schedule, 100 ms doubling to 30 s") {
  OutcomeRecorder::Backoff b;
  struct Row {
    int failures;
    std::int64_t delay_us;
  };
  for (auto [n, d] : {Row{1, 100'000}, Row{2, 200'000}, Row{3, 400'000}, Row{4, 800'000}, Row{8, 12'800'000},
                      Row{9, 25'600'000}, Row{10, 30'000'000}, Row{11, 30'000'000}, Row{1000, 30'000'000}}) {
    CHECK_MESSAGE(OutcomeRecorder::delay_after(b, n) == d, "failures=" << n);
  }
  CHECK(OutcomeRecorder::delay_after({5, 7}, 3) == 7);
}

TEST_CASE("outcome recorder: written at once when the spool is well") {
  Fixture f;
  f.submit_and_claim("00000000010000");
  bool recorded = false;
  f.rec.record("00000000010000", Fixture::delivered("00000000010000", f.clock), [&] { recorded = true; });
  CHECK(f.rec.holds("00000000010000"));
  REQUIRE(f.loop.run_until([&] { return recorded; }));
  CHECK(f.rec.pending() == 0);
  CHECK(f.events.empty());
  CHECK(f.armed.empty());
  CHECK(f.state("00000000010000") == "sent");
}

TEST_CASE("outcome recorder: a failed write is kept, retried with backoff, logged once, never lost") {
  Fixture f;
  f.submit_and_claim("00000000010000");
  f.submit_and_claim("00000000020000");
  f.install_gate();
  f.gate.refuse = true;
  int recorded1 = 0, recorded2 = 0;
  const std::int64_t t0 = f.clock;
  f.rec.record("00000000010000", Fixture::delivered("00000000010000", t0), [&] { ++recorded1; });
  REQUIRE(f.loop.run_until([&] { return f.events.size() == 1; }));
  CHECK(f.events[0].kind == OutcomeRecorder::Event::Kind::WriteFailed);
  CHECK(f.events[0].id == "00000000010000");
  CHECK(f.events[0].retry_in == 100'000);
  CHECK_FALSE(f.events[0].error.empty());
  CHECK(f.armed == std::vector<std::int64_t>{t0 + 100'000});
  CHECK(f.rec.holds("00000000010000"));
  CHECK(f.state("00000000010000") == "active");   // rolled back: still in flight, not claimable

  // Still failing: tried again at each armed time, the delay doubling, no new event.
  std::vector<std::int64_t> tries_at;
  for (int i = 0; i < 4; ++i) {
    tries_at.push_back(*f.rec.next_retry());
    std::size_t armed_before = f.armed.size();
    f.fire();
    REQUIRE(f.loop.run_until([&] { return f.armed.size() > armed_before; }));
  }
  CHECK(tries_at == std::vector<std::int64_t>{t0 + 100'000, t0 + 300'000, t0 + 700'000, t0 + 1'500'000});
  CHECK(*f.rec.next_retry() == t0 + 3'100'000);
  CHECK(f.events.size() == 1);

  // A second outcome arriving meanwhile has its own streak (and its own line).
  f.rec.record("00000000020000", Fixture::delivered("00000000020000", f.clock), [&] { ++recorded2; });
  REQUIRE(f.loop.run_until([&] { return f.events.size() == 2; }));
  CHECK(f.events[1].id == "00000000020000");
  CHECK(f.rec.pending() == 2);
  // A timer firing early does nothing for what is not due yet.
  std::size_t armed_before = f.armed.size();
  f.rec.on_timer();
  CHECK(f.rec.pending() == 2);
  CHECK(f.armed.size() == armed_before + 1);   // armed again at the earliest due time

  // The fault clears: both land, each reported late once, each callback once.
  f.gate.refuse = false;
  f.clock += 60'000'000;
  f.rec.on_timer();
  REQUIRE(f.loop.run_until([&] { return recorded1 == 1 && recorded2 == 1; }));
  CHECK(f.rec.pending() == 0);
  REQUIRE(f.events.size() == 4);
  CHECK(f.events[2].kind == OutcomeRecorder::Event::Kind::RecordedLate);
  CHECK(f.events[2].id == "00000000010000");
  CHECK(f.events[2].tries == 6);
  CHECK(f.events[2].late_by == f.clock - t0);
  CHECK(f.events[3].id == "00000000020000");
  CHECK(f.events[3].tries == 2);
  CHECK(f.state("00000000010000") == "sent");
  CHECK(f.state("00000000020000") == "sent");
  // Exactly one history row each: the rolled-back tries left nothing.
  auto s = queue::Spool::open(f.path, queue::Spool::Mode::ReadOnly);
  CHECK(s->get("00000000010000")->history.size() == 1);
  f.rec.on_timer();   // a stale timer is harmless
  CHECK(recorded1 == 1);
}

TEST_CASE("outcome recorder: SQLITE_BUSY past the busy timeout (another connection holds the write lock)") {
  Fixture f;
  f.submit_and_claim("00000000010000");
  sqlite3* other = nullptr;
  REQUIRE(sqlite3_open(f.path.c_str(), &other) == SQLITE_OK);
  queue::test::exec(other, "BEGIN IMMEDIATE");
  bool recorded = false;
  f.rec.record("00000000010000", Fixture::delivered("00000000010000", f.clock), [&] { recorded = true; });
  REQUIRE(f.loop.run_until([&] { return !f.events.empty(); }));   // after the spool's 5 s busy wait
  CHECK(f.events[0].kind == OutcomeRecorder::Event::Kind::WriteFailed);
  CHECK(f.events[0].error.find("locked") != std::string::npos);
  CHECK_FALSE(recorded);
  queue::test::exec(other, "ROLLBACK");
  sqlite3_close(other);
  f.fire();
  REQUIRE(f.loop.run_until([&] { return recorded; }));
  CHECK(f.events.back().kind == OutcomeRecorder::Event::Kind::RecordedLate);
  CHECK(f.state("00000000010000") == "sent");
}

TEST_CASE("outcome recorder: abandon at the end of the grace period returns what was not written") {
  Fixture f;
  f.submit_and_claim("00000000010000");
  f.install_gate();
  f.gate.refuse = true;
  bool recorded = false;
  f.rec.record("00000000010000", Fixture::delivered("00000000010000", f.clock), [&] { recorded = true; });
  REQUIRE(f.loop.run_until([&] { return !f.events.empty(); }));
  CHECK(f.rec.abandon() == std::vector<std::string>{"00000000010000"});
  CHECK(f.rec.pending() == 0);
  f.gate.refuse = false;
  f.rec.on_timer();
  CHECK_FALSE(recorded);
  CHECK(f.state("00000000010000") == "active");   // recovery at the next start takes it
}
