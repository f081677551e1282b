// Spool: the durable message store, one SQLite database in WAL mode with
// synchronous=FULL (a commit has reached the disk when it returns).
//
// Synchronous API over one sqlite3 connection. The daemon uses it only from
// its StoreWorker thread; outboxctl and mailq open their own connection (WAL
// lets them read while the daemon writes; their writes wait on busy_timeout).
// Knows nothing of sockets or SMTP. Schema versions live in PRAGMA
// user_version and are migrated on open (ReadWrite only).
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "queue/types.h"

struct sqlite3;
struct sqlite3_stmt;

namespace outbox::queue {

class SpoolError : public std::runtime_error {
 public:
  SpoolError(const std::string& what, int code) : std::runtime_error(what), code_(code) {}
  int code() const { return code_; }   // SQLite extended result code
 private:
  int code_;
};

class Spool {
 public:
  // Checkpoint: a second read-write connection to an existing spool that only
  // runs checkpoints (queue/wal_checkpointer.h); no migration, no writes.
  enum class Mode { ReadWrite, ReadOnly, Checkpoint };
  // Creates the file (and its parent directory) when missing in ReadWrite mode.
  static std::unique_ptr<Spool> open(const std::string& path, Mode mode = Mode::ReadWrite);
  // How long a statement waits for another connection's lock before it
  // fails with SQLITE_BUSY (default 5 s; outboxctl waits 30 s for outboxd's
  // writer under load). Measured on the clock.
  void set_busy_timeout(std::chrono::milliseconds t) { busy_timeout_ = t; }

  // PRAGMA quick_check (b-tree structure, NOT NULL, UNIQUE; not the
  // foreign keys), stopped when `budget` is spent so a start is never held
  // long by a large spool. outboxd runs it before it opens the spool for
  // writing: a damaged spool stops the start with a clear error instead of
  // a daemon that answers 451 to everything.
  struct Check {
    enum class Result { Ok, Damaged, Unfinished } result = Result::Ok;
    std::vector<std::string> problems;   // at most 10, SQLite's words
  };
  Check quick_check(std::chrono::milliseconds budget);
  ~Spool();
  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;

  // --- transactions (writer) ---
  void begin();                       // BEGIN IMMEDIATE
  void commit();
  void rollback();
  void savepoint(const char* name);
  void release(const char* name);
  void rollback_to(const char* name);

  // --- submission (writer; call inside a transaction) ---
  void create_incoming(const NewMessage& m);
  void append_chunk(std::string_view id, std::int64_t seq, std::string_view bytes);
  // Stores the header prefix, sets size, makes the message and its recipients
  // visible as queued/pending (next attempt: now).
  void finalize(std::string_view id, std::string_view prefix, std::uint64_t size, std::int64_t now);
  // A message whose whole body arrived with its final dot, in one go: the
  // same rows create_incoming + append_chunk + finalize leave, written once
  // (no 'incoming' row updated in a later batch). Empty body: no chunk.
  void store_whole(const NewMessage& m, std::string_view body, std::string_view prefix, std::uint64_t size,
                   std::int64_t now);
  // A maildrop file's import (NewMessage::import_key), in the transaction of
  // its message's commit: throws SpoolError when that file was imported
  // already, so one file never becomes two messages.
  void record_import(std::string_view file, std::string_view id, std::int64_t now);
  // The message a maildrop file became, if its import was committed.
  std::optional<std::string> imported_as(std::string_view file);
  // The file is gone from the maildrop: its record is no longer needed.
  void forget_import(std::string_view file);
  void discard(std::string_view id);  // drop an incoming message and its chunks
  int purge_incoming();               // at start-up: drop every incoming message; returns how many
  std::string max_id();               // largest id ever stored (seed for QueueIdGenerator)
  void checkpoint();                  // PRAGMA wal_checkpoint(PASSIVE), off the commit path
  // The same, with SQLite's counts: frames in the WAL and frames copied into
  // the database (both -1 when busy: another connection was checkpointing).
  struct WalFrames {
    bool busy = false;
    int log = -1;
    int copied = -1;
  };
  WalFrames checkpoint_passive();
  // wal_checkpoint(TRUNCATE) without waiting for readers: false when a reader
  // or writer is in the way (try again later); true when the WAL is now empty.
  bool checkpoint_truncate();

  // --- retention and compaction (writer; joins any open transaction) ---
  // Deletes up to `limit` finished (sent/failed) messages last updated before
  // `before` (µs), oldest first, with their recipients, chunks, attempts and
  // 'bounce:ID' meta key. Walks the messages_finished index only.
  int purge_finished(std::int64_t before, int limit);
  // PRAGMA incremental_vacuum(pages): gives free pages back to the file
  // system. Its own transaction (call outside one). Returns the free pages left.
  std::int64_t incremental_vacuum(int pages);
  std::int64_t freelist_pages();

  // --- reading (any mode) ---
  std::vector<MessageRecord> list(std::optional<std::string> state = std::nullopt);
  std::optional<MessageRecord> get(std::string_view id);   // with history
  // Calls sink for the prefix and then every chunk in order. false: no such message.
  bool read_body(std::string_view id, const std::function<void(std::string_view)>& sink);
  // One bounded piece of a message, for streaming (queue/body_reader.h).
  // from_seq = kPrefixSeq starts with the stored prefix; chunks follow in seq
  // order. Rows are handed to sink while fewer than max_bytes were given, so
  // a piece holds at most max_bytes - 1 + one row. Each call is its own
  // snapshot: finalized chunks never change, and a message deleted meanwhile
  // is reported as Missing rather than cut short.
  static constexpr std::int64_t kPrefixSeq = -1;
  struct BodyPart {
    enum class Status { Missing, More, End } status = Status::Missing;
    std::int64_t next_seq = kPrefixSeq;   // where the next call starts (More)
  };
  BodyPart read_body_part(std::string_view id, std::int64_t from_seq, std::size_t max_bytes,
                          const std::function<void(std::string_view)>& sink);
  QueueStats stats();
  // Queued + active + deferred + held, and nothing else: what a status line
  // needs. One walk of the messages_state index (~70 ms at 1,000,000), where
  // stats() also walks the attempt history (~0.9 s at 1,000,000).
  std::int64_t count_unfinished();
  // created (µs) of the oldest queued, active or deferred message; nullopt
  // when none waits. One index probe whatever the queue's size.
  std::optional<std::int64_t> oldest_waiting();
  // Keyset paging for a streaming `outboxctl queue`: up to `limit` listed
  // messages (with recipients) whose id is greater than after_id, by id. Each
  // call is its own read snapshot, so a page costs the same at any queue size.
  std::vector<MessageRecord> list_page(const std::optional<std::string>& state, std::string_view after_id, int limit);
  // Which listed messages a page or a count takes (the queue query service:
  // an ordinary user's mailq lists only the messages of their uid).
  struct ListFilter {
    std::optional<std::string> state;     // one state
    bool unfinished_only = false;         // queued, active, deferred, held (mailq)
    std::optional<std::int64_t> uid;      // only messages submitted by this uid
  };
  // As list_page, with the filter. A uid filter walks the messages by id
  // (there is no uid index): fine for a query thread, never for the daemon's
  // submission or delivery paths.
  std::vector<MessageRecord> list_page(const ListFilter& filter, std::string_view after_id, int limit);
  // Listed messages matching filter.state / unfinished_only whose uid is not
  // `uid` (no uid counts as another's).
  std::int64_t count_not_of_uid(const ListFilter& filter, std::int64_t uid);
  // The persisted upstream rows (suspensions), by name.
  std::vector<UpstreamState> upstream_states();
  std::optional<UpstreamState> upstream_state(std::string_view name);
  struct UpstreamLoad {
    std::int64_t in_flight = 0;   // state 'active' with this wait_upstream
    std::int64_t waiting = 0;     // queued/deferred with this wait_upstream
  };
  // By upstream name; counts over the unfinished messages only.
  std::unordered_map<std::string, UpstreamLoad> upstream_loads();
  // The quota ledger of one upstream since `since` (µs), oldest first
  // (outboxctl upstreams: usage against each limit).
  std::vector<LedgerEntry> quota_ledger(std::string_view upstream, std::int64_t since);
  struct MessageWait {
    std::string state;
    WaitReason reason = WaitReason::None;
    std::string upstream;
  };
  std::optional<MessageWait> wait_of(std::string_view id);
  // Operator log (the daemon polls it: rowid probes only).
  std::vector<OperatorAction> operator_actions_after(std::int64_t seq, int limit);
  std::int64_t last_operator_seq();   // 0 when the log is empty

  // --- operator control (each its own transaction) ---
  // Return false when the id does not exist (or is incoming) or the change does not apply.
  bool hold(std::string_view id);     // queued|deferred -> held
  bool release(std::string_view id);  // held -> queued|deferred (as before), due now
  bool remove(std::string_view id);   // any listed state
  bool retry(std::string_view id, std::int64_t now);  // queued|deferred: next attempt = now
  int retry_all(std::int64_t now);    // every queued|deferred message; returns how many
  enum class ResumeResult { Resumed, NotSuspended, Unknown };
  // Clears an upstream's suspension (suspended_until NULL, failures 0, reason
  // None). Unknown: no row for that name.
  ResumeResult resume_upstream(std::string_view name, std::int64_t now);
  // Set by outboxctl (getuid()): from then on hold/release/remove/retry/
  // retry_all/resume_upstream also write an operator_log row, in the same
  // transaction as their change, when they change something.
  void set_operator(std::optional<std::int64_t> uid) { operator_ = true, operator_uid_ = uid; }
  // Joins any open transaction. Returns the row's seq.
  std::int64_t log_operator_action(const OperatorAction& a);

  // --- delivery history (writer; the relay engine; joins any open transaction) ---
  void add_attempt(std::string_view id, const AttemptRecord& a);

  static constexpr int kSchemaVersion = 7;   // PRAGMA user_version after migration
  int schema_version();
  Mode mode() const { return mode_; }
  const std::string& path() const { return path_; }

  sqlite3* handle() { return db_; }   // for tests and the relay engine's own statements

  // Every statement that runs at submission, delivery or operator rate (the
  // literals themselves), for the test that checks their query plans never
  // scan a table whose size grows with the queue.
  static const std::vector<const char*>& hot_statements();

  // A prepared statement from this connection's cache, for the other
  // classes of queue/ (DeliveryStore). `sql` must be a string literal: the
  // cache is keyed by its address. The caller resets it after use.
  sqlite3_stmt* statement(const char* sql) { return prepare(sql); }

 private:
  explicit Spool(sqlite3* db);
  class Stmt;
  class Txn;
  friend class Stmt;
  friend class Txn;
  sqlite3_stmt* prepare(const char* sql);   // cached per connection
  void load_recipients(MessageRecord& m);   // its recipients, in the caller's transaction
  void exec(const char* sql);
  void exec_cached(const std::string& sql);
  [[noreturn]] void fail(const std::string& what);
  void configure();
  void install_busy_handler();
  std::chrono::milliseconds busy_timeout_{5000};   // outboxctl's changes wait this long for the daemon's batch
  void compact_legacy();
  void operator_log(const char* action, std::string_view target, std::string_view detail = {});
  void migrate();
  sqlite3* db_ = nullptr;
  Mode mode_ = Mode::ReadWrite;
  std::string path_;
  std::unordered_map<const char*, sqlite3_stmt*> stmts_;   // keyed by the SQL literal
  std::unordered_map<std::string, sqlite3_stmt*> control_;  // BEGIN, COMMIT, SAVEPOINT x ...
  bool operator_ = false;
  std::optional<std::int64_t> operator_uid_;
};

}  // namespace outbox::queue
