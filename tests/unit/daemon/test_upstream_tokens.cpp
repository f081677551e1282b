// The relay's OAuth2 glue (daemon/upstream_tokens.h) on a real libuv loop,
// with a real token store in a temp directory and a real token endpoint: a
// small HTTPS server on loopback (certificates from support/test_certs.h)
// that answers what the test scripts, so a refresh goes through libcurl,
// TLS and the lifecycle exactly as in outboxd. Checked: where and when
// `done` runs, the refused-token bookkeeping, the answers once stopping,
// the oauth2_refreshed / oauth2_refresh_failed lines and their levels, and
// the noexcept boundary and "alive" guard of the poster's callbacks.
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "daemon/oauth2/token_store.h"
#include "daemon/upstream_tokens.h"
#include "support/test_certs.h"
#include "unit/common/temp_dir.h"
#include "unit/daemon/log_capture.h"
#include "unit/daemon/run_loop.h"

using namespace outbox;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using daemon::UpstreamTokens;
using outbox::test::TempDir;

namespace {

// The token endpoint: one TLS connection at a time on 127.0.0.1, one
// request each. Scripted answers are given in order; after them every
// refresh succeeds with a new access token (AT-1, AT-2, ...), with a new
// refresh token when `rotate`.
class TokenEndpoint {
 public:
  struct Answer {
    int status = 200;
    std::string body;
  };

  explicit TokenEndpoint(const fs::path& dir)
      : ca_(testing::make_cert("outbox test CA", "", nullptr, true)),
        leaf_(testing::make_cert("localhost", "DNS:localhost,IP:127.0.0.1", &ca_, false)) {
    ca_file_ = (dir / "ca.pem").string();
    ca_.write(ca_file_, (dir / "ca.key").string());
    ctx_ = SSL_CTX_new(TLS_server_method());
    REQUIRE(SSL_CTX_use_certificate(ctx_, leaf_.cert) == 1);
    REQUIRE(SSL_CTX_use_PrivateKey(ctx_, leaf_.key) == 1);
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(fd_, 8) == 0);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~TokenEndpoint() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
    SSL_CTX_free(ctx_);
  }
  TokenEndpoint(const TokenEndpoint&) = delete;
  TokenEndpoint& operator=(const TokenEndpoint&) = delete;

  std::string url() const { return "https://127.0.0.1:" + std::to_string(port_) + "/token"; }
  const std::string& ca_file() const { return ca_file_; }
  void script(std::vector<Answer> answers) {
    std::lock_guard l(mu_);
    for (auto& a : answers) script_.push_back(std::move(a));
  }
  void set_rotate(bool rotate) { rotate_ = rotate; }
  std::vector<std::string> requests() {
    std::lock_guard l(mu_);
    return bodies_;
  }

 private:
  void serve() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) continue;
      timeval tv{5, 0};
      ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      SSL* ssl = SSL_new(ctx_);
      SSL_set_fd(ssl, c);
      if (SSL_accept(ssl) == 1) {
        answer(ssl);
        SSL_shutdown(ssl);
      }
      SSL_free(ssl);
      ::close(c);
    }
  }

  void answer(SSL* ssl) {
    std::string req;
    char buf[4096];
    auto read_more = [&] {
      int n = SSL_read(ssl, buf, sizeof buf);
      if (n > 0) req.append(buf, static_cast<std::size_t>(n));
      return n > 0;
    };
    while (req.find("\r\n\r\n") == std::string::npos)
      if (!read_more()) return;
    const std::size_t head = req.find("\r\n\r\n") + 4;
    std::size_t length = 0;
    std::string lower(req.substr(0, head));
    for (auto& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (auto at = lower.find("content-length:"); at != std::string::npos)
      length = std::strtoul(lower.c_str() + at + 15, nullptr, 10);
    while (req.size() < head + length)
      if (!read_more()) return;
    Answer a;
    {
      std::lock_guard l(mu_);
      bodies_.push_back(req.substr(head, length));
      if (!script_.empty()) {
        a = std::move(script_.front());
        script_.pop_front();
      } else {
        const std::string n = std::to_string(++issued_);
        a = {200, R"({"access_token":"AT-)" + n + R"(","token_type":"Bearer","expires_in":3600)" +
                      (rotate_ ? R"(,"refresh_token":"RT-)" + n + "\"" : std::string()) + "}"};
      }
    }
    const std::string out = "HTTP/1.1 " + std::to_string(a.status) +
                            " X\r\nContent-Type: application/json\r\nCache-Control: no-store\r\nContent-Length: " +
                            std::to_string(a.body.size()) + "\r\nConnection: close\r\n\r\n" + a.body;
    SSL_write(ssl, out.data(), static_cast<int>(out.size()));
  }

  testing::KeyCert ca_;
  testing::KeyCert leaf_;
  std::string ca_file_;
  SSL_CTX* ctx_ = nullptr;
  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<bool> rotate_{true};
  std::mutex mu_;
  std::deque<Answer> script_;
  std::vector<std::string> bodies_;
  int issued_ = 0;
  std::thread thread_;
};

UpstreamConfig upstream(const std::string& name, const TokenEndpoint& ep) {
  UpstreamConfig u;
  u.name = name;
  u.host = "127.0.0.1";
  u.username = "ops@example.test";
  u.auth = "oauth2";
  u.oauth2.client_id = "outbox-test";
  u.oauth2.token_url = ep.url();
  u.oauth2.scope = "smtp";
  u.oauth2.ca_file = ep.ca_file();
  u.timeout = std::chrono::seconds(5);
  u.connect_timeout = std::chrono::seconds(5);
  return u;
}

// What `outboxctl oauth2 login` leaves in the store: an hour's access token
// that expires in `expires_in` s, the last refresh `last_refresh_ago` s ago.
oauth2::TokenSet login(const UpstreamConfig& u, const std::string& access, std::int64_t expires_in,
                       std::int64_t last_refresh_ago = 60) {
  const auto now = oauth2::wall_clock_now();
  oauth2::TokenSet t;
  t.account = u.username;
  t.client_id = u.oauth2.client_id;
  t.token_url = u.oauth2.token_url;
  t.login_method = "device";
  t.scope = "smtp";
  t.access_token = access;
  t.access_expires_at = now + expires_in;
  t.access_issued_at = t.access_expires_at - 3600;   // an hour's token: refreshed in its last 5 minutes
  t.refresh_token = "RT-stored";
  t.refresh_issued_at = now - last_refresh_ago;
  t.login_at = now - last_refresh_ago;
  t.last_refresh = now - last_refresh_ago;
  return t;
}

// A loop, a token store and an UpstreamTokens whose generation is `ups`.
struct Rig {
  TempDir dir;
  TokenEndpoint endpoint{dir.path()};
  uv_loop_t loop;
  std::vector<UpstreamConfig> ups;
  std::unique_ptr<UpstreamTokens> tokens;
  std::vector<UpstreamTokens::Result> got;
  std::vector<std::thread::id> got_on;

  explicit Rig(std::optional<UpstreamTokens::IdleTiming> idle = std::nullopt) {
    daemon::test::log_capture().clear();
    fs::create_directory(dir.file("oauth2"));
    fs::permissions(dir.file("oauth2"), fs::perms::owner_all, fs::perm_options::replace);
    uv_loop_init(&loop);
    tokens = std::make_unique<UpstreamTokens>(&loop, dir.file("oauth2"), [this] {
      std::vector<const UpstreamConfig*> v;
      for (const auto& u : ups) v.push_back(&u);
      return v;
    }, idle);
  }
  ~Rig() {
    if (tokens) tokens->shutdown();
    tokens.reset();
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
  }
  void save(const UpstreamConfig& u, const oauth2::TokenSet& t) {
    oauth2::store::save(oauth2::store::path_for(dir.file("oauth2"), u.name), t);
  }
  void fetch(const UpstreamConfig& u) {
    tokens->fetch(u, [this](UpstreamTokens::Result r) {
      got.push_back(std::move(r));
      got_on.push_back(std::this_thread::get_id());
    });
  }
  bool wait_for(std::size_t n) {
    return daemon::test::run_loop_until(&loop, [&] { return got.size() >= n; }, 20s);
  }
  bool wait(const std::function<bool()>& pred) { return daemon::test::run_loop_until(&loop, pred, 20s); }
};

// The number after "expires_in_s=" in the first oauth2_refreshed line.
long expires_in_logged() {
  for (const auto& l : daemon::test::log_capture().lines()) {
    if (l.find("event=oauth2_refreshed") == std::string::npos) continue;
    auto at = l.find("expires_in_s=");
    if (at != std::string::npos) return std::strtol(l.c_str() + at + 13, nullptr, 10);
  }
  return -1;
}

}  // namespace

TEST_CASE("upstream tokens: a stored token goes to done on the loop's thread, after fetch returned, unlogged") {
  Rig rig;
  auto& log = daemon::test::log_capture();
  rig.ups = {upstream("mail", rig.endpoint)};
  rig.save(rig.ups[0], login(rig.ups[0], "AT-cached", 3600));
  rig.tokens->configure();
  rig.fetch(rig.ups[0]);
  CHECK(rig.got.empty());   // the answer comes from the OAuth2 thread, through the loop
  REQUIRE(rig.wait_for(1));
  CHECK(rig.got_on[0] == std::this_thread::get_id());
  REQUIRE(rig.got[0].got.ok);
  CHECK(rig.got[0].upstream == "mail");
  CHECK(rig.got[0].got.access_token == "AT-cached");
  CHECK(rig.got[0].fingerprint == oauth2::fingerprint("AT-cached"));
  CHECK_FALSE(rig.got[0].got.requested);
  CHECK(rig.endpoint.requests().empty());
  // Handing out a cached token is not news for the operator.
  CHECK(log.count({"event=oauth2_"}) == 0);
}

TEST_CASE("upstream tokens: a refused token's fingerprint goes with each fetch until a different token is obtained") {
  Rig rig;
  auto& log = daemon::test::log_capture();
  rig.ups = {upstream("mail", rig.endpoint)};
  const auto& u = rig.ups[0];
  rig.save(u, login(u, "AT-cached", 3600));
  rig.tokens->configure();
  rig.endpoint.script({{503, R"({"error":"temporarily_unavailable","error_description":"try later"})"}});
  rig.tokens->rejected("mail", oauth2::fingerprint("AT-cached"));

  // The cached token is still valid by its clock, yet refreshed: the
  // upstream refused it. The endpoint is down: a transient failure, a warning.
  rig.fetch(u);
  REQUIRE(rig.wait_for(1));
  REQUIRE_FALSE(rig.got[0].got.ok);
  CHECK(rig.got[0].got.plan.reason == oauth2::Reason::Rejected);
  CHECK(rig.got[0].got.failure->kind == oauth2::FailureKind::Transient);
  CHECK(rig.endpoint.requests().size() == 1);
  CHECK(rig.endpoint.requests()[0].find("grant_type=refresh_token") != std::string::npos);
  CHECK(log.count_at(spdlog::level::warn, {"event=oauth2_refresh_failed", "upstream=mail",
                                           "cause=temporarily_unavailable", "error=temporarily_unavailable",
                                           "detail=\"try later\"", "hint="}) == 1);
  CHECK(log.count({"event=oauth2_refreshed"}) == 0);

  // A failure obtained no token: the refusal still holds, so the next fetch
  // refreshes again, and this time gets a new token.
  rig.fetch(u);
  REQUIRE(rig.wait_for(2));
  REQUIRE(rig.got[1].got.ok);
  CHECK(rig.got[1].got.plan.reason == oauth2::Reason::Rejected);
  CHECK(rig.got[1].got.access_token == "AT-1");
  CHECK(rig.got[1].fingerprint == oauth2::fingerprint("AT-1"));
  CHECK(rig.endpoint.requests().size() == 2);
  CHECK(log.count_at(spdlog::level::info, {"event=oauth2_refreshed", "upstream=mail", "reason=rejected",
                                           "refresh_token=rotated"}) == 1);
  const long expires_in = expires_in_logged();
  CHECK(expires_in >= 3590);
  CHECK(expires_in <= 3600);

  // AT-1 differs from the refused token, so the refusal is forgotten: the
  // once-refused token, found in the store again, is handed out as it is,
  // where at the start the same store made a refresh.
  rig.save(u, login(u, "AT-cached", 3600));
  rig.fetch(u);
  REQUIRE(rig.wait_for(3));
  REQUIRE(rig.got[2].got.ok);
  CHECK(rig.got[2].got.access_token == "AT-cached");
  CHECK(rig.got[2].got.plan.reason == oauth2::Reason::Fresh);
  CHECK_FALSE(rig.got[2].got.requested);
  CHECK(rig.endpoint.requests().size() == 2);
}

TEST_CASE("upstream tokens: a refusal is per upstream, and the same token handed out again does not end it") {
  Rig rig;
  rig.ups = {upstream("a", rig.endpoint), upstream("b", rig.endpoint)};
  rig.save(rig.ups[0], login(rig.ups[0], "AT-a", 3600));
  rig.save(rig.ups[1], login(rig.ups[1], "AT-b", 3600));
  rig.tokens->configure();
  // The endpoint answers the refresh with the very token that was refused.
  rig.endpoint.script({{200, R"({"access_token":"AT-a","token_type":"Bearer","expires_in":3600})"}});
  rig.tokens->rejected("a", oauth2::fingerprint("AT-a"));
  rig.fetch(rig.ups[1]);   // b's token was never refused
  REQUIRE(rig.wait_for(1));
  CHECK(rig.got[0].got.ok);
  CHECK(rig.got[0].got.access_token == "AT-b");
  CHECK(rig.endpoint.requests().empty());
  rig.fetch(rig.ups[0]);
  REQUIRE(rig.wait_for(2));
  REQUIRE(rig.got[1].got.ok);
  CHECK(rig.got[1].got.plan.reason == oauth2::Reason::Rejected);
  CHECK(rig.got[1].got.access_token == "AT-a");
  CHECK(rig.endpoint.requests().size() == 1);
  rig.fetch(rig.ups[0]);   // no different token yet: refreshed again, now to AT-1
  REQUIRE(rig.wait_for(3));
  CHECK(rig.got[2].got.plan.reason == oauth2::Reason::Rejected);
  CHECK(rig.got[2].got.access_token == "AT-1");
  CHECK(rig.endpoint.requests().size() == 2);
}

TEST_CASE("upstream tokens: without an oauth2 upstream to run the thread for, fetch answers 'stopping' at once") {
  Rig rig;
  auto& log = daemon::test::log_capture();
  auto u = upstream("mail", rig.endpoint);
  rig.save(u, login(u, "AT-cached", 3600));
  rig.tokens->configure();   // the generation has no oauth2 upstream: no thread
  rig.fetch(u);
  // Answered inside fetch: there is no thread to answer later.
  REQUIRE(rig.got.size() == 1);
  CHECK(rig.got_on[0] == std::this_thread::get_id());
  REQUIRE(rig.got[0].got.failure);
  CHECK(rig.got[0].upstream == "mail");
  CHECK(rig.got[0].got.failure->kind == oauth2::FailureKind::Transient);
  CHECK(rig.got[0].got.failure->error == "stopping");
  CHECK(rig.endpoint.requests().empty());
  CHECK(log.count_at(spdlog::level::warn, {"event=oauth2_refresh_failed", "upstream=mail", "cause=other",
                                           "error=stopping", "reason=\"outboxd is shutting down\"",
                                           "hint=\"the mail waits for the next start\""}) == 1);
}

TEST_CASE("upstream tokens: after cancel, and after shutdown, fetch answers a Transient 'stopping' failure") {
  Rig rig;
  auto& log = daemon::test::log_capture();
  rig.ups = {upstream("mail", rig.endpoint)};
  const auto& u = rig.ups[0];
  rig.save(u, login(u, "AT-cached", 3600));
  rig.tokens->configure();
  rig.tokens->cancel();
  rig.tokens->configure();   // a reload while stopping changes nothing
  rig.fetch(u);
  REQUIRE(rig.wait_for(1));   // the cancelled thread answers, through the loop
  REQUIRE(rig.got[0].got.failure);
  CHECK(rig.got[0].got.failure->kind == oauth2::FailureKind::Transient);
  CHECK(rig.got[0].got.failure->error == "stopping");
  CHECK_FALSE(rig.got[0].got.ok);

  rig.tokens->shutdown();
  rig.fetch(u);
  REQUIRE(rig.got.size() == 2);   // no thread any more: at once
  CHECK(rig.got[1].got.failure->kind == oauth2::FailureKind::Transient);
  CHECK(rig.got[1].got.failure->error == "stopping");
  CHECK(rig.endpoint.requests().empty());
  CHECK(log.count_at(spdlog::level::warn, {"event=oauth2_refresh_failed", "upstream=mail", "error=stopping"}) == 2);
  // The poster is closed: nothing of ours keeps the loop running.
  CHECK(uv_run(&rig.loop, UV_RUN_NOWAIT) == 0);
}

TEST_CASE("upstream tokens: a refresh for an expiring token is logged with its reason; a refresh token kept says so") {
  Rig rig;
  auto& log = daemon::test::log_capture();
  rig.ups = {upstream("mail", rig.endpoint)};
  const auto& u = rig.ups[0];
  rig.save(u, login(u, "AT-old", 30));   // expires in 30 s: refreshed first
  rig.endpoint.set_rotate(false);
  rig.tokens->configure();
  rig.fetch(u);
  REQUIRE(rig.wait_for(1));
  REQUIRE(rig.got[0].got.ok);
  CHECK(rig.got[0].got.requested);
  CHECK(rig.got[0].got.access_token == "AT-1");
  CHECK(log.count_at(spdlog::level::info, {"event=oauth2_refreshed", "upstream=mail", "reason=expiring",
                                           "refresh_token=kept"}) == 1);
  rig.fetch(u);   // the new token is fresh: no request, no line
  REQUIRE(rig.wait_for(2));
  CHECK(rig.got[1].got.access_token == "AT-1");
  CHECK(rig.endpoint.requests().size() == 1);
  CHECK(log.count({"event=oauth2_"}) == 1);
}

TEST_CASE("upstream tokens: a dead login is an error line naming the cause and the fix, whether or not it was asked") {
  Rig rig;
  auto& log = daemon::test::log_capture();
  rig.ups = {upstream("mail", rig.endpoint), upstream("nologin", rig.endpoint)};
  rig.save(rig.ups[0], login(rig.ups[0], "AT-old", 30));
  rig.endpoint.script({{400, R"({"error":"invalid_grant","error_description":"Token has been expired or revoked."})"}});
  rig.tokens->configure();
  rig.fetch(rig.ups[0]);
  REQUIRE(rig.wait_for(1));
  REQUIRE(rig.got[0].got.failure);
  CHECK(rig.got[0].got.failure->kind == oauth2::FailureKind::NeedsLogin);
  CHECK(log.count_at(spdlog::level::err, {"event=oauth2_refresh_failed", "upstream=mail", "cause=revoked",
                                          "error=invalid_grant", "detail=\"Token has been expired or revoked.\"",
                                          "outboxctl oauth2 login mail"}) == 1);
  // Nothing stored: the endpoint is not asked, the failure is logged all the same.
  rig.fetch(rig.ups[1]);
  REQUIRE(rig.wait_for(2));
  CHECK_FALSE(rig.got[1].got.requested);
  CHECK(rig.endpoint.requests().size() == 1);
  CHECK(log.count_at(spdlog::level::err, {"event=oauth2_refresh_failed", "upstream=nologin", "cause=no_login",
                                          "outboxctl oauth2 login nologin"}) == 1);
  CHECK(log.count_at(spdlog::level::warn, {"event=oauth2_"}) == 0);
}

TEST_CASE("upstream tokens: the idle refresh of a configured upstream is logged with reason=idle") {
  Rig rig(UpstreamTokens::IdleTiming{std::chrono::hours(1), 20ms});
  auto& log = daemon::test::log_capture();
  rig.ups = {upstream("quiet", rig.endpoint)};
  rig.save(rig.ups[0], login(rig.ups[0], "AT-cached", 3600, 4 * 86400));   // last refresh 4 days ago
  rig.tokens->configure();
  REQUIRE(rig.wait([&] { return log.count({"event=oauth2_refreshed"}) == 1; }));
  CHECK(log.count_at(spdlog::level::info, {"event=oauth2_refreshed", "upstream=quiet", "reason=idle",
                                           "refresh_token=rotated"}) == 1);
  CHECK(rig.endpoint.requests().size() == 1);
  CHECK(rig.got.empty());   // no delivery asked
}

TEST_CASE("upstream tokens: an exception from done is logged and dropped; the next fetch is answered") {
  Rig rig;
  auto& log = daemon::test::log_capture();
  rig.ups = {upstream("mail", rig.endpoint)};
  rig.save(rig.ups[0], login(rig.ups[0], "AT-cached", 3600));
  rig.tokens->configure();
  bool threw = false;
  rig.tokens->fetch(rig.ups[0], [&](UpstreamTokens::Result) {
    threw = true;
    throw std::runtime_error("boom");
  });
  REQUIRE(rig.wait([&] { return threw; }));
  CHECK(log.count_at(spdlog::level::err, {"event=relay_error", "op=\"oauth2 token\"", "error=boom"}) == 1);
  rig.fetch(rig.ups[0]);
  REQUIRE(rig.wait_for(1));
  CHECK(rig.got[0].got.access_token == "AT-cached");
}

TEST_CASE("upstream tokens: answers that arrive after the destruction do nothing") {
  Rig rig;
  rig.ups = {upstream("mail", rig.endpoint)};
  rig.save(rig.ups[0], login(rig.ups[0], "AT-cached", 3600));
  rig.tokens->configure();
  bool called = false;
  for (int i = 0; i < 5; ++i) rig.tokens->fetch(rig.ups[0], [&](UpstreamTokens::Result) { called = true; });
  // Joins the thread (answering what it has not started) and closes the
  // poster, which runs what was posted: none of it may reach `done`.
  rig.tokens.reset();
  uv_run(&rig.loop, UV_RUN_DEFAULT);
  CHECK_FALSE(called);
  CHECK(uv_loop_close(&rig.loop) == 0);
  uv_loop_init(&rig.loop);   // for the rig's own teardown
}
