// OAuth2Refresher: outboxd's OAuth2 thread. Token requests (a delivery of an
// auth = "oauth2" upstream needs an access token) and the idle refresh run
// here, never on the event loop: the token endpoint is HTTP over libcurl
// (daemon/oauth2/token_source.h) and may take seconds. Results go back
// through the injected Poster (the relay's LoopPoster; tests run it inline).
//
// The idle refresh: every `idle_check` the thread looks at each oauth2
// upstream of the current configuration and refreshes those whose last token
// request is older than Policy::idle_refresh (3 days), so a login without
// mail never reaches Microsoft's 90-day inactivity limit (AADSTS700082).
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "daemon/config.h"
#include "daemon/oauth2/token_source.h"

namespace outbox::daemon {

class OAuth2Refresher {
 public:
  using Poster = std::function<void(std::function<void()>)>;
  struct Result {
    std::string upstream;
    oauth2::Obtained got;                 // got.access_token: a secret, never logged
    std::uint64_t fingerprint = 0;        // of got.access_token
  };
  using Done = std::function<void(Result)>;

  // The first idle pass runs first_idle after the start (not at once: the
  // start's own deliveries ask for tokens first), then every idle_check.
  OAuth2Refresher(Poster post, std::string store_dir, oauth2::Policy policy = {},
                  std::chrono::seconds idle_check = std::chrono::hours(1),
                  std::chrono::milliseconds first_idle = std::chrono::seconds(10));
  ~OAuth2Refresher();   // joins the thread; requests not started complete with a failure
  OAuth2Refresher(const OAuth2Refresher&) = delete;
  OAuth2Refresher& operator=(const OAuth2Refresher&) = delete;

  // Any thread. The upstream is copied (a reload may free the original).
  // rejected: the fingerprint of a token the upstream refused.
  void fetch(const UpstreamConfig& u, std::optional<std::uint64_t> rejected, Done done);
  // The oauth2 upstreams of the current configuration, for the idle refresh;
  // on_idle gets each idle refresh that asked the token endpoint.
  void set_upstreams(std::vector<UpstreamConfig> upstreams, Done on_idle);
  // outboxd is stopping: a token request in flight is aborted (within a
  // second), and later ones fail at once.
  void cancel();

 private:
  struct Request {
    UpstreamConfig upstream;
    std::optional<std::uint64_t> rejected;
    Done done;
  };
  void loop();
  void idle_pass();

  Poster post_;
  const std::string store_dir_;
  const oauth2::Policy policy_;
  const std::chrono::seconds idle_check_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Request> queue_;
  std::vector<UpstreamConfig> upstreams_;
  Done on_idle_;
  bool stopping_ = false;
  std::atomic<bool> cancel_{false};
  std::chrono::steady_clock::time_point next_idle_;
  std::thread thread_;
};

}  // namespace outbox::daemon
