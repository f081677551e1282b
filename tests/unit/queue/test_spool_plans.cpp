// Statements whose cost must not grow with the queue: every hot statement of
// the Spool is planned with EXPLAIN QUERY PLAN against a real spool, and no
// plan may walk a whole table (or a whole index) of messages, recipients,
// chunks or attempts. A 1,000,000-message backlog then costs a submission,
// a delivery or an operator action the same as an empty spool.
#include <doctest/doctest.h>
#include <sqlite3.h>

#include <string>
#include <vector>

#include "queue/spool.h"
#include "unit/queue/helpers.h"

using namespace outbox::queue;
using namespace outbox::queue::test;

namespace {

std::vector<std::string> plan_of(sqlite3* db, const std::string& sql) {
  sqlite3_stmt* st = nullptr;
  std::string q = "EXPLAIN QUERY PLAN " + sql;
  if (sqlite3_prepare_v2(db, q.c_str(), -1, &st, nullptr) != SQLITE_OK)
    throw std::runtime_error("prepare " + sql + ": " + sqlite3_errmsg(db));
  std::vector<std::string> lines;
  while (sqlite3_step(st) == SQLITE_ROW) lines.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(st, 3)));
  sqlite3_finalize(st);
  return lines;
}

// "SCAN messages", "SCAN m", "SCAN recipients USING INDEX ...": a full walk
// (of the table or of one of its indexes). SEARCH lines are index probes or
// bounded ranges and pass.
bool full_scan(const std::string& line) {
  for (const char* t : {"messages", "recipients", "chunks", "attempts", "maildrop_imports"}) {
    std::string p = std::string("SCAN ") + t;
    if (line.compare(0, p.size(), p) == 0 && (line.size() == p.size() || line[p.size()] == ' ')) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("full_scan recognises the plan lines it must reject") {
  struct Row {
    const char* line;
    bool scan;
  };
  for (auto [line, scan] : std::initializer_list<Row>{
           {"SCAN messages", true},
           {"SCAN messages USING INDEX messages_state", true},
           {"SCAN recipients USING COVERING INDEX recipients_due", true},
           {"SCAN chunks", true},
           {"SCAN attempts", true},
           {"SEARCH messages USING INDEX sqlite_autoindex_messages_1 (id=?)", false},
           {"SEARCH messages USING INDEX messages_finished (updated<?)", false},
           {"SCAN upstreams", false},   // one row per configured upstream
           {"SCAN operator_log", false},
           {"USE TEMP B-TREE FOR ORDER BY", false},
       }) {
    CAPTURE(line);
    CHECK(full_scan(line) == scan);
  }
}

TEST_CASE("no hot Spool statement walks a table that grows with the queue") {
  TempDir dir;
  auto spool = Spool::open(dir.file("spool.db"));
  sqlite3* db = spool->handle();
  // Some rows, and no ANALYZE: outboxd never runs it, so the planner works
  // from the schema alone, as it does on a real spool.
  exec(db, "WITH RECURSIVE n(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM n WHERE v < 2000) "
           "INSERT INTO messages(id, state, sender, created, updated, next_attempt) "
           "SELECT printf('M%08d', v), CASE v % 3 WHEN 0 THEN 'deferred' WHEN 1 THEN 'sent' ELSE 'queued' END, "
           "'s@example.com', v, v, v FROM n");
  // Finished messages too, so the planner is tempted by messages_state.
  exec(db, "UPDATE messages SET state = 'sent' WHERE rowid % 3 = 1");
  const auto& hot = Spool::hot_statements();
  REQUIRE(hot.size() >= 25);
  for (const char* sql : hot) {
    auto plan = plan_of(db, sql);
    std::string text = sql;
    CAPTURE(text);
    // INSERT ... VALUES has no plan; everything that looks rows up has one.
    if (text.rfind("INSERT", 0) != 0) CHECK(!plan.empty());
    // A temporary b-tree sorts every row the search found before LIMIT
    // applies: fine for one message's recipients or attempts, not for a
    // range of messages.
    bool one_message = text.find("message_id = ?1") != std::string::npos;
    for (const auto& line : plan) {
      CAPTURE(line);
      CHECK_FALSE(full_scan(line));
      if (!one_message) CHECK(line.find("USE TEMP B-TREE") == std::string::npos);
    }
  }
  // The lookups ON DELETE CASCADE makes for purge_finished/remove/discard do
  // not show in the DELETE's plan: plan them as the foreign key does.
  for (std::string sql : {"SELECT 1 FROM recipients WHERE message_id = ?1", "SELECT 1 FROM chunks WHERE message_id = ?1",
                          "SELECT 1 FROM attempts WHERE message_id = ?1"}) {
    for (const auto& line : plan_of(db, sql)) {
      CAPTURE(sql);
      CAPTURE(line);
      CHECK_FALSE(full_scan(line));
    }
  }
}

TEST_CASE("the plan checker catches a statement that does scan") {
  // Guard against a plan test that checks nothing: a statement known to scan
  // is caught by the same checker on the same spool.
  TempDir dir;
  auto spool = Spool::open(dir.file("spool.db"));
  bool caught = false;
  for (const auto& line : plan_of(spool->handle(), "SELECT COUNT(*) FROM messages WHERE sender = 'x'"))
    caught = caught || full_scan(line);
  CHECK(caught);
}

TEST_CASE("the oldest waiting message is one probe of its partial index, and the right one") {
  // A range over messages_state (state IN ...) would pass the scan check yet
  // walk every waiting row: the plan must name messages_waiting_since.
  TempDir dir;
  auto spool = Spool::open(dir.file("spool.db"));
  sqlite3* db = spool->handle();
  CHECK_FALSE(spool->oldest_waiting().has_value());
  exec(db, "INSERT INTO messages(id, state, sender, created, updated, next_attempt) VALUES "
           "('A', 'sent', '', 10, 10, 0), ('B', 'deferred', '', 30, 30, 0), ('C', 'queued', '', 20, 20, 0), "
           "('D', 'held', '', 5, 5, 0), ('E', 'incoming', '', 1, 1, 0)");
  CHECK(spool->oldest_waiting() == 20);
  bool probe = false;
  for (const auto& line : plan_of(db, "SELECT MIN(created) FROM messages INDEXED BY messages_waiting_since "
                                      "WHERE (state IN ('queued', 'deferred') OR state = 'active')")) {
    CAPTURE(line);
    probe = probe || line.rfind("SEARCH messages USING INDEX messages_waiting_since", 0) == 0 ||
            line.rfind("SEARCH messages USING COVERING INDEX messages_waiting_since", 0) == 0;
  }
  CHECK(probe);
}
