// Scheduler: what the relay does next (docs/design/relay-engine.md,
// "Scheduler"). Pure: no I/O, no libuv, no clock (every call takes `now`,
// µs since the epoch) and the random numbers for jitter are injected, so
// doctest tables drive it exactly (tests/unit/relay/test_scheduler.cpp).
//
// It holds the messages the relay has claimed and not yet handed to a
// connection, the connections (opening, idle, busy) and, per upstream, its
// suspension, its rate windows and its concurrency limit. A route is a list
// of upstream NAMES (failover order), never pointers into a configuration:
// a reload that removes or renames an upstream cannot leave a dangling
// reference here, and events for a connection of an upstream that no longer
// exists are accepted and change nothing.
//
// The relay feeds events (add_due, connection_ready, message_started ...,
// upstream_failed, resume, set_upstreams, restore) and executes what poll()
// returns; next_wakeup() tells it when to call poll() again if nothing else
// happens, so it arms one timer instead of polling.
#pragma once
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "queue/quota.h"
#include "queue/retry_policy.h"
#include "queue/types.h"

namespace outbox::queue {


// One upstream of a configuration generation, as the scheduler sees it.
struct UpstreamSpec {
  std::string name;
  std::size_t max_connections = 2;
  std::vector<RateWindow> rates;
  // false: its secret or CA file could not be loaded; nothing can be sent
  // until the files are fixed (a reload reads them again).
  bool usable = true;
  std::string problem;                 // !usable: why, for last_error (names the file)
  // Changes when the settings an operator fixes after a refused login
  // change (host, port, account, secret): a reload with a different value
  // lifts the suspension; the same value keeps it.
  std::uint64_t settings_digest = 0;
  // Each connection fetches a new credential (an OAuth2 token command): the
  // first refusal is most likely an expired token, so it is retried at the
  // ordinary upstream pace; the slow auth schedule starts at the second.
  bool fresh_credential_per_connection = false;
};

struct SchedulerParams {
  RetryParams retry;
  // After a refused login (SuspendReason::AuthFailed): its own schedule,
  // independent of the message backoff, so the provider does not see a
  // login every few seconds (Gmail "454 4.7.0 Too many login attempts").
  std::chrono::seconds auth_initial{300};
  std::chrono::seconds auth_max{3600};
  // An idle connection with nothing to carry stays open this long before
  // its QUIT, so a steady stream that empties the queue moment to moment
  // does not reconnect (and log in again) for every few messages. Postfix's
  // smtp_connection_cache_time_limit is 2 s too; a server waits minutes for
  // the next command (RFC 5321 §4.5.3.2.7).
  std::chrono::milliseconds idle_linger{2000};
};

using ConnId = std::uint64_t;

// A claimed message, due now.
struct DueWork {
  std::string id;
  std::int64_t created = 0;
  int attempts = 0;                    // attempts so far (not this one)
  std::vector<std::string> route;      // upstream names, failover order; empty: no route
  std::uint32_t recipients = 1;        // what it counts in a recipients window
};

// A failure that is the upstream's, not the message's.
struct UpstreamFailure {
  SuspendReason reason = SuspendReason::Unreachable;
  std::string stage;                   // client::stage_name()
  std::string reply;                   // what the upstream said, or our words
  std::chrono::seconds floor{0};       // the provider's own request (suggested_backoff)
};

// What upstream_failed() did.
struct Suspension {
  std::string upstream;
  std::int64_t until = 0;
  SuspendReason reason = SuspendReason::None;
  int failures = 0;
  bool tell_operator = false;          // the first failure of an AuthFailed suspension
  // The connection was opened before the failure that set this suspension:
  // one outage seen by several connections at once. Nothing changed (the
  // count, the time and the reason are the first one's).
  bool same_outage = false;
};

struct Decision {
  enum class Kind {
    Open,     // open connection `conn` to `upstream` (a message is ready for it)
    Hand,     // give message `id` to the idle connection `conn` of `upstream`
    Park,     // message `id` back to the spool until `until`, waiting for `reason`
    Expire,   // message `id` cannot be sent within its lifetime: fail it (`reason`: why it waited)
    Quit,     // idle connection `conn` has no work: QUIT
  };
  Kind kind = Kind::Open;
  std::string upstream;
  ConnId conn = 0;
  std::string id;
  std::int64_t until = 0;
  WaitReason reason = WaitReason::None;
  std::string why;                     // Park/Expire: for last_error and the log
  bool operator==(const Decision&) const = default;
};

// When a message that was attempted is tried next (or that it expires).
struct AfterAttempt {
  bool expired = false;
  std::int64_t next = 0;               // µs; not expired
  bool failover = false;               // an upstream of its route is usable now
};

class Scheduler {
 public:
  static constexpr std::int64_t kHold = 5'000'000;      // µs
  static constexpr std::int64_t kNoRouteRecheck = 300'000'000;
  static constexpr std::int64_t kLoweredFor = 3600'000'000;   // µs a lowered concurrency lasts
  Scheduler(SchedulerParams params, std::function<double()> random01);

  void set_params(SchedulerParams params) { params_ = params; }
  // A new configuration generation's upstreams. Names kept keep their state
  // (suspension, rate windows, connections) unless their settings digest
  // changed (then the suspension is lifted). Removed names drop out: their
  // connections in flight finish, and their events are ignored.
  void set_upstreams(const std::vector<UpstreamSpec>& upstreams, std::int64_t now);
  // Persisted suspensions (at start). Unknown names are ignored.
  void restore(const std::vector<UpstreamState>& states);
  // The quota ledger's entries of an upstream (at start): its rate windows
  // go on from where the last run left them, so a restart does not reset
  // them. Unknown names are ignored.
  void restore_ledger(std::string_view upstream, std::vector<LedgerEntry> entries);
  // How far back the ledger matters for this upstream (its longest window),
  // µs; 0: no windows (nothing to record).
  std::int64_t ledger_span(std::string_view upstream) const;
  // The fleet's shared ledger refused a start for this upstream: no start
  // before `until`.
  void hold_quota(std::string_view upstream, std::int64_t until);
  // The fleet's store is unreachable (share < 1) or back (1.0): every
  // upstream's windows allow that share of their counts.
  void set_quota_share(double share);
  // The upstream's windows as configured (without a fallback share).
  std::vector<RateWindow> windows(std::string_view upstream) const;
  // The use of each window now, for `outboxctl upstreams` and tests.
  std::vector<WindowUse> window_use(std::string_view upstream, std::int64_t now, std::uint32_t next = 1) const;

  void add_due(DueWork work, std::int64_t now);
  // Connection events. `conn` comes from an Open decision.
  // Set up, or done with its message: idle, may take one. A connection
  // stays busy from Hand until it is ready again.
  void connection_ready(ConnId conn);
  void connection_closed(ConnId conn);   // gone (any reason)
  // A connection failed before it was ready (connect, TLS, greeting, AUTH):
  // it was opened for a waiting message, whose try this was. Returns that
  // message (the first waiting one routed through its upstream), removed
  // from here, so the relay records the attempt; nullopt when none waits.
  std::optional<DueWork> charge_failed_open(ConnId conn);

  // An upstream-scope failure: suspends the upstream (its own counter; the
  // AuthFailed schedule for refused logins). nullopt: no such upstream (it
  // was removed by a reload while the connection was in flight).
  // `conn`: the failing connection, if known. A connection opened before the
  // failure that suspended the upstream failed in the same outage: it does
  // not count again (ten connections refused at once are one failure, not
  // ten steps of the backoff).
  std::optional<Suspension> upstream_failed(std::string_view upstream, const UpstreamFailure& f, std::int64_t now,
                                            std::optional<ConnId> conn = std::nullopt);
  // The provider refused a connection as one too many (Microsoft "432 4.3.2",
  // 163 "421 HL:ICC"): one connection fewer than it has now (at least one)
  // for kLoweredFor, then back to max_connections. Returns the new ceiling;
  // nullopt: no such upstream.
  std::optional<std::size_t> lower_concurrency(std::string_view upstream, std::int64_t now);
  // The ceiling in force now: max_connections, or lower after lower_concurrency().
  std::size_t concurrency(std::string_view upstream, std::int64_t now) const;
  // A message handed over at `started` went through: the upstream is well
  // (failures reset, suspension ended). Not when it failed since `started`
  // (failed_at, as for a connection's same-outage failure): a message under
  // way at the refusal (pipelined behind the refused dot, or on another
  // connection) says nothing of the upstream since, and must not lift a
  // suspension the provider asked for (163's 15 minutes for MI:SFQ).
  // false: unknown upstream, or such a message.
  bool upstream_ok(std::string_view upstream, std::int64_t started);
  // The operator lifts a suspension. false: unknown upstream.
  bool resume(std::string_view upstream, std::int64_t now);

  // Everything that can be done now. Call after any event.
  std::vector<Decision> poll(std::int64_t now);
  // The earliest time poll() may have something new to do without another
  // event: a message held here because its upstream's rate window or
  // suspension ends within kHold (longer waits are parked in the spool), or
  // an idle connection's linger ending (its QUIT).
  std::optional<std::int64_t> next_wakeup(std::int64_t now) const;

  // For a message that was attempted (handed, or charged with its
  // connection's failure): when to try next, or that it expires.
  // upstream_fault: the failure was the upstream's (wait for the route, not
  // the message's backoff; expire only at the end of its lifetime).
  AfterAttempt after_attempt(const DueWork& work, bool upstream_fault, std::int64_t now);

  // Shutdown or reload: every message not yet handed, to park now.
  std::vector<std::string> drain();

  // Persistence: states changed since the last call (suspended, lifted).
  std::vector<UpstreamState> take_changed(std::int64_t now);

  std::optional<UpstreamState> state(std::string_view upstream) const;
  std::size_t waiting() const { return waiting_count_; }
  std::size_t open_connections(std::string_view upstream) const;
  bool knows(std::string_view upstream) const { return ups_.count(std::string(upstream)) > 0; }

 private:
  struct Up {
    UpstreamSpec spec;
    std::uint64_t serial = 0;            // a new entry per (re-)added name
    std::optional<std::int64_t> suspended_until;
    SuspendReason reason = SuspendReason::None;
    int failures = 0;
    int auth_failures = 0;
    std::string stage, last_reply;
    QuotaLedger ledger;                  // message starts, for the rate windows
    std::size_t opening = 0, idle = 0, busy = 0;
    std::size_t lowered = 0;             // 0: none; else the ceiling until lowered_until
    std::int64_t lowered_until = 0;
    std::optional<std::int64_t> failed_at;   // the last failure that counted
  };
  void clear_failures(Up& u);
  struct Conn {
    std::string upstream;
    std::uint64_t serial = 0;
    enum class State { Opening, Idle, Busy } state = State::Opening;
    bool quitting = false;
    std::int64_t opened = 0;             // when poll() decided to open it
    std::optional<std::int64_t> idle_since;   // when poll() first found it idle with nothing to carry
  };
  Up* find(std::string_view name);
  const Up* find(std::string_view name) const;
  Up* of(const Conn& c);
  bool suspended(const Up& u, std::int64_t now) const;
  std::size_t limit(const Up& u, std::int64_t now) const;
  // Message starts of `next` recipients still allowed now; *free_at: when
  // one more is allowed; *why: the full window in words.
  std::uint64_t rate_room(const Up& u, std::int64_t now, std::int64_t* free_at, std::uint32_t next = 1,
                          std::string* why = nullptr) const;
  void leave(Conn& c);
  void mark_changed(const std::string& name) { changed_.insert(name); }

  SchedulerParams params_;
  std::function<double()> random01_;
  std::map<std::string, Up, std::less<>> ups_;
  double quota_share_ = 1.0;
  std::map<ConnId, Conn> conns_;
  // Waiting messages, one FIFO per route: every message of a route has the
  // same target, so poll() decides once per route, and touches only the
  // messages it hands or parks. Cost per event is O(routes + decisions),
  // not O(waiting) (which made the relay fall behind a burst: up to 500
  // claimed messages walked on every event). `seq` keeps the due order
  // across routes that share an upstream.
  struct Waiting {
    DueWork w;
    std::uint64_t seq = 0;
  };
  std::map<std::vector<std::string>, std::deque<Waiting>> routes_;
  std::size_t waiting_count_ = 0;
  std::uint64_t next_seq_ = 0;
  std::set<std::string> changed_;
  ConnId next_conn_ = 1;
  std::uint64_t next_serial_ = 1;
};

}  // namespace outbox::queue
