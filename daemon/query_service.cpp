#include "daemon/query_service.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "daemon/logging.h"
#include "daemon/query_answer.h"

namespace outbox::daemon {

namespace {

std::string uv_error(int rc) { return std::string(uv_err_name(rc)) + ": " + uv_strerror(rc); }

query::PeerCred peer_cred(int fd, bool& ok) {
  query::PeerCred p;
  ucred cred{};
  socklen_t len = sizeof cred;
  ok = ::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0;
  if (!ok) return p;
  p.uid = cred.uid;
  p.gid = cred.gid;
#ifdef SO_PEERGROUPS
  // Linux >= 4.13: the peer's supplementary groups (a member of the outbox
  // group whose primary group is another). ERANGE tells the size needed.
  std::vector<gid_t> groups(64);
  socklen_t glen = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
  int rc = ::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &glen);
  if (rc != 0 && errno == ERANGE && glen / sizeof(gid_t) <= 65536) {
    groups.resize(glen / sizeof(gid_t));
    rc = ::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &glen);
  }
  if (rc == 0)
    for (std::size_t i = 0; i < glen / sizeof(gid_t); ++i) p.groups.push_back(groups[i]);
#endif
  return p;
}

}  // namespace

struct QueryService::Conn : std::enable_shared_from_this<Conn> {
  QueryService* svc = nullptr;
  uv_pipe_t pipe{};
  uv_timer_t timer{};
  query::View view;
  std::string in;
  bool busy = false;       // a request is with the reader, or its answer being written
  bool closing = false;
  int open_handles = 2;

  struct Write {
    uv_write_t req{};
    std::string data;
    std::weak_ptr<Conn> conn;
  };

  void start() {
    uv_timer_start(&timer, &Conn::on_idle, kIdleMs, 0);
    read();
  }

  void read() {
    if (closing) return;
    uv_read_start(reinterpret_cast<uv_stream_t*>(&pipe),
                  [](uv_handle_t*, size_t, uv_buf_t* buf) {
                    buf->base = new char[4096];
                    buf->len = 4096;
                  },
                  &Conn::on_read);
  }

  static void on_idle(uv_timer_t* t) noexcept { static_cast<Conn*>(t->data)->close(); }

  static void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) noexcept {
    std::unique_ptr<char[]> owned(buf->base);
    auto* self = static_cast<Conn*>(s->data);
    try {
      if (n < 0) {
        self->close();
        return;
      }
      self->in.append(buf->base, static_cast<std::size_t>(n));
      self->next();
    } catch (const std::exception& e) {
      log::error(log::Line("query_error").kv("error", e.what()));
      self->close();
    }
  }

  // Takes the next whole request line, if any, to the reader.
  void next() {
    if (closing || busy) return;
    auto lf = in.find('\n');
    if (lf == std::string::npos) {
      if (in.size() >= query::kMaxRequestBytes) {
        // A line that cannot be a request: say so and hang up.
        busy = true;
        uv_read_stop(reinterpret_cast<uv_stream_t*>(&pipe));
        send(query::encode(query::ErrorAnswer{query::ErrorCode::BadRequest, "request line too long"}), true);
      }
      return;
    }
    std::string line = in.substr(0, lf);
    in.erase(0, lf + 1);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    busy = true;
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&pipe));
    uv_timer_stop(&timer);
    auto request = query::decode_request(line);
    auto result = std::make_shared<std::string>();
    std::weak_ptr<Conn> weak = weak_from_this();
    query::View v = view;
    svc->reader_.run(
        [request, v, result](queue::Spool& spool) { *result = query::encode(query::answer(spool, request, v)); },
        [weak, result](bool ok, const std::string& error) {
          auto self = weak.lock();
          if (!self || self->closing) return;
          self->send(ok ? *result
                        : query::encode(query::ErrorAnswer{query::ErrorCode::Unavailable,
                                                           "outboxd cannot read the spool: " + error}),
                     false);
        });
  }

  void send(std::string data, bool then_close) {
    if (closing) return;
    auto* w = new Write;
    w->data = std::move(data);
    w->conn = weak_from_this();
    w->req.data = w;
    uv_buf_t b = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
    int rc = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&pipe), &b, 1,
                      then_close ? &Conn::on_written_close : &Conn::on_written);
    if (rc != 0) {
      delete w;
      close();
    }
  }

  static void on_written(uv_write_t* req, int status) noexcept {
    std::unique_ptr<Write> w(static_cast<Write*>(req->data));
    auto self = w->conn.lock();
    if (!self || self->closing) return;
    if (status < 0) {
      self->close();
      return;
    }
    self->busy = false;
    uv_timer_start(&self->timer, &Conn::on_idle, kIdleMs, 0);
    self->read();
    try {
      self->next();   // a request the client pipelined behind the last one
    } catch (const std::exception& e) {
      log::error(log::Line("query_error").kv("error", e.what()));
      self->close();
    }
  }

  static void on_written_close(uv_write_t* req, int) noexcept {
    std::unique_ptr<Write> w(static_cast<Write*>(req->data));
    if (auto self = w->conn.lock()) self->close();
  }

  void close() {
    if (closing) return;
    closing = true;
    auto on_closed = [](uv_handle_t* h) {
      auto* self = static_cast<Conn*>(h->data);
      if (--self->open_handles == 0) self->svc->forget(self);
    };
    uv_close(reinterpret_cast<uv_handle_t*>(&pipe), on_closed);
    uv_close(reinterpret_cast<uv_handle_t*>(&timer), on_closed);
  }
};

QueryService::QueryService(uv_loop_t* loop, std::string socket_path, std::string spool_path,
                           SpoolReader::Poster post)
    : loop_(loop), path_(std::move(socket_path)), reader_(std::move(spool_path), std::move(post)) {
  self_.uid = static_cast<std::uint32_t>(::geteuid());
  self_.gid = static_cast<std::uint32_t>(::getegid());
}

QueryService::~QueryService() = default;

void QueryService::start() {
  struct stat st {};
  if (::lstat(path_.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) throw std::runtime_error("query socket " + path_ + " exists and is not a socket");
    ::unlink(path_.c_str());   // stale: the spool lock says no other outboxd owns it
  }
  auto parent = std::filesystem::path(path_).parent_path();
  std::error_code ec;
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  listener_ = new uv_pipe_t;
  uv_pipe_init(loop_, listener_, 0);
  listener_->data = this;
  int rc = uv_pipe_bind(listener_, path_.c_str());
  // Every local user may ask (the umask, 027 under systemd, would shut them
  // out): what each sees is decided per connection.
  if (rc == 0 && ::chmod(path_.c_str(), 0666) != 0) rc = uv_translate_sys_error(errno);
  if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t*>(listener_), 64, &QueryService::on_connection);
  if (rc != 0) {
    uv_close(reinterpret_cast<uv_handle_t*>(listener_), [](uv_handle_t* h) { delete reinterpret_cast<uv_pipe_t*>(h); });
    listener_ = nullptr;
    throw std::runtime_error("cannot listen on query socket " + path_ + ": " + uv_error(rc));
  }
}

void QueryService::close() {
  if (closed_) return;
  closed_ = true;
  if (listener_) {
    uv_close(reinterpret_cast<uv_handle_t*>(listener_), [](uv_handle_t* h) { delete reinterpret_cast<uv_pipe_t*>(h); });
    listener_ = nullptr;
    ::unlink(path_.c_str());
  }
  std::vector<std::shared_ptr<Conn>> all;
  for (auto& [p, c] : conns_) all.push_back(c);
  for (auto& c : all) c->close();
}

void QueryService::on_connection(uv_stream_t* server, int status) noexcept {
  auto* self = static_cast<QueryService*>(server->data);
  if (status < 0) {
    log::warn(log::Line("accept_error").kv("listener", "query:" + self->path_).kv("error", uv_err_name(status)));
    return;
  }
  try {
    self->accept_one();
  } catch (const std::exception& e) {
    log::error(log::Line("query_error").kv("error", e.what()));
  }
}

void QueryService::accept_one() {
  auto c = std::make_shared<Conn>();
  c->svc = this;
  uv_pipe_init(loop_, &c->pipe, 0);
  uv_timer_init(loop_, &c->timer);
  c->pipe.data = c.get();
  c->timer.data = c.get();
  conns_[c.get()] = c;
  if (uv_accept(reinterpret_cast<uv_stream_t*>(listener_), reinterpret_cast<uv_stream_t*>(&c->pipe)) != 0) {
    c->close();
    return;
  }
  uv_os_fd_t fd;
  bool ok = false;
  query::PeerCred cred;
  if (uv_fileno(reinterpret_cast<uv_handle_t*>(&c->pipe), &fd) == 0) cred = peer_cred(fd, ok);
  if (!ok) {
    // Nobody we can name sees nothing.
    c->send(query::encode(query::ErrorAnswer{query::ErrorCode::Unavailable, "cannot tell who you are (SO_PEERCRED)"}),
            true);
    return;
  }
  if (conns_.size() > kMaxConnections) {
    c->send(query::encode(query::ErrorAnswer{query::ErrorCode::Unavailable, "too many query connections, try again"}),
            true);
    return;
  }
  c->view = query::decide_view(cred, self_);
  log::debug(log::Line("query_connect").kv("uid", static_cast<std::uint64_t>(cred.uid))
                 .kv("scope", c->view.scope == query::Scope::All ? "all" : "own"));
  c->start();
}

void QueryService::forget(Conn* c) { conns_.erase(c); }

}  // namespace outbox::daemon
