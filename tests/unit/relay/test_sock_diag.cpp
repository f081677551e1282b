// inet_diag for loopback identity: the request's layout, replies as tables,
// and one real query to this kernel about a connection made here.
#include <doctest/doctest.h>
#include <arpa/inet.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "daemon/sock_diag.h"

using namespace outbox::daemon::sock_diag;

namespace {

Endpoint v4(const char* a, std::uint16_t port) {
  Endpoint e;
  e.family = AF_INET;
  inet_pton(AF_INET, a, e.addr);
  e.port = port;
  return e;
}

std::vector<std::uint8_t> message(std::uint16_t type, std::uint32_t seq, const void* payload, std::size_t n) {
  std::vector<std::uint8_t> out(NLMSG_SPACE(n), 0);
  nlmsghdr h{};
  h.nlmsg_len = static_cast<std::uint32_t>(NLMSG_LENGTH(n));
  h.nlmsg_type = type;
  h.nlmsg_seq = seq;
  std::memcpy(out.data(), &h, sizeof h);
  std::memcpy(out.data() + NLMSG_HDRLEN, payload, n);
  return out;
}

}  // namespace

TEST_CASE("build_request: an exact lookup of the client's TCP socket by its 4-tuple") {
  auto req = build_request(v4("127.0.0.1", 40000), v4("127.0.0.2", 587), 7);
  REQUIRE(req.size() == sizeof(nlmsghdr) + sizeof(inet_diag_req_v2));
  nlmsghdr h;
  std::memcpy(&h, req.data(), sizeof h);
  CHECK(h.nlmsg_len == req.size());
  CHECK(h.nlmsg_type == SOCK_DIAG_BY_FAMILY);
  CHECK(h.nlmsg_flags == NLM_F_REQUEST);   // not a dump
  CHECK(h.nlmsg_seq == 7);
  inet_diag_req_v2 r;
  std::memcpy(&r, req.data() + sizeof h, sizeof r);
  CHECK(r.sdiag_family == AF_INET);
  CHECK(r.sdiag_protocol == IPPROTO_TCP);
  CHECK(ntohs(r.id.idiag_sport) == 40000);
  CHECK(ntohs(r.id.idiag_dport) == 587);
  const std::uint8_t src[4] = {127, 0, 0, 1}, dst[4] = {127, 0, 0, 2};
  CHECK(std::memcmp(r.id.idiag_src, src, 4) == 0);
  CHECK(std::memcmp(r.id.idiag_dst, dst, 4) == 0);
  CHECK(r.id.idiag_cookie[0] == INET_DIAG_NOCOOKIE);
  CHECK(r.id.idiag_cookie[1] == INET_DIAG_NOCOOKIE);
}

TEST_CASE("parse_reply: the uid, not found, errors, and what is not for this request") {
  inet_diag_msg m{};
  m.idiag_uid = 1234;
  auto ok = message(SOCK_DIAG_BY_FAMILY, 9, &m, sizeof m);
  auto r = parse_reply(ok.data(), ok.size(), 9);
  CHECK(r.kind == Reply::Kind::Uid);
  CHECK(r.uid == 1234);
  CHECK(parse_reply(ok.data(), ok.size(), 10).kind == Reply::Kind::Malformed);   // another request's answer
  nlmsgerr e{};
  e.error = -ENOENT;
  auto nf = message(NLMSG_ERROR, 9, &e, sizeof e);
  CHECK(parse_reply(nf.data(), nf.size(), 9).kind == Reply::Kind::NotFound);
  e.error = -EPERM;
  auto perm = message(NLMSG_ERROR, 9, &e, sizeof e);
  r = parse_reply(perm.data(), perm.size(), 9);
  CHECK(r.kind == Reply::Kind::Error);
  CHECK(r.error == EPERM);
  CHECK(parse_reply(ok.data(), 10, 9).kind == Reply::Kind::Malformed);             // truncated
  auto tiny = message(SOCK_DIAG_BY_FAMILY, 9, &m, 4);                              // too short a payload
  CHECK(parse_reply(tiny.data(), tiny.size(), 9).kind == Reply::Kind::Malformed);
}

TEST_CASE("is_loopback") {
  CHECK(is_loopback(v4("127.0.0.1", 1)));
  CHECK(is_loopback(v4("127.255.0.9", 1)));
  CHECK_FALSE(is_loopback(v4("10.0.0.1", 1)));
  Endpoint e;
  e.family = AF_INET6;
  inet_pton(AF_INET6, "::1", e.addr);
  CHECK(is_loopback(e));
  inet_pton(AF_INET6, "::ffff:127.0.0.1", e.addr);
  CHECK(is_loopback(e));
  inet_pton(AF_INET6, "2001:db8::1", e.addr);
  CHECK_FALSE(is_loopback(e));
}

TEST_CASE("loopback_peer_uid: this kernel names this process's uid for a connection made here") {
  int ls = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(ls, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  socklen_t len = sizeof a;
  REQUIRE(::getsockname(ls, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  REQUIRE(::listen(ls, 1) == 0);
  int c = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(::connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  int s = ::accept(ls, nullptr, nullptr);
  REQUIRE(s >= 0);
  auto uid = loopback_peer_uid(s);
  REQUIRE(uid.has_value());
  CHECK(*uid == ::getuid());
  // The netlink socket is kept between queries: every later answer is still this one's.
  for (int i = 0; i < 50; ++i) CHECK(loopback_peer_uid(s) == uid);
  // The accept path of a listener bound to one address passes that address
  // as the local end instead of asking getsockname: the same answer...
  sockaddr_in peer{};
  socklen_t pl = sizeof peer;
  REQUIRE(::getpeername(s, reinterpret_cast<sockaddr*>(&peer), &pl) == 0);
  CHECK(loopback_peer_uid(s, reinterpret_cast<const sockaddr*>(&peer), reinterpret_cast<const sockaddr*>(&a)) == uid);
  // ...and it is that address the kernel is asked about: another port names
  // no socket, so no uid.
  sockaddr_in other = a;
  other.sin_port = htons(static_cast<std::uint16_t>(ntohs(a.sin_port) == 1 ? 2 : 1));
  CHECK_FALSE(loopback_peer_uid(s, reinterpret_cast<const sockaddr*>(&peer), reinterpret_cast<const sockaddr*>(&other))
                  .has_value());
  ::close(c);
  ::close(s);
  ::close(ls);
}
