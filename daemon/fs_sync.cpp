#include "daemon/fs_sync.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

namespace outbox::fs {

int fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno;
  int rc = ::fsync(fd);
  int err = rc != 0 ? errno : 0;
  ::close(fd);
  return err;
}

}  // namespace outbox::fs
