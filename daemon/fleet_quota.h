// The relay's side of the fleet ledger ([quota] store, daemon/quota_store.h):
// the store's client for the current configuration, the reservation of one
// start for an upstream account, its answer brought back to the event loop,
// and the degraded state (store unreachable: the local ledger at
// fallback_share), logged once per change. What an answer means for the
// message is daemon/quota_gate.h's; the relay does it (relay.cpp: hand, reserved).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "daemon/config.h"
#include "daemon/loop_poster.h"
#include "daemon/quota_store.h"

namespace outbox::daemon {

class FleetQuota {
 public:
  // share: every upstream's limits at this share (degraded) or 1.0 (back).
  FleetQuota(uv_loop_t* loop, std::function<void(double share)> share);
  ~FleetQuota();
  FleetQuota(const FleetQuota&) = delete;
  FleetQuota& operator=(const FleetQuota&) = delete;

  // Each configuration generation: the client is made again only when the
  // store, its password file or the timeout changed.
  void configure(const QuotaConfig& q);
  bool active() const { return store_ != nullptr; }
  // Reserves one start of `recipients` for the account of `up`; `done` runs
  // on the loop thread (not at all once `alive` has expired). The degraded
  // state is updated before `done` sees the answer.
  void reserve(const UpstreamConfig& up, std::vector<queue::RateWindow> windows, std::uint32_t recipients,
               std::int64_t now, std::weak_ptr<bool> alive, std::function<void(QuotaAnswer)> done);
  // At stop: joins the client's thread, then runs its last answers.
  void shutdown();

  // The account an upstream sends as: its host and username (its name when
  // it has none); what every host of the fleet shares.
  static std::string account_of(const UpstreamConfig& up);

 private:
  void answered(const QuotaAnswer& a);

  uv_loop_t* loop_;
  std::function<void(double)> share_;
  QuotaConfig cfg_;
  std::string settings_;
  bool degraded_ = false;
  std::string host_id_;
  std::uint64_t seq_ = 0;
  std::unique_ptr<LoopPoster> poster_;   // declared first: destroyed after the client's thread is joined
  std::unique_ptr<QuotaStore> store_;
};

}  // namespace outbox::daemon
