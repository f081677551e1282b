// upstream_spec() and settings_digest(): what the scheduler is told about
// each [[upstream]] (daemon/scheduler_setup.h). The digest decides whether a
// reload lifts a refused login's suspension: it must move with the settings
// an operator fixes, and only with those.
#include <doctest/doctest.h>

#include <functional>
#include <string>
#include <vector>

#include "daemon/scheduler_setup.h"

using namespace outbox;
using namespace outbox::daemon;

namespace {

UpstreamConfig smtp() {
  UpstreamConfig u;
  u.name = "relay";
  u.host = "smtp.example.net";
  u.port = 465;
  u.username = "app@example.net";
  return u;
}

}  // namespace

TEST_CASE("upstream_spec: connections, rate windows and usability") {
  auto u = smtp();
  u.max_connections = 3;
  u.rate = {"10/min", "lots", "500/1d"};   // an unparsable window is left out (config_check reports it)
  u.recipient_rate = {"100/h"};
  auto s = upstream_spec(u, "", "secret");
  CHECK(s.name == "relay");
  CHECK(s.max_connections == 3);
  const std::vector<queue::RateWindow> want{{10, 60'000'000, false}, {500, 86'400'000'000, false},
                                            {100, 3'600'000'000, true}};
  CHECK(s.rates == want);
  CHECK(s.usable);
  CHECK(s.problem.empty());
  CHECK(s.settings_digest == settings_digest(u, "secret"));
  CHECK_FALSE(s.fresh_credential_per_connection);

  auto broken = upstream_spec(u, "cannot read /etc/outbox/secret: permission denied", "");
  CHECK_FALSE(broken.usable);
  CHECK(broken.problem == "cannot read /etc/outbox/secret: permission denied");
}

TEST_CASE("upstream_spec: a fresh credential per connection with a token command or auth = oauth2") {
  auto u = smtp();
  CHECK_FALSE(upstream_spec(u, "", "").fresh_credential_per_connection);
  u.oauth2_token_command = {"/usr/bin/get-token"};
  CHECK(upstream_spec(u, "", "").fresh_credential_per_connection);
  u.oauth2_token_command.clear();
  u.auth = "oauth2";
  CHECK(upstream_spec(u, "", "").fresh_credential_per_connection);
}

TEST_CASE("settings_digest moves with what fixes a refused login, and only with that") {
  const auto base = smtp();
  const auto d0 = settings_digest(base, "secret");
  struct Row {
    const char* name;
    std::function<void(UpstreamConfig&)> change;
    std::string secret;
    bool moves;
  };
  const Row rows[] = {
      {"host", [](UpstreamConfig& u) { u.host = "smtp2.example.net"; }, "secret", true},
      {"port", [](UpstreamConfig& u) { u.port = 587; }, "secret", true},
      {"username", [](UpstreamConfig& u) { u.username = "other@example.net"; }, "secret", true},
      {"auth", [](UpstreamConfig& u) { u.auth = "login"; }, "secret", true},
      {"tls", [](UpstreamConfig& u) { u.tls = TlsMode::StartTls; }, "secret", true},
      {"ca_file", [](UpstreamConfig& u) { u.ca_file = "/etc/ssl/ca.pem"; }, "secret", true},
      {"secret", [](UpstreamConfig&) {}, "rotated", true},
      {"max_connections", [](UpstreamConfig& u) { u.max_connections = 1; }, "secret", false},
      {"rate", [](UpstreamConfig& u) { u.rate = {"1/min"}; }, "secret", false},
      {"nothing", [](UpstreamConfig&) {}, "secret", false},
  };
  for (const auto& r : rows) {
    INFO(r.name);
    auto u = base;
    r.change(u);
    CHECK((settings_digest(u, r.secret) != d0) == r.moves);
  }
}

TEST_CASE("scheduler_params and uncertain_policy follow [retry]") {
  Config c;
  c.retry.initial = std::chrono::seconds(30);
  c.retry.max = std::chrono::seconds(900);
  c.retry.factor = 3.0;
  c.retry.jitter = 0.1;
  c.retry.lifetime = std::chrono::seconds(86400);
  auto p = scheduler_params(c);
  CHECK(p.retry.initial == std::chrono::seconds(30));
  CHECK(p.retry.max == std::chrono::seconds(900));
  CHECK(p.retry.factor == 3.0);
  CHECK(p.retry.jitter == 0.1);
  CHECK(p.retry.lifetime == std::chrono::seconds(86400));
  CHECK(uncertain_policy(c) == queue::UncertainPolicy::Resend);
  c.retry.uncertain = RetryConfig::Uncertain::Hold;
  CHECK(uncertain_policy(c) == queue::UncertainPolicy::Hold);
}
