// SASL vectors: RFC 4648 §10 base64, RFC 4616 §4 PLAIN examples, LOGIN
// challenges, XOAUTH2 as Google documents it.
#include <doctest/doctest.h>

#include "protocol/sasl.h"

using namespace outbox::protocol::sasl;
using namespace std::string_literals;

TEST_CASE("base64: RFC 4648 §10 test vectors both ways") {
  const std::pair<const char*, const char*> v[] = {
      {"", ""}, {"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"}};
  for (auto [plain, enc] : v) {
    CHECK(base64_encode(plain) == enc);
    CHECK(base64_decode(enc) == std::string(plain));
  }
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  CHECK(base64_decode(base64_encode(all)) == all);
}

TEST_CASE("base64: strict decoding") {
  CHECK_FALSE(base64_decode("Zg="));        // length not a multiple of 4
  CHECK_FALSE(base64_decode("Zg=\n"));
  CHECK_FALSE(base64_decode("Z==="));       // padding too early in the quantum
  CHECK_FALSE(base64_decode("Zg==Zm8="));   // padding before the end
  CHECK_FALSE(base64_decode("Zm9v Yg=="));
  CHECK_FALSE(base64_decode("Zm9*"));
  CHECK_FALSE(base64_decode("Zm=v"));       // data after padding
  CHECK(base64_decode("VXNlcm5hbWU6") == "Username:"s);   // LOGIN challenges
  CHECK(base64_decode("UGFzc3dvcmQ6") == "Password:"s);
}

TEST_CASE("PLAIN: RFC 4616 §4 examples") {
  // "tim" authenticating as itself with password "tanstaaftanstaaf".
  CHECK(plain_message("", "tim", "tanstaaftanstaaf") == "\0tim\0tanstaaftanstaaf"s);
  CHECK(base64_encode(plain_message("", "tim", "tanstaaftanstaaf")) == "AHRpbQB0YW5zdGFhZnRhbnN0YWFm");
  // "Ursel" authenticating as "Kurt" (authzid) with password "xipj3plmq".
  CHECK(plain_message("Ursel", "Kurt", "xipj3plmq") == "Ursel\0Kurt\0xipj3plmq"s);
  CHECK(base64_encode(plain_message("Ursel", "Kurt", "xipj3plmq")) == "VXJzZWwAS3VydAB4aXBqM3BsbXE=");

  auto c = parse_plain_message(*base64_decode("VXJzZWwAS3VydAB4aXBqM3BsbXE="));
  REQUIRE(c);
  CHECK(c->authzid == "Ursel");
  CHECK(c->authcid == "Kurt");
  CHECK(c->passwd == "xipj3plmq");
  CHECK(parse_plain_message("\0tim\0tanstaaftanstaaf"s)->authzid.empty());
  CHECK_FALSE(parse_plain_message("tim\0pass"s));               // one NUL
  CHECK_FALSE(parse_plain_message("\0tim\0pa\0ss"s));           // three NULs
  CHECK_FALSE(parse_plain_message("\0\0pass"s));                // empty authcid
  CHECK_FALSE(parse_plain_message("\0tim\0"s));                 // empty passwd
  CHECK_FALSE(parse_plain_message("\0tim\0"s + std::string(256, 'p')));
}

TEST_CASE("XOAUTH2 initial response") {
  // The example from Google's XOAUTH2 protocol page.
  std::string m = xoauth2_message("someuser@example.com", "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg");
  CHECK(m == "user=someuser@example.com\x01" "auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01");
  CHECK(base64_encode(m) ==
        "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJo"
        "ZG1semRHRXVZMjl0Q2cBAQ==");
}

TEST_CASE("mechanism names") {
  CHECK(parse_mechanism("plain") == Mechanism::Plain);
  CHECK(parse_mechanism("LOGIN") == Mechanism::Login);
  CHECK(parse_mechanism("XOAuth2") == Mechanism::XOAuth2);
  CHECK_FALSE(parse_mechanism("CRAM-MD5"));
  CHECK(mechanism_name(Mechanism::XOAuth2) == "XOAUTH2");
}

TEST_CASE("wipe clears the secret") {
  std::string s = "authorization-code";
  wipe(s);
  CHECK(s.empty());
}
