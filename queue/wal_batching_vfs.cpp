#include "queue/wal_batching_vfs.h"

#include <sqlite3.h>

#include <atomic>
#include <cstring>
#include <mutex>

namespace outbox::queue {
namespace {

// The unix VFS writes at most 0x1ffff octets per call (os_unix.c,
// seekAndWriteFd masks the length: SQLite's own writes are pages), so the
// buffer holds 31 pages: a group commit of the 20-session benchmark (about
// 0.5 MiB of frames) is 4 or 5 writes instead of about 250.
constexpr int kCapacity = 31 * 4096;

std::atomic<std::uint64_t> g_writes_in{0};
std::atomic<std::uint64_t> g_writes_out{0};

sqlite3_vfs* g_root = nullptr;   // the default VFS, wrapped
sqlite3_vfs g_vfs;               // WAL files batched
sqlite3_vfs g_checkpoint_vfs;    // WAL files and the main database file batched

// SQLite allocates szOsFile octets per open file: this struct, then the
// default VFS's own file right after it.
struct alignas(8) File {
  sqlite3_file base;
  sqlite3_file* real;
  bool batch;                // appends are buffered (a WAL, or a checkpointer's database)
  char* buf;                 // kCapacity octets once the first append came
  sqlite3_int64 offset;      // file offset of buf[0]
  int length;                // octets in buf not yet written
};

File* self(sqlite3_file* f) { return reinterpret_cast<File*>(f); }
const sqlite3_io_methods* real_methods(File* f) { return f->real->pMethods; }

int flush(File* f) {
  if (f->length == 0) return SQLITE_OK;
  int rc = real_methods(f)->xWrite(f->real, f->buf, f->length, f->offset);
  ++g_writes_out;
  // Written or not, the octets leave the buffer: after an error SQLite rolls
  // the transaction back and writes its frames again from the last commit.
  f->length = 0;
  return rc;
}

int x_close(sqlite3_file* file) {
  File* f = self(file);
  flush(f);   // frames of no commit (rolled back or never synced): nothing relies on them
  sqlite3_free(f->buf);
  f->buf = nullptr;
  return real_methods(f)->xClose(f->real);
}

int x_read(sqlite3_file* file, void* out, int amount, sqlite3_int64 offset) {
  File* f = self(file);
  if (int rc = flush(f); rc != SQLITE_OK) return rc;
  return real_methods(f)->xRead(f->real, out, amount, offset);
}

int x_write(sqlite3_file* file, const void* data, int amount, sqlite3_int64 offset) {
  File* f = self(file);
  if (!f->batch) return real_methods(f)->xWrite(f->real, data, amount, offset);
  ++g_writes_in;
  if (f->length > 0 && offset == f->offset + f->length && amount <= kCapacity - f->length) {
    std::memcpy(f->buf + f->length, data, static_cast<std::size_t>(amount));
    f->length += amount;
    return SQLITE_OK;
  }
  // Not the next write (a header at offset 0, a frame rewritten within the
  // transaction, a checkpoint skipping to a page further on) or no room:
  // what is buffered goes first, in order.
  if (int rc = flush(f); rc != SQLITE_OK) return rc;
  if (!f->buf && amount < kCapacity) f->buf = static_cast<char*>(sqlite3_malloc(kCapacity));
  if (!f->buf || amount >= kCapacity) {
    ++g_writes_out;
    return real_methods(f)->xWrite(f->real, data, amount, offset);
  }
  std::memcpy(f->buf, data, static_cast<std::size_t>(amount));
  f->offset = offset;
  f->length = amount;
  return SQLITE_OK;
}

int x_truncate(sqlite3_file* file, sqlite3_int64 size) {
  File* f = self(file);
  if (int rc = flush(f); rc != SQLITE_OK) return rc;
  return real_methods(f)->xTruncate(f->real, size);
}

int x_sync(sqlite3_file* file, int flags) {
  File* f = self(file);
  if (int rc = flush(f); rc != SQLITE_OK) return rc;
  return real_methods(f)->xSync(f->real, flags);
}

int x_file_size(sqlite3_file* file, sqlite3_int64* size) {
  File* f = self(file);
  if (int rc = flush(f); rc != SQLITE_OK) return rc;
  return real_methods(f)->xFileSize(f->real, size);
}

int x_lock(sqlite3_file* file, int level) {
  File* f = self(file);
  return real_methods(f)->xLock(f->real, level);
}

int x_unlock(sqlite3_file* file, int level) {
  File* f = self(file);
  return real_methods(f)->xUnlock(f->real, level);
}

int x_check_reserved_lock(sqlite3_file* file, int* out) {
  File* f = self(file);
  return real_methods(f)->xCheckReservedLock(f->real, out);
}

int x_file_control(sqlite3_file* file, int op, void* arg) {
  File* f = self(file);
  if (int rc = flush(f); rc != SQLITE_OK) return rc;
  return real_methods(f)->xFileControl(f->real, op, arg);
}

int x_sector_size(sqlite3_file* file) {
  File* f = self(file);
  return real_methods(f)->xSectorSize(f->real);
}

int x_device_characteristics(sqlite3_file* file) {
  File* f = self(file);
  return real_methods(f)->xDeviceCharacteristics(f->real);
}

// The shared-memory methods belong to the database file (never buffered).
int x_shm_map(sqlite3_file* file, int page, int size, int extend, void volatile** out) {
  File* f = self(file);
  if (real_methods(f)->iVersion < 2) return SQLITE_IOERR_SHMMAP;
  return real_methods(f)->xShmMap(f->real, page, size, extend, out);
}

int x_shm_lock(sqlite3_file* file, int offset, int n, int flags) {
  File* f = self(file);
  if (real_methods(f)->iVersion < 2) return SQLITE_IOERR_SHMLOCK;
  return real_methods(f)->xShmLock(f->real, offset, n, flags);
}

void x_shm_barrier(sqlite3_file* file) {
  File* f = self(file);
  if (real_methods(f)->iVersion >= 2) real_methods(f)->xShmBarrier(f->real);
}

int x_shm_unmap(sqlite3_file* file, int delete_flag) {
  File* f = self(file);
  if (real_methods(f)->iVersion < 2) return SQLITE_OK;
  return real_methods(f)->xShmUnmap(f->real, delete_flag);
}

int x_fetch(sqlite3_file* file, sqlite3_int64 offset, int amount, void** out) {
  File* f = self(file);
  if (real_methods(f)->iVersion < 3) {
    *out = nullptr;   // "no mapping": SQLite reads instead
    return SQLITE_OK;
  }
  if (int rc = flush(f); rc != SQLITE_OK) return rc;
  return real_methods(f)->xFetch(f->real, offset, amount, out);
}

int x_unfetch(sqlite3_file* file, sqlite3_int64 offset, void* p) {
  File* f = self(file);
  if (real_methods(f)->iVersion < 3) return SQLITE_OK;
  return real_methods(f)->xUnfetch(f->real, offset, p);
}

const sqlite3_io_methods kMethods = {
    3,
    x_close,
    x_read,
    x_write,
    x_truncate,
    x_sync,
    x_file_size,
    x_lock,
    x_unlock,
    x_check_reserved_lock,
    x_file_control,
    x_sector_size,
    x_device_characteristics,
    x_shm_map,
    x_shm_lock,
    x_shm_barrier,
    x_shm_unmap,
    x_fetch,
    x_unfetch,
};

int x_open(sqlite3_vfs* vfs, const char* name, sqlite3_file* file, int flags, int* out_flags) {
  File* f = self(file);
  f->real = reinterpret_cast<sqlite3_file*>(f + 1);
  f->batch = (flags & SQLITE_OPEN_WAL) != 0 || (vfs == &g_checkpoint_vfs && (flags & SQLITE_OPEN_MAIN_DB) != 0);
  f->buf = nullptr;
  f->offset = 0;
  f->length = 0;
  f->real->pMethods = nullptr;
  int rc = g_root->xOpen(g_root, name, f->real, flags, out_flags);
  // SQLite calls xClose only when pMethods is set, even after a failed open.
  f->base.pMethods = f->real->pMethods ? &kMethods : nullptr;
  return rc;
}

void register_all(const char** wal_name, const char** checkpoint_name) {
  g_root = sqlite3_vfs_find(nullptr);
  if (!g_root) return;
  // Every other method is the default VFS's own, called with a copy of
  // its struct (same pAppData, mxPathname), so it behaves as it would.
  auto make = [](sqlite3_vfs& v, const char* name, const char** out) {
    v = *g_root;
    v.pNext = nullptr;
    v.zName = name;
    v.szOsFile = static_cast<int>(sizeof(File)) + g_root->szOsFile;
    v.xOpen = x_open;
    if (sqlite3_vfs_register(&v, 0) == SQLITE_OK) *out = v.zName;
  };
  make(g_vfs, "outbox-wal-batching", wal_name);
  make(g_checkpoint_vfs, "outbox-checkpoint-batching", checkpoint_name);
}

const char** names() {
  static const char* n[2] = {nullptr, nullptr};
  static std::once_flag once;
  std::call_once(once, [] { register_all(&n[0], &n[1]); });
  return n;
}

}  // namespace

const char* wal_batching_vfs() { return names()[0]; }
const char* checkpoint_batching_vfs() { return names()[1]; }

WalBatchingStats wal_batching_stats() { return {g_writes_in.load(), g_writes_out.load()}; }

}  // namespace outbox::queue
