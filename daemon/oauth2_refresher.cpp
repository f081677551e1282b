#include "daemon/oauth2_refresher.h"

#include "queue/thread_role.h"

namespace outbox::daemon {

namespace {

OAuth2Refresher::Result stopped(const UpstreamConfig& u) {
  OAuth2Refresher::Result r;
  r.upstream = u.name;
  oauth2::Failure f;
  f.kind = oauth2::FailureKind::Transient;
  f.cause = oauth2::Cause::Other;
  f.error = "stopping";
  f.text = "outboxd is shutting down";
  f.fix = "the mail waits for the next start";
  r.got.failure = f;
  return r;
}

}  // namespace

OAuth2Refresher::OAuth2Refresher(Poster post, std::string store_dir, oauth2::Policy policy,
                                 std::chrono::seconds idle_check, std::chrono::milliseconds first_idle)
    : post_(std::move(post)), store_dir_(std::move(store_dir)), policy_(policy), idle_check_(idle_check),
      next_idle_(std::chrono::steady_clock::now() + first_idle), thread_([this] { loop(); }) {}

OAuth2Refresher::~OAuth2Refresher() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cancel_ = true;
  cv_.notify_all();
  thread_.join();
}

void OAuth2Refresher::cancel() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cancel_ = true;
  cv_.notify_all();
}

void OAuth2Refresher::fetch(const UpstreamConfig& u, std::optional<std::uint64_t> rejected, Done done) {
  {
    std::lock_guard lock(mu_);
    if (!stopping_) {
      queue_.push_back(Request{u, rejected, std::move(done)});
      cv_.notify_one();
      return;
    }
  }
  post_([done = std::move(done), r = stopped(u)]() mutable { done(std::move(r)); });
}

void OAuth2Refresher::set_upstreams(std::vector<UpstreamConfig> upstreams, Done on_idle) {
  std::lock_guard lock(mu_);
  upstreams_ = std::move(upstreams);
  on_idle_ = std::move(on_idle);
  cv_.notify_one();
}

void OAuth2Refresher::idle_pass() {
  std::vector<UpstreamConfig> ups;
  Done on_idle;
  {
    std::lock_guard lock(mu_);
    ups = upstreams_;
    on_idle = on_idle_;
  }
  for (const auto& u : ups) {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
    }
    oauth2::Request req;
    req.mode = oauth2::Mode::Idle;
    req.policy = policy_;
    req.cancel = &cancel_;
    Result r;
    r.upstream = u.name;
    try {
      r.got = oauth2::obtain(u, store_dir_, req);
    } catch (const std::exception& e) {
      r.got.failure = oauth2::Failure{oauth2::FailureKind::Transient, oauth2::Cause::Other, "internal", e.what(),
                                      e.what(), ""};
    }
    if (!r.got.requested && r.got.ok) continue;   // nothing was due
    r.fingerprint = oauth2::fingerprint(r.got.access_token);
    if (on_idle) post_([on_idle, r = std::move(r)]() mutable { on_idle(std::move(r)); });
  }
}

void OAuth2Refresher::loop() {
  queue::set_thread_role("oauth2", queue::ThreadRole::Latency);
  for (;;) {
    Request req;
    bool have = false, idle = false;
    {
      std::unique_lock lock(mu_);
      cv_.wait_until(lock, next_idle_, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) {
        // What still waits is answered: outboxd is stopping.
        for (auto& q : queue_)
          post_([done = std::move(q.done), r = stopped(q.upstream)]() mutable { done(std::move(r)); });
        queue_.clear();
        return;
      }
      if (!queue_.empty()) {
        req = std::move(queue_.front());
        queue_.pop_front();
        have = true;
      } else if (std::chrono::steady_clock::now() >= next_idle_) {
        idle = true;
        next_idle_ = std::chrono::steady_clock::now() + idle_check_;
      }
    }
    if (idle) idle_pass();
    if (!have) continue;
    Result r;
    r.upstream = req.upstream.name;
    oauth2::Request q;
    q.mode = oauth2::Mode::Delivery;
    q.rejected = req.rejected;
    q.policy = policy_;
    q.cancel = &cancel_;
    try {
      r.got = oauth2::obtain(req.upstream, store_dir_, q);
    } catch (const std::exception& e) {
      r.got.failure = oauth2::Failure{oauth2::FailureKind::Transient, oauth2::Cause::Other, "internal", e.what(),
                                      e.what(), ""};
    }
    r.fingerprint = oauth2::fingerprint(r.got.access_token);
    post_([done = std::move(req.done), r = std::move(r)]() mutable { done(std::move(r)); });
  }
}

}  // namespace outbox::daemon
