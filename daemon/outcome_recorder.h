// OutcomeRecorder: the one way a delivery outcome reaches the spool.
//
// Every outcome (DeliveryStore::apply plus the DSN it may make) is written in
// its own SAVEPOINT of the writer's group commit (StoreWorker::run). When the
// write fails (its own statements, or the drain's COMMIT: disk full,
// SQLITE_BUSY past the busy timeout, any SpoolError) the outcome is kept here, in memory, and
// written again on a backoff (100 ms doubling to 30 s): never dropped while
// the daemon runs. Until it is on disk the caller keeps the message "in
// flight", so nothing claims or recovers it meanwhile; if the process dies
// first, the spool still says active (and 'uncertain' where the final dot
// went out), which recovery at the next start handles.
//
// No libuv, no clock of its own: the store, the retry timer and the clock are
// injected (the relay passes StoreWorker::run, a uv timer and the wall
// clock; the unit tests a real StoreWorker and a fake clock). Owner's thread
// only.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "queue/spool.h"

namespace outbox::daemon {

// When a failed outcome is tried again (a namespace-level type: GCC cannot
// default a member of a nested type in its enclosing class's default argument).
struct RecorderBackoff {
  std::int64_t initial = 100'000;     // µs after the first failure
  std::int64_t max = 30'000'000;      // the doubling stops here
};

class OutcomeRecorder {
 public:
  using Work = std::function<void(queue::Spool&)>;
  using Done = std::function<void(bool ok, std::string error)>;
  // Runs work in a transaction of its own on the spool's writer; done comes
  // back on the owner's thread.
  using Store = std::function<void(Work, Done)>;
  // Arms the one retry timer: on_timer() is to be called at or after `at`
  // (µs since the epoch). A later call replaces the earlier one.
  using ArmTimer = std::function<void(std::int64_t at)>;
  using Clock = std::function<std::int64_t()>;   // µs since the epoch

  struct Event {
    enum class Kind {
      WriteFailed,    // the first failure of one outcome's streak (logged once per streak)
      RecordedLate,   // an outcome that had failed is on disk now
    };
    Kind kind = Kind::WriteFailed;
    std::string id;
    std::string error;           // WriteFailed: what the spool said
    std::int64_t retry_in = 0;   // WriteFailed: µs until the next try
    int tries = 0;               // RecordedLate: writes it took, the last one included
    std::int64_t late_by = 0;    // RecordedLate: µs since its first failure
  };
  using Observer = std::function<void(const Event&)>;

  using Backoff = RecorderBackoff;
  // Delay before try failures+1 (failures >= 1): initial * 2^(failures-1), at most max.
  static std::int64_t delay_after(const Backoff& b, int failures);

  OutcomeRecorder(Store store, ArmTimer arm, Clock clock, Observer observe, Backoff backoff = {});
  ~OutcomeRecorder();
  OutcomeRecorder(const OutcomeRecorder&) = delete;
  OutcomeRecorder& operator=(const OutcomeRecorder&) = delete;

  // Writes one message's outcome now; on_recorded runs once it is committed
  // (after retries if need be), exactly once, unless abandon() came first.
  void record(std::string id, Work work, std::function<void()> on_recorded);
  // The timer armed through ArmTimer fired: retries what is due.
  void on_timer();
  // The daemon is going down for good (grace period over): forget what is
  // not written. Returns those message ids; the spool still has them active.
  std::vector<std::string> abandon();

  std::size_t pending() const { return entries_.size(); }   // not yet on disk
  bool holds(const std::string& id) const;                   // an outcome of this message is not yet on disk
  std::optional<std::int64_t> next_retry() const { return armed_at_; }

 private:
  struct Entry {
    std::string id;
    Work work;
    std::function<void()> on_recorded;
    int tries = 0;
    int failures = 0;              // in the current streak
    std::int64_t first_failed = 0;
    std::int64_t next_at = 0;
    bool writing = false;
  };
  void write(std::uint64_t key);
  void written(std::uint64_t key, bool ok, std::string error);
  void rearm();

  Store store_;
  ArmTimer arm_;
  Clock clock_;
  Observer observe_;
  Backoff backoff_;
  std::map<std::uint64_t, Entry> entries_;   // in the order recorded
  std::uint64_t next_key_ = 0;
  std::optional<std::int64_t> armed_at_;
  // Completions that arrive after this recorder is gone do nothing.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace outbox::daemon
