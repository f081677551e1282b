#include "daemon/server.h"

#include "daemon/secret_file.h"
#include "daemon/sock_diag.h"

#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "daemon/inbound_connection.h"
#include "daemon/logging.h"
#include "daemon/user_name_cache.h"

namespace outbox::daemon {

struct Server::Listener {
  Server* server = nullptr;
  const ListenConfig* config = nullptr;
  uv_stream_t* handle = nullptr;   // uv_tcp_t or uv_pipe_t
  bool unix_socket = false;
  bool activated = false;          // the fd came from the service manager
  std::string label;
  // Where a TCP listener bound to one address (not a wildcard) is: every
  // connection it accepts has that local end, so the accept path need not
  // ask the kernel for it (sock_diag's lookup wants it).
  std::optional<sockaddr_storage> local;
};

namespace {

std::optional<sockaddr_storage> fixed_local_address(const uv_tcp_t* tcp) {
  sockaddr_storage ss{};
  int len = sizeof ss;
  if (uv_tcp_getsockname(tcp, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return std::nullopt;
  if (ss.ss_family == AF_INET) {
    if (reinterpret_cast<const sockaddr_in*>(&ss)->sin_addr.s_addr == htonl(INADDR_ANY)) return std::nullopt;
    return ss;
  }
  if (ss.ss_family == AF_INET6) {
    if (IN6_IS_ADDR_UNSPECIFIED(&reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_addr)) return std::nullopt;
    return ss;
  }
  return std::nullopt;
}

std::string uv_error(int rc) { return std::string(uv_err_name(rc)) + ": " + uv_strerror(rc); }

std::string peer_address(const sockaddr_storage& ss) {
  if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6) return "unknown";
  char buf[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    uv_ip4_name(reinterpret_cast<const sockaddr_in*>(&ss), buf, sizeof buf);
  } else {
    auto* s6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    uv_ip6_name(s6, buf, sizeof buf);
  }
  return buf;
}

// Loop thread only: getpwuid_r may block on NSS, so each uid is asked at
// most once a minute (see daemon/user_name_cache.h).
std::string user_name(std::uint32_t uid) {
  static UserNameCache names;
  return names.lookup(uid, UserNameCache::Clock::now(), [](std::uint32_t u) {
    passwd pw{};
    passwd* res = nullptr;
    char buf[1024];
    return getpwuid_r(u, &pw, buf, sizeof buf, &res) == 0 && res ? std::string(res->pw_name) : std::string();
  });
}

InboundConnection::Peer unix_peer(uv_pipe_t* pipe) {
  InboundConnection::Peer p;
  p.unix_socket = true;
  uv_os_fd_t fd;
  if (uv_fileno(reinterpret_cast<uv_handle_t*>(pipe), &fd) == 0) {
    ucred cred{};
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
      p.uid = cred.uid;
      p.user = user_name(cred.uid);
    }
  }
  return p;
}

// Removes a stale socket file left by an earlier run, never anything else.
void remove_stale_socket(const std::string& path) {
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) return;
  if (!S_ISSOCK(st.st_mode))
    throw std::runtime_error(path + " exists and is not a socket");
  ::unlink(path.c_str());
}

// What an inherited fd is: its family and where it is bound, for matching it
// to a [[listen]] and for the messages that name it.
struct SocketInfo {
  bool ok = false;          // a SOCK_STREAM socket of a family we serve
  bool unix_socket = false;
  std::string path;         // AF_UNIX
  sockaddr_storage addr{};  // AF_INET / AF_INET6
  std::string text;         // "127.0.0.1:587", "[::]:587", "unix:/run/outbox/submit.sock"
};

SocketInfo inspect_socket(int fd) {
  SocketInfo info;
  int type = 0;
  socklen_t tlen = sizeof type;
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    info.text = std::string("not a socket (") + std::strerror(errno) + ")";
    return info;
  }
  char buf[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_UNIX) {
    auto* un = reinterpret_cast<sockaddr_un*>(&ss);
    std::size_t n = len > offsetof(sockaddr_un, sun_path) ? len - offsetof(sockaddr_un, sun_path) : 0;
    info.path.assign(un->sun_path, strnlen(un->sun_path, std::min(n, sizeof un->sun_path)));
    info.unix_socket = true;
    info.text = "unix:" + info.path;
  } else if (ss.ss_family == AF_INET) {
    auto* in = reinterpret_cast<sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf);
    info.text = std::string(buf) + ":" + std::to_string(ntohs(in->sin_port));
  } else if (ss.ss_family == AF_INET6) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf);
    info.text = "[" + std::string(buf) + "]:" + std::to_string(ntohs(in6->sin6_port));
  } else {
    info.text = "a socket of address family " + std::to_string(ss.ss_family);
    return info;
  }
  info.addr = ss;
  if (type != SOCK_STREAM) {
    info.text += " (not a stream socket)";
    return info;
  }
  info.ok = true;
  return info;
}

// Whether a TCP listener's configured address is the one the socket is bound to.
bool same_endpoint(const ListenConfig& lc, const SocketInfo& info) {
  if (!info.ok) return false;
  if (lc.is_unix()) return info.unix_socket && info.path == lc.path;
  if (info.unix_socket) return false;
  if (info.addr.ss_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(&info.addr);
    in_addr want{};
    return inet_pton(AF_INET, lc.host.c_str(), &want) == 1 && want.s_addr == in->sin_addr.s_addr &&
           ntohs(in->sin_port) == lc.port;
  }
  auto* in6 = reinterpret_cast<const sockaddr_in6*>(&info.addr);
  in6_addr want{};
  return inet_pton(AF_INET6, lc.host.c_str(), &want) == 1 &&
         std::memcmp(&want, &in6->sin6_addr, sizeof want) == 0 && ntohs(in6->sin6_port) == lc.port;
}

std::string listener_label(const ListenConfig& lc) { return lc.is_unix() ? "unix:" + lc.path : lc.address; }

// Maps each inherited socket to a [[listen]] index: by FileDescriptorName=
// first (systemd's own way of telling sockets apart), else by the address or
// path the socket is bound to. Everything is checked before anything binds,
// so a mismatch leaves no half-started daemon.
std::vector<int> match_inherited(const std::vector<ListenConfig>& listen,
                                 const std::vector<InheritedSocket>& inherited) {
  std::vector<int> fd_of(listen.size(), -1);
  for (const auto& in : inherited) {
    SocketInfo info = inspect_socket(in.fd);
    std::string what = "inherited socket fd " + std::to_string(in.fd) +
                       (in.name.empty() ? "" : " (FileDescriptorName=" + in.name + ")") + " bound to " + info.text;
    if (!info.ok) throw ListenerMismatch(what + ": outboxd serves only TCP and Unix stream sockets");
    std::size_t found = listen.size();
    for (std::size_t i = 0; i < listen.size() && !in.name.empty(); ++i)
      if (listen[i].name == in.name) found = i;
    if (found < listen.size() && listen[found].is_unix() != info.unix_socket)
      throw ListenerMismatch(what + ": [[listen]] name = \"" + in.name + "\" is a " +
                             (listen[found].is_unix() ? "Unix socket (path)" : "TCP (address)") +
                             " listener; the socket unit and outbox.toml disagree");
    for (std::size_t i = 0; i < listen.size() && found == listen.size(); ++i)
      if (same_endpoint(listen[i], info)) found = i;
    if (found == listen.size()) {
      std::string names;
      for (const auto& lc : listen)
        names += (names.empty() ? "" : ", ") + (lc.name.empty() ? listener_label(lc) : lc.name + "=" + listener_label(lc));
      throw ListenerMismatch(what + " matches no [[listen]] by name or address (configured: " + names +
                             "); give the matching [[listen]] name = \"" +
                             (in.name.empty() ? std::string("<FileDescriptorName>") : in.name) + "\"");
    }
    if (fd_of[found] != -1)
      throw ListenerMismatch(what + ": listener " + listener_label(listen[found]) +
                             " already has inherited socket fd " + std::to_string(fd_of[found]));
    fd_of[found] = in.fd;
  }
  return fd_of;
}

}  // namespace

Server::Server(uv_loop_t* loop, std::shared_ptr<const Config> config, queue::StoreWorker& store)
    : loop_(loop), config_(std::move(config)), store_(store), ids_(store.max_id()) {}

Server::~Server() = default;

void Server::reload(std::shared_ptr<const Config> config) {
  bool any_tls = false;
  for (const auto& lc : config->listen) any_tls = any_tls || lc.tls != TlsMode::None;
  std::shared_ptr<TlsContext> ctx = tls_ctx_;
  if (any_tls) {
    secret_file::check(config->tls_key, "tls.key");   // throws, naming the file and the chmod
    ctx = TlsContext::server(config->tls_cert, config->tls_key);   // throws, naming the file
  }
  // Connections that already hold the old context keep it until they close.
  tls_ctx_ = std::move(ctx);
  config_ = std::move(config);
}

void Server::bind_listeners(const std::vector<InheritedSocket>& inherited) {
  bound_config_ = config_;
  std::vector<int> fd_of = match_inherited(config_->listen, inherited);
  bool any_tls = false;
  for (const auto& lc : config_->listen) any_tls = any_tls || lc.tls != TlsMode::None;
  if (any_tls) {
    secret_file::check(config_->tls_key, "tls.key");   // throws, naming the file and the chmod
    tls_ctx_ = TlsContext::server(config_->tls_cert, config_->tls_key);   // throws, naming the file
  }
  for (std::size_t i = 0; i < config_->listen.size(); ++i) {
    const auto& lc = config_->listen[i];
    auto l = std::make_unique<Listener>();
    l->server = this;
    l->config = &lc;
    l->label = listener_label(lc);
    l->unix_socket = lc.is_unix();
    int rc = 0;
    if (fd_of[i] != -1) {
      // The service manager made the socket (and set its mode and owner for
      // a Unix one, SocketMode=): take it as it is.
      l->activated = true;
      if (lc.is_unix()) {
        auto* pipe = new uv_pipe_t;
        uv_pipe_init(loop_, pipe, 0);
        l->handle = reinterpret_cast<uv_stream_t*>(pipe);
        rc = uv_pipe_open(pipe, fd_of[i]);
      } else {
        auto* tcp = new uv_tcp_t;
        uv_tcp_init(loop_, tcp);
        l->handle = reinterpret_cast<uv_stream_t*>(tcp);
        rc = uv_tcp_open(tcp, fd_of[i]);
      }
      if (rc == 0)
        log::info(log::Line("listener_activated").kv("listener", l->label).kv("fd", fd_of[i])
                      .kv("fdname", lc.name).kv("bound", inspect_socket(fd_of[i]).text));
    } else if (lc.is_unix()) {
      auto parent = std::filesystem::path(lc.path).parent_path();
      if (!parent.empty()) std::filesystem::create_directories(parent);
      remove_stale_socket(lc.path);
      auto* pipe = new uv_pipe_t;
      uv_pipe_init(loop_, pipe, 0);
      l->handle = reinterpret_cast<uv_stream_t*>(pipe);
      rc = uv_pipe_bind(pipe, lc.path.c_str());
      if (rc == 0 && ::chmod(lc.path.c_str(), lc.mode) != 0)
        throw std::runtime_error("listener " + l->label + ": chmod: " + std::strerror(errno));
      if (rc == 0 && !lc.group.empty()) {
        group gr{};
        group* res = nullptr;
        char buf[1024];
        if (getgrnam_r(lc.group.c_str(), &gr, buf, sizeof buf, &res) != 0 || !res)
          throw std::runtime_error("listener " + l->label + ": unknown group " + lc.group);
        if (::chown(lc.path.c_str(), static_cast<uid_t>(-1), res->gr_gid) != 0)
          throw std::runtime_error("listener " + l->label + ": chown: " + std::strerror(errno));
      }
    } else {
      auto* tcp = new uv_tcp_t;
      uv_tcp_init(loop_, tcp);
      l->handle = reinterpret_cast<uv_stream_t*>(tcp);
      sockaddr_storage ss{};
      unsigned flags = 0;
      if (lc.host.find(':') != std::string::npos) {
        rc = uv_ip6_addr(lc.host.c_str(), lc.port, reinterpret_cast<sockaddr_in6*>(&ss));
        flags = UV_TCP_IPV6ONLY;
      } else {
        rc = uv_ip4_addr(lc.host.c_str(), lc.port, reinterpret_cast<sockaddr_in*>(&ss));
      }
      if (rc == 0) rc = uv_tcp_bind(tcp, reinterpret_cast<sockaddr*>(&ss), flags);
    }
    l->handle->data = l.get();
    // A large backlog: 20+ parallel connects must not hit SYN drops.
    if (rc == 0) rc = uv_listen(l->handle, SOMAXCONN, &Server::on_connection);
    if (rc != 0) {
      std::string label = l->label;
      uv_close(reinterpret_cast<uv_handle_t*>(l->handle), [](uv_handle_t* h) {
        if (h->type == UV_NAMED_PIPE) delete reinterpret_cast<uv_pipe_t*>(h);
        else delete reinterpret_cast<uv_tcp_t*>(h);
      });
      throw std::runtime_error("cannot listen on " + label + ": " + uv_error(rc));
    }
    if (!l->unix_socket) {
      l->local = fixed_local_address(reinterpret_cast<uv_tcp_t*>(l->handle));
      // Replies are small writes, often one behind another (pipelining, RFC
      // 2920): Nagle's wait for an ACK would hold one up to the peer's delayed
      // ACK (40 ms). A connection accepted on Linux inherits the listener's
      // TCP_NODELAY, so one setsockopt here instead of one per connection.
      uv_tcp_nodelay(reinterpret_cast<uv_tcp_t*>(l->handle), 1);
    }
    listeners_.push_back(std::move(l));
  }
}

std::size_t Server::activated_count() const {
  std::size_t n = 0;
  for (const auto& l : listeners_) n += l->activated ? 1 : 0;
  return n;
}

std::vector<std::string> Server::listener_names() const {
  std::vector<std::string> out;
  for (const auto& l : listeners_) out.push_back(l->label);
  return out;
}

void Server::on_connection(uv_stream_t* handle, int status) {
  auto* l = static_cast<Listener*>(handle->data);
  if (status < 0) {
    log::warn(log::Line("accept_error").kv("listener", l->label).kv("error", uv_err_name(status)));
    return;
  }
  l->server->accept_from(*l);
}

void Server::accept_from(Listener& l) {
  uv_stream_t* client;
  if (l.unix_socket) {
    auto* pipe = new uv_pipe_t;
    uv_pipe_init(loop_, pipe, 0);
    client = reinterpret_cast<uv_stream_t*>(pipe);
  } else {
    auto* tcp = new uv_tcp_t;
    uv_tcp_init(loop_, tcp);
    client = reinterpret_cast<uv_stream_t*>(tcp);
  }
  if (uv_accept(l.handle, client) != 0) {
    uv_close(reinterpret_cast<uv_handle_t*>(client), [](uv_handle_t* h) {
      if (h->type == UV_NAMED_PIPE) delete reinterpret_cast<uv_pipe_t*>(h);
      else delete reinterpret_cast<uv_tcp_t*>(h);
    });
    return;
  }
  InboundConnection::Peer peer;
  if (l.unix_socket) {
    peer = unix_peer(reinterpret_cast<uv_pipe_t*>(client));
  } else {
    sockaddr_storage ss{};
    int len = sizeof ss;
    if (uv_tcp_getpeername(reinterpret_cast<uv_tcp_t*>(client), reinterpret_cast<sockaddr*>(&ss), &len) != 0)
      ss.ss_family = AF_UNSPEC;
    peer.address = peer_address(ss);
    // A client on this host: the kernel names the uid that owns its socket
    // (inet_diag, daemon/sock_diag.h). One netlink round trip to the local
    // kernel, microseconds, on the loop like the SO_PEERCRED of a Unix peer.
    peer.loopback = address_in_networks(peer.address, {"127.0.0.0/8", "::1/128"});
    uv_os_fd_t fd;
    if (peer.loopback && config_->limits.loopback_identity != LimitsConfig::LoopbackIdentity::Off &&
        uv_fileno(reinterpret_cast<uv_handle_t*>(client), &fd) == 0) {
      const auto* local = l.local ? reinterpret_cast<const sockaddr*>(&*l.local) : nullptr;
      if (auto uid = sock_diag::loopback_peer_uid(fd, reinterpret_cast<const sockaddr*>(&ss), local)) {
        peer.uid = *uid;
        peer.user = user_name(*uid);
      }
    }
  }
  admit(client, *l.config, std::move(peer));
}

bool Server::adopt_local(int fd, std::uint32_t uid, std::string import_key) {
  auto* pipe = new uv_pipe_t;
  uv_pipe_init(loop_, pipe, 0);
  if (shutting_down_ || uv_pipe_open(pipe, fd) != 0) {
    uv_close(reinterpret_cast<uv_handle_t*>(pipe), [](uv_handle_t* h) { delete reinterpret_cast<uv_pipe_t*>(h); });
    ::close(fd);
    return false;
  }
  // The file's owner, never anything its contents say: the same identity,
  // rules and records as a submission over the Unix socket from that uid.
  InboundConnection::Peer peer;
  peer.unix_socket = true;
  peer.uid = uid;
  peer.user = user_name(uid);
  peer.import_key = std::move(import_key);
  const ListenConfig* l = config_->first_unix_listener();
  admit(reinterpret_cast<uv_stream_t*>(pipe), l ? *l : maildrop_listener_, std::move(peer));
  return true;
}

void Server::admit(uv_stream_t* client, const ListenConfig& listener, InboundConnection::Peer peer) {
  auto conn = std::make_shared<InboundConnection>(*this, listener, client, peer);
  connections_[conn.get()] = conn;
  std::string key = conn->client_key();
  std::size_t& count = per_client_[key];
  ++count;
  const auto& lim = config_->limits;
  if (shutting_down_) {
    conn->refuse("421 4.3.2 Service shutting down\r\n");
  } else if (connections_.size() > lim.max_connections) {
    log::warn(log::Line("refused").kv("client", key.empty() ? "unix" : key).kv("reason", "max_connections"));
    conn->refuse("421 4.7.0 Too many connections, try again later\r\n");
  } else if (!key.empty() && count > lim.max_connections_per_client &&
             // As Postfix exempts $mynetworks: a local application's connection
             // pool is not an attack; max_connections still bounds it.
             !address_in_networks(key, listener.trusted_networks)) {
    log::warn(log::Line("refused").kv("client", key).kv("reason", "max_connections_per_client"));
    conn->refuse("421 4.7.0 Too many connections from your address, try again later\r\n");
  } else {
    conn->start();
  }
}

void Server::connection_closed(InboundConnection* conn) {
  auto it = connections_.find(conn);
  if (it == connections_.end()) return;
  auto keep = it->second;   // destroyed at the end of this scope
  auto pc = per_client_.find(conn->client_key());
  if (pc != per_client_.end() && --pc->second == 0) per_client_.erase(pc);
  connections_.erase(it);
  maybe_drained();
}

void Server::close_listeners() {
  for (auto& l : listeners_) {
    // An activated socket's file belongs to the socket unit, which keeps
    // listening (and queueing connections) while outboxd restarts.
    bool unix_socket = l->unix_socket && !l->activated;
    std::string path = unix_socket ? l->config->path : "";
    uv_close(reinterpret_cast<uv_handle_t*>(l->handle), [](uv_handle_t* h) {
      if (h->type == UV_NAMED_PIPE) delete reinterpret_cast<uv_pipe_t*>(h);
      else delete reinterpret_cast<uv_tcp_t*>(h);
    });
    if (unix_socket) ::unlink(path.c_str());
  }
  listeners_.clear();
}

void Server::shutdown(std::chrono::milliseconds grace, std::function<void()> on_drained) {
  if (shutting_down_) return;
  shutting_down_ = true;
  on_drained_ = std::move(on_drained);
  close_listeners();
  std::vector<std::shared_ptr<InboundConnection>> conns;
  for (auto& [p, c] : connections_) conns.push_back(c);
  for (auto& c : conns) c->shutdown(false);
  grace_timer_ = new uv_timer_t;
  uv_timer_init(loop_, grace_timer_);
  grace_timer_->data = this;
  uv_timer_start(grace_timer_, [](uv_timer_t* t) {
    auto* self = static_cast<Server*>(t->data);
    std::vector<std::shared_ptr<InboundConnection>> left;
    for (auto& [p, c] : self->connections_) left.push_back(c);
    for (auto& c : left) c->shutdown(true);
  }, static_cast<std::uint64_t>(grace.count()), 0);
  maybe_drained();
}

void Server::maybe_drained() {
  if (!shutting_down_ || !connections_.empty() || !on_drained_) return;
  if (grace_timer_) {
    uv_close(reinterpret_cast<uv_handle_t*>(grace_timer_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    grace_timer_ = nullptr;
  }
  auto cb = std::move(on_drained_);
  on_drained_ = nullptr;
  cb();
}

}  // namespace outbox::daemon
