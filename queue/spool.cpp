#include "queue/spool.h"

#include "queue/wal_batching_vfs.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <thread>
#include <cstring>
#include <filesystem>
#include <limits>
#include <mutex>
#include <system_error>

namespace outbox::queue {

namespace {


// Schema migrations: kMigrations[v] takes a spool from user_version v to v+1.
// Append only; never edit a step that has shipped (spools in the field are at
// that version already). Each step runs in the same transaction as the
// user_version bump, so a crash mid-migration leaves the old version intact.
constexpr const char* kMigrations[] = {
    // v1
    R"sql(
CREATE TABLE messages(
  id           TEXT PRIMARY KEY,
  state        TEXT NOT NULL,              -- incoming|queued|active|deferred|held|sent|failed
  sender       TEXT NOT NULL,              -- '' is the null sender <>
  size         INTEGER NOT NULL DEFAULT 0, -- prefix + body bytes
  created      INTEGER NOT NULL,           -- µs since the epoch
  attempts     INTEGER NOT NULL DEFAULT 0,
  next_attempt INTEGER,                    -- µs; NULL: nothing scheduled
  last_error   TEXT NOT NULL DEFAULT '',
  client       TEXT NOT NULL DEFAULT '',
  uid          INTEGER,
  helo         TEXT NOT NULL DEFAULT '',
  smtputf8     INTEGER NOT NULL DEFAULT 0,
  body_8bit    INTEGER NOT NULL DEFAULT 0,
  prefix       BLOB,                       -- header lines the server added, stored before the chunks
  held_from    TEXT,                       -- the state release() returns a held message to
  updated      INTEGER NOT NULL
);
CREATE INDEX messages_state ON messages(state, next_attempt);

CREATE TABLE recipients(
  message_id   TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
  address      TEXT NOT NULL,
  state        TEXT NOT NULL DEFAULT 'pending',   -- pending|sent|failed
  attempts     INTEGER NOT NULL DEFAULT 0,
  next_attempt INTEGER,
  last_reply   TEXT NOT NULL DEFAULT '',
  updated      INTEGER,
  PRIMARY KEY(message_id, address)
);
CREATE INDEX recipients_due ON recipients(state, next_attempt);

CREATE TABLE chunks(
  message_id   TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
  seq          INTEGER NOT NULL,
  data         BLOB NOT NULL,
  PRIMARY KEY(message_id, seq)
);

CREATE TABLE attempts(
  message_id   TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
  time         INTEGER NOT NULL,
  upstream     TEXT NOT NULL DEFAULT '',
  recipients   TEXT NOT NULL DEFAULT '',   -- addresses, '\n'-joined (no address holds a LF)
  reply        TEXT NOT NULL DEFAULT '',
  outcome      TEXT NOT NULL
);
CREATE INDEX attempts_message ON attempts(message_id, time);
CREATE INDEX attempts_time ON attempts(time);

-- Largest id ever created, so a restart never reissues the id of a message
-- that was deleted meanwhile.
CREATE TABLE meta(
  key   TEXT PRIMARY KEY,
  value
) WITHOUT ROWID;
)sql",
    // v2: the relay engine's second design (docs/design/relay-engine.md).
    // recipients.state gains 'uncertain' (the final dot was sent, no reply is
    // known: RFC 1047); no DDL needed for a new TEXT value.
    R"sql(
-- Due work and finished work each have a partial index, so neither the
-- scheduler nor retention walks the deferred backlog (cost independent of
-- the queue's size).
CREATE INDEX messages_due ON messages(next_attempt) WHERE state IN ('queued', 'deferred');
CREATE INDEX messages_finished ON messages(updated) WHERE state IN ('sent', 'failed');
CREATE INDEX recipients_uncertain ON recipients(message_id) WHERE state = 'uncertain';
-- Why a waiting message waits, typed (queue::WaitReason), never parsed back
-- out of last_error.
ALTER TABLE messages ADD COLUMN wait_reason INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN wait_upstream TEXT NOT NULL DEFAULT '';
-- Per-upstream state that must survive a restart (suspensions).
CREATE TABLE upstreams(
  name            TEXT PRIMARY KEY,
  suspended_until INTEGER,                 -- µs; NULL: usable
  reason          INTEGER NOT NULL DEFAULT 0,   -- queue::SuspendReason
  failures        INTEGER NOT NULL DEFAULT 0,   -- consecutive upstream-scope failures
  stage           TEXT NOT NULL DEFAULT '',     -- connect|tls|greeting|ehlo|starttls|auth|mail|rcpt|data|data-end
  last_reply      TEXT NOT NULL DEFAULT '',
  updated         INTEGER NOT NULL
) WITHOUT ROWID;
-- Every operator action (outboxctl retry/resume/hold/release/delete), with
-- the operator's uid: the daemon reads new rows within a second, logs them
-- and acts (a nudge to the scheduler, a lifted suspension).
CREATE TABLE operator_log(
  seq     INTEGER PRIMARY KEY AUTOINCREMENT,
  time    INTEGER NOT NULL,
  uid     INTEGER,
  action  TEXT NOT NULL,                   -- retry|retry_all|resume|hold|release|delete
  target  TEXT NOT NULL DEFAULT '',        -- message id or upstream name ('' for all)
  detail  TEXT NOT NULL DEFAULT ''
);
)sql",
    // v3: a reload (release_waiting) and `outboxctl resume` (release_upstream)
    // find the messages that wait for an upstream or a route through their
    // own partial index, not by walking the deferred backlog.
    R"sql(
CREATE INDEX messages_waiting ON messages(wait_upstream, wait_reason)
  WHERE state IN ('queued', 'deferred') AND wait_reason != 0;
)sql",
    // v4: the queue_age alert asks for the oldest waiting message every
    // minute: MIN(created) through its own partial index, not a walk of the
    // backlog.
    R"sql(
CREATE INDEX messages_waiting_since ON messages(created) WHERE state IN ('queued', 'active', 'deferred');
)sql",
    // v5: the quota ledger (issue 10 item 3): every message handed to an
    // upstream that has rate windows, so the windows survive a restart.
    // Read and pruned per upstream through its primary key: the cost follows
    // what is in the windows (bounded by the limits), never the queue.
    R"sql(
CREATE TABLE failure_counts(             -- recipients deferred or failed, by enhanced status
  status TEXT NOT NULL,                    -- "4.2.0", "none" when the relay had no code
  result TEXT NOT NULL,                    -- deferred | failed
  count  INTEGER NOT NULL,
  PRIMARY KEY(status, result)
) WITHOUT ROWID;
CREATE TABLE quota_ledger(
  upstream   TEXT NOT NULL,
  time       INTEGER NOT NULL,             -- µs: the message was handed to a connection
  seq        INTEGER NOT NULL,             -- several in one µs stay distinct
  recipients INTEGER NOT NULL,
  PRIMARY KEY(upstream, time, seq)
) WITHOUT ROWID;
)sql",
};
constexpr int kMigrationCount = static_cast<int>(std::size(kMigrations));
static_assert(kMigrationCount == Spool::kSchemaVersion, "kSchemaVersion must match the migration list");

std::int64_t now_us() {
  using namespace std::chrono;
  return duration_cast<microseconds>(system_clock::now().time_since_epoch()).count();
}

bool valid_savepoint_name(const char* name) {
  if (name == nullptr || *name == '\0') return false;
  for (const char* p = name; *p; ++p) {
    char c = *p;
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (p != name && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

// "INSERT INTO chunks", "UPDATE messages": enough of a statement to name it
// in an error without dumping the whole SQL.
std::string sql_label(const char* sql) {
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

std::string join_lines(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) {
    if (!out.empty()) out += '\n';
    out += s;
  }
  return out;
}

std::vector<std::string> split_lines(std::string_view s) {
  std::vector<std::string> out;
  while (!s.empty()) {
    auto nl = s.find('\n');
    out.emplace_back(s.substr(0, nl));
    if (nl == std::string_view::npos) break;
    s.remove_prefix(nl + 1);
  }
  return out;
}

}  // namespace

// A macro so the statement stays one literal (the cache is keyed by it).
#define OUTBOX_MESSAGE_SELECT                                                                                 \
  "SELECT id, state, sender, size, created, attempts, next_attempt, last_error, client, uid, helo, smtputf8, " \
  "body_8bit FROM messages "

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
    "WHERE state IN ('queued', 'active', 'deferred')";
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

Spool::Spool(sqlite3* db) : db_(db) {}

Spool::~Spool() {
  for (auto& [sql, st] : stmts_) sqlite3_finalize(st);
  for (auto& [sql, st] : control_) sqlite3_finalize(st);
  sqlite3_close(db_);
}

void Spool::fail(const std::string& what) {
  throw SpoolError("spool: " + what + ": " + sqlite3_errmsg(db_), sqlite3_extended_errcode(db_));
}

sqlite3_stmt* Spool::prepare(const char* sql) {
  auto it = stmts_.find(sql);
  if (it != stmts_.end()) return it->second;
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, nullptr) != SQLITE_OK)
    fail("prepare " + sql_label(sql));
  stmts_.emplace(sql, st);
  return st;
}

void Spool::exec(const char* sql) {
  if (sqlite3_exec(db_, sql, nullptr, nullptr, nullptr) != SQLITE_OK) fail(sql_label(sql));
}

// Transaction control runs several times per request of every batch (a
// SAVEPOINT and a RELEASE each): parsed once per connection, not per use
// (the parser was a visible share of the relay's CPU in perf).
void Spool::exec_cached(const std::string& sql) {
  auto it = control_.find(sql);
  if (it == control_.end()) {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v3(db_, sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &st, nullptr) != SQLITE_OK)
      fail("prepare " + sql_label(sql.c_str()));
    it = control_.emplace(sql, st).first;
  }
  int rc = sqlite3_step(it->second);
  sqlite3_reset(it->second);
  if (rc != SQLITE_DONE) fail(sql_label(sql.c_str()));
}

std::unique_ptr<Spool> Spool::open(const std::string& path, Mode mode) {
  namespace fs = std::filesystem;
  // SQLite counts every allocation under one process-wide mutex unless told
  // not to; nothing here reads those counts, and the store writer, the body
  // reader and the checkpointer took that mutex thousands of times per
  // batch (docs/performance.md, round four). Only possible before SQLite
  // initialises: the first open of the process does it.
  static std::once_flag library;
  std::call_once(library, [] { sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); });
  int flags = SQLITE_OPEN_NOMUTEX;   // one thread at a time per connection
  if (mode == Mode::Checkpoint) {
    flags |= SQLITE_OPEN_READWRITE;   // never creates: the writer opened (and set up) the file first
  } else if (mode == Mode::ReadOnly) {
    std::error_code ec;
    if (!fs::exists(path, ec))
      throw SpoolError("spool: " + path + ": no such file (has outboxd ever run with this spool.path?)",
                       SQLITE_CANTOPEN);
    flags |= SQLITE_OPEN_READONLY;
  } else {
    flags |= SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    std::error_code ec;
    auto parent = fs::path(path).parent_path();
    if (!parent.empty() && !fs::exists(parent, ec)) {
      fs::create_directories(parent, ec);
      if (ec) throw SpoolError("spool: cannot create " + parent.string() + ": " + ec.message(), SQLITE_CANTOPEN);
      fs::permissions(parent, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec,
                      fs::perm_options::replace, ec);
    }
    // Messages are private: create the file 0640 rather than leave it to the
    // umask. SQLite gives the -wal and -shm files the database file's mode.
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (fd >= 0)
      ::close(fd);
    else if (errno != EEXIST)   // an existing file is SQLite's to judge
      throw SpoolError("spool: cannot create " + path + ": " + std::strerror(errno), SQLITE_CANTOPEN);
  }
  sqlite3* db = nullptr;
  // The writer appends the WAL through queue/wal_batching_vfs.h: a few
  // writes per commit rather than two per page; the checkpointer writes the
  // database's consecutive pages at once. Readers write nothing.
  const char* vfs = mode == Mode::ReadWrite ? wal_batching_vfs() : mode == Mode::Checkpoint ? checkpoint_batching_vfs() : nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, flags, vfs);
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    int code = db ? sqlite3_extended_errcode(db) : rc;
    sqlite3_close(db);
    throw SpoolError("spool: cannot open " + path + ": " + msg, code);
  }
  std::unique_ptr<Spool> spool(new Spool(db));
  spool->mode_ = mode;
  spool->path_ = path;
  spool->configure();
  if (mode == Mode::Checkpoint) {
    // Nothing to check: the writer that runs beside it migrated the file.
  } else if (mode == Mode::ReadWrite) {
    spool->migrate();
    spool->compact_legacy();
  } else {
    int v = spool->schema_version();
    if (v != kSchemaVersion)
      throw SpoolError("spool: " + path + " has schema version " + std::to_string(v) + ", this program reads " +
                           std::to_string(kSchemaVersion) + (v < kSchemaVersion ? " (start outboxd once to migrate it)" : ""),
                       SQLITE_ERROR);
  }
  return spool;
}

void Spool::configure() {
  sqlite3_extended_result_codes(db_, 1);
  // Not sqlite3_busy_timeout: its back-off sleeps up to 100 ms between tries
  // and, against outboxd's back-to-back group commits, can miss every gap
  // until it gives up. Short, even retries find the next one.
  install_busy_handler();
  exec("PRAGMA foreign_keys=ON");
  if (mode_ == Mode::ReadOnly) return;   // journal mode is a property of the file; the writer set it
  if (mode_ == Mode::Checkpoint) {
    // A checkpoint syncs the WAL before copying and the database after,
    // according to the synchronous setting of the connection that runs it:
    // the writer's FULL, here too.
    exec("PRAGMA synchronous=FULL");
    exec("PRAGMA journal_size_limit=67108864");
    sqlite3_wal_autocheckpoint(db_, 0);   // it never commits; said for clarity
    return;
  }
  // Retention deletes messages; without auto_vacuum the file would never give
  // the space back. It only takes effect when set before the first table is
  // created (a new spool) or by a VACUUM (compact_legacy()).
  exec("PRAGMA auto_vacuum=INCREMENTAL");
  {
    // WAL lets outboxctl read while the daemon writes. It needs shared memory
    // (not over NFS), so refuse rather than silently run in another mode.
    Stmt st(*this, "PRAGMA journal_mode=WAL");
    std::string jm = st.step() ? st.str(0) : "";
    if (jm != "wal")
      throw SpoolError("spool: " + path_ + ": cannot use WAL journal mode (got '" + jm + "')", SQLITE_ERROR);
  }
  // FULL: in WAL mode NORMAL may lose the last commits on power loss, and
  // the 250 after DATA promises the message is on disk.
  exec("PRAGMA synchronous=FULL");
  // A checkpoint that reaches the end of the WAL lets the next writer cut
  // the file back to this size (a burst of large messages leaves no 200 MB
  // WAL behind); the idle TRUNCATE checkpoint empties it.
  exec("PRAGMA journal_size_limit=67108864");
  // Each request of a group commit runs in a SAVEPOINT; a page that an
  // earlier request of the batch already changed is copied into the
  // savepoint's sub-journal before it changes again. Past 64 KiB SQLite
  // spills that journal to a temporary file: under the 20-session benchmark
  // that was as many pwrite calls as the WAL itself (docs/performance.md).
  // It only ever serves a rollback within the open transaction, so memory
  // is the right place; durability is the WAL's.
  exec("PRAGMA temp_store=MEMORY");
}

void Spool::install_busy_handler() {
  // The timeout is measured on the clock, not counted in tries: 10,000
  // sleeps of 0.5 ms last far longer than 5 s on a loaded machine (13 s seen
  // under ASan), which kept a failing write from being reported in time.
  sqlite3_busy_handler(db_, [](void* self, int tries) -> int {
    thread_local std::chrono::steady_clock::time_point first;
    const auto now = std::chrono::steady_clock::now();
    if (tries == 0) first = now;
    if (now - first >= static_cast<Spool*>(self)->busy_timeout_) return 0;
    std::this_thread::sleep_for(std::chrono::microseconds(500));
    return 1;
  }, this);
}

// A spool created before auto_vacuum was set keeps every freed page forever:
// convert it once. VACUUM rewrites the file (outside any transaction); it runs
// once per spool, at the first read-write open after the upgrade.
void Spool::compact_legacy() {
  {
    Stmt st(*this, "PRAGMA auto_vacuum");
    if (!st.step() || st.i64(0) != 0) return;
  }
  exec("PRAGMA auto_vacuum=INCREMENTAL");
  exec("VACUUM");
}

Spool::Check Spool::quick_check(std::chrono::milliseconds budget) {
  Check out;
  struct Clock {
    std::chrono::steady_clock::time_point deadline;
    bool expired = false;
  } clock{std::chrono::steady_clock::now() + budget};
  sqlite3_progress_handler(db_, 10000, [](void* p) -> int {
    auto* c = static_cast<Clock*>(p);
    if (std::chrono::steady_clock::now() < c->deadline) return 0;
    c->expired = true;
    return 1;   // SQLITE_INTERRUPT
  }, &clock);
  try {
    Stmt st(*this, "PRAGMA quick_check(10)");
    while (st.step()) {
      std::string line = st.str(0);
      if (line != "ok") out.problems.push_back(std::move(line));
    }
  } catch (const SpoolError& e) {
    if (!clock.expired) out.problems.push_back(e.what());
  }
  sqlite3_progress_handler(db_, 0, nullptr, nullptr);
  if (!out.problems.empty()) out.result = Check::Result::Damaged;
  else if (clock.expired) out.result = Check::Result::Unfinished;
  return out;
}

int Spool::schema_version() {
  Stmt st(*this, "PRAGMA user_version");
  return st.step() ? static_cast<int>(st.i64(0)) : 0;
}

void Spool::migrate() {
  // Most opens find the schema current: check without the write lock, so
  // outboxctl does not have to wait for a gap in the daemon's commits.
  if (schema_version() == kMigrationCount) return;
  exec("BEGIN IMMEDIATE");
  try {
    int v = schema_version();
    if (v > kMigrationCount)
      throw SpoolError("spool: " + path_ + " has schema version " + std::to_string(v) +
                           ", newer than this program (" + std::to_string(kMigrationCount) + ")",
                       SQLITE_ERROR);
    for (; v < kMigrationCount; ++v) {
      exec(kMigrations[v]);
      exec(("PRAGMA user_version=" + std::to_string(v + 1)).c_str());
    }
    exec("COMMIT");
  } catch (...) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
}

// --- transactions -----------------------------------------------------------

void Spool::begin() { exec_cached("BEGIN IMMEDIATE"); }
void Spool::commit() { exec_cached("COMMIT"); }
void Spool::rollback() {
  // Some errors (SQLITE_FULL, IOERR, NOMEM) have already rolled back.
  if (!sqlite3_get_autocommit(db_)) exec("ROLLBACK");
}

void Spool::savepoint(const char* name) {
  if (!valid_savepoint_name(name)) throw SpoolError("spool: bad savepoint name", SQLITE_MISUSE);
  exec_cached("SAVEPOINT " + std::string(name));
}
void Spool::release(const char* name) {
  if (!valid_savepoint_name(name)) throw SpoolError("spool: bad savepoint name", SQLITE_MISUSE);
  exec_cached("RELEASE " + std::string(name));
}
void Spool::rollback_to(const char* name) {
  if (!valid_savepoint_name(name)) throw SpoolError("spool: bad savepoint name", SQLITE_MISUSE);
  exec_cached("ROLLBACK TO " + std::string(name));
}

// --- submission ---------------------------------------------------------------

void Spool::create_incoming(const NewMessage& m) {
  {
    Stmt st(*this, sql::kInsertMessage);
    st.text(1, m.id).text(2, m.sender).i64(3, m.created).text(4, m.client).opt_i64(5, m.uid).text(6, m.helo)
        .i64(7, m.smtputf8).i64(8, m.body_8bit).run();
  }
  for (const auto& r : m.recipients) {
    // The same RCPT twice is one recipient (and one delivery).
    Stmt st(*this, sql::kInsertRecipient);
    st.text(1, m.id).text(2, r).i64(3, m.created).run();
  }
  Stmt st(*this, sql::kBumpMaxId);
  st.text(1, m.id).run();
}

void Spool::append_chunk(std::string_view id, std::int64_t seq, std::string_view bytes) {
  Stmt st(*this, sql::kInsertChunk);
  st.text(1, id).i64(2, seq).blob_ref(3, bytes).run();
  if (st.changes() != 1)
    throw SpoolError("spool: append: no incoming message " + std::string(id), SQLITE_NOTFOUND);
}

void Spool::finalize(std::string_view id, std::string_view prefix, std::uint64_t size, std::int64_t now) {
  if (size > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
    throw SpoolError("spool: finalize: size out of range", SQLITE_RANGE);
  {
    Stmt st(*this, sql::kFinalizeMessage);
    st.text(1, id).blob_ref(2, prefix).i64(3, static_cast<std::int64_t>(size)).i64(4, now).run();
    if (st.changes() != 1)
      throw SpoolError("spool: finalize: no incoming message " + std::string(id), SQLITE_NOTFOUND);
  }
  Stmt st(*this, sql::kFinalizeRecipients);
  st.text(1, id).i64(2, now).run();
}

void Spool::store_whole(const NewMessage& m, std::string_view body, std::string_view prefix, std::uint64_t size,
                        std::int64_t now) {
  if (size > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
    throw SpoolError("spool: store: size out of range", SQLITE_RANGE);
  {
    Stmt st(*this, sql::kInsertWhole);
    st.text(1, m.id).text(2, m.sender).i64(3, m.created).text(4, m.client).opt_i64(5, m.uid).text(6, m.helo)
        .i64(7, m.smtputf8).i64(8, m.body_8bit).blob_ref(9, prefix).i64(10, static_cast<std::int64_t>(size))
        .i64(11, now).run();
  }
  for (const auto& r : m.recipients) {
    Stmt st(*this, sql::kInsertWholeRecipient);   // the same RCPT twice is one recipient
    st.text(1, m.id).text(2, r).i64(3, now).run();
  }
  if (!body.empty()) {
    Stmt st(*this, sql::kInsertWholeChunk);
    st.text(1, m.id).blob_ref(2, body).run();
  }
  Stmt st(*this, sql::kBumpMaxId);
  st.text(1, m.id).run();
}

void Spool::discard(std::string_view id) {
  Stmt st(*this, sql::kDiscard);
  st.text(1, id).run();
}

int Spool::purge_incoming() {
  Stmt st(*this, "DELETE FROM messages WHERE state = 'incoming'");
  st.run();
  return st.changes();
}

std::string Spool::max_id() {
  Stmt st(*this, sql::kMaxId);
  if (!st.step() || st.is_null(0)) return {};
  return st.str(0);
}

void Spool::checkpoint() { checkpoint_passive(); }

Spool::WalFrames Spool::checkpoint_passive() {
  WalFrames f;
  int rc = sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_PASSIVE, &f.log, &f.copied);
  // BUSY: another connection is checkpointing; PASSIVE never waits for it.
  if (rc == SQLITE_BUSY) return WalFrames{true, -1, -1};
  if (rc != SQLITE_OK) fail("wal_checkpoint(PASSIVE)");
  return f;
}

// --- reading --------------------------------------------------------------------

namespace {
MessageRecord read_message(const auto& st) {
  MessageRecord m;
  m.id = st.str(0);
  m.state = st.str(1);
  m.sender = st.str(2);
  m.size = static_cast<std::uint64_t>(st.i64(3));
  m.created = st.i64(4);
  m.attempts = static_cast<int>(st.i64(5));
  m.next_attempt = st.opt_i64(6);
  m.last_error = st.str(7);
  m.client = st.str(8);
  m.uid = st.opt_i64(9);
  m.helo = st.str(10);
  m.smtputf8 = st.i64(11) != 0;
  m.body_8bit = st.i64(12) != 0;
  return m;
}

RecipientRecord read_recipient(const auto& st, int c) {
  RecipientRecord r;
  r.address = st.str(c);
  r.state = st.str(c + 1);
  r.attempts = static_cast<int>(st.i64(c + 2));
  r.next_attempt = st.opt_i64(c + 3);
  r.last_reply = st.str(c + 4);
  r.updated = st.opt_i64(c + 5);
  return r;
}
}  // namespace


std::vector<MessageRecord> Spool::list(std::optional<std::string> state) {
  std::vector<MessageRecord> out;
  if (state && *state == kIncoming) return out;   // internal, never listed
  Txn txn(*this, false);                           // messages and recipients from one snapshot
  {
    Stmt st(*this, OUTBOX_MESSAGE_SELECT "WHERE state != 'incoming' AND (?1 IS NULL OR state = ?1) ORDER BY id");
    if (state) st.text(1, *state);
    while (st.step()) out.push_back(read_message(st));
  }
  if (!out.empty()) {
    // One pass over the recipients in id order, merged with the id-ordered messages.
    Stmt st(*this,
            "SELECT r.message_id, r.address, r.state, r.attempts, r.next_attempt, r.last_reply, r.updated "
            "FROM recipients r JOIN messages m ON m.id = r.message_id "
            "WHERE m.state != 'incoming' AND (?1 IS NULL OR m.state = ?1) ORDER BY r.message_id, r.rowid");
    if (state) st.text(1, *state);
    std::size_t i = 0;
    while (st.step()) {
      auto mid = st.bytes(0);
      while (i < out.size() && out[i].id < mid) ++i;
      if (i == out.size()) break;
      if (out[i].id == mid) out[i].recipients.push_back(read_recipient(st, 1));
    }
  }
  txn.commit();
  return out;
}

std::optional<MessageRecord> Spool::get(std::string_view id) {
  Txn txn(*this, false);
  std::optional<MessageRecord> m;
  {
    Stmt st(*this, sql::kGetMessage);
    st.text(1, id);
    if (st.step()) m = read_message(st);
  }
  if (m) {
    load_recipients(*m);
    Stmt st(*this, sql::kGetAttempts);
    st.text(1, id);
    while (st.step()) {
      AttemptRecord a;
      a.time = st.i64(0);
      a.upstream = st.str(1);
      a.recipients = split_lines(st.bytes(2));
      a.reply = st.str(3);
      a.outcome = st.str(4);
      m->history.push_back(std::move(a));
    }
  }
  txn.commit();
  return m;
}

bool Spool::read_body(std::string_view id, const std::function<void(std::string_view)>& sink) {
  Txn txn(*this, false);   // prefix and chunks from one snapshot
  {
    Stmt st(*this, "SELECT prefix FROM messages WHERE id = ?1 AND state != 'incoming'");
    st.text(1, id);
    if (!st.step()) return false;
    sink(st.bytes(0));
  }
  {
    Stmt st(*this, "SELECT data FROM chunks WHERE message_id = ?1 ORDER BY seq");
    st.text(1, id);
    while (st.step()) sink(st.bytes(0));
  }
  txn.commit();
  return true;
}

QueueStats Spool::stats() {
  QueueStats s;
  Txn txn(*this, false);
  // Every listed state appears, in lifecycle order, so that outputs are stable.
  for (const char* state : {kQueued, kActive, kDeferred, kHeld, kSent, kFailed}) s.by_state.emplace_back(state, 0);
  {
    Stmt st(*this, "SELECT state, COUNT(*) FROM messages WHERE state != 'incoming' GROUP BY state ORDER BY state");
    while (st.step()) {
      auto name = st.str(0);
      bool known = false;
      for (auto& [k, v] : s.by_state)
        if (k == name) v = st.i64(1), known = true;
      if (!known) s.by_state.emplace_back(name, st.i64(1));   // a state from a newer version
    }
  }
  {
    Stmt st(*this,
            "SELECT MIN(created), COALESCE(SUM(size), 0) FROM messages "
            "WHERE state IN ('queued', 'active', 'deferred', 'held')");
    if (st.step()) {
      s.oldest_created = st.opt_i64(0);
      s.total_size = st.i64(1);
    }
  }
  {
    Stmt st(*this, "SELECT status, result, count FROM failure_counts ORDER BY status, result");
    while (st.step()) s.failures.push_back(QueueStats::Failures{st.str(0), st.str(1), st.i64(2)});
  }
  for (auto [since, out] : {std::pair{now_us() - 3'600'000'000LL, &s.attempts_last_hour},
                            std::pair{now_us() - 86'400'000'000LL, &s.attempts_last_day}}) {
    Stmt st(*this, "SELECT outcome, COUNT(*) FROM attempts WHERE time >= ?1 GROUP BY outcome ORDER BY outcome");
    st.i64(1, since);
    while (st.step()) out->emplace_back(st.str(0), st.i64(1));
  }
  {
    auto up = [&](const std::string& name) -> QueueStats::Upstream& {
      for (auto& u : s.upstreams)
        if (u.name == name) return u;
      s.upstreams.push_back(QueueStats::Upstream{name, {}, std::nullopt, std::nullopt, {}});
      return s.upstreams.back();
    };
    Stmt last(*this,
              "SELECT a.upstream, a.outcome, a.time FROM attempts a JOIN "
              "(SELECT upstream, MAX(time) AS t FROM attempts WHERE upstream != '' GROUP BY upstream) b "
              "ON a.upstream = b.upstream AND a.time = b.t ORDER BY a.upstream");
    while (last.step()) {
      auto& u = up(last.str(0));
      u.last_attempt = last.i64(2);
      u.last_outcome = last.str(1);
    }
    Stmt ok(*this,
            "SELECT upstream, MAX(time) FROM attempts WHERE upstream != '' AND outcome = 'delivered' "
            "GROUP BY upstream");
    while (ok.step()) up(ok.str(0)).last_delivered = ok.i64(1);
    Stmt day(*this,
             "SELECT upstream, outcome, COUNT(*) FROM attempts WHERE upstream != '' AND time >= ?1 "
             "GROUP BY upstream, outcome ORDER BY upstream, outcome");
    day.i64(1, now_us() - 86'400'000'000LL);
    while (day.step()) up(day.str(0)).attempts_last_day.emplace_back(day.str(1), day.i64(2));
  }
  txn.commit();
  return s;
}

std::optional<std::int64_t> Spool::oldest_waiting() {
  Stmt st(*this, sql::kOldestWaiting);
  return st.step() ? st.opt_i64(0) : std::nullopt;
}

std::int64_t Spool::count_unfinished() {
  Stmt st(*this, "SELECT COUNT(*) FROM messages WHERE state IN ('queued', 'active', 'deferred', 'held')");
  return st.step() ? st.i64(0) : 0;
}

// --- operator control -------------------------------------------------------------

bool Spool::hold(std::string_view id) {
  Txn txn(*this, true);
  Stmt st(*this, sql::kHold);
  st.text(1, id).i64(2, now_us()).run();
  bool changed = st.changes() == 1;
  if (changed) operator_log("hold", id);
  txn.commit();
  return changed;
}

bool Spool::release(std::string_view id) {
  Txn txn(*this, true);
  std::int64_t now = now_us();
  bool changed;
  {
    Stmt st(*this, sql::kRelease);
    st.text(1, id).i64(2, now).run();
    changed = st.changes() == 1;
  }
  if (changed) {
    Stmt st(*this, sql::kDueRecipients);
    st.text(1, id).i64(2, now).run();
    operator_log("release", id);
  }
  txn.commit();
  return changed;
}

bool Spool::remove(std::string_view id) {
  Txn txn(*this, true);
  bool changed;
  {
    Stmt st(*this, sql::kRemove);
    st.text(1, id).run();
    changed = st.changes() == 1;
  }
  if (changed) operator_log("delete", id);
  txn.commit();
  return changed;
}

bool Spool::retry(std::string_view id, std::int64_t now) {
  Txn txn(*this, true);
  bool changed;
  {
    Stmt st(*this, sql::kRetryMessage);
    st.text(1, id).i64(2, now).run();
    changed = st.changes() == 1;
  }
  if (changed) {
    Stmt st(*this, sql::kDueRecipients);
    st.text(1, id).i64(2, now).run();
    operator_log("retry", id);
  }
  txn.commit();
  return changed;
}

int Spool::retry_all(std::int64_t now) {
  Txn txn(*this, true);
  {
    Stmt st(*this,
            "UPDATE recipients SET next_attempt = ?1, updated = ?1 WHERE state IN ('pending', 'uncertain') AND message_id IN "
            "(SELECT id FROM messages WHERE state IN ('queued', 'deferred'))");
    st.i64(1, now).run();
  }
  int n;
  {
    Stmt st(*this, "UPDATE messages SET next_attempt = ?1, updated = ?1 WHERE state IN ('queued', 'deferred')");
    st.i64(1, now).run();
    n = st.changes();
  }
  operator_log("retry_all", "", std::to_string(n));
  txn.commit();
  return n;
}

void Spool::add_attempt(std::string_view id, const AttemptRecord& a) {
  Stmt st(*this, sql::kAddAttempt);
  st.text(1, id).i64(2, a.time).text(3, a.upstream).text(4, join_lines(a.recipients)).text(5, a.reply)
      .text(6, a.outcome).run();
}

// --- retention and compaction ---------------------------------------------------------

bool Spool::checkpoint_truncate() {
  // TRUNCATE waits (through the busy handler) for readers to move on; the
  // writer thread must not, so it runs without one and reports BUSY instead.
  sqlite3_busy_handler(db_, nullptr, nullptr);
  int rc = sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr);
  install_busy_handler();
  if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) return false;
  if (rc != SQLITE_OK) fail("wal_checkpoint(TRUNCATE)");
  return true;
}

int Spool::purge_finished(std::int64_t before, int limit) {
  Txn txn(*this, true);
  std::vector<std::string> ids;
  {
    Stmt st(*this, sql::kFinishedBefore);
    st.i64(1, before).i64(2, limit);
    while (st.step()) ids.push_back(st.str(0));
  }
  int n = 0;
  for (const auto& id : ids) {
    {
      // Recipients, chunks and attempts go by ON DELETE CASCADE, each through
      // its message_id index.
      Stmt st(*this, sql::kPurgeMessage);
      st.text(1, id).run();
      n += st.changes();
    }
    Stmt st(*this, sql::kPurgeBounceKey);
    st.text(1, id).run();
  }
  txn.commit();
  return n;
}

std::int64_t Spool::freelist_pages() {
  Stmt st(*this, "PRAGMA freelist_count");
  return st.step() ? st.i64(0) : 0;
}

std::int64_t Spool::incremental_vacuum(int pages) {
  // A pragma takes no bound parameter; exec steps it to the end.
  exec(("PRAGMA incremental_vacuum(" + std::to_string(pages) + ")").c_str());
  return freelist_pages();
}

void Spool::load_recipients(MessageRecord& m) {
  Stmt st(*this, sql::kGetRecipients);
  st.text(1, m.id);
  while (st.step()) m.recipients.push_back(read_recipient(st, 0));
}

// --- paging, upstreams, waits ------------------------------------------------------------

std::vector<MessageRecord> Spool::list_page(const std::optional<std::string>& state, std::string_view after_id,
                                            int limit) {
  std::vector<MessageRecord> out;
  if (state && *state == kIncoming) return out;
  Txn txn(*this, false);
  {
    Stmt st(*this, sql::kListPage);
    st.text(1, after_id).i64(3, limit);
    if (state) st.text(2, *state);
    while (st.step()) out.push_back(read_message(st));
  }
  for (auto& m : out) load_recipients(m);
  txn.commit();
  return out;
}

std::vector<MessageRecord> Spool::list_page(const ListFilter& f, std::string_view after_id, int limit) {
  std::vector<MessageRecord> out;
  if (f.state && *f.state == kIncoming) return out;
  Txn txn(*this, false);
  {
    Stmt st(*this, OUTBOX_MESSAGE_SELECT
            "WHERE id > ?1 AND state != 'incoming' AND (?2 IS NULL OR state = ?2) "
            "AND (?4 = 0 OR state IN ('queued', 'active', 'deferred', 'held')) AND (?5 IS NULL OR uid = ?5) "
            "ORDER BY id LIMIT ?3");
    st.text(1, after_id).i64(3, limit).i64(4, f.unfinished_only ? 1 : 0);
    if (f.state) st.text(2, *f.state);
    if (f.uid) st.i64(5, *f.uid);
    while (st.step()) out.push_back(read_message(st));
  }
  for (auto& m : out) load_recipients(m);
  txn.commit();
  return out;
}

std::int64_t Spool::count_not_of_uid(const ListFilter& f, std::int64_t uid) {
  if (f.state && *f.state == kIncoming) return 0;
  Stmt st(*this,
          "SELECT COUNT(*) FROM messages WHERE state != 'incoming' AND (?1 IS NULL OR state = ?1) "
          "AND (?2 = 0 OR state IN ('queued', 'active', 'deferred', 'held')) AND (uid IS NULL OR uid != ?3)");
  if (f.state) st.text(1, *f.state);
  st.i64(2, f.unfinished_only ? 1 : 0).i64(3, uid);
  return st.step() ? st.i64(0) : 0;
}

namespace {
UpstreamState read_upstream(const auto& st) {
  UpstreamState u;
  u.name = st.str(0);
  u.suspended_until = st.opt_i64(1);
  u.reason = static_cast<SuspendReason>(st.i64(2));
  u.failures = static_cast<int>(st.i64(3));
  u.stage = st.str(4);
  u.last_reply = st.str(5);
  u.updated = st.i64(6);
  return u;
}
}  // namespace

std::vector<UpstreamState> Spool::upstream_states() {
  std::vector<UpstreamState> out;
  Stmt st(*this, sql::kUpstreamStates);
  while (st.step()) out.push_back(read_upstream(st));
  return out;
}

std::optional<UpstreamState> Spool::upstream_state(std::string_view name) {
  Stmt st(*this, sql::kUpstreamState);
  st.text(1, name);
  if (!st.step()) return std::nullopt;
  return read_upstream(st);
}

std::vector<LedgerEntry> Spool::quota_ledger(std::string_view upstream, std::int64_t since) {
  Stmt st(*this, "SELECT time, recipients FROM quota_ledger WHERE upstream = ?1 AND time > ?2 ORDER BY time, seq");
  st.text(1, upstream);
  st.i64(2, since);
  std::vector<LedgerEntry> out;
  while (st.step()) out.push_back(LedgerEntry{st.i64(0), static_cast<std::uint32_t>(st.i64(1))});
  return out;
}

std::unordered_map<std::string, Spool::UpstreamLoad> Spool::upstream_loads() {
  std::unordered_map<std::string, UpstreamLoad> out;
  // Walks the unfinished messages (messages_state index), not the finished
  // ones: outboxctl only, never on the daemon's paths.
  Stmt st(*this,
          "SELECT wait_upstream, state = 'active', COUNT(*) FROM messages "
          "WHERE state IN ('queued', 'active', 'deferred') AND wait_upstream != '' GROUP BY 1, 2");
  while (st.step()) {
    auto& l = out[st.str(0)];
    (st.i64(1) ? l.in_flight : l.waiting) += st.i64(2);
  }
  return out;
}

std::optional<Spool::MessageWait> Spool::wait_of(std::string_view id) {
  Stmt st(*this, sql::kWaitOf);
  st.text(1, id);
  if (!st.step()) return std::nullopt;
  return MessageWait{st.str(0), static_cast<WaitReason>(st.i64(1)), st.str(2)};
}

// --- operator log -------------------------------------------------------------------

std::int64_t Spool::log_operator_action(const OperatorAction& a) {
  Stmt st(*this, sql::kLogOperator);
  st.i64(1, a.time ? a.time : now_us()).opt_i64(2, a.uid).text(3, a.action).text(4, a.target).text(5, a.detail).run();
  return sqlite3_last_insert_rowid(db_);
}

void Spool::operator_log(const char* action, std::string_view target, std::string_view detail) {
  if (!operator_) return;
  OperatorAction a;
  a.uid = operator_uid_;
  a.action = action;
  a.target = std::string(target);
  a.detail = std::string(detail);
  log_operator_action(a);
}

std::vector<OperatorAction> Spool::operator_actions_after(std::int64_t seq, int limit) {
  std::vector<OperatorAction> out;
  Stmt st(*this, sql::kOperatorAfter);
  st.i64(1, seq).i64(2, limit);
  while (st.step()) {
    OperatorAction a;
    a.seq = st.i64(0);
    a.time = st.i64(1);
    a.uid = st.opt_i64(2);
    a.action = st.str(3);
    a.target = st.str(4);
    a.detail = st.str(5);
    out.push_back(std::move(a));
  }
  return out;
}

std::int64_t Spool::last_operator_seq() {
  Stmt st(*this, sql::kLastOperatorSeq);
  return st.step() && !st.is_null(0) ? st.i64(0) : 0;
}

Spool::ResumeResult Spool::resume_upstream(std::string_view name, std::int64_t now) {
  Txn txn(*this, true);
  bool changed;
  {
    Stmt st(*this, sql::kResumeUpstream);
    st.text(1, name).i64(2, now).run();
    changed = st.changes() == 1;
  }
  if (!changed) {
    bool known = upstream_state(name).has_value();
    txn.commit();
    return known ? ResumeResult::NotSuspended : ResumeResult::Unknown;
  }
  operator_log("resume", name);
  txn.commit();
  return ResumeResult::Resumed;
}

const std::vector<const char*>& Spool::hot_statements() {
  static const std::vector<const char*> v = {
      sql::kInsertMessage,   sql::kInsertRecipient, sql::kBumpMaxId,       sql::kInsertChunk,
      sql::kFinalizeMessage, sql::kFinalizeRecipients, sql::kDiscard,     sql::kMaxId,
      sql::kGetMessage,      sql::kGetRecipients,   sql::kGetAttempts,     sql::kHold,
      sql::kRelease,         sql::kRemove,          sql::kRetryMessage,    sql::kDueRecipients,
      sql::kAddAttempt,      sql::kFinishedBefore,  sql::kPurgeMessage,    sql::kPurgeBounceKey,
      sql::kListPage,        sql::kUpstreamStates,  sql::kUpstreamState,   sql::kResumeUpstream,
      sql::kWaitOf,          sql::kLogOperator,     sql::kOperatorAfter,   sql::kLastOperatorSeq,
      sql::kOldestWaiting,   sql::kInsertWhole,     sql::kInsertWholeRecipient, sql::kInsertWholeChunk,
  };
  return v;
}

// --- streaming body reads (queue/body_reader.h) ---

Spool::BodyPart Spool::read_body_part(std::string_view id, std::int64_t from_seq, std::size_t max_bytes,
                                      const std::function<void(std::string_view)>& sink) {
  BodyPart part;
  std::size_t given = 0;
  Txn txn(*this, false);
  {
    Stmt st(*this, "SELECT prefix FROM messages WHERE id = ?1 AND state != 'incoming'");
    st.text(1, id);
    if (!st.step()) return part;   // Missing: deleted (or never finalized)
    if (from_seq <= kPrefixSeq) {
      auto prefix = st.bytes(0);
      given += prefix.size();
      if (!prefix.empty()) sink(prefix);
      from_seq = 0;
    }
  }
  part.status = BodyPart::Status::End;
  part.next_seq = from_seq;
  {
    // The primary key (message_id, seq) makes this a range probe, not a scan.
    Stmt st(*this, "SELECT seq, data FROM chunks WHERE message_id = ?1 AND seq >= ?2 ORDER BY seq");
    st.text(1, id).i64(2, from_seq);
    while (st.step()) {
      if (given >= max_bytes) {
        part.status = BodyPart::Status::More;
        part.next_seq = st.i64(0);
        break;
      }
      auto data = st.bytes(1);
      given += data.size();
      sink(data);
      part.next_seq = st.i64(0) + 1;
    }
  }
  txn.commit();
  return part;
}

}  // namespace outbox::queue
