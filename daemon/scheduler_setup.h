// What the scheduler (queue/scheduler.h, pure) is told about a configuration
// generation: each [[upstream]] as an UpstreamSpec (connections, rate
// windows, whether it can be used at all, the digest of the settings an
// operator changes to fix a refused login) and the [retry] parameters. The
// relay calls these at start and at every reload; they are separate so that
// what a reload lifts (a suspension whose settings changed) and what it keeps
// is table-tested (tests/unit/relay/test_scheduler_setup.cpp). Pure: config
// types only.
#pragma once
#include <cstdint>
#include <string>

#include "daemon/config.h"
#include "queue/delivery_store.h"
#include "queue/scheduler.h"

namespace outbox::daemon {

// setup_error: why the upstream cannot be used (secret or CA file), "" when
// it can; secret: its password or client secret, only hashed.
queue::UpstreamSpec upstream_spec(const UpstreamConfig& u, const std::string& setup_error, const std::string& secret);
// What a fix after a refused login or a failed setup changes: host, port,
// account, auth, TLS, CA file, secret.
std::uint64_t settings_digest(const UpstreamConfig& u, const std::string& secret);
queue::SchedulerParams scheduler_params(const Config& c);
queue::UncertainPolicy uncertain_policy(const Config& c);

}  // namespace outbox::daemon
