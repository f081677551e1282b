// QuotaGate: messages handed to a connection of an upstream with rate
// windows while the fleet's shared ledger ([quota] store) is asked for a
// start, and what its answer means for each. Pure bookkeeping, no I/O:
// FleetQuota (daemon/fleet_quota.h) asks the store, Relay does what the
// gate answers (hand the message to the connection, or hold the upstream's
// quota and park the message), so the rules are table-tested
// (tests/unit/daemon/test_quota_gate.cpp).
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "daemon/delivery_slots.h"
#include "daemon/quota_store.h"
#include "queue/scheduler.h"

namespace outbox::daemon {

class QuotaGate {
 public:
  // What to do with a message once the fleet answered.
  struct Step {
    bool hand = true;          // to its connection now; else park it and hold the upstream's quota
    queue::ConnId conn = 0;
    std::string upstream;
    Job job;
    std::int64_t until = 0;    // !hand: when the fleet's window takes it (µs)
    std::string why;           // !hand: the message's last error, the upstream and its window
  };

  using Ticket = std::uint64_t;
  // `job`, handed to connection `conn`, waits for the fleet's answer; the
  // ticket names that answer. Each wait is its own: a second message for
  // the same connection never replaces the first (that lost a message that
  // stayed `active` until a restart).
  Ticket wait(queue::ConnId conn, std::string upstream, Job job);
  // The fleet's answer for a ticket; nothing when no message waits on it.
  // Granted, or the store unavailable (the local ledger, at its share,
  // already let the message through): hand it. Denied: other hosts used the
  // account's budget, so this host waits for the window too.
  std::optional<Step> answered(Ticket ticket, const QuotaAnswer& a);
  // Whether a message for `conn` waits here. The connection's "ready for
  // more" meanwhile is stale: the scheduler gave it its next message, which
  // is on its way (Relay::delivery_ready).
  bool holds(queue::ConnId conn) const;
  // Stop waits for every answer: a message waiting here is in flight.
  bool empty() const { return waiting_.empty(); }
  std::size_t size() const { return waiting_.size(); }

 private:
  struct Waiting {
    queue::ConnId conn;
    std::string upstream;
    Job job;
  };
  std::map<Ticket, Waiting> waiting_;
  Ticket next_ = 1;
};

}  // namespace outbox::daemon
