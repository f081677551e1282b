#include "daemon/upstream_tokens.h"

#include "daemon/logging.h"
#include "daemon/relay_guard.h"

namespace outbox::daemon {

UpstreamTokens::UpstreamTokens(uv_loop_t* loop, std::string store_dir, CurrentUpstreams current,
                               std::optional<IdleTiming> idle)
    : loop_(loop), store_dir_(std::move(store_dir)), current_(std::move(current)), idle_(idle) {}

UpstreamTokens::~UpstreamTokens() {
  // Before the members: the refresher's join and the poster's close may
  // still run answers, which must find us gone.
  *alive_ = false;
  alive_.reset();
}

void UpstreamTokens::configure() {
  if (stopping_) return;
  std::vector<UpstreamConfig> ups;
  for (const UpstreamConfig* u : current_())
    if (u->auth == "oauth2") ups.push_back(*u);
  if (ups.empty() && !refresher_) return;
  if (!refresher_) {
    poster_ = std::make_unique<LoopPoster>(loop_);
    OAuth2Refresher::Poster post = [p = poster_.get()](std::function<void()> fn) { p->post(std::move(fn)); };
    refresher_ = idle_ ? std::make_unique<OAuth2Refresher>(std::move(post), store_dir_, oauth2::Policy{}, idle_->check,
                                                           idle_->first)
                       : std::make_unique<OAuth2Refresher>(std::move(post), store_dir_);
  }
  std::weak_ptr<bool> alive = alive_;
  refresher_->set_upstreams(std::move(ups), [this, alive](Result r) {
    if (alive.expired()) return;
    guard("oauth2 idle refresh", [&] { report(r, "idle"); });
  });
}

void UpstreamTokens::report(const Result& r, const char* why_requested) const {
  const oauth2::Obtained& g = r.got;
  if (g.ok) {
    if (!g.requested) return;
    log::info(log::Line("oauth2_refreshed").kv("upstream", r.upstream).kv("reason", why_requested)
                  .kv("expires_in_s", g.tokens.access_expires_at - oauth2::wall_clock_now())
                  .kv("refresh_token", g.rotated ? "rotated" : "kept"));
    return;
  }
  const oauth2::Failure& f = *g.failure;
  log::Line l("oauth2_refresh_failed");
  l.kv("upstream", r.upstream).kv("cause", oauth2::cause_name(f.cause)).kv("error", f.error).kv("reason", f.text);
  if (!f.detail.empty()) l.kv("detail", f.detail);
  l.kv("hint", f.fix);
  if (f.kind == oauth2::FailureKind::Transient) log::warn(l); else log::error(l);
}

void UpstreamTokens::fetch(const UpstreamConfig& u, Done done) {
  std::optional<std::uint64_t> rejected;
  if (auto it = rejected_.find(u.name); it != rejected_.end()) rejected = it->second;
  if (!refresher_) configure();
  std::weak_ptr<bool> alive = alive_;
  auto wrapped = [this, alive, done = std::move(done)](Result r) {
    // From the LoopPoster: a noexcept boundary.
    if (alive.expired()) return;
    guard("oauth2 token", [&] {
      if (r.got.ok) {
        auto it = rejected_.find(r.upstream);
        if (it != rejected_.end() && it->second != r.fingerprint) rejected_.erase(it);
      }
      report(r, r.got.requested ? std::string(oauth2::reason_name(r.got.plan.reason)).c_str() : "");
      done(std::move(r));
    });
  };
  if (!refresher_) {   // stopping: no thread any more
    Result r;
    r.upstream = u.name;
    r.got.failure = oauth2::Failure{oauth2::FailureKind::Transient, oauth2::Cause::Other, "stopping",
                                    "", "outboxd is shutting down", "the mail waits for the next start"};
    wrapped(std::move(r));
    return;
  }
  refresher_->fetch(u, rejected, std::move(wrapped));
}

void UpstreamTokens::rejected(const std::string& upstream, std::uint64_t fingerprint) {
  rejected_[upstream] = fingerprint;
}

void UpstreamTokens::cancel() {
  stopping_ = true;
  if (refresher_) refresher_->cancel();
}

void UpstreamTokens::shutdown() {
  stopping_ = true;
  refresher_.reset();
  if (poster_) poster_->close();
}

}  // namespace outbox::daemon
