#include "daemon/secret_file.h"

#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>

namespace outbox::secret_file {

namespace {

constexpr std::size_t kMax = 1 << 20;

std::string octal(mode_t m) {
  char b[8];
  std::snprintf(b, sizeof b, "%04o", static_cast<unsigned>(m & 07777));
  return b;
}

std::string group_name(gid_t g) {
  group gr{};
  group* res = nullptr;
  char buf[1024];
  if (getgrgid_r(g, &gr, buf, sizeof buf, &res) == 0 && res) return res->gr_name;
  return "gid " + std::to_string(g);
}

int open_checked(const std::string& path, const std::string& what) {
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    if (errno == ELOOP) throw std::runtime_error(what + " " + path + " is a symbolic link: give the file itself");
    throw std::runtime_error(what + " " + path + ": " + std::strerror(errno));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw std::runtime_error(what + " " + path + " is not a regular file");
  }
  if (auto p = mode_problem(path, st.st_mode, st.st_gid, ::getegid())) {
    ::close(fd);
    throw std::runtime_error(what + " " + path + " " + *p);
  }
  return fd;
}

}  // namespace

std::optional<std::string> mode_problem(const std::string& path, mode_t mode, gid_t file_gid, gid_t reader_gid) {
  if (mode & (S_IWGRP | S_IWOTH))
    return "can be changed by other users (mode " + octal(mode) + "): chmod go-w " + path;
  if (mode & S_IROTH)
    return "is readable by every user (mode " + octal(mode) + "): chmod 600 " + path +
           " (or 640 with the daemon's group: chgrp outbox " + path + ")";
  if ((mode & S_IRGRP) && file_gid != reader_gid)
    return "is readable by group " + group_name(file_gid) + " (mode " + octal(mode) + "): chmod 600 " + path +
           ", or chgrp it to the daemon's group";
  return std::nullopt;
}

std::string read(const std::string& path, const std::string& what) {
  int fd = open_checked(path, what);
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      throw std::runtime_error(what + " " + path + ": " + std::strerror(err));
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
    if (out.size() > kMax) {
      ::close(fd);
      throw std::runtime_error(what + " " + path + " is larger than 1 MiB: not a secret");
    }
  }
  ::close(fd);
  return out;
}

void check(const std::string& path, const std::string& what) { ::close(open_checked(path, what)); }

}  // namespace outbox::secret_file
