// RFC 3339 UTC timestamps ("2026-12-05T12:00:00Z") for logs, alerts and
// outboxctl: one formatter for the project. Pure (gmtime_r, no clock).
#pragma once
#include <cstdint>
#include <string>

namespace outbox::protocol {

// unix_seconds since the epoch; "invalid-time" when it cannot be shown.
std::string rfc3339_utc(std::int64_t unix_seconds);

}  // namespace outbox::protocol
