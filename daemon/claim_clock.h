// ClaimClock: when the relay claims due messages from the spool next. Pure:
// no libuv, no clock (now is a parameter, µs), so every rule of the cadence
// is table-tested (tests/unit/daemon/test_claim_clock.cpp). Relay keeps the
// one uv_timer, tells the clock what libuv says about it (TimerState) and
// starts it for the milliseconds the clock answers.
//
// The relay never polls the schedule: one timer is armed at the earliest
// wake-up it knows of (the scheduler's, the spool's next due time), and new
// mail or an operator action kicks it. Claims never overlap: a kick during a
// claim asks for another one as soon as it ends.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>

namespace outbox::daemon {

// The relay's claim timer as libuv has it.
struct TimerState {
  bool armed = false;
  std::uint64_t due_in_ms = 0;   // armed: when it fires
};

class ClaimClock {
 public:
  // Claimed messages not yet finished (handed, parked or settled): the
  // bound on what the relay holds in memory.
  static constexpr std::size_t kMaxInMemory = 500;
  static constexpr std::size_t kClaimBatch = 100;
  // A burst of submissions: one claim every few milliseconds takes them all,
  // instead of one spool query per accepted message.
  static constexpr std::uint64_t kKickDelayMs = 10;
  static constexpr std::uint64_t kKickAbsorbMs = 20;
  // libuv's timeout is milliseconds in 64 bits, but a wake-up years ahead
  // (a far retry) is better looked at again once a day.
  static constexpr std::uint64_t kMaxWaitMs = 24ULL * 3600 * 1000;
  // A due time the claim could not use (failed, or nothing claimable yet):
  // looked at again this much later instead of at once.
  static constexpr std::int64_t kBackOffUs = 1'000'000;

  // Recovery done: claims may start.
  void start() { started_ = true; }
  bool started() const { return started_; }
  bool claiming() const { return claiming_; }
  std::optional<std::int64_t> spool_next_due() const { return spool_next_due_; }

  // A message was accepted (or made due): the ms after which to claim, or
  // nothing (a claim under way takes it when it ends; an armed timer about
  // to fire takes it; not started or stopping).
  std::optional<std::uint64_t> kick(bool stopping, TimerState timer);

  // Whether the timer may be armed now (a claim under way arms it when it
  // ends).
  bool may_arm(bool stopping) const { return started_ && !stopping && !claiming_; }
  // The ms to arm the timer at, or nothing (no known wake-up, or an earlier
  // one is armed already). sched_wakeup: the scheduler's next wake-up;
  // in_memory: claimed messages not finished.
  std::optional<std::uint64_t> wake_after(std::int64_t now, std::optional<std::int64_t> sched_wakeup,
                                          std::size_t in_memory, TimerState timer) const;

  // Whether the timer's tick may claim (one claim at a time).
  bool may_tick(bool stopping) const { return !stopping && !claiming_; }
  // How many messages one claim may take; 0: the in-memory bound is
  // reached (a finished message arms the timer again).
  static std::size_t claim_limit(std::size_t in_memory);
  void claim_started();
  // The claim's answer: the spool's next due time after it, how many it
  // took. The due time is kept; one already passed with nothing claimed
  // (its recipients are due later) is looked at again after kBackOffUs,
  // not at once.
  void claimed(std::int64_t now, std::optional<std::int64_t> next_due, std::size_t taken);
  void claim_failed(std::int64_t now);
  // After a claim: claim again at once (a kick came meanwhile, or the batch
  // was full and more may be due) rather than arm the timer.
  bool claim_again(std::size_t taken, std::size_t limit) const { return again_ || taken == limit; }

  // A message is due at `at` (parked, deferred, made due from outside).
  // True when that is earlier than the spool's next due time known.
  bool due_by(std::int64_t at);

 private:
  bool started_ = false;
  bool claiming_ = false;
  bool again_ = false;   // a kick came during the claim
  std::optional<std::int64_t> spool_next_due_;
};

}  // namespace outbox::daemon
