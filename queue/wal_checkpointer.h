// WalCheckpointer: copies the spool's WAL into the database on a thread and
// SQLite connection of its own, so that the StoreWorker's writer thread, whose
// group commits are what every 250 waits for, does not (issue 13: a 25-80 ms
// checkpoint inside the writer stalled every in-flight session at once).
//
// In WAL mode a PASSIVE checkpoint on another connection runs beside the
// writer: it takes no write lock, never waits, and copies only frames that
// are already committed (and fsynced by their COMMIT, synchronous=FULL).
// Durability does not depend on it at all: a commit is on disk when its
// COMMIT returns, checkpointed or not.
//
//   * growth: the writer's wal_hook calls committed(); once the WAL has
//     grown by passive_every_pages frames since the last pass, a PASSIVE pass;
//   * idle: no commit for `idle`: PASSIVE, then TRUNCATE without waiting
//     (a writer or reader in the way: try again after the next idle period).
//
// A PASSIVE checkpoint cannot reset the WAL to its start; only the writer can,
// at the beginning of a transaction that finds every frame copied. Under a
// load that never pauses that moment does not come by itself, so the writer
// makes it (StoreWorker): above restart_pages, once this thread has copied all
// but writer_catch_up_pages frames, it runs one short PASSIVE pass itself
// (what is left: a few hundred frames, not thousands), and above
// max_wal_pages it does so in any case (the last resort if this thread falls
// behind or keeps failing).
//
// Failures are reported (report callback, on this thread), never fatal: the
// WAL just stays longer until a later pass succeeds.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "queue/spool.h"

namespace outbox::queue {

struct CheckpointOptions {
  int passive_every_pages = 1024;          // background PASSIVE per this many new frames (4 KiB pages: 4 MiB)
  std::chrono::milliseconds idle{500};      // background TRUNCATE after no commit for this long
  int restart_pages = 8192;                // above this (32 MiB) the writer resets the WAL once caught up...
  int writer_catch_up_pages = 256;         // ...i.e. at most this many frames left to copy
  int max_wal_pages = 16384;               // last resort (64 MiB = journal_size_limit): the writer checkpoints anyway
  std::function<void()> fault;             // tests: run before each background pass; may throw SpoolError
};

class WalCheckpointer {
 public:
  using Report = std::function<void(const std::string& error)>;   // called on the checkpointer's thread

  // Opens its own connection to the (existing) spool; throws SpoolError.
  WalCheckpointer(const std::string& path, CheckpointOptions opts, Report report);
  ~WalCheckpointer();   // wakes and joins the thread; a pass under way finishes first
  WalCheckpointer(const WalCheckpointer&) = delete;
  WalCheckpointer& operator=(const WalCheckpointer&) = delete;

  // After each commit of the writer (from its wal_hook): the WAL now holds
  // `wal_pages` frames; `generation` counts the writer's WAL resets. Takes a
  // mutex for a few instructions; never waits for a checkpoint.
  void committed(int wal_pages, std::uint32_t generation);

  // Frames of WAL generation `generation` that a finished pass found copied
  // into the database (0 when the last pass was of an older generation).
  int copied(std::uint32_t generation) const;

  struct Stats {
    std::uint64_t passive = 0;     // background PASSIVE passes that ran
    std::uint64_t truncated = 0;   // idle TRUNCATEs that emptied the WAL
    std::uint64_t failed = 0;      // passes that failed (reported)
  };
  Stats stats() const;

 private:
  void loop();
  // false: failed (reported) or busy.
  bool pass(bool idle, std::uint32_t generation);

  CheckpointOptions opts_;
  Report report_;
  std::unique_ptr<Spool> spool_;   // the checkpointer's thread only (after construction)
  mutable std::mutex mu_;
  std::condition_variable cv_;
  // Guarded by mu_:
  bool stopping_ = false;
  bool dirty_ = false;                       // a commit since the last successful TRUNCATE
  int wal_pages_ = 0;
  std::uint32_t generation_ = 0;
  int attempted_at_ = 0;                     // wal_pages_ when the last growth pass started
  std::chrono::steady_clock::time_point last_commit_{};
  std::chrono::steady_clock::time_point retry_after_{};
  bool failing_ = false;                     // reported a failure, no success since
  // Lock-free, read by the writer:
  std::atomic<std::uint64_t> copied_{0};     // generation << 32 | frames copied
  std::atomic<std::uint64_t> passive_{0}, truncated_{0}, failed_{0};
  std::thread thread_;
};

}  // namespace outbox::queue
