// AuthThrottle: failure delays per client address and per user, doubling,
// capped, forgiven over time, bounded in memory.
#include <doctest/doctest.h>

#include "daemon/auth_throttle.h"

using outbox::daemon::AuthThrottle;
using ms = std::chrono::milliseconds;

TEST_CASE("delays double per failure up to 16 s") {
  AuthThrottle t;
  std::uint64_t now = 1'000'000;
  CHECK(t.peek("1.2.3.4", "alice", now) == ms(1000));
  CHECK(t.failure("1.2.3.4", "alice", now) == ms(1000));
  CHECK(t.failure("1.2.3.4", "alice", now + 1) == ms(2000));
  CHECK(t.failure("1.2.3.4", "alice", now + 2) == ms(4000));
  CHECK(t.failure("1.2.3.4", "alice", now + 3) == ms(8000));
  CHECK(t.failure("1.2.3.4", "alice", now + 4) == ms(16000));
  CHECK(t.failure("1.2.3.4", "alice", now + 5) == ms(16000));
  CHECK(t.failure("1.2.3.4", "alice", now + 6) == ms(16000));
}

TEST_CASE("the larger of the address and the user counts") {
  AuthThrottle t;
  std::uint64_t now = 5'000'000;
  // One address guessing many users.
  t.failure("10.0.0.1", "u1", now);
  t.failure("10.0.0.1", "u2", now);
  CHECK(t.failure("10.0.0.1", "u3", now) == ms(4000));
  // Many addresses guessing one user.
  t.failure("10.0.0.2", "bob", now);
  t.failure("10.0.0.3", "bob", now);
  CHECK(t.failure("10.0.0.4", "bob", now) == ms(4000));
  // An unrelated address and user are not slowed.
  CHECK(t.peek("10.9.9.9", "carol", now) == ms(1000));
}

TEST_CASE("one step forgiven per quiet minute") {
  AuthThrottle t;
  std::uint64_t now = 0;
  for (int i = 0; i < 5; ++i) t.failure("a", "u", now);
  CHECK(t.peek("a", "u", now) == ms(16000));
  CHECK(t.peek("a", "u", now + 60'000) == ms(8000));
  CHECK(t.peek("a", "u", now + 180'000) == ms(2000));
  CHECK(t.peek("a", "u", now + 600'000) == ms(1000));
  CHECK(t.failure("a", "u", now + 600'000) == ms(1000));
}

TEST_CASE("memory stays bounded under a flood of user names") {
  AuthThrottle t;
  for (std::size_t i = 0; i < AuthThrottle::kMaxKeys + 500; ++i)
    t.failure("flood", "user" + std::to_string(i), i);
  CHECK(t.size() <= AuthThrottle::kMaxKeys + 1);
  // The flooding address itself is at the cap, not forgotten.
  CHECK(t.peek("flood", "fresh", AuthThrottle::kMaxKeys + 500) == ms(16000));
}
