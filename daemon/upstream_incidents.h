// UpstreamIncidents: an upstream's failure and recovery as the operator sees
// it (docs/design/relay-engine.md). Given an upstream-scope failure, it
// types the suspension (SessionFailure and the provider's reply rules,
// SPEC "Provider profiles"), has the scheduler suspend the upstream, and
// says so once per outage: the upstream_suspended, upstream_login_refused
// and upstream_concurrency_lowered lines, and one [[alert]] incident
// (upstream_suspended, auth_failed, quota_exhausted) that a later delivery
// through the upstream resolves. The scheduler decides; this only reports.
//
// No libuv, no clock (`now` is a parameter, µs), no spool: the relay
// persists the upstream state after a new suspension. One thread (the
// relay's loop). Table-tested in tests/unit/daemon/test_upstream_incidents.cpp.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/alerter.h"
#include "daemon/config.h"
#include "protocol/client_session.h"
#include "queue/scheduler.h"

namespace outbox::daemon {

// "auth_failed", "throttled", ...: the reason as logs and alerts spell it.
const char* suspend_reason_name(queue::SuspendReason r);

class UpstreamIncidents {
 public:
  // The upstream's settings in the running configuration generation;
  // nullptr when a reload removed it.
  using FindUpstream = std::function<const UpstreamConfig*(std::string_view name)>;
  // An upstream's window (its own or the fleet's) that keeps mail waiting
  // this long or longer is a quota_exhausted alert (µs).
  static constexpr std::int64_t kQuotaAlertWait = 3600LL * 1'000'000;

  UpstreamIncidents(queue::Scheduler& sched, FindUpstream find) : sched_(sched), find_(std::move(find)) {}

  // [[alert]] hooks; may be null (no alerts, the log lines only). Must
  // outlive this object.
  void set_alerter(AlertSink* a) { alerter_ = a; }

  // An upstream-scope failure seen by connection `conn`: the scheduler
  // suspends the upstream. Returns the suspension when it is news (the
  // caller persists the upstream state); nullopt when the upstream is gone
  // (a reload) or the failure belongs to an outage already reported.
  std::optional<queue::Suspension> failed(const std::string& upstream, const protocol::client::SessionFailure& f,
                                          queue::ConnId conn, std::int64_t now);
  // A message handed over at `started` went through `upstream`: it is well
  // again, and its incidents (suspended, refused login, quota) are over;
  // unless it failed since `started` (Scheduler::upstream_ok).
  void delivered(const std::string& upstream, std::int64_t started);
  // A message parked for a full rate window until `until`: a wait of
  // kQuotaAlertWait or more is a quota_exhausted alert.
  void window_full(const std::string& upstream, const std::string& why, std::int64_t until, std::int64_t now);
  // The persisted suspensions restored at start: one upstream_suspended
  // line (restored=yes) each for those still running and known.
  void restored(const std::vector<queue::UpstreamState>& states, std::int64_t now) const;

 private:
  // The alert (kind quota_exhausted): the provider said the quota is used
  // up, or the upstream's own window makes mail wait an hour or more.
  void quota_exhausted(const std::string& upstream, const std::string& why, std::int64_t until, std::int64_t now);

  queue::Scheduler& sched_;
  FindUpstream find_;
  AlertSink* alerter_ = nullptr;
};

}  // namespace outbox::daemon
