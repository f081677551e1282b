#include "daemon/sock_diag.h"

#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace outbox::daemon::sock_diag {

namespace {

struct Request {
  nlmsghdr nlh;
  inet_diag_req_v2 req;
};

void fill(__be32* words, const Endpoint& e) {
  std::memcpy(words, e.addr, e.family == AF_INET ? 4 : 16);
}

}  // namespace

std::vector<std::uint8_t> build_request(const Endpoint& src, const Endpoint& dst, std::uint32_t seq) {
  Request r{};
  r.nlh.nlmsg_len = sizeof r;
  r.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  r.nlh.nlmsg_flags = NLM_F_REQUEST;
  r.nlh.nlmsg_seq = seq;
  r.req.sdiag_family = static_cast<std::uint8_t>(src.family);
  r.req.sdiag_protocol = IPPROTO_TCP;
  r.req.idiag_states = ~0U;   // any state: the client's end is ESTABLISHED, but ask without guessing
  r.req.id.idiag_sport = htons(src.port);
  r.req.id.idiag_dport = htons(dst.port);
  fill(r.req.id.idiag_src, src);
  fill(r.req.id.idiag_dst, dst);
  r.req.id.idiag_if = 0;
  // An exact lookup needs "no cookie" (linux/inet_diag.h INET_DIAG_NOCOOKIE).
  r.req.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
  r.req.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
  const auto* p = reinterpret_cast<const std::uint8_t*>(&r);
  return std::vector<std::uint8_t>(p, p + sizeof r);
}

Reply parse_reply(const std::uint8_t* data, std::size_t len, std::uint32_t seq) {
  Reply out;
  std::size_t off = 0;
  while (off + sizeof(nlmsghdr) <= len) {
    nlmsghdr h;
    std::memcpy(&h, data + off, sizeof h);
    if (h.nlmsg_len < sizeof(nlmsghdr) || off + h.nlmsg_len > len) return Reply{};
    if (h.nlmsg_seq == seq) {
      if (h.nlmsg_type == NLMSG_ERROR) {
        if (h.nlmsg_len < NLMSG_LENGTH(sizeof(nlmsgerr))) return Reply{};
        nlmsgerr e;
        std::memcpy(&e, data + off + NLMSG_HDRLEN, sizeof e);
        if (e.error == 0) {   // an ACK without an answer
          out.kind = Reply::Kind::NotFound;
          return out;
        }
        out.error = -e.error;
        out.kind = out.error == ENOENT ? Reply::Kind::NotFound : Reply::Kind::Error;
        return out;
      }
      if (h.nlmsg_type == NLMSG_DONE) {
        out.kind = Reply::Kind::NotFound;
        return out;
      }
      if (h.nlmsg_type == SOCK_DIAG_BY_FAMILY) {
        if (h.nlmsg_len < NLMSG_LENGTH(sizeof(inet_diag_msg))) return Reply{};
        inet_diag_msg m;
        std::memcpy(&m, data + off + NLMSG_HDRLEN, sizeof m);
        out.kind = Reply::Kind::Uid;
        out.uid = m.idiag_uid;
        return out;
      }
    }
    off += NLMSG_ALIGN(h.nlmsg_len);
  }
  return out;   // Malformed: nothing for this request
}

std::optional<Endpoint> endpoint(const sockaddr* sa) {
  Endpoint e;
  if (sa->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    e.family = AF_INET;
    std::memcpy(e.addr, &in->sin_addr, 4);
    e.port = ntohs(in->sin_port);
    return e;
  }
  if (sa->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    e.family = AF_INET6;
    std::memcpy(e.addr, &in6->sin6_addr, 16);
    e.port = ntohs(in6->sin6_port);
    return e;
  }
  return std::nullopt;
}

bool is_loopback(const Endpoint& e) {
  if (e.family == AF_INET) return e.addr[0] == 127;
  static const std::uint8_t v6_loopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  if (std::memcmp(e.addr, v6_loopback, 16) == 0) return true;
  static const std::uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::memcmp(e.addr, mapped, 12) == 0 && e.addr[12] == 127;
}

std::optional<std::uint32_t> loopback_peer_uid(int fd) {
  sockaddr_storage peer{};
  socklen_t pl = sizeof peer;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &pl) != 0) return std::nullopt;
  return loopback_peer_uid(fd, reinterpret_cast<const sockaddr*>(&peer));
}

std::optional<std::uint32_t> loopback_peer_uid(int fd, const sockaddr* peer, const sockaddr* known_local) {
  sockaddr_storage local{};
  if (known_local) {
    std::memcpy(&local, known_local, known_local->sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in));
  } else {
    socklen_t ll = sizeof local;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &ll) != 0) return std::nullopt;
  }
  auto l = endpoint(reinterpret_cast<sockaddr*>(&local));
  auto p = endpoint(peer);
  if (!l || !p || !is_loopback(*p)) return std::nullopt;
  // One netlink socket for the process, opened at the first loopback client
  // and kept: a submission must not pay a socket() and close() each (this
  // is on the accept path). Loop thread only, like every caller.
  static int nl = -1;
  if (nl < 0) nl = ::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (nl < 0) return std::nullopt;
  static std::uint32_t seq = 0;
  const std::uint32_t my_seq = ++seq;
  // The client's socket: its source is our peer, its destination us.
  auto req = build_request(*p, *l, my_seq);
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(nl, req.data(), req.size(), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) !=
      static_cast<ssize_t>(req.size())) {
    ::close(nl);   // opened again at the next client
    nl = -1;
    return std::nullopt;
  }
  // The kernel answers an exact SOCK_DIAG request before sendto returns, so
  // the reply is already queued: read without blocking, skipping anything
  // left from an earlier request (another seq).
  alignas(nlmsghdr) std::uint8_t buf[8192];
  for (;;) {
    ssize_t n = ::recv(nl, buf, sizeof buf, MSG_DONTWAIT);
    if (n <= 0) return std::nullopt;
    auto r = parse_reply(buf, static_cast<std::size_t>(n), my_seq);
    if (r.kind == Reply::Kind::Uid) return r.uid;
    if (r.kind != Reply::Kind::Malformed) return std::nullopt;   // not found, or an error: unknown
  }
}

}  // namespace outbox::daemon::sock_diag
