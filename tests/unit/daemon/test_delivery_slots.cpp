// DeliverySlots: what one upstream connection holds (unanswered, current,
// taken ahead) and the 'uncertain' marks before final dots (RFC 1047), as
// Delivery drives it. No socket, no spool: the decisions only.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "daemon/delivery_slots.h"

using namespace outbox::daemon;
using Take = DeliverySlots::Take;
using Next = DeliverySlots::Next;
using DotStep = DeliverySlots::DotStep;

namespace {

constexpr std::uint64_t kPiece = 1000;   // one piece, for these tests

Job job(const std::string& id, std::uint64_t size = 100) {
  Job j;
  j.msg.id = id;
  j.msg.size = size;
  j.msg.recipients = {"rcpt@example.net"};
  return j;
}

}  // namespace

TEST_CASE("delivery slots: where a handed message goes") {
  struct Row {
    const char* what;
    bool open, ready, with_current, with_queued;
    Take want;
  };
  const Row rows[] = {
      {"ready, empty", true, true, false, false, Take::SendNow},
      {"busy with one: taken ahead", true, false, true, false, Take::Queue},
      {"busy, one taken ahead already", true, false, true, true, Take::Park},
      {"not ready, nothing held (greeting)", true, false, false, false, Take::Park},
      {"connection ended", false, true, false, false, Take::Park},
      {"ended while busy", false, false, true, false, Take::Park},
  };
  for (const auto& r : rows) {
    CAPTURE(r.what);
    DeliverySlots s(kPiece);
    if (r.with_current) s.start(job("cur"));
    if (r.with_queued) s.queue(job("q"));
    CHECK(s.take(r.open, r.ready) == r.want);
  }
}

TEST_CASE("delivery slots: marks asked when taken, for one piece only, once") {
  DeliverySlots s(kPiece);
  CHECK(s.start(job("small", kPiece)));          // at the limit: one piece
  DeliverySlots big(kPiece);
  CHECK_FALSE(big.start(job("big", kPiece + 1)));   // marked at its dot instead

  // Taken ahead: asked when queued, not again when it starts.
  DeliverySlots ahead(kPiece);
  ahead.start(job("a"));
  CHECK(ahead.queue(job("b")));
  auto r = ahead.ready("a");
  REQUIRE(r.next == Next::SendQueued);
  CHECK(r.job->msg.id == "b");
  CHECK_FALSE(ahead.start(std::move(*r.job)));
  CHECK_FALSE(ahead.queued());

  DeliverySlots big_ahead(kPiece);
  big_ahead.start(job("a"));
  CHECK_FALSE(big_ahead.queue(job("b", kPiece + 1)));
}

TEST_CASE("delivery slots: asking for the next message ahead") {
  struct Row {
    const char* what;
    std::uint64_t size;
    bool open, queued, quit;
    bool want;
  };
  const Row rows[] = {
      {"one piece under way", 10, true, false, false, true},
      {"larger one under way", kPiece + 1, true, false, false, false},
      {"one taken ahead already", 10, true, true, false, false},
      {"a QUIT is pending", 10, true, false, true, false},
      {"the connection ended", 10, false, false, false, false},
  };
  for (const auto& r : rows) {
    CAPTURE(r.what);
    DeliverySlots s(kPiece);
    s.start(job("cur", r.size));
    if (r.queued) s.queue(job("q"));
    if (r.quit) CHECK_FALSE(s.quit(false));
    CHECK(s.wants_next(r.open) == r.want);
  }
  DeliverySlots idle(kPiece);
  CHECK_FALSE(idle.wants_next(true));   // nothing under way: the session's Ready says so
}

TEST_CASE("delivery slots: the session's Ready") {
  SUBCASE("a dot out with no reply yet: current becomes unanswered, the queued one follows") {
    DeliverySlots s(kPiece);
    s.start(job("a"));
    s.queue(job("b"));
    auto r = s.ready("a");
    CHECK(r.next == Next::SendQueued);
    REQUIRE(r.job);
    CHECK(r.job->msg.id == "b");
    CHECK_FALSE(s.current());   // until start()
    s.start(std::move(*r.job));
    // Both outcomes find their message: the unanswered one and the current.
    auto a = s.done("a");
    REQUIRE(a);
    CHECK(a->msg.id == "a");
    auto b = s.done("b");
    REQUIRE(b);
    CHECK(b->msg.id == "b");
    CHECK_FALSE(s.done("b"));
  }
  SUBCASE("nothing queued: ask for more") {
    DeliverySlots s(kPiece);
    s.start(job("a"));
    auto r = s.ready("a");
    CHECK(r.next == Next::AskForMore);
    CHECK_FALSE(r.job);
    CHECK_FALSE(s.current());
    CHECK(s.done("a"));
  }
  SUBCASE("a QUIT pending goes out after the dot, a queued message first") {
    DeliverySlots s(kPiece);
    s.start(job("a"));
    CHECK_FALSE(s.quit(false));
    CHECK(s.quit_pending());
    CHECK(s.ready("a").next == Next::Quit);

    DeliverySlots q(kPiece);
    q.start(job("a"));
    q.queue(job("b"));
    CHECK_FALSE(q.quit(false));
    auto r = q.ready("a");
    CHECK(r.next == Next::SendQueued);   // taken already: it is sent (or reported), not dropped
    q.start(std::move(*r.job));
    CHECK(q.ready("b").next == Next::Quit);
  }
  SUBCASE("the first Ready (greeting done) or an unknown id moves nothing") {
    DeliverySlots s(kPiece);
    CHECK(s.ready("").next == Next::AskForMore);
    s.start(job("a"));
    CHECK(s.ready("zzz").next == Next::AskForMore);
    REQUIRE(s.current());
    CHECK(s.current()->msg.id == "a");
  }
}

TEST_CASE("delivery slots: QUIT when idle") {
  DeliverySlots s(kPiece);
  CHECK(s.quit(true));    // ready, holding nothing: now
  DeliverySlots greeting(kPiece);
  CHECK_FALSE(greeting.quit(false));   // not ready yet: on the next Ready
  CHECK(greeting.ready("").next == Next::Quit);
}

TEST_CASE("delivery slots: a final dot waits for its mark, whichever comes first") {
  SUBCASE("the mark first: the dot goes at once") {
    DeliverySlots s(kPiece);
    REQUIRE(s.start(job("a")));
    CHECK_FALSE(s.mark_done("a", true, ""));   // kept for the dot
    bool went = false;
    auto d = s.before_dot([&] { went = true; });
    REQUIRE(d.step == DotStep::Go);
    CHECK(d.mark.ok);
    REQUIRE(d.proceed);
    d.proceed();
    CHECK(went);
  }
  SUBCASE("the dot first: it waits, and the mark's completion gives it back") {
    DeliverySlots s(kPiece);
    REQUIRE(s.start(job("a")));
    bool went = false;
    CHECK(s.before_dot([&] { went = true; }).step == DotStep::Wait);
    CHECK_FALSE(went);
    auto p = s.mark_done("a", true, "");
    REQUIRE(p);
    CHECK(p->mark.ok);
    p->proceed();
    CHECK(went);
  }
  SUBCASE("a failed mark is passed on with its error: no dot") {
    DeliverySlots s(kPiece);
    REQUIRE(s.start(job("a")));
    CHECK(s.before_dot([] {}).step == DotStep::Wait);
    auto p = s.mark_done("a", false, "disk I/O error");
    REQUIRE(p);
    CHECK_FALSE(p->mark.ok);
    CHECK(p->mark.err == "disk I/O error");

    DeliverySlots t(kPiece);
    REQUIRE(t.start(job("a")));
    t.mark_done("a", false, "full");
    auto d = t.before_dot([] {});
    CHECK(d.step == DotStep::Go);
    CHECK_FALSE(d.mark.ok);
    CHECK(d.mark.err == "full");
  }
  SUBCASE("a larger message asks at its dot, then waits") {
    DeliverySlots s(kPiece);
    REQUIRE_FALSE(s.start(job("big", kPiece * 5)));
    bool went = false;
    CHECK(s.before_dot([&] { went = true; }).step == DotStep::AskMark);
    auto p = s.mark_done("big", true, "");
    REQUIRE(p);
    p->proceed();
    CHECK(went);
  }
  SUBCASE("nothing current: nothing to do") {
    DeliverySlots s(kPiece);
    CHECK(s.before_dot([] {}).step == DotStep::None);
  }
  SUBCASE("a mark completing after its message was settled finds nothing") {
    DeliverySlots s(kPiece);
    REQUIRE(s.start(job("a")));
    CHECK(s.before_dot([] {}).step == DotStep::Wait);
    CHECK(s.done("a"));   // e.g. RCPT refused, or the connection closed
    CHECK_FALSE(s.mark_done("a", true, ""));
    // and a later message with a new mark is not confused with it
    REQUIRE(s.start(job("b")));
    CHECK(s.before_dot([] {}).step == DotStep::Wait);
    CHECK(s.mark_done("b", true, ""));
  }
  SUBCASE("the queued message's mark, back before it starts, is kept for its dot") {
    DeliverySlots s(kPiece);
    REQUIRE(s.start(job("a")));
    REQUIRE(s.queue(job("b")));
    CHECK_FALSE(s.mark_done("b", true, ""));
    CHECK_FALSE(s.mark_done("a", true, ""));
    CHECK(s.before_dot([] {}).step == DotStep::Go);   // a's
    auto r = s.ready("a");
    REQUIRE(r.next == Next::SendQueued);
    CHECK_FALSE(s.start(std::move(*r.job)));   // asked already
    CHECK(s.before_dot([] {}).step == DotStep::Go);   // b's, no new request
  }
}

TEST_CASE("delivery slots: the connection ends") {
  SUBCASE("the message taken ahead is handed back for its not-sent report, its mark forgotten") {
    DeliverySlots s(kPiece);
    s.start(job("a"));
    s.queue(job("b"));
    auto q = s.take_queued();
    REQUIRE(q);
    CHECK(q->msg.id == "b");
    CHECK_FALSE(s.queued());
    CHECK_FALSE(s.take_queued());
    CHECK_FALSE(s.mark_done("b", true, ""));   // its late completion finds nothing
  }
  SUBCASE("the ones under way go back: unanswered, then current") {
    DeliverySlots s(kPiece);
    s.start(job("a"));
    s.queue(job("b"));
    auto r = s.ready("a");
    s.start(std::move(*r.job));
    CHECK_FALSE(s.take_queued());
    auto held = s.take_held();
    REQUIRE(held.size() == 2);
    CHECK(held[0].msg.id == "a");
    CHECK(held[1].msg.id == "b");
    CHECK(s.take_held().empty());
    CHECK_FALSE(s.current());
    CHECK_FALSE(s.done("a"));
  }
  SUBCASE("holding nothing: nothing to give back") {
    DeliverySlots s(kPiece);
    CHECK_FALSE(s.take_queued());
    CHECK(s.take_held().empty());
  }
}
