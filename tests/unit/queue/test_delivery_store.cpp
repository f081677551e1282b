// DeliveryStore: the relay's view of the spool (due work, outcomes, recovery).
#include <doctest/doctest.h>

#include "queue/delivery_store.h"
#include "queue/spool.h"
#include "unit/queue/helpers.h"

using namespace outbox::queue;
using outbox::queue::test::new_message;
using outbox::queue::test::TempDir;

namespace {

void submit(Spool& s, const std::string& id, std::vector<std::string> rcpts, std::int64_t now,
            const std::string& sender = "app@example.test") {
  s.begin();
  s.create_incoming(new_message(id, std::move(rcpts), now, sender));
  s.append_chunk(id, 0, "Subject: hi\r\nFrom: app@example.test\r\n\r\nbody\r\n");
  s.finalize(id, "Received: x\r\n", 60, now);
  s.commit();
}

RecipientOutcome out(std::string a, RecipientResult r, std::string reply, std::optional<std::int64_t> next = {}) {
  return RecipientOutcome{std::move(a), r, std::move(reply), next};
}

}  // namespace

TEST_CASE("delivery store: claim due work, only pending and due recipients, state active") {
  TempDir dir;
  auto s = Spool::open(dir.file("spool.db"));
  DeliveryStore ds(*s);
  submit(*s, "00000000010000", {"a@x.test", "b@x.test"}, 1000);
  submit(*s, "00000000020000", {"c@x.test"}, 5000);
  CHECK(ds.next_due() == 1000);

  s->begin();
  auto due = ds.claim_due(2000, 10);
  s->commit();
  REQUIRE(due.size() == 1);
  CHECK(due[0].id == "00000000010000");
  CHECK(due[0].recipients == std::vector<std::string>{"a@x.test", "b@x.test"});
  CHECK(s->get("00000000010000")->state == "active");
  // An active message is not claimed twice.
  s->begin();
  CHECK(ds.claim_due(2000, 10).empty());
  s->commit();
  CHECK(ds.next_due() == 5000);
}

TEST_CASE("delivery store: per-recipient outcomes; a sent recipient is never pending again") {
  TempDir dir;
  auto s = Spool::open(dir.file("spool.db"));
  DeliveryStore ds(*s);
  submit(*s, "00000000010000", {"a@x.test", "b@x.test", "c@x.test"}, 1000);
  s->begin();
  ds.claim_due(1000, 10);
  DeliveryReport rep;
  rep.id = "00000000010000";
  rep.upstream = "relay";
  rep.time = 2000;
  rep.outcome = "deferred";
  rep.recipients = {out("a@x.test", RecipientResult::Sent, "250 2.0.0 ok"),
                    out("b@x.test", RecipientResult::Failed, "550 5.1.1 no such user"),
                    out("c@x.test", RecipientResult::Deferred, "451 4.3.0 later", 9000)};
  rep.last_error = "451 4.3.0 later";
  auto after = ds.apply(rep);
  s->commit();
  CHECK(after.state == "deferred");
  CHECK(after.attempts == 1);
  CHECK(after.newly_failed == std::vector<std::string>{"b@x.test"});
  auto m = s->get("00000000010000");
  REQUIRE(m);
  CHECK(m->next_attempt == 9000);
  CHECK(m->last_error == "451 4.3.0 later");
  CHECK(m->recipients[0].state == "sent");
  CHECK(m->recipients[1].state == "failed");
  CHECK(m->recipients[2].state == "pending");
  CHECK(m->history.size() == 1);

  // A stale report that tries to resend a (already sent) recipient changes nothing.
  s->begin();
  DeliveryReport again = rep;
  again.recipients = {out("a@x.test", RecipientResult::Failed, "550 nope")};
  again.count_attempt = false;
  ds.apply(again);
  s->commit();
  CHECK(s->get("00000000010000")->recipients[0].state == "sent");

  // The last pending recipient delivered: the message is failed (one bounced), not sent.
  s->begin();
  ds.claim_due(9000, 10);
  DeliveryReport last;
  last.id = "00000000010000";
  last.time = 9100;
  last.outcome = "delivered";
  last.recipients = {out("c@x.test", RecipientResult::Sent, "250 ok")};
  after = ds.apply(last);
  s->commit();
  CHECK(after.state == "failed");
  // What apply() reports is what it wrote (it computes it, it does not read it back).
  CHECK(after.attempts == s->get("00000000010000")->attempts);
  CHECK(after.attempts == 2);   // the stale report did not count
  CHECK(after.state == s->get("00000000010000")->state);
  CHECK_FALSE(s->get("00000000010000")->next_attempt.has_value());
  CHECK_FALSE(ds.next_due().has_value());
}

TEST_CASE("delivery store: recovery after a crash, unclaim, purge, deleted meanwhile") {
  TempDir dir;
  auto s = Spool::open(dir.file("spool.db"));
  DeliveryStore ds(*s);
  submit(*s, "00000000010000", {"a@x.test"}, 1000);
  submit(*s, "00000000020000", {"b@x.test"}, 1000);
  s->begin();
  CHECK(ds.claim_due(1000, 10).size() == 2);
  s->commit();

  s->begin();
  ds.unclaim("00000000020000", 4000);
  CHECK(ds.recover_active(3000) == 1);
  s->commit();
  CHECK(s->get("00000000010000")->state == "deferred");
  CHECK(s->get("00000000010000")->next_attempt == 3000);
  CHECK(s->get("00000000020000")->state == "queued");
  CHECK(s->get("00000000020000")->next_attempt == 4000);

  CHECK(s->remove(std::string_view("00000000020000")));
  s->begin();
  DeliveryReport rep;
  rep.id = "00000000020000";
  rep.time = 5000;
  rep.outcome = "delivered";
  rep.recipients = {out("b@x.test", RecipientResult::Sent, "250 ok")};
  CHECK_FALSE(ds.apply(rep).exists);

  rep.id = "00000000010000";
  rep.recipients = {out("a@x.test", RecipientResult::Sent, "250 ok")};
  CHECK(ds.apply(rep).state == "sent");
  CHECK(s->purge_finished(4000, 100) == 0);
  CHECK(s->purge_finished(6000, 100) == 1);
  s->commit();
  CHECK_FALSE(s->get("00000000010000").has_value());
}

TEST_CASE("delivery store: headers for a DSN, local enqueue, bounce de-duplication") {
  TempDir dir;
  auto s = Spool::open(dir.file("spool.db"));
  DeliveryStore ds(*s);
  submit(*s, "00000000010000", {"a@x.test"}, 1000);
  CHECK(ds.headers("00000000010000") == "Received: x\r\nSubject: hi\r\nFrom: app@example.test\r\n");

  s->begin();
  CHECK_FALSE(ds.bounce_sent("00000000010000"));
  auto m = new_message("00000000030000", {"app@example.test"}, 2000, "");
  std::string body(200000, 'x');
  ds.enqueue_local(m, body, 2000);
  ds.mark_bounce_sent("00000000010000", "00000000030000");
  CHECK(ds.bounce_sent("00000000010000"));
  s->commit();
  std::string back;
  s->read_body("00000000030000", [&](std::string_view c) { back.append(c); });
  CHECK(back == body);
  CHECK(s->get("00000000030000")->state == "queued");
  CHECK(s->get("00000000030000")->sender.empty());
}
