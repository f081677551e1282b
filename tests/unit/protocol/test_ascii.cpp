// protocol/ascii.h: case without the locale, for SMTP keywords, domains and
// reply texts (RFC 5321 §2.4); octets outside ASCII are left alone.
#include <doctest/doctest.h>

#include <string>

#include "protocol/ascii.h"

namespace ascii = outbox::protocol::ascii;

TEST_CASE("ascii: case folds A-Z and a-z only") {
  for (int i = 0; i < 256; ++i) {
    const char c = static_cast<char>(i);
    const bool up = c >= 'A' && c <= 'Z', low = c >= 'a' && c <= 'z';
    CAPTURE(i);
    CHECK(ascii::lower(c) == (up ? static_cast<char>(c + 32) : c));
    CHECK(ascii::upper(c) == (low ? static_cast<char>(c - 32) : c));
  }
  // UTF-8 octets (negative chars) pass unchanged: no locale, no UB.
  CHECK(ascii::to_lower("ÄÖ Mail@Example.COM") == "ÄÖ mail@example.com");
  CHECK(ascii::to_upper("auth=plain login é") == "AUTH=PLAIN LOGIN é");
}

TEST_CASE("ascii: iequals and icontains, table") {
  struct Row {
    std::string_view a, b;
    bool equal, contains;
  };
  const Row rows[] = {
      {"EHLO", "ehlo", true, true},
      {"Example.COM", "example.com", true, true},
      {"451 MI:SFQ frequency limited", "mi:sfq", false, true},
      {"Throttling failure", "THROTTL", false, true},
      {"rate", "rate limit", false, false},    // the needle longer than the text
      {"", "", true, true},                    // an empty needle is found
      {"abc", "", false, true},
      {"abc", "abd", false, false},
      {"Ä", "ä", false, false},                // outside ASCII: octets as they are
  };
  for (const auto& r : rows) {
    CAPTURE(r.a);
    CAPTURE(r.b);
    CHECK(ascii::iequals(r.a, r.b) == r.equal);
    CHECK(ascii::icontains(r.a, r.b) == r.contains);
  }
  static_assert(ascii::iequals("QUIT", "quit"));
  static_assert(ascii::icontains("550 5.7.1 Sender mismatch", "SENDER MISMATCH"));
}
