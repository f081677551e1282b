// RetryPolicy: exact numbers for the backoff curve, jitter and expiry.
#include <doctest/doctest.h>

#include <vector>

#include "queue/retry_policy.h"

using namespace outbox::queue;
using namespace std::chrono_literals;

namespace {
constexpr std::int64_t S = 1'000'000;   // µs per second
constexpr std::int64_t T0 = 1'700'000'000 * S;
}  // namespace

TEST_CASE("base delay: initial * factor^(n-1), capped at max (defaults 1m, 1h, x2)") {
  RetryParams p;
  const std::pair<int, std::int64_t> rows[] = {
      {0, 60}, {1, 60}, {2, 120}, {3, 240}, {4, 480}, {5, 960}, {6, 1920},
      {7, 3600},   // 3840 capped
      {8, 3600}, {50, 3600}, {100000, 3600}};
  for (auto [n, secs] : rows) {
    CAPTURE(n);
    CHECK(base_delay(p, n) == std::chrono::seconds(secs));
  }
}

TEST_CASE("base delay with a fractional factor stays exact") {
  RetryParams p{300s, 4000s, 1.5, 0.0, 86400s};
  const std::pair<int, std::int64_t> rows[] = {
      {1, 300'000'000}, {2, 450'000'000}, {3, 675'000'000}, {4, 1'012'500'000},
      {5, 1'518'750'000}, {6, 2'278'125'000}, {7, 3'417'187'500}, {8, 4'000'000'000}};
  for (auto [n, us] : rows) {
    CAPTURE(n);
    CHECK(base_delay(p, n).count() == us);
  }
  RetryParams flat{60s, 3600s, 1.0, 0.0, 86400s};
  CHECK(base_delay(flat, 30) == 60s);
}

TEST_CASE("jitter spreads the delay over [1-j, 1+j)") {
  RetryParams p;   // jitter 0.2
  struct Row { int n; double r; std::int64_t delay_us; };
  const Row rows[] = {
      {1, 0.0, 48 * S},     // 60 * 0.8
      {1, 0.5, 60 * S},
      {1, 0.75, 66 * S},    // 60 * 1.1
      {3, 0.25, 216 * S},   // 240 * 0.9
      {7, 0.0, 2880 * S},   // jitter applies at the cap too: 3600 * 0.8
      {7, 0.999999, 4'319'998'560},  // 3600 * 1.1999996
  };
  for (const auto& r : rows) {
    CAPTURE(r.n);
    CAPTURE(r.r);
    auto d = next_attempt(p, r.n, T0, T0 + 10 * S, r.r);
    CHECK_FALSE(d.expired());
    CHECK_FALSE(d.last_attempt);
    CHECK(d.at - (T0 + 10 * S) == r.delay_us);
  }
  // Out-of-range random values are clamped, never extend the range.
  CHECK(next_attempt(p, 1, T0, T0, -3.0).at == T0 + 48 * S);
  CHECK(next_attempt(p, 1, T0, T0, 7.0).at <= T0 + 72 * S);
}

TEST_CASE("expiry: the last attempt lands exactly on the deadline, its failure expires") {
  RetryParams p{60s, 3600s, 2.0, 0.0, 5 * 86400s};
  const std::int64_t deadline = T0 + 5 * 86400 * S;
  // Plenty of time left.
  auto a = next_attempt(p, 10, T0, deadline - 7200 * S, 0.5);
  CHECK(a.at == deadline - 3600 * S);
  CHECK_FALSE(a.last_attempt);
  // Exactly one max delay left: next == deadline -> the last attempt.
  auto b = next_attempt(p, 10, T0, deadline - 3600 * S, 0.5);
  CHECK(b.at == deadline);
  CHECK(b.last_attempt);
  // Less than a delay left: moved to the deadline, not beyond.
  auto c = next_attempt(p, 10, T0, deadline - 100 * S, 0.5);
  CHECK(c.at == deadline);
  CHECK(c.last_attempt);
  // That attempt ran at the deadline and failed: expire.
  CHECK(next_attempt(p, 11, T0, deadline, 0.5).expired());
  CHECK(next_attempt(p, 11, T0, deadline + 2 * S, 0.5).expired());
  // Lifetime zero: the first failure expires.
  RetryParams z{60s, 3600s, 2.0, 0.0, 0s};
  CHECK(next_attempt(z, 1, T0, T0, 0.5).expired());
}

TEST_CASE("a whole life with the defaults: attempts, then expiry after 5 days") {
  RetryParams p;
  p.jitter = 0;
  std::int64_t now = T0;
  int attempts = 0;
  std::vector<std::int64_t> gaps;
  for (;;) {
    ++attempts;   // an attempt at `now` failed
    auto d = next_attempt(p, attempts, T0, now, 0.5);
    if (d.expired()) break;
    gaps.push_back((d.at - now) / S);
    now = d.at;
    REQUIRE(attempts < 1000);
  }
  CHECK(std::vector<std::int64_t>(gaps.begin(), gaps.begin() + 8) ==
        std::vector<std::int64_t>{60, 120, 240, 480, 960, 1920, 3600, 3600});
  // 60+...+1920 = 3780 s, then hourly until 432000 s: 118 more full hours
  // (424800 s) reach 428580 s; the last gap is shortened to the deadline.
  CHECK(gaps.size() == 6 + 118 + 1);
  CHECK(gaps.back() == 432000 - 428580);
  CHECK(now == T0 + 432000 * S);
  CHECK(attempts == 126);
}

TEST_CASE("upstream backoff: own counter, no expiry, provider floor respected") {
  RetryParams p;
  p.jitter = 0;
  CHECK(upstream_retry_at(p, 1, T0, 0.5) == T0 + 60 * S);
  CHECK(upstream_retry_at(p, 4, T0, 0.5) == T0 + 480 * S);
  CHECK(upstream_retry_at(p, 40, T0, 0.5) == T0 + 3600 * S);
  CHECK(upstream_retry_at(p, 1, T0, 0.5, 15min) == T0 + 900 * S);   // 163 MI:SFQ
  CHECK(upstream_retry_at(p, 8, T0, 0.5, 15min) == T0 + 3600 * S);  // curve above the floor
  p.jitter = 0.2;
  CHECK(upstream_retry_at(p, 1, T0, 0.0) == T0 + 48 * S);
}
