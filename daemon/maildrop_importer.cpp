#include "daemon/maildrop_importer.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "daemon/fs_sync.h"
#include "daemon/logging.h"
#include "protocol/rfc3339.h"
#include "queue/spool.h"
#include "queue/store_worker.h"
#include "queue/thread_role.h"
#include "tools/common/maildrop_file.h"
#include "tools/common/smtp_submit.h"

namespace outbox::daemon {

namespace {

// Best effort: the file is already in the spool (imported) or kept aside.
void sync_dir(const std::string& dir) { (void)fs::fsync_dir(dir); }

}  // namespace

MaildropImporter::Ledger MaildropImporter::spool_ledger(queue::StoreWorker& store) {
  Ledger l;
  l.lookup = [&store](const std::string& file) {
    struct Answer {
      std::mutex mu;
      std::condition_variable cv;
      bool done = false;
      std::optional<std::string> found;   // the writer's thread only, until done
      Record rec;
    };
    auto a = std::make_shared<Answer>();
    store.run([a, file](queue::Spool& s) { a->found = s.imported_as(file); },
              [a](bool ok, std::string err) {
                std::lock_guard lk(a->mu);
                if (!ok) a->rec = Record{Record::State::Unknown, {}, std::move(err)};
                else if (a->found) a->rec = Record{Record::State::Imported, *a->found, {}};
                a->done = true;
                a->cv.notify_all();
              },
              // Answered on the writer's thread, not the loop's: this thread
              // waits, and the loop may be waiting for it (stop()).
              [](std::function<void()> fn) { fn(); });
    std::unique_lock lk(a->mu);
    if (!a->cv.wait_for(lk, std::chrono::seconds(60), [&] { return a->done; }))
      return Record{Record::State::Unknown, {}, "the spool writer did not answer within 60 s"};
    return a->rec;
  };
  l.forget = [&store](const std::string& file) {
    store.run([file](queue::Spool& s) { s.forget_import(file); }, nullptr);
  };
  return l;
}

MaildropImporter::MaildropImporter(uv_loop_t* loop, std::string dir, std::uint64_t max_message_size, Adopt adopt,
                                   Ledger ledger)
    : loop_(loop), dir_(std::move(dir)), max_size_(max_message_size), adopt_(std::move(adopt)),
      ledger_(std::move(ledger)) {}

MaildropImporter::~MaildropImporter() { stop(); }

bool MaildropImporter::start() {
  struct stat st{};
  if (::stat(dir_.c_str(), &st) != 0) {
    if (errno != ENOENT || ::mkdir(dir_.c_str(), 01770) != 0) {
      log::warn(log::Line("maildrop_error").kv("dir", dir_).kv("error", std::strerror(errno))
                    .kv("hint", "outbox-sendmail cannot keep mail while outboxd is down; create the directory "
                                "(install -d -o outbox -g outbox-drop -m 1770 DIR)"));
      return false;
    }
    ::chmod(dir_.c_str(), 01770);   // mkdir's mode went through the umask
    log::info(log::Line("maildrop_created").kv("dir", dir_));
  } else if (!S_ISDIR(st.st_mode)) {
    log::warn(log::Line("maildrop_error").kv("dir", dir_).kv("error", "not a directory"));
    return false;
  }
  poster_ = std::make_unique<LoopPoster>(loop_);
  watch_ = new uv_fs_event_t;
  uv_fs_event_init(loop_, watch_);
  watch_->data = this;
  int rc = uv_fs_event_start(
      watch_,
      [](uv_fs_event_t* h, const char*, int, int) noexcept {
        try {
          static_cast<MaildropImporter*>(h->data)->kick();
        } catch (...) {
        }
      },
      dir_.c_str(), 0);
  if (rc != 0)
    log::warn(log::Line("maildrop_error").kv("dir", dir_).kv("error", uv_strerror(rc))
                  .kv("hint", "imported every 30 s instead of at once"));
  timer_ = new uv_timer_t;
  uv_timer_init(loop_, timer_);
  timer_->data = this;
  uv_timer_start(
      timer_,
      [](uv_timer_t* t) noexcept {
        try {
          static_cast<MaildropImporter*>(t->data)->kick();
        } catch (...) {
        }
      },
      30000, 30000);
  thread_ = std::thread([this] { loop_thread(); });
  kick();   // what waited while outboxd was down
  return true;
}

void MaildropImporter::stop() {
  {
    std::lock_guard l(mu_);
    if (stopping_) return;
    stopping_ = true;
    // The import in progress talks to this very loop, which is busy here:
    // end its session now (it stays in the maildrop for the next start).
    if (active_fd_ >= 0) ::shutdown(active_fd_, SHUT_RDWR);
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (watch_) {
    uv_fs_event_stop(watch_);
    uv_close(reinterpret_cast<uv_handle_t*>(watch_), [](uv_handle_t* h) { delete reinterpret_cast<uv_fs_event_t*>(h); });
    watch_ = nullptr;
  }
  if (timer_) {
    uv_timer_stop(timer_);
    uv_close(reinterpret_cast<uv_handle_t*>(timer_), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    timer_ = nullptr;
  }
  if (poster_) poster_->close();
}

void MaildropImporter::kick() {
  std::lock_guard l(mu_);
  kicked_ = true;
  cv_.notify_all();
}

void MaildropImporter::loop_thread() {
  queue::set_thread_role("maildrop", queue::ThreadRole::Latency);
  for (;;) {
    {
      std::unique_lock l(mu_);
      cv_.wait(l, [this] { return stopping_ || kicked_; });
      if (stopping_) return;
      kicked_ = false;
    }
    try {
      scan();
    } catch (const std::exception& e) {
      log::error(log::Line("maildrop_error").kv("dir", dir_).kv("error", e.what()));
    }
  }
}

void MaildropImporter::scan() {
  std::vector<std::string> names;
  // open + fdopendir rather than opendir: the descriptor's whole life is then
  // seen by ThreadSanitizer in this thread. (libuv closes its sockets with a
  // raw close syscall it cannot see, so opendir's reuse of a number the
  // relay's thread last held looked like a race at closedir.)
  DIR* d = nullptr;
  if (int fd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); fd >= 0) {
    d = ::fdopendir(fd);
    if (!d) {
      int err = errno;
      ::close(fd);
      errno = err;
    }
  }
  if (!d) {
    log::warn(log::Line("maildrop_error").kv("dir", dir_).kv("error", std::strerror(errno)));
    return;
  }
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    // tmp.*: outbox-postdrop is still writing it (or died doing so).
    if (n == "." || n == ".." || n == "corrupt" || n.rfind("tmp.", 0) == 0 || stuck_.count(n)) continue;
    names.push_back(std::move(n));
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());   // "TIME.PID.TAG": submission order
  for (const auto& n : names) {
    {
      std::lock_guard l(mu_);
      if (stopping_) return;
    }
    import(n);
  }
}

void MaildropImporter::set_aside(const std::string& name, const std::string& why, const char* event,
                                 std::int64_t uid) {
  const std::string corrupt = dir_ + "/corrupt";
  ::mkdir(corrupt.c_str(), 0700);
  log::Line l(event);
  l.kv("file", name);
  if (uid >= 0) l.kv("uid", uid);
  l.kv("reason", why).kv("kept", corrupt + "/" + name);
  // corrupt/ must be outboxd's own: the maildrop is 1770, so a member of its
  // group could have made `corrupt` first, as a symlink or a directory of its
  // own, and the mail set aside there would leave outbox's hands. The move
  // goes through the directory opened and checked (renameat), not its name.
  const int cfd = ::open(corrupt.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  struct stat cst {};
  const bool ours = cfd >= 0 && ::fstat(cfd, &cst) == 0 && cst.st_uid == ::geteuid() && (cst.st_mode & 077) == 0;
  if (!ours) {
    // Left where it is, not tried again until a restart.
    l.kv("error", cfd < 0 ? "corrupt/ cannot be opened as a directory: " + std::string(std::strerror(errno))
                          : std::string("corrupt/ is not outboxd's own directory (owner or mode)"));
    l.kv("hint", "remove " + corrupt + " and restart outboxd; it makes its own (0700)");
    stuck_.insert(name);
  } else if (::renameat(AT_FDCWD, (dir_ + "/" + name).c_str(), cfd, name.c_str()) != 0) {
    // Cannot move it: left where it is, not tried again until a restart.
    l.kv("error", std::strerror(errno));
    stuck_.insert(name);
  }
  if (cfd >= 0) ::close(cfd);
  sync_dir(dir_);
  log::error(l);
  imported_.fetch_add(1);
}

void MaildropImporter::remove_imported(const std::string& name) {
  // The file goes first, durably, then its record: a crash in between
  // leaves a record of a file that is gone (a few bytes, never matched
  // again: names are unique), never a file without its record.
  if (::unlink((dir_ + "/" + name).c_str()) != 0 && errno != ENOENT) {
    log::error(log::Line("maildrop_error").kv("file", name).kv("error", std::strerror(errno))
                   .kv("hint", "the message is queued; the file stays, known as imported, until a restart"));
    stuck_.insert(name);
  } else {
    sync_dir(dir_);
    if (ledger_.forget) ledger_.forget(name);
  }
  imported_.fetch_add(1);
}

void MaildropImporter::import(const std::string& name) {
  const std::string path = dir_ + "/" + name;
  // Its import may have been committed already: outboxd stopped between the
  // commit and the file's removal, or the 250 was lost on the way.
  if (ledger_.lookup) {
    Record rec = ledger_.lookup(name);
    if (rec.state == Record::State::Unknown) {
      log::warn(log::Line("maildrop_deferred").kv("file", name)
                    .kv("reason", "cannot tell whether it is queued already: " + rec.error));
      return;
    }
    if (rec.state == Record::State::Imported) {
      struct stat st{};
      const std::int64_t uid = ::lstat(path.c_str(), &st) == 0 ? static_cast<std::int64_t>(st.st_uid) : -1;
      remove_imported(name);
      log::info(log::Line("maildrop_imported").kv("id", rec.id).kv("uid", uid).kv("file", name)
                    .kv("already", "yes"));
      return;
    }
  }
  // O_NOFOLLOW: a symlink planted by the drop group never makes outboxd read
  // another file; O_NONBLOCK: a FIFO never blocks the import.
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return;
    set_aside(name, std::string("cannot open it: ") + std::strerror(errno), "maildrop_corrupt", -1);
    return;
  }
  struct stat st{};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    set_aside(name, "not a regular file", "maildrop_corrupt", -1);
    return;
  }
  const std::int64_t uid = st.st_uid;
  const std::uint64_t max_input = max_size_ + maildrop::kMaxHeaderBytes;
  if (static_cast<std::uint64_t>(st.st_size) > max_input) {
    ::close(fd);
    set_aside(name, "larger than limits.max_message_size", "maildrop_corrupt", uid);
    return;
  }
  std::string text;
  text.resize(static_cast<std::size_t>(st.st_size));
  std::size_t off = 0;
  while (off < text.size()) {
    ssize_t n = ::read(fd, text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    off += static_cast<std::size_t>(n);
  }
  ::close(fd);
  text.resize(off);
  std::string error;
  auto entry = maildrop::parse(text, max_size_, &error);
  if (!entry) {
    set_aside(name, error, "maildrop_corrupt", uid);
    return;
  }

  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    log::warn(log::Line("maildrop_deferred").kv("file", name).kv("uid", uid)
                  .kv("reason", std::string("socketpair: ") + std::strerror(errno)).kv("maybe_queued", "no"));
    return;
  }
  {
    std::lock_guard l(mu_);
    if (stopping_) {
      ::close(sv[0]);
      ::close(sv[1]);
      return;
    }
    active_fd_ = sv[1];
  }
  poster_->post([adopt = adopt_, fd = sv[0], uid, name] {
    try {
      adopt(fd, static_cast<std::uint32_t>(uid), name);
    } catch (...) {
      ::close(fd);
    }
  });
  sendmail::SmtpChannel channel(sv[1]);
  sendmail::Timeouts t;
  t.reply_ms = 60 * 1000;   // a local session: outboxd answers at once or is stuck
  t.end_of_data_ms = 120 * 1000;
  sendmail::SubmitResult r = sendmail::submit(channel, entry->submission, t);
  {
    std::lock_guard l(mu_);
    active_fd_ = -1;
  }
  ::close(sv[1]);
  if (r.exit_code == EX_OK) {
    remove_imported(name);
    log::info(log::Line("maildrop_imported").kv("id", r.queue_id).kv("uid", uid).kv("file", name)
                  .kv("submitted", protocol::rfc3339_utc(entry->time)).kv("nrcpt", entry->submission.recipients.size()));
    return;
  }
  std::string why;
  for (const auto& e : r.errors) why += (why.empty() ? "" : "; ") + e;
  if (r.exit_code == EX_TEMPFAIL) {
    // Kept for the next scan. After a lost connection past the final dot it
    // may be in the spool already: then the next scan finds its record and
    // removes it (maybe_queued), so it is never queued twice.
    log::warn(log::Line("maildrop_deferred").kv("file", name).kv("uid", uid).kv("reason", why)
                  .kv("maybe_queued", r.maybe_queued ? "yes" : "no"));
    return;
  }
  set_aside(name, why, "maildrop_rejected", uid);
}

}  // namespace outbox::daemon
