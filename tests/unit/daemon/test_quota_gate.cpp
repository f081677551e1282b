// QuotaGate (daemon/quota_gate.h): the messages waiting for the fleet's
// shared ledger, each under its own ticket, and what its answer means:
// handed at once, or parked until the fleet's window takes it with the
// reason the operator reads (outboxctl show's last error).
#include <doctest/doctest.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "daemon/quota_gate.h"

using outbox::daemon::Job;
using outbox::daemon::QuotaAnswer;
using outbox::daemon::QuotaGate;
using outbox::queue::RateWindow;

namespace {

constexpr std::int64_t S = 1'000'000;
constexpr std::int64_t kDayUs = 86'400 * S;
// 2023-11-14 (a midnight UTC) + 14:05.
constexpr std::int64_t kMidnight = 1'699'920'000 * S;
constexpr std::int64_t kAt1405 = kMidnight + (14 * 3600 + 5 * 60) * S;

Job job(const std::string& id) {
  Job j;
  j.msg.id = id;
  j.route = {"gmail", "backup"};
  return j;
}

QuotaAnswer answer(QuotaAnswer::Kind k) {
  QuotaAnswer a;
  a.kind = k;
  return a;
}

QuotaAnswer denied(RateWindow w, std::uint64_t used, std::int64_t free_at) {
  QuotaAnswer a;
  a.kind = QuotaAnswer::Kind::Denied;
  a.window = w;
  a.used = used;
  a.free_at = free_at;
  return a;
}

}  // namespace

TEST_CASE("granted or unavailable: handed now, the message and its upstream as they waited") {
  for (auto k : {QuotaAnswer::Kind::Granted, QuotaAnswer::Kind::Unavailable}) {
    CAPTURE(static_cast<int>(k));
    QuotaGate g;
    auto t = g.wait(7, "gmail", job("0000000000000A"));
    CHECK_FALSE(g.empty());
    CHECK(g.holds(7));
    auto step = g.answered(t, answer(k));
    REQUIRE(step);
    CHECK(step->hand);
    CHECK(step->conn == 7);
    CHECK(step->upstream == "gmail");
    CHECK(step->job.msg.id == "0000000000000A");
    CHECK(step->job.route == std::vector<std::string>{"gmail", "backup"});
    CHECK(step->why.empty());
    CHECK(g.empty());
  }
}

TEST_CASE("denied: parked until the fleet's window takes it, and the reason says whose window") {
  struct Row {
    const char* what;
    RateWindow window;
    std::uint64_t used;
    std::int64_t free_at;
    std::string why;
  };
  const std::vector<Row> rows = {
      {"recipients per day", RateWindow{2000, kDayUs, true}, 2000, kAt1405,
       "upstream \"gmail\" quota: 2000/2000 recipients per day (the fleet's shared ledger says it is used up), "
       "next slot 14:05 UTC"},
      {"messages per minute", RateWindow{20, 60 * S, false}, 20, kAt1405 + 7 * S,
       "upstream \"gmail\" quota: 20/20 messages per minute (the fleet's shared ledger says it is used up), "
       "next slot 14:05:07 UTC"},
  };
  for (const auto& r : rows) {
    CAPTURE(r.what);
    QuotaGate g;
    auto t = g.wait(3, "gmail", job("0000000000000B"));
    auto step = g.answered(t, denied(r.window, r.used, r.free_at));
    REQUIRE(step);
    CHECK_FALSE(step->hand);
    CHECK(step->conn == 3);
    CHECK(step->upstream == "gmail");
    CHECK(step->job.msg.id == "0000000000000B");
    CHECK(step->until == r.free_at);
    CHECK(step->why == r.why);
    CHECK(g.empty());
  }
}

TEST_CASE("answers go to the message they were asked for, once") {
  QuotaGate g;
  auto ta = g.wait(1, "a", job("0000000000000A"));
  auto tb = g.wait(2, "b", job("0000000000000B"));
  CHECK(ta != tb);
  CHECK(g.size() == 2);
  CHECK_FALSE(g.answered(tb + 100, answer(QuotaAnswer::Kind::Granted)));   // no message waits on it
  CHECK(g.size() == 2);

  auto second = g.answered(tb, answer(QuotaAnswer::Kind::Granted));
  REQUIRE(second);
  CHECK(second->conn == 2);
  CHECK(second->upstream == "b");
  CHECK(second->job.msg.id == "0000000000000B");
  CHECK_FALSE(g.answered(tb, answer(QuotaAnswer::Kind::Granted)));   // answered already
  CHECK_FALSE(g.holds(2));
  CHECK(g.holds(1));

  auto first = g.answered(ta, denied(RateWindow{5, 60 * S, false}, 5, kAt1405));
  REQUIRE(first);
  CHECK(first->upstream == "a");
  CHECK_FALSE(first->hand);
  CHECK(g.empty());
  CHECK_FALSE(g.holds(1));
}

TEST_CASE("two messages for one connection: each waits for its own answer, in any order") {
  // Keyed by connection, the second replaced the first: its answer then
  // found nothing, and the first message stayed claimed ('active') for good.
  QuotaGate g;
  auto t1 = g.wait(4, "mail", job("00000000000001"));
  auto t2 = g.wait(4, "mail", job("00000000000002"));
  CHECK(g.size() == 2);
  CHECK(g.holds(4));
  auto later = g.answered(t2, answer(QuotaAnswer::Kind::Granted));
  REQUIRE(later);
  CHECK(later->job.msg.id == "00000000000002");
  CHECK(g.holds(4));   // the first still waits
  auto earlier = g.answered(t1, answer(QuotaAnswer::Kind::Unavailable));
  REQUIRE(earlier);
  CHECK(earlier->job.msg.id == "00000000000001");
  CHECK(earlier->conn == 4);
  CHECK_FALSE(g.holds(4));
  CHECK(g.empty());
}
