// The project's one base64 decoder (protocol/base64.h) and its strictness
// options, as each caller uses them: AUTH responses (the defaults), a
// server's 334 challenge (padding required, not canonical), passlib hashes
// ('.' for '+', canonical).
#include <doctest/doctest.h>

#include <optional>
#include <string>

#include "protocol/base64.h"

using namespace outbox::protocol;
using P = Base64Options::Padding;

TEST_CASE("base64: the options, as a table") {
  const Base64Options deflt{};
  const Base64Options challenge{P::Required, false, false};
  const Base64Options passlib{P::Optional, true, true};
  struct Row {
    const char* text;
    Base64Options o;
    std::optional<std::string> want;
    const char* why;
  };
  const Row rows[] = {
      {"Zm9vYmFy", deflt, "foobar", "whole quanta"},
      {"Zm9vYg==", deflt, "foob", "padded"},
      {"Zm9vYg", deflt, "foob", "padding may be left out"},
      {"Zm9vYg=", deflt, std::nullopt, "half the padding: not whole quanta"},
      {"Zm9vYh==", deflt, std::nullopt, "stray bits in the last character"},
      {"Zm9v Yg==", deflt, std::nullopt, "whitespace"},
      {"Zm9v\r\nYg==", deflt, std::nullopt, "a line break"},
      {"Zm9-Yg==", deflt, std::nullopt, "base64url's '-'"},
      {"Zm=vYg==", deflt, std::nullopt, "'=' before the end"},
      {"Z", deflt, std::nullopt, "a lone 6-bit group"},
      {"", deflt, "", "empty"},
      {"Zm9vYg==", challenge, "foob", "a challenge with its padding"},
      {"Zm9vYg", challenge, std::nullopt, "a challenge must be whole quanta"},
      {"Zm9vYh==", challenge, "foob", "a peer's stray bits are not ours to judge"},
      {"Zm9vYg==\n", challenge, std::nullopt, "a line break after it"},
      {"a.b/", passlib, std::string("\x6b\xe6\xff", 3), "passlib: '.' is '+'"},
      {"a+b/", passlib, std::string("\x6b\xe6\xff", 3), "passlib still reads '+'"},
      {"a.b/", deflt, std::nullopt, "'.' is not base64 otherwise"},
  };
  for (const auto& r : rows) {
    CAPTURE(r.why);
    CHECK(base64_decode(r.text, r.o) == r.want);
  }
  CHECK(base64_decode("Zm9vYg") == base64_decode("Zm9vYg", deflt));
}

TEST_CASE("base64: every byte string round-trips in every mode that reads padding") {
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  for (std::size_t n = 0; n < 12; ++n) {
    const std::string s = all.substr(100, n);
    const std::string e = base64_encode(s);
    CHECK(e.size() % 4 == 0);
    CHECK(base64_decode(e) == s);
    CHECK(base64_decode(e, Base64Options{P::Required, false, false}) == s);
  }
}
