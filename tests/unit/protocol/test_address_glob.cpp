// The one address glob (protocol/address_glob.h), as used by routes,
// may_send_as and outboxctl's filters.
#include <doctest/doctest.h>

#include <string>

#include "protocol/address_glob.h"

using outbox::protocol::address_matches;

TEST_CASE("address_matches: * and ?, local part exact, domain case-blind, the null sender apart") {
  struct Row { const char* pattern; const char* address; bool match; };
  const Row rows[] = {
      {"*", "a@b.test", true},
      {"*", "", true},
      {"**", "", true},
      {"<>", "", true},
      {"<>", "a@b.test", false},
      {"*@b.test", "", false},
      {"*@example.com", "app@EXAMPLE.com", true},
      {"*@example.com", "app@example.com.evil.test", false},
      {"noreply@example.com", "NoReply@example.com", false},   // local parts are exact (RFC 5321 §2.4)
      {"app?@example.com", "app1@example.com", true},          // ? is one character, everywhere
      {"app?@example.com", "app@example.com", false},
      {"app?@example.com", "app12@example.com", false},
      {"*@mail?.example.com", "x@mail2.example.com", true},
      {"APP@*", "app@x.test", false},
      {"*example.com", "a@EXAMPLE.COM", true},                  // no @ in the pattern: the whole address, case-blind
      {"*@example.com", "\"u@other.test\"@example.com", true},  // split at the last @
  };
  for (const auto& r : rows) {
    CAPTURE(r.pattern);
    CAPTURE(r.address);
    CHECK(address_matches(r.pattern, r.address) == r.match);
  }
  CHECK_FALSE(address_matches(std::string(200, '*') + "x", std::string(300, 'a')));   // no blow-up
}
