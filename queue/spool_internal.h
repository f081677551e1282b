// Private to the spool's translation units (queue/spool*.cpp), never
// included elsewhere: the statement and transaction helpers (Spool::Stmt,
// Spool::Txn), the SQL shared between those files and hot_statements(), and
// the small helpers they share.
#pragma once
#include <sqlite3.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "queue/spool.h"

namespace outbox::queue {

inline std::int64_t now_us() {
  using namespace std::chrono;
  return duration_cast<microseconds>(system_clock::now().time_since_epoch()).count();
}

// "INSERT INTO chunks", "UPDATE messages": enough of a statement to name it
// in an error without dumping the whole SQL.
inline std::string sql_label(const char* sql) {
  std::string_view s(sql);
  while (!s.empty() && (s.front() == ' ' || s.front() == '\n')) s.remove_prefix(1);
  std::size_t end = 0;
  int words = 0;
  while (end < s.size() && end < 48) {
    char c = s[end];
    if (c == '(' || c == '\n') break;
    if (c == ' ' && ++words == 3) break;
    ++end;
  }
  return std::string(s.substr(0, end));
}

// A macro so the statement stays one literal (the cache is keyed by it).
#define OUTBOX_MESSAGE_SELECT                                                                                 \
  "SELECT id, state, sender, size, created, attempts, next_attempt, last_error, client, uid, helo, smtputf8, " \
  "body_8bit FROM messages "

// Each statement is run from one spool_*.cpp file only (and listed by
// hot_statements() in spool.cpp): used from a second file it may be a
// second literal, so a second entry in the statement cache.
namespace sql {
// The statements named in hot_statements(); one literal each (the statement
// cache is keyed by the pointer).
constexpr const char* kInsertMessage =
    "INSERT INTO messages(id, state, sender, created, client, uid, helo, smtputf8, body_8bit, updated) " "VALUES(?1, 'incoming', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?3)";
constexpr const char* kInsertRecipient =
    "INSERT OR IGNORE INTO recipients(message_id, address, updated) VALUES(?1, ?2, ?3)";
constexpr const char* kBumpMaxId =
    "INSERT INTO meta(key, value) VALUES('max_id', ?1) " "ON CONFLICT(key) DO UPDATE SET value = excluded.value WHERE excluded.value > value";
constexpr const char* kInsertChunk =
    "INSERT INTO chunks(message_id, seq, data) " "SELECT ?1, ?2, ?3 WHERE EXISTS(SELECT 1 FROM messages WHERE id = ?1 AND state = 'incoming')";
constexpr const char* kFinalizeMessage =
    "UPDATE messages SET prefix = ?2, size = ?3, state = 'queued', next_attempt = ?4, updated = ?4 " "WHERE id = ?1 AND state = 'incoming'";
constexpr const char* kFinalizeRecipients =
    "UPDATE recipients SET state = 'pending', next_attempt = ?2, updated = ?2 WHERE message_id = ?1";
constexpr const char* kInsertWhole =
    "INSERT INTO messages(id, state, sender, created, client, uid, helo, smtputf8, body_8bit, prefix, size, "
    "next_attempt, updated) VALUES(?1, 'queued', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)";
constexpr const char* kInsertWholeRecipient =
    "INSERT OR IGNORE INTO recipients(message_id, address, state, next_attempt, updated) "
    "VALUES(?1, ?2, 'pending', ?3, ?3)";
constexpr const char* kInsertWholeChunk = "INSERT INTO chunks(message_id, seq, data) VALUES(?1, 0, ?2)";
// Maildrop imports (schema v6): one primary-key probe each.
constexpr const char* kRecordImport = "INSERT INTO maildrop_imports(file, message_id, time) VALUES(?1, ?2, ?3)";
constexpr const char* kImportedAs = "SELECT message_id FROM maildrop_imports WHERE file = ?1";
constexpr const char* kForgetImport = "DELETE FROM maildrop_imports WHERE file = ?1";
constexpr const char* kDiscard =
    "DELETE FROM messages WHERE id = ?1 AND state = 'incoming'";
constexpr const char* kMaxId =
    "SELECT MAX(v) FROM (SELECT value AS v FROM meta WHERE key = 'max_id' " "UNION ALL SELECT MAX(id) FROM messages)";
constexpr const char* kGetMessage =
    OUTBOX_MESSAGE_SELECT "WHERE id = ?1 AND state != 'incoming'";
constexpr const char* kGetRecipients =
    "SELECT address, state, attempts, next_attempt, last_reply, updated FROM recipients " "WHERE message_id = ?1 ORDER BY rowid";
constexpr const char* kGetAttempts =
    "SELECT time, upstream, recipients, reply, outcome FROM attempts WHERE message_id = ?1 " "ORDER BY time, rowid";
constexpr const char* kHold =
    "UPDATE messages SET held_from = state, state = 'held', updated = ?2 " "WHERE id = ?1 AND state IN ('queued', 'deferred')";
constexpr const char* kRelease =
    "UPDATE messages SET state = COALESCE(held_from, 'queued'), held_from = NULL, next_attempt = ?2, " "updated = ?2 WHERE id = ?1 AND state = 'held'";
constexpr const char* kRemove =
    "DELETE FROM messages WHERE id = ?1 AND state != 'incoming'";
constexpr const char* kRetryMessage =
    "UPDATE messages SET next_attempt = ?2, updated = ?2 WHERE id = ?1 AND state IN ('queued', 'deferred')";
constexpr const char* kAddAttempt =
    "INSERT INTO attempts(message_id, time, upstream, recipients, reply, outcome) " "VALUES(?1, ?2, ?3, ?4, ?5, ?6)";
constexpr const char* kDueRecipients =
    "UPDATE recipients SET next_attempt = ?2, updated = ?2 WHERE message_id = ?1 AND +state IN ('pending', 'uncertain')";
// Finished messages, oldest first, through the messages_finished partial
// index. INDEXED BY: left to itself the planner takes messages_state and
// sorts every finished message for each batch.
constexpr const char* kFinishedBefore =
    "SELECT id FROM messages INDEXED BY messages_finished WHERE state IN ('sent', 'failed') AND updated < ?1 "
    "ORDER BY updated LIMIT ?2";
constexpr const char* kPurgeMessage = "DELETE FROM messages WHERE id = ?1 AND state IN ('sent', 'failed')";
constexpr const char* kPurgeBounceKey = "DELETE FROM meta WHERE key = 'bounce:' || ?1";
// Keyset pages in id order (the primary key): the same cost at any depth.
constexpr const char* kListPage =
    OUTBOX_MESSAGE_SELECT "WHERE id > ?1 AND state != 'incoming' AND (?2 IS NULL OR state = ?2) ORDER BY id LIMIT ?3";
constexpr const char* kUpstreamStates =
    "SELECT name, suspended_until, reason, failures, stage, last_reply, updated FROM upstreams ORDER BY name";
constexpr const char* kUpstreamState =
    "SELECT name, suspended_until, reason, failures, stage, last_reply, updated FROM upstreams WHERE name = ?1";
constexpr const char* kResumeUpstream =
    "UPDATE upstreams SET suspended_until = NULL, failures = 0, reason = 0, updated = ?2 "
    "WHERE name = ?1 AND suspended_until IS NOT NULL AND suspended_until > ?2";
constexpr const char* kWaitOf = "SELECT state, wait_reason, wait_upstream FROM messages WHERE id = ?1";
constexpr const char* kLogOperator =
    "INSERT INTO operator_log(time, uid, action, target, detail) VALUES(?1, ?2, ?3, ?4, ?5)";
constexpr const char* kOperatorAfter =
    "SELECT seq, time, uid, action, target, detail FROM operator_log WHERE seq > ?1 ORDER BY seq LIMIT ?2";
constexpr const char* kLastOperatorSeq = "SELECT MAX(seq) FROM operator_log";
// MIN() through the partial index is one probe; left to itself the planner
// prefers messages_state (state IN ...) and walks every waiting row.
constexpr const char* kOldestWaiting =
    "SELECT MIN(created) FROM messages INDEXED BY messages_waiting_since "
    "WHERE (state IN ('queued', 'deferred') OR state = 'active')";
}  // namespace sql

// One use of a cached prepared statement. Resetting on scope exit matters: a
// statement left mid-step keeps its read snapshot open, which pins the WAL
// (no checkpoint can pass it) and, in the writer, holds locks.
class Spool::Stmt {
 public:
  Stmt(Spool& spool, const char* sql) : spool_(spool), st_(spool.prepare(sql)) {}
  ~Stmt() {
    sqlite3_reset(st_);
    sqlite3_clear_bindings(st_);
  }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  // Text is copied (callers pass temporaries); blobs are bound by reference
  // (they can be megabytes) and must outlive this Stmt.
  Stmt& text(int i, std::string_view v) {
    check(sqlite3_bind_text64(st_, i, v.data(), v.size(), SQLITE_TRANSIENT, SQLITE_UTF8));
    return *this;
  }
  Stmt& blob_ref(int i, std::string_view v) {
    // A zero-length blob bound from a null pointer would be NULL, not empty.
    if (v.empty())
      check(sqlite3_bind_zeroblob(st_, i, 0));
    else
      check(sqlite3_bind_blob64(st_, i, v.data(), v.size(), SQLITE_STATIC));
    return *this;
  }
  Stmt& i64(int i, std::int64_t v) {
    check(sqlite3_bind_int64(st_, i, v));
    return *this;
  }
  Stmt& opt_i64(int i, const std::optional<std::int64_t>& v) {
    check(v ? sqlite3_bind_int64(st_, i, *v) : sqlite3_bind_null(st_, i));
    return *this;
  }

  bool step() {   // true: a row is ready
    int rc = sqlite3_step(st_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    spool_.fail(sql_label(sqlite3_sql(st_)));
  }
  void run() {
    while (step()) {
    }
  }
  int changes() const { return sqlite3_changes(spool_.db_); }

  bool is_null(int c) const { return sqlite3_column_type(st_, c) == SQLITE_NULL; }
  std::int64_t i64(int c) const { return sqlite3_column_int64(st_, c); }
  std::optional<std::int64_t> opt_i64(int c) const {
    if (is_null(c)) return std::nullopt;
    return i64(c);
  }
  std::string_view bytes(int c) const {
    // Fetch the pointer first: sqlite3_column_bytes after it does not convert.
    auto* p = static_cast<const char*>(sqlite3_column_blob(st_, c));
    auto n = static_cast<std::size_t>(sqlite3_column_bytes(st_, c));
    return p ? std::string_view(p, n) : std::string_view();
  }
  std::string str(int c) const { return std::string(bytes(c)); }

 private:
  void check(int rc) {
    if (rc != SQLITE_OK) spool_.fail("bind in " + sql_label(sqlite3_sql(st_)));
  }
  Spool& spool_;
  sqlite3_stmt* st_;
};

// A unit of work that is its own transaction when none is open (outboxctl),
// and a savepoint inside the caller's transaction otherwise (the StoreWorker's
// batch, the relay engine), so the operator functions work in both places.
class Spool::Txn {
 public:
  Txn(Spool& spool, bool write) : spool_(spool) {
    own_ = sqlite3_get_autocommit(spool.db_) != 0;
    // IMMEDIATE takes the write lock up front, so busy_timeout applies to it;
    // a deferred read-then-write could fail with SQLITE_BUSY_SNAPSHOT instead.
    spool_.exec(own_ ? (write ? "BEGIN IMMEDIATE" : "BEGIN") : "SAVEPOINT spool_txn");
  }
  ~Txn() {
    if (done_) return;
    if (own_) {
      sqlite3_exec(spool_.db_, "ROLLBACK", nullptr, nullptr, nullptr);
    } else if (!sqlite3_get_autocommit(spool_.db_)) {
      sqlite3_exec(spool_.db_, "ROLLBACK TO spool_txn; RELEASE spool_txn", nullptr, nullptr, nullptr);
    }
  }
  void commit() {
    spool_.exec(own_ ? "COMMIT" : "RELEASE spool_txn");
    done_ = true;
  }

 private:
  Spool& spool_;
  bool own_ = false;
  bool done_ = false;
};

}  // namespace outbox::queue
