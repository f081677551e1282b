// Every statement the relay's DeliveryStore runs, checked with EXPLAIN QUERY
// PLAN on a spool holding a backlog: none may walk a whole table (issue 8:
// cost per delivery independent of how many messages wait).
#include <doctest/doctest.h>
#include <sqlite3.h>

#include <cstdio>
#include <cstdlib>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "queue/delivery_store.h"
#include "queue/spool.h"
#include "unit/queue/helpers.h"

using namespace outbox::queue;
using outbox::queue::test::new_message;
using outbox::queue::test::TempDir;

namespace {

// The SQL text (unexpanded, with its ?N parameters) of every statement that
// starts running on the connection while tracing is on.
struct Tracer {
  std::set<std::string> sql;
  static int on_stmt(unsigned, void* ctx, void* p, void*) {
    const char* text = sqlite3_sql(static_cast<sqlite3_stmt*>(p));
    // "-- ..." marks a trigger's program, not a statement of ours.
    if (text && std::string_view(text).rfind("--", 0) != 0) static_cast<Tracer*>(ctx)->sql.insert(text);
    return 0;
  }
  void start(sqlite3* db) { sqlite3_trace_v2(db, SQLITE_TRACE_STMT, &Tracer::on_stmt, this); }
  void stop(sqlite3* db) { sqlite3_trace_v2(db, 0, nullptr, nullptr); }
};

std::vector<std::string> plan(sqlite3* db, const std::string& sql) {
  std::vector<std::string> rows;
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db, ("EXPLAIN QUERY PLAN " + sql).c_str(), -1, &st, nullptr) != SQLITE_OK)
    throw std::runtime_error(std::string("prepare: ") + sqlite3_errmsg(db) + ": " + sql);
  while (sqlite3_step(st) == SQLITE_ROW) rows.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(st, 3)));
  sqlite3_finalize(st);
  return rows;
}

// What counts as a full scan: a plan row "SCAN <t>" for one of the tables
// that grow with the queue (messages, recipients, chunks, attempts), read
// through its own B-tree ("SCAN messages") or through a full index
// ("SCAN messages USING [COVERING] INDEX messages_state": every row of the
// index, which is every message: still O(queue)). Allowed: SEARCH (an
// equality or range probe on a key), and SCAN of a *partial* index
// (messages_due, messages_finished, recipients_uncertain), which holds only
// the due / finished / uncertain rows by construction. Small fixed tables
// (meta, upstreams) are not judged here.
bool full_scan(const std::string& row, const std::set<std::string>& partial) {
  // An equality on the recipient's state alone (a handful of values) walks
  // every pending recipient of the queue: O(queue) too. (messages_state by
  // state alone is allowed: it is asked only for 'active', which the relay
  // bounds by its in-memory cap.)
  static const std::regex state_only(R"(^SEARCH recipients USING (?:COVERING )?INDEX recipients_due \(state=\?\)$)");
  if (std::regex_search(row, state_only)) return true;
  static const std::regex scan(R"(^SCAN (messages|recipients|chunks|attempts|quota_ledger)\b(?: USING (?:COVERING )?INDEX (\w+))?)");
  std::smatch m;
  if (!std::regex_search(row, m, scan)) return false;
  return !(m[2].matched && partial.count(m[2].str()));
}

void submit(Spool& s, const std::string& id, std::int64_t now) {
  s.create_incoming(new_message(id, {"a@x.test", "b@x.test"}, now, "app@example.test"));
  s.append_chunk(id, 0, "Subject: hi\r\n\r\nbody\r\n");
  s.finalize(id, "", 21, now);
}

}  // namespace

TEST_CASE("query plans: no DeliveryStore statement scans a whole table") {
  TempDir dir;
  auto s = Spool::open(dir.file("spool.db"));
  sqlite3* db = s->handle();
  DeliveryStore ds(*s);
  // A backlog: 300 deferred messages far in the future, a few sent ones, a few due.
  s->begin();
  for (int i = 0; i < 300; ++i) {
    char id[16];
    std::snprintf(id, sizeof id, "%014d", 100000 + i);
    submit(*s, id, 1000);
    outbox::queue::test::exec(db, std::string("UPDATE messages SET state = 'deferred', attempts = 3, next_attempt = ") +
                                      std::to_string(1'000'000'000 + i) + " WHERE id = '" + id + "'");
  }
  for (int i = 0; i < 6; ++i) submit(*s, "0000000000000" + std::to_string(i), 2000);
  // One due message whose recipients are not (a stale message time).
  outbox::queue::test::exec(db, "UPDATE recipients SET next_attempt = 99999 WHERE message_id = '00000000000005'");
  s->commit();
  std::set<std::string> partial;
  {
    sqlite3_stmt* st = nullptr;
    REQUIRE(sqlite3_prepare_v2(db, "SELECT name FROM sqlite_master WHERE type = 'index' AND sql LIKE '% WHERE %'", -1,
                               &st, nullptr) == SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW) partial.insert(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)));
    sqlite3_finalize(st);
  }
  REQUIRE(partial.count("messages_due") == 1);

  Tracer t;
  t.start(db);
  s->begin();
  ds.next_due();
  std::vector<std::string> refused;
  auto due = ds.claim_due(5000, 10, [](const DueMessage& m) { return m.id != "00000000000000"; }, 9000, &refused);
  REQUIRE(due.size() == 4);
  ds.mark_dot_sent(due[0].id, due[0].recipients, "relay", 5000);
  DeliveryReport rep;
  rep.id = due[0].id;
  rep.time = 5100;
  rep.outcome = "bounced";
  rep.recipients = {RecipientOutcome{"a@x.test", RecipientResult::Sent, "250 ok", {}},
                    RecipientOutcome{"b@x.test", RecipientResult::Failed, "550 no", {}}};
  ds.apply(rep);
  ds.unclaim(due[1].id, 6000, "upstream \"relay\" suspended: 421", WaitReason::UpstreamSuspended);
  ds.park(due[3].id, 6500, WaitReason::RateLimited, "relay", "upstream \"relay\" quota: 2/2 messages per minute");
  ds.mark_dot_sent(due[2].id, due[2].recipients, "relay", 5000);
  DeliveryReport lost;   // the connection dropped after the dot, [retry] uncertain = "hold"
  lost.id = due[2].id;
  lost.time = 5150;
  lost.outcome = "possible_duplicate";
  lost.hold_uncertain = true;
  for (const auto& a : due[2].recipients) {
    RecipientOutcome o{a, RecipientResult::Deferred, "4.4.2 closed", 9000};
    o.uncertain = true;
    lost.recipients.push_back(o);
  }
  CHECK(ds.apply(lost).state == "held");
  ds.claim_due(5000, 10);   // nothing left but the stale one
  ds.recover_active(7000, UncertainPolicy::Hold, {due[3].id});
  ds.recover_active(7000);
  ds.release_waiting(8000);
  ds.release_upstream("relay", 8000);
  ds.headers(due[0].id);
  ds.bounce_sent(due[0].id);
  auto dsn = new_message("00000000999999", {"app@example.test"}, 5200, "");
  ds.enqueue_local(dsn, "Subject: failure\r\n\r\nx\r\n", 5200);
  ds.mark_bounce_sent(due[0].id, dsn.id);
  // The quota ledger: a start, the window's entries at start, the pruning.
  for (int i = 0; i < 50; ++i) ds.record_start(i % 2 ? "relay" : "other", 1000 + i / 3, 2);
  CHECK(ds.load_ledger("relay", 1005).size() == 16);
  CHECK(ds.prune_ledger("other", 1005) == 9);
  // Delay warnings: the messages that crossed an age since the last sweep.
  CHECK(ds.delay_candidates(0, 1'000'000'000'000, 10).size() == 10);
  CHECK(!ds.delay_watermark(14400));
  ds.set_delay_watermark(14400, 5000);
  s->commit();
  t.stop(db);

  CHECK(t.sql.size() >= 15);
  int judged = 0;
  int ordered = 0;
  for (const auto& sql : t.sql) {
    auto rows = plan(db, sql);
    if (std::getenv("OUTBOX_SHOW_PLANS")) {   // to look at them: OUTBOX_SHOW_PLANS=1 queue_tests -tc='query plans*'
      std::printf("%s\n", sql.c_str());
      for (const auto& row : rows) std::printf("    %s\n", row.c_str());
    }
    for (const auto& row : rows) {
      ++judged;
      CHECK_MESSAGE(!full_scan(row, partial), sql << "\n  plan: " << row);
    }
    if (sql.find("quota_ledger") != std::string::npos)
      for (const auto& row : rows) CHECK_MESSAGE(row.find("TEMP B-TREE") == std::string::npos, sql << "\n  plan: " << row);
    // Due work (claim_due, next_due) comes out of messages_due in its own
    // order: a sort would read every due row of the backlog before the LIMIT.
    if (sql.find("FROM messages") != std::string::npos && sql.find("ORDER BY next_attempt") != std::string::npos) {
      ++ordered;
      bool uses_due = false;
      for (const auto& row : rows) {
        if (row.find("INDEX messages_due") != std::string::npos) uses_due = true;
        CHECK_MESSAGE(row.find("TEMP B-TREE") == std::string::npos, sql << "\n  plan: " << row);
      }
      CHECK_MESSAGE(uses_due, sql);
    }
  }
  CHECK(judged > 0);
  CHECK(ordered == 2);
}

TEST_CASE("query plans: what full_scan() calls a full scan") {
  const std::set<std::string> partial = {"messages_due", "recipients_uncertain"};
  struct Row {
    const char* plan;
    bool full;
  };
  for (auto [p, full] : {Row{"SCAN messages", true}, Row{"SCAN recipients", true},
                         Row{"SCAN messages USING COVERING INDEX messages_state", true},
                         Row{"SCAN chunks USING INDEX sqlite_autoindex_chunks_1", true},
                         Row{"SCAN messages USING INDEX messages_due", false},
                         Row{"SCAN recipients USING COVERING INDEX recipients_uncertain", false},
                         Row{"SEARCH messages USING INDEX messages_state (state=?)", false},
                         Row{"SEARCH recipients USING INDEX recipients_due (state=?)", true},
                         Row{"SEARCH recipients USING INDEX recipients_due (state=? AND next_attempt<?)", false},
                         Row{"SEARCH recipients USING INDEX sqlite_autoindex_recipients_1 (message_id=?)", false},
                         Row{"SCAN meta", false}, Row{"USE TEMP B-TREE FOR ORDER BY", false}}) {
    CHECK_MESSAGE(full_scan(p, partial) == full, p);
  }
}

namespace {

// How many times the statement's program opens a temporary b-tree
// (OpenEphemeral): besides a sort or a DISTINCT, SQLite builds one for a
// constant IN list of more than two values, at every evaluation, and a
// partial index's condition is evaluated by every write to its table.
int ephemeral_tables(sqlite3* db, const std::string& sql) {
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db, ("EXPLAIN " + sql).c_str(), -1, &st, nullptr) != SQLITE_OK)
    throw std::runtime_error(std::string("prepare: ") + sqlite3_errmsg(db) + ": " + sql);
  int n = 0;
  while (sqlite3_step(st) == SQLITE_ROW)
    if (std::string_view(reinterpret_cast<const char*>(sqlite3_column_text(st, 1))) == "OpenEphemeral") ++n;
  sqlite3_finalize(st);
  return n;
}

}  // namespace

TEST_CASE("a relayed message's writes build no temporary b-tree (stored, claimed, marked, delivered, recorded)") {
  TempDir dir;
  auto s = Spool::open(dir.file("spool.db"));
  sqlite3* db = s->handle();
  DeliveryStore ds(*s);
  Tracer t;
  t.start(db);
  s->begin();
  auto m = new_message("00000000000001", {"a@x.test", "b@x.test"}, 1000, "app@example.test");
  const std::string body = "Subject: hi\r\n\r\nbody\r\n";
  s->store_whole(m, body, "", body.size(), 1000);
  auto due = ds.claim_due(5000, 10);
  REQUIRE(due.size() == 1);
  ds.mark_dot_sent(due[0].id, due[0].recipients, "relay", 5000);
  s->add_attempt(due[0].id, AttemptRecord{5100, "relay", due[0].recipients, "250 ok", "delivered"});
  DeliveryReport rep;
  rep.id = due[0].id;
  rep.time = 5100;
  rep.outcome = "delivered";
  for (const auto& a : due[0].recipients) rep.recipients.push_back(RecipientOutcome{a, RecipientResult::Sent, "250 ok", {}});
  CHECK(ds.apply(rep).state == "sent");
  s->commit();
  t.stop(db);

  REQUIRE(t.sql.size() >= 5);
  for (const auto& sql : t.sql) CHECK_MESSAGE(ephemeral_tables(db, sql) == 0, sql);
  // The checker sees what it must: the v6 form of messages_waiting_since's
  // condition made every INSERT INTO messages build one.
  outbox::queue::test::exec(db, "CREATE INDEX three_states ON messages(created) "
                                "WHERE state IN ('queued', 'active', 'deferred')");
  CHECK(ephemeral_tables(db, "UPDATE messages SET state = 'sent' WHERE id = ?1") >= 1);   // old row and new
}
