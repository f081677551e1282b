#include "daemon/upstream_link.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <algorithm>
#include <cstring>
#include <exception>

namespace outbox::daemon {

namespace {

constexpr std::size_t kReadBufferSize = 64 * 1024;

struct WriteReq {
  uv_write_t req;
  std::string data;
  std::shared_ptr<UpstreamLink> link;
};

struct ConnectReq {
  uv_connect_t req;
  std::shared_ptr<UpstreamLink> link;
  uv_tcp_t* tcp;
};

struct ResolveReq {
  uv_getaddrinfo_t req;
  std::shared_ptr<UpstreamLink> link;
};

std::string sockaddr_text(const sockaddr* sa) {
  char ip[INET6_ADDRSTRLEN] = {0};
  if (sa->sa_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
    return std::string(ip) + ":" + std::to_string(ntohs(in->sin_port));
  }
  auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
  inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
  return "[" + std::string(ip) + "]:" + std::to_string(ntohs(in6->sin6_port));
}

void close_and_delete_tcp(uv_tcp_t* tcp) {
  if (!tcp) return;
  uv_close(reinterpret_cast<uv_handle_t*>(tcp), [](uv_handle_t* h) { delete reinterpret_cast<uv_tcp_t*>(h); });
}

}  // namespace

std::shared_ptr<UpstreamLink> UpstreamLink::create(uv_loop_t* loop, Handler handler) {
  return std::shared_ptr<UpstreamLink>(new UpstreamLink(loop, std::move(handler)));
}

UpstreamLink::UpstreamLink(uv_loop_t* loop, Handler handler) : loop_(loop), handler_(std::move(handler)) {}

UpstreamLink::~UpstreamLink() = default;

void UpstreamLink::connect(Target target) {
  target_ = std::move(target);
  timer_ = new uv_timer_t;
  uv_timer_init(loop_, timer_);
  timer_->data = this;
  self_while_handles_ = shared_from_this();   // until the timer's close callback
  uv_timer_start(timer_, &UpstreamLink::on_timer, static_cast<std::uint64_t>(target_.connect_timeout.count()), 0);

  auto* r = new ResolveReq;
  r->link = shared_from_this();
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  std::string port = std::to_string(target_.port);
  int rc = uv_getaddrinfo(loop_, &r->req, &UpstreamLink::on_resolved, target_.host.c_str(), port.c_str(), &hints);
  if (rc != 0) {
    delete r;
    fail("resolve", target_.host + ": " + uv_strerror(rc));
  }
}

void UpstreamLink::on_resolved(uv_getaddrinfo_t* req, int status, struct addrinfo* res) noexcept {
  std::unique_ptr<ResolveReq> r(reinterpret_cast<ResolveReq*>(req));
  UpstreamLink* self = r->link.get();
  if (self->done_) {
    uv_freeaddrinfo(res);
    return;
  }
  if (status != 0) {
    uv_freeaddrinfo(res);
    self->fail("resolve", self->target_.host + ": " + uv_strerror(status));
    return;
  }
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    const auto* p = reinterpret_cast<const unsigned char*>(ai->ai_addr);
    self->addresses_.emplace_back(p, p + ai->ai_addrlen);
  }
  uv_freeaddrinfo(res);
  if (self->handler_.on_progress) {
    const auto n = self->addresses_.size();
    self->handler_.on_progress("resolve", std::to_string(n) + (n == 1 ? " address" : " addresses"));
    if (self->done_) return;
  }
  self->try_next_address();
}

void UpstreamLink::try_next_address() {
  if (done_) return;
  if (next_address_ >= addresses_.size()) {
    fail("connect", target_.host + " port " + std::to_string(target_.port) + ": " +
                        (last_connect_error_.empty() ? "no address" : last_connect_error_));
    return;
  }
  const auto& blob = addresses_[next_address_++];
  const auto* sa = reinterpret_cast<const sockaddr*>(blob.data());
  peer_address_ = sockaddr_text(sa);
  close_and_delete_tcp(tcp_);
  tcp_ = new uv_tcp_t;
  uv_tcp_init(loop_, tcp_);
  tcp_->data = this;
  uv_tcp_nodelay(tcp_, 1);
  auto* c = new ConnectReq;
  c->link = shared_from_this();
  c->tcp = tcp_;
  int rc = uv_tcp_connect(&c->req, tcp_, sa, &UpstreamLink::on_connect);
  if (rc != 0) {
    delete c;
    last_connect_error_ = peer_address_ + ": " + uv_strerror(rc);
    try_next_address();
  }
}

void UpstreamLink::on_connect(uv_connect_t* req, int status) noexcept {
  std::unique_ptr<ConnectReq> c(reinterpret_cast<ConnectReq*>(req));
  UpstreamLink* self = c->link.get();
  if (self->done_ || c->tcp != self->tcp_) return;   // closed, or a stale attempt
  if (status != 0) {
    self->last_connect_error_ = self->peer_address_ + ": " + uv_strerror(status);
    self->try_next_address();
    return;
  }
  try {
    self->connected();
  } catch (const std::exception& e) {
    self->fail("io", e.what());
  }
}

void UpstreamLink::connected() {
  connected_ = true;
  if (handler_.on_progress) {
    handler_.on_progress("connect", peer_address_);
    if (done_) return;
  }
  uv_timer_stop(timer_);
  uv_read_start(reinterpret_cast<uv_stream_t*>(tcp_), &UpstreamLink::on_alloc, &UpstreamLink::on_read);
  if (target_.implicit_tls) {
    // RFC 8314 §3.3: TLS from the first byte; the SMTP greeting comes inside.
    tls_ = std::make_unique<TlsEngine>(target_.tls, target_.tls_name);
    tls_->start();
    write_raw(tls_->take_cipher());
    if (read_deadline_.count() == 0) read_deadline_ = target_.connect_timeout;
    uv_timer_start(timer_, &UpstreamLink::on_timer, static_cast<std::uint64_t>(read_deadline_.count()), 0);
    return;
  }
  if (handler_.on_ready) handler_.on_ready();
}

void UpstreamLink::start_tls() {
  if (done_ || tls_) return;
  write_gathered();
  tls_ = std::make_unique<TlsEngine>(target_.tls, target_.tls_name);
  tls_->start();
  write_raw(tls_->take_cipher());
}

void UpstreamLink::send(std::string_view bytes) {
  if (done_ || bytes.empty()) return;
  if (corked_) {
    gathered_.append(bytes);
    if (gathered_.size() > kLowWater) write_gathered();
    return;
  }
  write_plain(bytes);
}

void UpstreamLink::uncork() {
  corked_ = false;
  write_gathered();
}

void UpstreamLink::write_gathered() {
  if (gathered_.empty()) return;
  std::string bytes = std::move(gathered_);
  gathered_.clear();
  if (done_) return;
  if (!tls_) return write_raw(std::move(bytes));
  write_plain(bytes);
}

void UpstreamLink::write_plain(std::string_view bytes) {
  if (!tls_) {
    write_raw(std::string(bytes));
    return;
  }
  // One TLS record's worth at a time (RFC 8446 §5.1: 2^14 octets), each
  // record's ciphertext queued as it is made.
  constexpr std::size_t kPiece = 16 * 1024;
  while (!bytes.empty() && !done_) {
    std::size_t n = std::min(kPiece, bytes.size());
    tls_->write_plain(bytes.substr(0, n));
    bytes.remove_prefix(n);
    write_raw(tls_->take_cipher());
  }
}

void UpstreamLink::set_read_deadline(std::chrono::milliseconds ms) {
  read_deadline_ = ms;
  if (done_ || !connected_) return;
  uv_timer_start(timer_, &UpstreamLink::on_timer, static_cast<std::uint64_t>(ms.count()), 0);
}

void UpstreamLink::on_alloc(uv_handle_t*, size_t, uv_buf_t* buf) noexcept {
  buf->base = new char[kReadBufferSize];
  buf->len = kReadBufferSize;
}

void UpstreamLink::on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) noexcept {
  std::unique_ptr<char[]> owned(buf->base);
  auto* self = static_cast<UpstreamLink*>(s->data);
  if (self->done_) return;
  auto keep = self->shared_from_this();   // a handler may close() us
  if (nread < 0) {
    self->fail(nread == UV_EOF ? "closed" : "io",
               nread == UV_EOF ? "connection closed by " + self->peer_address_
                               : std::string(uv_strerror(static_cast<int>(nread))));
    return;
  }
  if (nread == 0) return;
  if (self->read_deadline_.count() > 0)
    uv_timer_start(self->timer_, &UpstreamLink::on_timer, static_cast<std::uint64_t>(self->read_deadline_.count()), 0);
  std::string_view bytes(buf->base, static_cast<std::size_t>(nread));
  try {   // a handler's exception must not unwind through libuv
    if (self->tls_) {
      self->handle_cipher(bytes);
    } else if (self->handler_.on_data) {
      self->handler_.on_data(bytes);
    }
  } catch (const std::exception& e) {
    self->fail("io", e.what());
  }
}

void UpstreamLink::handle_cipher(std::string_view bytes) {
  tls_->feed_cipher(bytes);
  write_raw(tls_->take_cipher());
  if (tls_->state() == TlsEngine::State::Failed) {
    fail("tls", tls_->error());
    return;
  }
  if (tls_->handshake_done() && !tls_announced_) {
    tls_announced_ = true;
    if (handler_.on_progress) {
      handler_.on_progress("tls", tls_->version() + ", certificate " +
                                      (target_.tls && target_.tls->verify() ? "verified for " + target_.tls_name
                                                                              : std::string("not verified")));
      if (done_) return;
    }
    if (target_.implicit_tls) {
      if (handler_.on_ready) handler_.on_ready();
    } else if (handler_.on_tls_established) {
      handler_.on_tls_established();
    }
    if (done_) return;
  }
  std::string plain = tls_->take_plain();
  if (!plain.empty() && handler_.on_data) handler_.on_data(plain);
  if (!done_ && tls_->state() == TlsEngine::State::Closed) fail("closed", "TLS closed by " + peer_address_);
}

void UpstreamLink::write_raw(std::string bytes) {
  if (done_ || bytes.empty() || !tcp_) return;
  // As InboundConnection::write_raw: written at once when nothing is queued
  // and the socket takes it, without a request, a callback or the epoll_ctl
  // libuv spends re-arming the watcher when a uv_write's queue drains.
  if (queued_raw_ == 0) {
    uv_buf_t now = uv_buf_init(bytes.data(), static_cast<unsigned>(bytes.size()));
    int n = uv_try_write(reinterpret_cast<uv_stream_t*>(tcp_), &now, 1);
    if (n == static_cast<int>(bytes.size())) return;
    if (n > 0) bytes.erase(0, static_cast<std::size_t>(n));
  }
  auto* w = new WriteReq;
  w->data = std::move(bytes);
  w->link = shared_from_this();
  w->req.data = w;
  uv_buf_t buf = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
  int rc = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(tcp_), &buf, 1, &UpstreamLink::on_write);
  if (rc != 0) {
    delete w;
    fail("io", uv_strerror(rc));
    return;
  }
  queued_raw_ += buf.len;
  if (pending_write_bytes() > kLowWater) above_low_water_ = true;
}

void UpstreamLink::on_write(uv_write_t* req, int status) noexcept {
  std::unique_ptr<WriteReq> w(static_cast<WriteReq*>(req->data));
  UpstreamLink* self = w->link.get();
  self->wrote(w->data.size());
  if (status < 0 && status != UV_ECANCELED) {
    self->fail("io", uv_strerror(status));
    return;
  }
  if (self->done_ || !self->above_low_water_ || self->pending_write_bytes() > kLowWater) return;
  self->above_low_water_ = false;
  if (self->handler_.on_drain) {
    try {
      self->handler_.on_drain();
    } catch (const std::exception& e) {
      self->fail("io", e.what());   // never across libuv's C frames
    }
  }
}

void UpstreamLink::wrote(std::size_t n) { queued_raw_ -= std::min(n, queued_raw_); }

void UpstreamLink::on_timer(uv_timer_t* t) noexcept {
  auto* self = static_cast<UpstreamLink*>(t->data);
  if (self->done_) return;
  auto keep = self->shared_from_this();
  if (!self->connected_) {
    // This address did not answer in time; the next one may (RFC 6555 spirit,
    // without racing: one at a time).
    self->last_connect_error_ = self->peer_address_ + ": connection timed out";
    if (self->next_address_ < self->addresses_.size()) {
      uv_timer_start(self->timer_, &UpstreamLink::on_timer,
                     static_cast<std::uint64_t>(self->target_.connect_timeout.count()), 0);
      self->try_next_address();
      return;
    }
    self->fail("connect", self->target_.host + " port " + std::to_string(self->target_.port) + ": " +
                              self->last_connect_error_);
    return;
  }
  self->fail("timeout", "no reply from " + self->peer_address_ + " within " +
                            std::to_string(self->read_deadline_.count() / 1000) + " s");
}

void UpstreamLink::fail(std::string stage, std::string error) {
  if (done_) return;
  auto handler = std::move(handler_.on_failure);
  release_handles(false);
  if (handler) handler(std::move(stage), std::move(error));
}

void UpstreamLink::close() {
  if (done_) return;
  write_gathered();
  if (tls_ && tls_->handshake_done()) {
    tls_->close();   // close_notify before the FIN
    write_raw(tls_->take_cipher());
  }
  release_handles(true);
}

void UpstreamLink::release_handles(bool flush) {
  done_ = true;
  handler_ = Handler{};
  if (flush && tcp_ && connected_) {
    // QUIT and close_notify are already queued: uv_shutdown sends the FIN
    // only after every pending write went out, then the handle is closed.
    auto* req = new uv_shutdown_t;
    req->data = tcp_;
    if (uv_shutdown(req, reinterpret_cast<uv_stream_t*>(tcp_), [](uv_shutdown_t* r, int) {
          close_and_delete_tcp(static_cast<uv_tcp_t*>(r->data));
          delete r;
        }) == 0) {
      tcp_ = nullptr;
    } else {
      delete req;
    }
  }
  close_and_delete_tcp(tcp_);   // pending writes and connects get UV_ECANCELED
  tcp_ = nullptr;
  if (timer_) {
    uv_timer_stop(timer_);
    uv_close(reinterpret_cast<uv_handle_t*>(timer_), [](uv_handle_t* h) {
      auto* t = reinterpret_cast<uv_timer_t*>(h);
      auto* self = static_cast<UpstreamLink*>(t->data);
      delete t;
      self->timer_ = nullptr;
      self->self_while_handles_.reset();   // may destroy *self
    });
  }
}

}  // namespace outbox::daemon
