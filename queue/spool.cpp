// Spool's connection: open and its checks, the per-connection setup
// (pragmas, busy handler), the schema and its migrations, the statement
// cache and exec, transactions and savepoints, and the hot_statements()
// catalogue. The rest of Spool is in the other queue/spool_*.cpp files.
#include "queue/spool.h"

#include "queue/spool_internal.h"
#include "queue/wal_batching_vfs.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <thread>
#include <cstring>
#include <filesystem>
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
    // v6: maildrop files imported into the spool (daemon/maildrop_importer.h).
    // Written in the same transaction as the message, so a file found again
    // after a crash between that commit and the file's removal is known as
    // imported and removed, not submitted twice. A row lives from its
    // message's commit until the file is gone.
    R"sql(
CREATE TABLE maildrop_imports(
  file       TEXT PRIMARY KEY,             -- the file's name in the maildrop (TIME.PID.TAG)
  message_id TEXT NOT NULL,
  time       INTEGER NOT NULL              -- µs: committed
) WITHOUT ROWID;
)sql",
    // v7: messages_waiting_since's condition said state IN (three values).
    // SQLite codes a constant IN list of more than two values as an
    // ephemeral b-tree built at every evaluation, and a partial index's
    // condition is evaluated by every INSERT and every state change of a
    // message: a temporary b-tree opened and closed three times per relayed
    // message, 5 % of the store writer's CPU. Two values and an OR are
    // compared in place. Queries that use the index must write its condition
    // the same way (SQLite matches a partial index's condition by its form);
    // they name the index (INDEXED BY), so one that does not fails to prepare.
    R"sql(
DROP INDEX messages_waiting_since;
CREATE INDEX messages_waiting_since ON messages(created) WHERE (state IN ('queued', 'deferred') OR state = 'active');
)sql",
};
constexpr int kMigrationCount = static_cast<int>(std::size(kMigrations));
static_assert(kMigrationCount == Spool::kSchemaVersion, "kSchemaVersion must match the migration list");

bool valid_savepoint_name(const char* name) {
  if (name == nullptr || *name == '\0') return false;
  for (const char* p = name; *p; ++p) {
    char c = *p;
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (p != name && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

}  // namespace

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
      sql::kRecordImport,    sql::kImportedAs,      sql::kForgetImport,
  };
  return v;
}

}  // namespace outbox::queue
