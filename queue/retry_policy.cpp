#include "queue/retry_policy.h"

#include <algorithm>
#include <cmath>

namespace outbox::queue {

namespace {

using dsec = std::chrono::duration<double>;

// Kept in double seconds until the end (STYLE lesson 7: maddy truncated the
// float to an integer and its "1.25" curve became steps).
double base_seconds(const RetryParams& p, int attempts) {
  int n = std::max(attempts, 1);
  double initial = std::max<double>(static_cast<double>(p.initial.count()), 1.0);
  double max = std::max<double>(static_cast<double>(p.max.count()), initial);
  double factor = std::max(p.factor, 1.0);
  double d = initial * std::pow(factor, n - 1);   // inf for huge n: capped below
  if (!(d < max)) d = max;
  return d;
}

double jittered(const RetryParams& p, double seconds, double random01) {
  double r = std::clamp(random01, 0.0, std::nextafter(1.0, 0.0));
  double j = std::clamp(p.jitter, 0.0, 0.99);
  return seconds * (1.0 - j + 2.0 * j * r);
}

std::int64_t to_us(double seconds) { return static_cast<std::int64_t>(std::llround(seconds * 1e6)); }

}  // namespace

std::chrono::microseconds base_delay(const RetryParams& p, int attempts) {
  return std::chrono::microseconds(to_us(base_seconds(p, attempts)));
}

RetryDecision next_attempt(const RetryParams& p, int attempts, std::int64_t created, std::int64_t now,
                           double random01) {
  RetryDecision d;
  std::int64_t deadline = created + std::chrono::duration_cast<std::chrono::microseconds>(p.lifetime).count();
  if (now >= deadline) {
    d.kind = RetryDecision::Kind::Expire;
    return d;
  }
  std::int64_t next = now + to_us(jittered(p, base_seconds(p, attempts), random01));
  if (next >= deadline) {
    d.at = deadline;
    d.last_attempt = true;
  } else {
    d.at = next;
  }
  return d;
}

std::int64_t upstream_retry_at(const RetryParams& p, int failures, std::int64_t now, double random01,
                               std::chrono::seconds floor) {
  double s = jittered(p, base_seconds(p, failures), random01);
  s = std::max(s, static_cast<double>(floor.count()));
  return now + to_us(s);
}

}  // namespace outbox::queue
