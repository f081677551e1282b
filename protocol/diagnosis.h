// Diagnosis: turns an upstream failure into plain words and the fix, for
// `outboxctl test-upstream`, the daemon's warnings and `outboxctl show`.
//
// A pure function of the upstream's settings (no secrets) and the failure
// (stage, the server's reply, the TLS or socket error text). It knows the
// providers' habits (anchors §3): QQ/163 authorization codes, Gmail app
// passwords, Microsoft 365 SMTP AUTH switches, SES identities and quotas,
// 163 and SES throttling codes, port/TLS-mode mix-ups, certificate
// problems, blocked ports. Unknown cases get a summary and no hint.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include "protocol/client_session.h"
#include "protocol/reply_parser.h"

namespace outbox::protocol {

struct UpstreamSummary {   // from [[upstream]]; never the secret
  std::string name;
  std::string host;
  std::uint16_t port = 0;
  client::TlsPolicy tls = client::TlsPolicy::Implicit;
  std::string auth = "auto";   // auto | plain | login | xoauth2 | oauth2
  std::string username;
  std::string tls_name;        // "" = host
  std::string ca_file;
};

struct FailureInfo {
  client::Stage stage = client::Stage::Connect;
  std::optional<SmtpReply> reply;
  std::string error;           // TLS/socket error text, or the session's detail
};

struct Diagnosis {
  std::string summary;         // upstream "163" (smtp.163.com:465): authentication failed: 535 ...
  std::string hint;            // the fix, or "" when there is nothing specific to say
};

Diagnosis diagnose(const UpstreamSummary& upstream, const FailureInfo& failure);
Diagnosis diagnose(const UpstreamSummary& upstream, const client::SessionFailure& failure);
Diagnosis diagnose(const UpstreamSummary& upstream, const client::RecipientResult& result);

}  // namespace outbox::protocol
