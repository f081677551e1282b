// Sender rights: may_send_as globs, [[user]] and [[local_user]] decisions.
#include <doctest/doctest.h>

#include "daemon/sender_policy.h"

using namespace outbox;
using namespace outbox::daemon;

TEST_CASE("may_send_as globs") {
  CHECK(sender_matches("*@example.com", "app@example.com"));
  CHECK(sender_matches("*@example.com", "app@EXAMPLE.Com"));        // domains are case-blind
  CHECK(sender_matches("*@Example.COM", "app@example.com"));
  CHECK_FALSE(sender_matches("*@example.com", "app@example.com.evil.test"));
  CHECK_FALSE(sender_matches("*@example.com", "app@sub.example.com"));
  CHECK_FALSE(sender_matches("*@example.com", "example.com@evil.test"));
  CHECK(sender_matches("*@*.example.com", "app@sub.example.com"));
  CHECK(sender_matches("noreply@example.com", "noreply@example.com"));
  CHECK(sender_matches("noreply@example.com", "noreply@Example.com"));
  CHECK_FALSE(sender_matches("noreply@example.com", "NoReply@example.com"));  // local parts are exact
  CHECK_FALSE(sender_matches("noreply@example.com", "noreply2@example.com"));
  CHECK(sender_matches("app-*@example.com", "app-billing@example.com"));
  CHECK_FALSE(sender_matches("app-*@example.com", "web@example.com"));
  // A quoted local part holding '@' still belongs to the domain after the last '@'.
  CHECK(sender_matches("*@example.com", "\"u@other.test\"@example.com"));
  CHECK_FALSE(sender_matches("*@other.test", "\"u@other.test\"@example.com"));
  // The null sender: only "*" or "<>".
  CHECK(sender_matches("*", ""));
  CHECK(sender_matches("<>", ""));
  CHECK_FALSE(sender_matches("*@example.com", ""));
  CHECK_FALSE(sender_matches("<>", "a@example.com"));
  CHECK(sender_matches("*", "anyone@anywhere.test"));
  CHECK_FALSE(sender_matches("", "a@b"));
  // Many stars do not explode.
  CHECK_FALSE(sender_matches(std::string(200, '*') + "x", std::string(300, 'a')));
}

namespace {
Config policy_config() {
  Config c;
  c.users.push_back(UserConfig{"app", "$scrypt$x", {"*@example.com", "<>"}});
  c.users.push_back(UserConfig{"nobody", "$scrypt$x", {}});
  return c;
}
Submitter tcp() { return Submitter{}; }
Submitter unix_user(std::string name, std::uint32_t uid = 1000) { return Submitter{true, uid, std::move(name)}; }
}  // namespace

TEST_CASE("authenticated users may use only their may_send_as") {
  Config c = policy_config();
  CHECK_FALSE(check_sender(c, tcp(), "app@example.com", "app"));
  CHECK_FALSE(check_sender(c, tcp(), "", "app"));
  auto r = check_sender(c, tcp(), "ceo@example.net", "app");
  REQUIRE(r);
  CHECK(r->code == 550);
  CHECK(r->text == "5.7.1 Sender address <ceo@example.net> not owned by user app");
  CHECK(r->reason == "sender_not_owned");
  // No may_send_as: no sender at all. An unknown name (config changed): none either.
  CHECK(check_sender(c, tcp(), "x@example.com", "nobody"));
  CHECK(check_sender(c, tcp(), "x@example.com", "ghost"));
  // The authenticated identity wins on a Unix socket too.
  CHECK(check_sender(c, unix_user("www-data"), "x@example.net", "app"));
}

TEST_CASE("unauthenticated: trusted TCP and unlisted local users send as anyone") {
  Config c = policy_config();
  CHECK_FALSE(check_sender(c, tcp(), "anyone@anywhere.test", ""));
  CHECK_FALSE(check_sender(c, unix_user("www-data"), "anyone@anywhere.test", ""));
}

TEST_CASE("[[local_user]] entries: only listed users, only their senders") {
  Config c = policy_config();
  c.local_users.push_back(LocalUserConfig{"www-data", {"noreply@example.com"}});
  c.local_users.push_back(LocalUserConfig{"root", {"*"}});
  CHECK_FALSE(check_sender(c, unix_user("www-data"), "noreply@example.com", ""));
  auto r = check_sender(c, unix_user("www-data"), "ceo@example.com", "");
  REQUIRE(r);
  CHECK(r->text == "5.7.1 Sender address <ceo@example.com> not owned by user www-data");
  CHECK_FALSE(check_sender(c, unix_user("root", 0), "", ""));
  r = check_sender(c, unix_user("mallory"), "noreply@example.com", "");
  REQUIRE(r);
  CHECK(r->code == 550);
  CHECK(r->text == "5.7.1 Local user mallory may not submit mail");
  CHECK(r->reason == "local_user_not_allowed");
  r = check_sender(c, unix_user("", 4242), "noreply@example.com", "");
  REQUIRE(r);
  CHECK(r->text == "5.7.1 Local user uid 4242 may not submit mail");
  // TCP peers are not local users.
  CHECK_FALSE(check_sender(c, tcp(), "ceo@example.com", ""));
}

TEST_CASE("policy replies fit in a 512-octet reply line") {
  Config c;
  std::string user(256, 'u');
  c.users.push_back(UserConfig{user, "$scrypt$x", {"*@example.com"}});
  std::string sender = std::string(64, 'l') + "@" + std::string(180, 'd') + ".test";
  auto r = check_sender(c, tcp(), sender, user);
  REQUIRE(r);
  CHECK(r->text.size() + 6 <= 512);
  CHECK(r->text == "5.7.1 Sender address not owned by user " + user);
  c.local_users.push_back(LocalUserConfig{"x", {}});
  r = check_sender(c, unix_user(std::string(600, 'n')), "a@b.test", "");
  REQUIRE(r);
  CHECK(r->text.size() + 6 <= 512);
}

TEST_CASE("loopback TCP peers: [[local_user]] rules by the uid the kernel named, 451 when it is unknown") {
  using LI = LimitsConfig::LoopbackIdentity;
  auto loop = [](std::optional<std::uint32_t> uid, std::string name) {
    Submitter s;
    s.loopback = true;
    s.uid = uid;
    s.local_user = std::move(name);
    return s;
  };
  struct Row {
    const char* name;
    LI mode;
    bool rules;
    Submitter who;
    const char* sender;
    std::optional<int> code;   // nullopt: allowed
    const char* reason;
  };
  const Row rows[] = {
      {"known, allowed sender", LI::BestEffort, true, loop(33, "www-data"), "web@example.com", std::nullopt, ""},
      {"known, other sender: same 550 as a Unix peer", LI::BestEffort, true, loop(33, "www-data"), "ceo@example.com",
       550, "sender_not_owned"},
      {"known, not listed", LI::BestEffort, true, loop(65534, "nobody"), "x@example.com", 550,
       "local_user_not_allowed"},
      {"unknown with rules", LI::BestEffort, true, loop(std::nullopt, ""), "web@example.com", 451,
       "loopback_identity_unknown"},
      {"unknown, no rules, best-effort", LI::BestEffort, false, loop(std::nullopt, ""), "x@example.com", std::nullopt,
       ""},
      {"unknown, no rules, required", LI::Required, false, loop(std::nullopt, ""), "x@example.com", 451,
       "loopback_identity_unknown"},
      {"off: loopback is just a trusted network", LI::Off, true, loop(65534, "nobody"), "x@example.com",
       std::nullopt, ""},
      {"not loopback (another trusted host): no local rules", LI::Required, true, Submitter{}, "x@example.com",
       std::nullopt, ""},
  };
  for (const auto& r : rows) {
    CAPTURE(r.name);
    Config c;
    c.limits.loopback_identity = r.mode;
    if (r.rules) c.local_users.push_back(LocalUserConfig{"www-data", {"web@example.com"}});
    auto got = check_sender(c, r.who, r.sender, "");
    REQUIRE(got.has_value() == r.code.has_value());
    if (got) {
      CHECK(got->code == *r.code);
      CHECK(got->reason == r.reason);
    }
  }
  // Authenticated: AUTH decides, whatever the loopback identity.
  Config c;
  c.limits.loopback_identity = LI::Required;
  c.users.push_back(UserConfig{"app", "$scrypt$x", {"*@example.com"}});
  CHECK_FALSE(check_sender(c, loop(std::nullopt, ""), "a@example.com", "app"));
}
