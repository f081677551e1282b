// The WAL batching VFS (queue/wal_batching_vfs.h) against real files: what
// SQLite promises must still hold (every commit durable and visible to other
// connections, nothing of an open or rolled back transaction visible, frames
// read back within a transaction), with fewer writes.
#include <doctest/doctest.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "unit/queue/helpers.h"
#include "queue/spool.h"
#include "queue/wal_batching_vfs.h"

using namespace outbox::queue;
using outbox::queue::test::new_message;
using outbox::queue::test::TempDir;

namespace {

struct Db {
  sqlite3* db = nullptr;
  Db(const std::string& path, bool batching) {
    const char* vfs = batching ? wal_batching_vfs() : nullptr;
    REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs) == SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    exec("PRAGMA journal_mode=WAL");
    exec("PRAGMA synchronous=FULL");
  }
  ~Db() { sqlite3_close(db); }
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;
  void exec(const std::string& sql) {
    char* err = nullptr;
    int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
    INFO(sql << ": " << std::string(err ? err : ""));
    sqlite3_free(err);
    REQUIRE(rc == SQLITE_OK);
  }
  std::string text(const std::string& sql) {
    sqlite3_stmt* st = nullptr;
    REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK);
    std::string out;
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
      out = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return out;
  }
  long long number(const std::string& sql) { return std::stoll(text(sql)); }
};

// n rows of `size` octets each, every row's content derived from its key.
std::string insert_rows(int from, int n, int size) {
  return "WITH RECURSIVE k(i) AS (SELECT " + std::to_string(from) + " UNION ALL SELECT i+1 FROM k WHERE i < " +
         std::to_string(from + n - 1) + ") INSERT INTO t(id, body) SELECT i, substr(hex(zeroblob(" +
         std::to_string(size) + ")) || i, 1, " + std::to_string(size) + ") FROM k";
}

}  // namespace

TEST_CASE("wal batching: the VFS is registered once and wraps the default one") {
  const char* name = wal_batching_vfs();
  REQUIRE(name != nullptr);
  CHECK(std::string(name) == "outbox-wal-batching");
  CHECK(wal_batching_vfs() == name);
  CHECK(sqlite3_vfs_find(name) != nullptr);
  CHECK(sqlite3_vfs_find(nullptr) != sqlite3_vfs_find(name));   // not made the default
}

TEST_CASE("wal batching: a commit of many pages is a few writes, and another connection reads all of it") {
  TempDir dir;
  const std::string path = dir.file("a.db");
  Db w(path, true);
  w.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, body TEXT)");
  auto before = wal_batching_stats();
  w.exec("BEGIN");
  w.exec(insert_rows(1, 200, 3000));
  w.exec("COMMIT");
  auto after = wal_batching_stats();
  const auto in = after.writes_in - before.writes_in;
  const auto out = after.writes_out - before.writes_out;
  INFO("writes from SQLite " << in << ", to the file " << out);
  CHECK(in >= 2 * 150);      // two per frame, about 150 pages of rows
  CHECK(out * 20 <= in);     // up to 31 pages per write
  Db r(path, false);
  CHECK(r.number("SELECT count(*) FROM t") == 200);
  CHECK(r.number("SELECT sum(length(body)) FROM t") == 200 * 3000);
  CHECK(r.text("SELECT body FROM t WHERE id = 77").substr(0, 10) == std::string(10, '0'));
  CHECK(r.text("PRAGMA integrity_check") == "ok");
}

TEST_CASE("wal batching: a commit larger than the buffer goes in pieces, in order") {
  TempDir dir;
  const std::string path = dir.file("a.db");
  Db w(path, true);
  w.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, body TEXT)");
  auto before = wal_batching_stats();
  w.exec(insert_rows(1, 1000, 4000));   // about 1,000 frames, 4 MiB
  auto after = wal_batching_stats();
  const auto in = after.writes_in - before.writes_in;
  const auto out = after.writes_out - before.writes_out;
  INFO("writes from SQLite " << in << ", to the file " << out);
  CHECK(out >= 4 * 1024 * 1024 / (31 * 4096));   // never more than the buffer at once
  CHECK(out * 20 <= in);
  Db r(path, false);
  CHECK(r.number("SELECT count(*) FROM t") == 1000);
  CHECK(r.number("SELECT count(*) FROM t WHERE substr(body, 3981) = substr(hex(zeroblob(4000)) || id, 3981, 20)") == 1000);
  CHECK(r.text("PRAGMA integrity_check") == "ok");
}

TEST_CASE("wal batching: a transaction larger than the page cache spills frames and reads them back") {
  TempDir dir;
  const std::string path = dir.file("a.db");
  Db w(path, true);
  w.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, body TEXT)");
  w.exec("CREATE INDEX t_body ON t(body)");
  w.exec("PRAGMA cache_size=8");   // pages: the transaction cannot stay in memory
  w.exec("BEGIN");
  w.exec(insert_rows(1, 600, 700));
  w.exec("UPDATE t SET body = 'x' || body WHERE id % 3 = 0");
  // Read within the transaction: pages that went to the WAL come back.
  CHECK(w.number("SELECT count(*) FROM t WHERE body LIKE 'x%'") == 200);
  CHECK(w.number("SELECT sum(length(body)) FROM t") == 600 * 700 + 200);
  w.exec("COMMIT");
  Db r(path, false);
  CHECK(r.number("SELECT count(*) FROM t WHERE body LIKE 'x%'") == 200);
  CHECK(r.number("SELECT sum(length(body)) FROM t") == 600 * 700 + 200);
  CHECK(r.text("PRAGMA integrity_check") == "ok");

  SUBCASE("and a rolled back transaction that spilled leaves nothing") {
    w.exec("BEGIN");
    w.exec(insert_rows(1001, 600, 700));
    w.exec("DELETE FROM t WHERE id < 300");
    CHECK(w.number("SELECT count(*) FROM t") == 901);
    w.exec("ROLLBACK");
    CHECK(w.number("SELECT count(*) FROM t") == 600);
    CHECK(r.number("SELECT count(*) FROM t") == 600);
    w.exec(insert_rows(2001, 10, 700));   // the next commit appends where the last one ended
    CHECK(r.number("SELECT count(*) FROM t") == 610);
    CHECK(r.text("PRAGMA integrity_check") == "ok");
  }
}

TEST_CASE("wal batching: another connection sees each commit and never a frame of an open transaction") {
  TempDir dir;
  const std::string path = dir.file("a.db");
  Db w(path, true);
  w.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, body TEXT)");
  Db r(path, false);
  int rows = 0;
  for (int i = 0; i < 40; ++i) {
    w.exec("BEGIN");
    w.exec(insert_rows(rows + 1, 5, 1500));
    CHECK(r.number("SELECT count(*) FROM t") == rows);
    w.exec("COMMIT");
    rows += 5;
    CHECK(r.number("SELECT count(*) FROM t") == rows);
    if (i % 10 == 9) CHECK(r.text("PRAGMA wal_checkpoint(PASSIVE)").size() > 0);   // the reader copies frames too
  }
  CHECK(r.text("PRAGMA integrity_check") == "ok");
}

TEST_CASE("wal batching: after a process dies mid-transaction, every commit is there and nothing else") {
  TempDir dir;
  const std::string path = dir.file("a.db");
  {
    Db w(path, true);
    w.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, body TEXT)");
  }
  pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // No doctest here: plain SQLite, then _exit with the transaction open
    // and frames still buffered (no xClose, no flush).
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, wal_batching_vfs()) != SQLITE_OK) ::_exit(2);
    sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL", nullptr, nullptr, nullptr);
    for (int i = 0; i < 10; ++i)
      if (sqlite3_exec(db, insert_rows(i * 20 + 1, 20, 2500).c_str(), nullptr, nullptr, nullptr) != SQLITE_OK)
        ::_exit(3);
    sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr);
    sqlite3_exec(db, insert_rows(1001, 20, 2500).c_str(), nullptr, nullptr, nullptr);
    ::_exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  Db r(path, false);
  CHECK(r.number("SELECT count(*) FROM t") == 200);
  CHECK(r.number("SELECT count(*) FROM t WHERE id > 1000") == 0);
  CHECK(r.text("PRAGMA integrity_check") == "ok");
}

TEST_CASE("wal batching: the spool's writer appends through it") {
  TempDir dir;
  auto before = wal_batching_stats();
  auto spool = Spool::open(dir.file("spool.db"));
  auto m = new_message("08E8g6kJBb0001", {"b@example.org"}, 1'000'000, "a@example.org");
  const std::string body = std::string(3000, 'x') + "\r\n";
  spool->begin();
  spool->store_whole(m, body, "", body.size(), 1'000'001);
  spool->commit();
  auto after = wal_batching_stats();
  CHECK(after.writes_in > before.writes_in);
  CHECK(after.writes_out - before.writes_out < after.writes_in - before.writes_in);
  auto reader = Spool::open(dir.file("spool.db"), Spool::Mode::ReadOnly);
  auto got = reader->get(m.id);
  REQUIRE(got.has_value());
  CHECK(got->state == "queued");
}

TEST_CASE("checkpoint batching: consecutive pages go in one write, and the database file alone then holds every row") {
  TempDir dir;
  const std::string path = dir.file("a.db");
  REQUIRE(checkpoint_batching_vfs() != nullptr);
  CHECK(std::string(checkpoint_batching_vfs()) != wal_batching_vfs());
  Db w(path, true);
  w.exec("PRAGMA wal_autocheckpoint=0");
  w.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, body TEXT)");
  for (int i = 0; i < 30; ++i) w.exec(insert_rows(i + 1, 1, 100000));   // a large body's overflow pages each
  sqlite3* c = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &c, SQLITE_OPEN_READWRITE, checkpoint_batching_vfs()) == SQLITE_OK);
  sqlite3_exec(c, "PRAGMA synchronous=FULL", nullptr, nullptr, nullptr);
  auto before = wal_batching_stats();
  int log = -1, done = -1;
  REQUIRE(sqlite3_wal_checkpoint_v2(c, nullptr, SQLITE_CHECKPOINT_PASSIVE, &log, &done) == SQLITE_OK);
  auto after = wal_batching_stats();
  CHECK(log > 700);          // 30 × 25 pages and the b-tree
  CHECK(done == log);        // all of it copied
  const auto in = after.writes_in - before.writes_in;
  const auto out = after.writes_out - before.writes_out;
  INFO("page writes " << in << ", to the file " << out);
  CHECK(in >= 700);
  CHECK(out * 10 <= in);
  // The writer now restarts the WAL from its start; what it held is only in
  // the database file, which a connection without the shim reads.
  w.exec(insert_rows(1001, 1, 10));
  sqlite3_close(c);
  Db r(path, false);
  CHECK(r.number("SELECT count(*) FROM t") == 31);
  CHECK(r.number("SELECT sum(length(body)) FROM t WHERE id <= 30") == 30 * 100000);
  CHECK(r.number("SELECT count(*) FROM t WHERE id <= 30 AND substr(body, 99991) = substr(hex(zeroblob(100000)) || id, 99991, 10)") == 30);
  CHECK(r.text("PRAGMA integrity_check") == "ok");
}

TEST_CASE("checkpoint batching: the spool's checkpointer uses it, and a reader during checkpoints sees every commit") {
  TempDir dir;
  const std::string path = dir.file("spool.db");
  auto writer = Spool::open(path);
  auto checkpointer = Spool::open(path, Spool::Mode::Checkpoint);
  auto reader = Spool::open(path, Spool::Mode::ReadOnly);
  for (int i = 0; i < 40; ++i) {
    auto m = new_message("08E8g6kJBb" + std::to_string(1000 + i), {"b@example.org"}, 1'000'000 + i, "a@example.org");
    const std::string body = std::string(20000 + i, static_cast<char>('a' + i % 26)) + "\r\n";
    writer->begin();
    writer->store_whole(m, body, "", body.size(), 1'000'001 + i);
    writer->commit();
    if (i % 5 == 4) {
      auto before = wal_batching_stats();
      checkpointer->checkpoint();
      auto after = wal_batching_stats();
      CHECK(after.writes_in - before.writes_in >= 5 * 5);   // its database pages went through the shim
      CHECK(after.writes_out - before.writes_out < after.writes_in - before.writes_in);
    }
    std::string got;
    auto part = reader->read_body_part(m.id, Spool::kPrefixSeq, 1 << 20, [&](std::string_view b) { got.append(b); });
    CHECK(part.status == Spool::BodyPart::Status::End);
    CHECK(got == body);
  }
  checkpointer.reset();
  writer.reset();
  Db r(path, false);
  CHECK(r.number("SELECT count(*) FROM messages") == 40);
  CHECK(r.text("PRAGMA integrity_check") == "ok");
}
