// Unix peers' user names: looked up once per uid per TTL, not per accept.
#include <doctest/doctest.h>

#include <map>

#include "daemon/user_name_cache.h"

using outbox::daemon::UserNameCache;
using namespace std::chrono_literals;

TEST_CASE("UserNameCache: one lookup per uid within the TTL, again after it") {
  UserNameCache cache(60s, 3);
  std::map<std::uint32_t, std::string> passwd{{1000, "alice"}, {1001, "bob"}};
  int calls = 0;
  auto resolve = [&](std::uint32_t uid) {
    ++calls;
    auto it = passwd.find(uid);
    return it == passwd.end() ? std::string() : it->second;
  };
  const auto t0 = UserNameCache::Clock::time_point{} + 1000s;
  struct Step {
    std::chrono::seconds at;
    std::uint32_t uid;
    std::string name;
    int calls;
  };
  const Step steps[] = {
      {0s, 1000, "alice", 1},    // first accept: asked
      {1s, 1000, "alice", 1},    // cached
      {59s, 1000, "alice", 1},   // still within 60 s
      {2s, 4242, "", 2},         // unknown uid: asked once
      {3s, 4242, "", 2},         // ... and its absence cached
      {60s, 1000, "alice", 3},   // expired: asked again
  };
  for (const auto& s : steps) {
    CAPTURE(s.at.count());
    CHECK(cache.lookup(s.uid, t0 + s.at, resolve) == s.name);
    CHECK(calls == s.calls);
  }
  passwd[1000] = "alice2";   // renamed: seen after the TTL
  CHECK(cache.lookup(1000, t0 + 61s, resolve) == "alice");
  CHECK(cache.lookup(1000, t0 + 121s, resolve) == "alice2");
}

TEST_CASE("UserNameCache: bounded") {
  UserNameCache cache(60s, 3);
  auto t = UserNameCache::Clock::time_point{};
  for (std::uint32_t uid = 0; uid < 10; ++uid) cache.lookup(uid, t, [](std::uint32_t) { return std::string("u"); });
  CHECK(cache.size() <= 3);
}
