#include "daemon/relay.h"

#include <algorithm>
#include <cctype>
#include <type_traits>

#include "daemon/body_pump.h"
#include "daemon/logging.h"
#include "daemon/routing.h"
#include "daemon/secrets.h"
#include "daemon/upstream_link.h"
#include "daemon/upstream_settings.h"
#include "protocol/diagnosis.h"
#include "protocol/dsn.h"
#include "queue/retry_policy.h"

namespace outbox::daemon {

namespace client = protocol::client;

namespace {

constexpr std::size_t kMaxInMemory = 500;          // claimed messages waiting for a connection
constexpr std::size_t kClaimBatch = 100;
constexpr auto kPollInterval = std::chrono::milliseconds(1000);
constexpr std::int64_t kNoRouteRecheck = 300LL * 1000000;   // µs

std::int64_t now_us() {
  using namespace std::chrono;
  return duration_cast<microseconds>(system_clock::now().time_since_epoch()).count();
}

std::string seconds_text(std::int64_t us) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", static_cast<double>(us) / 1e6);
  return buf;
}

queue::RetryParams retry_params(const RetryConfig& r) {
  queue::RetryParams p;
  p.initial = r.initial;
  p.max = r.max;
  p.factor = r.factor;
  p.jitter = r.jitter;
  p.lifetime = r.lifetime;
  return p;
}

std::string dsn_of(const client::RecipientResult& r) {
  const auto& s = r.status;
  return std::to_string(s.cls) + "." + std::to_string(s.subject) + "." + std::to_string(s.detail);
}

// A set-up failure (connect, TLS, greeting, EHLO, STARTTLS, AUTH) as the
// result of a recipient that was waiting for the connection: temporary, of
// scope upstream, with the status a reply-less failure deserves (RFC 3463).
client::RecipientResult setup_result(const std::string& address, const client::SessionFailure& f) {
  client::RecipientResult r;
  r.address = address;
  r.outcome = client::Outcome::Temporary;
  r.scope = client::Scope::Upstream;
  r.stage = f.stage;
  r.reply = f.reply;
  r.detail = f.detail;
  if (f.reply) {
    r.status = f.reply->status();
    if (r.status.cls != 4 && r.status.cls != 5) r.status = protocol::EnhancedStatus{4, 0, 0};
    r.status.cls = 4;   // an upstream failure never bounces (SPEC "Relay")
  } else if (f.detail.rfind("timeout", 0) == 0 || f.detail.rfind("connection closed", 0) == 0) {
    r.status = protocol::EnhancedStatus{4, 4, 2};   // bad connection
  } else if (f.stage == client::Stage::Connect) {
    r.status = protocol::EnhancedStatus{4, 4, 1};   // no answer from host
  } else if (f.stage == client::Stage::Tls) {
    r.status = protocol::EnhancedStatus{4, 7, 5};   // cryptographic failure
  } else if (f.stage == client::Stage::StartTls) {
    r.status = protocol::EnhancedStatus{4, 7, 4};   // security features not supported
  } else {
    r.status = protocol::EnhancedStatus{4, 7, 0};
  }
  return r;
}

// from_header = "rewrite": the address the provider accepts in From: (the
// envelope_from, else a username that is an address).
std::string rewrite_address(const UpstreamConfig& u) {
  if (!u.envelope_from.empty()) return u.envelope_from;
  if (u.username.find('@') != std::string::npos) return u.username;
  return {};
}

std::string duration_words(std::chrono::seconds s) {
  auto n = s.count();
  if (n % 86400 == 0) return std::to_string(n / 86400) + (n == 86400 ? " day" : " days");
  if (n % 3600 == 0) return std::to_string(n / 3600) + (n == 3600 ? " hour" : " hours");
  if (n % 60 == 0) return std::to_string(n / 60) + (n == 60 ? " minute" : " minutes");
  return std::to_string(n) + " seconds";
}

}  // namespace

// --- per-upstream state ----------------------------------------------------------

struct Relay::Upstream {
  const UpstreamConfig* cfg = nullptr;
  std::shared_ptr<TlsContext> tls;
  std::string password;
  std::string setup_error;            // secret or CA problem: nothing can be sent
  int failures = 0;                   // consecutive upstream-scope failures
  std::int64_t retry_at = 0;          // suspended until (µs)
  std::string last_failure;
  std::deque<Job> pending;
  std::size_t connections = 0;
  std::vector<RateLimit> rates;
  std::deque<std::int64_t> sent_times;   // message starts, for the rate ceilings
};

// --- one connection ---------------------------------------------------------------

class Relay::Delivery {
 public:
  Delivery(Relay& relay, Upstream& up)
      : relay_(relay), up_(up), session_(std::make_unique<client::ClientSession>(make_config(relay, up))) {}
  Upstream& upstream_ref() { return up_; }

  static client::ClientConfig make_config(Relay& relay, Upstream& up) {
    client::ClientConfig c = upstream::client_config(*relay.config_, *up.cfg);
    c.secret = up.password;
    return c;
  }

  void start() {
    const UpstreamConfig& u = *up_.cfg;
    if (secrets::uses_oauth2(u)) {
      // The token command may take seconds: run it on the thread pool.
      struct Work {
        uv_work_t req;
        Delivery* self;
        std::weak_ptr<bool> alive;
        UpstreamConfig cfg;
        std::string token, error;
      };
      auto* w = new Work{{}, this, relay_.alive_, u, {}, {}};
      w->req.data = w;
      uv_queue_work(relay_.loop_, &w->req,
          [](uv_work_t* r) {
            auto* w = static_cast<Work*>(r->data);
            try {
              w->token = secrets::fetch_oauth2_token(w->cfg);
            } catch (const std::exception& e) {
              w->error = e.what();
            }
          },
          [](uv_work_t* r, int) {
            std::unique_ptr<Work> w(static_cast<Work*>(r->data));
            if (w->alive.expired()) return;
            if (!w->error.empty()) {
              w->self->session_->on_connect_failed(w->error);
              w->self->pump();
              return;
            }
            w->self->set_secret(std::move(w->token));
          });
      return;
    }
    connect();
  }

  void set_secret(std::string token) {
    auto cfg = make_config(relay_, up_);
    cfg.secret = std::move(token);
    session_ = std::make_unique<client::ClientSession>(std::move(cfg));
    connect();
  }

  void connect() {
    UpstreamLink::Handler h;
    h.on_ready = [this] { session_->on_connected(); pump(); };
    h.on_data = [this](std::string_view b) { session_->on_bytes(b); pump(); };
    h.on_tls_established = [this] { session_->on_tls_established(); pump(); };
    h.on_drain = [this] { if (body_) body_->on_drain(); };
    h.on_failure = [this](std::string stage, std::string error) {
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

  void abort() {
    if (link_ && !link_closed_) link_->close();
    link_closed_ = true;
    aborted_ = true;
    // The session still reports the message in flight (a drop after the
    // final dot is a possible duplicate, RFC 1047), then finishes.
    session_->on_closed("shutting down");
  }

  bool busy() const { return current_.has_value(); }
  void quit_when_idle() {
    if (session_->ready()) {
      session_->quit();
      pump();
    }
  }

  void pump() {
    if (pumping_) {
      repump_ = true;
      return;
    }
    pumping_ = true;
    do {
      repump_ = false;
      for (auto& action : session_->take_actions()) handle(action);
    } while (repump_);
    pumping_ = false;
    if (!finished_ && link_ && !link_closed_) {
      auto d = session_->deadline();
      if (d.count() > 0) link_->set_read_deadline(d);
    }
    if ((finished_ || session_->finished()) && !reported_finished_) {
      reported_finished_ = true;
      if (current_) {
        // Every handed-over message gets a MessageDone; this is a safety net.
        relay_.park(current_->msg.id, now_us(), "delivery interrupted");
        relay_.in_flight_.erase(current_->msg.id);
        current_.reset();
      }
      relay_.delivery_finished(this);
    }
  }

 private:
  void handle(client::Action& action) {
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
            next_message();
          } else if constexpr (std::is_same_v<T, client::NeedBody>) {
            feed_body(a.id);
          } else if constexpr (std::is_same_v<T, client::MessageDone>) {
            if (current_) {
              Job job = std::move(*current_);
              current_.reset();
              relay_.message_done(up_, std::move(job), std::move(a.report), link_ ? link_->peer_address() : "");
            }
          } else if constexpr (std::is_same_v<T, client::SessionFailed>) {
            // Dropped by our own shutdown: not the upstream's fault, nothing to suspend.
            if (!aborted_) relay_.session_failed(up_, a.failure);
          }
        },
        action);
  }

  void next_message() {
    if (relay_.stopping_ || up_.pending.empty()) {
      session_->quit();
      repump_ = true;
      return;
    }
    std::int64_t free_at = 0;
    if (!relay_.rate_allows(up_, now_us(), &free_at)) {
      // Over a ceiling: the waiting messages go back to the spool until then.
      while (!up_.pending.empty()) {
        Job j = std::move(up_.pending.front());
        up_.pending.pop_front();
        relay_.park(j.msg.id, free_at, "upstream \"" + up_.cfg->name + "\" rate limit reached");
      }
      session_->quit();
      repump_ = true;
      return;
    }
    current_ = std::move(up_.pending.front());
    up_.pending.pop_front();
    up_.sent_times.push_back(now_us());
    const auto& m = current_->msg;
    client::OutgoingMessage om;
    om.id = m.id;
    om.sender = routing::envelope_sender_for(*up_.cfg, m.sender);
    om.recipients = m.recipients;
    om.size = m.size;
    om.smtputf8 = m.smtputf8;
    om.body_8bit = m.body_8bit;
    session_->send_message(std::move(om));
    repump_ = true;
  }

  // The body streams through a BodyPump (daemon/body_pump.h): one piece at
  // a time, the next only when the link has drained, never the whole message.
  void feed_body(const std::string& id) {
    if (!body_) body_ = make_body_pump();
    std::string account = up_.cfg->from_header == "rewrite" ? rewrite_address(*up_.cfg) : std::string();
    body_->start(id, std::move(account));
  }

  std::unique_ptr<BodyPump> make_body_pump() {
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
    return std::make_unique<BodyPump>(std::move(io), UpstreamLink::kHighWater);
  }

 public:
  ~Delivery() { *token_ = true; }

 private:
  Relay& relay_;
  Upstream& up_;
  std::unique_ptr<client::ClientSession> session_;
  std::shared_ptr<UpstreamLink> link_;
  std::unique_ptr<BodyPump> body_;
  std::optional<Job> current_;
  std::shared_ptr<bool> token_ = std::make_shared<bool>(false);   // true once destroyed
  bool link_closed_ = false;
  bool aborted_ = false;
  bool finished_ = false;
  bool reported_finished_ = false;
  bool pumping_ = false;
  bool repump_ = false;
};

// --- scheduler ---------------------------------------------------------------------

Relay::Relay(uv_loop_t* loop, const Config& config, queue::StoreWorker& store, std::function<std::string()> next_id)
    : loop_(loop), config_(&config), store_(store), next_id_(std::move(next_id)), rng_(std::random_device{}()) {
  build_upstreams();
  timer_ = new uv_timer_t;
  uv_timer_init(loop_, timer_);
  timer_->data = this;
}

void Relay::build_upstreams() {
  for (const auto& u : config_->upstreams) {
    auto up = std::make_unique<Upstream>();
    up->cfg = &u;
    try {
      if (u.tls != TlsMode::None) up->tls = TlsContext::client(u.verify, u.ca_file);
      up->password = secrets::load_password(u);
    } catch (const std::exception& e) {
      up->setup_error = e.what();
      log::error(log::Line("upstream_error").kv("upstream", u.name).kv("error", e.what()));
    }
    for (const auto& r : u.rate)
      if (auto rl = parse_rate_limit(r)) up->rates.push_back(*rl);
    upstreams_[u.name] = std::move(up);
  }
}

void Relay::reload(const Config& config) {
  std::int64_t now = now_us();
  for (auto& [name, up] : upstreams_) {
    (void)name;
    while (!up->pending.empty()) {
      Job j = std::move(up->pending.front());
      up->pending.pop_front();
      park(j.msg.id, now, {});
    }
    retired_upstreams_.push_back(std::move(up));   // deliveries in flight still use it
  }
  upstreams_.clear();
  config_ = &config;
  build_upstreams();
  no_route_warned_.clear();
  run_store([now](queue::Spool& s) { queue::DeliveryStore(s).release_waiting(now); }, nullptr);
  kick();
}

Relay::~Relay() {
  *alive_ = false;
  alive_.reset();
  uv_close(reinterpret_cast<uv_handle_t*>(timer_), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
}

double Relay::random01() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng_); }

Relay::Upstream& Relay::upstream(const UpstreamConfig* cfg) { return *upstreams_.at(cfg->name); }

std::string Relay::route_label(const Upstream& up) const {
  return up.cfg->name + "[" + up.cfg->host + ":" + std::to_string(up.cfg->port) + "]";
}

void Relay::start() {
  std::weak_ptr<bool> alive = alive_;
  auto recovered = std::make_shared<int>(0);
  run_store(
      [recovered](queue::Spool& s) { *recovered = queue::DeliveryStore(s).recover_active(now_us()); },
      [this, alive, recovered](bool ok, std::string err) {
        if (alive.expired()) return;
        if (!ok) log::error(log::Line("relay_error").kv("op", "recover").kv("error", err));
        if (*recovered > 0) log::info(log::Line("recovered").kv("interrupted_deliveries", *recovered));
        schedule_tick(std::chrono::milliseconds(0));
      });
}

void Relay::kick() {
  if (stopping_) return;
  if (tick_running_) {
    kicked_ = true;
    return;
  }
  // Coalesce: under a burst of submissions one claim every few milliseconds
  // takes them all, instead of one spool query per accepted message.
  if (uv_is_active(reinterpret_cast<uv_handle_t*>(timer_)) && uv_timer_get_due_in(timer_) <= 20) return;
  schedule_tick(std::chrono::milliseconds(10));
}

void Relay::schedule_tick(std::chrono::milliseconds after) {
  if (stopping_) return;
  uv_timer_start(timer_, &Relay::on_timer, static_cast<std::uint64_t>(after.count()), 0);
}

void Relay::on_timer(uv_timer_t* t) { static_cast<Relay*>(t->data)->tick(); }

void Relay::tick() {
  if (stopping_ || tick_running_) return;
  graveyard_.clear();
  if (in_flight_.size() >= kMaxInMemory) {
    schedule_tick(kPollInterval);
    return;
  }
  tick_running_ = true;
  kicked_ = false;
  std::size_t limit = std::min(kClaimBatch, kMaxInMemory - in_flight_.size());
  auto due = std::make_shared<std::vector<queue::DueMessage>>();
  auto next = std::make_shared<std::optional<std::int64_t>>();
  std::weak_ptr<bool> alive = alive_;
  auto no_route = std::make_shared<std::vector<std::string>>();
  const Config* cfg = config_;
  run_store(
      [due, next, limit, no_route, cfg](queue::Spool& s) {
        queue::DeliveryStore ds(s);
        std::int64_t now = now_us();
        auto routable = [cfg](const queue::DueMessage& m) {
          if (!routing::upstreams_for(*cfg, m.sender).empty()) return true;
          return m.sender.empty() && !m.recipients.empty() &&
                 !routing::upstreams_for(*cfg, m.recipients.front()).empty();
        };
        *due = ds.claim_due(now, limit, routable, now + kNoRouteRecheck, no_route.get());
        *next = ds.next_due();
      },
      [this, alive, due, next, no_route](bool ok, std::string err) {
        if (alive.expired()) return;
        tick_running_ = false;
        if (!ok) {
          log::error(log::Line("relay_error").kv("op", "claim").kv("error", err));
          schedule_tick(kPollInterval);
          return;
        }
        for (const auto& id : *no_route)
          if (no_route_warned_.insert(id).second)
            log::warn(log::Line("no_route").kv("id", id)
                          .kv("hint", "no [[route]] matches its sender; add one (sender = \"*\" for all), then reload"));
        bool full = !due->empty();
        dispatch(std::move(*due));
        if (stopping_) return;
        auto wait = kPollInterval;
        if (kicked_ || full) {
          wait = std::chrono::milliseconds(0);
        } else if (*next) {
          auto ms = std::max<std::int64_t>(0, (**next - now_us()) / 1000);
          wait = std::min(wait, std::chrono::milliseconds(ms));
        }
        schedule_tick(wait);
      });
}

void Relay::dispatch(std::vector<queue::DueMessage> due) {
  std::int64_t now = now_us();
  for (auto& m : due) {
    if (stopping_) {
      park(m.id, now, {});
      continue;
    }
    Job job;
    job.route = routing::upstreams_for(*config_, m.sender);
    // A bounce (<>) that no route takes goes the way its recipient (the
    // original sender) would send (SPEC: "a bounce with no route uses its
    // message's route").
    if (job.route.empty() && m.sender.empty() && !m.recipients.empty())
      job.route = routing::upstreams_for(*config_, m.recipients.front());
    if (job.route.empty()) {
      if (no_route_warned_.insert(m.id).second)
        log::warn(log::Line("no_route").kv("id", m.id).kv("from", m.sender.empty() ? "<>" : m.sender)
                      .kv("hint", "add a [[route]] whose sender pattern matches, then reload"));
      park(m.id, now + kNoRouteRecheck, "no route");
      continue;
    }
    in_flight_.insert(m.id);
    job.msg = std::move(m);
    assign(std::move(job), now);
  }
}

void Relay::assign(Job job, std::int64_t now) {
  // The first upstream of the route that is not suspended takes it.
  std::int64_t earliest = 0;
  std::string why;
  Upstream* blamed = nullptr;
  bool misconfigured = false;
  for (std::size_t i = job.route_index; i < job.route.size(); ++i) {
    Upstream& up = upstream(job.route[i]);
    if (!up.setup_error.empty()) {
      // Fixed only by a restart, which reads the files again: look again
      // at the retry pace, not hours later.
      why = up.setup_error;
      blamed = &up;
      misconfigured = true;
      continue;
    }
    if (up.retry_at > now) {
      if (earliest == 0 || up.retry_at < earliest) earliest = up.retry_at;
      why = "upstream \"" + up.cfg->name + "\" suspended: " + up.last_failure;
      blamed = &up;
      continue;
    }
    job.route_index = i;
    up.pending.push_back(std::move(job));
    start_connections(up);
    return;
  }
  const std::int64_t deadline = job.msg.created + config_->retry.lifetime.count() * 1000000;
  if (blamed && now >= deadline) {
    // No upstream of its route will take it within its lifetime: it expires
    // now, like any message whose upstream keeps failing (SPEC "[retry]").
    client::SessionFailure f;
    f.detail = why;
    client::MessageReport report;
    report.id = job.msg.id;
    for (const auto& a : job.msg.recipients) {
      report.recipients.push_back(setup_result(a, f));
      if (misconfigured) report.recipients.back().status = protocol::EnhancedStatus{4, 3, 5};   // RFC 3463: system incorrectly configured
    }
    settle(*blamed, std::move(job), std::move(report), "", true, now);
    return;
  }
  if (misconfigured) {
    std::int64_t soon = now + config_->retry.initial.count() * 1000000;
    earliest = earliest == 0 ? soon : std::min(earliest, soon);
  }
  in_flight_.erase(job.msg.id);
  park(job.msg.id, std::min<std::int64_t>(earliest == 0 ? now + 60LL * 1000000 : earliest, std::max(now, deadline)), why);
}

void Relay::start_connections(Upstream& up) {
  while (!stopping_ && up.connections < up.cfg->max_connections && up.pending.size() > up.connections) {
    ++up.connections;
    auto d = std::make_unique<Delivery>(*this, up);
    Delivery* raw = d.get();
    deliveries_[raw] = std::move(d);
    raw->start();
  }
}

bool Relay::rate_allows(Upstream& up, std::int64_t now, std::int64_t* free_at) {
  bool ok = true;
  std::int64_t longest = 0;
  for (const auto& r : up.rates) longest = std::max<std::int64_t>(longest, r.per.count() * 1000000);
  while (!up.sent_times.empty() && up.sent_times.front() < now - longest) up.sent_times.pop_front();
  for (const auto& r : up.rates) {
    std::int64_t window = r.per.count() * 1000000;
    std::size_t n = 0;
    std::int64_t oldest = 0;
    for (auto it = up.sent_times.rbegin(); it != up.sent_times.rend() && *it >= now - window; ++it) {
      ++n;
      oldest = *it;
    }
    if (n >= r.count) {
      ok = false;
      *free_at = std::max(*free_at, oldest + window);
    }
  }
  return ok;
}

void Relay::park(const std::string& id, std::int64_t next, std::string last_error) {
  in_flight_.erase(id);
  std::weak_ptr<bool> alive = alive_;
  run_store(
      [id, next, last_error](queue::Spool& s) {
        queue::DeliveryStore(s).unclaim(id, next, last_error);
      },
      [id](bool ok, std::string err) {
        if (!ok) log::error(log::Line("relay_error").kv("id", id).kv("op", "unclaim").kv("error", err));
      });
}

// No delivery is left: join the reader's thread and close its uv_async, which
// would otherwise keep the loop running after the relay stopped.
void Relay::release_body_reader() {
  body_reader_.reset();
  if (body_poster_) body_poster_->close();
}

void Relay::read_body(std::string id, std::int64_t from_seq, queue::BodyReader::Done done) {
  if (!body_reader_) {
    // A BodyReader of its own (thread and read-only connection), answering
    // through a LoopPoster of its own: the loop never waits for the disk.
    body_poster_ = std::make_unique<LoopPoster>(loop_);
    body_reader_ = std::make_unique<queue::BodyReader>(
        config_->spool_path, [p = body_poster_.get()](std::function<void()> fn) { p->post(std::move(fn)); });
  }
  std::weak_ptr<bool> alive = alive_;
  body_reader_->read(std::move(id), from_seq, [alive, done = std::move(done)](queue::BodyReader::Piece p) {
    if (alive.expired()) return;
    done(std::move(p));
  });
}

void Relay::message_done(Upstream& up, Job job, client::MessageReport report, const std::string& peer) {
  std::int64_t now = now_us();
  const bool upstream_fault = !report.all_delivered() && report.scope() == client::Scope::Upstream;
  if (upstream_fault) {
    const client::RecipientResult* f = report.first_failure();
    suspend(up, now, f && f->reply ? client::suggested_backoff(*f->reply) : std::chrono::seconds{0},
            f ? f->text() : "failed");
    log::warn(log::Line("upstream_suspended").kv("upstream", up.cfg->name).kv("until_s", seconds_text(up.retry_at - now))
                  .kv("reply", up.last_failure));
  } else {
    up.failures = 0;
  }
  settle(up, std::move(job), std::move(report), peer, upstream_fault, now);
}

std::int64_t Relay::route_available_at(const Job& job, std::int64_t now) {
  std::int64_t best = 0;
  for (const auto* cfg : job.route) {
    const Upstream& u = upstream(cfg);
    if (!u.setup_error.empty()) continue;
    std::int64_t at = std::max(now, u.retry_at);
    if (best == 0 || at < best) best = at;
  }
  return best == 0 ? now + 3600LL * 1000000 : best;
}

void Relay::suspend(Upstream& up, std::int64_t now, std::chrono::seconds floor, std::string why) {
  ++up.failures;
  up.retry_at = queue::upstream_retry_at(retry_params(config_->retry), up.failures, now, random01(), floor);
  up.last_failure = std::move(why);
}

void Relay::settle(Upstream& up, Job job, client::MessageReport report, const std::string& peer, bool upstream_fault,
                   std::int64_t now) {
  const auto& m = job.msg;
  auto params = retry_params(config_->retry);

  queue::DeliveryReport rep;
  rep.id = m.id;
  rep.upstream = up.cfg->name;
  rep.time = now;
  rep.count_attempt = !upstream_fault;
  queue::RetryDecision decision = queue::next_attempt(params, m.attempts + 1, m.created, now, random01());
  bool expired = !upstream_fault && decision.expired();
  // After an upstream failure the message waits for its route, not for this
  // upstream: another upstream of the route that is not suspended takes it
  // at once (failover), through the spool like any due message.
  const std::int64_t route_at = upstream_fault ? route_available_at(job, now) : 0;
  const bool failover = upstream_fault && route_at <= now;
  if (upstream_fault) {
    // The upstream, not the message, failed: wait for the upstream, but do
    // not let that outlive the message's lifetime.
    std::int64_t deadline = m.created + params.lifetime.count() * 1000000;
    if (now >= deadline) expired = true;
  }
  struct Line {
    std::string address, event, dsn, reply;
  };
  std::vector<Line> lines;
  std::vector<protocol::DsnRecipient> dsn_rcpts;
  std::string last_error;
  for (const auto& r : report.recipients) {
    queue::RecipientOutcome o;
    o.address = r.address;
    o.reply = r.text();
    if (r.outcome == client::Outcome::Delivered) {
      o.result = queue::RecipientResult::Sent;
      lines.push_back({r.address, "delivered", dsn_of(r), o.reply});
    } else if (r.outcome == client::Outcome::Permanent) {
      o.result = queue::RecipientResult::Failed;
      lines.push_back({r.address, "bounced", dsn_of(r), o.reply});
      dsn_rcpts.push_back(protocol::dsn_recipient(r, up.cfg->host));
      last_error = o.reply;
    } else if (expired) {
      o.result = queue::RecipientResult::Failed;
      o.reply = "expired after " + duration_words(params.lifetime) + "; last reply: " + r.text();
      lines.push_back({r.address, "expired", "4.4.7", o.reply});
      auto d = protocol::dsn_recipient(r, up.cfg->host);
      // dsn_recipient() reads a temporary result as "delayed"; expiry is
      // final (RFC 3464 §2.3.3: Action failed, with 5.4.7).
      d.action = protocol::DsnRecipient::Action::Failed;
      d.expired = true;
      d.status = protocol::EnhancedStatus{5, 4, 7};   // RFC 3463: delivery time expired
      d.last_attempt = now;
      dsn_rcpts.push_back(d);
      last_error = o.reply;
    } else {
      o.result = queue::RecipientResult::Deferred;
      o.next_attempt = upstream_fault ? route_at : decision.at;
      lines.push_back({r.address, "deferred", dsn_of(r), o.reply});
      if (last_error.empty()) last_error = o.reply;
    }
    rep.recipients.push_back(std::move(o));
  }
  std::string hint;
  if (const auto* f = report.first_failure(); f && f->outcome != client::Outcome::Delivered)
    hint = protocol::diagnose(upstream::summary(*up.cfg), *f).hint;
  // outboxctl queue/show print last_error: the hint is what the operator needs.
  rep.last_error = last_error.empty() || hint.empty() ? last_error : last_error + " (" + hint + ")";
  rep.outcome = report.all_delivered() ? "delivered"
                : expired             ? "expired"
                : !dsn_rcpts.empty()  ? "bounced"
                : report.possible_duplicate ? "possible_duplicate"
                                            : "deferred";

  // The DSN goes into the spool in the same transaction as the outcome: a
  // crash cannot lose it or make it twice. Its id is drawn here (the id
  // generator belongs to the loop thread), and only when a DSN may be made.
  std::string dsn_id = dsn_rcpts.empty() ? std::string() : next_id_();
  auto after = std::make_shared<queue::MessageAfter>();
  auto dsn_made = std::make_shared<bool>(false);
  const bool bounces = config_->bounces;
  const std::string host = config_->host_name;
  const std::string lifetime_text = duration_words(params.lifetime);
  run_store(
      [rep, after, dsn_made, dsn_rcpts, m, dsn_id, bounces, host, now, lifetime_text](queue::Spool& s) {
        queue::DeliveryStore ds(s);
        *after = ds.apply(rep);
        if (!after->exists || after->newly_failed.empty() || dsn_id.empty()) return;
        // One DSN per report that failed recipients, naming only those: a
        // recipient turns failed once (apply() changes only pending ones), in
        // this same transaction, so none is reported twice, and one that
        // fails later (expiry after an earlier 550) is still reported.
        if (!protocol::should_bounce(m.sender, bounces)) return;
        protocol::DsnInput in;
        in.kind = protocol::DsnInput::Kind::Failure;
        in.reporting_host = host;
        in.queue_id = m.id;
        in.original_sender = m.sender;
        in.arrival = m.created;
        in.date = now;
        in.message_id = "<" + dsn_id + "@" + host + ">";
        for (const auto& d : dsn_rcpts)
          if (std::find(after->newly_failed.begin(), after->newly_failed.end(), d.address) != after->newly_failed.end())
            in.recipients.push_back(d);
        if (in.recipients.empty()) return;
        in.original_headers = ds.headers(m.id);
        in.original_smtputf8 = m.smtputf8;
        in.lifetime_text = lifetime_text;
        auto dsn = protocol::build_dsn(in);
        queue::NewMessage nm;
        nm.id = dsn_id;
        nm.sender = "";
        nm.recipients = {m.sender};
        nm.client = "local";
        nm.helo = host;
        nm.smtputf8 = dsn.smtputf8;
        nm.body_8bit = dsn.body_8bit;
        nm.created = now;
        ds.enqueue_local(nm, dsn.bytes, now);
        ds.mark_bounce_sent(m.id, dsn_id);
        *dsn_made = true;
      },
      [this, alive = std::weak_ptr<bool>(alive_), lines, m, rep, after, dsn_made, dsn_id, hint, peer,
       relay = route_label(up), possible_dup = report.possible_duplicate, now, failover](bool ok, std::string err) {
        if (alive.expired()) return;
        in_flight_.erase(m.id);
        if (!ok) {
          // The outcome is not on disk: the message stays active and is
          // retried after recovery; say so loudly.
          log::error(log::Line("spool_error").kv("id", m.id).kv("op", "delivery outcome").kv("error", err));
          return;
        }
        std::int64_t delay = now - m.created;
        for (const auto& l : lines) {
          log::Line line(l.event);
          line.kv("id", m.id).kv("from", m.sender.empty() ? "<>" : m.sender).kv("to", l.address).kv("relay", relay)
              .kv("delay", seconds_text(delay)).kv("attempt", after->attempts).kv("dsn", l.dsn).kv("reply", l.reply);
          if (possible_dup) line.kv("possible_duplicate", "yes");
          if (l.event == "deferred" || l.event == "bounced") {
            if (!hint.empty()) line.kv("hint", hint);
          }
          if (l.event == "delivered") log::info(line);
          else log::warn(line);
        }
        if (*dsn_made) {
          log::info(log::Line("bounce_queued").kv("id", dsn_id).kv("original", m.id).kv("to", m.sender));
          kick();
        }
        if (failover && after->exists && after->state == queue::kDeferred) {
          log::info(log::Line("failover").kv("id", m.id).kv("from_upstream", rep.upstream));
          kick();
        }
        if (!after->exists) log::info(log::Line("delivery_dropped").kv("id", m.id).kv("reason", "deleted during delivery"));
      });
}

void Relay::session_failed(Upstream& up, const client::SessionFailure& failure) {
  std::int64_t now = now_us();
  suspend(up, now, failure.reply ? client::suggested_backoff(*failure.reply) : std::chrono::seconds{0},
          failure.text());
  auto diag = protocol::diagnose(upstream::summary(*up.cfg), failure);
  log::Line l("upstream_failed");
  l.kv("upstream", up.cfg->name).kv("relay", route_label(up)).kv("stage", client::stage_name(failure.stage))
      .kv("error", failure.text()).kv("retry_in_s", seconds_text(up.retry_at - now));
  if (!diag.hint.empty()) l.kv("hint", diag.hint);
  // A refused login is the operator's to fix: say it loudly (SPEC: never bounce for it).
  if (failure.stage == client::Stage::Auth) log::error(l); else log::warn(l);

  // The messages waiting for this upstream try the next one of their route,
  // or wait (or expire: an upstream that stays down must not keep a message
  // past retry.lifetime), with the reason recorded for `outboxctl show`.
  std::deque<Job> waiting;
  waiting.swap(up.pending);
  for (auto& job : waiting) {
    if (job.route_index + 1 < job.route.size()) {
      ++job.route_index;
      log::info(log::Line("failover").kv("id", job.msg.id).kv("from_upstream", up.cfg->name)
                    .kv("to_upstream", job.route[job.route_index]->name));
      assign(std::move(job), now);
      continue;
    }
    client::MessageReport report;
    report.id = job.msg.id;
    for (const auto& a : job.msg.recipients) report.recipients.push_back(setup_result(a, failure));
    settle(up, std::move(job), std::move(report), "", true, now);
  }
}

void Relay::delivery_finished(Delivery* d) {
  auto it = deliveries_.find(d);
  if (it == deliveries_.end()) return;
  // Find the upstream whose connection this was.
  for (auto& [name, up] : upstreams_) {
    (void)name;
    if (&it->second->upstream_ref() == up.get()) {
      if (up->connections > 0) --up->connections;
      if (!up->pending.empty() && !stopping_) {
        if (std::int64_t now = now_us(); up->retry_at > now) {
          // Suspended meanwhile: the rest goes to the next upstream of its
          // route, or waits in the spool.
          std::deque<Job> waiting;
          waiting.swap(up->pending);
          for (auto& j : waiting) assign(std::move(j), now);
        } else {
          start_connections(*up);
        }
      }
      break;
    }
  }
  graveyard_.push_back(std::move(it->second));   // freed at the next tick, off this call stack
  deliveries_.erase(it);
  if (stopping_) {
    maybe_stopped();
  } else {
    schedule_tick(std::chrono::milliseconds(10));
  }
}

void Relay::run_store(std::function<void(queue::Spool&)> work, std::function<void(bool, std::string)> done) {
  ++store_ops_;
  store_.run(std::move(work), [this, alive = std::weak_ptr<bool>(alive_), done = std::move(done)](bool ok, std::string err) {
    if (alive.expired()) return;
    --store_ops_;
    if (done) done(ok, std::move(err));
    maybe_stopped();
  });
}

void Relay::maybe_stopped() {
  if (!stopping_ || !on_stopped_ || !deliveries_.empty() || store_ops_ > 0 || tick_running_) return;
  release_body_reader();
  auto cb = std::move(on_stopped_);
  on_stopped_ = nullptr;
  cb();
}

void Relay::stop(std::function<void()> on_stopped) {
  if (stopping_) return;
  stopping_ = true;
  uv_timer_stop(timer_);
  for (auto& [name, up] : upstreams_) {
    (void)name;
    while (!up->pending.empty()) {
      Job j = std::move(up->pending.front());
      up->pending.pop_front();
      in_flight_.erase(j.msg.id);
      std::string id = j.msg.id;
      run_store([id](queue::Spool& s) { queue::DeliveryStore(s).unclaim(id, now_us()); }, nullptr);
    }
  }
  on_stopped_ = std::move(on_stopped);
  std::vector<Delivery*> idle;
  for (auto& [d, owned] : deliveries_) {
    (void)owned;
    idle.push_back(d);
  }
  for (auto* d : idle)
    if (deliveries_.count(d)) d->quit_when_idle();
  maybe_stopped();
}

void Relay::abort() {
  std::vector<Delivery*> all;
  for (auto& [d, owned] : deliveries_) {
    (void)owned;
    all.push_back(d);
  }
  for (auto* d : all) {
    if (!deliveries_.count(d)) continue;
    d->abort();
    d->pump();
  }
}

}  // namespace outbox::daemon
