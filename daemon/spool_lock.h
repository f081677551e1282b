// One daemon per spool (issue 11): outboxd holds an exclusive lock on
// SPOOL.lock for as long as it runs, with its PID written in the file. A
// second outboxd on the same spool finds the lock taken and exits, naming
// the PID that holds it, instead of relaying beside the first (both
// claimed and sent the same queue: a 37/23 split in one trial).
// Open-file-description locks (F_OFD_SETLK): released by the kernel when the
// holder exits however it exits (kill -9 included), never by another thread
// of this process closing some other descriptor of the file, and not
// inherited by a child's exec (O_CLOEXEC). outboxctl does not take it: its
// changes go through SQLite's own locking beside the running daemon.
#pragma once
#include <string>
#include <variant>

namespace outbox::daemon {

class SpoolLock {
 public:
  struct Held {
    long pid = 0;           // 0: unknown (the file had no PID yet)
    std::string lock_path;
  };
  struct Failed {
    std::string error;      // could not open or lock the file at all
  };
  // Takes the lock for spool_path (the file spool_path + ".lock").
  static std::variant<SpoolLock, Held, Failed> acquire(const std::string& spool_path);

  SpoolLock(SpoolLock&& o) noexcept : fd_(o.fd_), path_(std::move(o.path_)) { o.fd_ = -1; }
  SpoolLock& operator=(SpoolLock&&) = delete;
  SpoolLock(const SpoolLock&) = delete;
  ~SpoolLock();
  const std::string& path() const { return path_; }

 private:
  SpoolLock(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  int fd_;
  std::string path_;
};

}  // namespace outbox::daemon
