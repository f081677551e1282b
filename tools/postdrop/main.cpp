// outbox-postdrop: puts one message into the maildrop when outboxd cannot be
// reached, so that cron's and PHP's mail is never lost (Postfix's postdrop
// model). Installed set-group-ID to the drop group, which may write into the
// maildrop directory and nothing else (mode 1770, owner outbox: the group
// needs to read the directory only to fsync it after the rename; no user
// is in that group, so only this program holds it); the file
// keeps the caller's uid as its owner, and that is the only identity outboxd
// believes when it imports the file: nothing in the contents can claim to be
// another user.
//
// Input: one maildrop file (tools/common/maildrop_file.h) on standard input,
// as outbox-sendmail writes it; checked here so that a broken writer fails at
// once, and checked again by outboxd, which trusts nothing in it.
// Written to tmp.NAME, fsynced, renamed to NAME, the directory fsynced: once
// this exits 0 the message survives a crash.
#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "daemon/config.h"
#include "daemon/fs_sync.h"
#include "tools/common/maildrop_file.h"

namespace {

void say(const std::string& s) { std::fprintf(stderr, "outbox-postdrop: %s\n", s.c_str()); }

bool write_all(int fd, const std::string& s) {
  std::size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::write(fd, s.data() + off, s.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<std::size_t>(n);
  }
  return true;
}

std::string unique_name(std::int64_t time) {
  unsigned char r[8];
  if (getrandom(r, sizeof r, 0) != static_cast<ssize_t>(sizeof r)) {
    for (auto& b : r) b = static_cast<unsigned char>(::getpid() ^ std::rand());
  }
  static const char* hex = "0123456789abcdef";
  std::string tag;
  for (unsigned char b : r) {
    tag += hex[b >> 4];
    tag += hex[b & 15];
  }
  // Time first: outboxd imports in submission order.
  return std::to_string(time) + "." + std::to_string(::getpid()) + "." + tag;
}

}  // namespace

int main(int argc, char** argv) {
  ::umask(022);
  std::string config_path = outbox::default_config_path();
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if ((a == "-C" || a == "--config") && i + 1 < argc) {
      config_path = argv[++i];
    } else {
      say("usage: outbox-postdrop [-C FILE] < MAILDROP-FILE (run by outbox-sendmail)");
      return EX_USAGE;
    }
  }
  outbox::Config cfg;
  try {
    std::vector<std::string> unknown;   // a typo elsewhere must not lose the mail
    cfg = outbox::load_config(config_path, &unknown);
  } catch (const std::exception& e) {
    say(e.what());
    return EX_CONFIG;
  }
  const std::uint64_t max_size = cfg.limits.max_message_size;
  const std::uint64_t max_input = max_size + outbox::maildrop::kMaxHeaderBytes;
  std::string text;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      say(std::string("cannot read the message: ") + std::strerror(errno));
      return EX_IOERR;
    }
    if (n == 0) break;
    if (text.size() + static_cast<std::size_t>(n) > max_input) {
      say("the message is larger than limits.max_message_size (" + std::to_string(max_size) + " bytes)");
      return EX_DATAERR;
    }
    text.append(buf, static_cast<std::size_t>(n));
  }
  std::string error;
  auto entry = outbox::maildrop::parse(text, max_size, &error);
  if (!entry) {
    say("not a maildrop file: " + error);
    return EX_DATAERR;
  }
  const std::string& dir = cfg.maildrop;
  const std::string name = unique_name(entry->time);
  const std::string tmp = dir + "/tmp." + name, final_path = dir + "/" + name;
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) {
    say("cannot write to the maildrop " + dir + ": " + std::strerror(errno) +
        (errno == EACCES ? " (outbox-postdrop must be set-group-ID to the maildrop's group)" : ""));
    return EX_TEMPFAIL;
  }
  bool ok = write_all(fd, text) && ::fsync(fd) == 0;
  int err = errno;
  ok = ::close(fd) == 0 && ok;
  if (!ok || ::rename(tmp.c_str(), final_path.c_str()) != 0) {
    if (ok) err = errno;
    ::unlink(tmp.c_str());
    say("cannot write to the maildrop " + dir + ": " + std::strerror(err));
    return EX_TEMPFAIL;
  }
  // The rename is durable only once the directory is.
  if (int e = outbox::fs::fsync_dir(dir)) {
    say("cannot sync the maildrop " + dir + ": " + std::strerror(e));
    return EX_TEMPFAIL;
  }
  std::printf("%s\n", name.c_str());
  return EX_OK;
}
