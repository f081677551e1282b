// StoreWorker: the one thread that owns the daemon's write connection to the
// spool. Requests come from the event-loop threads (submission's, the relay's);
// completions go back through an injected Poster (the daemon's uv_async; tests
// run them inline), or through the one a run() request names.
//
// Group commit: the thread drains every pending request, runs them in one
// transaction (each in its own SAVEPOINT, so one failing request does not sink
// the others) and COMMITs once; only then are the completions posted. So a
// session hears "250" only after the commit that holds its message returned
// (synchronous=FULL: it is on disk). A failed COMMIT fails every request of
// that batch, and their incoming messages are discarded; run() work in it
// fails too, and its callers write it again (see run()).
// Checkpoints of the WAL do not run here: a WalCheckpointer copies the WAL on
// its own thread and connection while commits go on, and truncates it when
// the queue is idle (queue/wal_checkpointer.h). This thread only runs a short
// PASSIVE pass of its own, between batches, to reset a WAL that has grown
// past restart_pages once the checkpointer has caught up (or, as a last
// resort, past max_wal_pages).
//
// Maintenance, only while no request is pending and at most about once a
// second: finished messages older than the retention are purged in small
// batches (each its own short transaction) and their pages handed back to
// the file system (incremental_vacuum, bounded).
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "queue/spool.h"
#include "queue/types.h"
#include "queue/wal_checkpointer.h"

namespace outbox::queue {

class StoreWorker {
 public:
  using Poster = std::function<void(std::function<void()>)>;   // run on the owner's thread
  using Done = std::function<void(bool ok, std::string error)>;

  // Opens the spool (throws SpoolError), purges leftover incoming messages.
  StoreWorker(const std::string& path, Poster post, CheckpointOptions checkpoints = {});
  ~StoreWorker();   // stops the thread after finishing the queued requests

  std::string max_id() const { return max_id_; }  // as found at open
  int purged_at_start() const { return purged_; }

  // Any thread (enqueueing is locked); one message's requests from one
  // thread, in order. done may be empty.
  void begin_message(NewMessage m, Done done);
  void append(std::string id, std::int64_t seq, std::string bytes, Done done);
  void commit_message(std::string id, std::string prefix, std::uint64_t size, Done done);
  void abort_message(std::string id);
  // A message whose whole body came with its final dot (at most one chunk,
  // the usual case below 64 KiB): one request, written once as queued
  // (Spool::store_whole) instead of an 'incoming' row begun in one batch and
  // finalized in a later one. done is the commit's: ok means queued and on disk.
  void store_message(NewMessage m, std::string body, std::string prefix, std::uint64_t size, Done done);
  // Any other spool work (a delivery outcome, the mark made before a final
  // dot, an operator's change), in the worker thread, inside the batch
  // transaction in its own SAVEPOINT: work that fails rolls back only
  // itself. A failed COMMIT fails the whole drain, this work included:
  // the relay's callers write it again (OutcomeRecorder) or do not send
  // the dot, so sharing the drain's one fsync loses nothing. (A transaction
  // of its own per drain for relay work doubled the fsyncs and, with the
  // dot mark on every delivery's critical path, cut end-to-end relay
  // throughput to 0.97x of the first design; shared, 1.11x.)
  // `via`, when given, brings done to another thread than the owner's (the
  // relay's own loop); the worker's Poster otherwise.
  void run(std::function<void(Spool&)> work, Done done, Poster via = {});

  std::size_t pending_bytes() const;   // body bytes queued and not yet written

  // How long sent/failed messages stay ([spool] retention); 0: forever. Any thread.
  void set_retention(std::chrono::seconds r);
  // Called through the Poster with the number of messages one maintenance
  // pass purged (> 0), for the `purged messages=N` log line. Set before use.
  void on_purged(std::function<void(int)> fn);
  // Called through the Poster when a background checkpoint starts failing
  // (once per run of failures; not fatal: the WAL stays longer). Set before use.
  void on_checkpoint_error(std::function<void(std::string)> fn);

  struct CheckpointStats {
    WalCheckpointer::Stats background;
    std::uint64_t writer = 0;   // passes the writer thread ran itself (WAL reset, last resort)
  };
  CheckpointStats checkpoint_stats() const;

 private:
  struct Request;
  void loop();
  void run_batch(std::deque<std::unique_ptr<Request>>& batch);
  void execute(Request& r);
  template <typename F> bool in_savepoint(Request& r, F&& fn);
  void discard_after_failed_commit(const std::deque<std::unique_ptr<Request>>& batch);
  void enqueue(std::unique_ptr<Request> r);
  void writer_checkpoint();
  void maintain();
  bool requests_pending() const;
  static int on_wal_commit(void* self, ::sqlite3* db, const char* name, int pages);

  Poster post_;
  std::unique_ptr<Spool> spool_;
  std::string max_id_;
  int purged_ = 0;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Request>> queue_;
  std::size_t pending_bytes_ = 0;
  bool stopping_ = false;
  bool retention_changed_ = false;
  std::function<void(int)> on_purged_;   // guarded by mu_
  std::function<void(std::string)> on_checkpoint_error_;   // guarded by mu_
  CheckpointOptions checkpoint_opts_;
  std::unique_ptr<WalCheckpointer> checkpointer_;   // outlives the thread (its wal_hook calls it)
  std::atomic<std::uint64_t> writer_checkpoints_{0};
  // Worker thread only:
  std::unordered_set<std::string> failed_ids_;   // messages that lost a write: their later requests fail
  std::unordered_map<std::string, std::string> import_keys_;   // begun message -> its maildrop file (NewMessage::import_key)
  int wal_pages_ = 0;                             // WAL size after the last commit (sqlite3_wal_hook)
  std::uint32_t wal_generation_ = 0;              // counts WAL resets (the size went down)
  bool dirty_ = false;                            // committed since the last idle period
  std::chrono::steady_clock::time_point next_maintenance_{};
  std::chrono::steady_clock::time_point last_commit_{};
  bool maintenance_work_ = true;                  // the last maintenance found something to do
  std::atomic<std::int64_t> retention_s_{0};
  std::thread thread_;
};

}  // namespace outbox::queue
