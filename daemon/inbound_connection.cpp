#include "daemon/inbound_connection.h"

#include <sys/ioctl.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <type_traits>
#include <utility>

#include "daemon/logging.h"
#include "daemon/message_intake.h"
#include "daemon/credential_check.h"
#include "daemon/routing.h"
#include "daemon/sender_policy.h"
#include "daemon/server.h"
#include "queue/body_reader.h"
#include "tools/common/maildrop_file.h"

namespace outbox::daemon {

namespace {
// Reading stops while this many body bytes of this connection wait in the
// store queue, so a fast client cannot make the daemon buffer a whole message.
constexpr std::size_t kMaxStoreBacklog = 1 << 20;
// Reading also stops while this many reply bytes wait to be written: a client
// that pipelines commands and never reads its replies must not make the daemon
// queue replies without bound (each read of NOOPs yields ~2.5x as many reply
// bytes). The idle deadline still runs, so such a client is timed out.
constexpr std::size_t kMaxWriteBacklog = 256 * 1024;
constexpr std::size_t kReadBufferSize = 64 * 1024;
// While a commit is pending the socket is still read: what the client
// pipelines behind the dot (RFC 2920 §3.1) waits in the session, in order,
// until this many bytes. Stopping and restarting the read around every
// commit cost two epoll_ctl calls per message (libuv adds the descriptor
// again: ADD, EEXIST, MOD).
constexpr std::size_t kMaxHeldInput = 16 * 1024;

struct WriteReq {
  uv_write_t req;
  std::string data;
  std::weak_ptr<InboundConnection> conn;
};

// min_data_rate (like Postfix's smtpd_min_data_rate) is judged only after
// this grace, so a short message or TCP slow start never trips it.
constexpr std::uint64_t kDataRateGraceMs = 10000;
// A DATA verdict against a client whose bytes wait unread is put off by this
// much, so the loop reads them first.
constexpr std::uint64_t kLateLoopRecheckMs = 50;

}  // namespace

InboundConnection::InboundConnection(Server& server, const ListenConfig& listener,
                                     uv_stream_t* stream, Peer peer)
    : server_(server), listener_(listener), stream_(stream),
      idle_timer_(new uv_timer_t), session_timer_(new uv_timer_t), rate_timer_(new uv_timer_t),
      auth_timer_(new uv_timer_t), peer_(std::move(peer)) {
  stream_->data = this;
  for (uv_timer_t* t : {idle_timer_, session_timer_, rate_timer_, auth_timer_}) {
    uv_timer_init(server_.loop(), t);
    t->data = this;
  }
  open_handles_ = 5;

  const Config& cfg = server_.config();
  protocol::SessionConfig sc;
  sc.hostname = cfg.host_name;
  sc.domain = cfg.host_domain;
  sc.aliases = cfg.aliases;
  sc.max_message_size = cfg.limits.max_message_size;
  sc.max_recipients = cfg.limits.max_recipients;
  // A maildrop file is one message: its import record allows one commit. Split
  // at max_recipients (RFC 5321 §4.5.3.1.10), the second transaction's commit
  // would be refused and the next scan would remove the file as imported, the
  // recipients past the limit never queued. The file format bounds them.
  if (!peer_.import_key.empty()) sc.max_recipients = std::max(sc.max_recipients, maildrop::kMaxRecipients);
  sc.max_errors = cfg.limits.max_errors;
  sc.max_auth_failures = cfg.limits.max_auth_failures;
  sc.tls = listener_.tls == TlsMode::StartTls  ? protocol::ListenerTls::StartTls
           : listener_.tls == TlsMode::Implicit ? protocol::ListenerTls::Implicit
                                                : protocol::ListenerTls::None;
  sc.auth = listener_.auth == AuthMode::Required  ? protocol::ListenerAuth::Required
            : listener_.auth == AuthMode::Optional ? protocol::ListenerAuth::Optional
                                                   : protocol::ListenerAuth::None;
  protocol::PeerInfo pi;
  pi.unix_socket = peer_.unix_socket;
  pi.address = peer_.address;
  pi.uid = peer_.uid;
  pi.user = peer_.user;
  // Unauthenticated mail only from trusted networks and Unix peers (SPEC).
  pi.trusted = peer_.unix_socket || address_in_networks(peer_.address, listener_.trusted_networks);
  // Sender rights from [[user]] / [[local_user]] (RFC 6409 §6.1).
  Submitter who{peer_.unix_socket, peer_.uid, peer_.user, peer_.loopback};
  // The session keeps the generation it started with: a reload frees the
  // old one only when the last session using it ends.
  std::shared_ptr<const Config> config = server_.config_ptr();
  sc.sender_policy = [config, who](const std::string& sender,
                                   const std::string& auth_user) -> std::optional<protocol::PolicyRejection> {
    if (auto r = check_sender(*config, who, sender, auth_user)) return r;
    // An upstream that takes only its own account as sender (QQ, 163, ...)
    // would bounce the message later: say so now, at MAIL.
    auto route = routing::check_sender(*config, sender);
    if (route.allowed) return std::nullopt;
    protocol::PolicyRejection rej;
    rej.code = route.code;
    rej.text = route.text;
    rej.reason = "upstream_sender_mismatch";
    return rej;
  };
  // [[upstream]] max_message_size: checked here when the route is known, so
  // a message the upstream cannot take is refused before it is accepted.
  sc.route_size_limit = [config](const std::string& sender) {
    protocol::RouteSizeLimit out;
    auto ups = routing::upstreams_for(*config, sender);
    if (!ups.empty() && ups.front()->max_message_size) {
      out.bytes = *ups.front()->max_message_size;
      out.upstream = ups.front()->name;
    }
    return out;
  };
  session_ = std::make_unique<protocol::ServerSession>(
      sc, pi, [this] { return server_.next_id(); }, [] { return std::time(nullptr); });
  if (listener_.tls == TlsMode::Implicit) tls_ = std::make_unique<TlsEngine>(server_.tls_context());
  // The intake is this connection's alone and goes with it; its store
  // completions hold only a weak_ptr to it, so these events never outlive us.
  MessageIntake::Events ev;
  ev.append_done = [this] { update_reading(); };
  ev.committed = [this](bool ok) {
    if (!closing_) commit_answered(ok);
  };
  intake_ = std::make_shared<MessageIntake>(server_, MessageIntake::Source{client_label(), peer_.uid, peer_.import_key},
                                            std::move(ev));
}

InboundConnection::~InboundConnection() = default;

void InboundConnection::commit_answered(bool ok) {
  session_->on_commit_result(ok);
  run_actions();
  if (server_.shutting_down()) shutdown(false);
  arm_idle_timer();
  update_reading();
  // The client had ended its stream behind the dot: now that what it
  // pipelined has run (a QUIT closes us first), it is the end.
  if (eof_after_commit_ && !closing_ && !session_->awaiting_commit()) handle_eof(std::exchange(eof_after_commit_, nullptr));
}

std::string InboundConnection::client_key() const { return peer_.unix_socket ? "" : peer_.address; }

std::string InboundConnection::client_label() const {
  if (!peer_.unix_socket) return peer_.address;
  return "unix";
}

void InboundConnection::start() {
  started_ms_ = uv_now(server_.loop());
  log::Line l("connect");
  l.kv("client", client_label()).kv("listener", listener_.name);
  if (peer_.uid) l.kv("uid", static_cast<std::uint64_t>(*peer_.uid));
  log::debug(l);
  auto session_ms = static_cast<std::uint64_t>(server_.config().limits.session_timeout.count()) * 1000;
  uv_timer_start(session_timer_, &InboundConnection::on_session_timer, session_ms, 0);
  // Implicit TLS: the greeting is sent once the handshake is done (RFC 8314 §3.3).
  if (!tls_) session_->start(pending_pregreet());
  run_actions();
  arm_idle_timer();
  update_reading();
}

bool InboundConnection::pending_pregreet() const {
  // Bytes already queued on the socket before the 220 was even written were
  // sent without waiting for it (RFC 5321 §4.3.1): pre-greet traffic.
  if (peer_.unix_socket) return false;
  uv_os_fd_t fd;
  if (uv_fileno(reinterpret_cast<const uv_handle_t*>(stream_), &fd) != 0) return false;
  int n = 0;
  return ::ioctl(fd, FIONREAD, &n) == 0 && n > 0;
}

void InboundConnection::refuse(std::string_view reply) {
  out_.append(reply);
  close_after_flush_ = true;
  flush_writes();
}

void InboundConnection::shutdown(bool force) {
  if (closing_ || close_after_flush_) return;
  if (!force && (session_->in_data() || session_->awaiting_commit())) return;
  session_->on_shutdown();
  run_actions();
}

// --- reading -----------------------------------------------------------------

void InboundConnection::on_alloc(uv_handle_t*, size_t, uv_buf_t* buf) {
  buf->base = new char[kReadBufferSize];
  buf->len = kReadBufferSize;
}

void InboundConnection::on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  auto* self = static_cast<InboundConnection*>(s->data);
  std::unique_ptr<char[]> owned(buf->base);
  if (nread > 0) {
    if (self->tls_)
      self->handle_cipher(buf->base, static_cast<size_t>(nread));
    else
      self->handle_bytes(buf->base, static_cast<size_t>(nread));
  } else if (nread < 0) {
    self->client_eof(nread == UV_EOF ? "eof" : uv_err_name(static_cast<int>(nread)));
  }
}

void InboundConnection::handle_bytes(const char* data, size_t n) {
  if (closing_) return;
  bool was_in_data = session_->in_data();
  session_->feed(std::string_view(data, n));
  std::uint64_t now = uv_now(server_.loop());
  if (was_in_data) data_clock_.on_bytes(n, now);
  run_actions();
  if (!was_in_data && session_->in_data()) {
    const auto& lim = server_.config().limits;
    data_clock_ = DataClock({lim.min_data_rate, static_cast<std::uint64_t>(lim.data_timeout.count()) * 1000,
                             kDataRateGraceMs});
    data_clock_.start(now, reading_);
  }
  if (server_.shutting_down()) shutdown(false);   // a busy session just went idle
  arm_idle_timer();
  update_reading();
}

void InboundConnection::handle_cipher(const char* data, size_t n) {
  if (closing_) return;
  tls_->feed_cipher(std::string_view(data, n));
  write_raw(tls_->take_cipher());   // handshake records, alerts
  if (tls_->state() == TlsEngine::State::Failed) {
    log::info(log::Line("tls_failed").kv("client", client_label()).kv("listener", listener_.name)
                  .kv("error", tls_->error()));
    if (!intake_->id().empty() && !session_->awaiting_commit()) intake_->abort(intake_->id());
    close_after_flush_ = true;
    flush_writes();
    return;
  }
  if (tls_->handshake_done() && !tls_announced_) {
    tls_announced_ = true;
    log::debug(log::Line("tls").kv("client", client_label()).kv("version", tls_->version())
                   .kv("cipher", tls_->cipher()));
    if (listener_.tls == TlsMode::Implicit) {
      // Application data that came with the client's last handshake flight
      // was written before our 220 existed: pre-greet traffic.
      std::string early = tls_->take_plain();
      session_->start(!early.empty());
      run_actions();
      if (!early.empty()) handle_bytes(early.data(), early.size());
      if (closing_) return;
    } else {
      session_->on_tls_established();   // RFC 3207 §4.2: back to the just-greeted state
      run_actions();
    }
  }
  std::string plain = tls_->take_plain();
  if (!plain.empty()) handle_bytes(plain.data(), plain.size());
  if (tls_ && tls_->state() == TlsEngine::State::Closed) {
    // close_notify: whatever transaction was open ends here (its message is
    // aborted in handle_eof); plaintext is never read after it.
    client_eof("tls_close");
  } else {
    arm_idle_timer();
  }
}

void InboundConnection::start_tls() {
  // The 220 goes out in plaintext; everything after it is TLS. The session
  // already dropped whatever the client pipelined behind STARTTLS.
  flush_writes();
  tls_ = std::make_unique<TlsEngine>(server_.tls_context());
}

void InboundConnection::client_eof(const char* why) {
  if (closing_) return;
  if (session_->awaiting_commit()) {
    eof_after_commit_ = why;
    update_reading();   // nothing more to read
    return;
  }
  handle_eof(why);
}

void InboundConnection::handle_eof(const char* why) {
  if (closing_) return;
  if (!intake_->id().empty() && !session_->awaiting_commit()) {
    // Disconnect mid-DATA: the message never gets a 250, so none of it stays.
    log::info(log::Line("disconnect").kv("id", intake_->id()).kv("client", client_label())
                  .kv("reason", why).kv("state", "data").kv("stored", "no"));
    intake_->abort(intake_->id());
  } else {
    log::debug(log::Line("disconnect").kv("client", client_label()).kv("reason", why));
  }
  begin_close();
}

void InboundConnection::update_reading() {
  if (closing_) return;
  const bool held_full = session_->awaiting_commit() && session_->held_input() >= kMaxHeldInput;
  bool want = !close_after_flush_ && !session_->closed() && !held_full && !eof_after_commit_ &&
              !session_->awaiting_auth() && intake_->inflight_bytes() < kMaxStoreBacklog &&
              uv_stream_get_write_queue_size(stream_) < kMaxWriteBacklog;
  bool was = reading_;
  if (want && !reading_) {
    if (uv_read_start(stream_, &InboundConnection::on_alloc, &InboundConnection::on_read) == 0)
      reading_ = true;
  } else if (!want && reading_) {
    uv_read_stop(stream_);
    reading_ = false;
  }
  if (reading_ != was) {
    // Time we do not read is not the client's: the DATA clocks stop and
    // start with reading, and the deadline timer follows.
    data_clock_.set_reading(reading_, uv_now(server_.loop()));
    if (session_->in_data()) arm_idle_timer();
  }
}

void InboundConnection::arm_idle_timer() {
  if (closing_) return;
  const auto& lim = server_.config().limits;
  if (session_->in_data()) {
    auto in = data_clock_.deadline_in(uv_now(server_.loop()));
    if (!in) {   // not reading: no deadline runs; update_reading re-arms
      uv_timer_stop(idle_timer_);
      return;
    }
    uv_timer_start(idle_timer_, &InboundConnection::on_timer, *in, 0);
    return;
  }
  auto ms = static_cast<std::uint64_t>(lim.command_timeout.count()) * 1000;
  uv_timer_start(idle_timer_, &InboundConnection::on_timer, ms, 0);
}

void InboundConnection::on_timer(uv_timer_t* t) {
  auto* self = static_cast<InboundConnection*>(t->data);
  if (self->closing_) return;
  if (self->session_->awaiting_commit() || self->session_->awaiting_auth()) {  // our own delay, not the client's
    self->arm_idle_timer();
    return;
  }
  if (self->session_->in_data()) {
    self->judge_data();
    return;
  }
  log::Line l("timeout");
  l.kv("client", self->client_label()).kv("phase", "command");
  if (!self->intake_->id().empty()) l.kv("id", self->intake_->id());
  log::info(l);
  self->session_->on_timeout();
  self->run_actions();
}

void InboundConnection::on_session_timer(uv_timer_t* t) {
  auto* self = static_cast<InboundConnection*>(t->data);
  if (self->closing_ || self->session_->awaiting_commit()) return;
  log::info(log::Line("timeout").kv("client", self->client_label()).kv("phase", "session"));
  self->session_->on_timeout();
  self->run_actions();
}

void InboundConnection::on_rate_timer(uv_timer_t* t) {
  auto* self = static_cast<InboundConnection*>(t->data);
  if (self->closing_) return;
  if (!self->session_->in_data()) {
    uv_timer_stop(t);
    return;
  }
  self->judge_data();
}

std::size_t InboundConnection::unread_bytes() const {
  uv_os_fd_t fd;
  int n = 0;
  if (uv_fileno(reinterpret_cast<const uv_handle_t*>(stream_), &fd) != 0 || ::ioctl(fd, FIONREAD, &n) != 0 || n < 0)
    return 0;
  return static_cast<std::size_t>(n);
}

void InboundConnection::judge_data() {
  std::uint64_t now = uv_now(server_.loop());
  auto verdict = data_clock_.check(now);
  if (verdict != DataClock::Verdict::Ok && unread_bytes() > 0) {
    // The client's bytes are in our socket, unread: the loop was late (a
    // busy machine, a stopped process; libuv runs timers before it polls),
    // not the client. Read them first, then judge again.
    uv_timer_start(idle_timer_, &InboundConnection::on_timer, kLateLoopRecheckMs, 0);
    return;
  }
  switch (verdict) {
    case DataClock::Verdict::Ok:
      arm_idle_timer();
      return;
    case DataClock::Verdict::TooSlow:
      // Sending, but below min_data_rate (on average, or a stall after a
      // burst spent the deadline): 421 data rate too low.
      uv_timer_stop(rate_timer_);
      session_->on_slow_data(data_clock_.bytes(), data_clock_.client_ms(now) / 1000);
      run_actions();
      return;
    case DataClock::Verdict::Silent: {
      uv_timer_stop(rate_timer_);
      log::Line l("timeout");
      l.kv("client", client_label()).kv("phase", "data");
      if (!intake_->id().empty()) l.kv("id", intake_->id());
      log::info(l);
      session_->on_timeout();
      run_actions();
      return;
    }
  }
}

// --- SMTP AUTH ------------------------------------------------------------------

void InboundConnection::check_credentials(protocol::CheckCredentials& a) {
  std::weak_ptr<InboundConnection> weak = weak_from_this();
  std::string user = a.user;
  int rc = daemon::check_credentials(server_.loop(), server_.config().users, a.user, a.password, [weak, user](bool ok) {
    auto self = weak.lock();
    if (!self || self->closing_) return;
    self->finish_auth(ok, user);
  });
  if (rc != 0) {
    log::error(log::Line("auth_error").kv("client", client_label()).kv("error", uv_err_name(rc)));
    finish_auth(false, user);
  }
}

void InboundConnection::finish_auth(bool ok, const std::string& user) {
  if (ok) {
    session_->on_auth_result(true);
    run_actions();
    arm_idle_timer();
    update_reading();
    return;
  }
  // Slow guessing down before the 535 (S6): per address and per user.
  std::string key = peer_.unix_socket ? "unix:" + (peer_.uid ? std::to_string(*peer_.uid) : std::string("?"))
                                      : peer_.address;
  auto delay = server_.auth_throttle().failure(key, user, uv_now(server_.loop()));
  log::debug(log::Line("auth_delay").kv("client", client_label()).kv("user", user)
                 .kv("ms", static_cast<std::uint64_t>(delay.count())));
  uv_timer_start(auth_timer_, &InboundConnection::on_auth_delay, static_cast<std::uint64_t>(delay.count()), 0);
}

void InboundConnection::on_auth_delay(uv_timer_t* t) {
  auto* self = static_cast<InboundConnection*>(t->data);
  if (self->closing_) return;
  self->session_->on_auth_result(false);
  self->run_actions();
  if (self->server_.shutting_down()) self->shutdown(false);
  self->arm_idle_timer();
  self->update_reading();
}

// --- session actions ------------------------------------------------------------

void InboundConnection::run_actions() {
  auto actions = session_->take_actions();
  for (std::size_t i = 0; i < actions.size(); ++i) {
    // The last chunk and the commit, one after the other: one store request.
    if (auto* chunk = std::get_if<protocol::AppendBody>(&actions[i]); chunk && i + 1 < actions.size()) {
      if (auto* c = std::get_if<protocol::CommitMessage>(&actions[i + 1]); c && c->id == chunk->id) {
        uv_timer_stop(idle_timer_);
        intake_->commit(*c, chunk);
        ++i;
        continue;
      }
    }
    std::visit(
        [this](auto& a) {
          using T = std::decay_t<decltype(a)>;
          if constexpr (std::is_same_v<T, protocol::SendReply>) {
            out_ += a.bytes;
          } else if constexpr (std::is_same_v<T, protocol::BeginMessage>) {
            intake_->begin(a);
            if (server_.config().limits.min_data_rate > 0)
              uv_timer_start(rate_timer_, &InboundConnection::on_rate_timer, 1000, 1000);
          } else if constexpr (std::is_same_v<T, protocol::AppendBody>) {
            intake_->append(a);
          } else if constexpr (std::is_same_v<T, protocol::CommitMessage>) {
            uv_timer_stop(idle_timer_);
            intake_->commit(a, nullptr);
          } else if constexpr (std::is_same_v<T, protocol::AbortMessage>) {
            intake_->abort(a.id);
          } else if constexpr (std::is_same_v<T, protocol::StartTls>) {
            start_tls();
          } else if constexpr (std::is_same_v<T, protocol::CloseConnection>) {
            close_after_flush_ = true;
          } else if constexpr (std::is_same_v<T, protocol::CheckCredentials>) {
            check_credentials(a);
          } else if constexpr (std::is_same_v<T, protocol::LogEvent>) {
            log::Line l(a.event);
            l.kv("client", client_label());
            for (auto& [k, v] : a.fields) l.kv(k, v);
            log::info(l);
          }
        },
        actions[i]);
  }
  flush_writes();
}

void InboundConnection::flush_writes() {
  if (closing_) return;
  if (tls_) {
    if (!out_.empty()) tls_->write_plain(out_);   // held by the engine until the handshake is done
    out_.clear();
    if (close_after_flush_) tls_->close();        // close_notify (RFC 8446 §6.1)
    write_raw(tls_->take_cipher());
  } else {
    std::string bytes;
    bytes.swap(out_);
    write_raw(std::move(bytes));
  }
  if (close_after_flush_ && writes_in_flight_ == 0) begin_close();
}

void InboundConnection::write_raw(std::string bytes) {
  if (closing_ || bytes.empty()) return;
  // Write now when nothing is queued: a reply fits the socket buffer almost
  // always, and a uv_write that completes at once still costs libuv an
  // epoll_ctl (it re-arms the watcher when its queue drains) and a callback.
  // What does not fit goes through uv_write, after what was written; an
  // error goes there too, to be reported by on_write like any other.
  if (writes_in_flight_ == 0) {
    uv_buf_t now = uv_buf_init(bytes.data(), static_cast<unsigned>(bytes.size()));
    int n = uv_try_write(stream_, &now, 1);
    if (n == static_cast<int>(bytes.size())) return;
    if (n > 0) bytes.erase(0, static_cast<std::size_t>(n));
  }
  {
    auto* w = new WriteReq;
    w->data = std::move(bytes);
    w->conn = weak_from_this();
    w->req.data = w;
    uv_buf_t buf = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
    int rc = uv_write(&w->req, stream_, &buf, 1, &InboundConnection::on_write);
    if (rc != 0) {
      delete w;
      begin_close();
      return;
    }
    ++writes_in_flight_;
  }
}

void InboundConnection::on_write(uv_write_t* req, int status) {
  std::unique_ptr<WriteReq> w(static_cast<WriteReq*>(req->data));
  auto self = w->conn.lock();
  if (!self) return;
  --self->writes_in_flight_;
  if (status < 0) {
    self->handle_eof(uv_err_name(status));
    return;
  }
  if (self->close_after_flush_ && self->writes_in_flight_ == 0) {
    self->begin_close();
    return;
  }
  self->update_reading();   // the write backlog may have drained
}

// --- closing --------------------------------------------------------------------

void InboundConnection::begin_close() {
  if (closing_) return;
  closing_ = true;
  if (!intake_->id().empty() && !session_->awaiting_commit()) intake_->abort(intake_->id());
  auto on_close = [](uv_handle_t* h) {
    auto* self = static_cast<InboundConnection*>(h->data);
    self->on_handle_closed();
  };
  uv_close(reinterpret_cast<uv_handle_t*>(stream_), on_close);
  uv_close(reinterpret_cast<uv_handle_t*>(idle_timer_), on_close);
  uv_close(reinterpret_cast<uv_handle_t*>(session_timer_), on_close);
  uv_close(reinterpret_cast<uv_handle_t*>(rate_timer_), on_close);
  uv_close(reinterpret_cast<uv_handle_t*>(auth_timer_), on_close);
}

void InboundConnection::on_handle_closed() {
  if (--open_handles_ > 0) return;
  // Every handle is closed: free them and let the server drop us.
  if (peer_.unix_socket)
    delete reinterpret_cast<uv_pipe_t*>(stream_);
  else
    delete reinterpret_cast<uv_tcp_t*>(stream_);
  delete idle_timer_;
  delete session_timer_;
  delete rate_timer_;
  delete auth_timer_;
  stream_ = nullptr;
  server_.connection_closed(this);   // may destroy *this
}

}  // namespace outbox::daemon
