// IP addresses and CIDR networks: [[listen]] addresses and trusted_networks,
// the loopback test behind upstream tls = "none", address_in_networks().
// Separate because it is byte-level address arithmetic, not configuration.
#include "daemon/config.h"
#include "daemon/config_parse.h"

#include <arpa/inet.h>

#include <array>
#include <cstring>
#include <string>

namespace outbox {
namespace config_internal {

// --- CIDR networks ----------------------------------------------------------

std::optional<Address> parse_address(std::string_view text) {
  std::string s(text);
  if (s.size() > 2 && s.front() == '[' && s.back() == ']') s = s.substr(1, s.size() - 2);
  if (auto pct = s.find('%'); pct != std::string::npos) s.resize(pct);   // fe80::1%eth0
  Address a;
  if (s.find(':') == std::string::npos) {
    if (inet_pton(AF_INET, s.c_str(), a.bytes.data()) != 1) return std::nullopt;
    a.family = AF_INET;
  } else {
    if (inet_pton(AF_INET6, s.c_str(), a.bytes.data()) != 1) return std::nullopt;
    a.family = AF_INET6;
  }
  return a;
}

namespace {

bool is_v4_mapped(const Address& a) {
  static constexpr unsigned char kPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return a.family == AF_INET6 && std::memcmp(a.bytes.data(), kPrefix, 12) == 0;
}

Address unmap_v4(const Address& a) {
  Address v4;
  v4.family = AF_INET;
  std::memcpy(v4.bytes.data(), a.bytes.data() + 12, 4);
  return v4;
}

Address map_v4(const Address& a) {
  Address v6;
  v6.family = AF_INET6;
  v6.bytes[10] = v6.bytes[11] = 0xff;
  std::memcpy(v6.bytes.data() + 12, a.bytes.data(), 4);
  return v6;
}

bool prefix_equal(const Address& a, const Address& b, unsigned bits) {
  unsigned full = bits / 8, rest = bits % 8;
  if (std::memcmp(a.bytes.data(), b.bytes.data(), full) != 0) return false;
  if (rest == 0) return true;
  auto mask = static_cast<unsigned char>(0xff << (8 - rest));
  return (a.bytes[full] & mask) == (b.bytes[full] & mask);
}

}  // namespace

// "10.0.0.0/8", "::1/128"; a bare address is a single host. problem gets the
// reason when the text is refused.
std::optional<Network> parse_network(std::string_view text, std::string* problem) {
  auto slash = text.find('/');
  auto addr = parse_address(text.substr(0, slash));
  if (!addr || text.substr(0, slash).find_first_of("[%") != std::string_view::npos) {
    if (problem) *problem = "\"" + std::string(text) + "\" is not a network such as \"10.0.0.0/8\" or \"::1/128\"";
    return std::nullopt;
  }
  unsigned max = addr->family == AF_INET ? 32 : 128;
  unsigned prefix = max;
  if (slash != std::string_view::npos) {
    auto p = parse_uint(text.substr(slash + 1));
    if (!p || *p > max || text.size() - slash - 1 > 3) {
      if (problem) *problem = "\"" + std::string(text) + "\": prefix length must be 0.." + std::to_string(max);
      return std::nullopt;
    }
    prefix = static_cast<unsigned>(*p);
  }
  Network n{*addr, prefix};
  // Host bits beyond the prefix usually mean a typo ("10.1.0.0/8"): refuse
  // rather than guess which of the two the user meant.
  Address masked = *addr;
  for (unsigned i = 0; i < 16; ++i) {
    unsigned bit0 = i * 8;
    if (bit0 >= prefix) masked.bytes[i] = 0;
    else if (bit0 + 8 > prefix) masked.bytes[i] &= static_cast<unsigned char>(0xff << (bit0 + 8 - prefix));
  }
  if (masked.bytes != addr->bytes) {
    if (problem) {
      char buf[INET6_ADDRSTRLEN] = {};
      inet_ntop(addr->family, masked.bytes.data(), buf, sizeof buf);
      *problem = "\"" + std::string(text) + "\" has host bits set (the network is " + buf + "/" +
                 std::to_string(prefix) + ")";
    }
    return std::nullopt;
  }
  return n;
}

namespace {

bool network_contains(const Network& n, const Address& a) {
  if (n.base.family == a.family) return prefix_equal(n.base, a, n.prefix);
  // RFC 4291 §2.5.5.2: ::ffff:a.b.c.d is the IPv4 peer a.b.c.d as a
  // dual-stack socket reports it; it must match the IPv4 networks too.
  if (n.base.family == AF_INET && is_v4_mapped(a)) return prefix_equal(n.base, unmap_v4(a), n.prefix);
  if (n.base.family == AF_INET6 && a.family == AF_INET) return prefix_equal(n.base, map_v4(a), n.prefix);
  return false;
}

}  // namespace

bool is_loopback_host(const std::string& host) {
  if (iequals(host, "localhost") || iequals(host, "localhost.")) return true;
  auto a = parse_address(host);
  if (!a) return false;
  if (is_v4_mapped(*a)) a = unmap_v4(*a);
  if (a->family == AF_INET) return a->bytes[0] == 127;
  static constexpr std::array<unsigned char, 16> kLoop{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  return a->bytes == kLoop;
}

}  // namespace config_internal

using config_internal::network_contains;
using config_internal::parse_address;
using config_internal::parse_network;

bool address_in_networks(const std::string& addr, const std::vector<std::string>& cidrs) {
  auto a = parse_address(addr);
  if (!a) return false;
  for (const auto& c : cidrs) {
    auto n = parse_network(c);
    if (n && network_contains(*n, *a)) return true;
  }
  return false;
}

}  // namespace outbox
