// Delay warnings (issue 10 item 5; RFC 3464 Action: delayed): when a message
// has waited [bounces] delay_warnings ages ("4h", "1d"), its sender is told
// once per age that it is still being retried, with each waiting recipient
// and its last reply. Never for the null sender, so never for a DSN.
//
// Exactly once: each age has a watermark in the spool's meta table, the
// creation time up to which messages were warned. A sweep takes, per age,
// the messages created in (watermark, now - age] that still wait (a range of
// the messages_waiting_since index: the cost is what crossed the age since
// the last sweep), enqueues their notices and moves the watermark, all in
// one store transaction: a crash repeats nothing and loses nothing. An age
// seen for the first time starts at now - age (no notices for mail that
// crossed it before the age was configured).
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "daemon/outcome_report.h"
#include "queue/delivery_store.h"

namespace outbox::daemon {

struct DelayNoticeInput {
  const queue::DeliveryStore::DelayCandidate* msg = nullptr;
  std::chrono::seconds age{0};
  std::string dsn_id;
  std::string host_name;
  std::int64_t retry_until = 0;          // µs: created + retry.lifetime
  std::string original_headers;
  std::int64_t now = 0;
};
// The notice, or nullopt when nothing waits (every recipient done).
std::optional<FailureDsn> delay_notice(const DelayNoticeInput& in);

// "4h", "1d", "1d2h", "90s": the age in the notice and the log.
std::string age_words(std::chrono::seconds age);

// How often to sweep for ages this short: a quarter of the shortest, 1 s to 30 s.
std::chrono::milliseconds sweep_interval(const std::vector<std::chrono::seconds>& ages);

struct DelaySweep {
  std::vector<std::chrono::seconds> ages;   // ascending
  std::int64_t now = 0;
  std::string host_name;
  std::chrono::seconds lifetime{0};
  std::vector<std::string> ids;              // drawn on the loop thread; one per notice, at most
};
struct DelayWarned {
  std::string id;
  std::string dsn_id;
  std::chrono::seconds age{0};
  std::size_t recipients = 0;
};
struct DelaySweepResult {
  std::vector<DelayWarned> warned;
  bool more = false;                         // the ids ran out: sweep again soon
};
// On the writer thread, inside the store's transaction.
DelaySweepResult sweep_delays(queue::DeliveryStore& ds, DelaySweep in);

}  // namespace outbox::daemon
