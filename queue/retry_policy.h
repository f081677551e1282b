// RetryPolicy: when to try a deferred message again, and when to give up
// (SPEC "[retry]", STYLE lesson 7). Pure functions: the caller passes the
// time and a random number, so tables test them exactly. Times are
// microseconds since the Unix epoch, as in queue/types.h.
//
// Message retries: the delay after the n-th failed attempt is
//   initial * factor^(n-1), capped at max, then scaled by a jitter factor
//   uniformly in [1 - jitter, 1 + jitter) (so retries after a restart or an
//   outage spread out instead of arriving together).
// Expiry (Postfix's maximal_queue_lifetime, with one deliberate difference):
//   deadline = created + lifetime;
//   now >= deadline                    -> Expire (bounce, DSN);
//   now + delay > deadline             -> one last attempt exactly at the
//                                         deadline; when that one fails, now
//                                         is past the deadline -> Expire;
//   else                               -> Retry at now + delay.
// So the last attempt always happens at the end of the lifetime, not up to
// `max` earlier, and a message is never bounced without a try near the end.
//
// Upstream backoff: for failures of scope "upstream" (AUTH refused, TLS,
// throttling) the scheduler backs off the upstream itself with its own
// counter of consecutive failures, and does not count them against the
// messages (they wait for the upstream). Same curve, no expiry, and never
// shorter than what the provider asked for (suggested_backoff()).
#pragma once
#include <chrono>
#include <cstdint>

namespace outbox::queue {

struct RetryParams {
  std::chrono::seconds initial{60};
  std::chrono::seconds max{3600};
  double factor = 2.0;
  double jitter = 0.2;                      // fraction, 0 <= jitter < 1
  std::chrono::seconds lifetime{5 * 86400};
};

struct RetryDecision {
  enum class Kind { Retry, Expire };
  Kind kind = Kind::Retry;
  std::int64_t at = 0;        // µs; the next attempt (Retry only)
  bool last_attempt = false;  // Retry scheduled at the deadline: failing it expires
  bool expired() const { return kind == Kind::Expire; }
};

// The un-jittered delay after `attempts` failed attempts (>= 1; 0 counts as 1).
std::chrono::microseconds base_delay(const RetryParams& p, int attempts);

// attempts: failed attempts so far, this one included. random01 in [0, 1).
RetryDecision next_attempt(const RetryParams& p, int attempts, std::int64_t created, std::int64_t now,
                           double random01);

// When the upstream may be tried again after `failures` consecutive
// upstream-scope failures; floor: the provider's own request (0 = none).
std::int64_t upstream_retry_at(const RetryParams& p, int failures, std::int64_t now, double random01,
                               std::chrono::seconds floor = std::chrono::seconds{0});

}  // namespace outbox::queue
