#include "daemon/file_worker.h"

#include <exception>

#include "queue/thread_role.h"

namespace outbox::daemon {

FileWorker::FileWorker(Poster post) : post_(std::move(post)), thread_([this] { loop(); }) {}

FileWorker::~FileWorker() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void FileWorker::run(std::function<void()> work, Done done) {
  {
    std::lock_guard lk(mu_);
    queue_.push_back(Job{std::move(work), std::move(done)});
  }
  cv_.notify_one();
}

void FileWorker::loop() {
  queue::set_thread_role("files", queue::ThreadRole::Background);   // the maildir upstream: relay work
  for (;;) {
    Job job;
    {
      std::unique_lock lk(mu_);
      cv_.wait(lk, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;   // stopping, nothing left
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    std::string error;
    try {
      job.work();
    } catch (const std::exception& e) {
      error = e.what();
      if (error.empty()) error = "failed";
    } catch (...) {
      error = "unknown error";
    }
    if (!job.done) continue;
    // Dropped, not run, once the owner is going away: it no longer listens.
    bool stopping;
    {
      std::lock_guard lk(mu_);
      stopping = stopping_;
    }
    if (!stopping) post_([done = std::move(job.done), error = std::move(error)]() mutable { done(std::move(error)); });
  }
}

}  // namespace outbox::daemon
