// outboxd's OAuth2 thread (daemon/oauth2_refresher.h) with a real token
// store in a temp directory and a token endpoint on a loopback port nothing
// listens on (a refresh there is a real connection refusal, not a mock):
// the cached token is handed out without a request, a refused token or an
// expired one makes a request whose outage is Transient (mail waits), no
// login means NeedsLogin, the idle pass refreshes only what is due, and a
// cancelled refresher answers at once without touching the store.
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <condition_variable>
#include <mutex>
#include <vector>

#include "daemon/oauth2/token_store.h"
#include "daemon/oauth2_refresher.h"
#include "unit/common/free_port.h"
#include "unit/common/temp_dir.h"

using namespace outbox;
using namespace std::chrono_literals;
using outbox::test::TempDir;
// A port with nothing listening: the upstream the refresher cannot reach.
using outbox::test::free_port;

namespace {

UpstreamConfig upstream(const std::string& name, std::uint16_t port) {
  UpstreamConfig u;
  u.name = name;
  u.host = "127.0.0.1";
  u.username = "ops@example.test";
  u.auth = "oauth2";
  u.oauth2.client_id = "outbox-test";
  u.oauth2.token_url = "https://127.0.0.1:" + std::to_string(port) + "/token";
  u.oauth2.scope = "smtp";
  u.timeout = std::chrono::seconds(5);
  u.connect_timeout = std::chrono::seconds(5);
  return u;
}

oauth2::TokenSet tokens(const UpstreamConfig& u, std::int64_t now, std::int64_t expires_in,
                        std::int64_t last_refresh_ago) {
  oauth2::TokenSet t;
  t.account = u.username;
  t.client_id = u.oauth2.client_id;
  t.token_url = u.oauth2.token_url;
  t.login_method = "device";
  t.scope = "smtp";
  t.access_token = "AT-cached";
  t.access_issued_at = now - 10;
  t.access_expires_at = now + expires_in;
  t.refresh_token = "RT-stored";
  t.refresh_issued_at = now - last_refresh_ago;
  t.login_at = now - last_refresh_ago;
  t.last_refresh = now - last_refresh_ago;
  return t;
}

// The loop's stand-in: posted completions run on the test's thread.
struct Inbox {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::function<void()>> posted;
  daemon::OAuth2Refresher::Poster poster() {
    return [this](std::function<void()> fn) {
      std::lock_guard l(mu);
      posted.push_back(std::move(fn));
      cv.notify_all();
    };
  }
  // Runs what was posted until `results` has n entries.
  void run_until(const std::vector<daemon::OAuth2Refresher::Result>& results, std::size_t n) {
    const auto until = std::chrono::steady_clock::now() + 20s;
    while (results.size() < n) {
      std::vector<std::function<void()>> batch;
      {
        std::unique_lock l(mu);
        cv.wait_until(l, until, [&] { return !posted.empty(); });
        REQUIRE(!posted.empty());
        batch.swap(posted);
      }
      for (auto& f : batch) f();
    }
  }
};

}  // namespace

TEST_CASE("refresher: a fresh stored token is handed out without asking the token endpoint") {
  TempDir dir;
  auto u = upstream("mail", free_port());
  const auto now = oauth2::wall_clock_now();
  const auto stored = tokens(u, now, 3600, 60);
  oauth2::store::save(oauth2::store::path_for(dir.path(), "mail"), stored);
  Inbox in;
  std::vector<daemon::OAuth2Refresher::Result> got;
  {
    daemon::OAuth2Refresher r(in.poster(), dir.path(), {}, 1h, 1h);
    r.fetch(u, std::nullopt, [&](daemon::OAuth2Refresher::Result x) { got.push_back(std::move(x)); });
    in.run_until(got, 1);
  }
  REQUIRE(got[0].got.ok);
  CHECK(got[0].upstream == "mail");
  CHECK(got[0].got.access_token == "AT-cached");
  CHECK_FALSE(got[0].got.requested);
  CHECK(got[0].got.plan.reason == oauth2::Reason::Fresh);
  CHECK(got[0].fingerprint == oauth2::fingerprint("AT-cached"));
}

TEST_CASE("refresher: the upstream refused this token -> a refresh; the endpoint down -> Transient, store kept") {
  TempDir dir;
  auto u = upstream("mail", free_port());
  const auto now = oauth2::wall_clock_now();
  const auto path = oauth2::store::path_for(dir.path(), "mail");
  oauth2::store::save(path, tokens(u, now, 3600, 60));
  Inbox in;
  std::vector<daemon::OAuth2Refresher::Result> got;
  {
    daemon::OAuth2Refresher r(in.poster(), dir.path(), {}, 1h, 1h);
    r.fetch(u, oauth2::fingerprint("AT-cached"), [&](daemon::OAuth2Refresher::Result x) { got.push_back(std::move(x)); });
    // A token the upstream refused earlier, not this one: still good.
    r.fetch(u, oauth2::fingerprint("AT-older"), [&](daemon::OAuth2Refresher::Result x) { got.push_back(std::move(x)); });
    in.run_until(got, 2);
  }
  REQUIRE_FALSE(got[0].got.ok);
  CHECK(got[0].got.plan.reason == oauth2::Reason::Rejected);
  REQUIRE(got[0].got.failure);
  CHECK(got[0].got.failure->kind == oauth2::FailureKind::Transient);
  CHECK(got[0].got.failure->cause == oauth2::Cause::Network);
  CHECK(got[1].got.ok);
  CHECK(got[1].got.access_token == "AT-cached");
  // A failed refresh never loses the refresh token.
  auto after = oauth2::store::load(path);
  REQUIRE(after);
  CHECK(after->refresh_token == "RT-stored");
}

TEST_CASE("refresher: nothing stored -> NeedsLogin naming the login command") {
  TempDir dir;
  auto u = upstream("mail", free_port());
  Inbox in;
  std::vector<daemon::OAuth2Refresher::Result> got;
  {
    daemon::OAuth2Refresher r(in.poster(), dir.path(), {}, 1h, 1h);
    r.fetch(u, std::nullopt, [&](daemon::OAuth2Refresher::Result x) { got.push_back(std::move(x)); });
    in.run_until(got, 1);
  }
  REQUIRE(got[0].got.failure);
  CHECK(got[0].got.failure->kind == oauth2::FailureKind::NeedsLogin);
  CHECK(got[0].got.failure->fix.find("outboxctl oauth2 login mail") != std::string::npos);
  CHECK_FALSE(got[0].got.requested);
}

TEST_CASE("refresher: the idle pass refreshes only the upstreams whose last refresh is older than the policy") {
  TempDir dir;
  const auto port = free_port();
  auto idle = upstream("idle", port);
  auto busy = upstream("busy", port);
  const auto now = oauth2::wall_clock_now();
  oauth2::store::save(oauth2::store::path_for(dir.path(), "idle"), tokens(idle, now, 3600, 4 * 86400));
  oauth2::store::save(oauth2::store::path_for(dir.path(), "busy"), tokens(busy, now, 3600, 3600));
  Inbox in;
  std::vector<daemon::OAuth2Refresher::Result> got;
  {
    daemon::OAuth2Refresher r(in.poster(), dir.path(), {}, 1h, 50ms);
    r.set_upstreams({busy, idle}, [&](daemon::OAuth2Refresher::Result x) { got.push_back(std::move(x)); });
    in.run_until(got, 1);
  }
  // Only the idle account asked (and met the outage); the busy one had nothing due.
  REQUIRE(got.size() == 1);
  CHECK(got[0].upstream == "idle");
  CHECK(got[0].got.plan.reason == oauth2::Reason::Idle);
  REQUIRE(got[0].got.failure);
  CHECK(got[0].got.failure->kind == oauth2::FailureKind::Transient);
}

TEST_CASE("refresher: after cancel() every request is answered at once as a shutdown, never NeedsLogin") {
  TempDir dir;
  auto u = upstream("mail", free_port());
  Inbox in;
  std::vector<daemon::OAuth2Refresher::Result> got;
  {
    daemon::OAuth2Refresher r(in.poster(), dir.path(), {}, 1h, 1h);
    r.cancel();
    r.fetch(u, std::nullopt, [&](daemon::OAuth2Refresher::Result x) { got.push_back(std::move(x)); });
    in.run_until(got, 1);
  }
  REQUIRE(got[0].got.failure);
  CHECK(got[0].got.failure->kind == oauth2::FailureKind::Transient);
  CHECK(got[0].got.failure->error == "stopping");
}
