#include "daemon/spool_lock.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

namespace outbox::daemon {

std::variant<SpoolLock, SpoolLock::Held, SpoolLock::Failed> SpoolLock::acquire(const std::string& spool_path) {
  const std::string path = spool_path + ".lock";
  // The spool's directory is made here if missing, as Spool::open would
  // (0750): the lock comes first (a fresh checkout has no var/).
  auto parent = std::filesystem::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty() && !std::filesystem::exists(parent, ec)) {
    std::filesystem::create_directories(parent, ec);
    if (ec) return Failed{"cannot create " + parent.string() + ": " + ec.message()};
    std::filesystem::permissions(parent,
                                 std::filesystem::perms::owner_all | std::filesystem::perms::group_read |
                                     std::filesystem::perms::group_exec,
                                 std::filesystem::perm_options::replace, ec);
  }
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
  if (fd < 0) return Failed{"cannot open " + path + ": " + std::strerror(errno)};
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  if (::fcntl(fd, F_OFD_SETLK, &fl) != 0) {
    const int err = errno;
    if (err != EAGAIN && err != EACCES) {
      ::close(fd);
      return Failed{"cannot lock " + path + ": " + std::strerror(err)};
    }
    // The holder wrote its PID right after taking the lock.
    char buf[32] = {};
    ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
    ::close(fd);
    long pid = n > 0 ? std::strtol(buf, nullptr, 10) : 0;
    return Held{pid > 0 ? pid : 0, path};
  }
  const std::string pid = std::to_string(static_cast<long>(::getpid())) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    const int err = errno;
    ::close(fd);
    return Failed{"cannot write " + path + ": " + std::strerror(err)};
  }
  return SpoolLock(fd, path);
}

SpoolLock::~SpoolLock() {
  if (fd_ >= 0) ::close(fd_);   // the kernel drops the lock with the last descriptor
}

}  // namespace outbox::daemon
