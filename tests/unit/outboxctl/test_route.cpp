// `outboxctl route`: the routing dry run over a real configuration file.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "tools/outboxctl/route.h"

using namespace outbox;

namespace {

Config config_from(const std::string& text) {
  char path[] = "/tmp/outbox-route-test-XXXXXX";
  int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  ::close(fd);
  std::ofstream(path) << text;
  auto c = load_config(path);
  std::remove(path);
  return c;
}

const char* kConfig = R"(
[spool]
path = "/tmp/outbox-route-test.db"
[[listen]]
address = "127.0.0.1:2525"
[[upstream]]
name = "163"
host = "smtp.163.com"
username = "someone@163.com"
password_env = "OUTBOX_TEST_163"
from_header = "rewrite"
[[upstream]]
name = "relay"
host = "relay.example.net"
tls = "starttls"
[[upstream]]
name = "outgoing"
deliver = "maildir:/var/lib/outbox/outgoing"
[[route]]
sender = "*@163.com"
upstreams = ["163", "relay"]
[[route]]
sender = "*@example.com"
upstreams = ["outgoing"]
)";

struct Run {
  int rc;
  std::string out;
};

Run run(const Config& c, const std::string& sender, std::optional<std::string> rcpt = {}, bool json = false) {
  std::ostringstream out, err;
  int rc = ctl::cmd_route(c, sender, rcpt, json, ctl::Io{out, err});
  return {rc, out.str()};
}

}  // namespace

TEST_CASE("route: the matching route's upstreams in failover order, with what each would send") {
  auto c = config_from(kConfig);
  auto r = run(c, "someone@163.com");
  CHECK(r.rc == 0);
  CHECK(r.out ==
        "sender: someone@163.com\n"
        "route: [[route]] 1 of 2, sender = \"*@163.com\"\n"
        "  1. 163: smtp.163.com:465 (implicit TLS), as someone@163.com; MAIL FROM:<someone@163.com>; "
        "From: rewritten to someone@163.com, the original in Reply-To:\n"
        "  2. relay: relay.example.net:587 (STARTTLS); MAIL FROM:<someone@163.com>  [failover]\n"
        "submission: accepted\n");
  r = run(c, "ceo@example.com", std::string("a@b.test"));
  CHECK(r.rc == 0);
  CHECK(r.out.find("  1. outgoing: maildir:/var/lib/outbox/outgoing; MAIL FROM:<ceo@example.com>\n") !=
        std::string::npos);
  CHECK(r.out.find("recipient: a@b.test: ok\n") != std::string::npos);
}

TEST_CASE("route: a sender the provider refuses, no route, a bad address: exit 1 and why") {
  auto c = config_from(kConfig);
  auto r = run(c, "other@163.com");
  CHECK(r.rc == 1);
  CHECK(r.out.find("submission: refused: 553 5.7.1") != std::string::npos);
  r = run(c, "app@nowhere.test");
  CHECK(r.rc == 1);
  CHECK(r.out.find("route: none (no [[route]] matches)") != std::string::npos);
  r = run(c, "<>");
  CHECK(r.rc == 1);   // no route matches the null sender here ("*" would)
  CHECK(r.out.rfind("sender: <> (the null sender)\n", 0) == 0);
  r = run(c, "ceo@example.com", std::string("\"a b>c\"@d.com>"));
  CHECK(r.rc == 1);
  CHECK(r.out.find("recipient: ") != std::string::npos);
  CHECK(r.out.find(": ok\n") == std::string::npos);
  r = run(c, "not an address@example.com");
  CHECK(r.rc == 1);
}

TEST_CASE("route --json") {
  auto c = config_from(kConfig);
  auto r = run(c, "someone@163.com", {}, true);
  CHECK(r.rc == 0);
  CHECK(r.out.find("\"submission\": \"accepted\"") != std::string::npos);
  CHECK(r.out.find("\"failover\": true") != std::string::npos);
  CHECK(r.out.find("\"from_header\": \"someone@163.com\"") != std::string::npos);
}

TEST_CASE("route <> RECIPIENT: a bounce with no route of its own shows the route the relay gives it") {
  auto c = config_from(kConfig);
  auto r = run(c, "<>", std::string("someone@163.com"));
  CHECK(r.rc == 0);
  CHECK(r.out ==
        "sender: <> (the null sender)\n"
        "route: [[route]] 1 of 2, sender = \"*@163.com\", the recipient's: a bounce with no route of its own "
        "goes the way its recipient's mail would\n"
        "  1. 163: smtp.163.com:465 (implicit TLS), as someone@163.com; MAIL FROM:<>; "
        "From: rewritten to someone@163.com, the original in Reply-To:\n"
        "  2. relay: relay.example.net:587 (STARTTLS); MAIL FROM:<>  [failover]\n"
        "recipient: someone@163.com: ok\n"
        "submission: accepted\n");
  r = run(c, "<>", std::string("someone@163.com"), true);
  CHECK(r.out.find("\"by_recipient\": true") != std::string::npos);
  // A recipient no route takes either: no route, as the relay would find.
  r = run(c, "<>", std::string("app@nowhere.test"));
  CHECK(r.rc == 1);
  CHECK(r.out.find("route: none") != std::string::npos);
  // Without a recipient, the hint how to see a bounce's route.
  r = run(c, "<>");
  CHECK(r.out.find("give the recipient to see that route") != std::string::npos);
  // A sender with a route of its own: the recipient changes nothing.
  r = run(c, "ceo@example.com", std::string("someone@163.com"));
  CHECK(r.out.find("sender = \"*@example.com\"\n") != std::string::npos);
}
