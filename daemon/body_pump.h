// BodyPump: streams one message's text from the spool to the upstream with
// bounded memory and back-pressure (issue 8 items 5 and 8).
//
//   BodyReader piece (<= 64 KiB + one chunk row; from memory <= 256 KiB,
//     handed on in slices of <= 64 KiB, the next after a drain)
//     -> FromRewriter (from_header = "rewrite"; buffers the header block only)
//     -> ClientSession::body_chunk (dot-stuffing; Sends of <= 64 KiB)
//     -> UpstreamLink (TLS records of <= 16 KiB)
//
// The next piece is asked for only when the link's queued bytes are below
// UpstreamLink::kHighWater; otherwise the pump waits for the link's on_drain.
// So a delivery holds about one piece plus the link's high-water mark, not
// the message. before_dot(proceed) is the place to record "dot sent" in the
// spool; the final dot goes only once both the last piece is out and
// proceed() has run. It runs after the last piece, or, when start() is told
// to mark early (a small message), at the start, so that the spool's commit
// overlaps the body instead of following it.
//
// The pump talks to its owner through Io callbacks, so it knows nothing of
// the relay's Delivery and can be tested with a real reader and session.
// Loop thread only.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "protocol/from_rewrite.h"
#include "queue/body_reader.h"

namespace outbox::daemon {

class BodyPump {
 public:
  struct Io {
    // Ask the BodyReader for a piece; the answer comes back on the loop.
    std::function<void(std::string id, std::int64_t from_seq, queue::BodyReader::Done)> read;
    // Hand text to ClientSession::body_chunk and send its actions. false:
    // the session no longer wants the body (the connection failed): stop.
    std::function<bool(std::string_view)> chunk;
    // ClientSession::body_end() and send its actions.
    std::function<void()> end;
    // UpstreamLink::pending_write_bytes(); 0 when there is no link.
    std::function<std::size_t()> pending;
    // The message vanished (deleted meanwhile) or the spool failed.
    std::function<void(queue::BodyReader::Status, std::string why)> failed;
  };
  // The hook before the final dot; default: proceed at once.
  using BeforeDot = std::function<void(std::function<void()> proceed)>;

  explicit BodyPump(Io io, std::size_t high_water);
  ~BodyPump();
  BodyPump(const BodyPump&) = delete;
  BodyPump& operator=(const BodyPump&) = delete;

  BeforeDot before_dot;

  // NeedBody: start streaming message id; rewrite_account non-empty turns
  // the From: rewrite on; mark_early runs before_dot now rather than after
  // the last piece. A pump still busy with an earlier message drops it.
  void start(std::string id, std::string rewrite_account, bool mark_early = false);
  // The link drained (UpstreamLink::Handler::on_drain).
  void on_drain();
  void cancel();                       // stop; late answers are ignored
  bool busy() const { return state_ != State::Idle; }
  std::uint64_t pieces_read() const { return pieces_; }
  std::size_t largest_piece() const { return largest_piece_; }

 private:
  enum class State { Idle, Reading, WaitingDrain, BeforeDot };
  void request();
  void on_piece(std::uint64_t generation, queue::BodyReader::Piece piece);
  void feed(std::uint64_t generation);
  void release_held();
  void finish();
  void run_before_dot();

  Io io_;
  std::size_t high_water_;
  State state_ = State::Idle;
  bool marked_ = false;                // before_dot's proceed() ran for this generation
  bool mark_asked_ = false;            // before_dot was called for this generation
  std::string id_;
  std::int64_t next_seq_ = queue::BodyReader::kStart;
  std::optional<protocol::FromRewriter> rewriter_;
  std::string scratch_;                // rewriter output, reused
  std::string held_;                   // the piece being handed over, from held_off_
  std::size_t held_off_ = 0;
  bool held_last_ = false;             // held_ is the message's last piece
  static constexpr std::size_t kSlice = queue::BodyReader::kPieceBytes;
  std::uint64_t generation_ = 0;       // answers for an older start() are stale
  std::uint64_t pieces_ = 0;
  std::size_t largest_piece_ = 0;
  std::shared_ptr<BodyPump*> self_;    // weak copies in callbacks: null once destroyed
};

}  // namespace outbox::daemon
