// DeliveryStore: the relay engine's statements on the spool. The scheduler
// keeps only ids and times in memory; everything it decides from (which
// recipients are pending, when they are due, what the upstream said) lives
// here, so a restart loses no schedule and startup loads nothing up front.
// Runs on the spool's writer (the daemon's StoreWorker thread, through run()),
// inside the batch transaction. Knows nothing of SMTP or sockets.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "queue/spool.h"
#include "queue/types.h"

namespace outbox::queue {

struct DueMessage {
  std::string id;
  std::string sender;                       // "" = <>
  std::vector<std::string> recipients;      // pending and due only
  std::int64_t created = 0;
  int attempts = 0;
  bool smtputf8 = false;
  bool body_8bit = false;
  std::uint64_t size = 0;
};

enum class RecipientResult { Sent, Deferred, Failed };

struct RecipientOutcome {
  std::string address;
  RecipientResult result = RecipientResult::Deferred;
  std::string reply;                        // what the upstream said (or why we did not try)
  std::optional<std::int64_t> next_attempt; // Deferred: when to try again
};

struct DeliveryReport {
  std::string id;
  std::string upstream;                     // "" when no upstream was reached (no route)
  std::int64_t time = 0;
  std::vector<RecipientOutcome> recipients;
  std::string outcome;                      // history: delivered|deferred|bounced|expired|possible_duplicate|no_route
  std::string last_error;                   // message-level, shown by outboxctl queue
  bool count_attempt = true;                // false when the upstream, not the message, failed
};

struct MessageAfter {
  std::string state;                        // new message state
  int attempts = 0;
  std::vector<std::string> newly_failed;    // recipients that became failed in this report
  bool exists = true;                       // false: deleted meanwhile (outboxctl delete)
};

class DeliveryStore {
 public:
  explicit DeliveryStore(Spool& spool) : spool_(spool) {}

  // Marks up to `limit` due messages active and returns them with their due
  // pending recipients, oldest due first.
  // A message `routable` refuses is not claimed: it stays queued with
  // last error "no route", looked at again at `no_route_retry`, and its id
  // is added to *no_route.
  std::vector<DueMessage> claim_due(std::int64_t now, std::size_t limit,
                                    const std::function<bool(const DueMessage&)>& routable = {},
                                    std::int64_t no_route_retry = 0, std::vector<std::string>* no_route = nullptr);
  // The earliest next attempt among queued/deferred messages (µs), if any.
  std::optional<std::int64_t> next_due();
  // At start-up: messages left active by a crash go back to deferred, due now
  // (their recipients that were not yet confirmed are still pending).
  int recover_active(std::int64_t now);
  // Applies one attempt's outcome: recipient states, message state
  // (sent/failed when nothing is pending, else deferred at the earliest
  // pending time), attempt counter, last error and the history row.
  MessageAfter apply(const DeliveryReport& report);
  // A message that was claimed but not attempted (shutdown, upstream busy):
  // back to its previous schedule without counting an attempt.
  void unclaim(std::string_view id, std::int64_t next_attempt, std::string_view last_error = {});
  // After a reload: messages waiting for a route or for a suspended
  // upstream (they were not counted as attempts) are due now.
  int release_waiting(std::int64_t now);
  // Finished (sent/failed) messages whose last update is older than `before`.
  int purge_finished(std::int64_t before);
  // The stored header section (added prefix + original headers up to the
  // first empty line), bounded, for DSNs.
  std::string headers(std::string_view id, std::size_t max_bytes = 64 * 1024);
  // Queues a locally made message (a DSN) as if it had been submitted.
  void enqueue_local(const NewMessage& m, std::string_view body, std::int64_t now);
  // Whether a DSN was already made for this message (de-duplication).
  bool bounce_sent(std::string_view id);
  void mark_bounce_sent(std::string_view id, std::string_view dsn_id);

  // --- added for the scheduler (docs/design/relay-engine.md) ---
  // Every row of the upstreams table (persisted suspensions), by name.
  std::vector<UpstreamState> load_upstream_states();
  // Inserts or replaces the row of s.name.
  void save_upstream_state(const UpstreamState& s);
  // A claimed message that was not attempted (shutdown, reload, its route
  // suspended or rate limited): back to queued (never attempted) or
  // deferred, due at `next_attempt`, with the typed reason and the upstream
  // it waits for; no attempt counted, no history row. last_error is replaced
  // when not empty. Only an `active` message changes (one deleted or held
  // meanwhile is left alone).
  void park(std::string_view id, std::int64_t next_attempt, WaitReason reason, std::string_view upstream = {},
            std::string_view last_error = {});
  // operator_log rows with seq > `after`, oldest first, at most `limit`.
  std::vector<OperatorAction> operator_actions_after(std::int64_t after, std::size_t limit);
  // The newest operator_log seq, 0 when none (one rowid probe).
  std::int64_t last_operator_seq();
  // After an attempt: what the (queued/deferred) message now waits for.
  // UpstreamSuspended with the upstream when its route is suspended; None
  // when it waits for its own backoff.
  void mark_waiting(std::string_view id, WaitReason reason, std::string_view upstream = {});
  // The operator resumed `upstream`: messages waiting for it (suspended or
  // rate limited there) are due now, their wait reason cleared. Returns how
  // many. Rare (an operator action): a scan of the waiting messages is fine.
  int release_upstream(std::string_view upstream, std::int64_t now);

 private:
  Spool& spool_;
};

}  // namespace outbox::queue
