#include "daemon/delivery.h"

#include <openssl/crypto.h>

#include <cctype>
#include <mutex>
#include <type_traits>

#include "daemon/body_pump.h"
#include "daemon/logging.h"
#include "daemon/outcome_report.h"
#include "daemon/relay.h"
#include "daemon/routing.h"
#include "daemon/secrets.h"
#include "daemon/token_runner.h"
#include "daemon/upstream_link.h"
#include "daemon/upstream_settings.h"

namespace outbox::daemon {

namespace client = protocol::client;

namespace {

void wipe(std::string& s) {
  if (!s.empty()) OPENSSL_cleanse(s.data(), s.size());
  s.clear();
}

}  // namespace

// --- generations ------------------------------------------------------------------

std::shared_ptr<const Generation> Generation::make(std::shared_ptr<const Config> config) {
  auto g = std::make_shared<Generation>();
  g->config = std::move(config);
  for (const auto& u : g->config->upstreams) {
    UpstreamRuntime rt;
    rt.cfg = &u;
    try {
      if (!u.maildir.empty()) {
        g->upstreams.emplace(u.name, std::move(rt));   // a local target: no TLS, no secret
        continue;
      }
      if (u.tls != TlsMode::None) rt.tls = TlsContext::client(u.verify, u.ca_file);
      rt.password = secrets::load_password(u);
    } catch (const std::exception& e) {
      rt.setup_error = e.what();
      log::error(log::Line("upstream_error").kv("upstream", u.name).kv("error", e.what()));
    }
    g->upstreams.emplace(u.name, std::move(rt));
  }
  return g;
}

const UpstreamRuntime* Generation::find(std::string_view name) const {
  auto it = upstreams.find(name);
  return it == upstreams.end() ? nullptr : &it->second;
}

Generation::~Generation() {
  for (auto& [name, rt] : upstreams) {
    (void)name;
    wipe(rt.password);
  }
}

// --- one connection ---------------------------------------------------------------

Delivery::Delivery(Relay& relay, std::shared_ptr<const Generation> gen, const UpstreamRuntime& up, queue::ConnId conn)
    : relay_(relay), gen_(std::move(gen)), up_(up), conn_(conn),
      session_(std::make_unique<client::ClientSession>(make_config())) {}

Delivery::~Delivery() { *token_ = true; }

client::ClientConfig Delivery::make_config() const {
  client::ClientConfig c = upstream::client_config(*gen_->config, *up_.cfg);
  c.secret = up_.password;
  // The next message's commands go with the previous one's final dot: one
  // round trip per message on a busy connection (RFC 2920 §3.1).
  c.pipeline_messages = true;
  return c;
}

template <typename F>
void Delivery::guarded(std::string_view where, F&& f) noexcept {
  try {
    f();
  } catch (const std::exception& e) {
    drop(where, e.what());
  } catch (...) {
    drop(where, "unknown exception");
  }
}

void Delivery::drop(std::string_view where, std::string_view what) noexcept {
  try {
    log::error(log::Line("relay_error").kv("upstream", up_.cfg->name).kv("op", where).kv("error", what)
                   .kv("action", "connection dropped"));
    if (link_ && !link_closed_) link_->close();
    link_closed_ = true;
    finished_ = true;
    if (reported_finished_) return;
    reported_finished_ = true;
    release_held("the connection was dropped (" + std::string(where) + ") before this message was sent",
                 "delivery interrupted");
    relay_.delivery_finished(*this);
  } catch (...) {
    // Nothing more can be done for this connection; the message stays
    // active and the periodic recovery returns it to the queue.
  }
}

void Delivery::release_held(std::string_view unsent_why, const char* park_why) {
  if (auto job = slots_.take_queued()) {
    // Its mark's completion finds nothing; this outcome, written after the
    // mark (the writer keeps order), puts its recipients back to pending.
    client::MessageReport report = unsent_report(job->msg, unsent_why);
    relay_.message_done(*this, std::move(*job), std::move(report));
  }
  for (auto& job : slots_.take_held()) relay_.park_now(job.msg.id, park_why);
}

void Delivery::start() {
  const UpstreamConfig& u = *up_.cfg;
  if (u.auth == "oauth2") {
    // outbox's own OAuth2: the relay's OAuth2 thread gives the cached access
    // token or refreshes it; the answer comes back on the loop.
    std::weak_ptr<bool> alive = relay_.alive_;
    std::shared_ptr<bool> destroyed = token_;
    relay_.oauth2_token(u, [this, alive, destroyed](OAuth2Refresher::Result r) {
      if (alive.expired() || *destroyed) return;
      if (r.got.ok) {
        oauth2_fingerprint_ = r.fingerprint;
        set_secret(std::move(r.got.access_token));   // guarded inside
        return;
      }
      const oauth2::Failure& f = *r.got.failure;
      guarded("token", [&] {
        // No connection is opened: the mail is deferred and the upstream
        // suspended (a dead login on the slow auth schedule, for the
        // operator), never bounced.
        session_->on_credential_failed("OAuth2 token: " + f.text + (f.detail.empty() ? "" : " (" + f.detail + ")") +
                                           "; " + f.fix,
                                       f.kind == oauth2::FailureKind::Transient
                                           ? client::CredentialFailure::Transient
                                           : client::CredentialFailure::NeedsOperator);
        pump();
      });
    });
    return;
  }
  if (secrets::uses_oauth2(u)) {
    // The token command may take seconds: it runs on the token runner's own
    // thread (never the loop, never libuv's pool); the answer comes back
    // through a uv_async of this request.
    struct Wait {
      uv_async_t async;
      Delivery* self;
      std::weak_ptr<bool> alive;
      std::shared_ptr<bool> destroyed;
      std::mutex mu;
      TokenResult result;
    };
    auto* w = new Wait{{}, this, relay_.alive_, token_, {}, {}};
    uv_async_init(relay_.loop_, &w->async, [](uv_async_t* a) noexcept {
      auto* w = static_cast<Wait*>(a->data);
      TokenResult r;
      {
        std::lock_guard lock(w->mu);
        r = std::move(w->result);
      }
      Delivery* self = w->alive.expired() || *w->destroyed ? nullptr : w->self;
      uv_close(reinterpret_cast<uv_handle_t*>(a), [](uv_handle_t* h) noexcept { delete static_cast<Wait*>(h->data); });
      if (!self) return;
      if (!r.ok) {
        self->guarded("token", [&] {
          self->session_->on_connect_failed(r.error);
          self->pump();
        });
        return;
      }
      self->set_secret(std::move(r.token));   // guarded inside
    });
    w->async.data = w;
    process_token_runner().fetch(u, [w](TokenResult r) {
      {
        std::lock_guard lock(w->mu);
        w->result = std::move(r);
      }
      uv_async_send(&w->async);
    });
    return;
  }
  connect();
}

void Delivery::set_secret(std::string token) {
  guarded("token", [&] {
    auto cfg = make_config();
    cfg.secret = std::move(token);
    session_ = std::make_unique<client::ClientSession>(std::move(cfg));
    connect();
  });
}

void Delivery::connect() {
  UpstreamLink::Handler h;
  // Called from UpstreamLink's libuv callbacks: each is a noexcept boundary.
  h.on_ready = [this]() noexcept { guarded("connected", [&] { session_->on_connected(); pump(); }); };
  h.on_data = [this](std::string_view b) noexcept { guarded("read", [&] { session_->on_bytes(b); pump(); }); };
  h.on_tls_established = [this]() noexcept {
    guarded("tls", [&] { session_->on_tls_established(); pump(); });
  };
  h.on_drain = [this]() noexcept {
    guarded("drain", [&] {
      if (body_) body_->on_drain();
    });
  };
  h.on_failure = [this](std::string stage, std::string error) noexcept {
    guarded("link failure", [&] {
      link_closed_ = true;
      if (stage == "resolve" || stage == "connect") {
        session_->on_connect_failed(error);
      } else if (stage == "tls") {
        session_->on_tls_failed(error);
      } else if (stage == "timeout") {
        session_->on_timeout();
      } else if (stage == "closed") {
        // The session says "connection closed by the server"; the peer's
        // address is in relay= already.
        session_->on_closed("");
      } else {
        session_->on_closed(error);
      }
      pump();
    });
  };
  link_ = UpstreamLink::create(relay_.loop_, std::move(h));
  UpstreamLink::Target t;
  t.host = up_.cfg->host;
  t.port = up_.cfg->port;
  t.implicit_tls = up_.cfg->tls == TlsMode::Implicit;
  t.tls = up_.tls;
  t.tls_name = up_.cfg->tls_name.empty() ? up_.cfg->host : up_.cfg->tls_name;
  t.connect_timeout = up_.cfg->connect_timeout;
  link_->connect(std::move(t));
}

void Delivery::abort() {
  if (link_ && !link_closed_) link_->close();
  link_closed_ = true;
  aborted_ = true;
  // The session still reports the message in flight (a drop after the
  // final dot is a possible duplicate, RFC 1047), then finishes.
  session_->on_closed("shutting down");
}

void Delivery::quit_when_idle() {
  // It asked for a message ahead while one was under way: the QUIT waits
  // until that one's final dot is out (the session's next Ready).
  if (!slots_.quit(session_->ready())) return;
  session_->quit();
  pump();
}

void Delivery::hand(Job job) {
  switch (slots_.take(open(), session_->ready())) {
    case DeliverySlots::Take::SendNow:
      return send_now(std::move(job));
    case DeliverySlots::Take::Queue: {
      // Asked for ahead (wants_next): it waits for the current message's
      // final dot; its mark is written meanwhile.
      if (slots_.queue(std::move(job))) request_mark(*slots_.queued());
      return;
    }
    case DeliverySlots::Take::Park:
      // The connection ended in the same breath as it said ready: back to
      // the queue untouched, unmarked.
      relay_.park_now(job.msg.id, "");
      return;
  }
}

void Delivery::send_now(Job job) {
  const bool mark = slots_.start(std::move(job));
  const Job& current = *slots_.current();
  const auto& m = current.msg;
  client::OutgoingMessage om;
  om.id = m.id;
  om.sender = routing::envelope_sender_for(*up_.cfg, m.sender);
  om.recipients = m.recipients;
  om.size = m.size;
  om.smtputf8 = m.smtputf8;
  om.body_8bit = m.body_8bit;
  session_->send_message(std::move(om));
  if (mark) request_mark(current);
  pump();
  if (slots_.wants_next(open())) relay_.delivery_ready(*this);
}

void Delivery::pump() {
  if (pumping_) {
    repump_ = true;
    return;
  }
  pumping_ = true;
  // Everything this turn sends leaves in one write: the body's last piece,
  // the final dot and the next message's commands, handed over on Ready.
  const std::shared_ptr<UpstreamLink> link = link_closed_ ? nullptr : link_;
  if (link) link->cork();
  do {
    repump_ = false;
    for (auto& action : session_->take_actions()) handle(action);
  } while (repump_);
  pumping_ = false;
  if (link) link->uncork();
  if (!finished_ && link_ && !link_closed_) {
    auto d = session_->deadline();
    if (d.count() > 0) link_->set_read_deadline(d);
  }
  if ((finished_ || session_->finished()) && !reported_finished_) {
    reported_finished_ = true;
    // Every handed-over message gets a MessageDone; parking is a safety net.
    release_held("the connection ended before this message was sent", "delivery interrupted");
    relay_.delivery_finished(*this);
  }
}

void Delivery::handle(client::Action& action) {
  std::visit(
      [this](auto& a) {
        using T = std::decay_t<decltype(a)>;
        if constexpr (std::is_same_v<T, client::Send>) {
          if (link_ && !link_closed_) link_->send(a.bytes);
        } else if constexpr (std::is_same_v<T, client::StartTls>) {
          if (link_ && !link_closed_) link_->start_tls();
        } else if constexpr (std::is_same_v<T, client::Close>) {
          if (link_ && !link_closed_) link_->close();
          link_closed_ = true;
          finished_ = true;
        } else if constexpr (std::is_same_v<T, client::Ready>) {
          was_ready_ = true;
          // Its final dot is out: the next message may follow it.
          auto after = slots_.ready(a.unanswered);
          switch (after.next) {
            case DeliverySlots::Next::SendQueued:   // taken ahead: it follows at once (send_now asks for the next)
              send_now(std::move(*after.job));
              break;
            case DeliverySlots::Next::Quit:
              session_->quit();
              pump();   // (re-entered: its QUIT goes in this turn's write)
              break;
            case DeliverySlots::Next::AskForMore:
              relay_.delivery_ready(*this);
              break;
          }
        } else if constexpr (std::is_same_v<T, client::NeedBody>) {
          feed_body(a.id);
        } else if constexpr (std::is_same_v<T, client::MessageDone>) {
          if (auto job = slots_.done(a.report.id))   // its mark's late completion finds nothing
            relay_.message_done(*this, std::move(*job), std::move(a.report));
        } else if constexpr (std::is_same_v<T, client::SessionFailed>) {
          // The upstream refused our OAuth2 access token (535, or 334 with a
          // JSON error): the next connection refreshes it first.
          if (up_.cfg->auth == "oauth2" && a.failure.stage == client::Stage::Auth && a.failure.reply &&
              oauth2_fingerprint_)
            relay_.oauth2_rejected(up_.cfg->name, *oauth2_fingerprint_);
          // Dropped by our own shutdown: not the upstream's fault, nothing to suspend.
          if (!aborted_) relay_.session_failed(*this, a.failure);
        }
      },
      action);
}

// The body streams through a BodyPump (daemon/body_pump.h): one piece at a
// time, the next only when the link has drained, never the whole message;
// before_dot() runs between the last piece and the final dot.
void Delivery::feed_body(const std::string& id) {
  if (!body_) body_ = make_body_pump();
  std::string account = up_.cfg->from_header == "rewrite" ? routing::from_rewrite_address(*up_.cfg) : std::string();
  // A message of one piece was marked when it was taken (its commit
  // overlaps MAIL..354 and the read); before_dot waits for that mark. A
  // larger one is marked after its last piece (DeliverySlots).
  const auto& current = slots_.current();
  const bool small = current && current->msg.id == id && slots_.one_piece(*current);
  body_->start(id, std::move(account), small);
}

std::unique_ptr<BodyPump> Delivery::make_body_pump() {
  BodyPump::Io io;
  io.read = [this](std::string id, std::int64_t from, queue::BodyReader::Done done) {
    relay_.read_body(std::move(id), from, std::move(done));
  };
  io.chunk = [this](std::string_view bytes) {
    if (session_->stage() != client::Stage::Body) return false;
    session_->body_chunk(bytes);
    pump();
    return session_->stage() == client::Stage::Body;
  };
  io.end = [this] {
    session_->body_end();
    pump();
  };
  io.pending = [this]() -> std::size_t { return link_ && !link_closed_ ? link_->pending_write_bytes() : 0; };
  io.failed = [this](queue::BodyReader::Status status, std::string why) {
    // Deleted meanwhile (outboxctl delete): end the connection; the message
    // is gone, so there is nothing to report. A read error ends it too; the
    // message is retried like any broken connection.
    if (link_ && !link_closed_) link_->close();
    link_closed_ = true;
    session_->on_closed(status == queue::BodyReader::Status::Missing ? why : "spool read failed: " + why);
    pump();
  };
  auto body = std::make_unique<BodyPump>(std::move(io), UpstreamLink::kHighWater);
  body->before_dot = [this](std::function<void()> proceed) { before_dot(std::move(proceed)); };
  return body;
}

// The recipients become 'uncertain' in the spool (committed by the writer)
// before the final dot goes out; the dot goes only once that is committed
// and the body is out, so a crash or lost connection after it is known to be
// a possible duplicate (RFC 1047). If the write fails the dot is never sent:
// the connection ends and the message is retried as not sent (the outcome's
// write, queued after this one, puts the recipients back to pending).
void Delivery::request_mark(const Job& job) {
  const auto& m = job.msg;
  std::weak_ptr<bool> alive = relay_.alive_;
  auto token = token_;
  Relay* relay = &relay_;
  ++relay->store_ops_;   // stop() waits for it, like run_store()
  // The writer runs requests in order, so an outcome written for this message later (a refused RCPT, a
  // lost connection before the dot: "pending") lands after it.
  relay->store_run(
      [id = m.id, rcpts = m.recipients, upstream = up_.cfg->name](queue::Spool& s) {
        queue::DeliveryStore(s).mark_dot_sent(id, rcpts, upstream, Relay::now());
      },
      [this, relay, alive, token, id = m.id](bool ok, std::string err) {
        if (alive.expired()) return;
        --relay->store_ops_;
        if (!*token) guarded("dot", [&] { on_mark(id, ok, std::move(err)); });
        relay->maybe_stopped();
      });
}

void Delivery::on_mark(const std::string& id, bool ok, std::string err) {
  if (auto waiting = slots_.mark_done(id, ok, std::move(err)))
    dot_marked(id, waiting->mark.ok, std::move(waiting->mark.err), waiting->proceed);
}

void Delivery::before_dot(std::function<void()> proceed) {
  if (!slots_.current()) return;
  const Job& current = *slots_.current();
  const std::string id = current.msg.id;
  auto dot = slots_.before_dot(std::move(proceed));
  switch (dot.step) {
    case DeliverySlots::DotStep::None:
    case DeliverySlots::DotStep::Wait:
      return;
    case DeliverySlots::DotStep::AskMark:
      request_mark(current);   // a larger message: marked now, after its last piece
      return;
    case DeliverySlots::DotStep::Go:
      break;
  }
  // The mark was back before the body was out: the dot goes now.
  dot_marked(id, dot.mark.ok, std::move(dot.mark.err), dot.proceed);
}

void Delivery::dot_marked(const std::string& id, bool ok, std::string err, const std::function<void()>& proceed) {
  const auto& current = slots_.current();
  if (link_closed_ || !current || current->msg.id != id) return;   // the connection ended meanwhile
  if (ok) {
    proceed();
    return;
  }
  log::error(log::Line("spool_error").kv("id", id).kv("op", "mark dot sent").kv("error", err)
                 .kv("action", "final dot not sent; retried as not delivered"));
  if (link_) link_->close();
  link_closed_ = true;
  session_->on_closed("spool write failed before the final dot");
  pump();
}

}  // namespace outbox::daemon
