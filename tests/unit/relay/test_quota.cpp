// The quota ledger (queue/quota.h) as a table, and the scheduler pacing a
// queue through it with a fake clock: 10 messages a minute, 30 messages,
// a restart in the middle that refills the windows from the spool's ledger.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "queue/quota.h"
#include "queue/scheduler.h"

using namespace outbox::queue;
using namespace std::chrono_literals;

namespace {

constexpr std::int64_t S = 1'000'000;
constexpr std::int64_t MIN = 60 * S;
constexpr std::int64_t DAY = 86400 * S;
// 2023-11-14 22:13:20 UTC: the words name times of day.
constexpr std::int64_t T0 = 1'700'000'000 * S;

QuotaLedger ledger(std::vector<RateWindow> w) {
  QuotaLedger l;
  l.set_windows(std::move(w));
  return l;
}

}  // namespace

TEST_CASE("quota ledger: a messages window, rolling") {
  auto l = ledger({RateWindow{10, MIN, false}});
  std::int64_t free_at = 0;
  CHECK(l.room(T0, 1, &free_at) == 10);
  for (int i = 0; i < 10; ++i) l.record(T0 + i * S, 1);
  WindowUse full;
  CHECK(l.room(T0 + 10 * S, 1, &free_at, &full) == 0);
  CHECK(free_at == T0 + MIN);   // the oldest start leaves the window
  CHECK(quota_words(full) == "quota: 10/10 messages per minute, next slot 22:14:20 UTC");
  CHECK(l.room(T0 + MIN, 1, &free_at) == 1);        // one left
  CHECK(l.room(T0 + MIN + 5 * S, 1, &free_at) == 6);
  CHECK(l.room(T0 + 2 * MIN, 1, &free_at) == 10);
  CHECK(l.entries() == 0);   // all older than the longest window: dropped
}

TEST_CASE("quota ledger: a recipients window counts each message's recipients") {
  auto l = ledger({RateWindow{100, DAY, true}, RateWindow{30, MIN, false}});
  l.record(T0, 40);
  l.record(T0 + 2 * MIN, 40);
  std::int64_t free_at = 0;
  WindowUse full;
  CHECK(l.room(T0 + 3 * MIN, 20, &free_at) == 1);    // 80 + 20 fits exactly
  CHECK(l.room(T0 + 3 * MIN, 40, &free_at, &full) == 0);
  CHECK(free_at == T0 + DAY);                        // 40 must leave before 40 more fit
  CHECK(quota_words(full) == "quota: 80/100 recipients per day, next slot 22:13 UTC");
  auto use = l.use(T0 + 3 * MIN, 40);
  REQUIRE(use.size() == 2);
  CHECK((use[0].used == 80 && use[0].full));
  CHECK((use[1].used == 0 && !use[1].full));          // the minute window is empty again
  CHECK(l.room(T0 + DAY, 40, &free_at) == 1);
  // An empty window takes a message larger than the window (else never).
  auto e = ledger({RateWindow{100, DAY, true}});
  CHECK(e.room(T0, 150, &free_at) == 1);
  e.record(T0, 150);
  CHECK(e.room(T0 + S, 1, &free_at) == 0);
  CHECK(free_at == T0 + DAY);
}

TEST_CASE("quota ledger: restore merges the spool's entries, set_windows keeps them, a stepped-back clock") {
  auto l = ledger({RateWindow{3, MIN, false}});
  l.record(T0 + 30 * S, 1);
  l.restore({LedgerEntry{T0 + 10 * S, 1}, LedgerEntry{T0, 1}});
  std::int64_t free_at = 0;
  CHECK(l.room(T0 + 31 * S, 1, &free_at) == 0);
  CHECK(free_at == T0 + MIN);
  // A reload with a larger window keeps what was sent.
  l.set_windows({RateWindow{4, MIN, false}});
  CHECK(l.room(T0 + 31 * S, 1, &free_at) == 1);
  // The clock stepped back: the entry counts as the latest one.
  l.record(T0 + 20 * S, 1);
  CHECK(l.room(T0 + 31 * S, 1, &free_at) == 0);
  CHECK(free_at == T0 + MIN);
  // No windows: nothing is kept.
  l.set_windows({});
  CHECK(l.entries() == 0);
  CHECK(l.room(T0, 1, &free_at) > 1'000'000);
}

TEST_CASE("quota ledger: fill() when the provider says the quota is used up") {
  auto l = ledger({RateWindow{30, MIN, false}, RateWindow{2000, DAY, false}});
  std::int64_t free_at = 0;
  // No sends in the window: a whole window.
  CHECK(l.fill(T0) == T0 + DAY);
  WindowUse full;
  CHECK(l.room(T0 + S, 1, &free_at, &full) == 0);
  CHECK(free_at == T0 + DAY);
  CHECK(quota_words(full) ==
        "quota: 2000/2000 messages per day (the provider says it is used up), next slot 22:13 UTC");
  // With sends: when the oldest one leaves the longest window.
  auto m = ledger({RateWindow{2000, DAY, false}});
  m.record(T0 - 10 * 3600 * S, 1);
  m.record(T0 - 3600 * S, 1);
  CHECK(m.fill(T0) == T0 + 14 * 3600 * S);
  CHECK(m.room(T0 + 14 * 3600 * S, 1, &free_at) > 0);
}

TEST_CASE("quota ledger: a full day of a large window is not walked per question") {
  auto l = ledger({RateWindow{10000, DAY, true}});
  std::int64_t t = T0, free_at = 0;
  for (int i = 0; i < 9999; ++i) l.record(t += S, 1);
  std::uint64_t asked = 0;
  for (int i = 0; i < 200000; ++i) asked += l.room(t, 1, &free_at);
  CHECK(asked == 200000);
  l.record(t, 1);
  CHECK(l.room(t, 1, &free_at) == 0);
  CHECK(free_at == T0 + S + DAY);
}

namespace {

// The relay around the scheduler, on a fake clock: connections are ready at
// once, each message is sent the moment it is handed, a parked message is
// due again at its time, and every start goes into `spool` as the relay's
// quota_ledger table would keep it.
struct Relay {
  Scheduler s;
  std::int64_t now;
  std::vector<LedgerEntry> spool;
  std::vector<std::pair<std::int64_t, std::string>> parked;
  std::vector<std::int64_t> starts;
  std::vector<std::string> waits;   // why messages were parked

  Relay(std::vector<RateWindow> rates, std::int64_t t) : s(SchedulerParams{}, [] { return 0.5; }), now(t) {
    UpstreamSpec u;
    u.name = "ms";
    u.max_connections = 3;
    u.rates = std::move(rates);
    s.set_upstreams({u}, now);
  }
  void due(const std::string& id) { s.add_due(DueWork{id, now, 0, {"ms"}}, now); }
  void poll() {
    for (bool again = true; again;) {
      again = false;
      for (const auto& d : s.poll(now)) {
        switch (d.kind) {
          case Decision::Kind::Open: s.connection_ready(d.conn); again = true; break;
          case Decision::Kind::Hand:
            starts.push_back(now);
            spool.push_back(LedgerEntry{now, 1});
            s.connection_ready(d.conn);
            again = true;
            break;
          case Decision::Kind::Park:
            parked.emplace_back(d.until, d.id);
            waits.push_back(d.why);
            break;
          case Decision::Kind::Quit: s.connection_closed(d.conn); break;
          case Decision::Kind::Expire: FAIL("nothing expires here"); break;
        }
      }
    }
  }
  // Runs until `count` messages have started or `until`.
  void run(std::size_t count, std::int64_t until) {
    while (starts.size() < count && now < until) {
      poll();
      std::optional<std::int64_t> next = s.next_wakeup(now);
      for (const auto& p : parked)
        if (!next || p.first < *next) next = p.first;
      if (!next) break;
      now = std::max(*next, now + 1);
      std::vector<std::pair<std::int64_t, std::string>> still;
      for (auto& p : parked)
        if (p.first <= now) s.add_due(DueWork{p.second, T0, 0, {"ms"}}, now);
        else still.push_back(p);
      parked = std::move(still);
    }
  }
};

std::size_t most_in_any_window(std::vector<std::int64_t> starts, std::int64_t per) {
  std::sort(starts.begin(), starts.end());
  std::size_t most = 0;
  for (std::size_t i = 0; i < starts.size(); ++i) {
    std::size_t n = 0;
    for (std::size_t j = i; j < starts.size() && starts[j] < starts[i] + per; ++j) ++n;
    most = std::max(most, n);
  }
  return most;
}

}  // namespace

TEST_CASE("10 messages a minute: 30 messages take three windows, none early, the reason in words") {
  Relay r({RateWindow{10, MIN, false}}, T0);
  for (int i = 0; i < 30; ++i) r.due("m" + std::to_string(i));
  r.run(30, T0 + 10 * MIN);
  REQUIRE(r.starts.size() == 30);
  CHECK(most_in_any_window(r.starts, MIN) == 10);
  CHECK(r.starts[9] < T0 + MIN);
  CHECK(r.starts[10] >= T0 + MIN);
  CHECK(r.starts[20] >= T0 + 2 * MIN);
  CHECK(r.starts[29] < T0 + 3 * MIN);   // about three minutes of scheduling
  REQUIRE(!r.waits.empty());
  CHECK(r.waits[0] == "upstream \"ms\" quota: 10/10 messages per minute, next slot 22:14:20 UTC");
}

TEST_CASE("a restart in the middle does not reset the window: the new scheduler refills it from the spool") {
  Relay first({RateWindow{10, MIN, false}}, T0);
  for (int i = 0; i < 30; ++i) first.due("m" + std::to_string(i));
  first.run(10, T0 + 10 * MIN);   // the first minute's 10, then the daemon stops
  REQUIRE(first.starts.size() == 10);

  // The new run 30 s later: a fresh scheduler, the ledger loaded from the
  // spool, the 20 messages left due at once (as recovery makes them).
  const std::int64_t restart = T0 + 30 * S;
  Relay second({RateWindow{10, MIN, false}}, restart);
  second.s.restore_ledger("ms", first.spool);
  for (int i = 10; i < 30; ++i) second.due("m" + std::to_string(i));
  second.poll();
  CHECK(second.starts.empty());
  auto use = second.s.window_use("ms", restart);
  REQUIRE(use.size() == 1);
  CHECK(use[0].used == 10);   // the first run's sends still count
  CHECK(use[0].full);
  second.run(20, restart + 10 * MIN);
  REQUIRE(second.starts.size() == 20);
  CHECK(second.starts.front() >= T0 + MIN);
  std::vector<std::int64_t> all = first.starts;
  all.insert(all.end(), second.starts.begin(), second.starts.end());
  CHECK(most_in_any_window(all, MIN) == 10);   // the limit held across the restart

  // Without the ledger the same restart would have sent 10 more at once.
  Relay amnesic({RateWindow{10, MIN, false}}, restart);
  for (int i = 10; i < 30; ++i) amnesic.due("m" + std::to_string(i));
  amnesic.poll();
  std::vector<std::int64_t> forgetful = first.starts;
  forgetful.insert(forgetful.end(), amnesic.starts.begin(), amnesic.starts.end());
  CHECK(most_in_any_window(forgetful, MIN) == 20);
}

TEST_CASE("the provider's quota reply holds the upstream until the ledger's oldest send leaves the day") {
  Relay r({RateWindow{2000, DAY, false}}, T0);
  r.s.restore_ledger("ms", {LedgerEntry{T0 - 20 * 3600 * S, 1}, LedgerEntry{T0 - 3600 * S, 1}});
  UpstreamFailure f{SuspendReason::QuotaReached, "data", "550 5.4.5 Daily user sending limit exceeded", 24h};
  auto sus = r.s.upstream_failed("ms", f, T0);
  REQUIRE(sus);
  CHECK(sus->until == T0 + 4 * 3600 * S);   // not a whole day: the oldest send frees it
  auto use = r.s.window_use("ms", T0 + S);
  REQUIRE(use.size() == 1);
  CHECK(use[0].filled);
  CHECK(use[0].used == 2000);
  // The operator resumes it: only the two counted sends remain.
  CHECK(r.s.resume("ms", T0 + 2 * S));
  use = r.s.window_use("ms", T0 + 2 * S);
  CHECK((!use[0].filled && !use[0].full && use[0].used == 2));
}
