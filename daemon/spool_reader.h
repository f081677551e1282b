// SpoolReader: one thread with its own read-only connection to the spool, for
// reads the loop must not wait for and the writer must not carry in its
// transaction (the sd_notify STATUS= counts every 30 s). Work runs in order;
// each completion goes through the injected Poster (the daemon's LoopPoster).
#pragma once
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "queue/spool.h"

namespace outbox::daemon {

class SpoolReader {
 public:
  using Poster = std::function<void(std::function<void()>)>;
  using Done = std::function<void(bool ok, std::string error)>;

  // The connection is opened on the reader's thread at the first request
  // (and again after an error), so a constructor never blocks on the disk.
  SpoolReader(std::string path, Poster post);
  ~SpoolReader();   // work not started is dropped (its done is not called)
  SpoolReader(const SpoolReader&) = delete;
  SpoolReader& operator=(const SpoolReader&) = delete;

  void run(std::function<void(queue::Spool&)> work, Done done);   // any thread

 private:
  struct Request {
    std::function<void(queue::Spool&)> work;
    Done done;
  };
  void loop();

  std::string path_;
  Poster post_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Request> queue_;
  bool stopping_ = false;
  std::unique_ptr<queue::Spool> spool_;   // reader thread only
  std::thread thread_;
};

}  // namespace outbox::daemon
