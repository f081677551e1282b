// A VFS shim for the spool's writer: the write-ahead log's appends of one
// commit reach the kernel as a few writes instead of two per page.
//
// SQLite writes every WAL frame as two pwrite calls (the 24-octet frame
// header, then the page), so a group commit of 14 messages is about 250
// system calls before its fsync, and on this project's machines system calls
// are most of the daemon's CPU (docs/performance.md, "round four"). The shim
// keeps contiguous appends to a file opened as a WAL (SQLITE_OPEN_WAL) in a
// buffer of 124 KiB (the most the default VFS writes in one call) and writes
// them before anything that could observe the file: xSync (every commit:
// synchronous=FULL), xRead (a frame read back within the transaction: a
// cache spill, a checksum rewrite), xFileSize, xTruncate, xFileControl,
// xClose, and any write that is not the next append. Nothing SQLite relies
// on changes: frames only count once the commit's xSync has returned (the
// shim writes before it syncs), and other connections only read frames up
// to the last commit, which the wal-index announces after that sync. A write
// error is returned by the call that writes the buffer (xSync for a commit),
// so the commit fails and its requests get no 250, as without the shim.
//
// Every other file (the database, its -shm, journals) and every other
// method goes straight to the default VFS, but for the checkpointer's
// database file (checkpoint_batching_vfs below).
#pragma once
#include <cstdint>

namespace outbox::queue {

// The registered VFS's name (registered once, on the first call; thread-safe),
// for sqlite3_open_v2. nullptr when SQLite has no default VFS to wrap.
const char* wal_batching_vfs();
// The same for the checkpointer's connection, which also batches its writes
// to the main database file: a checkpoint copies pages in ascending page
// order, so the pages of a large body (consecutive overflow pages) go in one
// write instead of one each. Safe for the same reason: the checkpoint syncs
// the database (synchronous=FULL) before it records, in the wal-index, how
// far it got, and only then may a reader use those pages from the file.
// Never for a connection that commits: its database writes are not ordered
// so (rollback journals), and the spool's writer never writes the database
// file in WAL mode anyway.
const char* checkpoint_batching_vfs();

// Counters since the process started, over every file the shim opened: how
// many xWrite calls SQLite made on the files it batches, and how many
// writes reached the default VFS for them. For tests and benchmarks.
struct WalBatchingStats {
  std::uint64_t writes_in = 0;
  std::uint64_t writes_out = 0;
};
WalBatchingStats wal_batching_stats();

}  // namespace outbox::queue
