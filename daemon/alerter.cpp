#include "daemon/alerter.h"

#include <cerrno>
#include <cstring>
#include <ctime>
#include <set>

#include "daemon/http_client.h"
#include "daemon/logging.h"
#include "daemon/hook_command.h"
#include "queue/spool.h"
#include "queue/thread_role.h"

namespace outbox::daemon {

namespace {

std::int64_t wall_now() { return static_cast<std::int64_t>(std::time(nullptr)); }

std::set<AlertKind> kinds_of(const AlertConfig& c) {
  std::set<AlertKind> out;
  if (c.events.empty()) return {std::begin(kAllAlertKinds), std::end(kAllAlertKinds)};
  for (const auto& e : c.events)
    if (auto k = alert_kind_of(e)) out.insert(*k);
  return out;
}

std::unique_ptr<AlertBook> book_for(const AlertConfig& c) {
  AlertBook::Params p;
  p.max_per_hour = c.max_per_hour;
  return std::make_unique<AlertBook>(kinds_of(c), p);
}

std::string duration_words(std::int64_t s) {
  if (s >= 86400) return std::to_string(s / 86400) + "d" + (s % 86400 >= 3600 ? std::to_string(s % 86400 / 3600) + "h" : "");
  if (s >= 3600) return std::to_string(s / 3600) + "h" + (s % 3600 >= 60 ? std::to_string(s % 3600 / 60) + "m" : "");
  if (s >= 60) return std::to_string(s / 60) + "m";
  return std::to_string(s) + "s";
}

}  // namespace

Alerter::Alerter(std::string host, std::string spool_path, std::function<std::int64_t()> now,
                 std::chrono::milliseconds age_check)
    : host_(std::move(host)), spool_path_(std::move(spool_path)), now_(now ? std::move(now) : wall_now),
      age_check_(age_check), next_age_check_(std::chrono::steady_clock::now() + age_check),
      thread_([this] { loop(); }) {}

Alerter::~Alerter() {
  std::size_t dropped = 0;
  {
    std::lock_guard l(mu_);
    stopping_ = true;
    dropped = jobs_.size();
  }
  cv_.notify_all();
  thread_.join();
  if (dropped) log::warn(log::Line("alert_dropped").kv("count", dropped).kv("reason", "outboxd stopping"));
}

void Alerter::configure(const std::vector<AlertConfig>& hooks) {
  std::lock_guard l(mu_);
  std::vector<Hook> next;
  for (const auto& c : hooks) {
    Hook h{c, nullptr};
    for (auto& old : hooks_)
      if (old.cfg == c && old.book) h.book = std::move(old.book);
    if (!h.book) h.book = book_for(c);
    next.push_back(std::move(h));
  }
  hooks_ = std::move(next);
  next_age_check_ = std::min(next_age_check_, std::chrono::steady_clock::now() + std::chrono::seconds(1));
  cv_.notify_all();
}

void Alerter::raise(Alert a) {
  if (a.time == 0) a.time = now_();
  std::lock_guard l(mu_);
  if (stopping_) return;
  for (auto& h : hooks_) {
    const auto decision = h.book->raise(a.kind, a.subject, a.time);
    if (h.book->open_incidents() > 0) any_open_.store(true, std::memory_order_release);
    switch (decision) {
      case AlertBook::Decision::Send:
        jobs_.push_back(Job{h.cfg, std::string(alert_kind_name(a.kind)), a.subject,
                            alert_json(a, host_, h.book->take_suppressed())});
        break;
      case AlertBook::Decision::RateLimited:
        log::warn(log::Line("alert_suppressed").kv("alert", h.cfg.name).kv("kind", alert_kind_name(a.kind))
                      .kv("subject", a.subject).kv("max_per_hour", h.cfg.max_per_hour));
        break;
      case AlertBook::Decision::Duplicate:
      case AlertBook::Decision::NotSubscribed:
        break;
    }
  }
  cv_.notify_all();
}

void Alerter::resolve(AlertKind k, const std::string& subject) {
  if (!any_open_.load(std::memory_order_acquire)) return;
  std::lock_guard l(mu_);
  bool any = false, still_open = false;
  for (auto& h : hooks_) {
    any = h.book->resolve(k, subject) || any;
    still_open = still_open || h.book->open_incidents() > 0;
  }
  any_open_.store(still_open, std::memory_order_release);
  if (any) log::info(log::Line("alert_resolved").kv("kind", alert_kind_name(k)).kv("subject", subject));
}

void Alerter::spool_error(const std::string& op, const std::string& error) {
  Alert a;
  a.kind = AlertKind::SpoolError;
  a.summary = "a spool write failed (" + op + "): " + error;
  a.hint = "mail is refused with 451 or kept for a later write: check the disk (df, dmesg) and the spool's "
           "permissions";
  a.details = {{"op", op}, {"error", error}};
  raise(std::move(a));
}

void Alerter::check_queue_age() {
  std::chrono::seconds threshold{0};
  {
    std::lock_guard l(mu_);
    for (const auto& h : hooks_) {
      auto kinds = kinds_of(h.cfg);
      if (kinds.count(AlertKind::QueueAge) && (threshold.count() == 0 || h.cfg.oldest_waiting < threshold))
        threshold = h.cfg.oldest_waiting;
    }
  }
  if (threshold.count() == 0 || spool_path_.empty()) return;
  std::optional<std::int64_t> oldest;
  try {
    // A connection of its own, opened per check: the spool may not exist
    // yet at start, and a minute-old handle buys nothing.
    auto spool = queue::Spool::open(spool_path_, queue::Spool::Mode::ReadOnly);
    oldest = spool->oldest_waiting();
  } catch (const std::exception& e) {
    log::warn(log::Line("alert_error").kv("op", "queue age").kv("error", e.what()));
    return;
  }
  const std::int64_t now = now_();
  const std::int64_t age = oldest ? now - *oldest / 1'000'000 : 0;
  // Each hook has its own threshold: raise for those it exceeds, clear the rest.
  std::vector<AlertConfig> hooks;
  {
    std::lock_guard l(mu_);
    for (const auto& h : hooks_) hooks.push_back(h.cfg);
  }
  bool over_any = false;
  for (const auto& h : hooks) over_any = over_any || (oldest && age >= h.oldest_waiting.count());
  if (!over_any) {
    resolve(AlertKind::QueueAge, "");
    return;
  }
  std::lock_guard l(mu_);
  for (auto& h : hooks_) {
    if (!oldest || age < h.cfg.oldest_waiting.count()) {
      h.book->resolve(AlertKind::QueueAge, "");
      continue;
    }
    Alert a;
    a.kind = AlertKind::QueueAge;
    a.summary = "the oldest waiting message has waited " + duration_words(age) + " (threshold " +
                duration_words(h.cfg.oldest_waiting.count()) + ")";
    a.hint = "see `outboxctl queue --state deferred` and `outboxctl upstreams` for why mail is not leaving";
    a.details = {{"age_s", std::to_string(age)}, {"threshold_s", std::to_string(h.cfg.oldest_waiting.count())}};
    a.time = now;
    const auto decision = h.book->raise(a.kind, a.subject, now);
    if (h.book->open_incidents() > 0) any_open_.store(true, std::memory_order_release);
    if (decision == AlertBook::Decision::Send) {
      log::warn(log::Line("queue_age").kv("age_s", age).kv("threshold_s", h.cfg.oldest_waiting.count()));
      jobs_.push_back(Job{h.cfg, "queue_age", "", alert_json(a, host_, h.book->take_suppressed())});
    }
  }
}

void Alerter::deliver(const Job& j) {
  std::string error;
  long status = 0;
  if (!j.hook.url.empty()) {
    http::Options o;
    o.ca_file = j.hook.ca_file;
    o.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(j.hook.timeout);
    o.connect_timeout = std::min(o.timeout, std::chrono::milliseconds(10000));
    o.allow_http = true;   // the loader allows http:// only to loopback
    o.max_body = 64 * 1024;
    http::Response r = http::post(j.hook.url, "application/json", j.body, o);
    status = r.status;
    if (!r.transport_error.empty()) error = r.transport_error;
    else if (r.status < 200 || r.status > 299) error = "HTTP status " + std::to_string(r.status);
  } else {
    error = run_alert_command(j.hook.command, j.body,
                              std::chrono::duration_cast<std::chrono::milliseconds>(j.hook.timeout));
  }
  if (error.empty()) {
    sent_.fetch_add(1);
    log::Line l("alert_sent");
    l.kv("alert", j.hook.name).kv("kind", j.kind).kv("subject", j.subject);
    if (status) l.kv("status", status);
    log::info(l);
  } else {
    log::error(log::Line("alert_failed").kv("alert", j.hook.name).kv("kind", j.kind).kv("subject", j.subject)
                   .kv("error", error));
  }
}

void Alerter::loop() {
  queue::set_thread_role("alerter", queue::ThreadRole::Latency);
  for (;;) {
    Job job;
    bool have = false, age = false;
    {
      std::unique_lock l(mu_);
      // next_age_check_ is read again after every wake-up: configure() may
      // have brought it forward.
      while (!stopping_ && jobs_.empty() && std::chrono::steady_clock::now() < next_age_check_)
        cv_.wait_until(l, next_age_check_);
      if (stopping_) return;
      if (!jobs_.empty()) {
        job = std::move(jobs_.front());
        jobs_.pop_front();
        have = true;
      } else if (std::chrono::steady_clock::now() >= next_age_check_) {
        age = true;
        // Every age_check, or twice per threshold when that is shorter (a
        // 2 s threshold in a test), never more than once a second.
        auto every = age_check_;
        for (const auto& h : hooks_)
          if (kinds_of(h.cfg).count(AlertKind::QueueAge))
            every = std::min(every, std::max<std::chrono::milliseconds>(std::chrono::seconds(1),
                                                                        h.cfg.oldest_waiting / 2));
        next_age_check_ = std::chrono::steady_clock::now() + every;
      }
    }
    try {
      if (age) check_queue_age();
      if (have) deliver(job);
    } catch (const std::exception& e) {
      log::error(log::Line("alert_error").kv("error", e.what()));
    }
  }
}

}  // namespace outbox::daemon
