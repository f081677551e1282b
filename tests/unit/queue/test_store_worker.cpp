#include <doctest/doctest.h>
#include <sqlite3.h>

#include <atomic>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "queue/queue_id.h"
#include "queue/spool.h"
#include "queue/store_worker.h"
#include "unit/queue/helpers.h"

using namespace outbox::queue;
using namespace outbox::queue::test;

namespace {

// Holds the worker inside a run() request until open(); requests submitted
// meanwhile pile up and form the next batch together.
class Gate {
 public:
  explicit Gate(StoreWorker& w) {
    w.run(
        [this](Spool&) {
          started_.set_value();
          opened_.get_future().wait();
        },
        {});
    started_.get_future().wait();
  }
  void open() { opened_.set_value(); }

 private:
  std::promise<void> started_, opened_;
};

// Counts COMMITs on the worker's connection. Installed and removed through
// run(), so the hook only ever runs on the worker thread.
struct CommitCounter {
  std::atomic<int> commits{0};
  std::atomic<int> fail_next{0};   // > 0: make that many COMMITs fail
  static int hook(void* p) {
    auto* c = static_cast<CommitCounter*>(p);
    c->commits++;
    if (c->fail_next > 0) {
      c->fail_next--;
      return 1;   // non-zero turns the COMMIT into a ROLLBACK (SQLITE_CONSTRAINT_COMMITHOOK)
    }
    return 0;
  }
  void install(StoreWorker& w) {
    std::promise<void> p;
    w.run([this](Spool& s) { sqlite3_commit_hook(s.handle(), &CommitCounter::hook, this); },
          [&](bool, std::string) { p.set_value(); });
    p.get_future().wait();
  }
  void remove(StoreWorker& w) {
    std::promise<void> p;
    w.run([](Spool& s) { sqlite3_commit_hook(s.handle(), nullptr, nullptr); }, [&](bool, std::string) { p.set_value(); });
    p.get_future().wait();
  }
};

StoreWorker::Poster inline_poster() {
  return [](std::function<void()> fn) { fn(); };
}

// Waits for every request submitted so far: run() completes after all of them.
void sync(StoreWorker& w) {
  std::promise<void> p;
  w.run([](Spool&) {}, [&](bool, std::string) { p.set_value(); });
  p.get_future().wait();
}

std::string body_of(Spool& s, const std::string& id) {
  std::string out;
  if (!s.read_body(id, [&](std::string_view b) { out.append(b); })) return "<missing>";
  return out;
}

}  // namespace

TEST_CASE("store worker: opens, purges leftovers, reports max id; throws SpoolError when it cannot open") {
  TempDir dir;
  auto path = dir.file("spool.db");
  QueueIdGenerator g;
  std::string done = g.next(1'000'000), half = g.next(2'000'000);
  {
    auto s = Spool::open(path);
    s->begin();
    s->create_incoming(new_message(done));
    s->append_chunk(done, 0, "x");
    s->finalize(done, "", 1, now_us());
    s->create_incoming(new_message(half));
    s->commit();
  }
  {
    StoreWorker w(path, inline_poster());
    CHECK(w.purged_at_start() == 1);
    CHECK(w.max_id() == half);   // an id once handed out is never reused
  }
  auto s = Spool::open(path, Spool::Mode::ReadOnly);
  CHECK(count(s->handle(), "SELECT COUNT(*) FROM messages") == 1);
  CHECK_THROWS_AS(StoreWorker("/dev/null/spool.db", inline_poster()), SpoolError);
}

TEST_CASE("store worker: a message goes begin -> append -> commit; the 250 moment sees it committed") {
  TempDir dir;
  auto path = dir.file("spool.db");
  StoreWorker w(path, inline_poster());
  auto reader = Spool::open(path, Spool::Mode::ReadOnly);
  std::string id = QueueIdGenerator().next();
  Completions c;
  std::string seen_state;
  w.begin_message(new_message(id, {"a@x", "b@x"}), [&](bool ok, std::string) { c.add(ok); });
  w.append(id, 0, "Subject: hi\r\n\r\n", [&](bool ok, std::string) { c.add(ok); });
  w.append(id, 1, "body\r\n", [&](bool ok, std::string) { c.add(ok); });
  w.commit_message(id, "Received: x\r\n", 34, [&](bool ok, std::string err) {
    // Another connection must already see it: the completion comes after COMMIT.
    auto r = reader->get(id);
    seen_state = r ? r->state : "<none>";
    CHECK(err == "");
    c.add(ok);
  });
  REQUIRE(c.wait_for(4));
  CHECK(c.ok() == 4);
  CHECK(seen_state == kQueued);
  CHECK(body_of(*reader, id) == "Received: x\r\nSubject: hi\r\n\r\nbody\r\n");
  CHECK(reader->get(id)->recipients.size() == 2);
}

TEST_CASE("store worker: a whole message is one request, queued when its done runs") {
  TempDir dir;
  auto path = dir.file("spool.db");
  StoreWorker w(path, inline_poster());
  auto reader = Spool::open(path, Spool::Mode::ReadOnly);
  QueueIdGenerator g;
  std::string id = g.next(), dup = g.next();
  CommitCounter counter;
  counter.install(w);
  int before = counter.commits;
  std::vector<std::pair<bool, std::string>> r(3);
  std::string seen_state;
  Completions c;
  // Gates live to the end of the test: the worker still touches a gate's
  // promise after open() (Gate's worker lambda), as in the other tests.
  Gate gate(w);
  {
    w.store_message(new_message(id, {"a@x", "b@x"}), "Subject: hi\r\n\r\nbody\r\n", "Received: x\r\n", 34,
                    [&](bool ok, std::string err) {
                      auto m = reader->get(id);   // another connection sees it: done follows the COMMIT
                      seen_state = m ? m->state : "<none>";
                      r[0] = {ok, err};
                      c.add(ok);
                    });
    CHECK(w.pending_bytes() == 21);   // the body counts as bytes not yet written
    w.store_message(new_message(dup), "first", "", 5, [&](bool ok, std::string err) { r[1] = {ok, err}; c.add(ok); });
    // The same id again fails alone and leaves the first copy as it was.
    w.store_message(new_message(dup), "second!", "", 7, [&](bool ok, std::string err) { r[2] = {ok, err}; c.add(ok); });
    gate.open();
  }
  REQUIRE(c.wait_for(3));
  CHECK(r[0].first);
  CHECK(seen_state == kQueued);
  CHECK(r[1].first);
  CHECK_FALSE(r[2].first);
  CHECK(r[2].second.find("UNIQUE") != std::string::npos);
  CHECK(counter.commits - before == 2);   // the gate's batch, then all three in one
  CHECK(w.pending_bytes() == 0);
  CHECK(body_of(*reader, id) == "Received: x\r\nSubject: hi\r\n\r\nbody\r\n");
  CHECK(reader->get(id)->recipients.size() == 2);
  CHECK(body_of(*reader, dup) == "first");
  counter.remove(w);

  // A refused COMMIT fails it and leaves nothing of it.
  std::string lost = g.next();
  counter.install(w);
  Completions f;
  bool ok_lost = true;
  Gate gate2(w);
  w.run([&](Spool&) { counter.fail_next = 1; }, {});
  w.store_message(new_message(lost), "body", "", 4, [&](bool ok, std::string) { ok_lost = ok; f.add(ok); });
  gate2.open();
  REQUIRE(f.wait_for(1));
  CHECK_FALSE(ok_lost);
  counter.remove(w);
  sync(w);
  CHECK(count(reader->handle(), "SELECT COUNT(*) FROM messages WHERE id = '" + lost + "'") == 0);
  CHECK(count(reader->handle(), "SELECT COUNT(*) FROM chunks WHERE message_id = '" + lost + "'") == 0);
}

TEST_CASE("store worker: group commit: one COMMIT for everything that was waiting") {
  TempDir dir;
  StoreWorker w(dir.file("spool.db"), inline_poster());
  CommitCounter counter;
  counter.install(w);
  int before = counter.commits;
  Gate gate(w);
  QueueIdGenerator g;
  Completions c;
  for (int i = 0; i < 20; ++i) {
    std::string id = g.next();
    w.begin_message(new_message(id), [&](bool ok, std::string) { c.add(ok); });
    w.append(id, 0, "x", [&](bool ok, std::string) { c.add(ok); });
    w.commit_message(id, "", 1, [&](bool ok, std::string) { c.add(ok); });
  }
  gate.open();
  REQUIRE(c.wait_for(60));
  CHECK(c.ok() == 60);
  // The gate's own batch, then the 60 requests in one.
  CHECK(counter.commits - before == 2);
  counter.remove(w);
}

TEST_CASE("store worker: many threads submitting at once: every Done exactly once, all stored") {
  TempDir dir;
  auto path = dir.file("spool.db");
  constexpr int kThreads = 4, kPerThread = 60, kChunks = 3;
  constexpr int kRequests = kThreads * kPerThread * (kChunks + 2);
  std::vector<std::atomic<int>> calls(kRequests);
  std::atomic<int> failures{0};
  Completions c;
  std::vector<std::vector<std::string>> ids(kThreads);
  CommitCounter counter;
  {
    // Completions run on a separate "owner" thread, as the daemon's loop would.
    std::mutex qmu;
    std::condition_variable qcv;
    std::deque<std::function<void()>> posted;
    bool stop = false;
    std::thread owner([&] {
      std::unique_lock lk(qmu);
      for (;;) {
        qcv.wait(lk, [&] { return stop || !posted.empty(); });
        if (posted.empty() && stop) return;
        auto fn = std::move(posted.front());
        posted.pop_front();
        lk.unlock();
        fn();
        lk.lock();
      }
    });
    {
      StoreWorker w(path, [&](std::function<void()> fn) {
        std::lock_guard lk(qmu);
        posted.push_back(std::move(fn));
        qcv.notify_one();
      });
      counter.install(w);
      int before = counter.commits;
      std::vector<std::thread> threads;
      for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
          QueueIdGenerator g;
          for (int m = 0; m < kPerThread; ++m) {
            // Distinct per thread: the thread number is in the sequence digits' range.
            std::string id = g.next(1'700'000'000'000'000ull + static_cast<std::uint64_t>(m * kThreads + t));
            ids[t].push_back(id);
            int base = (t * kPerThread + m) * (kChunks + 2);
            auto done = [&, base](int k) {
              return [&, k, base](bool ok, std::string) {
                calls[base + k]++;
                if (!ok) failures++;
                c.add(ok);
              };
            };
            w.begin_message(new_message(id, {"a" + std::to_string(t) + "@x"}), done(0));
            for (int k = 0; k < kChunks; ++k) w.append(id, k, id + ":" + std::to_string(k) + ";", done(1 + k));
            w.commit_message(id, "P" + id + "\n", 0, done(kChunks + 1));
          }
        });
      }
      for (auto& th : threads) th.join();
      REQUIRE(c.wait_for(kRequests));
      // Grouping happened: far fewer commits than messages.
      CHECK(counter.commits - before < kThreads * kPerThread);
      MESSAGE("commits for ", kThreads * kPerThread, " messages: ", counter.commits - before);
      counter.remove(w);
      CHECK(w.pending_bytes() == 0);
    }
    {
      std::lock_guard lk(qmu);
      stop = true;
    }
    qcv.notify_one();
    owner.join();
  }
  CHECK(failures == 0);
  for (auto& n : calls) CHECK(n == 1);
  auto s = Spool::open(path, Spool::Mode::ReadOnly);
  CHECK(s->list().size() == kThreads * kPerThread);
  for (auto& v : ids)
    for (auto& id : v) {
      std::string expect = "P" + id + "\n";
      for (int k = 0; k < kChunks; ++k) expect += id + ":" + std::to_string(k) + ";";
      CHECK(body_of(*s, id) == expect);
    }
}

TEST_CASE("store worker: a failing request does not sink the others in its batch") {
  TempDir dir;
  StoreWorker w(dir.file("spool.db"), inline_poster());
  QueueIdGenerator g;
  std::string a = g.next(), b = g.next(), dup = g.next();
  // dup exists already: a second begin for it must fail alone.
  Completions setup;
  w.begin_message(new_message(dup), [&](bool ok, std::string) { setup.add(ok); });
  w.commit_message(dup, "", 0, [&](bool ok, std::string) { setup.add(ok); });
  REQUIRE(setup.wait_for(2));
  REQUIRE(setup.ok() == 2);

  Gate gate(w);
  std::vector<std::pair<bool, std::string>> results(6);
  Completions c;
  auto rec = [&](int i) {
    return [&, i](bool ok, std::string err) {
      results[i] = {ok, err};
      c.add(ok);
    };
  };
  w.begin_message(new_message(a), rec(0));
  w.run([](Spool&) { throw std::runtime_error("boom"); }, rec(1));
  w.begin_message(new_message(dup), rec(2));
  w.run([](Spool& s) {
    exec(s.handle(), "UPDATE messages SET last_error = 'half-done' WHERE id != ''");
    throw std::runtime_error("after a write");
  }, rec(3));
  w.commit_message(a, "A", 1, rec(4));
  w.begin_message(new_message(b), rec(5));
  gate.open();
  REQUIRE(c.wait_for(6));
  CHECK(results[0].first);
  CHECK_FALSE(results[1].first);
  CHECK(results[1].second == "boom");
  CHECK_FALSE(results[2].first);
  CHECK(results[2].second.find("UNIQUE") != std::string::npos);
  CHECK_FALSE(results[3].first);
  CHECK(results[4].first);
  CHECK(results[5].first);
  std::promise<void> checked;
  w.run([&](Spool& s) {
    CHECK(s.get(a)->state == kQueued);
    CHECK(body_of(s, a) == "A");
    CHECK(s.get(dup)->state == kQueued);   // the failed begin did not touch it
    CHECK(count(s.handle(), "SELECT COUNT(*) FROM messages WHERE last_error = 'half-done'") == 0);   // rolled back
    CHECK(count(s.handle(), "SELECT COUNT(*) FROM messages WHERE id = '" + b + "' AND state = 'incoming'") == 1);
  }, [&](bool, std::string) { checked.set_value(); });
  checked.get_future().wait();
}

TEST_CASE("store worker: after a failed begin, that message's appends and commit fail too") {
  TempDir dir;
  auto path = dir.file("spool.db");
  StoreWorker w(path, inline_poster());
  QueueIdGenerator g;
  std::string id = g.next();
  Completions setup;
  w.begin_message(new_message(id), [&](bool ok, std::string) { setup.add(ok); });
  w.append(id, 0, "original", [&](bool ok, std::string) { setup.add(ok); });
  w.commit_message(id, "", 8, [&](bool ok, std::string) { setup.add(ok); });
  REQUIRE(setup.wait_for(3));
  REQUIRE(setup.ok() == 3);

  // A second session that somehow got the same id (begin fails on the
  // primary key) must not be able to add to or finalize the stored message.
  std::vector<std::pair<bool, std::string>> r(3);
  Completions c;
  w.begin_message(new_message(id), [&](bool ok, std::string e) { r[0] = {ok, e}; c.add(ok); });
  w.append(id, 1, "smuggled", [&](bool ok, std::string e) { r[1] = {ok, e}; c.add(ok); });
  w.commit_message(id, "", 16, [&](bool ok, std::string e) { r[2] = {ok, e}; c.add(ok); });
  REQUIRE(c.wait_for(3));
  CHECK(c.ok() == 0);
  CHECK(r[1].second.find("incomplete") != std::string::npos);
  sync(w);
  auto s = Spool::open(path, Spool::Mode::ReadOnly);
  CHECK(body_of(*s, id) == "original");
  CHECK(s->get(id)->size == 8);
}

TEST_CASE("store worker: an append that fails (disk full) fails its message, not the batch") {
  TempDir dir;
  auto path = dir.file("spool.db");
  StoreWorker w(path, inline_poster());
  QueueIdGenerator g;
  std::string small = g.next(), big = g.next();
  // Cap the file a few pages above its current size.
  std::promise<void> capped;
  w.run([](Spool& s) {
    auto pages = count(s.handle(), "PRAGMA page_count");
    exec(s.handle(), "PRAGMA max_page_count=" + std::to_string(pages + 8));
  }, [&](bool ok, std::string e) { REQUIRE_MESSAGE(ok, e); capped.set_value(); });
  capped.get_future().wait();

  Gate gate(w);
  std::vector<std::pair<bool, std::string>> r(6);
  Completions c;
  auto rec = [&](int i) { return [&, i](bool ok, std::string e) { r[i] = {ok, e}; c.add(ok); }; };
  w.begin_message(new_message(small), rec(0));
  w.begin_message(new_message(big), rec(1));
  w.append(small, 0, "tiny", rec(2));
  w.append(big, 0, std::string(1 << 20, 'x'), rec(3));   // does not fit
  w.commit_message(small, "", 4, rec(4));
  w.commit_message(big, "", 1 << 20, rec(5));
  gate.open();
  REQUIRE(c.wait_for(6));
  CHECK(r[0].first);
  CHECK(r[1].first);
  CHECK(r[2].first);
  CHECK_FALSE(r[3].first);
  CHECK(r[3].second.find("full") != std::string::npos);
  CHECK(r[4].first);
  CHECK_FALSE(r[5].first);
  sync(w);
  auto s = Spool::open(path, Spool::Mode::ReadOnly);
  CHECK(body_of(*s, small) == "tiny");
  CHECK(count(s->handle(), "SELECT COUNT(*) FROM messages WHERE id = '" + big + "'") == 0);   // no half message
}

TEST_CASE("store worker: a failing COMMIT fails the whole batch and leaves nothing behind") {
  TempDir dir;
  auto path = dir.file("spool.db");
  StoreWorker w(path, inline_poster());
  QueueIdGenerator g;
  std::string earlier = g.next(), a = g.next(), b = g.next(), later = g.next();
  CommitCounter counter;
  counter.install(w);

  // 'earlier' was begun in a batch that committed: it is incoming on disk.
  Completions setup;
  w.begin_message(new_message(earlier), [&](bool ok, std::string) { setup.add(ok); });
  w.append(earlier, 0, "part one", [&](bool ok, std::string) { setup.add(ok); });
  REQUIRE(setup.wait_for(2));
  REQUIRE(setup.ok() == 2);

  SUBCASE("the COMMIT is refused (commit hook)") {
    Gate gate(w);
    Completions c;
    std::vector<std::string> errors;
    std::mutex emu;
    auto rec = [&](bool ok, std::string e) {
      {
        std::lock_guard lk(emu);
        errors.push_back(e);
      }
      c.add(ok);
    };
    w.append(earlier, 1, "part two", rec);
    w.begin_message(new_message(a), rec);
    w.append(a, 0, "A", rec);
    w.commit_message(a, "", 1, rec);
    w.begin_message(new_message(b), rec);
    // Armed from inside the batch, so the gate's own COMMIT is not the one refused.
    w.run([&](Spool&) { counter.fail_next = 1; }, rec);
    gate.open();
    REQUIRE(c.wait_for(6));
    CHECK(c.ok() == 0);
    for (auto& e : errors) CHECK(e.find("commit failed") != std::string::npos);
  }
  SUBCASE("the COMMIT fails on a deferred constraint") {
    Gate gate(w);
    Completions c;
    auto rec = [&](bool ok, std::string) { c.add(ok); };
    w.append(earlier, 1, "part two", rec);
    w.begin_message(new_message(a), rec);
    w.commit_message(a, "", 0, rec);
    w.begin_message(new_message(b), rec);
    // Statement-time checks pass; COMMIT finds the dangling reference.
    w.run([](Spool& s) {
      exec(s.handle(), "PRAGMA defer_foreign_keys=ON");
      exec(s.handle(), "INSERT INTO chunks(message_id, seq, data) VALUES('no-such-message', 0, x'00')");
    }, rec);
    gate.open();
    REQUIRE(c.wait_for(5));
    CHECK(c.ok() == 0);
  }

  sync(w);
  {
    auto s = Spool::open(path, Spool::Mode::ReadOnly);
    // Nothing of the batch, and the message it touched is gone entirely.
    CHECK(count(s->handle(), "SELECT COUNT(*) FROM messages") == 0);
    CHECK(count(s->handle(), "SELECT COUNT(*) FROM chunks") == 0);
    CHECK(count(s->handle(), "SELECT COUNT(*) FROM recipients") == 0);
  }
  // Its later requests fail (no half message can be finalized) ...
  Completions after;
  std::vector<bool> oks(3);
  w.append(earlier, 2, "part three", [&](bool ok, std::string) { oks[0] = ok; after.add(ok); });
  w.commit_message(earlier, "", 0, [&](bool ok, std::string) { oks[1] = ok; after.add(ok); });
  w.commit_message(b, "", 0, [&](bool ok, std::string) { oks[2] = ok; after.add(ok); });
  REQUIRE(after.wait_for(3));
  CHECK(after.ok() == 0);
  // ... while new work goes through again.
  Completions fresh;
  w.begin_message(new_message(later), [&](bool ok, std::string) { fresh.add(ok); });
  w.commit_message(later, "", 0, [&](bool ok, std::string) { fresh.add(ok); });
  REQUIRE(fresh.wait_for(2));
  CHECK(fresh.ok() == 2);
  counter.remove(w);
  sync(w);
  auto s = Spool::open(path, Spool::Mode::ReadOnly);
  auto all = s->list();
  REQUIRE(all.size() == 1);
  CHECK(all[0].id == later);
}

TEST_CASE("store worker: abort discards an incoming message") {
  TempDir dir;
  auto path = dir.file("spool.db");
  StoreWorker w(path, inline_poster());
  QueueIdGenerator g;
  std::string id = g.next();
  Completions c;
  w.begin_message(new_message(id), [&](bool ok, std::string) { c.add(ok); });
  w.append(id, 0, "partial", [&](bool ok, std::string) { c.add(ok); });
  REQUIRE(c.wait_for(2));
  w.abort_message(id);
  sync(w);
  auto s = Spool::open(path, Spool::Mode::ReadOnly);
  CHECK(count(s->handle(), "SELECT COUNT(*) FROM messages") == 0);
  CHECK(count(s->handle(), "SELECT COUNT(*) FROM chunks") == 0);
}

TEST_CASE("store worker: pending_bytes counts body bytes not yet written") {
  TempDir dir;
  StoreWorker w(dir.file("spool.db"), inline_poster());
  QueueIdGenerator g;
  std::string id = g.next();
  CHECK(w.pending_bytes() == 0);
  Gate gate(w);
  Completions c;
  w.begin_message(new_message(id), [&](bool ok, std::string) { c.add(ok); });
  w.append(id, 0, std::string(1000, 'a'), [&](bool ok, std::string) { c.add(ok); });
  w.append(id, 1, std::string(2000, 'b'), [&](bool ok, std::string) { c.add(ok); });
  CHECK(w.pending_bytes() == 3000);
  gate.open();
  REQUIRE(c.wait_for(3));
  CHECK(w.pending_bytes() == 0);
}

TEST_CASE("store worker: the destructor finishes every queued request") {
  TempDir dir;
  auto path = dir.file("spool.db");
  Completions c;
  QueueIdGenerator g;
  std::vector<std::string> ids;
  std::unique_ptr<Gate> gate;   // outlives the worker: it is opened while ~StoreWorker waits
  std::thread opener;
  {
    StoreWorker w(path, inline_poster());
    gate = std::make_unique<Gate>(w);   // everything below is still queued when the destructor starts
    for (int i = 0; i < 50; ++i) {
      ids.push_back(g.next());
      w.begin_message(new_message(ids.back()), [&](bool ok, std::string) { c.add(ok); });
      w.append(ids.back(), 0, "x", [&](bool ok, std::string) { c.add(ok); });
      w.commit_message(ids.back(), "", 1, [&](bool ok, std::string) { c.add(ok); });
    }
    CHECK(c.total() == 0);
    opener = std::thread([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      gate->open();
    });
  }
  opener.join();
  CHECK(c.total() == 150);
  CHECK(c.ok() == 150);
  auto s = Spool::open(path, Spool::Mode::ReadOnly);
  CHECK(s->list().size() == 50);
}

TEST_CASE("store worker: an idle worker checkpoints the WAL") {
  TempDir dir;
  auto path = dir.file("spool.db");
  StoreWorker w(path, inline_poster());
  Completions c;
  QueueIdGenerator g;
  for (int i = 0; i < 20; ++i) {
    std::string id = g.next();
    w.begin_message(new_message(id), [&](bool ok, std::string) { c.add(ok); });
    w.append(id, 0, std::string(20000, 'z'), [&](bool ok, std::string) { c.add(ok); });
    w.commit_message(id, "", 20000, [&](bool ok, std::string) { c.add(ok); });
  }
  REQUIRE(c.wait_for(60));
  // The main file only grows when a checkpoint copies pages into it.
  auto db_size = [&] { return std::filesystem::file_size(path); };
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (db_size() < 20 * 20000 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CHECK(db_size() >= 20 * 20000);
}

TEST_CASE("store worker: relay work shares the drain's COMMIT but not the failures of other requests") {
  TempDir dir;
  auto path = dir.file("spool.db");
  StoreWorker w(path, inline_poster());
  QueueIdGenerator g;
  CommitCounter counter;
  counter.install(w);
  auto outcome = [](const std::string& key) {
    return [key](Spool& s) { exec(s.handle(), "INSERT INTO meta(key, value) VALUES('" + key + "', 1)"); };
  };
  std::mutex mu;
  std::map<std::string, std::pair<bool, std::string>> result;
  Completions c;
  auto rec = [&](std::string name) {
    return [&, name](bool ok, std::string e) {
      {
        std::lock_guard lk(mu);
        result[name] = {ok, e};
      }
      c.add(ok);
    };
  };

  SUBCASE("one COMMIT for submissions and outcomes: one fsync per drain") {
    std::string a = g.next();
    Gate gate(w);
    const auto before = counter.commits.load();
    w.begin_message(new_message(a), rec("begin a"));
    w.run(outcome("outcome 1"), rec("outcome 1"));
    w.append(a, 0, "A", rec("append a"));
    w.commit_message(a, "", 1, rec("commit a"));
    w.run(outcome("outcome 2"), rec("outcome 2"));
    gate.open();
    REQUIRE(c.wait_for(5));
    for (auto name : {"begin a", "outcome 1", "append a", "commit a", "outcome 2"}) CHECK_MESSAGE(result[name].first, name);
    // The gate's drain (if the hook counts it) and this one; a transaction of
    // its own for the outcomes would make it 3.
    CHECK(counter.commits.load() - before <= 2);
  }
  SUBCASE("the drain's COMMIT fails: its outcomes fail with it (the recorder writes them again), none is half on disk") {
    std::string a = g.next(), b = g.next();
    Gate gate(w);
    w.begin_message(new_message(a), rec("begin a"));
    w.run(outcome("outcome 1"), rec("outcome 1"));
    w.append(a, 0, "A", rec("append a"));
    w.commit_message(a, "", 1, rec("commit a"));
    w.begin_message(new_message(b), rec("begin b"));
    w.run([&](Spool&) { counter.fail_next = 1; }, rec("arm"));   // this drain's COMMIT is refused
    w.run(outcome("outcome 2"), rec("outcome 2"));
    gate.open();
    REQUIRE(c.wait_for(7));
    for (auto name : {"begin a", "outcome 1", "append a", "commit a", "begin b", "arm", "outcome 2"}) {
      CHECK_MESSAGE(!result[name].first, name);
      CHECK(result[name].second.find("commit failed") != std::string::npos);
    }
    sync(w);
    auto s = Spool::open(path, Spool::Mode::ReadOnly);
    CHECK(count(s->handle(), "SELECT COUNT(*) FROM meta WHERE key LIKE 'outcome %'") == 0);
    CHECK(count(s->handle(), "SELECT COUNT(*) FROM messages WHERE state = 'queued'") == 0);
  }
  SUBCASE("an outcome whose statements fail rolls back only itself; the submissions around it commit") {
    std::string a = g.next(), b = g.next();
    Gate gate(w);
    w.begin_message(new_message(a), rec("begin a"));
    w.append(a, 0, "A", rec("append a"));
    w.commit_message(a, "", 1, rec("commit a"));
    w.run([&](Spool& s) {
      outcome("outcome 1")(s);
      outcome("outcome 1")(s);   // the same key again: a constraint error
    }, rec("outcome 1"));
    w.begin_message(new_message(b), rec("begin b"));
    w.commit_message(b, "", 0, rec("commit b"));
    gate.open();
    REQUIRE(c.wait_for(6));
    CHECK_FALSE(result["outcome 1"].first);
    CHECK_FALSE(result["outcome 1"].second.empty());
    for (auto name : {"begin a", "append a", "commit a", "begin b", "commit b"}) CHECK_MESSAGE(result[name].first, name);
    sync(w);
    auto s = Spool::open(path, Spool::Mode::ReadOnly);
    CHECK(count(s->handle(), "SELECT COUNT(*) FROM meta WHERE key LIKE 'outcome %'") == 0);
    CHECK(count(s->handle(), "SELECT COUNT(*) FROM messages WHERE state = 'queued'") == 2);
  }
  SUBCASE("work that throws rolls back only itself") {
    std::string a = g.next();
    Gate gate(w);
    w.begin_message(new_message(a), rec("begin a"));
    w.run([&](Spool& s) {
      outcome("outcome 1")(s);
      throw SpoolError("spool: disk I/O error", SQLITE_IOERR);
    }, rec("outcome 1"));
    w.commit_message(a, "", 0, rec("commit a"));
    gate.open();
    REQUIRE(c.wait_for(3));
    CHECK_FALSE(result["outcome 1"].first);
    CHECK(result["outcome 1"].second == "spool: disk I/O error");
    CHECK(result["begin a"].first);
    CHECK(result["commit a"].first);
    sync(w);
    auto s = Spool::open(path, Spool::Mode::ReadOnly);
    CHECK(count(s->handle(), "SELECT COUNT(*) FROM meta WHERE key LIKE 'outcome %'") == 0);
    CHECK(count(s->handle(), "SELECT COUNT(*) FROM messages WHERE state = 'queued'") == 1);
  }
  counter.remove(w);
}

TEST_CASE("store worker: a run() that names its poster completes through it, in the same group commit") {
  // The relay runs on a loop of its own: its completions must reach that
  // loop, not the submission side's, while sharing the drain's one COMMIT.
  TempDir dir;
  PostQueue home, relay;
  StoreWorker w(dir.file("spool.db"), home.poster());
  CommitCounter counter;
  w.run([&](Spool& s) { sqlite3_commit_hook(s.handle(), &CommitCounter::hook, &counter); }, [](bool, std::string) {});
  REQUIRE(home.run_one());
  std::promise<void> started, opened;
  w.run(
      [&](Spool&) {
        started.set_value();
        opened.get_future().wait();
      },
      {});
  started.get_future().wait();
  const int before = counter.commits;
  QueueIdGenerator g;
  const std::string id = g.next();
  std::vector<std::string> at_home, at_relay;
  w.store_message(new_message(id), "body\r\n", "", 6, [&](bool ok, std::string) { at_home.push_back(ok ? "stored" : "failed"); });
  w.run([&](Spool& s) { CHECK(s.get(id).has_value()); },
        [&](bool ok, std::string) { at_relay.push_back(ok ? "ran" : "failed"); }, relay.poster());
  opened.set_value();
  REQUIRE(relay.run_one());
  CHECK(at_relay == std::vector<std::string>{"ran"});
  CHECK(at_home.empty());   // nothing of the relay's came through home, and home's is not run yet
  REQUIRE(home.run_one());
  CHECK(at_home == std::vector<std::string>{"stored"});
  CHECK_FALSE(home.run_one(std::chrono::seconds(0)));
  CHECK_FALSE(relay.run_one(std::chrono::seconds(0)));
  CHECK(counter.commits - before == 2);   // the gate's batch, then one for both requests
  w.run([](Spool& s) { sqlite3_commit_hook(s.handle(), nullptr, nullptr); }, [](bool, std::string) {});
  REQUIRE(home.run_one());
}

TEST_CASE("store worker: a maildrop file's import is recorded with its message; one file never becomes two") {
  TempDir dir;
  auto path = dir.file("spool.db");
  StoreWorker w(path, inline_poster());
  auto reader = Spool::open(path, Spool::Mode::ReadOnly);
  QueueIdGenerator g;
  auto imported = [&](const std::string& id, const std::string& file) {
    NewMessage m = new_message(id);
    m.import_key = file;
    return m;
  };
  auto messages = [&](const std::string& id) {
    return count(reader->handle(), "SELECT COUNT(*) FROM messages WHERE id = '" + id + "'");
  };
  struct Result {
    bool ok = false;
    std::string error;
  };
  auto whole = [&](const std::string& id, const std::string& file) {
    std::promise<Result> p;
    w.store_message(imported(id, file), "body\r\n", "", 6,
                    [&](bool ok, std::string err) { p.set_value({ok, std::move(err)}); });
    return p.get_future().get();
  };
  auto chunked = [&](const std::string& id, const std::string& file) {
    std::promise<Result> p;
    w.begin_message(imported(id, file), {});
    w.append(id, 0, "body\r\n", {});
    w.commit_message(id, "", 6, [&](bool ok, std::string err) { p.set_value({ok, std::move(err)}); });
    return p.get_future().get();
  };

  SUBCASE("whole: recorded in the message's commit; a second commit of the file fails and leaves nothing") {
    std::string first = g.next(), second = g.next();
    CHECK(whole(first, "1.2.abc").ok);
    CHECK(reader->imported_as("1.2.abc") == first);
    Result r = whole(second, "1.2.abc");
    CHECK_FALSE(r.ok);
    CHECK(r.error.find("maildrop file 1.2.abc was imported already as " + first) != std::string::npos);
    CHECK(messages(second) == 0);
    CHECK(messages(first) == 1);
    CHECK(reader->imported_as("other") == std::nullopt);
  }
  SUBCASE("chunked: recorded at the commit, not at the begin; a second file's commit fails and is discarded") {
    std::string first = g.next(), second = g.next();
    std::promise<void> begun;
    w.begin_message(imported(first, "3.4.def"), {});
    w.run([](Spool&) {}, [&](bool, std::string) { begun.set_value(); });
    begun.get_future().wait();
    CHECK(reader->imported_as("3.4.def") == std::nullopt);   // an incoming message is not an import yet
    w.append(first, 0, "body\r\n", {});
    std::promise<bool> committed;
    w.commit_message(first, "", 6, [&](bool ok, std::string) { committed.set_value(ok); });
    CHECK(committed.get_future().get());
    CHECK(reader->imported_as("3.4.def") == first);
    Result r = chunked(second, "3.4.def");
    CHECK_FALSE(r.ok);
    CHECK(r.error.find("imported already as " + first) != std::string::npos);
    sync(w);
    CHECK(messages(second) == 0);
    CHECK(count(reader->handle(), "SELECT COUNT(*) FROM chunks WHERE message_id = '" + second + "'") == 0);
  }
  SUBCASE("an aborted import records nothing: the file can still be imported") {
    std::string aborted = g.next(), again = g.next();
    w.begin_message(imported(aborted, "5.6.ghi"), {});
    w.abort_message(aborted);
    sync(w);
    CHECK(reader->imported_as("5.6.ghi") == std::nullopt);
    CHECK(chunked(again, "5.6.ghi").ok);
    CHECK(reader->imported_as("5.6.ghi") == again);
  }
  SUBCASE("a refused COMMIT records nothing; forget_import drops a record") {
    CommitCounter counter;
    counter.install(w);
    std::string lost = g.next(), kept = g.next();
    // One batch: the run that arms the failure and the import (see the
    // whole-message case above).
    Gate gate(w);
    w.run([&](Spool&) { counter.fail_next = 1; }, {});
    std::promise<bool> p;
    w.store_message(imported(lost, "7.8.jkl"), "body\r\n", "", 6, [&](bool ok, std::string) { p.set_value(ok); });
    gate.open();
    CHECK_FALSE(p.get_future().get());
    counter.remove(w);
    CHECK(reader->imported_as("7.8.jkl") == std::nullopt);
    CHECK(whole(kept, "7.8.jkl").ok);
    w.run([](Spool& s) { s.forget_import("7.8.jkl"); }, {});
    sync(w);
    CHECK(reader->imported_as("7.8.jkl") == std::nullopt);
    CHECK(messages(kept) == 1);   // the message stays; only the file's record goes
  }
  SUBCASE("a submission that is no import records nothing") {
    std::string id = g.next();
    CHECK(whole(id, "").ok);
    CHECK(count(reader->handle(), "SELECT COUNT(*) FROM maildrop_imports") == 0);
  }
}
