#include <doctest/doctest.h>
#include <sqlite3.h>

#include <random>
#include <string>
#include <thread>
#include <vector>

#include "queue/spool.h"
#include "queue/queue_id.h"
#include "unit/queue/helpers.h"

using namespace outbox::queue;
using namespace outbox::queue::test;

namespace {

NewMessage make_message(const std::string& id, std::vector<std::string> rcpts = {"a@example.com", "b@example.com"},
                        std::int64_t created = 0) {
  auto m = new_message(id, std::move(rcpts), created, "sender@example.com");
  m.client = "127.0.0.1";
  m.uid = 1000;
  m.helo = "client.example.com";
  m.smtputf8 = true;
  m.body_8bit = true;
  return m;
}

// Creates, fills and finalizes one message in its own transaction.
void store(Spool& s, const NewMessage& m, const std::string& prefix, const std::vector<std::string>& chunks,
           std::int64_t now = 0) {
  s.begin();
  s.create_incoming(m);
  std::uint64_t size = prefix.size();
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    s.append_chunk(m.id, static_cast<std::int64_t>(i), chunks[i]);
    size += chunks[i].size();
  }
  s.finalize(m.id, prefix, size, now ? now : now_us());
  s.commit();
}

std::string body_of(Spool& s, const std::string& id) {
  std::string out;
  bool found = s.read_body(id, [&](std::string_view b) { out.append(b); });
  REQUIRE(found);
  return out;
}

std::string ids(int n) {   // deterministic distinct valid ids
  QueueIdGenerator g;
  std::string id;
  for (int i = 0; i <= n; ++i) id = g.next(1'700'000'000'000'000ull);
  return id;
}

}  // namespace

TEST_CASE("spool: a new spool gets the current schema, WAL, synchronous=FULL, foreign keys, mode 0640") {
  TempDir dir;
  auto path = dir.file("sub/dir/spool.db");   // parent directories are created
  auto s = Spool::open(path);
  CHECK(s->schema_version() == Spool::kSchemaVersion);
  CHECK(query1(s->handle(), "PRAGMA user_version") == std::to_string(Spool::kSchemaVersion));
  CHECK(query1(s->handle(), "PRAGMA journal_mode") == "wal");
  CHECK(query1(s->handle(), "PRAGMA synchronous") == "2");   // FULL
  CHECK(query1(s->handle(), "PRAGMA foreign_keys") == "1");
  for (const char* t : {"messages", "recipients", "chunks", "attempts", "meta"})
    CHECK(count(s->handle(), std::string("SELECT COUNT(*) FROM sqlite_master WHERE type='table' AND name='") + t +
                                 "'") == 1);
  CHECK(count(s->handle(), "SELECT COUNT(*) FROM sqlite_master WHERE type='index' AND name='recipients_due'") == 1);
  CHECK(file_mode(path) == 0640);
  CHECK(s->mode() == Spool::Mode::ReadWrite);
  CHECK(s->path() == path);

  auto ro = Spool::open(path, Spool::Mode::ReadOnly);
  CHECK(ro->mode() == Spool::Mode::ReadOnly);
  CHECK(query1(ro->handle(), "PRAGMA journal_mode") == "wal");
  CHECK(query1(ro->handle(), "PRAGMA foreign_keys") == "1");
}

TEST_CASE("spool: migrating an empty v0 database, reopening keeps data, newer versions are refused") {
  TempDir dir;
  auto path = dir.file("spool.db");
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    CHECK(query1(db, "PRAGMA user_version") == "0");
    sqlite3_close(db);
  }
  SUBCASE("a v0 file is not readable read-only: it needs the daemon to migrate it") {
    try {
      Spool::open(path, Spool::Mode::ReadOnly);
      FAIL("expected SpoolError");
    } catch (const SpoolError& e) {
      CHECK(std::string(e.what()).find("schema version 0") != std::string::npos);
    }
  }
  SUBCASE("v0 -> current, and idempotent on reopen") {
    {
      auto s = Spool::open(path);
      CHECK(s->schema_version() == Spool::kSchemaVersion);
      store(*s, make_message(ids(1)), "P", {"body"});
    }
    auto s = Spool::open(path);
    CHECK(s->schema_version() == Spool::kSchemaVersion);
    CHECK(s->list().size() == 1);
  }
  SUBCASE("a spool from a newer version is refused, untouched") {
    {
      auto s = Spool::open(path);
      exec(s->handle(), "PRAGMA user_version=" + std::to_string(Spool::kSchemaVersion + 1));
    }
    CHECK_THROWS_AS(Spool::open(path), SpoolError);
    CHECK_THROWS_AS(Spool::open(path, Spool::Mode::ReadOnly), SpoolError);
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    CHECK(query1(db, "PRAGMA user_version") == std::to_string(Spool::kSchemaVersion + 1));
    sqlite3_close(db);
  }
}

TEST_CASE("spool: v6 -> v7 rebuilds messages_waiting_since with the same rows, its queries still use it") {
  TempDir dir;
  auto path = dir.file("spool.db");
  {
    // A v6 spool: the index as v6 made it, the version put back.
    auto s = Spool::open(path);
    exec(s->handle(), "INSERT INTO messages(id, state, sender, created, updated) VALUES "
                      "('A', 'sent', '', 10, 10), ('B', 'deferred', '', 30, 30), ('C', 'queued', '', 20, 20), "
                      "('D', 'held', '', 5, 5), ('E', 'active', '', 15, 15), ('F', 'failed', '', 1, 1)");
    exec(s->handle(), "DROP INDEX messages_waiting_since");
    exec(s->handle(), "CREATE INDEX messages_waiting_since ON messages(created) "
                      "WHERE state IN ('queued', 'active', 'deferred')");
    exec(s->handle(), "PRAGMA user_version=6");
  }
  auto s = Spool::open(path);
  CHECK(s->schema_version() == 7);
  CHECK(query1(s->handle(), "SELECT sql FROM sqlite_master WHERE name = 'messages_waiting_since'").find(
            "OR state = 'active'") != std::string::npos);
  CHECK(query1(s->handle(), "SELECT group_concat(id, '') FROM (SELECT id FROM messages INDEXED BY "
                            "messages_waiting_since WHERE (state IN ('queued', 'deferred') OR state = 'active') "
                            "ORDER BY created)") == "ECB");
  CHECK(s->oldest_waiting() == 15);
  // A state change moves a row in or out of it, as before.
  exec(s->handle(), "UPDATE messages SET state = 'sent' WHERE id = 'E'");
  CHECK(s->oldest_waiting() == 20);
}

TEST_CASE("spool: open errors carry the SQLite code") {
  TempDir dir;
  try {
    Spool::open(dir.file("missing.db"), Spool::Mode::ReadOnly);
    FAIL("expected SpoolError");
  } catch (const SpoolError& e) {
    CHECK(e.code() == SQLITE_CANTOPEN);
    CHECK(std::string(e.what()).find("missing.db") != std::string::npos);
  }
  CHECK_THROWS_AS(Spool::open("/dev/null/spool.db"), SpoolError);
  // Not a database at all.
  {
    FILE* f = std::fopen(dir.file("junk.db").c_str(), "w");
    std::fputs("this is not an SQLite file, it is just some text padded out a little bit more than 100 bytes "
               "so SQLite reads a header from it.......",
               f);
    std::fclose(f);
  }
  try {
    Spool::open(dir.file("junk.db"));
    FAIL("expected SpoolError");
  } catch (const SpoolError& e) {
    CHECK(e.code() == SQLITE_NOTADB);
  }
}

TEST_CASE("spool: body round-trips byte for byte") {
  TempDir dir;
  auto s = Spool::open(dir.file("spool.db"));

  SUBCASE("every byte value, 8-bit and NUL included, and empty chunks") {
    std::string all;
    for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
    std::string prefix = "Received: from x\r\n";
    std::vector<std::string> chunks{all, "", "\r\n.\r\n", std::string(3, '\0'), "caf\xc3\xa9 \xff\xfe\r\n"};
    auto m = make_message(ids(1));
    store(*s, m, prefix, chunks);
    std::string expect = prefix;
    for (auto& c : chunks) expect += c;
    CHECK(body_of(*s, m.id) == expect);
    auto rec = s->get(m.id);
    REQUIRE(rec);
    CHECK(rec->size == expect.size());
  }

  SUBCASE("5 MiB in 64 KiB chunks") {
    std::mt19937 rng(12345);
    std::string big(5 << 20, '\0');
    for (auto& c : big) c = static_cast<char>(rng());
    std::vector<std::string> chunks;
    for (std::size_t off = 0; off < big.size(); off += 64 * 1024) chunks.push_back(big.substr(off, 64 * 1024));
    CHECK(chunks.size() == 80);
    auto m = make_message(ids(2));
    store(*s, m, "", chunks);
    CHECK(body_of(*s, m.id) == big);
    // Chunks come back in seq order, as separate sink calls after the prefix.
    int calls = 0;
    s->read_body(m.id, [&](std::string_view) { ++calls; });
    CHECK(calls == 81);
  }

  SUBCASE("chunks appended out of order are read by seq") {
    auto m = make_message(ids(3));
    s->begin();
    s->create_incoming(m);
    s->append_chunk(m.id, 2, "C");
    s->append_chunk(m.id, 0, "A");
    s->append_chunk(m.id, 1, "B");
    s->finalize(m.id, "P", 4, now_us());
    s->commit();
    CHECK(body_of(*s, m.id) == "PABC");
  }

  CHECK_FALSE(s->read_body("00000000000000", [](std::string_view) {}));
}

TEST_CASE("spool: message and recipient fields, finalize makes everything due now") {
  TempDir dir;
  auto s = Spool::open(dir.file("spool.db"));
  auto m = make_message(ids(1), {"x@example.com", "a@example.com", "x@example.com", "b@example.com"}, 1234567);
  m.sender = "";
  m.uid.reset();
  store(*s, m, "H: v\r\n", {"body\r\n"}, 7654321);
  auto r = s->get(m.id);
  REQUIRE(r);
  CHECK(r->id == m.id);
  CHECK(r->state == kQueued);
  CHECK(r->sender == "");
  CHECK(r->created == 1234567);
  CHECK(r->size == 12);
  CHECK(r->attempts == 0);
  CHECK(r->next_attempt == 7654321);
  CHECK(r->last_error == "");
  CHECK(r->client == "127.0.0.1");
  CHECK_FALSE(r->uid.has_value());
  CHECK(r->helo == "client.example.com");
  CHECK(r->smtputf8);
  CHECK(r->body_8bit);
  // Duplicates collapse; submission order is kept.
  REQUIRE(r->recipients.size() == 3);
  CHECK(r->recipients[0].address == "x@example.com");
  CHECK(r->recipients[1].address == "a@example.com");
  CHECK(r->recipients[2].address == "b@example.com");
  for (auto& rc : r->recipients) {
    CHECK(rc.state == "pending");
    CHECK(rc.next_attempt == 7654321);
    CHECK(rc.attempts == 0);
  }
  CHECK(r->history.empty());
  CHECK(count(s->handle(), "SELECT COUNT(*) FROM recipients WHERE next_attempt = 7654321 AND state = 'pending'") == 3);
}

// Every column of every row, in a stable order, for comparing two spools.
std::string dump_rows(Spool& s, const std::string& sql) {
  std::string out;
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(s.handle(), sql.c_str(), -1, &st, nullptr) == SQLITE_OK);
  while (sqlite3_step(st) == SQLITE_ROW) {
    for (int c = 0; c < sqlite3_column_count(st); ++c) {
      out += sqlite3_column_name(st, c);
      out += '=';
      if (sqlite3_column_type(st, c) == SQLITE_NULL) {
        out += "NULL";
      } else {
        auto* p = static_cast<const char*>(sqlite3_column_blob(st, c));
        out.append(p ? p : "", static_cast<std::size_t>(sqlite3_column_bytes(st, c)));
        out += sqlite3_column_type(st, c) == SQLITE_BLOB ? "(blob)" : "";
      }
      out += ';';
    }
    out += '\n';
  }
  sqlite3_finalize(st);
  return out;
}

TEST_CASE("spool: store_whole leaves exactly the rows of create_incoming + append_chunk + finalize") {
  TempDir dir;
  auto a = Spool::open(dir.file("a.db"));
  auto b = Spool::open(dir.file("b.db"));
  for (bool empty_body : {false, true}) {
    CAPTURE(empty_body);
    auto m = make_message(ids(empty_body ? 2 : 1), {"x@example.com", "a@example.com", "x@example.com"}, 1234567);
    if (empty_body) m.uid.reset();
    std::string body = empty_body ? "" : "Subject: s\r\n\r\nbody\r\n";
    std::string prefix = "Received: by test\r\n";
    a->begin();
    a->create_incoming(m);
    if (!body.empty()) a->append_chunk(m.id, 0, body);
    a->finalize(m.id, prefix, prefix.size() + body.size(), 7654321);
    a->commit();
    b->begin();
    b->store_whole(m, body, prefix, prefix.size() + body.size(), 7654321);
    b->commit();
    CHECK(body_of(*b, m.id) == prefix + body);
  }
  for (const char* sql : {"SELECT * FROM messages ORDER BY id", "SELECT * FROM recipients ORDER BY rowid",
                          "SELECT * FROM chunks ORDER BY message_id, seq", "SELECT * FROM meta ORDER BY key"}) {
    CAPTURE(sql);
    CHECK(dump_rows(*a, sql) == dump_rows(*b, sql));
  }
  CHECK(count(b->handle(), "SELECT COUNT(*) FROM recipients WHERE state = 'pending' AND next_attempt = 7654321") == 4);
  // The same id twice fails on the primary key and, in a savepoint, leaves nothing of itself.
  auto m = make_message(ids(1));
  b->begin();
  b->savepoint("t");
  CHECK_THROWS_AS(b->store_whole(m, "x", "", 1, 1), SpoolError);
  b->rollback_to("t");
  b->release("t");
  b->commit();
  CHECK(count(b->handle(), "SELECT COUNT(*) FROM messages") == 2);
}

TEST_CASE("spool: incoming messages are invisible and purged") {
  TempDir dir;
  auto path = dir.file("spool.db");
  std::string done_id = ids(1), half_id = ids(2);
  {
    auto s = Spool::open(path);
    store(*s, make_message(done_id), "", {"x"});
    s->begin();
    s->create_incoming(make_message(half_id));
    s->append_chunk(half_id, 0, "partial");
    s->commit();

    auto all = s->list();
    REQUIRE(all.size() == 1);
    CHECK(all[0].id == done_id);
    CHECK(s->list(std::string(kIncoming)).empty());
    CHECK_FALSE(s->get(half_id));
    CHECK_FALSE(s->read_body(half_id, [](std::string_view) {}));
    CHECK_FALSE(s->hold(half_id));
    CHECK_FALSE(s->remove(half_id));
    CHECK_FALSE(s->retry(half_id, now_us()));
    auto st = s->stats();
    for (auto& [state, n] : st.by_state) CHECK(state != kIncoming);
    CHECK(st.total_size == 1);
  }
  // Next start-up (what StoreWorker does): the half message goes, with its rows.
  auto s = Spool::open(path);
  s->begin();
  CHECK(s->purge_incoming() == 1);
  s->commit();
  CHECK(count(s->handle(), "SELECT COUNT(*) FROM messages") == 1);
  CHECK(count(s->handle(), "SELECT COUNT(*) FROM chunks WHERE message_id = '" + half_id + "'") == 0);
  CHECK(count(s->handle(), "SELECT COUNT(*) FROM recipients WHERE message_id = '" + half_id + "'") == 0);
  CHECK(s->get(done_id));
}

TEST_CASE("spool: discard drops only incoming messages") {
  TempDir dir;
  auto s = Spool::open(dir.file("spool.db"));
  std::string a = ids(1), b = ids(2);
  store(*s, make_message(a), "", {"x"});
  s->begin();
  s->create_incoming(make_message(b));
  s->append_chunk(b, 0, "y");
  s->discard(b);
  s->discard(a);   // committed: discard must not touch it
  s->commit();
  CHECK(s->get(a));
  CHECK(count(s->handle(), "SELECT COUNT(*) FROM messages") == 1);
  CHECK(count(s->handle(), "SELECT COUNT(*) FROM chunks") == 1);
}

TEST_CASE("spool: submission errors are SpoolErrors with SQLite codes") {
  TempDir dir;
  auto s = Spool::open(dir.file("spool.db"));
  std::string a = ids(1);
  store(*s, make_message(a), "", {"x"});
  s->begin();
  try {
    s->create_incoming(make_message(a));
    FAIL("duplicate id accepted");
  } catch (const SpoolError& e) {
    CHECK(e.code() == SQLITE_CONSTRAINT_PRIMARYKEY);
  }
  try {
    s->append_chunk(a, 5, "late");   // not incoming any more
    FAIL("append to a finalized message accepted");
  } catch (const SpoolError& e) {
    CHECK(e.code() == SQLITE_NOTFOUND);
  }
  CHECK_THROWS_AS(s->append_chunk("00000000000000", 0, "x"), SpoolError);
  CHECK_THROWS_AS(s->finalize(a, "", 1, 1), SpoolError);   // finalized twice
  s->rollback();
  CHECK(body_of(*s, a) == "x");
}

TEST_CASE("spool: hold, release, remove, retry") {
  TempDir dir;
  auto s = Spool::open(dir.file("spool.db"));
  std::string q = ids(1), d = ids(2), sent = ids(3);
  store(*s, make_message(q), "", {"x"});
  store(*s, make_message(d), "", {"y"});
  store(*s, make_message(sent), "", {"z"});
  std::int64_t future = now_us() + 3'600'000'000;
  exec(s->handle(), "UPDATE messages SET state='deferred', attempts=2, next_attempt=" + std::to_string(future) +
                        " WHERE id='" + d + "'");
  exec(s->handle(), "UPDATE recipients SET next_attempt=" + std::to_string(future) + " WHERE message_id='" + d + "'");
  exec(s->handle(), "UPDATE recipients SET state='sent', next_attempt=NULL WHERE message_id='" + d +
                        "' AND address='a@example.com'");
  exec(s->handle(), "UPDATE messages SET state='sent', next_attempt=NULL WHERE id='" + sent + "'");

  SUBCASE("hold and release return to the state held from, due now") {
    CHECK(s->hold(q));
    CHECK(s->get(q)->state == kHeld);
    CHECK_FALSE(s->hold(q));   // already held
    CHECK(s->hold(d));
    CHECK(s->get(d)->state == kHeld);
    CHECK_FALSE(s->retry(d, now_us()));   // held messages wait for release

    std::int64_t before = now_us();
    CHECK(s->release(d));
    auto r = s->get(d);
    CHECK(r->state == kDeferred);
    REQUIRE(r->next_attempt);
    CHECK(*r->next_attempt >= before);
    CHECK(*r->next_attempt <= now_us());
    CHECK(r->recipients[0].next_attempt == std::nullopt);   // sent recipient untouched
    CHECK(*r->recipients[1].next_attempt == *r->next_attempt);
    CHECK_FALSE(s->release(d));   // not held any more

    CHECK(s->release(q));
    CHECK(s->get(q)->state == kQueued);
    CHECK(count(s->handle(), "SELECT COUNT(*) FROM messages WHERE held_from IS NOT NULL") == 0);
  }

  SUBCASE("hold does not apply to finished or unknown messages") {
    CHECK_FALSE(s->hold(sent));
    CHECK_FALSE(s->hold("00000000000000"));
    CHECK_FALSE(s->release(sent));
    CHECK_FALSE(s->release(std::string("00000000000000")));   // a literal would pick release(const char*) = RELEASE SAVEPOINT
    CHECK(s->get(sent)->state == kSent);
  }

  SUBCASE("retry: queued and deferred become due at the given time") {
    std::int64_t now = now_us();
    CHECK(s->retry(d, now));
    auto r = s->get(d);
    CHECK(r->state == kDeferred);   // the state stays; only the time moves
    CHECK(r->next_attempt == now);
    CHECK(r->attempts == 2);
    CHECK(r->recipients[0].next_attempt == std::nullopt);
    CHECK(r->recipients[1].next_attempt == now);
    CHECK(s->retry(q, now));
    CHECK_FALSE(s->retry(sent, now));
    CHECK_FALSE(s->retry("00000000000000", now));
  }

  SUBCASE("retry_all counts queued and deferred messages") {
    s->hold(q);
    std::int64_t now = now_us();
    CHECK(s->retry_all(now) == 1);   // d only: q is held, sent is finished
    CHECK(s->get(d)->next_attempt == now);
    CHECK(s->get(q)->state == kHeld);
  }

  SUBCASE("remove deletes any listed state with everything that hangs off it") {
    s->add_attempt(d, AttemptRecord{now_us(), "up", {"b@example.com"}, "451 4.3.0 later", "deferred"});
    CHECK(s->remove(d));
    CHECK_FALSE(s->get(d));
    CHECK_FALSE(s->remove(d));
    CHECK(s->remove(sent));
    CHECK_FALSE(s->remove("00000000000000"));
    for (const char* t : {"recipients", "chunks", "attempts"})
      CHECK(count(s->handle(), std::string("SELECT COUNT(*) FROM ") + t + " WHERE message_id != '" + q + "'") == 0);
    CHECK(s->list().size() == 1);
  }
}

TEST_CASE("spool: operator changes inside an open transaction use a savepoint") {
  TempDir dir;
  auto s = Spool::open(dir.file("spool.db"));
  std::string a = ids(1);
  store(*s, make_message(a), "", {"x"});
  s->begin();
  CHECK(s->hold(a));
  s->rollback();
  CHECK(s->get(a)->state == kQueued);
  s->begin();
  CHECK(s->hold(a));
  s->commit();
  CHECK(s->get(a)->state == kHeld);
}

TEST_CASE("spool: list filters by state, orders by id, merges recipients") {
  TempDir dir;
  auto s = Spool::open(dir.file("spool.db"));
  QueueIdGenerator g;
  std::vector<std::string> id;
  for (int i = 0; i < 5; ++i) id.push_back(g.next(1'700'000'000'000'000ull + static_cast<std::uint64_t>(i)));
  // Store out of order: listing is by id (time), not insertion.
  for (int i : {3, 0, 4, 1, 2}) store(*s, make_message(id[i], {"r" + std::to_string(i) + "@x", "s@x"}), "", {"b"});
  s->hold(id[1]);
  s->hold(id[3]);
  auto all = s->list();
  REQUIRE(all.size() == 5);
  for (int i = 0; i < 5; ++i) {
    CHECK(all[i].id == id[i]);
    REQUIRE(all[i].recipients.size() == 2);
    CHECK(all[i].recipients[0].address == "r" + std::to_string(i) + "@x");
    CHECK(all[i].history.empty());
  }
  auto held = s->list(std::string(kHeld));
  REQUIRE(held.size() == 2);
  CHECK(held[0].id == id[1]);
  CHECK(held[1].id == id[3]);
  CHECK(held[1].recipients[0].address == "r3@x");
  CHECK(s->list(std::string("nonsense")).empty());
}

TEST_CASE("spool: attempt history comes back with get()") {
  TempDir dir;
  auto s = Spool::open(dir.file("spool.db"));
  std::string a = ids(1);
  store(*s, make_message(a), "", {"x"});
  s->add_attempt(a, AttemptRecord{200, "163", {"a@example.com", "b@example.com"}, "250 2.0.0 ok", "delivered"});
  s->add_attempt(a, AttemptRecord{100, "gmail", {"a@example.com"}, "421 4.7.0 try later", "deferred"});
  s->add_attempt(a, AttemptRecord{300, "163", {}, "", "expired"});
  auto r = s->get(a);
  REQUIRE(r);
  REQUIRE(r->history.size() == 3);
  CHECK(r->history[0].time == 100);
  CHECK(r->history[0].upstream == "gmail");
  CHECK(r->history[0].recipients == std::vector<std::string>{"a@example.com"});
  CHECK(r->history[0].reply == "421 4.7.0 try later");
  CHECK(r->history[0].outcome == "deferred");
  CHECK(r->history[1].recipients == std::vector<std::string>{"a@example.com", "b@example.com"});
  CHECK(r->history[2].recipients.empty());
  CHECK_THROWS_AS(s->add_attempt("00000000000000", AttemptRecord{1, "", {}, "", "x"}), SpoolError);
}

TEST_CASE("spool: stats") {
  TempDir dir;
  auto s = Spool::open(dir.file("spool.db"));
  auto st0 = s->stats();
  REQUIRE(st0.by_state.size() == 6);
  CHECK(st0.by_state[0].first == "queued");
  CHECK(st0.by_state[5].first == "failed");
  for (auto& [k, v] : st0.by_state) CHECK(v == 0);
  CHECK_FALSE(st0.oldest_created);
  CHECK(st0.total_size == 0);

  std::string a = ids(1), b = ids(2), c = ids(3), d = ids(4), e = ids(5);
  store(*s, make_message(a, {"x@y"}, 100), "", {"12345"});   // sent: finished, older than all
  store(*s, make_message(b, {"x@y"}, 500), "", {"1234567890"});
  store(*s, make_message(c, {"x@y"}, 300), "", {"123"});   // deferred, the oldest unfinished
  store(*s, make_message(d, {"x@y"}, 400), "", {"1"});     // held
  s->begin();
  s->create_incoming(make_message(e, {"x@y"}, 50));        // incoming: never counted
  s->commit();
  exec(s->handle(), "UPDATE messages SET state='sent' WHERE id='" + a + "'");
  exec(s->handle(), "UPDATE messages SET state='deferred' WHERE id='" + c + "'");
  s->hold(d);
  auto st = s->stats();
  auto n = [&](const std::string& k) {
    for (auto& [state, v] : st.by_state)
      if (state == k) return v;
    return std::int64_t{-1};
  };
  CHECK(n("queued") == 1);
  CHECK(n("deferred") == 1);
  CHECK(n("held") == 1);
  CHECK(n("sent") == 1);
  CHECK(n("active") == 0);
  CHECK(n("failed") == 0);
  CHECK(n("incoming") == -1);
  CHECK(st.oldest_created == 300);
  CHECK(st.total_size == 10 + 3 + 1);
  CHECK(st.attempts_last_hour.empty());
  CHECK(st.attempts_last_day.empty());

  std::int64_t now = now_us();
  s->add_attempt(b, AttemptRecord{now - 60'000'000, "u", {"x@y"}, "250 ok", "delivered"});
  s->add_attempt(c, AttemptRecord{now - 120'000'000, "u", {"x@y"}, "451 later", "deferred"});
  s->add_attempt(c, AttemptRecord{now - 7'200'000'000, "u", {"x@y"}, "451 later", "deferred"});
  s->add_attempt(c, AttemptRecord{now - 2 * 86'400'000'000LL, "u", {"x@y"}, "451 later", "deferred"});
  auto recent = s->stats();
  using Counts = std::vector<std::pair<std::string, std::int64_t>>;
  CHECK(recent.attempts_last_hour == Counts{{"deferred", 1}, {"delivered", 1}});
  CHECK(recent.attempts_last_day == Counts{{"deferred", 2}, {"delivered", 1}});
}

TEST_CASE("spool: max_id remembers deleted ids") {
  TempDir dir;
  auto s = Spool::open(dir.file("spool.db"));
  CHECK(s->max_id() == "");
  std::string a = ids(1), b = ids(2);
  store(*s, make_message(b), "", {"x"});
  store(*s, make_message(a), "", {"x"});
  CHECK(s->max_id() == b);
  CHECK(s->remove(b));
  CHECK(s->max_id() == b);
}

TEST_CASE("spool: a read-only connection reads while another connection writes") {
  TempDir dir;
  auto path = dir.file("spool.db");
  auto w = Spool::open(path);
  std::string a = ids(1), b = ids(2);
  store(*w, make_message(a), "P", {"one"});
  auto ro = Spool::open(path, Spool::Mode::ReadOnly);
  CHECK(ro->list().size() == 1);

  // The writer holds an open write transaction with a new message in it.
  w->begin();
  w->create_incoming(make_message(b));
  w->append_chunk(b, 0, "two");
  w->finalize(b, "", 3, now_us());
  CHECK(w->hold(a));
  // The reader neither blocks nor sees uncommitted work.
  auto t0 = std::chrono::steady_clock::now();
  auto seen = ro->list();
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(1));
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].state == kQueued);
  CHECK(body_of(*ro, a) == "Pone");
  CHECK(ro->stats().by_state[0].second == 1);
  w->commit();

  auto after = ro->list();
  REQUIRE(after.size() == 2);
  CHECK(after[0].state == kHeld);
  CHECK(body_of(*ro, b) == "two");

  // And it cannot write.
  try {
    ro->remove(a);
    FAIL("read-only connection wrote");
  } catch (const SpoolError& e) {
    CHECK((e.code() & 0xff) == SQLITE_READONLY);
  }
  CHECK(w->get(a));
}

TEST_CASE("spool: a second writer waits for the first (busy_timeout) instead of failing") {
  TempDir dir;
  auto path = dir.file("spool.db");
  auto w1 = Spool::open(path);
  auto w2 = Spool::open(path);
  std::string a = ids(1);
  store(*w1, make_message(a), "", {"x"});
  w1->begin();
  CHECK(w1->hold(a));
  std::thread releaser([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    w1->commit();
  });
  auto t0 = std::chrono::steady_clock::now();
  CHECK(w2->release(a));   // blocks on the write lock until w1 commits
  CHECK(std::chrono::steady_clock::now() - t0 >= std::chrono::milliseconds(200));
  releaser.join();
  CHECK(w1->get(a)->state == kQueued);
}

TEST_CASE("spool: checkpoint runs and keeps data") {
  TempDir dir;
  auto s = Spool::open(dir.file("spool.db"));
  std::string a = ids(1);
  store(*s, make_message(a), "", {std::string(100000, 'x')});
  s->checkpoint();
  CHECK(body_of(*s, a).size() == 100000);
}

TEST_CASE("spool: read-only open works when the daemon is not running (no -wal/-shm files)") {
  TempDir dir;
  auto path = dir.file("spool.db");
  std::string a = ids(1);
  {
    auto w = Spool::open(path);
    store(*w, make_message(a), "P", {"body"});
  }
  // The last writer to close checkpoints and removes the WAL.
  CHECK_FALSE(std::filesystem::exists(path + "-wal"));
  auto ro = Spool::open(path, Spool::Mode::ReadOnly);
  CHECK(ro->list().size() == 1);
  CHECK(body_of(*ro, a) == "Pbody");
  // A writer may start while the reader is open.
  auto w = Spool::open(path);
  CHECK(w->hold(a));
  CHECK(ro->get(a)->state == kHeld);
}
