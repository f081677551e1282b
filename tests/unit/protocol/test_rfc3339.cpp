// The project's one RFC 3339 formatter (protocol/rfc3339.h).
#include <doctest/doctest.h>

#include "protocol/rfc3339.h"

using outbox::protocol::rfc3339_utc;

TEST_CASE("rfc3339_utc: UTC, seconds, a Z") {
  CHECK(rfc3339_utc(0) == "1970-01-01T00:00:00Z");
  CHECK(rfc3339_utc(1796472000) == "2026-12-05T12:00:00Z");
  CHECK(rfc3339_utc(-1) == "1969-12-31T23:59:59Z");
}
