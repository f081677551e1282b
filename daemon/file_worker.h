// FileWorker: blocking file work (the maildir upstream's writes, fsyncs and
// renames) on a thread of its own, so the event loop never waits for the
// disk and libuv's thread pool (DNS, scrypt) is not held up by it. Each
// job's completion is posted back through the injected Poster (the daemon's
// LoopPoster). Jobs run one at a time, in order.
#pragma once
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace outbox::daemon {

class FileWorker {
 public:
  using Poster = std::function<void(std::function<void()>)>;
  // error: "" when work returned, else what the exception said.
  using Done = std::function<void(std::string error)>;

  explicit FileWorker(Poster post);
  ~FileWorker();   // runs what is queued (a job's objects clean up after themselves), then joins
  FileWorker(const FileWorker&) = delete;
  FileWorker& operator=(const FileWorker&) = delete;

  // Owner's thread. work runs on the worker thread; done through the Poster.
  void run(std::function<void()> work, Done done);

 private:
  struct Job {
    std::function<void()> work;
    Done done;
  };
  void loop();

  Poster post_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace outbox::daemon
