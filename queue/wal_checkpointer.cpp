#include "queue/wal_checkpointer.h"

#include "queue/thread_role.h"

#include <algorithm>
#include <exception>
#include <utility>

namespace outbox::queue {

namespace {
// After a busy pass (the writer's own pass held the checkpoint lock), look
// again this soon; after a failure, only after a full idle period.
constexpr auto kBusyRetry = std::chrono::milliseconds(10);
}  // namespace

WalCheckpointer::WalCheckpointer(const std::string& path, CheckpointOptions opts, Report report)
    : opts_(std::move(opts)), report_(std::move(report)) {
  spool_ = Spool::open(path, Spool::Mode::Checkpoint);
  thread_ = std::thread([this] {
    set_thread_role("checkpoint", ThreadRole::Background);
    loop();
  });
}

WalCheckpointer::~WalCheckpointer() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void WalCheckpointer::committed(int wal_pages, std::uint32_t generation) {
  bool wake = false;
  {
    std::lock_guard lk(mu_);
    if (generation != generation_) attempted_at_ = 0;   // the writer reset the WAL
    wal_pages_ = wal_pages;
    generation_ = generation;
    last_commit_ = std::chrono::steady_clock::now();
    // The idle deadline is only armed by the first commit after a TRUNCATE;
    // later commits move it, and the thread finds that when it wakes.
    wake = !dirty_ || wal_pages_ - attempted_at_ >= opts_.passive_every_pages;
    dirty_ = true;
  }
  if (wake) cv_.notify_one();
}

int WalCheckpointer::copied(std::uint32_t generation) const {
  auto v = copied_.load(std::memory_order_acquire);
  if (static_cast<std::uint32_t>(v >> 32) != generation) return 0;
  return static_cast<int>(v & 0xffffffffu);
}

WalCheckpointer::Stats WalCheckpointer::stats() const {
  return Stats{passive_.load(), truncated_.load(), failed_.load()};
}

void WalCheckpointer::loop() {
  using clock = std::chrono::steady_clock;
  std::unique_lock lk(mu_);
  while (!stopping_) {
    auto now = clock::now();
    bool retry_ok = now >= retry_after_;
    bool grown = wal_pages_ - attempted_at_ >= opts_.passive_every_pages;
    bool idle = dirty_ && now - last_commit_ >= opts_.idle;
    if (retry_ok && (grown || idle)) {
      std::uint32_t gen = generation_;
      if (grown) attempted_at_ = wal_pages_;
      if (idle) dirty_ = false;   // a commit during the pass sets it again
      lk.unlock();
      bool ok = pass(idle, gen);
      lk.lock();
      if (!ok) {
        if (idle) dirty_ = true;  // not emptied: the next idle period tries again
        if (idle) last_commit_ = clock::now();
        retry_after_ = clock::now() + (failing_ ? std::max<clock::duration>(opts_.idle, kBusyRetry) : kBusyRetry);
      }
      continue;
    }
    auto deadline = clock::time_point::max();
    if (dirty_) deadline = std::max(last_commit_ + opts_.idle, retry_after_);
    if (grown) deadline = std::min(deadline, retry_after_);
    if (deadline == clock::time_point::max())
      cv_.wait(lk);
    else
      cv_.wait_until(lk, deadline);
  }
}

bool WalCheckpointer::pass(bool idle, std::uint32_t generation) {
  try {
    if (opts_.fault) opts_.fault();
    auto f = spool_->checkpoint_passive();
    if (f.busy) return false;   // the writer's own pass: it copies what this one would have
    copied_.store(static_cast<std::uint64_t>(generation) << 32 | static_cast<std::uint32_t>(std::max(f.copied, 0)),
                  std::memory_order_release);
    passive_++;
    // Everything is copied now (or a reader still needs old frames): with
    // no writer in the way, cut the file back to nothing. Without a busy
    // handler, so it never holds a writer up: busy means try again later.
    if (idle) {
      if (!spool_->checkpoint_truncate()) return false;
      truncated_++;
    }
    failing_ = false;
    return true;
  } catch (const std::exception& e) {
    failed_++;
    // Report once per run of failures, not every retry.
    if (!failing_ && report_) {
      try {
        report_(e.what());
      } catch (...) {
      }
    }
    failing_ = true;
    return false;
  }
}

}  // namespace outbox::queue
