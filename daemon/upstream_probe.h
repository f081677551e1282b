// Upstream probe: `outboxctl test-upstream NAME`. Connects to one upstream
// exactly as the relay would (same TLS context, same client session, same
// secrets), negotiates TLS, authenticates, sends QUIT, and explains any
// failure in plain words with the fix (protocol/diagnosis.h). Runs its own
// libuv loop; sends no mail.
#pragma once
#include <string>
#include <vector>

#include "daemon/config.h"

namespace outbox::probe {

struct ProbeResult {
  bool ok = false;
  std::string stage;                    // where it failed ("tls", "auth", ...), "" when ok
  std::string summary;                  // one line: what happened
  std::string hint;                     // the fix, "" when none
  std::vector<std::string> transcript;  // "C: ..."/"S: ..." lines, credentials redacted
  std::string tls_version;              // "TLSv1.3", "" without TLS
  std::string mechanism;                // AUTH mechanism used, "" when none
};

ProbeResult probe_upstream(const Config& config, const UpstreamConfig& upstream);

}  // namespace outbox::probe
