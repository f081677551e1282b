// Spool's upkeep of the file: WAL checkpoints (passive and truncate),
// retention (purge_finished) and compaction (incremental_vacuum).
#include "queue/spool.h"

#include "queue/spool_internal.h"

namespace outbox::queue {

// --- checkpoints ---------------------------------------------------------------------

void Spool::checkpoint() { checkpoint_passive(); }

Spool::WalFrames Spool::checkpoint_passive() {
  WalFrames f;
  int rc = sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_PASSIVE, &f.log, &f.copied);
  // BUSY: another connection is checkpointing; PASSIVE never waits for it.
  if (rc == SQLITE_BUSY) return WalFrames{true, -1, -1};
  if (rc != SQLITE_OK) fail("wal_checkpoint(PASSIVE)");
  return f;
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

}  // namespace outbox::queue
