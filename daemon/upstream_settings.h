// How an [[upstream]] entry becomes the relay client's settings: one place
// for the relay's deliveries and for `outboxctl test-upstream`, so the probe
// connects exactly as the relay would.
#pragma once
#include <string>

#include "daemon/config.h"
#include "protocol/client_session.h"
#include "protocol/diagnosis.h"

namespace outbox::upstream {

protocol::client::TlsPolicy tls_policy(TlsMode mode);
// Session settings without the secret (the caller adds password or token).
protocol::client::ClientConfig client_config(const Config& config, const UpstreamConfig& upstream);
// What the diagnosis needs to know about the upstream (never the secret).
protocol::UpstreamSummary summary(const UpstreamConfig& upstream);

}  // namespace outbox::upstream
