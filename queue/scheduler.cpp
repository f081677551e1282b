#include "queue/scheduler.h"

#include <algorithm>
#include <cmath>

namespace outbox::queue {

namespace {

std::int64_t us(std::chrono::microseconds d) { return static_cast<std::int64_t>(d.count()); }

std::string quoted(std::string_view name) { return "upstream \"" + std::string(name) + "\""; }

}  // namespace

Scheduler::Scheduler(SchedulerParams params, std::function<double()> random01)
    : params_(params), random01_(std::move(random01)) {}

Scheduler::Up* Scheduler::find(std::string_view name) {
  auto it = ups_.find(name);
  return it == ups_.end() ? nullptr : &it->second;
}

const Scheduler::Up* Scheduler::find(std::string_view name) const {
  auto it = ups_.find(name);
  return it == ups_.end() ? nullptr : &it->second;
}

Scheduler::Up* Scheduler::of(const Conn& c) {
  Up* u = find(c.upstream);
  // A name removed and added again by reloads is a new upstream: the old
  // generation's connections do not count against it.
  return u && u->serial == c.serial ? u : nullptr;
}

bool Scheduler::suspended(const Up& u, std::int64_t now) const {
  return u.suspended_until && *u.suspended_until > now;
}

std::size_t Scheduler::limit(const Up& u, std::int64_t now) const {
  // After failures, one connection probes the upstream: a provider that
  // refuses or throttles sees one login, not max_connections of them.
  if (u.failures > 0) return 1;
  std::size_t n = std::max<std::size_t>(u.spec.max_connections, 1);
  if (u.lowered > 0 && now < u.lowered_until) n = std::min(n, u.lowered);
  return n;
}

std::optional<std::size_t> Scheduler::lower_concurrency(std::string_view name, std::int64_t now) {
  Up* u = find(name);
  if (!u) return std::nullopt;
  // One fewer than were open when the refusal came (the provider counts
  // those), never below one and never above what is configured.
  std::size_t open = u->opening + u->idle + u->busy;
  std::size_t current = std::max<std::size_t>(u->spec.max_connections, 1);
  if (u->lowered > 0 && now < u->lowered_until) current = std::min(current, u->lowered);
  current = std::min(current, std::max<std::size_t>(open, 1));
  u->lowered = current > 1 ? current - 1 : 1;
  u->lowered_until = now + kLoweredFor;
  return u->lowered;
}

std::size_t Scheduler::concurrency(std::string_view name, std::int64_t now) const {
  const Up* u = find(name);
  if (!u) return 0;
  std::size_t n = std::max<std::size_t>(u->spec.max_connections, 1);
  if (u->lowered > 0 && now < u->lowered_until) n = std::min(n, u->lowered);
  return n;
}

std::uint64_t Scheduler::rate_room(const Up& u, std::int64_t now, std::int64_t* free_at, std::uint32_t next,
                                   std::string* why) const {
  WindowUse full;
  std::uint64_t room = u.ledger.room(now, next, free_at, &full);
  if (room == 0 && why) *why = quota_words(full);
  return room;
}

void Scheduler::restore_ledger(std::string_view name, std::vector<LedgerEntry> entries) {
  if (Up* u = find(name)) u->ledger.restore(std::move(entries));
}

std::int64_t Scheduler::ledger_span(std::string_view name) const {
  const Up* u = find(name);
  return u ? u->ledger.span() : 0;
}

std::vector<RateWindow> Scheduler::windows(std::string_view name) const {
  const Up* u = find(name);
  return u ? u->ledger.windows() : std::vector<RateWindow>{};
}

void Scheduler::hold_quota(std::string_view name, std::int64_t until) {
  if (Up* u = find(name)) u->ledger.hold_until(until);
}

void Scheduler::set_quota_share(double share) {
  quota_share_ = share;
  for (auto& [name, u] : ups_) u.ledger.set_share(share);
}

std::vector<WindowUse> Scheduler::window_use(std::string_view name, std::int64_t now, std::uint32_t next) const {
  const Up* u = find(name);
  return u ? u->ledger.use(now, next) : std::vector<WindowUse>{};
}

void Scheduler::leave(Conn& c) {
  Up* u = of(c);
  if (!u) return;
  switch (c.state) {
    case Conn::State::Opening: if (u->opening) --u->opening; break;
    case Conn::State::Idle: if (u->idle) --u->idle; break;
    case Conn::State::Busy: if (u->busy) --u->busy; break;
  }
}

void Scheduler::set_upstreams(const std::vector<UpstreamSpec>& upstreams, std::int64_t) {
  std::map<std::string, Up, std::less<>> next;
  for (const auto& spec : upstreams) {
    auto old = ups_.find(spec.name);
    if (old != ups_.end()) {
      Up u = std::move(old->second);
      if (u.spec.settings_digest != spec.settings_digest && (u.suspended_until || u.failures > 0)) {
        // The operator changed what a refused login or a broken setup
        // depends on: try again now.
        u.suspended_until.reset();
        u.reason = SuspendReason::None;
        u.failures = u.auth_failures = 0;
        u.stage.clear();
        u.last_reply.clear();
        mark_changed(spec.name);
      }
      u.spec = spec;
      u.ledger.set_windows(spec.rates);
      u.ledger.set_share(quota_share_);
      next.emplace(spec.name, std::move(u));
    } else {
      Up u;
      u.spec = spec;
      u.ledger.set_windows(spec.rates);
      u.ledger.set_share(quota_share_);
      u.serial = next_serial_++;
      next.emplace(spec.name, std::move(u));
    }
  }
  ups_ = std::move(next);
  // Connections of removed upstreams stay in conns_ until they close (their
  // events are ignored); the persisted state of a removed name is not
  // touched (it is only read back for names that exist).
  for (auto it = changed_.begin(); it != changed_.end();)
    it = ups_.count(*it) ? std::next(it) : changed_.erase(it);
}

void Scheduler::restore(const std::vector<UpstreamState>& states) {
  for (const auto& s : states) {
    Up* u = find(s.name);
    if (!u) continue;
    u->suspended_until = s.suspended_until;
    u->reason = s.reason;
    u->failures = s.failures;
    u->auth_failures = s.reason == SuspendReason::AuthFailed ? std::max(s.failures, 1) : 0;
    u->stage = s.stage;
    u->last_reply = s.last_reply;
  }
}

void Scheduler::add_due(DueWork work, std::int64_t) {
  auto& q = routes_[work.route];
  q.push_back(Waiting{std::move(work), next_seq_++});
  ++waiting_count_;
}

void Scheduler::connection_ready(ConnId conn) {
  auto it = conns_.find(conn);
  if (it == conns_.end() || it->second.state == Conn::State::Idle) return;
  leave(it->second);
  it->second.state = Conn::State::Idle;
  if (Up* u = of(it->second)) ++u->idle;
}

void Scheduler::connection_closed(ConnId conn) {
  auto it = conns_.find(conn);
  if (it == conns_.end()) return;
  leave(it->second);
  conns_.erase(it);
}

std::optional<DueWork> Scheduler::charge_failed_open(ConnId conn) {
  auto it = conns_.find(conn);
  if (it == conns_.end() || it->second.state != Conn::State::Opening) return std::nullopt;
  const std::string& name = it->second.upstream;
  std::deque<Waiting>* best = nullptr;
  for (auto& [route, q] : routes_)
    if (!q.empty() && std::find(route.begin(), route.end(), name) != route.end() &&
        (!best || q.front().seq < best->front().seq))
      best = &q;
  if (!best) return std::nullopt;
  DueWork out = std::move(best->front().w);
  best->pop_front();
  --waiting_count_;
  return out;
}

std::optional<Suspension> Scheduler::upstream_failed(std::string_view name, const UpstreamFailure& f,
                                                     std::int64_t now, std::optional<ConnId> conn) {
  Up* u = find(name);
  if (!u) return std::nullopt;
  if (conn && u->failed_at && suspended(*u, now)) {
    auto it = conns_.find(*conn);
    if (it != conns_.end() && of(it->second) == u && it->second.opened < *u->failed_at) {
      Suspension s;
      s.upstream = u->spec.name;
      s.until = *u->suspended_until;
      s.reason = u->reason;
      s.failures = u->failures;
      s.same_outage = true;
      return s;
    }
  }
  u->failed_at = now;
  const bool was_told = u->reason == SuspendReason::AuthFailed && u->suspended_until.has_value() &&
                        u->auth_failures > (u->spec.fresh_credential_per_connection ? 1 : 0);
  ++u->failures;
  std::int64_t until = 0;
  const int slow = f.reason == SuspendReason::AuthFailed
                       ? ++u->auth_failures - (u->spec.fresh_credential_per_connection ? 1 : 0)
                       : 0;
  if (slow > 0) {
    double d = static_cast<double>(us(params_.auth_initial)) * std::pow(2.0, slow - 1);
    d = std::min(d, static_cast<double>(std::max(us(params_.auth_max), us(params_.auth_initial))));
    until = now + std::max(static_cast<std::int64_t>(d), us(f.floor));
  } else {
    until = upstream_retry_at(params_.retry, u->failures, now, random01_(), f.floor);
  }
  // The provider says the quota is used up and the ledger knows the window:
  // it frees when our oldest send in it leaves the window (a rolling 24 h
  // frees from its oldest message), often sooner than the table's whole day.
  if (f.reason == SuspendReason::QuotaReached && !u->ledger.empty()) {
    std::int64_t frees = u->ledger.fill(now);
    if (frees > now) until = frees;
  }
  // A later failure never shortens what an earlier one asked for.
  if (u->suspended_until && *u->suspended_until > until) until = *u->suspended_until;
  u->suspended_until = until;
  u->reason = f.reason;
  u->stage = f.stage;
  u->last_reply = f.reply;
  mark_changed(u->spec.name);
  Suspension s;
  s.upstream = u->spec.name;
  s.until = until;
  s.reason = f.reason;
  s.failures = u->failures;
  // Once per suspension: it lasts until a delivery succeeds or the operator
  // resumes the upstream, however many probes fail meanwhile.
  s.tell_operator = slow > 0 && !was_told;
  return s;
}

bool Scheduler::upstream_ok(std::string_view name, std::int64_t started) {
  Up* u = find(name);
  if (!u || (u->failed_at && started <= *u->failed_at)) return false;
  if (u->failures != 0 || u->suspended_until) clear_failures(*u);
  return true;
}

void Scheduler::clear_failures(Up& u) {
  u.failures = u.auth_failures = 0;
  u.failed_at.reset();
  u.suspended_until.reset();
  u.reason = SuspendReason::None;
  u.stage.clear();
  u.last_reply.clear();
  mark_changed(u.spec.name);
}

bool Scheduler::resume(std::string_view name, std::int64_t) {
  Up* u = find(name);
  if (!u) return false;
  clear_failures(*u);
  u->ledger.clear_fill();   // the operator knows the quota is back
  return true;
}

std::vector<Decision> Scheduler::poll(std::int64_t now) {
  // Decisions about messages, tagged with their due order: they are
  // returned in that order (then opens, then quits), as if one queue.
  std::vector<std::pair<std::uint64_t, Decision>> about;
  std::map<std::string, std::size_t, std::less<>> want;   // messages ready for a connection of that upstream
  const std::int64_t lifetime = us(params_.retry.lifetime);
  // Routes whose target is usable now, by target: handed out below.
  std::map<std::string, std::pair<Up*, std::vector<std::deque<Waiting>*>>, std::less<>> ready;
  for (auto& [route, q] : routes_) {
    if (q.empty()) continue;
    Up* target = nullptr;
    Up* blamed = nullptr;
    std::optional<std::int64_t> earliest;   // the first suspension of its route to end
    bool unusable = false;
    std::string why;
    for (const auto& name : route) {
      Up* u = find(name);
      if (!u) continue;
      if (!u->spec.usable) {
        unusable = true;
        if (!blamed) blamed = u;
        if (why.empty())
          why = u->spec.problem.empty() ? quoted(name) + " cannot be used (its secret or CA file could not be loaded)"
                                        : u->spec.problem;
        continue;
      }
      if (suspended(*u, now)) {
        if (!earliest || *u->suspended_until < *earliest) {
          earliest = *u->suspended_until;
          blamed = u;
          why = quoted(name) + " suspended: " + u->last_reply;
        }
        continue;
      }
      target = u;
      break;
    }
    if (target) {
      auto& r = ready[target->spec.name];
      r.first = target;
      r.second.push_back(&q);
      continue;
    }
    std::deque<Waiting> keep;
    for (auto& e : q) {
      Decision d;
      d.id = e.w.id;
      if (!blamed) {
        // No route, or only names this generation does not know.
        d.kind = Decision::Kind::Park;
        d.reason = WaitReason::NoRoute;
        d.until = now + kNoRouteRecheck;
        d.why = "no route";
        about.emplace_back(e.seq, std::move(d));
        continue;
      }
      d.upstream = blamed->spec.name;
      d.why = why;
      const std::int64_t deadline = e.w.created + lifetime;
      if (now >= deadline) {
        // No upstream of its route takes it within its lifetime (SPEC "[retry]").
        d.kind = Decision::Kind::Expire;
        d.reason = earliest ? WaitReason::UpstreamSuspended : WaitReason::UpstreamUnusable;
        about.emplace_back(e.seq, std::move(d));
        continue;
      }
      std::int64_t until = earliest ? *earliest : now + us(params_.retry.initial);
      // A file fixed meanwhile is read by a reload (which releases it): look
      // again at the retry pace, not hours later.
      if (unusable) until = std::min(until, now + us(params_.retry.initial));
      // Typed by what it waits for, decided before the lifetime clamp: mail
      // that expires before the suspension ends still waits for that
      // upstream, and `outboxctl resume` must release it.
      const bool for_suspension = earliest && *earliest <= until;
      until = std::min(until, deadline);   // so it expires on time
      if (earliest && !unusable && until - now <= kHold) {
        keep.push_back(std::move(e));   // ends soon: next_wakeup() says when
        continue;
      }
      d.kind = Decision::Kind::Park;
      d.reason = for_suspension ? WaitReason::UpstreamSuspended : WaitReason::UpstreamUnusable;
      d.until = until;
      about.emplace_back(e.seq, std::move(d));
    }
    waiting_count_ -= q.size() - keep.size();
    q = std::move(keep);
  }

  for (auto& [name, r] : ready) {
    Up* target = r.first;
    auto& queues = r.second;
    // An idle connection of its upstream takes the earliest due message of
    // its routes; the rest wait for one.
    std::deque<ConnId> idle;
    for (auto& [id, c] : conns_)
      if (c.state == Conn::State::Idle && !c.quitting && of(c) == target) idle.push_back(id);
    bool rate_held = false;
    for (;;) {
      std::deque<Waiting>* q = nullptr;
      for (auto* candidate : queues)
        if (!candidate->empty() && (!q || candidate->front().seq < q->front().seq)) q = candidate;
      if (!q) break;
      std::int64_t free_at = now;
      std::string quota;
      if (rate_room(*target, now, &free_at, q->front().w.recipients, &quota) == 0) {
        rate_held = true;
        if (free_at - now <= kHold) break;   // held here; next_wakeup() says when
        for (auto* rq : queues) {
          for (auto& e : *rq) {
            Decision d;
            d.kind = Decision::Kind::Park;
            d.id = e.w.id;
            d.upstream = name;
            d.reason = WaitReason::RateLimited;
            d.until = free_at;
            d.why = quoted(name) + " " + quota;
            about.emplace_back(e.seq, std::move(d));
          }
          waiting_count_ -= rq->size();
          rq->clear();
        }
        break;
      }
      if (idle.empty()) break;
      Conn& c = conns_[idle.front()];
      --target->idle;
      ++target->busy;
      c.state = Conn::State::Busy;
      c.idle_since.reset();
      target->ledger.record(now, q->front().w.recipients);
      Decision d;
      d.kind = Decision::Kind::Hand;
      d.upstream = name;
      d.conn = idle.front();
      d.id = std::move(q->front().w.id);
      about.emplace_back(q->front().seq, std::move(d));
      idle.pop_front();
      q->pop_front();
      --waiting_count_;
    }
    if (rate_held) continue;
    std::size_t left = 0;
    for (auto* rq : queues) left += rq->size();
    if (left) want[name] += left;
  }
  for (auto it = routes_.begin(); it != routes_.end();) it = it->second.empty() ? routes_.erase(it) : std::next(it);
  std::sort(about.begin(), about.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
  std::vector<Decision> out;
  out.reserve(about.size());
  for (auto& [seq, d] : about) out.push_back(std::move(d));

  // Open connections only for work that waits: never more than the messages
  // waiting (minus those already opening), the concurrency limit, and what
  // the rate windows still allow, so no connection logs in only to QUIT.
  for (auto& [name, n] : want) {
    Up* u = find(name);
    std::int64_t free_at = now;
    std::uint64_t room = rate_room(*u, now, &free_at);
    std::size_t can = static_cast<std::size_t>(std::min<std::uint64_t>(n, room));
    while (u->opening < can && u->opening + u->idle + u->busy < limit(*u, now)) {
      ConnId id = next_conn_++;
      conns_[id] = Conn{name, u->serial, Conn::State::Opening, false, now};
      ++u->opening;
      Decision d;
      d.kind = Decision::Kind::Open;
      d.upstream = name;
      d.conn = id;
      out.push_back(std::move(d));
    }
  }
  // Idle connections with nothing to carry QUIT once their linger is over
  // (longer, they would hold a login at the provider for nothing); at once
  // when their upstream is gone or suspended.
  for (auto& [id, c] : conns_) {
    if (c.state != Conn::State::Idle || c.quitting) continue;
    Up* u = of(c);
    if (u && want.count(c.upstream) && !suspended(*u, now)) {
      c.idle_since.reset();
      continue;
    }
    if (u && !suspended(*u, now)) {
      if (!c.idle_since) c.idle_since = now;
      if (now - *c.idle_since < us(params_.idle_linger)) continue;   // next_wakeup() says when
    }
    c.quitting = true;
    Decision d;
    d.kind = Decision::Kind::Quit;
    d.upstream = c.upstream;
    d.conn = id;
    out.push_back(std::move(d));
  }
  return out;
}

std::optional<std::int64_t> Scheduler::next_wakeup(std::int64_t now) const {
  std::optional<std::int64_t> at;
  auto consider = [&](std::int64_t t) {
    if (!at || t < *at) at = t;
  };
  for (const auto& [id, c] : conns_)
    if (c.state == Conn::State::Idle && !c.quitting && c.idle_since)
      consider(*c.idle_since + us(params_.idle_linger));
  for (const auto& [route, q] : routes_) {
    if (q.empty()) continue;
    for (const auto& name : route) {
      const Up* u = find(name);
      if (!u || !u->spec.usable) continue;
      if (suspended(*u, now)) {
        consider(*u->suspended_until);
        continue;
      }
      // Its upstream is usable: held for a rate window, or waiting for a
      // connection (an event, not a time).
      std::int64_t free_at = now;
      if (rate_room(*u, now, &free_at, q.front().w.recipients) == 0) consider(free_at);
      break;
    }
  }
  return at;
}

AfterAttempt Scheduler::after_attempt(const DueWork& w, bool upstream_fault, std::int64_t now) {
  AfterAttempt a;
  if (!upstream_fault) {
    RetryDecision d = next_attempt(params_.retry, w.attempts + 1, w.created, now, random01_());
    a.expired = d.expired();
    a.next = d.at;
    return a;
  }
  // The upstream, not the message, failed: the message waits for its route
  // (failover when another upstream is usable now), never past its lifetime.
  const std::int64_t deadline = w.created + us(params_.retry.lifetime);
  if (now >= deadline) {
    a.expired = true;
    return a;
  }
  std::optional<std::int64_t> route_at;
  for (const auto& name : w.route) {
    const Up* u = find(name);
    if (!u || !u->spec.usable) continue;
    std::int64_t at = suspended(*u, now) ? *u->suspended_until : now;
    if (!route_at || at < *route_at) route_at = at;
  }
  a.next = std::min(route_at.value_or(now + us(params_.retry.initial)), deadline);
  a.failover = route_at && *route_at <= now;
  return a;
}

std::vector<std::string> Scheduler::drain() {
  std::vector<std::string> ids;
  std::vector<Waiting> all;
  for (auto& [route, q] : routes_)
    for (auto& e : q) all.push_back(std::move(e));
  std::sort(all.begin(), all.end(), [](const Waiting& a, const Waiting& b) { return a.seq < b.seq; });
  for (auto& e : all) ids.push_back(std::move(e.w.id));
  routes_.clear();
  waiting_count_ = 0;
  return ids;
}

std::vector<UpstreamState> Scheduler::take_changed(std::int64_t now) {
  std::vector<UpstreamState> out;
  for (const auto& name : changed_)
    if (auto s = state(name)) {
      s->updated = now;
      out.push_back(std::move(*s));
    }
  changed_.clear();
  return out;
}

std::optional<UpstreamState> Scheduler::state(std::string_view name) const {
  const Up* u = find(name);
  if (!u) return std::nullopt;
  UpstreamState s;
  s.name = u->spec.name;
  s.suspended_until = u->suspended_until;
  s.reason = u->reason;
  s.failures = u->failures;
  s.stage = u->stage;
  s.last_reply = u->last_reply;
  return s;
}

std::size_t Scheduler::open_connections(std::string_view name) const {
  const Up* u = find(name);
  return u ? u->opening + u->idle + u->busy : 0;
}

}  // namespace outbox::queue
