#include "daemon/upstream_settings.h"

#include <algorithm>

#include "daemon/secrets.h"

namespace outbox::upstream {

namespace client = protocol::client;

client::TlsPolicy tls_policy(TlsMode mode) {
  switch (mode) {
    case TlsMode::Implicit: return client::TlsPolicy::Implicit;
    case TlsMode::StartTls: return client::TlsPolicy::StartTls;
    case TlsMode::None: break;
  }
  return client::TlsPolicy::None;
}

client::ClientConfig client_config(const Config& config, const UpstreamConfig& u) {
  client::ClientConfig c;
  c.helo_name = config.host_name;
  c.tls = tls_policy(u.tls);
  c.auth = u.auth == "plain"                                   ? client::AuthPolicy::Plain
           : u.auth == "login"                                 ? client::AuthPolicy::Login
           : (u.auth == "xoauth2" || secrets::uses_oauth2(u)) ? client::AuthPolicy::XOAuth2
                                                               : client::AuthPolicy::Auto;
  c.username = u.username;
  c.replies = u.replies;
  c.max_message_size = u.max_message_size.value_or(0);
  client::Timeouts t;
  t.greeting = t.ehlo = t.tls = t.mail = t.rcpt = t.data_init = t.data_block = t.quit = u.timeout;
  // The reply to the final dot may take longer (RFC 5321 §4.5.3.2.6: 10 min).
  t.data_end = std::max(u.timeout, std::chrono::seconds(std::min<std::int64_t>(u.timeout.count() * 2, 600)));
  c.timeouts = t;
  return c;
}

protocol::UpstreamSummary summary(const UpstreamConfig& u) {
  protocol::UpstreamSummary s;
  s.name = u.name;
  s.host = u.host;
  s.port = u.port;
  s.tls = tls_policy(u.tls);
  s.auth = u.auth;
  s.username = u.username;
  s.tls_name = u.tls_name;
  s.ca_file = u.ca_file;
  return s;
}

}  // namespace outbox::upstream
