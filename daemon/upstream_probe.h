// Upstream probe: `outboxctl test-upstream NAME`. Connects to one upstream
// exactly as the relay would (same TLS context, same client session, same
// secrets), negotiates TLS, authenticates, sends QUIT, and explains any
// failure in plain words with the fix (protocol/diagnosis.h). Runs its own
// libuv loop; sends no mail.
#pragma once
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "daemon/config.h"

namespace outbox::probe {

// One step of the probe as it completes: resolve, connect, tls, greeting,
// ehlo, starttls, auth, quit; detail in words (the server's reply line for
// SMTP steps, never a credential); ms since the probe started.
struct ProbeStep {
  std::string stage;
  std::string detail;
  long long ms = 0;
};

struct ProbeResult {
  bool ok = false;
  std::string stage;                    // where it failed ("tls", "auth", ...), "" when ok
  std::string summary;                  // one line: what happened
  std::string hint;                     // the fix, "" when none
  std::vector<std::string> transcript;  // "C: ..."/"S: ..." lines, credentials redacted
  std::string tls_version;              // "TLSv1.3", "" without TLS
  std::string mechanism;                // AUTH mechanism used, "" when none
  std::vector<ProbeStep> steps;         // as they completed
};

struct ProbeOptions {
  // The whole probe ends within this (the per-reply `timeout` of the
  // upstream can be minutes: a probe that waits for a greeting that never
  // comes must not hang a shell for 5 minutes).
  std::chrono::seconds total{30};
  std::function<void(const ProbeStep&)> on_step;   // called as each step completes
  // Whose LoadCredential= settings give password_credential when
  // $CREDENTIALS_DIRECTORY is not set (a shell, not the service).
  std::string unit = "outboxd.service";
  // The secret to log in with, already obtained (auth = "oauth2": outboxctl
  // refreshes the token first and says how long it lives).
  std::optional<std::string> secret;
};

ProbeResult probe_upstream(const Config& config, const UpstreamConfig& upstream, const ProbeOptions& options = {});

}  // namespace outbox::probe
