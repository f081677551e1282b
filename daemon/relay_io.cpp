// The helper threads a relay makes at their first use, the BodyReader (a
// message's bytes, read off the loop from a read-only connection of its own)
// and the FileWorker (the maildir upstream's blocking file work), and their
// release with the OAuth2 and fleet-ledger threads once no delivery is left.
// Relay's own members: their answers come back through its liveness token
// and guard, and maybe_stopped() releases them. Kept out of relay.cpp, which
// is the scheduling glue.
#include "daemon/relay.h"
#include "daemon/relay_guard.h"

namespace outbox::daemon {

// No delivery is left: join the reader's thread and close its uv_async, which
// would otherwise keep the loop running after the relay stopped.
void Relay::release_body_reader() {
  tokens_.shutdown();
  file_worker_.reset();
  if (file_poster_) file_poster_->close();
  fleet_.shutdown();
  keeps_bodies_.store(false, std::memory_order_relaxed);
  body_reader_.reset();
  if (body_poster_) body_poster_->close();
  if (body_immediate_) body_immediate_->close();
}

queue::BodyReader& Relay::body_reader() {
  if (!body_reader_) {
    // A BodyReader of its own (thread and read-only connection), answering
    // through a LoopPoster of its own: the loop never waits for the disk.
    body_poster_ = std::make_unique<LoopPoster>(loop_);
    body_reader_ = std::make_unique<queue::BodyReader>(
        spool_path_, [p = body_poster_.get()](std::function<void()> fn) { p->post(std::move(fn)); });
    // A text handed over in memory is answered on this loop, in this turn.
    body_immediate_ = std::make_unique<LoopImmediate>(loop_);
    body_reader_->set_owner_poster([p = body_immediate_.get()](std::function<void()> fn) { p->post(std::move(fn)); });
    keeps_bodies_.store(true, std::memory_order_relaxed);
  }
  return *body_reader_;
}

void Relay::remember_body(const std::string& id, std::string text) {
  // Never the one to make the reader: its LoopPoster is a libuv handle, and
  // one made after stop() closed the last would keep the loop (and the
  // daemon) alive. The first delivery makes it; every later text is kept.
  if (body_reader_) body_reader_->remember(id, std::move(text));
}

void Relay::read_body(std::string id, std::int64_t from_seq, queue::BodyReader::Done done) {
  std::weak_ptr<bool> alive = alive_;
  body_reader().read(std::move(id), from_seq, [alive, done = std::move(done)](queue::BodyReader::Piece p) {
    if (alive.expired()) return;
    guard("body", [&] { done(std::move(p)); });   // runs in the poster's uv_async callback
  });
}

void Relay::run_file(std::function<void()> work, FileWorker::Done done) {
  if (!file_worker_) {
    file_poster_ = std::make_unique<LoopPoster>(loop_);
    file_worker_ = std::make_unique<FileWorker>([p = file_poster_.get()](std::function<void()> fn) { p->post(std::move(fn)); });
  }
  std::weak_ptr<bool> alive = alive_;
  file_worker_->run(std::move(work), [alive, done = std::move(done)](std::string error) {
    if (alive.expired()) return;
    if (done) guard("file", [&] { done(std::move(error)); });
  });
}

}  // namespace outbox::daemon
