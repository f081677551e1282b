#include "daemon/spool_reader.h"

#include "queue/thread_role.h"

namespace outbox::daemon {

SpoolReader::SpoolReader(std::string path, Poster post)
    : path_(std::move(path)), post_(std::move(post)), thread_([this] { loop(); }) {}

SpoolReader::~SpoolReader() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    queue_.clear();
  }
  cv_.notify_all();
  thread_.join();
}

void SpoolReader::run(std::function<void(queue::Spool&)> work, Done done) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    queue_.push_back(Request{std::move(work), std::move(done)});
  }
  cv_.notify_one();
}

void SpoolReader::loop() {
  queue::set_thread_role("spool-reader", queue::ThreadRole::Latency);
  for (;;) {
    Request r;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      r = std::move(queue_.front());
      queue_.pop_front();
    }
    bool ok = true;
    std::string error;
    try {
      if (!spool_) spool_ = queue::Spool::open(path_, queue::Spool::Mode::ReadOnly);
      r.work(*spool_);
    } catch (const std::exception& e) {
      ok = false;
      error = e.what();
      spool_.reset();   // reopened for the next request
    }
    if (r.done) post_([done = std::move(r.done), ok, error = std::move(error)] { done(ok, error); });
  }
}

}  // namespace outbox::daemon
