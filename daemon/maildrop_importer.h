// MaildropImporter: takes the messages outbox-postdrop left in the maildrop
// while outboxd could not be reached (issue 11 item 1), at start and, while
// running, as they arrive (a libuv fs_event watch, inotify on Linux, and a
// 30 s rescan in case an event was missed).
//
// Each file is untrusted input: opened without following a symlink, only a
// regular file, bounded in size, parsed strictly
// (tools/common/maildrop_file.h). The sender's identity is the file's owner
// (st_uid), never anything in its contents. The message is then submitted
// exactly as a Unix-socket client of that uid would submit it: over one end
// of a socketpair that the Server serves as such a client (same SMTP state
// machine, sender rules, size limits, Received line, durable commit before
// 250), while this thread speaks SMTP on the other end. The message's
// commit also records the file's name in the spool (queue::Spool::
// record_import); after the 250 the file is removed, then the record. A file
// whose record is found (a crash came between the commit and the removal,
// or the 250 was lost) is removed without a second submission, and the
// record makes a second commit of that file fail: one file, one message. A malformed file, or one the submission
// refuses for good (5xx), is moved to maildrop/corrupt/ and logged; a 4xx
// leaves it for the next scan. Nothing crashes, nothing is dropped silently.
#pragma once
#include <uv.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "daemon/loop_poster.h"

namespace outbox::queue {
class StoreWorker;
}

namespace outbox::daemon {

class MaildropImporter {
 public:
  // adopt runs on the loop: serve fd as a local client of uid (false: not
  // taken, fd closed).
  using Adopt = std::function<bool(int fd, std::uint32_t uid, std::string file)>;
  // The spool's import records, asked from this importer's thread. lookup
  // blocks until the store writer answered: the message a file became, or
  // none; an error (the file then waits for the next scan) when it cannot
  // tell. forget drops a record once its file is gone.
  struct Record {
    enum class State { None, Imported, Unknown } state = State::None;
    std::string id;      // Imported
    std::string error;   // Unknown
  };
  struct Ledger {
    std::function<Record(const std::string& file)> lookup;
    std::function<void(const std::string& file)> forget;
  };
  MaildropImporter(uv_loop_t* loop, std::string dir, std::uint64_t max_message_size, Adopt adopt, Ledger ledger);
  ~MaildropImporter();   // loop thread, after stop()
  MaildropImporter(const MaildropImporter&) = delete;
  MaildropImporter& operator=(const MaildropImporter&) = delete;

  // Loop thread. Makes the directory when it is missing (mode 1770), watches
  // it and imports what is there. False (logged) when it cannot be watched.
  bool start();
  // Loop thread: no new import starts; the one in progress finishes or
  // times out; the watch and the timer are closed.
  void stop();

  // The Ledger of the daemon's spool: both go through its store writer, in
  // order with the commits (a lookup sees every import committed before it).
  static Ledger spool_ledger(queue::StoreWorker& store);

  // Tests: files imported and set aside so far.
  std::uint64_t imported() const { return imported_.load(); }

 private:
  void kick();
  void loop_thread();
  void scan();
  void import(const std::string& name);
  void remove_imported(const std::string& name);
  void set_aside(const std::string& name, const std::string& why, const char* event, std::int64_t uid);

  uv_loop_t* loop_;
  const std::string dir_;
  const std::uint64_t max_size_;
  Adopt adopt_;
  Ledger ledger_;
  std::unique_ptr<LoopPoster> poster_;
  uv_fs_event_t* watch_ = nullptr;
  uv_timer_t* timer_ = nullptr;
  std::mutex mu_;
  std::condition_variable cv_;
  bool kicked_ = false;
  int active_fd_ = -1;                 // this thread's end of the session in progress
  std::set<std::string> stuck_;        // could not be moved aside (thread only)
  bool stopping_ = false;
  std::atomic<std::uint64_t> imported_{0};
  std::thread thread_;
};

}  // namespace outbox::daemon
