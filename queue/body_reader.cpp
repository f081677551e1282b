#include "queue/body_reader.h"

#include <algorithm>
#include <exception>

#include "queue/spool.h"
#include "queue/thread_role.h"

namespace outbox::queue {

BodyReader::BodyReader(std::string spool_path, Poster post, std::size_t piece_bytes)
    : path_(std::move(spool_path)), post_(std::move(post)), piece_bytes_(piece_bytes == 0 ? 1 : piece_bytes) {
  thread_ = std::thread([this] {
    set_thread_role("body-reader", ThreadRole::Background);
    run();
  });
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

void BodyReader::remember(std::string id, std::string text) {
  if (text.size() > kRememberTextBytes || fresh_.count(id)) return;
  // Full: the relay reads in about the order it was handed texts, so the
  // oldest are the next it wants. Only a text passed over (later ones read
  // since, by more than the deliveries in flight could explain: a deferred
  // or held message) makes room; otherwise the new text is not kept, and is
  // read from the spool when its turn comes. (Forgetting the oldest instead
  // threw away, under a backlog, every text just before it was wanted.)
  while (fresh_bytes_ + text.size() > kRememberBytes) {
    if (fresh_order_.empty()) return;
    auto it = fresh_.find(fresh_order_.front());
    if (it != fresh_.end()) {
      if (it->second.seq + kPassedOver >= last_read_seq_) return;
      fresh_bytes_ -= it->second.text.size();
      fresh_.erase(it);
    }
    fresh_order_.pop_front();
  }
  // Ids read already leave their place in fresh_order_ behind; it never
  // holds more than the map's worth of them plus one pass of reads.
  if (fresh_order_.size() > 2 * fresh_.size() + 64) {
    std::deque<std::string> live;
    for (auto& i : fresh_order_)
      if (fresh_.count(i)) live.push_back(std::move(i));
    fresh_order_.swap(live);
  }
  fresh_bytes_ += text.size();
  fresh_.emplace(id, Fresh{std::move(text), ++remember_seq_});
  fresh_order_.push_back(std::move(id));
}

void BodyReader::read(std::string id, std::int64_t from_seq, Done done) {
  if (from_seq == kStart && !fresh_.empty()) {
    if (auto it = fresh_.find(id); it != fresh_.end()) {
      Piece p;
      p.status = Status::End;
      p.bytes = std::move(it->second.text);
      last_read_seq_ = std::max(last_read_seq_, it->second.seq);
      fresh_bytes_ -= p.bytes.size();
      fresh_.erase(it);
      auto answer = [done = std::move(done), p = std::move(p)]() mutable { done(std::move(p)); };
      if (owner_post_) owner_post_(std::move(answer)); else post_(std::move(answer));
      return;
    }
  }
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
