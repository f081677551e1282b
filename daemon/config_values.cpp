// The value parsers: text to numbers, sizes ("35M"), durations ("1h30m"),
// rates ("20/min") and Redis URLs. Shared by the section loaders and public
// (parse_size(), parse_duration(), ...); no TOML here, only strings.
#include "daemon/config.h"
#include "daemon/config_parse.h"

#include <algorithm>
#include <cctype>
#include <limits>
#include <string>
#include <utility>

namespace outbox {
namespace config_internal {

// ---------------------------------------------------------------------------
// Value parsers shared by the loader and the public helpers.

std::optional<std::uint64_t> parse_uint(std::string_view s) {
  if (s.empty()) return std::nullopt;
  constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();
  std::uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    auto d = static_cast<std::uint64_t>(c - '0');
    if (v > (kMax - d) / 10) return std::nullopt;
    v = v * 10 + d;
  }
  return v;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

std::optional<Rate> parse_rate(std::string_view s, bool allow_size) {
  auto slash = s.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  auto n = allow_size ? parse_size(s.substr(0, slash)) : parse_uint(s.substr(0, slash));
  if (!n) return std::nullopt;
  std::string_view unit = s.substr(slash + 1);
  // "20/min", and windows of several units: "10/15min" (163's 15 minutes), "4/20s".
  std::uint64_t times = 1;
  std::size_t digits = 0;
  while (digits < unit.size() && unit[digits] >= '0' && unit[digits] <= '9') ++digits;
  if (digits > 0) {
    auto t = parse_uint(unit.substr(0, digits));
    if (!t || *t == 0 || *t > 1000000) return std::nullopt;
    times = *t;
    unit.remove_prefix(digits);
  }
  static constexpr std::pair<std::string_view, std::uint64_t> kUnits[] = {
      {"s", 1},    {"sec", 1},    {"second", 1}, {"m", 60},     {"min", 60},
      {"minute", 60}, {"h", 3600}, {"hour", 3600}, {"d", 86400}, {"day", 86400}};
  for (const auto& [name, secs] : kUnits)
    if (unit == name) return Rate{*n, secs * times};
  return std::nullopt;
}

}  // namespace config_internal

using config_internal::iequals;
using config_internal::parse_rate;
using config_internal::parse_uint;

std::optional<RateLimit> parse_rate_limit(std::string_view s) {
  auto r = parse_rate(s, false);
  if (!r || r->count == 0) return std::nullopt;
  return RateLimit{r->count, std::chrono::seconds(r->per_seconds)};
}

std::optional<std::uint64_t> parse_size(std::string_view s) {
  std::size_t digits = 0;
  while (digits < s.size() && s[digits] >= '0' && s[digits] <= '9') ++digits;
  auto n = parse_uint(s.substr(0, digits));
  if (!n) return std::nullopt;
  std::string_view unit = s.substr(digits);
  unsigned shift = 0;
  if (unit.empty() || iequals(unit, "B")) shift = 0;
  else if (iequals(unit, "K") || iequals(unit, "KB") || iequals(unit, "KiB")) shift = 10;
  else if (iequals(unit, "M") || iequals(unit, "MB") || iequals(unit, "MiB")) shift = 20;
  else if (iequals(unit, "G") || iequals(unit, "GB") || iequals(unit, "GiB")) shift = 30;
  else return std::nullopt;
  if (*n > (std::numeric_limits<std::uint64_t>::max() >> shift)) return std::nullopt;
  return *n << shift;
}

std::optional<std::chrono::seconds> parse_duration(std::string_view s) {
  if (s.empty()) return std::nullopt;
  // A bare number is seconds, as in Postfix's time parameters.
  if (auto n = parse_uint(s)) {
    if (*n > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) return std::nullopt;
    return std::chrono::seconds(static_cast<std::int64_t>(*n));
  }
  std::uint64_t total = 0;
  std::size_t i = 0;
  constexpr std::uint64_t kMax = std::numeric_limits<std::int64_t>::max();
  while (i < s.size()) {
    std::size_t start = i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
    auto n = parse_uint(s.substr(start, i - start));
    if (!n || i == s.size()) return std::nullopt;
    std::uint64_t unit = 0;
    switch (s[i++]) {
      case 's': unit = 1; break;
      case 'm': unit = 60; break;
      case 'h': unit = 3600; break;
      case 'd': unit = 86400; break;
      default: return std::nullopt;
    }
    if (*n > kMax / unit || total > kMax - *n * unit) return std::nullopt;
    total += *n * unit;
  }
  return std::chrono::seconds(static_cast<std::int64_t>(total));
}

std::optional<RedisTarget> parse_redis_url(const std::string& url) {
  const std::string scheme = "redis://";
  if (url.rfind(scheme, 0) != 0) return std::nullopt;
  std::string rest = url.substr(scheme.size());
  RedisTarget t;
  std::string hostport = rest;
  if (auto slash = rest.find('/'); slash != std::string::npos) {
    hostport = rest.substr(0, slash);
    std::string db = rest.substr(slash + 1);
    if (!db.empty()) {
      if (db.size() > 2 || !std::all_of(db.begin(), db.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return std::nullopt;
      t.db = std::stoi(db);
    }
  }
  if (hostport.empty()) return std::nullopt;
  std::string port;
  if (hostport.front() == '[') {
    auto close = hostport.find(']');
    if (close == std::string::npos) return std::nullopt;
    t.host = hostport.substr(1, close - 1);
    if (close + 1 < hostport.size()) {
      if (hostport[close + 1] != ':') return std::nullopt;
      port = hostport.substr(close + 2);
    }
  } else if (auto colon = hostport.find(':'); colon != std::string::npos) {
    t.host = hostport.substr(0, colon);
    port = hostport.substr(colon + 1);
  } else {
    t.host = hostport;
  }
  if (t.host.empty() || t.host.find('@') != std::string::npos) return std::nullopt;
  if (!port.empty()) {
    if (port.size() > 5 || !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }))
      return std::nullopt;
    int p = std::stoi(port);
    if (p < 1 || p > 65535) return std::nullopt;
    t.port = static_cast<std::uint16_t>(p);
  }
  return t;
}

}  // namespace outbox
