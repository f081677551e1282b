// DeliverySlots: the messages one upstream connection holds, and the
// 'uncertain' mark each must have on disk before its final dot (RFC 1047).
// Pure bookkeeping, no I/O: Delivery (daemon/delivery.h) asks it what to do
// and does it (the session, the link, the writer), so the rules below are
// table-tested without a socket (tests/unit/daemon/test_delivery_slots.cpp).
//
// A connection holds up to three messages:
//   unanswered  its final dot is out, its reply has not come (the next
//               message's commands went with that dot, RFC 2920 §3.1);
//   current     being sent (commands, body);
//   queued      taken ahead while current (of one piece) was still being
//               sent: nothing of it has gone out; it follows on the
//               session's next Ready. Its mark commits meanwhile, so its own
//               final dot does not wait for the writer (under load a commit
//               takes longer than one message's turn on the connection).
//
// Marks: a message of one piece asks for its mark when it is taken (current
// or queued); a larger one at its final dot, after its last piece, so that a
// crash while it streams does not leave it "possibly delivered". The dot
// goes only once the mark's commit has come back.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "queue/body_reader.h"
#include "queue/delivery_store.h"

namespace outbox::daemon {

// A claimed message and the route (upstream names) it was claimed under.
struct Job {
  queue::DueMessage msg;
  std::vector<std::string> route;
  std::int64_t handed_at = 0;   // µs: when a connection took it
};

class DeliverySlots {
 public:
  // Messages up to one_piece octets are read and sent in one piece.
  explicit DeliverySlots(std::uint64_t one_piece = queue::BodyReader::kPieceBytes) : one_piece_(one_piece) {}

  // --- handing over ------------------------------------------------------
  enum class Take {
    SendNow,   // the session is ready: start() it
    Queue,     // one is under way and none is queued: queue() it
    Park,      // back to the queue, untouched (the connection is ending)
  };
  // open: neither the connection nor its session has finished.
  Take take(bool open, bool session_ready) const;
  // The job becomes current. True: its mark is to be asked for now (one
  // piece, and not asked already when it was queued); counted as asked.
  bool start(Job job);
  // The job is taken ahead. True: its mark is to be asked for now (one
  // piece); counted as asked.
  bool queue(Job job);
  // Ask the scheduler for the next message while current is still under
  // way: current of one piece, none queued, no QUIT pending, open.
  bool wants_next(bool open) const;

  // --- the session's Ready: the previous final dot (if any) is out --------
  enum class Next {
    SendQueued,   // the message taken ahead goes now (start() it)
    Quit,         // a QUIT was asked for while one was under way
    AskForMore,   // tell the scheduler this connection is ready
  };
  struct AfterReady {
    Next next;
    std::optional<Job> job;   // SendQueued: the message taken ahead
  };
  // unanswered_id: the message whose final dot went out with no reply yet
  // ("" when none); if it is current, it becomes unanswered.
  AfterReady ready(std::string_view unanswered_id);

  // The scheduler said QUIT. True: QUIT now (ready and holding nothing);
  // false: it is pending until the message under way has its final dot out.
  bool quit(bool session_ready);
  bool quit_pending() const { return quit_pending_; }

  // --- a message's outcome (MessageDone) ----------------------------------
  // The unanswered or current message with this id, its mark forgotten (a
  // late commit finds nothing); nullopt if this connection does not hold it.
  std::optional<Job> done(std::string_view id);

  // --- marks ---------------------------------------------------------------
  struct Mark {
    bool ok = false;
    std::string err;
  };
  struct Proceed {
    Mark mark;
    std::function<void()> proceed;   // the final dot's continuation
  };
  // A mark's commit came back. A dot waiting for it: returned, to go on
  // (or not, if !ok); otherwise it is kept for the dot (nullopt).
  std::optional<Proceed> mark_done(const std::string& id, bool ok, std::string err);
  enum class DotStep {
    None,      // nothing is current (the connection ended meanwhile)
    AskMark,   // no mark asked for yet (a larger message): ask now; the dot waits
    Wait,      // the mark is not back yet; the dot waits for mark_done
    Go,        // the mark is back: the dot may go (if its mark is ok)
  };
  struct Dot {
    DotStep step = DotStep::None;
    Mark mark;                       // Go
    std::function<void()> proceed;   // Go: given back, to call (if mark.ok)
  };
  // current's body is out and its final dot is next.
  Dot before_dot(std::function<void()> proceed);

  // --- the connection ends -----------------------------------------------
  std::optional<Job> take_queued();   // its mark forgotten
  std::vector<Job> take_held();       // unanswered, then current

  const std::optional<Job>& current() const { return current_; }
  const std::optional<Job>& queued() const { return queued_; }
  bool one_piece(const Job& job) const { return job.msg.size <= one_piece_; }

 private:
  struct MarkState {
    bool done = false;
    Mark result;
    std::function<void()> proceed;   // before_dot came first: the dot waits here
  };
  std::uint64_t one_piece_;
  std::optional<Job> unanswered_;
  std::optional<Job> current_;
  std::optional<Job> queued_;
  std::map<std::string, MarkState, std::less<>> marks_;   // by id: current's, queued's
  bool quit_pending_ = false;
};

}  // namespace outbox::daemon
