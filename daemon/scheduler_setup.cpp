#include "daemon/scheduler_setup.h"

#include <functional>
#include <string_view>

namespace outbox::daemon {

namespace {

queue::RetryParams retry_params(const RetryConfig& r) {
  queue::RetryParams p;
  p.initial = r.initial;
  p.max = r.max;
  p.factor = r.factor;
  p.jitter = r.jitter;
  p.lifetime = r.lifetime;
  return p;
}

}  // namespace

queue::UpstreamSpec upstream_spec(const UpstreamConfig& u, const std::string& setup_error, const std::string& secret) {
  queue::UpstreamSpec s;
  s.name = u.name;
  s.max_connections = u.max_connections;
  for (const auto& r : u.rate)
    if (auto rl = parse_rate_limit(r))
      s.rates.push_back(queue::RateWindow{rl->count, static_cast<std::int64_t>(rl->per.count()) * 1'000'000, false});
  for (const auto& r : u.recipient_rate)
    if (auto rl = parse_rate_limit(r))
      s.rates.push_back(queue::RateWindow{rl->count, static_cast<std::int64_t>(rl->per.count()) * 1'000'000, true});
  s.usable = setup_error.empty();
  s.problem = setup_error;
  s.settings_digest = settings_digest(u, secret);
  s.fresh_credential_per_connection = !u.oauth2_token_command.empty() || u.auth == "oauth2";
  return s;
}

std::uint64_t settings_digest(const UpstreamConfig& u, const std::string& secret) {
  // The secret is hashed in place, never copied into a longer-lived string.
  std::hash<std::string_view> h;
  std::uint64_t d = h(u.host) * 31 + u.port;
  d = d * 31 + h(u.username);
  d = d * 31 + h(u.auth);
  d = d * 31 + static_cast<std::uint64_t>(u.tls);
  d = d * 31 + h(u.ca_file);
  d = d * 31 + h(secret);
  return d;
}

queue::SchedulerParams scheduler_params(const Config& c) {
  queue::SchedulerParams p;
  p.retry = retry_params(c.retry);
  return p;
}

queue::UncertainPolicy uncertain_policy(const Config& c) {
  return c.retry.uncertain == RetryConfig::Uncertain::Hold ? queue::UncertainPolicy::Hold
                                                          : queue::UncertainPolicy::Resend;
}

}  // namespace outbox::daemon
