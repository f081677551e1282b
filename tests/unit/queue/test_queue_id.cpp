#include <doctest/doctest.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "queue/queue_id.h"

using namespace outbox::queue;

TEST_CASE("queue id: 14 base62 characters encoding the microseconds") {
  QueueIdGenerator g;
  std::uint64_t t = 1'700'000'000'123'456ull;
  auto id = g.next(t);
  CHECK(id.size() == 14);
  CHECK(is_valid_queue_id(id));
  CHECK(queue_id_micros(id) == t);
  CHECK(id.substr(10) == "0000");
  // 0 and the largest 10-digit value round-trip.
  QueueIdGenerator z;
  CHECK(z.next(0) != "");
  CHECK(queue_id_micros("zzzzzzzzzz0000") == 839299365868340223ull);   // 62^10 - 1
}

TEST_CASE("queue id: string order is time order, ASCII digits < upper < lower") {
  QueueIdGenerator g;
  std::vector<std::string> ids;
  // Times chosen so that digits cross 9->A and Z->a boundaries.
  for (std::uint64_t t : {9ull, 10ull, 35ull, 36ull, 61ull, 62ull, 3843ull, 3844ull, 1'700'000'000'000'000ull,
                          1'700'000'000'000'001ull, 4'102'444'800'000'000ull})
    ids.push_back(g.next(t));
  CHECK(std::is_sorted(ids.begin(), ids.end()));
  for (std::size_t i = 1; i < ids.size(); ++i) CHECK(queue_id_micros(ids[i - 1]) < queue_id_micros(ids[i]));
}

TEST_CASE("queue id: same microsecond gets increasing sequence numbers") {
  QueueIdGenerator g;
  auto a = g.next(1000);
  auto b = g.next(1000);
  auto c = g.next(1000);
  CHECK(a < b);
  CHECK(b < c);
  CHECK(queue_id_micros(c) == 1000);
  CHECK(c.substr(10) == "0002");
}

TEST_CASE("queue id: monotonic when the clock steps back") {
  QueueIdGenerator g;
  std::uint64_t base = 1'700'000'000'000'000ull;
  std::string prev = g.next(base);
  std::set<std::string> seen{prev};
  // The clock jumps an hour back, then creeps forward again.
  for (int i = 0; i < 1000; ++i) {
    auto id = g.next(base - 3'600'000'000ull + static_cast<std::uint64_t>(i));
    CHECK(id > prev);
    CHECK(seen.insert(id).second);
    prev = id;
  }
  // Time stays at the highest seen value while the clock is behind.
  CHECK(queue_id_micros(prev) == base);
  auto later = g.next(base + 5);
  CHECK(later > prev);
  CHECK(queue_id_micros(later) == base + 5);
}

TEST_CASE("queue id: sequence overflow borrows the next microsecond instead of wrapping") {
  // Seed at the last sequence value of a tick; the next id must still sort higher.
  QueueIdGenerator g("00000001F0zzzz");
  auto id = g.next(0);   // clock far behind the seed
  CHECK(id > std::string("00000001F0zzzz"));
  CHECK(queue_id_micros(id) == queue_id_micros("00000001F0zzzz") + 1);
  CHECK(id.substr(10) == "0000");
}

TEST_CASE("queue id: seeded generator never repeats the spool's ids") {
  QueueIdGenerator first;
  std::uint64_t t = 1'700'000'000'000'000ull;
  std::string last;
  for (int i = 0; i < 5; ++i) last = first.next(t);   // five ids in one microsecond
  // "Restart" with the clock behind (or equal): continues after the seed.
  QueueIdGenerator second(last);
  auto a = second.next(t);
  CHECK(a > last);
  auto b = second.next(t - 10);
  CHECK(b > a);
  // With the clock ahead, it simply uses the clock.
  QueueIdGenerator third(last);
  CHECK(queue_id_micros(third.next(t + 1)) == t + 1);
  // A seed that is not an id is ignored.
  QueueIdGenerator fourth("not-an-id");
  CHECK(queue_id_micros(fourth.next(42)) == 42);
}

TEST_CASE("queue id: system clock ids are valid and increasing") {
  QueueIdGenerator g;
  std::string prev;
  for (int i = 0; i < 10000; ++i) {
    auto id = g.next();
    REQUIRE(is_valid_queue_id(id));
    REQUIRE(id > prev);
    prev = id;
  }
  // Encodes a plausible present: after 2020, before 2100.
  CHECK(queue_id_micros(prev) > 1'577'836'800'000'000ull);
  CHECK(queue_id_micros(prev) < 4'102'444'800'000'000ull);
}

TEST_CASE("queue id: validity") {
  CHECK(is_valid_queue_id("0123456789AZaz"));
  CHECK_FALSE(is_valid_queue_id(""));
  CHECK_FALSE(is_valid_queue_id("0123456789AZa"));     // 13
  CHECK_FALSE(is_valid_queue_id("0123456789AZazz"));   // 15
  CHECK_FALSE(is_valid_queue_id("0123456789AZa-"));
  CHECK_FALSE(is_valid_queue_id("0123456789AZa "));
  CHECK_FALSE(is_valid_queue_id("../../etc/pass"));
  CHECK_FALSE(is_valid_queue_id(std::string("0123456789AZa\0", 14)));
  CHECK_FALSE(is_valid_queue_id("0123456789AZa\xc3"));
  CHECK(queue_id_micros("bad") == 0);
}
