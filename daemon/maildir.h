// A message written into a maildir (the `deliver = "maildir:PATH"` upstream):
// the file name, the envelope lines put in front, and the write itself,
// atomic as the maildir convention makes it (tmp/, fsync, rename into new/,
// fsync of new/). Blocking POSIX calls: run off the event loop
// (daemon/file_worker.h). No libuv, no spool: unit-tested in
// tests/unit/relay/test_maildir.cpp.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace outbox::daemon::maildir {

// "<seconds>.M<micros>P<pid>Q<queue id>.<host>": unique per delivery (the
// maildir convention: time, process, a counter of our own; the queue id and
// the time together never repeat for one message).
std::string file_name(std::int64_t now_us, long pid, std::string_view queue_id, std::string_view host);

// The envelope in front of the message, as local delivery agents write it:
// Return-Path: <sender> (RFC 5321 §4.4) and one X-Envelope-To: per
// recipient; CRLF like the message after it.
std::string envelope_lines(std::string_view sender, const std::vector<std::string>& recipients);

// Creates PATH/{tmp,new,cur} (mode 0750) when missing. Throws
// std::system_error naming the directory.
void ensure(const std::string& path);

// One file being written. open() creates tmp/NAME (O_EXCL, O_NOFOLLOW,
// 0640); publish() fsyncs and closes it, renames it to new/NAME and fsyncs
// new/, after which the message is delivered; a destructor without
// publish() removes the temporary file. Every error throws
// std::system_error whose what() names the file.
class File {
 public:
  File(std::string dir, std::string name);
  ~File();
  File(const File&) = delete;
  File& operator=(const File&) = delete;

  void open();
  void write(std::string_view bytes);
  void publish();
  void discard() noexcept;
  const std::string& published_path() const { return final_; }

 private:
  std::string dir_, name_, tmp_, final_;
  int fd_ = -1;
  bool published_ = false;
};

}  // namespace outbox::daemon::maildir
