// Retention, compaction, keyset paging, persisted upstream state and the
// operator log, against real spool files.
#include <doctest/doctest.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "queue/spool.h"
#include "queue/store_worker.h"
#include "unit/queue/helpers.h"

using namespace outbox::queue;
using namespace outbox::queue::test;

namespace {

// Two recipients: list_page returns them with each message.
NewMessage msg(const std::string& id) { return new_message(id, {"a@example.com", "b@example.com"}); }

void store(Spool& s, const std::string& id, std::size_t body_bytes = 100, std::int64_t now = 0) {
  s.begin();
  s.create_incoming(msg(id));
  std::string chunk(64 * 1024, 'x');
  std::int64_t seq = 0;
  for (std::size_t off = 0; off < body_bytes; off += chunk.size())
    s.append_chunk(id, seq++, std::string_view(chunk).substr(0, std::min(chunk.size(), body_bytes - off)));
  s.finalize(id, "", body_bytes, now ? now : now_us());
  s.commit();
}

// What the relay leaves behind: a finished message, updated at `when`.
void finish(Spool& s, const std::string& id, const char* state, std::int64_t when) {
  exec(s.handle(), "UPDATE messages SET state = '" + std::string(state) + "', updated = " + std::to_string(when) +
                       " WHERE id = '" + id + "'");
  exec(s.handle(), "UPDATE recipients SET state = '" + std::string(state) + "' WHERE message_id = '" + id + "'");
  AttemptRecord a;
  a.time = when;
  a.upstream = "up";
  a.recipients = {"a@example.com"};
  a.outcome = "delivered";
  s.add_attempt(id, a);
  exec(s.handle(), "INSERT INTO meta(key, value) VALUES('bounce:" + id + "', 'D" + id + "')");
}

long long rows(Spool& s, const std::string& table, const std::string& where = "1") {
  return count(s.handle(), "SELECT COUNT(*) FROM " + table + " WHERE " + where);
}

}  // namespace

TEST_CASE("purge_finished: only finished messages older than the cut, in batches, with everything they own") {
  TempDir dir;
  auto s = Spool::open(dir.file("spool.db"));
  std::int64_t t0 = 1'700'000'000'000'000;
  for (int i = 0; i < 7; ++i) {
    std::string id = "F" + std::to_string(i);
    store(*s, id, 70'000);
    finish(*s, id, i % 2 ? kSent : kFailed, t0 + i);
  }
  store(*s, "Q1");                     // queued: never purged
  store(*s, "N1");
  finish(*s, "N1", kSent, t0 + 1000);  // finished, but newer than the cut
  exec(s->handle(), "INSERT INTO meta(key, value) VALUES('bounce:Q1', 'x')");

  CHECK(s->purge_finished(t0 + 100, 3) == 3);   // a batch, oldest first
  CHECK(rows(*s, "messages", "id IN ('F0', 'F1', 'F2')") == 0);
  CHECK(rows(*s, "messages", "id = 'F3'") == 1);
  CHECK(s->purge_finished(t0 + 100, 3) == 3);
  CHECK(s->purge_finished(t0 + 100, 3) == 1);
  CHECK(s->purge_finished(t0 + 100, 3) == 0);
  CHECK(rows(*s, "messages") == 2);
  for (const char* t : {"recipients", "chunks", "attempts"}) {
    CAPTURE(t);
    CHECK(rows(*s, t, "message_id NOT IN ('Q1', 'N1')") == 0);
  }
  CHECK(rows(*s, "meta", "key LIKE 'bounce:F%'") == 0);
  CHECK(rows(*s, "meta", "key IN ('bounce:Q1', 'bounce:N1')") == 2);
  CHECK(rows(*s, "meta", "key = 'max_id'") == 1);
}

TEST_CASE("count_unfinished counts what stats() calls unfinished") {
  TempDir dir;
  auto s = Spool::open(dir.file("spool.db"));
  CHECK(s->count_unfinished() == 0);
  for (const char* id : {"U1", "U2", "U3", "U4", "U5"}) store(*s, id);
  s->begin();
  s->create_incoming(msg("U6"));   // incoming: not counted
  s->commit();
  finish(*s, "U1", kSent, 1);
  finish(*s, "U2", kFailed, 1);
  CHECK(s->hold(std::string_view("U3")));
  exec(s->handle(), "UPDATE messages SET state = 'active' WHERE id = 'U4'");
  CHECK(s->count_unfinished() == 3);
  std::int64_t from_stats = 0;
  for (const auto& [state, n] : s->stats().by_state)
    if (state == kQueued || state == kActive || state == kDeferred || state == kHeld) from_stats += n;
  CHECK(from_stats == 3);
}

TEST_CASE("a new spool is incremental auto_vacuum; an old one is converted at a read-write open") {
  TempDir dir;
  {
    auto s = Spool::open(dir.file("new.db"));
    CHECK(query1(s->handle(), "PRAGMA auto_vacuum") == "2");
    CHECK(query1(s->handle(), "PRAGMA journal_size_limit") == "67108864");
  }
  std::string old = dir.file("old.db");
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(old.c_str(), &db) == SQLITE_OK);
    exec(db, "PRAGMA journal_mode=WAL; CREATE TABLE legacy(x); INSERT INTO legacy VALUES(1)");
    CHECK(query1(db, "PRAGMA auto_vacuum") == "0");
    sqlite3_close(db);
  }
  {
    auto ro = Spool::open(old, Spool::Mode::ReadWrite);
    CHECK(query1(ro->handle(), "PRAGMA auto_vacuum") == "2");
    CHECK(query1(ro->handle(), "SELECT x FROM legacy") == "1");
    CHECK(ro->schema_version() == Spool::kSchemaVersion);
  }
}

TEST_CASE("purged space goes back to the file system: incremental_vacuum and a TRUNCATE checkpoint") {
  TempDir dir;
  std::string path = dir.file("spool.db");
  auto s = Spool::open(path);
  auto file_size = [](const std::string& p) {
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0 ? static_cast<long long>(st.st_size) : 0LL;
  };
  REQUIRE(s->checkpoint_truncate());
  long long empty = file_size(path);
  for (int i = 0; i < 20; ++i) {
    store(*s, "B" + std::to_string(i), 1 << 20);
    finish(*s, "B" + std::to_string(i), kSent, 1);
  }
  REQUIRE(s->checkpoint_truncate());
  CHECK(file_size(path) > empty + 19 * (1 << 20));
  CHECK(file_size(path + "-wal") == 0);
  CHECK(s->purge_finished(2, 100) == 20);
  CHECK(s->freelist_pages() > 4000);
  while (s->incremental_vacuum(1024) > 0) {
  }
  CHECK(s->freelist_pages() == 0);
  REQUIRE(s->checkpoint_truncate());
  CHECK(file_size(path) < empty + 256 * 1024);
  CHECK(file_size(path + "-wal") == 0);

  SUBCASE("a reader's snapshot makes TRUNCATE report busy instead of waiting") {
    store(*s, "R1");
    auto reader = Spool::open(path, Spool::Mode::ReadOnly);
    exec(reader->handle(), "BEGIN; SELECT COUNT(*) FROM messages;");
    store(*s, "R2");
    auto t = std::chrono::steady_clock::now();
    CHECK_FALSE(s->checkpoint_truncate());
    CHECK(std::chrono::steady_clock::now() - t < std::chrono::milliseconds(500));
    exec(reader->handle(), "COMMIT");
    CHECK(s->checkpoint_truncate());
  }
}

TEST_CASE("list_page: keyset pages in id order, state filter, recipients with each message") {
  TempDir dir;
  auto s = Spool::open(dir.file("spool.db"));
  for (int i = 0; i < 12; ++i) store(*s, "P" + std::string(i < 10 ? "0" : "") + std::to_string(i));
  s->begin();
  s->create_incoming(msg("P99"));   // incoming: never listed
  s->commit();
  CHECK(s->hold("P03"));
  exec(s->handle(), "UPDATE recipients SET state = 'uncertain' WHERE message_id = 'P04' AND address = 'a@example.com'");
  std::vector<std::string> seen;
  std::string after;
  int pages = 0;
  for (;;) {
    auto page = s->list_page(std::nullopt, after, 5);
    ++pages;
    for (const auto& m : page) {
      seen.push_back(m.id);
      CHECK(m.recipients.size() == 2);
      if (m.id == "P04") CHECK(m.recipients[0].state == kUncertain);
    }
    if (page.size() < 5) break;
    after = page.back().id;
  }
  CHECK(pages == 3);
  REQUIRE(seen.size() == 12);
  CHECK(seen.front() == "P00");
  CHECK(seen.back() == "P11");
  auto held = s->list_page(std::string(kHeld), "", 5);
  REQUIRE(held.size() == 1);
  CHECK(held[0].id == "P03");
  CHECK(s->list_page(std::string(kIncoming), "", 5).empty());
}

TEST_CASE("upstream states, loads and resume; every operator change logs who made it") {
  TempDir dir;
  auto s = Spool::open(dir.file("spool.db"));
  std::int64_t now = now_us();
  exec(s->handle(), "INSERT INTO upstreams(name, suspended_until, reason, failures, stage, last_reply, updated) VALUES "
                    "('gmail', " + std::to_string(now + 600'000'000) + ", 1, 3, 'auth', '535 5.7.8 bad', 1), "
                    "('ses', NULL, 0, 0, '', '', 1), "
                    "('old', " + std::to_string(now - 1'000'000) + ", 3, 1, 'connect', '', 1)");
  store(*s, "W1");
  store(*s, "W2");
  store(*s, "A1");
  exec(s->handle(), "UPDATE messages SET wait_reason = 2, wait_upstream = 'gmail' WHERE id IN ('W1', 'W2')");
  exec(s->handle(), "UPDATE messages SET state = 'active', wait_upstream = 'gmail' WHERE id = 'A1'");

  auto states = s->upstream_states();
  REQUIRE(states.size() == 3);
  CHECK(states[0].name == "gmail");
  CHECK(states[0].reason == SuspendReason::AuthFailed);
  CHECK(states[0].failures == 3);
  CHECK(states[0].stage == "auth");
  CHECK(states[0].last_reply == "535 5.7.8 bad");
  CHECK(states[2].name == "ses");
  CHECK_FALSE(states[2].suspended_until);
  auto loads = s->upstream_loads();
  CHECK(loads["gmail"].waiting == 2);
  CHECK(loads["gmail"].in_flight == 1);
  auto w = s->wait_of("W1");
  REQUIRE(w);
  CHECK(w->reason == WaitReason::UpstreamSuspended);
  CHECK(w->upstream == "gmail");
  CHECK_FALSE(s->wait_of("nope"));

  CHECK(s->last_operator_seq() == 0);
  s->set_operator(4242);
  CHECK(s->resume_upstream("ses", now) == Spool::ResumeResult::NotSuspended);
  CHECK(s->resume_upstream("old", now) == Spool::ResumeResult::NotSuspended);   // already expired
  CHECK(s->resume_upstream("nope", now) == Spool::ResumeResult::Unknown);
  CHECK(s->last_operator_seq() == 0);   // nothing changed, nothing logged
  CHECK(s->resume_upstream("gmail", now) == Spool::ResumeResult::Resumed);
  auto g = s->upstream_state("gmail");
  REQUIRE(g);
  CHECK_FALSE(g->suspended_until);
  CHECK(g->failures == 0);
  CHECK(g->reason == SuspendReason::None);

  CHECK(s->retry("W1", now));
  CHECK(s->hold("W2"));
  CHECK(s->release(std::string_view("W2")));
  CHECK_FALSE(s->hold("nope"));
  CHECK(s->retry_all(now) == 2);
  CHECK(s->remove("W1"));
  auto log = s->operator_actions_after(0, 100);
  REQUIRE(log.size() == 6);
  std::vector<std::pair<std::string, std::string>> got;
  for (const auto& a : log) {
    CHECK(a.uid == 4242);
    CHECK(a.time > 0);
    got.emplace_back(a.action, a.target);
  }
  CHECK(got == std::vector<std::pair<std::string, std::string>>{
                   {"resume", "gmail"}, {"retry", "W1"}, {"hold", "W2"}, {"release", "W2"}, {"retry_all", ""},
                   {"delete", "W1"}});
  CHECK(log[4].detail == "2");
  CHECK(s->last_operator_seq() == log.back().seq);
  auto tail = s->operator_actions_after(log[3].seq, 1);
  REQUIRE(tail.size() == 1);
  CHECK(tail[0].action == "retry_all");

  SUBCASE("the log row is part of the change's transaction") {
    s->begin();
    CHECK(s->hold("W2"));
    s->rollback();
    CHECK(s->last_operator_seq() == log.back().seq);
    CHECK(s->get("W2")->state != kHeld);
  }
}

TEST_CASE("StoreWorker purges finished messages past the retention while idle") {
  TempDir dir;
  std::string path = dir.file("spool.db");
  {
    auto s = Spool::open(path);
    for (int i = 0; i < 250; ++i) {
      store(*s, "X" + std::to_string(1000 + i));
      finish(*s, "X" + std::to_string(1000 + i), kSent, now_us() - 10'000'000);
    }
    store(*s, "KEEP");
  }
  StoreWorker w(path, nullptr);
  std::atomic<int> purged{0};
  w.on_purged([&](int n) { purged += n; });
  auto reader = Spool::open(path, Spool::Mode::ReadOnly);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  CHECK(rows(*reader, "messages") == 251);   // retention 0: never purged
  w.set_retention(std::chrono::seconds(5));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (rows(*reader, "messages") > 1 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  CHECK(rows(*reader, "messages") == 1);
  CHECK(reader->get("KEEP"));
  CHECK(purged == 250);
}
