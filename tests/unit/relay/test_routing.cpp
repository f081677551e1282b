// Routing: [[route]] sender globs, first match wins, and the submission-time
// sender check for providers that accept only their own account.
#include <doctest/doctest.h>

#include "daemon/config.h"
#include "daemon/routing.h"

using namespace outbox;
using outbox::routing::sender_matches;

namespace {

UpstreamConfig upstream(std::string name, std::string host, std::string user = {},
                        std::string envelope_from = {}) {
  UpstreamConfig u;
  u.name = std::move(name);
  u.host = std::move(host);
  u.username = std::move(user);
  u.envelope_from = std::move(envelope_from);
  return u;
}

Config sample() {
  Config c;
  c.upstreams.push_back(upstream("163", "smtp.163.com", "someone@163.com"));
  c.upstreams.push_back(upstream("qq", "smtp.qq.com", "12345@qq.com", "12345@qq.com"));
  c.upstreams.push_back(upstream("gmail", "smtp.gmail.com", "me@gmail.com"));
  c.upstreams.push_back(upstream("relay", "relay.corp.example"));
  c.routes.push_back({"*@163.com", {"163", "relay"}});
  c.routes.push_back({"*@QQ.com", {"qq"}});
  c.routes.push_back({"<>", {"relay"}});
  c.routes.push_back({"alerts-??@example.com", {"gmail"}});
  c.routes.push_back({"*", {"relay", "missing", "gmail"}});
  return c;
}

}  // namespace

TEST_CASE("sender glob table") {
  struct Row { const char* pattern; const char* sender; bool match; };
  const Row rows[] = {
      {"*", "a@b.example", true},
      {"*", "", true},                              // "*" also matches <>
      {"**", "", true},
      {"<>", "", true},
      {"<>", "<>", true},
      {"<>", "a@b", false},
      {"*@*", "", false},                           // only "*" patterns match <>
      {"*@163.com", "someone@163.com", true},
      {"*@163.com", "someone@163.COM", true},       // domain: case-insensitive
      {"*@163.com", "someone@mail.163.com", false},
      {"*@*.163.com", "someone@mail.163.com", true},
      {"*@163.com", "someone@163.com.evil", false},
      {"Someone@163.com", "someone@163.com", false},// local part: case-sensitive
      {"someone@163.com", "someone@163.com", true},
      {"alerts-??@example.com", "alerts-01@example.com", true},
      {"alerts-??@example.com", "alerts-1@example.com", false},
      {"alerts-??@example.com", "alerts-001@example.com", false},
      {"*example.com", "ops@EXAMPLE.com", true},    // no '@': whole address, case-insensitive
      {"*example.com", "ops@example.org", false},
      {"a*b*c*d*e*f*g*h@x", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@x", false},
      {"*@x", "no-at-sign", false},
  };
  for (const auto& r : rows) {
    CAPTURE(r.pattern);
    CAPTURE(r.sender);
    CHECK(sender_matches(r.pattern, r.sender) == r.match);
  }
}

TEST_CASE("first matching route wins and gives the failover order") {
  Config c = sample();
  auto names = [&](std::string_view sender) {
    std::vector<std::string> out;
    for (auto* u : routing::upstreams_for(c, sender)) out.push_back(u->name);
    return out;
  };
  CHECK(names("someone@163.com") == std::vector<std::string>{"163", "relay"});
  CHECK(names("x@qq.com") == std::vector<std::string>{"qq"});
  CHECK(names("") == std::vector<std::string>{"relay"});          // "<>" precedes "*"
  CHECK(names("alerts-07@example.com") == std::vector<std::string>{"gmail"});
  CHECK(names("cron@host.example") == std::vector<std::string>{"relay", "gmail"});  // unknown name skipped
  c.routes.pop_back();
  CHECK(names("cron@host.example").empty());
  CHECK(routing::find_route(c, "cron@host.example") == nullptr);
}

TEST_CASE("envelope sender rewrite") {
  Config c = sample();
  CHECK(routing::envelope_sender_for(*routing::find_upstream(c, "qq"), "x@qq.com") == "12345@qq.com");
  CHECK(routing::envelope_sender_for(*routing::find_upstream(c, "163"), "a@163.com") == "a@163.com");
}

TEST_CASE("providers that require their own account as sender") {
  CHECK(routing::requires_own_sender("smtp.163.com"));
  CHECK(routing::requires_own_sender("SMTP.QQ.COM"));
  CHECK(routing::requires_own_sender("smtp.exmail.qq.com"));
  CHECK(routing::requires_own_sender("smtp.126.com."));
  CHECK(routing::requires_own_sender("smtp.yeah.net"));
  CHECK_FALSE(routing::requires_own_sender("smtp.gmail.com"));
  CHECK_FALSE(routing::requires_own_sender("smtp.not163.com"));
  CHECK_FALSE(routing::requires_own_sender("163.com.example"));
}

TEST_CASE("submission-time sender check") {
  Config c = sample();
  auto ok = routing::check_sender(c, "someone@163.com");
  CHECK(ok.allowed);
  CHECK(routing::check_sender(c, "SOMEONE@163.com").allowed);
  auto bad = routing::check_sender(c, "other@163.com");
  CHECK_FALSE(bad.allowed);
  CHECK(bad.upstream == "163");
  CHECK(bad.reply() ==
        "553 5.7.1 Sender <other@163.com> is not allowed through upstream \"163\": it accepts only "
        "someone@163.com as sender; set envelope_from or use that address");
  // envelope_from set: the relay rewrites MAIL FROM, any sender is fine.
  CHECK(routing::check_sender(c, "anyone@qq.com").allowed);
  // Not a restricted provider, no route: allowed.
  CHECK(routing::check_sender(c, "alerts-01@example.com").allowed);
  c.routes.clear();
  CHECK(routing::check_sender(c, "other@163.com").allowed);
  // The null sender through a restricted upstream is refused as well.
  Config d;
  d.upstreams.push_back(upstream("163", "smtp.163.com", "someone@163.com"));
  d.routes.push_back({"*", {"163"}});
  auto null = routing::check_sender(d, "");
  CHECK_FALSE(null.allowed);
  CHECK(null.reply().rfind("553 5.7.1 Sender <> is not allowed through upstream \"163\"", 0) == 0);
  // A username that is not an address (SES IAM keys): nothing to compare.
  d.upstreams[0].username = "AKIAEXAMPLE";
  CHECK(routing::check_sender(d, "x@y").allowed);
}

TEST_CASE("a queued message's upstreams: a bounce no route takes goes its recipient's way") {
  Config c;
  c.upstreams.push_back(upstream("163", "smtp.163.com", "someone@163.com"));
  c.upstreams.push_back(upstream("relay", "relay.corp.example"));
  c.routes.push_back({"*@163.com", {"163", "relay"}});
  auto names = [&](std::string sender, std::vector<std::string> rcpts) {
    std::vector<std::string> out;
    for (const auto* u : routing::upstreams_for_message(c, sender, rcpts)) out.push_back(u->name);
    return out;
  };
  using V = std::vector<std::string>;
  CHECK(names("a@163.com", {"x@example.org"}) == V{"163", "relay"});
  CHECK(names("a@example.org", {"x@163.com"}) == V{});          // only a bounce follows its recipient
  CHECK(names("", {"a@163.com", "b@example.org"}) == V{"163", "relay"});   // the first recipient decides
  CHECK(names("", {"a@example.org"}) == V{});
  CHECK(names("", {}) == V{});
  auto bounce = routing::route_for_message(c, "", {"a@163.com"});
  CHECK(bounce.route == &c.routes[0]);
  CHECK(bounce.by_recipient);
  CHECK_FALSE(routing::route_for_message(c, "a@163.com", {"x@example.org"}).by_recipient);
  CHECK(routing::route_for_message(c, "", {"a@example.org"}).route == nullptr);
  c.routes.push_back({"<>", {"relay"}});                       // a route for bounces wins over the fallback
  CHECK(names("", {"a@163.com"}) == V{"relay"});
  CHECK(routing::route_for_message(c, "", {"a@163.com"}).route == &c.routes[1]);
  CHECK_FALSE(routing::route_for_message(c, "", {"a@163.com"}).by_recipient);
}
