#include "queue/body_reader.h"

#include <exception>

#include "queue/spool.h"

namespace outbox::queue {

BodyReader::BodyReader(std::string spool_path, Poster post, std::size_t piece_bytes)
    : path_(std::move(spool_path)), post_(std::move(post)), piece_bytes_(piece_bytes == 0 ? 1 : piece_bytes) {
  thread_ = std::thread([this] { run(); });
}

BodyReader::~BodyReader() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    queue_.clear();
  }
  cv_.notify_all();
  thread_.join();
}

void BodyReader::read(std::string id, std::int64_t from_seq, Done done) {
  {
    std::lock_guard lock(mu_);
    queue_.push_back(Request{std::move(id), from_seq, std::move(done)});
  }
  cv_.notify_one();
}

void BodyReader::run() {
  for (;;) {
    Request r;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      r = std::move(queue_.front());
      queue_.pop_front();
    }
    Piece p = serve(r);
    post_([done = std::move(r.done), p = std::move(p)]() mutable { done(std::move(p)); });
  }
}

BodyReader::Piece BodyReader::serve(const Request& r) {
  Piece p;
  try {
    if (!spool_) spool_ = Spool::open(path_, Spool::Mode::ReadOnly);
    p.bytes.reserve(piece_bytes_);
    auto part = spool_->read_body_part(r.id, r.from_seq, piece_bytes_, [&](std::string_view b) { p.bytes.append(b); });
    p.next_seq = part.next_seq;
    switch (part.status) {
      case Spool::BodyPart::Status::Missing: p.status = Status::Missing; p.bytes.clear(); break;
      case Spool::BodyPart::Status::More: p.status = Status::More; break;
      case Spool::BodyPart::Status::End: p.status = Status::End; break;
    }
  } catch (const std::exception& e) {
    spool_.reset();   // reopen on the next request
    p = Piece{};
    p.status = Status::Error;
    p.error = e.what();
  }
  return p;
}

}  // namespace outbox::queue
