#include "daemon/fleet_quota.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>

#include "daemon/logging.h"
#include "daemon/secret_file.h"

namespace outbox::daemon {

namespace {

std::string share_text(double share) {   // 0.5 -> "0.5"
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", share);
  return buf;
}

std::int64_t wall_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

FleetQuota::FleetQuota(uv_loop_t* loop, std::function<void(double)> share) : loop_(loop), share_(std::move(share)) {}

FleetQuota::~FleetQuota() { shutdown(); }

std::string FleetQuota::account_of(const UpstreamConfig& up) {
  return (up.maildir.empty() ? up.host : std::string("maildir")) + "|" + (up.username.empty() ? up.name : up.username);
}

void FleetQuota::configure(const QuotaConfig& q) {
  const std::string settings = q.store + "\n" + q.password_file + "\n" + std::to_string(q.timeout.count());
  cfg_ = q;
  if (settings == settings_) return;
  settings_ = settings;
  store_.reset();   // joins the old client: its answers are posted first
  if (degraded_) {
    degraded_ = false;
    share_(1.0);
  }
  if (q.store.empty()) return;
  auto target = parse_redis_url(q.store);
  if (!target) return;   // refused by the configuration loader
  std::string password;
  if (!q.password_file.empty()) {
    try {
      password = secret_file::read(q.password_file, "[quota] password_file");
      while (!password.empty() && (password.back() == '\n' || password.back() == '\r')) password.pop_back();
    } catch (const std::exception& e) {
      log::error(log::Line("quota_store_unreachable").kv("store", q.store).kv("error", e.what()));
    }
  }
  if (!poster_) poster_ = std::make_unique<LoopPoster>(loop_);
  if (host_id_.empty()) {
    char name[256] = {};
    ::gethostname(name, sizeof name - 1);
    host_id_ = std::string(name) + "-" + std::to_string(::getpid()) + "-" + std::to_string(wall_us());
  }
  store_ = std::make_unique<QuotaStore>(*target, std::move(password), q.timeout);
  log::info(log::Line("quota_store").kv("store", q.store).kv("fallback_share", share_text(q.fallback_share)));
}

void FleetQuota::reserve(const UpstreamConfig& up, std::vector<queue::RateWindow> windows, std::uint32_t recipients,
                         std::int64_t now, std::weak_ptr<bool> alive, std::function<void(QuotaAnswer)> done) {
  QuotaRequest r;
  r.account = account_of(up);
  r.windows = std::move(windows);
  r.now = now;
  r.recipients = std::max<std::uint32_t>(recipients, 1);
  r.member = host_id_ + ":" + std::to_string(++seq_) + ":" + std::to_string(r.recipients);
  LoopPoster* poster = poster_.get();
  store_->reserve(std::move(r), [this, poster, alive, done = std::move(done)](QuotaAnswer a) {
    poster->post([this, alive, done, a = std::move(a)]() mutable {
      if (alive.expired()) return;
      answered(a);
      done(std::move(a));
    });
  });
}

void FleetQuota::answered(const QuotaAnswer& a) {
  if (a.kind == QuotaAnswer::Kind::Unavailable) {
    if (degraded_) return;
    degraded_ = true;
    share_(cfg_.fallback_share);
    log::warn(log::Line("quota_store_unreachable").kv("store", cfg_.store).kv("error", a.error)
                  .kv("share", share_text(cfg_.fallback_share))
                  .kv("hint", "each upstream's limits are kept by this host alone, at this share, until the store "
                              "is back; mail is still accepted and delivered"));
  } else if (degraded_) {
    degraded_ = false;
    share_(1.0);
    log::info(log::Line("quota_store_restored").kv("store", cfg_.store));
  }
}

void FleetQuota::shutdown() {
  store_.reset();
  if (poster_) poster_->close();
  settings_.clear();
}

}  // namespace outbox::daemon
