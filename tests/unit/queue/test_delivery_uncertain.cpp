// DeliveryStore: "outcome uncertain" as a state (RFC 1047), recovery while
// running, typed waiting, due order from messages_due.
#include <doctest/doctest.h>

#include "queue/delivery_store.h"
#include "queue/spool.h"
#include "unit/queue/helpers.h"

using namespace outbox::queue;
using outbox::queue::test::new_message;
using outbox::queue::test::TempDir;
using outbox::queue::test::count;

namespace {

void submit(Spool& s, const std::string& id, std::vector<std::string> rcpts, std::int64_t now) {
  s.begin();
  s.create_incoming(new_message(id, std::move(rcpts), now, "app@example.test"));
  s.append_chunk(id, 0, "Subject: hi\r\n\r\nbody\r\n");
  s.finalize(id, "", 21, now);
  s.commit();
}

template <typename F>
auto txn(Spool& s, F&& f) {
  s.begin();
  if constexpr (std::is_void_v<decltype(f())>) {
    f();
    s.commit();
  } else {
    auto r = f();
    s.commit();
    return r;
  }
}

std::string rstate(Spool& s, const std::string& id, const std::string& addr) {
  auto m = s.get(id);
  for (const auto& r : m->recipients)
    if (r.address == addr) return r.state;
  return "<none>";
}

RecipientOutcome deferred(std::string a, std::int64_t next, bool uncertain) {
  RecipientOutcome o;
  o.address = std::move(a);
  o.result = RecipientResult::Deferred;
  o.reply = "4.4.2 connection closed after the final dot";
  o.next_attempt = next;
  o.uncertain = uncertain;
  return o;
}

}  // namespace

TEST_CASE("uncertain: mark_dot_sent, a crash, recovery, the next claim says which were uncertain") {
  TempDir dir;
  auto s = Spool::open(dir.file("spool.db"));
  DeliveryStore ds(*s);
  const std::string id = "00000000010000";
  submit(*s, id, {"a@x.test", "b@x.test", "c@x.test"}, 1000);
  auto due = txn(*s, [&] { return ds.claim_due(1000, 10); });
  REQUIRE(due.size() == 1);
  CHECK(due[0].uncertain.empty());
  // c was answered before the dot (sent at RCPT time would not happen; a 550 at RCPT does).
  txn(*s, [&] {
    DeliveryReport rep;
    rep.id = id;
    rep.time = 1100;
    rep.outcome = "bounced";
    rep.recipients = {RecipientOutcome{"c@x.test", RecipientResult::Failed, "550 5.1.1 no", {}}};
    ds.apply(rep);
  });
  // apply() made it deferred; the relay still holds it: claim it back as in flight.
  txn(*s, [&] { ds.claim_due(1100, 10); });
  CHECK(txn(*s, [&] { return ds.mark_dot_sent(id, {"a@x.test", "b@x.test", "c@x.test"}, "gmail", 1200); }) == 2);
  CHECK(rstate(*s, id, "a@x.test") == "uncertain");
  CHECK(rstate(*s, id, "b@x.test") == "uncertain");
  CHECK(rstate(*s, id, "c@x.test") == "failed");   // only pending ones become uncertain
  CHECK(outbox::queue::test::query1(s->handle(), "SELECT wait_upstream FROM messages WHERE id = '" + id + "'") ==
        "gmail");
  // An active message is not claimed; uncertain recipients are not "pending" for next_due either.
  CHECK(txn(*s, [&] { return ds.claim_due(99999, 10); }).empty());

  // kill -9 here. At restart nothing is in flight.
  auto rec = txn(*s, [&] { return ds.recover_active(2000, UncertainPolicy::Resend, {}); });
  CHECK(rec.interrupted == std::vector<std::string>{id});
  REQUIRE(rec.uncertain.size() == 1);
  CHECK(rec.uncertain[0].first == id);
  CHECK(rec.uncertain[0].second == std::vector<std::string>{"a@x.test", "b@x.test"});
  CHECK(rec.held.empty());
  CHECK(s->get(id)->state == "deferred");
  CHECK(ds.next_due() == 2000);
  // Still uncertain in the spool (outboxctl show says so) until an outcome.
  CHECK(rstate(*s, id, "a@x.test") == "uncertain");

  due = txn(*s, [&] { return ds.claim_due(2000, 10); });
  REQUIRE(due.size() == 1);
  CHECK(due[0].recipients == std::vector<std::string>{"a@x.test", "b@x.test"});
  CHECK(due[0].uncertain == std::vector<std::string>{"a@x.test", "b@x.test"});

  // The resend: a delivered, b's connection lost after the dot again: b stays uncertain.
  auto after = txn(*s, [&] {
    DeliveryReport rep;
    rep.id = id;
    rep.time = 2100;
    rep.outcome = "possible_duplicate";
    rep.recipients = {RecipientOutcome{"a@x.test", RecipientResult::Sent, "250 ok", {}}, deferred("b@x.test", 5000, true)};
    return ds.apply(rep);
  });
  CHECK(after.state == "deferred");
  CHECK(rstate(*s, id, "a@x.test") == "sent");
  CHECK(rstate(*s, id, "b@x.test") == "uncertain");
  CHECK(s->get(id)->next_attempt == 5000);
  due = txn(*s, [&] { return ds.claim_due(5000, 10); });
  REQUIRE(due.size() == 1);
  CHECK(due[0].uncertain == std::vector<std::string>{"b@x.test"});
  // A plain temporary failure clears uncertain: back to pending.
  txn(*s, [&] {
    DeliveryReport rep;
    rep.id = id;
    rep.time = 5100;
    rep.outcome = "deferred";
    rep.recipients = {deferred("b@x.test", 9000, false)};
    ds.apply(rep);
  });
  CHECK(rstate(*s, id, "b@x.test") == "pending");
  due = txn(*s, [&] { return ds.claim_due(9000, 10); });
  REQUIRE(due.size() == 1);
  CHECK(due[0].uncertain.empty());
  after = txn(*s, [&] {
    DeliveryReport rep;
    rep.id = id;
    rep.time = 9100;
    rep.outcome = "delivered";
    rep.recipients = {RecipientOutcome{"b@x.test", RecipientResult::Sent, "250 ok", {}}};
    return ds.apply(rep);
  });
  CHECK(after.state == "failed");   // c bounced
  CHECK(count(s->handle(), "SELECT COUNT(*) FROM recipients WHERE state = 'uncertain'") == 0);
}

TEST_CASE("uncertain: recovery while running skips what is in flight; Hold holds only uncertain messages") {
  TempDir dir;
  auto s = Spool::open(dir.file("spool.db"));
  DeliveryStore ds(*s);
  const std::string flying = "00000000010000", lost = "00000000020000", dotted = "00000000030000";
  for (const auto& id : {flying, lost, dotted}) submit(*s, id, {"a@x.test"}, 1000);
  REQUIRE(txn(*s, [&] { return ds.claim_due(1000, 10); }).size() == 3);
  txn(*s, [&] { ds.mark_dot_sent(dotted, {"a@x.test"}, "relay", 1100); });
  txn(*s, [&] { ds.mark_dot_sent(flying, {"a@x.test"}, "relay", 1100); });

  SUBCASE("Resend") {
    auto rec = txn(*s, [&] { return ds.recover_active(2000, UncertainPolicy::Resend, {flying}); });
    CHECK(rec.interrupted == std::vector<std::string>{lost, dotted});
    REQUIRE(rec.uncertain.size() == 1);
    CHECK(rec.uncertain[0].first == dotted);
    CHECK(rec.held.empty());
    CHECK(s->get(flying)->state == "active");
    CHECK(s->get(lost)->state == "deferred");
    CHECK(s->get(dotted)->state == "deferred");
    auto due = txn(*s, [&] { return ds.claim_due(2000, 10); });
    REQUIRE(due.size() == 2);
  }
  SUBCASE("Hold") {
    auto rec = txn(*s, [&] { return ds.recover_active(2000, UncertainPolicy::Hold, {flying}); });
    CHECK(rec.interrupted == std::vector<std::string>{lost, dotted});
    CHECK(rec.held == std::vector<std::string>{dotted});
    CHECK(s->get(dotted)->state == "held");
    CHECK(s->get(lost)->state == "deferred");
    auto due = txn(*s, [&] { return ds.claim_due(2000, 10); });
    REQUIRE(due.size() == 1);
    CHECK(due[0].id == lost);
    // The operator releases it: it goes out again, said to be uncertain.
    CHECK(s->release(dotted));
    due = txn(*s, [&] { return ds.claim_due(outbox::queue::test::now_us(), 10); });
    REQUIRE(due.size() == 1);
    CHECK(due[0].id == dotted);
    CHECK(due[0].uncertain == std::vector<std::string>{"a@x.test"});
  }
  // The compatible overload: nothing excluded, Resend.
  CHECK(txn(*s, [&] { return ds.recover_active(3000); }) >= 1);
  CHECK(s->get(flying)->state == "deferred");
}

TEST_CASE("waiting is typed: release_waiting looks at wait_reason, not at last_error") {
  TempDir dir;
  auto s = Spool::open(dir.file("spool.db"));
  DeliveryStore ds(*s);
  const std::string noroute = "00000000010000", suspended = "00000000020000", backoff = "00000000030000";
  for (const auto& id : {noroute, suspended, backoff}) submit(*s, id, {"a@x.test"}, 1000);
  std::vector<std::string> refused;
  auto due = txn(*s, [&] {
    return ds.claim_due(1000, 10, [&](const DueMessage& m) { return m.id != noroute; }, 50000, &refused);
  });
  CHECK(due.size() == 2);
  CHECK(refused == std::vector<std::string>{noroute});
  CHECK(s->get(noroute)->last_error == "no route");
  txn(*s, [&] {
    ds.unclaim(suspended, 60000, "upstream \"relay\" suspended: 421 busy", WaitReason::UpstreamSuspended);
    // Its own backoff, whatever last_error says: not released.
    ds.unclaim(backoff, 70000, "upstream \"relay\" suspended: looks the same");
  });
  auto reason = [&](const std::string& id) {
    return outbox::queue::test::query1(s->handle(), "SELECT wait_reason FROM messages WHERE id = '" + id + "'");
  };
  CHECK(reason(noroute) == std::to_string(static_cast<int>(WaitReason::NoRoute)));
  CHECK(reason(suspended) == std::to_string(static_cast<int>(WaitReason::UpstreamSuspended)));
  CHECK(reason(backoff) == "0");
  CHECK(txn(*s, [&] { return ds.release_waiting(2000); }) == 2);
  CHECK(s->get(noroute)->next_attempt == 2000);
  CHECK(s->get(suspended)->next_attempt == 2000);
  CHECK(s->get(backoff)->next_attempt == 70000);
  CHECK(reason(noroute) == "0");
  // Claimed and attempted: the reason is gone with the wait.
  due = txn(*s, [&] { return ds.claim_due(2000, 10); });
  CHECK(due.size() == 2);
}

TEST_CASE("due order: earliest next attempt first, limit respected, next_due is the first entry") {
  TempDir dir;
  auto s = Spool::open(dir.file("spool.db"));
  DeliveryStore ds(*s);
  // Submitted out of due order; finalize() makes next_attempt = the given time.
  const std::vector<std::pair<std::string, std::int64_t>> msgs = {
      {"00000000010000", 5000}, {"00000000020000", 1000}, {"00000000030000", 3000}, {"00000000040000", 9000}};
  for (const auto& [id, t] : msgs) submit(*s, id, {"a@x.test"}, t);
  CHECK(ds.next_due() == 1000);
  auto due = txn(*s, [&] { return ds.claim_due(6000, 2); });
  REQUIRE(due.size() == 2);
  CHECK(due[0].id == "00000000020000");
  CHECK(due[1].id == "00000000030000");
  CHECK(ds.next_due() == 5000);
  due = txn(*s, [&] { return ds.claim_due(6000, 10); });
  REQUIRE(due.size() == 1);
  CHECK(due[0].id == "00000000010000");
  CHECK(ds.next_due() == 9000);
}

TEST_CASE("uncertain: a connection lost after the dot under Hold holds the message, due at once when released") {
  TempDir dir;
  auto s = Spool::open(dir.file("spool.db"));
  DeliveryStore ds(*s);
  const std::string id = "00000000010000";
  submit(*s, id, {"a@x.test", "b@x.test"}, 1000);
  txn(*s, [&] { ds.claim_due(1000, 10); });
  txn(*s, [&] { ds.mark_dot_sent(id, {"a@x.test", "b@x.test"}, "relay", 1100); });
  DeliveryReport rep;
  rep.id = id;
  rep.time = 1200;
  rep.outcome = "possible_duplicate";
  rep.recipients = {deferred("a@x.test", 90000, true), deferred("b@x.test", 90000, true)};
  SUBCASE("resend: deferred, still uncertain") {
    auto after = txn(*s, [&] { return ds.apply(rep); });
    CHECK(after.state == "deferred");
    CHECK(s->get(id)->next_attempt == 90000);
  }
  SUBCASE("hold") {
    rep.hold_uncertain = true;
    auto after = txn(*s, [&] { return ds.apply(rep); });
    CHECK(after.state == "held");
    CHECK(txn(*s, [&] { return ds.claim_due(99999999, 10); }).empty());
    CHECK(s->release(id));
    auto due = txn(*s, [&] { return ds.claim_due(outbox::queue::test::now_us(), 10); });
    REQUIRE(due.size() == 1);
    CHECK(due[0].uncertain == std::vector<std::string>{"a@x.test", "b@x.test"});
  }
  CHECK(rstate(*s, id, "a@x.test") == "uncertain");
}

TEST_CASE("hold_uncertain does not hold a message whose outcome is known") {
  TempDir dir;
  auto s = Spool::open(dir.file("spool.db"));
  DeliveryStore ds(*s);
  const std::string id = "00000000010000";
  submit(*s, id, {"a@x.test"}, 1000);
  txn(*s, [&] { ds.claim_due(1000, 10); });
  txn(*s, [&] { ds.mark_dot_sent(id, {"a@x.test"}, "relay", 1100); });
  DeliveryReport rep;
  rep.id = id;
  rep.time = 1200;
  rep.outcome = "deferred";
  rep.hold_uncertain = true;
  rep.recipients = {deferred("a@x.test", 5000, false)};   // a 451 to the dot: known, not uncertain
  CHECK(txn(*s, [&] { return ds.apply(rep); }).state == "deferred");
  CHECK(rstate(*s, id, "a@x.test") == "pending");
}

TEST_CASE("claim_due never claims a message none of whose recipients is due") {
  TempDir dir;
  auto s = Spool::open(dir.file("spool.db"));
  DeliveryStore ds(*s);
  const std::string id = "00000000010000";
  submit(*s, id, {"a@x.test"}, 1000);
  // A stale message time (the recipient waits longer).
  outbox::queue::test::exec(s->handle(), "UPDATE recipients SET next_attempt = 8000");
  CHECK(txn(*s, [&] { return ds.claim_due(2000, 10); }).empty());
  CHECK(s->get(id)->state == "queued");
  CHECK(ds.next_due() == 8000);
  CHECK(txn(*s, [&] { return ds.claim_due(8000, 10); }).size() == 1);
}
