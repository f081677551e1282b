// Who owns the other end of a loopback TCP connection (issue 11): the kernel
// knows the uid of every socket and tells it through NETLINK_SOCK_DIAG
// (inet_diag, what `ss -tpe` shows), to unprivileged callers too. For a
// connection from 127.0.0.0/8 or ::1 the client's socket is on this host:
// asked by its exact 4-tuple (its source is our peer, its destination our
// listening address), the kernel returns its owner's uid, which outboxd
// records and applies [[local_user]] rules to as for a Unix-socket peer.
//
// What this proves and what it does not: the uid is the one that created
// the socket. A process can pass its socket to another (SCM_RIGHTS) or be
// handed one, and root can do anything; like SO_PEERCRED it names who set
// up the connection, not who wrote each byte. A connection through a
// local proxy or NAT is the proxy's.
//
// build_request/parse_reply are pure (table-tested); loopback_peer_uid()
// does the syscalls: one sendto and one non-blocking recv on a netlink
// socket kept open for the process (the kernel has answered before sendto
// returns), microseconds.
#pragma once
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace outbox::daemon::sock_diag {

struct Endpoint {
  int family = AF_INET;              // AF_INET or AF_INET6
  std::uint8_t addr[16] = {};        // network order; IPv4 in the first 4 bytes
  std::uint16_t port = 0;            // host order
};

// SOCK_DIAG_BY_FAMILY request for the TCP socket whose source is `src` and
// destination `dst` (no NLM_F_DUMP: the exact socket). seq: echoed back.
std::vector<std::uint8_t> build_request(const Endpoint& src, const Endpoint& dst, std::uint32_t seq);

struct Reply {
  enum class Kind { Uid, NotFound, Error, Malformed } kind = Kind::Malformed;
  std::uint32_t uid = 0;
  int error = 0;                     // errno from NLMSG_ERROR
};
Reply parse_reply(const std::uint8_t* data, std::size_t len, std::uint32_t seq);

// From a sockaddr (AF_INET / AF_INET6); nullopt for any other family.
std::optional<Endpoint> endpoint(const sockaddr* sa);

// True for 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104.
bool is_loopback(const Endpoint& e);

// The uid owning the client end of the accepted TCP connection `fd`, when
// the peer is a loopback address and the kernel answers; nullopt otherwise.
std::optional<std::uint32_t> loopback_peer_uid(int fd);
// The same when the caller already holds the peer's address (the accept
// path asked for it): one getpeername less.
// local: the connection's own end when the caller knows it (a listener
// bound to one address), else nullptr: one getsockname less.
std::optional<std::uint32_t> loopback_peer_uid(int fd, const sockaddr* peer, const sockaddr* local = nullptr);

}  // namespace outbox::daemon::sock_diag
