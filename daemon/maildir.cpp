#include "daemon/maildir.h"

#include "daemon/fs_sync.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

namespace outbox::daemon::maildir {

namespace {

[[noreturn]] void fail(const std::string& what, int err) { throw std::system_error(err, std::generic_category(), what); }

void sync_dir(const std::string& dir) {
  if (int err = fs::fsync_dir(dir)) fail("fsync " + dir, err);
}

}  // namespace

std::string file_name(std::int64_t now_us, long pid, std::string_view queue_id, std::string_view host) {
  std::string h;
  // '/' and ':' cannot be in a maildir name (':' starts the flags); the
  // convention writes them as \057 and \072.
  for (char c : host) {
    if (c == '/') h += "\\057";
    else if (c == ':') h += "\\072";
    else h += c;
  }
  return std::to_string(now_us / 1000000) + ".M" + std::to_string(now_us % 1000000) + "P" + std::to_string(pid) +
         "Q" + std::string(queue_id) + "." + h;
}

std::string envelope_lines(std::string_view sender, const std::vector<std::string>& recipients) {
  std::string out = "Return-Path: <" + std::string(sender) + ">\r\n";
  for (const auto& r : recipients) out += "X-Envelope-To: <" + r + ">\r\n";
  return out;
}

void ensure(const std::string& path) {
  // Missing parents too, like `mkdir -p` (a fresh checkout has no var/).
  for (std::size_t slash = path.find('/', 1); slash != std::string::npos; slash = path.find('/', slash + 1)) {
    const std::string parent = path.substr(0, slash);
    if (::mkdir(parent.c_str(), 0750) != 0 && errno != EEXIST) fail("mkdir " + parent, errno);
  }
  for (const std::string& d : {path, path + "/tmp", path + "/new", path + "/cur"}) {
    if (::mkdir(d.c_str(), 0750) == 0 || errno == EEXIST) {
      struct stat st {};
      if (::stat(d.c_str(), &st) != 0) fail("stat " + d, errno);
      if (!S_ISDIR(st.st_mode)) fail(d + " is not a directory", ENOTDIR);
      continue;
    }
    fail("mkdir " + d, errno);
  }
}

File::File(std::string dir, std::string name)
    : dir_(std::move(dir)), name_(std::move(name)), tmp_(dir_ + "/tmp/" + name_), final_(dir_ + "/new/" + name_) {}

File::~File() {
  if (!published_) discard();
}

void File::open() {
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0640);
  if (fd_ < 0) fail("create " + tmp_, errno);
}

void File::write(std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::write(fd_, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("write " + tmp_, errno);
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

void File::publish() {
  // The bytes are on disk before the name appears in new/: a reader never
  // sees a partial message, and a crash leaves at most a file in tmp/.
  if (::fsync(fd_) != 0) fail("fsync " + tmp_, errno);
  int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0) fail("close " + tmp_, errno);
  if (::rename(tmp_.c_str(), final_.c_str()) != 0) fail("rename " + tmp_ + " to " + final_, errno);
  published_ = true;
  sync_dir(dir_ + "/new");
}

void File::discard() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  if (!published_) ::unlink(tmp_.c_str());
}

}  // namespace outbox::daemon::maildir
