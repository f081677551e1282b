// The pure parts of Relay::settle (docs/design/relay-engine.md, "Outcomes"):
// what the relay adds to compose_outcome()'s input from the provider's reply
// rules and the diagnosis, and the log lines it writes once the outcome is on
// disk, with the other lines about outcomes (those recovered after a crash,
// those written late). They lived inline in the relay, where only the
// integration tests could reach them; here tests/unit/relay/test_settle.cpp
// drives them with tables. No I/O, no spool, no clock (`now` is given): the
// relay writes the record through the OutcomeRecorder and emits the lines.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "daemon/logging.h"
#include "daemon/outcome_recorder.h"
#include "daemon/outcome_report.h"
#include "protocol/client_session.h"
#include "protocol/diagnosis.h"
#include "queue/delivery_store.h"
#include "queue/scheduler.h"

namespace outbox::daemon {

// What a failed try adds to OutcomeInput: the operator's hint, the provider
// verdict's action and its "retry after".
struct AttemptNotes {
  std::string hint;            // the verdict's words, then the diagnosis's hint; "" when none applies
  std::string action;          // protocol::action_name() of the verdict; "" without one
  queue::AfterAttempt after;   // the scheduler's, its `next` pushed to the verdict's "retry after"
};
// upstream: the upstream that was tried; null when none was reached (no
// hint then, the diagnosis being about an upstream).
AttemptNotes attempt_notes(const protocol::client::MessageReport& report, const protocol::UpstreamSummary* upstream,
                           queue::AfterAttempt after, std::int64_t now);

struct SettledInput {
  const queue::DueMessage* msg = nullptr;
  const AttemptOutcome* outcome = nullptr;
  const queue::MessageAfter* after = nullptr;   // what the spool says after the write
  std::string relay;                            // Relay::route_label() of the upstream
  std::string hint, action;                     // from attempt_notes()
  bool possible_duplicate = false;              // the report's: this try's dot had no reply
  bool dsn_made = false;                        // a failure DSN was enqueued with the outcome
  std::string dsn_id;
  std::int64_t now = 0;
};
struct LogEntry {
  log::Level level;
  log::Line line;
};
struct Settled {
  std::vector<LogEntry> lines;   // in the order they are written
  bool kick = false;             // new due work (a DSN, a failover): claim soon
};
Settled settled_lines(const SettledInput& in);

// Messages found active with no delivery under way (at start, or while
// running: a delivery whose end was lost): the count, then each recipient
// whose final dot had no known reply, a possible duplicate from here on (RFC
// 1047), named so that `grep id=ID` tells the story; nothing when none.
std::vector<LogEntry> recovery_lines(const queue::Recovery& r, bool while_running);

// The recorder's news (daemon/outcome_recorder.h): an outcome's write failed
// (retried), or one that had failed is on disk now.
LogEntry recorder_line(const OutcomeRecorder::Event& e);

// A message held because its outcome is uncertain ([retry] uncertain =
// "hold"), at an attempt or at recovery: the same words both times.
log::Line held_uncertain_line(const std::string& id);

}  // namespace outbox::daemon
