#include "daemon/claim_clock.h"

#include <algorithm>

namespace outbox::daemon {

std::optional<std::uint64_t> ClaimClock::kick(bool stopping, TimerState timer) {
  if (stopping || !started_) return std::nullopt;
  if (claiming_) {
    again_ = true;
    return std::nullopt;
  }
  if (timer.armed && timer.due_in_ms <= kKickAbsorbMs) return std::nullopt;
  return kKickDelayMs;
}

std::optional<std::uint64_t> ClaimClock::wake_after(std::int64_t now, std::optional<std::int64_t> sched_wakeup,
                                                    std::size_t in_memory, TimerState timer) const {
  std::optional<std::int64_t> at = sched_wakeup;
  // With the in-memory bound reached, the next claim waits for a message to
  // finish (settle() arms the timer again), not for the clock.
  if (spool_next_due_ && in_memory < kMaxInMemory && (!at || *spool_next_due_ < *at)) at = spool_next_due_;
  // Nothing due at any known time: new mail (kick) or an operator action wakes us.
  if (!at) return std::nullopt;
  std::int64_t ms = std::max<std::int64_t>(0, (*at - now + 999) / 1000);   // not a millisecond early
  ms = std::min<std::int64_t>(ms, static_cast<std::int64_t>(kMaxWaitMs));
  if (timer.armed && timer.due_in_ms <= static_cast<std::uint64_t>(ms)) return std::nullopt;
  return static_cast<std::uint64_t>(ms);
}

std::size_t ClaimClock::claim_limit(std::size_t in_memory) {
  if (in_memory >= kMaxInMemory) return 0;
  return std::min(kClaimBatch, kMaxInMemory - in_memory);
}

void ClaimClock::claim_started() {
  claiming_ = true;
  again_ = false;
}

void ClaimClock::claimed(std::int64_t now, std::optional<std::int64_t> next_due, std::size_t taken) {
  claiming_ = false;
  spool_next_due_ = next_due;
  // Due by the message's time but nothing claimable: do not spin on it.
  if (taken == 0 && spool_next_due_ && *spool_next_due_ <= now) spool_next_due_ = now + kBackOffUs;
}

void ClaimClock::claim_failed(std::int64_t now) {
  claiming_ = false;
  spool_next_due_ = now + kBackOffUs;
}

bool ClaimClock::due_by(std::int64_t at) {
  if (spool_next_due_ && at >= *spool_next_due_) return false;
  spool_next_due_ = at;
  return true;
}

}  // namespace outbox::daemon
