// Spool::stats() per upstream: attempt counts, last delivery, last outcome
// (what `outboxctl stats --prometheus` exports for alerting).
#include <doctest/doctest.h>

#include "queue/spool.h"
#include "unit/queue/helpers.h"

using namespace outbox::queue;
using outbox::queue::test::new_message;
using outbox::queue::test::TempDir;
using outbox::queue::test::now_us;

TEST_CASE("stats: per-upstream attempts, last delivery and last outcome") {
  TempDir dir;
  auto s = Spool::open(dir.file("spool.db"));
  auto m = new_message("00000000010000", {"b@y.test"}, now_us(), "a@x.test");
  s->begin();
  s->create_incoming(m);
  s->finalize(m.id, {}, 0, m.created);
  std::int64_t t = now_us();
  s->add_attempt(m.id, AttemptRecord{t - 3000, "gmail", {"b@y.test"}, "250 ok", "delivered"});
  s->add_attempt(m.id, AttemptRecord{t - 2000, "163", {"b@y.test"}, "250 ok", "delivered"});
  s->add_attempt(m.id, AttemptRecord{t - 1000, "163", {"b@y.test"}, "451 MI:SFQ", "deferred"});
  s->add_attempt(m.id, AttemptRecord{t - 500, "", {"b@y.test"}, "no route", "deferred"});
  s->commit();

  auto st = s->stats();
  REQUIRE(st.upstreams.size() == 2);
  const auto& a = st.upstreams[0].name == "163" ? st.upstreams[0] : st.upstreams[1];
  const auto& g = st.upstreams[0].name == "163" ? st.upstreams[1] : st.upstreams[0];
  CHECK(a.name == "163");
  CHECK(a.last_outcome == "deferred");
  CHECK(a.last_attempt == t - 1000);
  CHECK(a.last_delivered == t - 2000);
  CHECK(a.attempts_last_day == std::vector<std::pair<std::string, std::int64_t>>{{"deferred", 1}, {"delivered", 1}});
  CHECK(g.name == "gmail");
  CHECK(g.last_outcome == "delivered");
  CHECK(g.last_delivered == t - 3000);
}
