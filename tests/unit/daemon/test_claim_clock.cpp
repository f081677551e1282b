// ClaimClock (daemon/claim_clock.h): when the relay claims next. Every rule
// of the cadence as a table: a kick's coalescing, the timer's wake-up (the
// scheduler's, the spool's below the in-memory bound, at most a day, an
// earlier armed one kept), one claim at a time and the claim's answer.
#include <doctest/doctest.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "daemon/claim_clock.h"

using outbox::daemon::ClaimClock;
using outbox::daemon::TimerState;

namespace {

constexpr std::int64_t MS = 1000;   // µs
constexpr std::int64_t T0 = 1'700'000'000'000'000;
constexpr std::uint64_t kDay = 24ULL * 3600 * 1000;

TimerState idle() { return {}; }
TimerState armed(std::uint64_t due_in_ms) { return {true, due_in_ms}; }

ClaimClock started() {
  ClaimClock c;
  c.start();
  return c;
}

}  // namespace

TEST_CASE("kick: claim in 10 ms unless an armed timer fires within 20 ms") {
  struct Row {
    const char* what;
    TimerState timer;
    std::optional<std::uint64_t> after;
  };
  const std::vector<Row> rows = {
      {"no timer armed", idle(), 10},
      {"armed, fires now", armed(0), std::nullopt},
      {"armed, fires in 10 ms", armed(10), std::nullopt},
      {"armed, fires in 20 ms", armed(20), std::nullopt},
      {"armed, fires in 21 ms", armed(21), 10},
      {"armed, fires in an hour", armed(3'600'000), 10},
      {"not armed (a stale due time)", TimerState{false, 5}, 10},
  };
  for (const auto& r : rows) {
    CAPTURE(r.what);
    ClaimClock c = started();
    CHECK(c.kick(false, r.timer) == r.after);
    CHECK_FALSE(c.claim_again(0, 100));   // no claim under way: nothing asked of the next one
  }
}

TEST_CASE("kick: nothing before the start or once stopping; during a claim, another claim when it ends") {
  ClaimClock fresh;
  CHECK(fresh.kick(false, idle()) == std::nullopt);
  ClaimClock c = started();
  CHECK(c.kick(true, idle()) == std::nullopt);

  c.claim_started();
  CHECK_FALSE(c.claim_again(5, 100));
  CHECK(c.kick(false, idle()) == std::nullopt);
  CHECK(c.claim_again(5, 100));
  // The next claim starts with the request answered.
  c.claimed(T0, std::nullopt, 5);
  c.claim_started();
  CHECK_FALSE(c.claim_again(5, 100));
}

TEST_CASE("may_arm and may_tick: one claim at a time, nothing once stopping") {
  struct Row {
    bool start, stopping, claiming;
    bool arm, tick;
  };
  const std::vector<Row> rows = {
      {false, false, false, false, true},   // the start's own claim is a tick
      {true, false, false, true, true},
      {true, true, false, false, false},
      {true, false, true, false, false},    // the claim's completion arms it
      {true, true, true, false, false},
  };
  for (const auto& r : rows) {
    CAPTURE(r.start);
    CAPTURE(r.stopping);
    CAPTURE(r.claiming);
    ClaimClock c;
    if (r.start) c.start();
    if (r.claiming) c.claim_started();
    CHECK(c.may_arm(r.stopping) == r.arm);
    CHECK(c.may_tick(r.stopping) == r.tick);
  }
}

TEST_CASE("wake_after: the earliest known wake-up, in whole ms, at most a day, an earlier armed one kept") {
  struct Row {
    const char* what;
    std::optional<std::int64_t> sched;      // the scheduler's next wake-up
    std::optional<std::int64_t> spool;      // the spool's next due time
    std::size_t in_memory;
    TimerState timer;
    std::optional<std::uint64_t> after;
  };
  const std::vector<Row> rows = {
      {"nothing known: no timer", std::nullopt, std::nullopt, 0, idle(), std::nullopt},
      {"nothing known, timer armed: left as it is", std::nullopt, std::nullopt, 0, armed(50), std::nullopt},
      {"scheduler only", T0 + 1500 * MS, std::nullopt, 0, idle(), 1500},
      {"spool only", std::nullopt, T0 + 700 * MS, 0, idle(), 700},
      {"spool earlier than the scheduler", T0 + 900 * MS, T0 + 700 * MS, 0, idle(), 700},
      {"scheduler earlier than the spool", T0 + 300 * MS, T0 + 700 * MS, 0, idle(), 300},
      {"rounded up: never a millisecond early", T0 + 1, std::nullopt, 0, idle(), 1},
      {"rounded up, 1.5 ms", T0 + 1500, std::nullopt, 0, idle(), 2},
      {"exactly 1 ms", T0 + MS, std::nullopt, 0, idle(), 1},
      {"due now", T0, std::nullopt, 0, idle(), 0},
      {"overdue: at once", T0 - 5 * MS, std::nullopt, 0, idle(), 0},
      {"spool below the bound", std::nullopt, T0 + 700 * MS, ClaimClock::kMaxInMemory - 1, idle(), 700},
      {"spool at the bound: a finished message wakes us", std::nullopt, T0 + 700 * MS, ClaimClock::kMaxInMemory,
       idle(), std::nullopt},
      {"spool over the bound, scheduler known", T0 + 900 * MS, T0 + 700 * MS, ClaimClock::kMaxInMemory + 3, idle(),
       900},
      {"two days ahead: a day", T0 + 2 * 86'400'000 * MS, std::nullopt, 0, idle(), kDay},
      {"a day and a ms ahead: a day", T0 + (86'400'000 + 1) * MS, std::nullopt, 0, idle(), kDay},
      {"armed earlier: kept", T0 + 700 * MS, std::nullopt, 0, armed(500), std::nullopt},
      {"armed at the same ms: kept", T0 + 700 * MS, std::nullopt, 0, armed(700), std::nullopt},
      {"armed later: moved earlier", T0 + 700 * MS, std::nullopt, 0, armed(701), 700},
      {"armed within the day, far wake-up: kept", T0 + 3 * 86'400'000 * MS, std::nullopt, 0, armed(kDay), std::nullopt},
      {"stale due time, not armed", T0 + 700 * MS, std::nullopt, 0, TimerState{false, 5}, 700},
  };
  for (const auto& r : rows) {
    CAPTURE(r.what);
    ClaimClock c = started();
    if (r.spool) c.due_by(*r.spool);
    CHECK(c.wake_after(T0, r.sched, r.in_memory, r.timer) == r.after);
  }
}

TEST_CASE("claim_limit: a batch of 100 at most, up to the in-memory bound of 500") {
  struct Row {
    std::size_t in_memory, limit;
  };
  const std::vector<Row> rows = {{0, 100}, {399, 100}, {400, 100}, {401, 99}, {499, 1}, {500, 0}, {650, 0}};
  CHECK(ClaimClock::kMaxInMemory == 500);
  for (const auto& r : rows) {
    CAPTURE(r.in_memory);
    CHECK(ClaimClock::claim_limit(r.in_memory) == r.limit);
  }
}

TEST_CASE("claimed: the spool's next due time, one already passed with nothing claimed looked at a second later") {
  struct Row {
    const char* what;
    std::optional<std::int64_t> next_due;
    std::size_t taken;
    std::optional<std::int64_t> kept;
  };
  const std::vector<Row> rows = {
      {"nothing due", std::nullopt, 0, std::nullopt},
      {"due later", T0 + 5000 * MS, 0, T0 + 5000 * MS},
      {"due later, some taken", T0 + 5000 * MS, 7, T0 + 5000 * MS},
      {"due now, nothing claimable", T0, 0, T0 + 1000 * MS},
      {"overdue, nothing claimable", T0 - 3000 * MS, 0, T0 + 1000 * MS},
      {"overdue, some taken: claimed again at once", T0 - 3000 * MS, 7, T0 - 3000 * MS},
  };
  for (const auto& r : rows) {
    CAPTURE(r.what);
    ClaimClock c = started();
    c.due_by(T0 - 10 * MS);   // what was known before the claim is replaced
    c.claim_started();
    CHECK(c.claiming());
    c.claimed(T0, r.next_due, r.taken);
    CHECK_FALSE(c.claiming());
    CHECK(c.spool_next_due() == r.kept);
  }
}

TEST_CASE("claim_failed: the claim is looked at again a second later") {
  ClaimClock c = started();
  c.claim_started();
  c.claim_failed(T0);
  CHECK_FALSE(c.claiming());
  CHECK(c.spool_next_due() == T0 + 1000 * MS);
  CHECK(c.wake_after(T0, std::nullopt, 0, idle()) == 1000);
}

TEST_CASE("claim_again: a kick during the claim or a full batch") {
  struct Row {
    bool kicked;
    std::size_t taken, limit;
    bool again;
  };
  const std::vector<Row> rows = {
      {false, 0, 100, false}, {false, 99, 100, false}, {false, 100, 100, true},
      {false, 1, 1, true},    {true, 0, 100, true},    {true, 100, 100, true},
  };
  for (const auto& r : rows) {
    CAPTURE(r.kicked);
    CAPTURE(r.taken);
    CAPTURE(r.limit);
    ClaimClock c = started();
    c.claim_started();
    if (r.kicked) c.kick(false, idle());
    CHECK(c.claim_again(r.taken, r.limit) == r.again);
  }
}

TEST_CASE("due_by: only an earlier due time replaces the one known") {
  struct Row {
    std::optional<std::int64_t> known;
    std::int64_t at;
    bool earlier;
    std::int64_t after;
  };
  const std::vector<Row> rows = {
      {std::nullopt, T0, true, T0},
      {T0, T0 - 1, true, T0 - 1},
      {T0, T0, false, T0},
      {T0, T0 + 1, false, T0},
  };
  for (const auto& r : rows) {
    CAPTURE(r.at - T0);
    ClaimClock c = started();
    if (r.known) c.due_by(*r.known);
    CHECK(c.due_by(r.at) == r.earlier);
    CHECK(c.spool_next_due() == r.after);
  }
}
