// No open relay (S8): outbox relays everything it accepts to its smarthosts,
// so the rule is who submits, not where the mail goes. An untrusted,
// unauthenticated client gets 530 at MAIL whatever address tricks it uses;
// a trusted one gets the addresses taken as written (or 501 when malformed).
#include <doctest/doctest.h>

#include "unit/protocol/session_harness.h"

using namespace outbox::protocol;
using outbox::protocol::test::Harness;
using outbox::protocol::test::loopback_peer;
using outbox::protocol::test::test_config;

using Lines = std::vector<std::string>;

namespace {
const char* kProbes[] = {
    "victim@outside.test",
    "user%outside.test@localhost",
    "outside.test!user@localhost",
    "@relay.test:user@outside.test",
    "@a.test,@b.test:user@outside.test",
    "\"user@outside.test\"@localhost",
    "user@[192.0.2.1]",
    "user@[IPv6:2001:db8::1]",
    "user@outside.test.",
    "user@@outside.test",
    "<>",
};
}  // namespace

TEST_CASE("untrusted and unauthenticated: 530 at MAIL for every probe, RCPT never accepted") {
  for (ListenerTls tls : {ListenerTls::None, ListenerTls::Implicit}) {
    SessionConfig cfg = test_config();
    cfg.tls = tls;
    cfg.auth = tls == ListenerTls::None ? ListenerAuth::None : ListenerAuth::Optional;
    cfg.max_errors = 0;
    Harness h(cfg, loopback_peer(false));
    h.ehlo();
    for (const char* probe : kProbes) {
      CAPTURE(probe);
      h.feed(std::string("MAIL FROM:<") + probe + ">\r\nRCPT TO:<" + probe + ">\r\nDATA\r\n");
      CHECK(h.take() == Lines{"530 5.7.0 Authentication required\r\n", "503 5.5.1 Error: need MAIL command\r\n",
                              "503 5.5.1 Error: need MAIL command\r\n"});
    }
    // Also with the path written without brackets, and with parameters.
    h.feed("MAIL FROM:victim@outside.test SIZE=10\r\nMAIL FROM:<a@b> AUTH=<>\r\n");
    CHECK(h.codes() == Lines{"530", "530"});
    CHECK(h.messages.empty());
  }
}

TEST_CASE("trusted: probes are ordinary addresses, stored as written or refused with 501") {
  Harness h;
  h.ehlo();
  h.feed("MAIL FROM:<app@example.org>\r\n");
  h.take();
  std::vector<std::string> codes;
  for (const char* probe : kProbes) {
    h.feed(std::string("RCPT TO:<") + probe + ">\r\n");
    codes.push_back(h.take().at(0).substr(0, 3));
  }
  CHECK(codes == Lines{"250", "250", "250", "250", "250", "250", "250", "250", "501", "501", "501"});
  h.feed("DATA\r\nSubject: x\r\n\r\nx\r\n.\r\n");
  REQUIRE(h.messages.size() == 1);
  CHECK(h.messages[0].envelope.recipients ==
        std::vector<std::string>{"victim@outside.test", "user%outside.test@localhost",
                                 "outside.test!user@localhost", "user@outside.test",
                                 "\"user@outside.test\"@localhost", "user@[192.0.2.1]",
                                 "user@[IPv6:2001:db8::1]"});
}

TEST_CASE("an address literal holding '>' is refused, bracketed or not (it could not be relayed intact)") {
  Harness h;
  h.ehlo();
  h.feed("MAIL FROM:<app@example.org>\r\nRCPT TO:u@[2:>b8]\r\nRCPT TO:<u@[2:>b8]>\r\nRCPT TO:<u@[x:y<z]>\r\n");
  CHECK(h.codes() == Lines{"250", "501", "501", "501"});
}
