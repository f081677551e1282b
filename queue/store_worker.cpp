#include "queue/store_worker.h"

#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <exception>
#include <utility>

#include "queue/thread_role.h"

namespace outbox::queue {

namespace {

// After this long without a request following a commit, maintenance looks
// again (commits may have freed pages). Checkpoints: queue/wal_checkpointer.h.
constexpr auto kIdleAfterCommit = std::chrono::milliseconds(500);
// Idle maintenance (retention, vacuum) at most this often...
constexpr auto kMaintenanceEvery = std::chrono::seconds(1);
// ...each step a short transaction, so a submission arriving meanwhile waits
// for one batch at most (a few ms), and the whole pass stops at this budget.
constexpr int kPurgeBatch = 100;
constexpr int kVacuumPages = 1024;   // 4 MiB of 4 KiB pages per step
constexpr auto kMaintenanceBudget = std::chrono::milliseconds(200);

std::int64_t now_us() {
  using namespace std::chrono;
  return duration_cast<microseconds>(system_clock::now().time_since_epoch()).count();
}

}  // namespace

struct StoreWorker::Request {
  enum class Kind { Begin, Append, Commit, Abort, Run, Whole };
  Kind kind;
  std::string id;
  NewMessage message;                    // Begin, Whole
  std::int64_t seq = 0;                  // Append
  std::string bytes;                     // Append, Whole: body bytes; Commit: header prefix
  std::string prefix;                    // Whole: header prefix
  std::uint64_t size = 0;                // Commit, Whole
  std::function<void(Spool&)> work;      // Run
  Done done;
  Poster via;                            // Run: where done runs, if not through post_
  bool ok = false;
  std::string error;

  explicit Request(Kind k) : kind(k) {}
};

StoreWorker::StoreWorker(const std::string& path, Poster post, CheckpointOptions checkpoints)
    : post_(std::move(post)), checkpoint_opts_(std::move(checkpoints)) {
  spool_ = Spool::open(path, Spool::Mode::ReadWrite);
  // Incoming messages never got their 250: the client will send them again.
  spool_->begin();
  try {
    purged_ = spool_->purge_incoming();
    spool_->commit();
  } catch (...) {
    spool_->rollback();
    throw;
  }
  max_id_ = spool_->max_id();
  checkpointer_ = std::make_unique<WalCheckpointer>(path, checkpoint_opts_, [this](const std::string& error) {
    std::function<void(std::string)> fn;
    {
      std::lock_guard lk(mu_);
      fn = on_checkpoint_error_;
    }
    if (!fn) return;
    auto call = [fn = std::move(fn), error] { fn(error); };
    if (post_)
      post_(call);
    else
      call();
  });
  // Our hook replaces SQLite's auto-checkpoint, which would otherwise run
  // inside the COMMIT of whichever batch crossed the threshold; it only tells
  // the checkpointer how large the WAL is.
  sqlite3_wal_hook(spool_->handle(), &StoreWorker::on_wal_commit, this);
  thread_ = std::thread([this] {
    set_thread_role("store", ThreadRole::Latency);
    loop();
  });
}

StoreWorker::~StoreWorker() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  checkpointer_.reset();   // before the writer's connection closes (the last close checkpoints)
}

int StoreWorker::on_wal_commit(void* self, ::sqlite3*, const char*, int pages) {
  auto* w = static_cast<StoreWorker*>(self);
  if (pages < w->wal_pages_) ++w->wal_generation_;   // reset (by us, or the idle TRUNCATE)
  w->wal_pages_ = pages;
  w->dirty_ = true;
  w->last_commit_ = std::chrono::steady_clock::now();
  if (w->checkpointer_) w->checkpointer_->committed(pages, w->wal_generation_);
  return SQLITE_OK;
}

void StoreWorker::on_checkpoint_error(std::function<void(std::string)> fn) {
  std::lock_guard lk(mu_);
  on_checkpoint_error_ = std::move(fn);
}

StoreWorker::CheckpointStats StoreWorker::checkpoint_stats() const {
  return CheckpointStats{checkpointer_->stats(), writer_checkpoints_.load()};
}

// --- submission (any thread; one message's requests from one thread, in order) ---

void StoreWorker::enqueue(std::unique_ptr<Request> r) {
  {
    std::lock_guard lk(mu_);
    if (r->kind == Request::Kind::Append || r->kind == Request::Kind::Whole) pending_bytes_ += r->bytes.size();
    queue_.push_back(std::move(r));
  }
  cv_.notify_one();
}

void StoreWorker::begin_message(NewMessage m, Done done) {
  auto r = std::make_unique<Request>(Request::Kind::Begin);
  r->id = m.id;
  r->message = std::move(m);
  r->done = std::move(done);
  enqueue(std::move(r));
}

void StoreWorker::append(std::string id, std::int64_t seq, std::string bytes, Done done) {
  auto r = std::make_unique<Request>(Request::Kind::Append);
  r->id = std::move(id);
  r->seq = seq;
  r->bytes = std::move(bytes);
  r->done = std::move(done);
  enqueue(std::move(r));
}

void StoreWorker::commit_message(std::string id, std::string prefix, std::uint64_t size, Done done) {
  auto r = std::make_unique<Request>(Request::Kind::Commit);
  r->id = std::move(id);
  r->bytes = std::move(prefix);
  r->size = size;
  r->done = std::move(done);
  enqueue(std::move(r));
}

void StoreWorker::abort_message(std::string id) {
  auto r = std::make_unique<Request>(Request::Kind::Abort);
  r->id = std::move(id);
  enqueue(std::move(r));
}

void StoreWorker::store_message(NewMessage m, std::string body, std::string prefix, std::uint64_t size, Done done) {
  auto r = std::make_unique<Request>(Request::Kind::Whole);
  r->id = m.id;
  r->message = std::move(m);
  r->bytes = std::move(body);
  r->prefix = std::move(prefix);
  r->size = size;
  r->done = std::move(done);
  enqueue(std::move(r));
}

void StoreWorker::run(std::function<void(Spool&)> work, Done done, Poster via) {
  auto r = std::make_unique<Request>(Request::Kind::Run);
  r->work = std::move(work);
  r->done = std::move(done);
  r->via = std::move(via);
  enqueue(std::move(r));
}

void StoreWorker::set_retention(std::chrono::seconds r) {
  {
    std::lock_guard lk(mu_);
    retention_s_.store(r.count());
    retention_changed_ = true;   // an idle worker waits without a deadline: wake it
  }
  cv_.notify_all();
}

void StoreWorker::on_purged(std::function<void(int)> fn) {
  std::lock_guard lk(mu_);
  on_purged_ = std::move(fn);
}

std::size_t StoreWorker::pending_bytes() const {
  std::lock_guard lk(mu_);
  return pending_bytes_;
}

// --- the worker thread ---------------------------------------------------------------

void StoreWorker::loop() {
  std::deque<std::unique_ptr<Request>> batch;
  for (;;) {
    {
      std::unique_lock lk(mu_);
      auto ready = [this] { return stopping_ || !queue_.empty() || retention_changed_; };
      if (queue_.empty() && !stopping_) {
        retention_changed_ = false;
        using clock = std::chrono::steady_clock;
        auto now = clock::now();
        // Maintenance is polled while retention is on (finished messages age
        // into purgeable ones without any commit) or while it has work left.
        bool maintenance_on = retention_s_.load() > 0 || maintenance_work_;
        if (dirty_ && now - last_commit_ >= kIdleAfterCommit) {
          // The checkpointer truncates the WAL now; commits may have freed
          // pages: maintenance looks once more.
          dirty_ = false;
          maintenance_work_ = true;
          continue;
        }
        if (maintenance_on && now >= next_maintenance_) {
          lk.unlock();
          maintain();
          continue;
        }
        auto deadline = clock::time_point::max();
        if (dirty_) deadline = last_commit_ + kIdleAfterCommit;
        if (maintenance_on) deadline = std::min(deadline, next_maintenance_);
        if (deadline == clock::time_point::max())
          cv_.wait(lk, ready);
        else
          cv_.wait_until(lk, deadline, ready);
        if (queue_.empty() && !stopping_) continue;   // a deadline or a new retention: look again
      }
      if (queue_.empty()) break;   // stopping, and every request is done
      batch.swap(queue_);          // take everything: one transaction, one fsync
    }
    run_batch(batch);
    batch.clear();
    if (wal_pages_ >= checkpoint_opts_.restart_pages) {
      int left = wal_pages_ - checkpointer_->copied(wal_generation_);
      if (left <= checkpoint_opts_.writer_catch_up_pages || wal_pages_ >= checkpoint_opts_.max_wal_pages)
        writer_checkpoint();
    }
  }
}

bool StoreWorker::requests_pending() const {
  std::lock_guard lk(mu_);
  return !queue_.empty() || stopping_;
}

// Runs between batches only; yields as soon as a request arrives.
void StoreWorker::maintain() {
  using clock = std::chrono::steady_clock;
  auto start = clock::now();
  next_maintenance_ = start + kMaintenanceEvery;
  bool did = false;
  int purged = 0;
  try {
    auto retention = retention_s_.load();
    if (retention > 0) {
      std::int64_t before = now_us() - retention * 1'000'000;
      for (;;) {
        int n = spool_->purge_finished(before, kPurgeBatch);   // its own transaction
        purged += n;
        did = did || n > 0;
        if (n < kPurgeBatch || requests_pending() || clock::now() - start >= kMaintenanceBudget) break;
      }
    }
    while (!requests_pending() && clock::now() - start < kMaintenanceBudget) {
      if (spool_->freelist_pages() == 0) break;
      spool_->incremental_vacuum(kVacuumPages);
      did = true;
    }
  } catch (const SpoolError&) {
    // Not fatal: the next pass tries again (a full disk, a reader's lock).
    try {
      spool_->rollback();
    } catch (const SpoolError&) {
    }
  }
  // While there is work left, come back at the next tick; otherwise only when
  // retention needs it (it is polled) or a commit made the WAL dirty.
  maintenance_work_ = did;
  if (purged > 0) {
    std::function<void(int)> fn;
    {
      std::lock_guard lk(mu_);
      fn = on_purged_;
    }
    if (!fn) return;
    auto call = [fn = std::move(fn), purged] { fn(purged); };
    if (post_)
      post_(call);
    else
      call();
  }
}

// Between batches, when the WAL is large: copy what the checkpointer has not
// (a few hundred frames once it has caught up), so that the next transaction
// finds every frame copied and starts the WAL again from its beginning.
void StoreWorker::writer_checkpoint() {
  try {
    if (!spool_->checkpoint_passive().busy) writer_checkpoints_++;
  } catch (const SpoolError&) {
    // Not fatal: the WAL stays longer; after the next batch it tries again.
  }
}

template <typename F>
bool StoreWorker::in_savepoint(Request& r, F&& fn) {
  spool_->savepoint("req");
  try {
    fn();
    spool_->release("req");
    r.ok = true;
    return true;
  } catch (const std::exception& e) {
    r.error = e.what();
  } catch (...) {
    r.error = "unknown error";
  }
  r.ok = false;
  // SQLITE_FULL, IOERR, NOMEM and the like may roll back the whole
  // transaction, and with it the requests before this one: the batch is lost.
  if (sqlite3_get_autocommit(spool_->handle()))
    throw SpoolError("transaction rolled back: " + r.error, sqlite3_extended_errcode(spool_->handle()));
  spool_->rollback_to("req");
  spool_->release("req");
  return false;
}

void StoreWorker::execute(Request& r) {
  using K = Request::Kind;
  switch (r.kind) {
    case K::Begin:
      if (in_savepoint(r, [&] { spool_->create_incoming(r.message); })) {
        failed_ids_.erase(r.id);
        if (!r.message.import_key.empty()) import_keys_[r.id] = r.message.import_key;
      } else {
        failed_ids_.insert(r.id);
      }
      break;
    case K::Append:
      if (failed_ids_.count(r.id)) {
        r.error = "message " + r.id + " is incomplete: an earlier write failed";
      } else if (!in_savepoint(r, [&] { spool_->append_chunk(r.id, r.seq, r.bytes); })) {
        failed_ids_.insert(r.id);
      }
      break;
    case K::Commit: {
      std::string import_key;
      if (auto it = import_keys_.find(r.id); it != import_keys_.end()) {
        import_key = std::move(it->second);
        import_keys_.erase(it);
      }
      bool finalized = false;
      if (failed_ids_.erase(r.id)) {
        r.error = "message " + r.id + " is incomplete: an earlier write failed";
      } else {
        finalized = in_savepoint(r, [&] {
          const std::int64_t now = now_us();
          spool_->finalize(r.id, r.bytes, r.size, now);
          // The same savepoint: the message and its file's record are one.
          if (!import_key.empty()) spool_->record_import(import_key, r.id, now);
        });
      }
      if (!finalized) {
        // Never leave a message that will not be finalized (a hole in it, or
        // a refused finalize): drop what did get written.
        Request cleanup(K::Abort);
        in_savepoint(cleanup, [&] { spool_->discard(r.id); });
      }
      break;
    }
    case K::Abort:
      failed_ids_.erase(r.id);
      import_keys_.erase(r.id);
      in_savepoint(r, [&] { spool_->discard(r.id); });
      break;
    case K::Run:
      in_savepoint(r, [&] { r.work(*spool_); });
      break;
    case K::Whole:
      in_savepoint(r, [&] {
        const std::int64_t now = now_us();
        spool_->store_whole(r.message, r.bytes, r.prefix, r.size, now);
        if (!r.message.import_key.empty()) spool_->record_import(r.message.import_key, r.id, now);
      });
      break;
  }
}

void StoreWorker::run_batch(std::deque<std::unique_ptr<Request>>& batch) {
  bool committed = false;
  std::string batch_error;
  try {
    spool_->begin();
    for (auto& r : batch) execute(*r);
    spool_->commit();
    committed = true;
  } catch (const std::exception& e) {
    batch_error = e.what();
  }
  if (!committed) {
    try {
      spool_->rollback();   // a failed COMMIT can leave the transaction open
    } catch (const std::exception&) {
    }
    for (auto& r : batch) {
      r->ok = false;
      r->error = "spool commit failed: " + batch_error;
    }
    discard_after_failed_commit(batch);
  }

  std::size_t written = 0;
  for (auto& r : batch)
    if (r->kind == Request::Kind::Append || r->kind == Request::Kind::Whole) written += r->bytes.size();
  {
    std::lock_guard lk(mu_);
    pending_bytes_ -= written;
  }

  // Only now, after COMMIT returned (synchronous=FULL: on disk), may anyone
  // hear about the outcome; a session says 250 on this.
  for (auto& r : batch) {
    if (!r->done) continue;
    auto fn = [done = std::move(r->done), ok = r->ok, err = std::move(r->error)]() mutable {
      done(ok, std::move(err));
    };
    if (r->via)
      r->via(std::move(fn));
    else if (post_)
      post_(std::move(fn));
    else
      fn();
  }
}

void StoreWorker::discard_after_failed_commit(const std::deque<std::unique_ptr<Request>>& batch) {
  // The rollback removed this batch's writes, but messages begun in earlier
  // batches may still hold chunks; none of them may ever be finalized.
  std::unordered_set<std::string> ids;
  for (const auto& r : batch) {
    switch (r->kind) {
      case Request::Kind::Begin:
      case Request::Kind::Append:
        ids.insert(r->id);
        failed_ids_.insert(r->id);   // later appends and the commit must fail
        break;
      case Request::Kind::Commit:
      case Request::Kind::Abort:
        ids.insert(r->id);
        failed_ids_.erase(r->id);    // the message's life ended in this batch
        break;
      case Request::Kind::Run:
      case Request::Kind::Whole:   // one statement group: the rollback took all of it
        break;
    }
  }
  if (ids.empty()) return;
  try {
    spool_->begin();
    for (const auto& id : ids) spool_->discard(id);
    spool_->commit();
  } catch (const std::exception&) {
    // Left as 'incoming': never listed, never relayed, purged at next start.
    try {
      spool_->rollback();
    } catch (const std::exception&) {
    }
  }
}

}  // namespace outbox::queue
