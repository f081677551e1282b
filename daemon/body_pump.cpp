#include "daemon/body_pump.h"

#include <algorithm>

namespace outbox::daemon {

BodyPump::BodyPump(Io io, std::size_t high_water)
    : io_(std::move(io)), high_water_(high_water), self_(std::make_shared<BodyPump*>(this)) {}

BodyPump::~BodyPump() { *self_ = nullptr; }

void BodyPump::start(std::string id, std::string rewrite_account, bool mark_early) {
  ++generation_;
  id_ = std::move(id);
  next_seq_ = queue::BodyReader::kStart;
  marked_ = false;
  mark_asked_ = false;
  rewriter_.reset();
  if (!rewrite_account.empty()) rewriter_.emplace(std::move(rewrite_account));
  state_ = State::Reading;
  const std::uint64_t gen = generation_;
  if (mark_early) run_before_dot();
  if (generation_ == gen && state_ == State::Reading) request();   // the hook may have cancelled us
}

// Asks for the mark once per message; its proceed() sends the dot if the
// last piece is already out, or lets finish() send it.
void BodyPump::run_before_dot() {
  mark_asked_ = true;
  const std::uint64_t gen = generation_;
  std::weak_ptr<BodyPump*> weak = self_;
  auto proceed = [weak, gen] {
    auto self = weak.lock();
    if (!self || !*self) return;
    BodyPump& p = **self;
    if (p.generation_ != gen || p.marked_) return;
    p.marked_ = true;
    if (p.state_ != State::BeforeDot) return;   // the body is still going: finish() sends the dot
    p.state_ = State::Idle;
    p.io_.end();
  };
  if (before_dot) {
    before_dot(std::move(proceed));
  } else {
    proceed();
  }
}

void BodyPump::cancel() {
  ++generation_;
  state_ = State::Idle;
  rewriter_.reset();
  std::string().swap(scratch_);
  std::string().swap(held_);
  held_off_ = 0;
}

void BodyPump::on_drain() {
  if (state_ != State::WaitingDrain) return;
  if (held_off_ < held_.size()) {
    feed(generation_);
  } else {
    request();
  }
}

void BodyPump::request() {
  state_ = State::Reading;
  std::weak_ptr<BodyPump*> weak = self_;
  const std::uint64_t gen = generation_;
  io_.read(id_, next_seq_, [weak, gen](queue::BodyReader::Piece p) {
    auto self = weak.lock();
    if (!self || !*self) return;
    (*self)->on_piece(gen, std::move(p));
  });
}

void BodyPump::on_piece(std::uint64_t generation, queue::BodyReader::Piece piece) {
  if (generation != generation_ || state_ != State::Reading) return;
  using Status = queue::BodyReader::Status;
  if (piece.status == Status::Missing || piece.status == Status::Error) {
    state_ = State::Idle;
    rewriter_.reset();
    if (io_.failed) io_.failed(piece.status, piece.status == Status::Missing ? "message deleted during delivery" : piece.error);
    return;
  }
  ++pieces_;
  largest_piece_ = std::max(largest_piece_, piece.bytes.size());
  held_last_ = piece.status == Status::End;
  next_seq_ = piece.next_seq;
  if (rewriter_) {
    scratch_.clear();
    rewriter_->feed(piece.bytes, scratch_);
    if (held_last_) rewriter_->finish(scratch_);
    held_.swap(scratch_);
    if (scratch_.capacity() > 2 * queue::BodyReader::kPieceBytes) std::string().swap(scratch_);   // after a big header
  } else {
    held_ = std::move(piece.bytes);
  }
  held_off_ = 0;
  feed(generation);
}

// Hands the held text to the session a slice at a time: a piece from memory
// (BodyReader::remember) can be several slices long, and the link's queue
// stays near its high-water mark whatever the piece's size.
void BodyPump::feed(std::uint64_t generation) {
  while (held_off_ < held_.size()) {
    const std::size_t n = std::min(held_.size() - held_off_, kSlice);
    const bool wanted = io_.chunk(std::string_view(held_).substr(held_off_, n));
    if (generation != generation_) return;   // chunk() may have cancelled us
    if (!wanted) {
      cancel();
      return;
    }
    held_off_ += n;
    if (held_off_ < held_.size() && io_.pending() >= high_water_) {
      state_ = State::WaitingDrain;
      return;
    }
  }
  release_held();
  if (held_last_) {
    finish();
    return;
  }
  if (io_.pending() < high_water_) {
    request();
  } else {
    state_ = State::WaitingDrain;
  }
}

// A delivery between pieces or messages holds no text.
void BodyPump::release_held() {
  held_off_ = 0;
  std::string().swap(held_);
}

void BodyPump::finish() {
  state_ = State::BeforeDot;
  rewriter_.reset();
  if (marked_) {
    state_ = State::Idle;
    io_.end();
    return;
  }
  if (!mark_asked_) run_before_dot();   // otherwise its proceed() is on its way
}

}  // namespace outbox::daemon
