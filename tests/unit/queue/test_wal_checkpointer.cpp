// The WAL checkpointer (queue/wal_checkpointer.h): checkpoints run on a thread
// and connection of their own, never inside the writer's group commit.
#include <doctest/doctest.h>
#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "queue/queue_id.h"
#include "queue/spool.h"
#include "queue/store_worker.h"
#include "queue/wal_checkpointer.h"
#include "unit/queue/helpers.h"

using namespace outbox::queue;
using namespace outbox::queue::test;
using namespace std::chrono_literals;

namespace {

StoreWorker::Poster inline_poster() {
  return [](std::function<void()> fn) { fn(); };
}

// Submits n messages of `size` bytes, all at once (they form a few large
// batches), and waits for every completion.
void submit(StoreWorker& w, QueueIdGenerator& g, int n, std::size_t size = 20000) {
  Completions c;
  for (int i = 0; i < n; ++i) {
    std::string id = g.next();
    w.begin_message(new_message(id), [&](bool ok, std::string) { c.add(ok); });
    w.append(id, 0, std::string(size, 'z'), [&](bool ok, std::string) { c.add(ok); });
    w.commit_message(id, "", size, [&](bool ok, std::string) { c.add(ok); });
  }
  REQUIRE(c.wait_for(3 * n, 60s));
  REQUIRE(c.ok() == 3 * n);
}

// Submits n messages one after the other, each waiting for its 250: a
// steady load of small batches, as sessions make it.
void submit_steady(StoreWorker& w, QueueIdGenerator& g, int n, std::size_t size = 20000) {
  for (int i = 0; i < n; ++i) submit(w, g, 1, size);
}

std::uintmax_t wal_size(const std::string& db) {
  std::error_code ec;
  auto s = std::filesystem::file_size(db + "-wal", ec);
  return ec ? 0 : s;
}

template <typename P>
bool eventually(P pred, std::chrono::milliseconds limit = 10s) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

}  // namespace

TEST_CASE("wal checkpointer: copies the WAL while commits go on and truncates it when idle; the writer never checkpoints") {
  TempDir dir;
  auto path = dir.file("spool.db");
  CheckpointOptions o;
  o.passive_every_pages = 64;
  o.idle = 100ms;
  StoreWorker w(path, inline_poster(), o);
  QueueIdGenerator g;
  submit_steady(w, g, 150);   // ~5 pages each: well over 64 pages, far below restart_pages
  // The main file only grows when a checkpoint copies pages into it, the
  // -wal file is only cut to nothing by a TRUNCATE checkpoint.
  // Both at once: a slow build can pause 100 ms mid-load, and that idle
  // moment's TRUNCATE is followed by more commits; the one after the load
  // leaves the WAL empty.
  CHECK(eventually([&] { return w.checkpoint_stats().background.truncated >= 1 && wal_size(path) == 0; }));
  CHECK(std::filesystem::file_size(path) >= 150 * 20000);
  auto st = w.checkpoint_stats();
  CHECK(st.background.passive >= 2);   // during the load, not only at the end
  CHECK(st.background.failed == 0);
  CHECK(st.writer == 0);               // the commit path never checkpointed
  auto ro = Spool::open(path, Spool::Mode::ReadOnly);
  CHECK(ro->list().size() == 150);
}

TEST_CASE("wal checkpointer: above restart_pages the writer resets the WAL once the checkpointer has caught up") {
  TempDir dir;
  auto path = dir.file("spool.db");
  CheckpointOptions o;
  o.passive_every_pages = 32;
  o.idle = 1h;                 // no idle TRUNCATE in this test
  o.restart_pages = 256;
  o.writer_catch_up_pages = 64;
  o.max_wal_pages = 100000;    // no last resort either
  StoreWorker w(path, inline_poster(), o);
  QueueIdGenerator g;
  submit_steady(w, g, 900);    // ~5,000 pages
  auto st = w.checkpoint_stats();
  CHECK(st.writer >= 1);
  CHECK(st.background.passive >= 1);
  // Reset to its start each time: the file stays at restart_pages frames
  // plus however far the checkpointer lagged at its worst (a reset waits for
  // it to catch up), below the ~5,000 pages written. How far it lags is the
  // machine's: on a loaded one the file reached 820 pages of 1,500 written
  // and 2,023 of 5,000. Without a reset it would hold every page written.
  CHECK(wal_size(path) < 4000 * 4120);
}

TEST_CASE("wal checkpointer: when it never runs, the writer bounds the WAL itself (last resort)") {
  TempDir dir;
  auto path = dir.file("spool.db");
  CheckpointOptions o;
  o.passive_every_pages = 1 << 30;   // the background thread never starts a pass...
  o.idle = 1h;
  o.restart_pages = 128;
  o.writer_catch_up_pages = 0;       // ...so it never catches up
  o.max_wal_pages = 256;
  StoreWorker w(path, inline_poster(), o);
  QueueIdGenerator g;
  submit_steady(w, g, 200);          // ~1,000 pages
  auto st = w.checkpoint_stats();
  CHECK(st.background.passive == 0);
  CHECK(st.writer >= 2);
  CHECK(wal_size(path) < 600 * 4120);
}

TEST_CASE("wal checkpointer: a failing checkpoint is reported once, is not fatal, and the next success truncates") {
  TempDir dir;
  auto path = dir.file("spool.db");
  std::atomic<bool> fail{true};
  CheckpointOptions o;
  o.passive_every_pages = 16;
  o.idle = 50ms;
  o.fault = [&] {
    if (fail) throw SpoolError("wal_checkpoint(PASSIVE): disk I/O error (test)", SQLITE_IOERR);
  };
  StoreWorker w(path, inline_poster(), o);
  std::mutex mu;
  std::vector<std::string> reports;
  w.on_checkpoint_error([&](std::string e) {
    std::lock_guard lk(mu);
    reports.push_back(std::move(e));
  });
  QueueIdGenerator g;
  submit_steady(w, g, 40);   // every submission still gets its completion, ok
  CHECK(eventually([&] { return w.checkpoint_stats().background.failed >= 3; }));
  {
    std::lock_guard lk(mu);
    REQUIRE(reports.size() == 1);   // once per run of failures, not every retry
    CHECK(reports[0].find("disk I/O error (test)") != std::string::npos);
  }
  CHECK(w.checkpoint_stats().background.truncated == 0);
  CHECK(wal_size(path) > 0);
  fail = false;
  CHECK(eventually([&] { return w.checkpoint_stats().background.truncated >= 1; }));
  CHECK(wal_size(path) == 0);
  submit(w, g, 5);   // and the worker goes on
  std::lock_guard lk(mu);
  CHECK(reports.size() == 1);
}

TEST_CASE("wal checkpointer: stopping joins its thread promptly, idle or under load") {
  TempDir dir;
  auto path = dir.file("spool.db");
  QueueIdGenerator g;
  SUBCASE("an idle checkpointer waiting for a long deadline") {
    { StoreWorker w0(path, inline_poster()); }   // creates the spool
    auto t0 = std::chrono::steady_clock::now();
    {
      CheckpointOptions o;
      o.idle = 1h;
      WalCheckpointer c(path, o, {});
      c.committed(10, 0);   // arms the idle deadline, an hour away
      std::this_thread::sleep_for(20ms);
    }
    CHECK(std::chrono::steady_clock::now() - t0 < 2s);
  }
  SUBCASE("a store worker destroyed with requests still queued and passes under way") {
    for (int round = 0; round < 5; ++round) {
      CheckpointOptions o;
      o.passive_every_pages = 8;
      o.idle = 1ms;
      StoreWorker w(path, inline_poster(), o);
      for (int i = 0; i < 30; ++i) {
        std::string id = g.next();
        w.begin_message(new_message(id), {});
        w.append(id, 0, std::string(20000, 'q'), {});
        w.commit_message(id, "", 20000, {});
      }
    }   // the destructor finishes the queue, stops the checkpointer, closes
    auto ro = Spool::open(path, Spool::Mode::ReadOnly);
    CHECK(ro->list().size() == 150);
  }
}

TEST_CASE("spool: the checkpoint connection never creates a spool") {
  TempDir dir;
  CHECK_THROWS_AS(Spool::open(dir.file("none.db"), Spool::Mode::Checkpoint), SpoolError);
  CHECK_FALSE(std::filesystem::exists(dir.file("none.db")));
}
