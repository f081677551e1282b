// Scheduler: decisions from events, with a fake clock (every call takes
// `now`) and a fixed random number, so each row is exact.
#include <doctest/doctest.h>

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "queue/scheduler.h"

using namespace outbox::queue;
using namespace std::chrono_literals;
using K = Decision::Kind;

namespace {

constexpr std::int64_t S = 1'000'000;   // µs per second
constexpr std::int64_t T0 = 1'700'000'000 * S;

SchedulerParams params() {
  SchedulerParams p;
  p.retry = RetryParams{60s, 3600s, 2.0, 0.0, 5 * 86400s};   // no jitter: exact
  return p;
}

UpstreamSpec up(std::string name, std::size_t max = 2, std::vector<RateWindow> rates = {}) {
  UpstreamSpec s;
  s.name = std::move(name);
  s.max_connections = max;
  s.rates = std::move(rates);
  return s;
}

DueWork msg(std::string id, std::vector<std::string> route = {"a"}, std::int64_t created = T0, int attempts = 0) {
  return DueWork{std::move(id), created, attempts, std::move(route)};
}

Scheduler make(std::vector<UpstreamSpec> ups) {
  Scheduler s(params(), [] { return 0.5; });
  s.set_upstreams(ups, T0);
  return s;
}

std::vector<K> kinds(const std::vector<Decision>& ds) {
  std::vector<K> k;
  for (const auto& d : ds) k.push_back(d.kind);
  return k;
}

const Decision* first(const std::vector<Decision>& ds, K k) {
  for (const auto& d : ds)
    if (d.kind == k) return &d;
  return nullptr;
}

UpstreamFailure fail(SuspendReason r, std::string reply = "421 4.7.0 try later", std::chrono::seconds floor = 0s) {
  return UpstreamFailure{r, "mail", std::move(reply), floor};
}

}  // namespace

TEST_CASE("a due message opens one connection, then is handed to it when it is ready, in due order") {
  auto s = make({up("a", 1)});
  s.add_due(msg("m1"), T0);
  s.add_due(msg("m2"), T0);
  auto d = s.poll(T0);
  REQUIRE(d.size() == 1);   // max_connections 1: one Open for two messages
  CHECK(d[0].kind == K::Open);
  CHECK(d[0].upstream == "a");
  const ConnId c = d[0].conn;
  CHECK(s.poll(T0).empty());   // nothing new until the connection is ready
  s.connection_ready(c);
  d = s.poll(T0 + S);
  REQUIRE(d.size() == 1);
  CHECK(d[0] == Decision{K::Hand, "a", c, "m1", 0, WaitReason::None, ""});
  s.connection_ready(c);   // m1 done, the session is ready again
  d = s.poll(T0 + 2 * S);
  REQUIRE(d.size() == 1);
  CHECK(d[0].kind == K::Hand);
  CHECK(d[0].id == "m2");
  s.connection_ready(c);
  // No work left: the connection lingers 2 s (a stream that pauses keeps
  // it), then QUITs, never an idle login held longer.
  CHECK(s.poll(T0 + 3 * S).empty());
  CHECK(s.next_wakeup(T0 + 3 * S) == T0 + 5 * S);
  CHECK(s.poll(T0 + 5 * S - 1).empty());
  d = s.poll(T0 + 5 * S);
  REQUIRE(d.size() == 1);
  CHECK(d[0] == Decision{K::Quit, "a", c, "", 0, WaitReason::None, ""});
  CHECK_FALSE(s.next_wakeup(T0 + 5 * S));   // quitting: nothing more to wake for
  s.connection_closed(c);
  CHECK(s.open_connections("a") == 0);
}

TEST_CASE("a lingering idle connection takes the next message: no new connection, and its linger starts again") {
  auto s = make({up("a", 2)});
  s.add_due(msg("m1"), T0);
  const ConnId c = s.poll(T0)[0].conn;
  s.connection_ready(c);
  REQUIRE(s.poll(T0).size() == 1);   // m1 handed
  s.connection_ready(c);             // m1 done
  CHECK(s.poll(T0 + S).empty());     // lingering from T0 + 1 s
  s.add_due(msg("m2"), T0 + 2 * S);
  auto d = s.poll(T0 + 2 * S);
  REQUIRE(d.size() == 1);
  CHECK(d[0] == Decision{K::Hand, "a", c, "m2", 0, WaitReason::None, ""});   // never an Open
  s.connection_ready(c);             // m2 done at T0 + 2.5 s
  CHECK(s.poll(T0 + 2 * S + S / 2).empty());
  // The linger counts from the second idle moment, not the first.
  CHECK(s.next_wakeup(T0 + 2 * S + S / 2) == T0 + 4 * S + S / 2);
  CHECK(s.poll(T0 + 4 * S).empty());
  CHECK(kinds(s.poll(T0 + 4 * S + S / 2)) == std::vector<K>{K::Quit});
}

TEST_CASE("the linger is the scheduler's parameter; 0 QUITs an idle connection at once") {
  SchedulerParams p = params();
  p.idle_linger = std::chrono::milliseconds(0);
  Scheduler s(p, [] { return 0.5; });
  s.set_upstreams({up("a", 1)}, T0);
  s.add_due(msg("m1"), T0);
  const ConnId c = s.poll(T0)[0].conn;
  s.connection_ready(c);
  REQUIRE(s.poll(T0).size() == 1);
  s.connection_ready(c);
  CHECK(kinds(s.poll(T0)) == std::vector<K>{K::Quit});
}

TEST_CASE("routes that share an upstream are served in due order across them, and waiting work stays put") {
  // poll() keeps one queue per route; the due order is still one order.
  auto s = make({up("a", 1), up("b", 1)});
  s.add_due(msg("m1", {"a"}), T0);
  s.add_due(msg("m2", {"a", "b"}), T0);
  s.add_due(msg("m3", {"a"}), T0);
  s.add_due(msg("m4", {"a", "b"}), T0);
  auto d = s.poll(T0);
  REQUIRE(kinds(d) == std::vector<K>{K::Open});
  const ConnId c = d[0].conn;
  for (int i = 0; i < 20; ++i) CHECK(s.poll(T0).empty());   // no idle connection: nothing moves
  CHECK(s.waiting() == 4);
  std::vector<std::string> order;
  for (int i = 0; i < 4; ++i) {
    s.connection_ready(c);
    d = s.poll(T0 + (i + 1) * S);
    REQUIRE(d.size() == 1);
    CHECK(d[0].kind == K::Hand);
    order.push_back(d[0].id);
  }
  CHECK(order == std::vector<std::string>{"m1", "m2", "m3", "m4"});
  CHECK(s.waiting() == 0);
  // A failed open is charged to the earliest waiting message of its upstream, whatever its route.
  s.add_due(msg("m5", {"a", "b"}), T0 + 10 * S);
  s.add_due(msg("m6", {"a"}), T0 + 10 * S);
  s.connection_closed(c);
  d = s.poll(T0 + 10 * S);
  REQUIRE(kinds(d) == std::vector<K>{K::Open});
  auto charged = s.charge_failed_open(d[0].conn);
  REQUIRE(charged);
  CHECK(charged->id == "m5");
  CHECK(s.drain() == std::vector<std::string>{"m6"});
}

TEST_CASE("concurrency: connections only for waiting work, never above max_connections") {
  struct Row { std::size_t max; int messages; std::size_t opens; };
  const Row rows[] = {{2, 1, 1}, {2, 2, 2}, {2, 5, 2}, {5, 3, 3}, {1, 9, 1}};
  for (const auto& r : rows) {
    CAPTURE(r.max);
    CAPTURE(r.messages);
    auto s = make({up("a", r.max)});
    for (int i = 0; i < r.messages; ++i) s.add_due(msg("m" + std::to_string(i)), T0);
    auto d = s.poll(T0);
    CHECK(static_cast<std::size_t>(std::count_if(d.begin(), d.end(), [](auto& x) { return x.kind == K::Open; })) ==
          r.opens);
    CHECK(s.open_connections("a") == r.opens);
    CHECK(s.poll(T0).empty());   // polled again: no extra connection
  }
}

TEST_CASE("an idle connection takes new work instead of a new connection being opened") {
  auto s = make({up("a", 2)});
  s.add_due(msg("m1"), T0);
  auto c = s.poll(T0)[0].conn;
  s.connection_ready(c);
  CHECK(kinds(s.poll(T0)) == std::vector<K>{K::Hand});
  s.add_due(msg("m2"), T0 + S);   // arrives while m1 is in flight: one more connection (max 2)
  auto d = s.poll(T0 + S);
  CHECK(kinds(d) == std::vector<K>{K::Open});
  s.connection_ready(c);   // m1 done first: m2 goes to it; the opening one will QUIT when ready
  d = s.poll(T0 + 2 * S);
  REQUIRE(d.size() == 1);
  CHECK(d[0].kind == K::Hand);
  CHECK(d[0].conn == c);
}

TEST_CASE("rate windows: a ceiling holds short waits in memory and parks longer ones") {
  // 2 per 60 s: the third start must wait for the first to leave the window.
  auto s = make({up("a", 1, {RateWindow{2, 60 * S}})});
  for (int i = 1; i <= 3; ++i) s.add_due(msg("m" + std::to_string(i)), T0);
  auto c = s.poll(T0)[0].conn;
  s.connection_ready(c);
  CHECK(s.poll(T0)[0].id == "m1");
  s.connection_ready(c);
  auto d = s.poll(T0 + 10 * S);
  REQUIRE(d.size() == 2);
  CHECK(d[0].id == "m2");
  const Decision* park = first(d, K::Park);   // the window is full after m2
  REQUIRE(park);
  CHECK(park->id == "m3");
  CHECK(park->reason == WaitReason::RateLimited);
  CHECK(park->until == T0 + 60 * S);   // m1's start leaves the window
  s.connection_ready(c);
  CHECK(s.poll(T0 + 20 * S).empty());   // nothing left for the idle connection: it lingers
  CHECK(kinds(s.poll(T0 + 22 * S)) == std::vector<K>{K::Quit});
  s.connection_closed(c);
  // Within kHold of the window's end the message is held, and next_wakeup says when.
  s.add_due(msg("m4"), T0 + 57 * S);
  d = s.poll(T0 + 57 * S);
  CHECK(first(d, K::Park) == nullptr);
  CHECK(s.waiting() == 1);
  CHECK(s.next_wakeup(T0 + 57 * S) == T0 + 60 * S);
  CHECK(first(s.poll(T0 + 60 * S), K::Open));   // the window has room again
}

TEST_CASE("rate room limits how many connections are opened") {
  auto s = make({up("a", 5, {RateWindow{1, 60 * S}})});
  for (int i = 0; i < 4; ++i) s.add_due(msg("m" + std::to_string(i)), T0);
  auto d = s.poll(T0);
  CHECK(std::count_if(d.begin(), d.end(), [](auto& x) { return x.kind == K::Open; }) == 1);
}

TEST_CASE("upstream backoff: message-scale curve, floor from the provider, never shortened") {
  struct Row { int failure; std::chrono::seconds floor; std::int64_t until_s; };
  // retry 60 s doubling to 3600 s, jitter 0.
  const Row rows[] = {{1, 0s, 60}, {2, 0s, 120}, {3, 900s, 900}, {4, 0s, 480}, {7, 0s, 3600}};
  auto s = make({up("a")});
  std::int64_t now = T0;
  for (const auto& r : rows) {
    CAPTURE(r.failure);
    std::optional<Suspension> sp;
    while (true) {
      sp = s.upstream_failed("a", fail(SuspendReason::Throttled, "451 4.7.1 slow down", r.floor), now);
      if (sp->failures >= r.failure) break;
    }
    CHECK(sp->until == now + r.until_s * S);
    CHECK_FALSE(sp->tell_operator);
    now += 10000 * S;   // past the suspension
  }
  // A later failure with a shorter delay keeps the longer suspension.
  auto s2 = make({up("a")});
  s2.upstream_failed("a", fail(SuspendReason::Throttled, "451", 3600s), T0);
  auto sp = s2.upstream_failed("a", fail(SuspendReason::Throttled), T0 + S);
  CHECK(sp->until == T0 + 3600 * S);
}

TEST_CASE("upstream backoff: connections that fail in the same outage count once") {
  // Ten connections open at once to an upstream that then refuses them all:
  // one failure of the backoff (60 s), not ten (3600 s).
  auto s = make({up("a", 10)});
  for (int i = 0; i < 10; ++i) s.add_due(msg("m" + std::to_string(i)), T0);
  auto d = s.poll(T0);
  REQUIRE(d.size() == 10);
  std::optional<Suspension> sp = s.upstream_failed("a", fail(SuspendReason::Unreachable, "connection refused"),
                                                   T0 + 1000, d[0].conn);
  REQUIRE(sp);
  CHECK(sp->failures == 1);
  CHECK_FALSE(sp->same_outage);
  const std::int64_t until = sp->until;
  CHECK(until == T0 + 1000 + 60 * S);
  for (int i = 1; i < 10; ++i) {
    CAPTURE(i);
    sp = s.upstream_failed("a", fail(SuspendReason::Unreachable, "connection refused"), T0 + 1000 + i, d[i].conn);
    CHECK(sp->same_outage);
    CHECK(sp->failures == 1);
    CHECK(sp->until == until);
  }
  for (const auto& x : d) s.connection_closed(x.conn);
  CHECK(s.state("a")->failures == 1);
  CHECK(s.state("a")->suspended_until == until);
  // The probe after the suspension was opened after that failure: it counts.
  auto probe = s.poll(until);
  REQUIRE(first(probe, K::Open));
  CHECK(std::count_if(probe.begin(), probe.end(), [](const Decision& x) { return x.kind == K::Open; }) == 1);
  sp = s.upstream_failed("a", fail(SuspendReason::Unreachable, "connection refused"), until + S,
                         first(probe, K::Open)->conn);
  CHECK_FALSE(sp->same_outage);
  CHECK(sp->failures == 2);
  CHECK(sp->until == until + S + 120 * S);
  // Without a connection (or one no longer known) every failure counts, as before.
  sp = s.upstream_failed("a", fail(SuspendReason::Unreachable, "connection refused"), until + 2 * S);
  CHECK(sp->failures == 3);
}

TEST_CASE("suspension: failover to the next upstream of the route, park when all are suspended, resume") {
  auto s = make({up("a"), up("b")});
  s.upstream_failed("a", fail(SuspendReason::Unreachable, "connection refused"), T0);
  s.add_due(msg("m1", {"a", "b"}), T0);
  auto d = s.poll(T0 + S);
  REQUIRE(d.size() == 1);
  CHECK(d[0].kind == K::Open);
  CHECK(d[0].upstream == "b");   // failover
  // Both suspended: parked until the first suspension ends, typed.
  s.upstream_failed("b", fail(SuspendReason::Throttled, "421 busy", 600s), T0 + S);
  s.add_due(msg("m2", {"a", "b"}), T0 + 2 * S);
  d = s.poll(T0 + 2 * S);
  REQUIRE(d.size() == 2);   // m1 (its connection to b not ready yet) and m2
  CHECK(d[0].id == "m1");
  const Decision* park = &d[1];
  CHECK(park->kind == K::Park);
  CHECK(park->id == "m2");
  CHECK(park->reason == WaitReason::UpstreamSuspended);
  CHECK(park->upstream == "a");
  CHECK(park->until == T0 + 60 * S);
  CHECK(park->why == "upstream \"a\" suspended: connection refused");
  // The operator resumes a: usable at once, state cleared and reported for persistence.
  CHECK(s.resume("a", T0 + 3 * S));
  CHECK_FALSE(s.resume("zz", T0 + 3 * S));
  auto changed = s.take_changed(T0 + 3 * S);
  REQUIRE(changed.size() == 2);   // a (resumed) and b (suspended)
  CHECK(changed[0].name == "a");
  CHECK_FALSE(changed[0].suspended_until);
  CHECK(changed[0].reason == SuspendReason::None);
  CHECK(changed[1].reason == SuspendReason::Throttled);
  CHECK(changed[1].last_reply == "421 busy");
  CHECK(s.take_changed(T0 + 4 * S).empty());
  s.add_due(msg("m3", {"a", "b"}), T0 + 3 * S);
  d = s.poll(T0 + 3 * S);
  const Decision* open = first(d, K::Open);
  REQUIRE(open);
  CHECK(open->upstream == "a");
}

TEST_CASE("after failures one connection probes; success restores max_connections") {
  auto s = make({up("a", 3)});
  s.upstream_failed("a", fail(SuspendReason::Unreachable), T0);
  for (int i = 0; i < 3; ++i) s.add_due(msg("m" + std::to_string(i)), T0 + 100 * S);
  auto d = s.poll(T0 + 100 * S);
  CHECK(kinds(d) == std::vector<K>{K::Open});
  s.connection_ready(d[0].conn);
  d = s.poll(T0 + 100 * S);
  CHECK(kinds(d) == std::vector<K>{K::Hand});
  s.upstream_ok("a", T0 + 101 * S);
  CHECK(s.state("a")->failures == 0);
  d = s.poll(T0 + 101 * S);
  CHECK(std::count_if(d.begin(), d.end(), [](auto& x) { return x.kind == K::Open; }) == 2);
}

TEST_CASE("a delivery of a message handed over before the last failure ends nothing") {
  auto s = make({up("a", 3)});
  auto sp = s.upstream_failed("a", fail(SuspendReason::Throttled, "451 MI:SFQ"), T0 + 10 * S);
  REQUIRE(sp);
  CHECK_FALSE(s.upstream_ok("a", T0 + 5 * S));    // under way at the refusal
  CHECK_FALSE(s.upstream_ok("a", T0 + 10 * S));
  CHECK(s.state("a")->suspended_until == sp->until);
  CHECK(s.state("a")->failures == 1);
  CHECK(s.upstream_ok("a", T0 + 11 * S));         // handed over after it
  CHECK_FALSE(s.state("a")->suspended_until);
  CHECK(s.state("a")->failures == 0);
  CHECK(s.upstream_ok("a", T0));                  // nothing to end: any delivery counts
  CHECK_FALSE(s.upstream_ok("nope", T0));
}

TEST_CASE("auth failures: own schedule 5 min doubling to 1 h, operator told once per suspension") {
  auto s = make({up("a")});
  const std::int64_t expect[] = {300, 600, 1200, 2400, 3600, 3600};
  std::int64_t now = T0;
  int told = 0;
  for (auto secs : expect) {
    auto sp = s.upstream_failed("a", fail(SuspendReason::AuthFailed, "535 5.7.8 bad credentials"), now);
    REQUIRE(sp);
    CHECK(sp->until - now == secs * S);
    told += sp->tell_operator ? 1 : 0;
    now = sp->until + S;   // the probe after the suspension fails again
  }
  CHECK(told == 1);
  // A success ends the suspension; the next refusal is a new one and is told.
  s.upstream_ok("a", now);
  auto sp = s.upstream_failed("a", fail(SuspendReason::AuthFailed, "535"), now);
  CHECK(sp->tell_operator);
  CHECK(sp->until - now == 300 * S);
  // Independent of the message backoff (retry.initial 60 s).
  CHECK(s.state("a")->reason == SuspendReason::AuthFailed);
}

TEST_CASE("messages that were attempted: backoff, failover, expiry") {
  auto s = make({up("a"), up("b")});
  // Message-scope failure: the retry policy's curve on its attempts.
  auto a = s.after_attempt(msg("m", {"a"}, T0, 0), false, T0 + 10 * S);
  CHECK_FALSE(a.expired);
  CHECK(a.next == T0 + 70 * S);
  a = s.after_attempt(msg("m", {"a"}, T0, 3), false, T0 + 10 * S);
  CHECK(a.next == T0 + 490 * S);   // 4th attempt: 480 s
  // Upstream fault: wait for the route; b usable -> failover now.
  s.upstream_failed("a", fail(SuspendReason::Throttled), T0);
  a = s.after_attempt(msg("m", {"a", "b"}), true, T0);
  CHECK(a.failover);
  CHECK(a.next == T0);
  a = s.after_attempt(msg("m", {"a"}), true, T0);
  CHECK_FALSE(a.failover);
  CHECK(a.next == T0 + 60 * S);
  // Upstream fault near the end of the lifetime: no later than the deadline, then expired.
  const std::int64_t deadline = T0 + 5 * 86400 * S;
  s.upstream_failed("a", fail(SuspendReason::Throttled, "451", 3600s), deadline - 10 * S);
  a = s.after_attempt(msg("m", {"a"}), true, deadline - 10 * S);
  CHECK(a.next == deadline);
  CHECK(s.after_attempt(msg("m", {"a"}), true, deadline).expired);
}

TEST_CASE("a message whose route cannot carry it before its deadline expires; no route parks it") {
  auto s = make({up("a")});
  const std::int64_t deadline = T0 + 5 * 86400 * S;
  s.upstream_failed("a", fail(SuspendReason::Unreachable, "connection refused"), deadline);
  s.add_due(msg("old", {"a"}), deadline + S);
  s.add_due(msg("lost", {}), deadline + S);
  s.add_due(msg("gone", {"removed"}), deadline + S);
  auto d = s.poll(deadline + S);
  REQUIRE(d.size() == 3);
  CHECK(d[0].kind == K::Expire);
  CHECK(d[0].id == "old");
  CHECK(d[0].why == "upstream \"a\" suspended: connection refused");
  CHECK(d[1] == Decision{K::Park, "", 0, "lost", deadline + S + Scheduler::kNoRouteRecheck, WaitReason::NoRoute,
                         "no route"});
  CHECK(d[2].reason == WaitReason::NoRoute);
}

TEST_CASE("an unusable upstream (secret not loadable) parks its messages at the retry pace") {
  auto spec = up("a");
  spec.usable = false;
  auto s = make({spec, up("b")});
  s.add_due(msg("m1", {"a"}), T0);
  s.add_due(msg("m2", {"a", "b"}), T0);
  auto d = s.poll(T0);
  REQUIRE(d.size() == 2);
  CHECK(d[0].kind == K::Park);
  CHECK(d[0].reason == WaitReason::UpstreamUnusable);
  CHECK(d[0].until == T0 + 60 * S);
  CHECK(d[1].kind == K::Open);
  CHECK(d[1].upstream == "b");
}

TEST_CASE("restart: persisted suspensions are restored (unknown names ignored) and keep their schedule") {
  auto s = make({up("a"), up("b")});
  UpstreamState st;
  st.name = "a";
  st.suspended_until = T0 + 1200 * S;
  st.reason = SuspendReason::AuthFailed;
  st.failures = 3;
  st.stage = "auth";
  st.last_reply = "535 5.7.8 no";
  UpstreamState other = st;
  other.name = "gone";
  s.restore({st, other});
  CHECK_FALSE(s.knows("gone"));
  auto now = T0 + 10 * S;
  s.add_due(msg("m", {"a"}), now);
  auto d = s.poll(now);
  REQUIRE(d.size() == 1);
  CHECK(d[0].kind == K::Park);
  CHECK(d[0].until == T0 + 1200 * S);
  CHECK(d[0].why == "upstream \"a\" suspended: 535 5.7.8 no");
  // The auth schedule continues where it stood (3 refusals: the 4th waits 2400 s)
  // and the operator is not told again for the same suspension.
  auto sp = s.upstream_failed("a", fail(SuspendReason::AuthFailed, "535"), T0 + 1300 * S);
  CHECK(sp->until == T0 + (1300 + 2400) * S);
  CHECK_FALSE(sp->tell_operator);
}

TEST_CASE("reload: removed and renamed upstreams with work in flight") {
  auto s = make({up("a", 1), up("b")});
  s.add_due(msg("m1", {"a"}), T0);
  s.add_due(msg("m2", {"a"}), T0);
  auto c = s.poll(T0)[0].conn;
  s.connection_ready(c);
  CHECK(s.poll(T0)[0].id == "m1");   // m1 in flight on a
  // The new generation renames a to a2 and drops b: m2 (not handed) is drained
  // by the relay and claimed again with the new route.
  s.set_upstreams({up("a2", 1)}, T0 + S);
  CHECK(s.drain() == std::vector<std::string>{"m2"});
  CHECK_FALSE(s.knows("a"));
  // Events about the old connection are harmless.
  CHECK_FALSE(s.upstream_failed("a", fail(SuspendReason::Throttled), T0 + 2 * S));
  s.connection_ready(c);
  auto d = s.poll(T0 + 2 * S);
  REQUIRE(d.size() == 1);
  CHECK(d[0].kind == K::Quit);   // its upstream is gone: nothing to carry
  s.connection_closed(c);
  s.connection_closed(c);        // twice: ignored
  s.add_due(msg("m2", {"a2"}), T0 + 3 * S);
  d = s.poll(T0 + 3 * S);
  REQUIRE(d.size() == 1);
  CHECK(d[0].upstream == "a2");
  // Re-adding "a" makes a new upstream: the old connection does not count.
  s.set_upstreams({up("a2", 1), up("a", 1)}, T0 + 4 * S);
  CHECK(s.open_connections("a") == 0);
  CHECK(s.open_connections("a2") == 1);
}

TEST_CASE("reload keeps a suspension unless the upstream's settings changed") {
  auto s = make({up("a")});
  s.upstream_failed("a", fail(SuspendReason::AuthFailed, "535"), T0);
  s.take_changed(T0);
  s.set_upstreams({up("a")}, T0 + S);
  CHECK(s.state("a")->suspended_until);
  CHECK(s.take_changed(T0 + S).empty());
  auto fixed = up("a");
  fixed.settings_digest = 42;   // a new password
  s.set_upstreams({fixed}, T0 + 2 * S);
  CHECK_FALSE(s.state("a")->suspended_until);
  auto changed = s.take_changed(T0 + 2 * S);
  REQUIRE(changed.size() == 1);
  CHECK(changed[0].reason == SuspendReason::None);
}

TEST_CASE("next_wakeup: nothing held, a short suspension, idle connection quits on suspension") {
  auto s = make({up("a")});
  CHECK_FALSE(s.next_wakeup(T0));
  s.add_due(msg("m1"), T0);
  auto c = s.poll(T0)[0].conn;
  CHECK_FALSE(s.next_wakeup(T0));   // waits for the connection: an event, not a time
  s.connection_ready(c);
  s.upstream_failed("a", fail(SuspendReason::Throttled, "421", 0s), T0 - 57 * S);   // ends at T0 + 3 s
  auto d = s.poll(T0);
  CHECK(kinds(d) == std::vector<K>{K::Quit});   // suspended: the idle connection leaves
  CHECK(s.waiting() == 1);
  CHECK(s.next_wakeup(T0) == T0 + 3 * S);
}

TEST_CASE("auth with a fresh token per connection: the first refusal retries at the upstream pace") {
  auto spec = up("a");
  spec.fresh_credential_per_connection = true;
  auto s = make({spec});
  auto sp = s.upstream_failed("a", fail(SuspendReason::AuthFailed, "535 token expired"), T0);
  CHECK(sp->until == T0 + 60 * S);   // retry.initial, a new token next time
  CHECK_FALSE(sp->tell_operator);
  sp = s.upstream_failed("a", fail(SuspendReason::AuthFailed, "535 token expired"), T0 + 61 * S);
  CHECK(sp->until == T0 + (61 + 300) * S);   // the slow schedule starts
  CHECK(sp->tell_operator);
  sp = s.upstream_failed("a", fail(SuspendReason::AuthFailed, "535"), T0 + 400 * S);
  CHECK(sp->until == T0 + (400 + 600) * S);
  CHECK_FALSE(sp->tell_operator);
}

TEST_CASE("a connection that fails in its set-up charges the message it was opened for") {
  auto s = make({up("a", 1), up("b")});
  s.add_due(msg("m1", {"a"}), T0);
  s.add_due(msg("m2", {"b"}), T0);
  s.add_due(msg("m3", {"a"}), T0);
  auto d = s.poll(T0);
  REQUIRE(d.size() == 2);
  const ConnId ca = d[0].upstream == "a" ? d[0].conn : d[1].conn;
  s.upstream_failed("a", fail(SuspendReason::Unreachable, "connection refused"), T0 + S);
  auto charged = s.charge_failed_open(ca);
  REQUIRE(charged);
  CHECK(charged->id == "m1");   // one try, one message; m3 waits for the upstream
  s.connection_closed(ca);
  CHECK_FALSE(s.charge_failed_open(ca));
  d = s.poll(T0 + S);
  REQUIRE(d.size() == 1);
  CHECK(d[0].id == "m3");
  CHECK(d[0].kind == K::Park);
  CHECK(d[0].reason == WaitReason::UpstreamSuspended);
  CHECK(s.waiting() == 1);   // m2, for b's connection
}

TEST_CASE("lower_concurrency: one fewer than were open, at least one, for an hour, then max_connections again") {
  auto s = make({up("a", 3)});
  for (int i = 0; i < 6; ++i) s.add_due(msg("m" + std::to_string(i)), T0);
  auto d = s.poll(T0);
  REQUIRE(kinds(d) == std::vector<K>(3, K::Open));   // 3 open: the provider refuses the third
  CHECK(s.concurrency("a", T0) == 3);
  CHECK(s.lower_concurrency("a", T0) == 2u);
  CHECK(s.concurrency("a", T0) == 2);
  for (const auto& x : d) s.connection_closed(x.conn);
  // Fewer open now: the next refusal lowers from the ceiling, not below one.
  CHECK(s.lower_concurrency("a", T0 + S) == 1u);
  CHECK(s.lower_concurrency("a", T0 + 2 * S) == 1u);
  d = s.poll(T0 + 3 * S);
  CHECK(kinds(d) == std::vector<K>{K::Open});
  s.connection_closed(d[0].conn);
  // An hour later the configured ceiling is back.
  const std::int64_t later = T0 + 2 * S + Scheduler::kLoweredFor;
  CHECK(s.concurrency("a", later) == 3);
  d = s.poll(later);
  CHECK(std::count_if(d.begin(), d.end(), [](auto& x) { return x.kind == K::Open; }) == 3);
  CHECK_FALSE(s.lower_concurrency("gone", T0).has_value());
}

TEST_CASE("a suspension that outlasts the message's lifetime: parked until its deadline, still waiting for the upstream") {
  // Found by the 535-resume integration test: a park clamped to the deadline
  // was typed "unusable", so `outboxctl resume` (which releases only mail
  // waiting for the upstream) left it parked until it expired.
  auto s = make({up("a")});
  s.upstream_failed("a", fail(SuspendReason::AuthFailed, "535 5.7.8 no"), T0);
  const std::int64_t created = T0 - 5 * 86400 * S + 30 * S;   // 30 s of its lifetime left
  s.add_due(msg("m1", {"a"}, created, 1), T0 + S);
  auto d = s.poll(T0 + S);
  REQUIRE(d.size() == 1);
  CHECK(d[0].kind == K::Park);
  CHECK(d[0].until == T0 + 30 * S);
  CHECK(d[0].reason == WaitReason::UpstreamSuspended);
  CHECK(d[0].upstream == "a");
  // An unusable upstream beside a suspension that ends later: the retry pace
  // governs, and the park stays typed unusable.
  auto spec = up("b");
  spec.usable = false;
  auto s2 = make({spec, up("c")});
  s2.upstream_failed("c", fail(SuspendReason::AuthFailed, "535 5.7.8 no"), T0);
  s2.add_due(msg("m2", {"b", "c"}, created, 1), T0 + S);
  d = s2.poll(T0 + S);
  REQUIRE(d.size() == 1);
  CHECK(d[0].kind == K::Park);
  CHECK(d[0].reason == WaitReason::UpstreamUnusable);
  CHECK(d[0].until == T0 + 30 * S);
}
