// UpstreamTokens: the relay's side of outbox's own OAuth2 (auth = "oauth2"),
// docs/design/relay-engine.md. A delivery asks it for an access token and
// tells it when the upstream refused one; the token endpoint is never asked
// on the loop but on the OAuth2 thread (daemon/oauth2_refresher.h), made at
// the first configuration that has an oauth2 upstream, so a daemon without
// one runs no such thread. It also says what happened at the token endpoint:
// the oauth2_refreshed and oauth2_refresh_failed lines (SPEC, log events).
//
// One thread (the relay's loop). Every answer comes back on the loop through
// a LoopPoster of its own and runs inside the relay's noexcept boundary
// (daemon/relay_guard.h). Tested against a real token store and a local
// HTTPS token endpoint in tests/unit/daemon/test_upstream_tokens.cpp.
#pragma once
#include <uv.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "daemon/config.h"
#include "daemon/loop_poster.h"
#include "daemon/oauth2_refresher.h"

namespace outbox::daemon {

class UpstreamTokens {
 public:
  using Result = OAuth2Refresher::Result;
  using Done = std::function<void(Result)>;
  // The running configuration generation's upstreams (all of them; the
  // oauth2 ones are picked here). Asked at each configure().
  using CurrentUpstreams = std::function<std::vector<const UpstreamConfig*>()>;
  // The idle refresh's schedule; unset: OAuth2Refresher's own (tests want
  // an idle pass within a second, outboxd not before its first deliveries).
  struct IdleTiming {
    std::chrono::seconds check;
    std::chrono::milliseconds first;
  };

  // store_dir: the token store (oauth2::store::dir_for_spool).
  UpstreamTokens(uv_loop_t* loop, std::string store_dir, CurrentUpstreams current,
                 std::optional<IdleTiming> idle = std::nullopt);
  ~UpstreamTokens();
  UpstreamTokens(const UpstreamTokens&) = delete;
  UpstreamTokens& operator=(const UpstreamTokens&) = delete;

  // A new generation (start, reload): its oauth2 upstreams are the idle
  // refresh's. Makes the thread at the first one.
  void configure();
  // The access token for `u`, to `done` on the loop (logged first). A token
  // the upstream refused is refreshed, not handed out again. Once stopping
  // (or without an oauth2 upstream to make the thread for), `done` gets a
  // Transient "stopping" failure at once: the mail waits, nothing bounces.
  void fetch(const UpstreamConfig& u, Done done);
  // The upstream refused the token with this fingerprint; remembered until
  // a fetch for it obtains a different one.
  void rejected(const std::string& upstream, std::uint64_t fingerprint);
  // outboxd is stopping: a token request in flight is aborted, later ones
  // answered "stopping".
  void cancel();
  // The relay has stopped: joins the thread, then runs its last answers and
  // closes the poster (which would otherwise keep the loop running).
  void shutdown();

 private:
  // oauth2_refreshed (when the endpoint was asked) or oauth2_refresh_failed.
  void report(const Result& r, const char* why_requested) const;

  uv_loop_t* loop_;
  const std::string store_dir_;
  CurrentUpstreams current_;
  const std::optional<IdleTiming> idle_;
  bool stopping_ = false;
  // The poster outlives the thread: the thread's last answers go through it.
  std::unique_ptr<LoopPoster> poster_;
  std::unique_ptr<OAuth2Refresher> refresher_;
  std::map<std::string, std::uint64_t> rejected_;   // upstream -> fingerprint of the refused token
  // Answers posted before our destruction but run after it (the poster's
  // close runs them) find this expired and do nothing.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace outbox::daemon
