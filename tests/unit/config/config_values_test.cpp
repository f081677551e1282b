// The shared value parsers: sizes, durations and CIDR membership, as tables.
#include <doctest/doctest.h>

#include "daemon/config.h"

using namespace outbox;

TEST_CASE("parse_size") {
  struct Row { const char* in; std::optional<std::uint64_t> out; };
  const Row rows[] = {
      {"0", 0},
      {"1", 1},
      {"512", 512},
      {"1K", 1024},
      {"1k", 1024},
      {"10KB", 10240},
      {"10KiB", 10240},
      {"35M", 35ull << 20},
      {"35m", 35ull << 20},
      {"2MiB", 2ull << 20},
      {"1G", 1ull << 30},
      {"4GB", 4ull << 30},
      {"100B", 100},
      {"18446744073709551615", 18446744073709551615ull},
      {"", std::nullopt},
      {"M", std::nullopt},
      {"-1", std::nullopt},
      {"1.5M", std::nullopt},
      {"35 M", std::nullopt},
      {" 35M", std::nullopt},
      {"35T", std::nullopt},
      {"35MM", std::nullopt},
      {"0x10", std::nullopt},
      {"18446744073709551616", std::nullopt},   // 2^64
      {"17179869184G", std::nullopt},           // 2^34 GiB overflows
      {"99999999999999999999K", std::nullopt},
  };
  for (const auto& r : rows) {
    CAPTURE(std::string(r.in));
    CHECK(parse_size(r.in) == r.out);
  }
}

TEST_CASE("parse_duration") {
  using S = std::chrono::seconds;
  struct Row { const char* in; std::optional<S> out; };
  const Row rows[] = {
      {"0", S(0)},
      {"30", S(30)},
      {"30s", S(30)},
      {"5m", S(300)},
      {"1h", S(3600)},
      {"5d", S(432000)},
      {"1h30m", S(5400)},
      {"1d2h3m4s", S(93784)},
      {"90s", S(90)},
      {"0s", S(0)},
      {"", std::nullopt},
      {"m", std::nullopt},
      {"5", S(5)},
      {"5x", std::nullopt},
      {"5M", std::nullopt},      // minutes are lower case; M is a size
      {"1w", std::nullopt},
      {"1h 30m", std::nullopt},
      {"-5m", std::nullopt},
      {"1.5h", std::nullopt},
      {"5m3", std::nullopt},     // trailing number without a unit
      {"99999999999999999999s", std::nullopt},
      {"9223372036854775807d", std::nullopt},
  };
  for (const auto& r : rows) {
    CAPTURE(std::string(r.in));
    CHECK(parse_duration(r.in) == r.out);
  }
}

TEST_CASE("address_in_networks") {
  const std::vector<std::string> local = {"127.0.0.0/8", "::1/128"};
  struct Row { const char* addr; std::vector<std::string> nets; bool in; };
  const Row rows[] = {
      {"127.0.0.1", local, true},
      {"127.255.255.254", local, true},
      {"128.0.0.1", local, false},
      {"::1", local, true},
      {"::2", local, false},
      {"::ffff:127.0.0.1", local, true},     // IPv4-mapped peer on a dual-stack socket
      {"::FFFF:127.0.0.9", local, true},
      {"::ffff:10.0.0.1", local, false},
      {"10.1.2.3", {"10.0.0.0/8"}, true},
      {"11.1.2.3", {"10.0.0.0/8"}, false},
      {"192.168.1.77", {"192.168.1.64/27"}, true},
      {"192.168.1.96", {"192.168.1.64/27"}, false},
      {"192.168.1.63", {"192.168.1.64/27"}, false},
      {"172.16.5.4", {"172.16.0.0/12"}, true},
      {"172.32.0.1", {"172.16.0.0/12"}, false},
      {"8.8.8.8", {"0.0.0.0/0"}, true},
      {"8.8.8.8", {"8.8.8.8"}, true},          // a bare address is one host
      {"8.8.8.9", {"8.8.8.8"}, false},
      {"2001:db8::1", {"2001:db8::/32"}, true},
      {"2001:db9::1", {"2001:db8::/32"}, false},
      {"fe80::1%eth0", {"fe80::/10"}, true},    // zone id ignored
      {"febf::1", {"fe80::/10"}, true},
      {"fec0::1", {"fe80::/10"}, false},
      {"2001:db8::1", {"::/0"}, true},
      {"::ffff:1.2.3.4", {"::/0"}, true},
      {"1.2.3.4", {"::ffff:0:0/96"}, true},     // IPv4 peer against a mapped IPv6 network
      {"1.2.3.4", {"::/0"}, true},
      {"10.0.0.1", {"::1/128"}, false},
      {"::1", {"127.0.0.0/8"}, false},
      {"10.0.0.1", {"bogus", "10.0.0.0/8"}, true},   // a bad entry is skipped, not fatal
      {"10.0.0.1", {"10.0.0.0/40"}, false},
      {"", local, false},
      {"unknown", local, false},
      {"127.0.0.1.5", local, false},
      {"127.1", local, false},
      {"10.0.0.1", {}, false},
  };
  for (const auto& r : rows) {
    CAPTURE(std::string(r.addr));
    CAPTURE(r.nets.empty() ? std::string() : r.nets[0]);
    CHECK(address_in_networks(r.addr, r.nets) == r.in);
  }
}

TEST_CASE("parse_rate_limit: a count per unit, or per several units") {
  struct Row {
    const char* text;
    std::uint64_t count;
    std::int64_t per_s;   // 0: refused
  };
  for (const Row& r : {Row{"20/min", 20, 60}, Row{"2000/day", 2000, 86400}, Row{"10/15min", 10, 900},
                       Row{"4/20s", 4, 20}, Row{"1/2h", 1, 7200}, Row{"0/min", 0, 0}, Row{"5/0s", 0, 0},
                       Row{"5/min2", 0, 0}, Row{"5/", 0, 0}, Row{"lots", 0, 0}, Row{"5/fortnight", 0, 0}}) {
    CAPTURE(r.text);
    auto v = parse_rate_limit(r.text);
    if (r.per_s == 0) {
      CHECK_FALSE(v);
    } else {
      REQUIRE(v);
      CHECK(v->count == r.count);
      CHECK(v->per.count() == r.per_s);
    }
  }
}

TEST_CASE("parse_redis_url") {
  auto t = parse_redis_url("redis://10.0.0.5:6380/2");
  REQUIRE(t);
  CHECK((t->host == "10.0.0.5" && t->port == 6380 && t->db == 2));
  t = parse_redis_url("redis://cache.internal");
  REQUIRE(t);
  CHECK((t->host == "cache.internal" && t->port == 6379 && t->db == 0));
  t = parse_redis_url("redis://[::1]:7000/");
  REQUIRE(t);
  CHECK((t->host == "::1" && t->port == 7000));
  for (const char* bad : {"http://x", "redis://", "redis://h:0", "redis://h:99999", "redis://h/x", "redis://u:p@h",
                          "redis://[::1"})
    CHECK_MESSAGE(!parse_redis_url(bad), bad);
}
