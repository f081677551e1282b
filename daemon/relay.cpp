#include "daemon/relay.h"

#include <unistd.h>

#include <algorithm>
#include <type_traits>

#include "daemon/logging.h"
#include "daemon/maildir_carrier.h"
#include "daemon/oauth2/token_store.h"
#include "daemon/outcome_report.h"
#include "daemon/relay_guard.h"
#include "daemon/routing.h"
#include "daemon/scheduler_setup.h"
#include "daemon/settle.h"
#include "daemon/upstream_link.h"
#include "daemon/upstream_settings.h"
#include "protocol/diagnosis.h"
#include "protocol/dsn.h"
#include "protocol/reply_rules.h"
#include "queue/retry_policy.h"

namespace outbox::daemon {

namespace client = protocol::client;

namespace {

constexpr std::uint64_t kOperatorPollMs = 1000;     // SPEC: operator actions noticed within a second
// Active messages that are not in flight (a delivery whose end was lost, an
// outcome abandoned) are looked for this often while running, not only at start.
constexpr std::int64_t kRecoveryInterval = 60LL * 1000000;   // µs

std::int64_t now_us() {
  using namespace std::chrono;
  return duration_cast<microseconds>(system_clock::now().time_since_epoch()).count();
}

void log_recovery(const queue::Recovery& r, bool running) {
  for (const auto& e : recovery_lines(r, running)) log::emit(e.level, e.line);
}

const char* wait_name(queue::WaitReason r) {
  switch (r) {
    case queue::WaitReason::None: return "none";
    case queue::WaitReason::NoRoute: return "no_route";
    case queue::WaitReason::UpstreamSuspended: return "upstream_suspended";
    case queue::WaitReason::RateLimited: return "rate_limited";
    case queue::WaitReason::UpstreamUnusable: return "upstream_unusable";
  }
  return "unknown";
}

}  // namespace

// --- setup -------------------------------------------------------------------------

Relay::Relay(uv_loop_t* loop, std::shared_ptr<const Config> config, queue::StoreWorker& store,
             std::function<std::string()> next_id, queue::StoreWorker::Poster store_via)
    : loop_(loop), gen_(Generation::make(config)), spool_path_(config->spool_path), store_(store),
      store_via_(std::move(store_via)),
      next_id_(std::move(next_id)), rng_(std::random_device{}()),
      sched_(queue::SchedulerParams{}, [this] { return random01(); }),
      tokens_(loop, oauth2::store::dir_for_spool(spool_path_), [this] {
        std::vector<const UpstreamConfig*> ups;
        for (const auto& [name, rt] : gen_->upstreams) ups.push_back(rt.cfg);
        return ups;
      }) {
  sched_.set_params(scheduler_params(*gen_->config));
  sched_.set_upstreams(upstream_specs(), now_us());
  timer_ = new uv_timer_t;
  uv_timer_init(loop_, timer_);
  timer_->data = this;
  op_timer_ = new uv_timer_t;
  uv_timer_init(loop_, op_timer_);
  op_timer_->data = this;
  recorder_timer_ = new uv_timer_t;
  uv_timer_init(loop_, recorder_timer_);
  recorder_timer_->data = this;
  recorder_ = std::make_unique<OutcomeRecorder>(
      [this](OutcomeRecorder::Work work, OutcomeRecorder::Done done) {
        // Counted like run_store(), so stop() waits for a write under way.
        ++store_ops_;
        store_run(std::move(work), [this, alive = std::weak_ptr<bool>(alive_), done = std::move(done)](
                                              bool ok, std::string err) {
          if (alive.expired()) return;
          --store_ops_;
          guard("outcome written", [&] { done(ok, std::move(err)); });
          guard("stop", [&] { maybe_stopped(); });
        });
      },
      [this](std::int64_t at) {
        uv_timer_start(recorder_timer_,
                       [](uv_timer_t* t) noexcept {
                         guard("outcome retry", [t] { static_cast<Relay*>(t->data)->recorder_->on_timer(); });
                       },
                       static_cast<std::uint64_t>(std::max<std::int64_t>(0, at - now_us()) / 1000 + 1), 0);
      },
      [] { return now_us(); },
      [this](const OutcomeRecorder::Event& e) {
        LogEntry said = recorder_line(e);
        log::emit(said.level, said.line);
        if (e.kind == OutcomeRecorder::Event::Kind::WriteFailed && alerter_)
          alerter_->spool_error("delivery outcome", e.error);
      });
}

Relay::~Relay() {
  *alive_ = false;
  alive_.reset();
  auto close = [](uv_timer_t* t) {
    uv_close(reinterpret_cast<uv_handle_t*>(t), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
  };
  close(timer_);
  close(op_timer_);
  close(recorder_timer_);
}

std::int64_t Relay::now() { return now_us(); }

std::vector<queue::UpstreamSpec> Relay::upstream_specs() const {
  std::vector<queue::UpstreamSpec> out;
  for (const auto& [name, rt] : gen_->upstreams) out.push_back(upstream_spec(*rt.cfg, rt.setup_error, rt.password));
  return out;
}

double Relay::random01() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng_); }

std::string Relay::route_label(const UpstreamConfig* up) const {
  if (!up) return "none";
  if (!up->maildir.empty()) return up->name + "[maildir:" + up->maildir + "]";
  return up->name + "[" + up->host + ":" + std::to_string(up->port) + "]";
}

void Relay::start() {
  auto recovered = std::make_shared<queue::Recovery>();
  auto states = std::make_shared<std::vector<queue::UpstreamState>>();
  auto seq = std::make_shared<std::int64_t>(0);
  // The quota ledger of every upstream with rate windows: the windows go on
  // across the restart (issue 10 item 3).
  using Ledgers = std::vector<std::pair<std::string, std::vector<queue::LedgerEntry>>>;
  auto spans = std::make_shared<std::vector<std::pair<std::string, std::int64_t>>>();
  for (const auto& [name, rt] : gen_->upstreams)
    if (std::int64_t span = sched_.ledger_span(name); span > 0) spans->emplace_back(name, span);
  auto ledgers = std::make_shared<Ledgers>();
  run_store(
      [recovered, states, seq, spans, ledgers, policy = uncertain_policy(*gen_->config),
       exclude = in_flight_](queue::Spool& s) {
        queue::DeliveryStore ds(s);
        *recovered = ds.recover_active(now_us(), policy, exclude);
        *states = ds.load_upstream_states();
        *seq = ds.last_operator_seq();
        const std::int64_t now = now_us();
        for (const auto& [name, span] : *spans) {
          ds.prune_ledger(name, now - span);
          ledgers->emplace_back(name, ds.load_ledger(name, now - span));
        }
      },
      [this, recovered, states, seq, ledgers](bool ok, std::string err) {
        if (!ok) log::error(log::Line("relay_error").kv("op", "recover").kv("error", err));
        log_recovery(*recovered, false);
        next_recovery_ = now_us() + kRecoveryInterval;
        // Suspensions survive a restart (an upstream that refused our login
        // a minute ago is not tried again at once).
        sched_.restore(*states);
        for (auto& [name, entries] : *ledgers) {
          if (!entries.empty())
            log::info(log::Line("quota_restored").kv("upstream", name).kv("entries", entries.size()));
          sched_.restore_ledger(name, std::move(entries));
        }
        incidents_.restored(*states, now_us());
        // Rows written before this start are history, not requests.
        op_seq_ = *seq;
        clock_.start();
        tokens_.configure();
        fleet_.configure(gen_->config->quota);
        if (stopping_) return;
        uv_timer_start(op_timer_, [](uv_timer_t* t) {
          guard("operator poll", [t] { static_cast<Relay*>(t->data)->poll_operator_log(); });
        }, kOperatorPollMs, kOperatorPollMs);
        schedule_claim(std::chrono::milliseconds(0));
      });
}

void Relay::reload(std::shared_ptr<const Config> config) {
  const std::int64_t now = now_us();
  // The old generation stays alive only as long as a delivery holds it.
  gen_ = Generation::make(std::move(config));
  tokens_.configure();
  sched_.set_params(scheduler_params(*gen_->config));
  sched_.set_upstreams(upstream_specs(), now);
  fleet_.configure(gen_->config->quota);
  // Messages not yet handed were routed under the old configuration: back
  // to the spool, due now, claimed again under the new routes.
  for (const auto& id : sched_.drain()) {
    claimed_.erase(id);
    park(id, now, queue::WaitReason::None, "", "");
  }
  no_route_warned_.clear();
  persist_upstreams();
  run_store([now](queue::Spool& s) { queue::DeliveryStore(s).release_waiting(now); },
            [this](bool, std::string) { kick(); });
}

// --- time -----------------------------------------------------------------------------

void Relay::kick() {
  if (auto ms = clock_.kick(stopping_, timer_state())) schedule_claim(std::chrono::milliseconds(*ms));
}

TimerState Relay::timer_state() const {
  TimerState t;
  t.armed = uv_is_active(reinterpret_cast<const uv_handle_t*>(timer_)) != 0;
  if (t.armed) t.due_in_ms = uv_timer_get_due_in(timer_);
  return t;
}

void Relay::schedule_claim(std::chrono::milliseconds after) {
  if (stopping_) return;
  uv_timer_start(timer_, [](uv_timer_t* t) {
    guard("tick", [t] { static_cast<Relay*>(t->data)->tick(); });
  }, static_cast<std::uint64_t>(after.count()), 0);
}

void Relay::arm_timer() {
  if (!clock_.may_arm(stopping_)) return;   // the claim's completion arms it
  const std::int64_t now = now_us();
  if (auto ms = clock_.wake_after(now, sched_.next_wakeup(now), in_flight_.size(), timer_state()))
    schedule_claim(std::chrono::milliseconds(*ms));
}

void Relay::tick() {
  if (!clock_.may_tick(stopping_)) return;
  graveyard_.clear();
  decide();   // messages held for a short suspension or rate window
  const std::size_t limit = ClaimClock::claim_limit(in_flight_.size());
  if (limit == 0) {
    arm_timer();
    return;
  }
  clock_.claim_started();
  auto due = std::make_shared<std::vector<queue::DueMessage>>();
  auto next = std::make_shared<std::optional<std::int64_t>>();
  auto no_route = std::make_shared<std::vector<std::string>>();
  // The writer thread reads the routes of this generation, which it holds.
  std::shared_ptr<const Config> cfg = gen_->config;
  // Recovery while running shares the claim's request: no claim can slip
  // between the snapshot of what is in flight and the recovery.
  auto recovered = std::make_shared<std::optional<queue::Recovery>>();
  std::optional<std::set<std::string>> recover_except;
  if (next_recovery_ != 0 && now_us() >= next_recovery_) {
    recover_except = in_flight_;
    next_recovery_ = now_us() + kRecoveryInterval;
  }
  run_store(
      [due, next, limit, no_route, cfg, recovered, recover_except, policy = uncertain_policy(*cfg)](queue::Spool& s) {
        queue::DeliveryStore ds(s);
        const std::int64_t now = now_us();
        if (recover_except) *recovered = ds.recover_active(now, policy, *recover_except);
        // A message no route takes is never claimed (it stays queued, "no
        // route"): claiming it only to park it would churn the spool.
        auto routable = [&cfg](const queue::DueMessage& m) {
          return !routing::upstreams_for_message(*cfg, m.sender, m.recipients).empty();
        };
        *due = ds.claim_due(now, limit, routable, now + queue::Scheduler::kNoRouteRecheck, no_route.get());
        *next = ds.next_due();
      },
      [this, due, next, limit, no_route, recovered](bool ok, std::string err) {
        const std::int64_t now = now_us();
        if (!ok) {
          clock_.claim_failed(now);
          log::error(log::Line("relay_error").kv("op", "claim").kv("error", err));
          arm_timer();
          return;
        }
        clock_.claimed(now, *next, due->size());
        if (*recovered) log_recovery(**recovered, true);
        for (const auto& id : *no_route)
          if (no_route_warned_.insert(id).second)
            log::warn(log::Line("no_route").kv("id", id)
                          .kv("hint", "no [[route]] matches its sender; add one (sender = \"*\" for all), then reload"));
        for (auto& m : *due) {
          if (stopping_) {
            park(m.id, now, queue::WaitReason::None, "", "");
            continue;
          }
          Job job;
          job.route = route_of(m);
          job.msg = std::move(m);
          queue::DueWork w{job.msg.id, job.msg.created, job.msg.attempts, job.route,
                           static_cast<std::uint32_t>(std::max<std::size_t>(job.msg.recipients.size(), 1))};
          in_flight_.insert(job.msg.id);
          claimed_[job.msg.id] = std::move(job);
          sched_.add_due(std::move(w), now);
        }
        if (stopping_) return;
        decide();
        if (clock_.claim_again(due->size(), limit)) schedule_claim(std::chrono::milliseconds(0));
        else arm_timer();
      });
}

std::vector<std::string> Relay::route_of(const queue::DueMessage& m) const {
  std::vector<std::string> names;
  for (const auto* u : routing::upstreams_for_message(*gen_->config, m.sender, m.recipients)) names.push_back(u->name);
  return names;
}

// --- decisions ------------------------------------------------------------------------

void Relay::decide() {
  if (deciding_) {
    decide_again_ = true;
    return;
  }
  deciding_ = true;
  do {
    decide_again_ = false;
    const std::int64_t now = now_us();
    for (auto& d : sched_.poll(now)) {
      using K = queue::Decision::Kind;
      switch (d.kind) {
        case K::Open: {
          const UpstreamRuntime* rt = gen_->find(d.upstream);
          if (!rt || stopping_) {
            sched_.connection_closed(d.conn);
            break;
          }
          std::unique_ptr<Carrier> del;
          if (!rt->cfg->maildir.empty())
            del = std::make_unique<MaildirCarrier>(*this, gen_, *rt, d.conn);
          else
            del = std::make_unique<Delivery>(*this, gen_, *rt, d.conn);
          Carrier* raw = del.get();
          deliveries_[d.conn] = std::move(del);
          raw->start();
          break;
        }
        case K::Hand: {
          auto job = claimed_.find(d.id);
          auto del = deliveries_.find(d.conn);
          if (job == claimed_.end()) break;
          Job j = std::move(job->second);
          claimed_.erase(job);
          if (del == deliveries_.end()) {
            park(j.msg.id, now, queue::WaitReason::None, "", "");
            break;
          }
          hand(d.upstream, d.conn, std::move(j));
          break;
        }
        case K::Park:
          claimed_.erase(d.id);
          if (d.reason == queue::WaitReason::NoRoute && no_route_warned_.insert(d.id).second)
            log::warn(log::Line("no_route").kv("id", d.id)
                          .kv("hint", "add a [[route]] whose sender pattern matches, then reload"));
          // The upstream's own daily-scale window is full: an alert when mail waits an hour or more.
          if (d.reason == queue::WaitReason::RateLimited) incidents_.window_full(d.upstream, d.why, d.until, now);
          park(d.id, d.until, d.reason, d.upstream, d.why);
          break;
        case K::Expire:
          expire(d.id, d.upstream, d.why);
          break;
        case K::Quit:
          if (auto del = deliveries_.find(d.conn); del != deliveries_.end()) del->second->quit_when_idle();
          break;
      }
    }
  } while (decide_again_);
  deciding_ = false;
  persist_upstreams();
  arm_timer();
}

void Relay::park(const std::string& id, std::int64_t until, queue::WaitReason reason, const std::string& upstream,
                 const std::string& why) {
  in_flight_.erase(id);
  clock_.due_by(until);
  if (reason != queue::WaitReason::None)
    log::debug(log::Line("parked").kv("id", id).kv("wait", wait_name(reason)).kv("upstream", upstream)
                   .kv("until_s", log::seconds_text(until - now_us())));
  run_store(
      [id, until, reason, upstream, why](queue::Spool& s) {
        queue::DeliveryStore(s).park(id, until, reason, upstream, why);
      },
      [id](bool ok, std::string err) {
        if (!ok) log::error(log::Line("relay_error").kv("id", id).kv("op", "park").kv("error", err));
      });
}

void Relay::park_now(const std::string& id, std::string why) {
  claimed_.erase(id);
  park(id, now_us(), queue::WaitReason::None, "", why);
}

void Relay::expire(const std::string& id, const std::string& upstream, const std::string& why) {
  auto it = claimed_.find(id);
  if (it == claimed_.end()) return;
  Job job = std::move(it->second);
  claimed_.erase(it);
  client::SessionFailure f;
  f.detail = why;
  client::MessageReport report = setup_report(job.msg, f);
  const UpstreamRuntime* rt = gen_->find(upstream);
  settle(rt ? rt->cfg : nullptr, std::move(job), std::move(report), true, now_us());
}

void Relay::hand(const std::string& upstream, queue::ConnId conn, Job job) {
  const UpstreamRuntime* rt = gen_->find(upstream);
  if (!fleet_.active() || !rt || sched_.ledger_span(upstream) <= 0) return hand_now(upstream, conn, std::move(job));
  const auto recipients = static_cast<std::uint32_t>(job.msg.recipients.size());
  const QuotaGate::Ticket ticket = gate_.wait(conn, upstream, std::move(job));
  fleet_.reserve(*rt->cfg, sched_.windows(upstream), recipients, now_us(), alive_,
                 [this, ticket](QuotaAnswer a) { guard("quota answer", [&] { reserved(ticket, std::move(a)); }); });
}

void Relay::reserved(QuotaGate::Ticket ticket, QuotaAnswer a) {
  std::optional<QuotaGate::Step> step = gate_.answered(ticket, a);
  if (!step) return;
  const queue::ConnId conn = step->conn;
  if (step->hand) {
    hand_now(step->upstream, conn, std::move(step->job));
    maybe_stopped();
    return;
  }
  sched_.hold_quota(step->upstream, step->until);
  park(step->job.msg.id, step->until, queue::WaitReason::RateLimited, step->upstream, step->why);
  sched_.connection_ready(conn);
  maybe_stopped();
  if (!stopping_) decide();
}

void Relay::hand_now(const std::string& upstream, queue::ConnId conn, Job job) {
  auto del = deliveries_.find(conn);
  if (del == deliveries_.end() || stopping_) {
    park(job.msg.id, now_us(), queue::WaitReason::None, "", "");
    if (del != deliveries_.end()) sched_.connection_ready(conn);
    return;
  }
  job.handed_at = now_us();
  record_start(upstream, job.handed_at, job.msg.recipients.size());
  del->second->hand(std::move(job));
}

void Relay::record_start(const std::string& upstream, std::int64_t now, std::size_t recipients) {
  const std::int64_t span = sched_.ledger_span(upstream);
  if (span <= 0) return;   // no windows: nothing to keep
  // The ledger's old end is pruned now and then with a new entry (one range
  // of its primary key).
  std::int64_t& due = next_ledger_prune_[upstream];
  const bool prune = now >= due;
  if (prune) due = now + kRecoveryInterval;
  run_store(
      [upstream, now, span, prune,
       n = static_cast<std::uint32_t>(std::max<std::size_t>(recipients, 1))](queue::Spool& s) {
        queue::DeliveryStore ds(s);
        ds.record_start(upstream, now, n);
        if (prune) ds.prune_ledger(upstream, now - span);
      },
      [upstream](bool ok, std::string err) {
        if (!ok) log::error(log::Line("relay_error").kv("op", "quota ledger").kv("upstream", upstream).kv("error", err));
      });
}

void Relay::persist_upstreams() {
  auto changed = sched_.take_changed(now_us());
  if (changed.empty()) return;
  run_store(
      [changed](queue::Spool& s) {
        queue::DeliveryStore ds(s);
        for (const auto& st : changed) ds.save_upstream_state(st);
      },
      [](bool ok, std::string err) {
        if (!ok) log::error(log::Line("relay_error").kv("op", "save upstream state").kv("error", err));
      });
}

// --- from deliveries --------------------------------------------------------------------

void Relay::delivery_ready(Carrier& d) {
  // Its next message is on its way (the fleet's ledger is asked for its
  // start): the connection said "ready" without knowing it, e.g. at the
  // final dot of the one before. Taken as ready, the scheduler would give it
  // one more, beside the one it has. The connection asks again once it has
  // the message, or the gate makes it ready if the fleet refuses it.
  if (gate_.holds(d.conn())) return;
  sched_.connection_ready(d.conn());
  decide();
}

void Relay::suspend(const std::string& upstream, const client::SessionFailure& f, queue::ConnId conn,
                    std::int64_t now) {
  if (incidents_.failed(upstream, f, conn, now)) persist_upstreams();
}

void Relay::message_done(Carrier& d, Job job, client::MessageReport report) {
  const std::int64_t now = now_us();
  const bool upstream_fault = !report.all_delivered() && report.scope() == client::Scope::Upstream;
  if (upstream_fault) {
    d.upstream_fault_reported = true;
    suspend(d.upstream_name(), failure_of(report), d.conn(), now);
  } else {
    incidents_.delivered(d.upstream_name(), job.handed_at);
  }
  settle(d.upstream().cfg, std::move(job), std::move(report), upstream_fault, now);
}

void Relay::session_failed(Carrier& d, const client::SessionFailure& failure) {
  const std::int64_t now = now_us();
  const UpstreamConfig& cfg = *d.upstream().cfg;
  const bool setup = !d.was_ready();
  // A connection that never became ready failed in its set-up: that is the
  // upstream's (connect, TLS, greeting, EHLO, AUTH), whatever the scope.
  if ((setup || failure.scope == client::Scope::Upstream) && !d.upstream_fault_reported) {
    auto diag = protocol::diagnose(upstream::summary(cfg), failure);
    suspend(d.upstream_name(), failure, d.conn(), now);
    auto st = sched_.state(d.upstream_name());
    log::Line l("upstream_failed");
    l.kv("upstream", cfg.name).kv("relay", route_label(&cfg)).kv("stage", client::stage_name(failure.stage))
        .kv("error", failure.text());
    if (st && st->suspended_until) l.kv("retry_in_s", log::seconds_text(*st->suspended_until - now));
    if (!diag.hint.empty()) l.kv("hint", diag.hint);
    // A refused login is the operator's to fix: say it loudly (SPEC: never bounce for it).
    if (failure.stage == client::Stage::Auth) log::error(l); else log::warn(l);
    d.upstream_fault_reported = true;
  }
  if (setup) {
    // The connection was opened for a waiting message: this was its try
    // (counted in attempts, SPEC "[retry]"); the others wait for the route.
    if (auto w = sched_.charge_failed_open(d.conn())) {
      auto it = claimed_.find(w->id);
      if (it != claimed_.end()) {
        Job job = std::move(it->second);
        claimed_.erase(it);
        std::optional<protocol::ReplyVerdict> verdict;
        if (failure.reply) verdict = protocol::match_reply(cfg.replies.get(), *failure.reply);
        client::MessageReport report = setup_report(job.msg, failure, verdict);
        settle(&cfg, std::move(job), std::move(report), true, now);
      }
    }
  }
  decide();
}

void Relay::delivery_finished(Carrier& d) {
  const queue::ConnId conn = d.conn();
  sched_.connection_closed(conn);
  auto it = deliveries_.find(conn);
  if (it != deliveries_.end()) {
    graveyard_.push_back(std::move(it->second));   // freed off this call stack (the next tick or probe)
    deliveries_.erase(it);
  }
  if (stopping_) {
    maybe_stopped();
    return;
  }
  decide();
}

// --- outcomes -----------------------------------------------------------------------------

void Relay::settle(const UpstreamConfig* up, Job job, client::MessageReport report, bool upstream_fault,
                   std::int64_t now) {
  const auto& m = job.msg;
  const RetryConfig& retry = gen_->config->retry;
  OutcomeInput in;
  in.msg = &m;
  in.upstream = up ? up->name : "";
  in.host = up ? up->host : "";
  in.report = &report;
  in.after = sched_.after_attempt(queue::DueWork{m.id, m.created, m.attempts, job.route}, upstream_fault, now);
  in.upstream_fault = upstream_fault;
  in.lifetime = retry.lifetime;
  in.hold_uncertain = retry.uncertain == RetryConfig::Uncertain::Hold;
  // The upstream's summary feeds only a failure's diagnosis: not made for
  // the delivered messages, which are nearly all of them.
  std::optional<protocol::UpstreamSummary> summary;
  if (up && report.first_failure()) summary = upstream::summary(*up);
  AttemptNotes notes = attempt_notes(report, summary ? &*summary : nullptr, in.after, now);
  in.after = notes.after;
  in.hint = notes.hint;
  in.now = now;
  auto out = std::make_shared<const AttemptOutcome>(compose_outcome(in));

  // The DSN goes into the spool in the same transaction as the outcome: a
  // crash cannot lose it or make it twice. Its id is drawn here (the id
  // generator belongs to the loop thread), and only when a DSN may be made.
  FailureDsnInput dsn;
  dsn.msg = &m;   // re-pointed at the copy the store work owns
  dsn.dsn_id = out->dsn_recipients.empty() ? std::string() : next_id_();
  dsn.host_name = gen_->config->host_name;
  dsn.lifetime_text = duration_words(retry.lifetime);
  dsn.bounces = gen_->config->bounces;
  dsn.now = now;
  auto after = std::make_shared<queue::MessageAfter>();
  auto dsn_made = std::make_shared<bool>(false);
  // Through the recorder: its own savepoint, kept and written again if
  // the write fails; the message stays in flight until it is on disk.
  recorder_->record(m.id,
      [out, after, dsn_made, m, dsn](queue::Spool& s) mutable {
        queue::DeliveryStore ds(s);
        *after = ds.apply(out->record);
        if (!after->exists) return;
        ds.mark_waiting(m.id, out->waits_for,
                        out->waits_for == queue::WaitReason::None ? "" : out->record.upstream);
        dsn.msg = &m;
        dsn.failed = &out->dsn_recipients;
        dsn.newly_failed = after->newly_failed;
        dsn.original_headers = [&] { return ds.headers(m.id); };
        auto made = failure_dsn(dsn);
        if (!made) return;
        ds.enqueue_local(made->message, made->bytes, dsn.now);
        ds.mark_bounce_sent(m.id, dsn.dsn_id);
        *dsn_made = true;
      },
      [this, alive = std::weak_ptr<bool>(alive_), out, m, after, dsn_made, dsn_id = dsn.dsn_id,
       notes = std::move(notes), relay = route_label(up), possible_dup = report.possible_duplicate, now]() {
        if (alive.expired()) return;
        in_flight_.erase(m.id);
        if (after->exists && after->state == queue::kDeferred) clock_.due_by(out->next_at);
        SettledInput done;
        done.msg = &m;
        done.outcome = out.get();
        done.after = after.get();
        done.relay = relay;
        done.hint = notes.hint;
        done.action = notes.action;
        done.possible_duplicate = possible_dup;
        done.dsn_made = *dsn_made;
        done.dsn_id = dsn_id;
        done.now = now;
        Settled said = settled_lines(done);
        for (const auto& e : said.lines) log::emit(e.level, e.line);
        if (said.kick) kick();
        arm_timer();
      });
}

// --- store, shutdown ------------------------------------------------------------------------

void Relay::run_store(std::function<void(queue::Spool&)> work, std::function<void(bool, std::string)> done) {
  ++store_ops_;
  store_run(std::move(work), [this, alive = std::weak_ptr<bool>(alive_), done = std::move(done)](bool ok, std::string err) {
    if (alive.expired()) return;
    --store_ops_;
    guard("store completion", [&] {
      if (done) done(ok, std::move(err));
    });
    guard("stop", [&] { maybe_stopped(); });
  });
}

void Relay::maybe_stopped() {
  if (!stopping_ || !on_stopped_ || !deliveries_.empty() || store_ops_ > 0 || clock_.claiming() || op_polling_ ||
      !gate_.empty())
    return;
  // An outcome not yet on disk keeps us up, within the grace period.
  if (recorder_->pending() > 0 && !aborted_) return;
  for (const auto& id : recorder_->abandon())
    log::error(log::Line("outcome_abandoned").kv("id", id)
                   .kv("hint", "not written before shutdown; the message is recovered at the next start"));
  release_body_reader();
  auto cb = std::move(on_stopped_);
  on_stopped_ = nullptr;
  cb();
}

void Relay::stop(std::function<void()> on_stopped) {
  if (stopping_) return;
  stopping_ = true;
  // A token request in flight is aborted: the delivery waiting for it ends.
  tokens_.cancel();
  uv_timer_stop(timer_);
  uv_timer_stop(op_timer_);
  const std::int64_t now = now_us();
  for (const auto& id : sched_.drain()) {
    claimed_.erase(id);
    park(id, now, queue::WaitReason::None, "", "");
  }
  on_stopped_ = std::move(on_stopped);
  std::vector<Carrier*> idle;
  for (auto& [conn, owned] : deliveries_) {
    (void)conn;
    idle.push_back(owned.get());
  }
  for (auto* d : idle) {
    bool alive = false;
    for (auto& [conn, owned] : deliveries_) alive = alive || owned.get() == d;
    if (alive) d->quit_when_idle();
  }
  maybe_stopped();
}

void Relay::abort() {
  aborted_ = true;
  std::vector<queue::ConnId> all;
  for (auto& [conn, owned] : deliveries_) {
    (void)owned;
    all.push_back(conn);
  }
  for (auto conn : all) {
    auto it = deliveries_.find(conn);
    if (it == deliveries_.end()) continue;
    Carrier* d = it->second.get();
    d->abort();
    d->pump();
  }
  maybe_stopped();
}

}  // namespace outbox::daemon
