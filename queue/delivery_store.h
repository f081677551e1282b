// DeliveryStore: the relay engine's statements on the spool. The scheduler
// keeps only ids and times in memory; everything it decides from (which
// recipients are pending, when they are due, what the upstream said) lives
// here, so a restart loses no schedule and startup loads nothing up front.
// Runs on the spool's writer (the daemon's StoreWorker thread): claims and
// parking, outcomes and the mark before a final dot through run() inside the
// batch transaction, each in its own savepoint. Knows
// nothing of SMTP or sockets.
//
// Cost: every statement here is an index probe or a range over a partial
// index (messages_due, recipients_uncertain), a primary key, or the active
// messages; none walks the deferred backlog (test: "query plans").
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "queue/spool.h"
#include "queue/types.h"

namespace outbox::queue {

struct DueMessage {
  std::string id;
  std::string sender;                       // "" = <>
  std::vector<std::string> recipients;      // pending or uncertain, and due
  // The subset of recipients that was 'uncertain' (a final dot went out with
  // no reply known): their outcome is logged possible_duplicate=yes (RFC 1047).
  std::vector<std::string> uncertain;
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
  // Deferred only: the final dot went out and no reply came (connection lost):
  // the recipient stays 'uncertain' rather than 'pending'.
  bool uncertain = false;
  // The outcome's enhanced status ("4.2.0", RFC 3463) as the relay typed it;
  // failures are counted by it (outboxctl stats: Prometheus). "" = unknown.
  std::string status;
};

struct DeliveryReport {
  std::string id;
  std::string upstream;                     // "" when no upstream was reached (no route)
  std::int64_t time = 0;
  std::vector<RecipientOutcome> recipients;
  std::string outcome;                      // history: delivered|deferred|bounced|expired|possible_duplicate|no_route
  std::string last_error;                   // message-level, shown by outboxctl queue
  bool count_attempt = true;                // false when the upstream, not the message, failed
  // [retry] uncertain = "hold": when recipients stay 'uncertain' after this
  // report (the connection was lost after the final dot), the message is
  // held (held_from deferred, due at once when released) instead of deferred.
  bool hold_uncertain = false;
};

struct MessageAfter {
  std::string state;                        // new message state (held: see hold_uncertain)
  int attempts = 0;
  std::vector<std::string> newly_failed;    // recipients that became failed in this report
  bool exists = true;                       // false: deleted meanwhile (outboxctl delete)
};

// What to do at recovery with a message whose recipients are 'uncertain'
// ([retry] uncertain): send again as a possible duplicate (RFC 1047: a
// duplicate is better than a loss), or hold it for the operator.
enum class UncertainPolicy { Resend, Hold };

struct Recovery {
  std::vector<std::string> interrupted;     // active and not in flight: deferred (due now) or held
  std::vector<std::pair<std::string, std::vector<std::string>>> uncertain;   // id -> its uncertain recipients
  std::vector<std::string> held;            // held instead (UncertainPolicy::Hold)
};

class DeliveryStore {
 public:
  explicit DeliveryStore(Spool& spool) : spool_(spool) {}

  // Marks up to `limit` due messages active and returns them with their due
  // pending and uncertain recipients, earliest due first (messages_due's
  // order, no sort).
  // A message `routable` refuses is not claimed: it stays queued with
  // last error "no route" (wait_reason NoRoute), looked at again at
  // `no_route_retry`, and its id is added to *no_route.
  std::vector<DueMessage> claim_due(std::int64_t now, std::size_t limit,
                                    const std::function<bool(const DueMessage&)>& routable = {},
                                    std::int64_t no_route_retry = 0, std::vector<std::string>* no_route = nullptr);
  // The earliest next attempt among queued/deferred messages (µs), if any:
  // the first entry of messages_due, one probe.
  std::optional<std::int64_t> next_due();
  // Active messages not in `exclude` (the ids in flight) were left by a crash
  // or by a delivery whose end was lost: back to deferred, due now, their
  // pending and uncertain recipients due now. One with uncertain recipients
  // is held instead (state held, held_from deferred) under Hold. The caller
  // logs the uncertain ones possible_duplicate=yes. At start and while running.
  Recovery recover_active(std::int64_t now, UncertainPolicy policy, const std::set<std::string>& exclude);
  // The same with nothing excluded and Resend; returns how many were interrupted.
  int recover_active(std::int64_t now);
  // Just before the final dot: these recipients (pending) become 'uncertain'
  // and the message records the upstream (wait_upstream). The dot
  // goes out only once this is committed, so a
  // crash or lost connection after it is known as a possible duplicate.
  // Returns how many recipients changed.
  int mark_dot_sent(std::string_view id, const std::vector<std::string>& recipients, std::string_view upstream,
                    std::int64_t now);
  // Applies one attempt's outcome to recipients still pending or uncertain
  // (an outcome clears uncertain): recipient states, message state
  // (sent/failed when nothing is pending or uncertain, else deferred at the
  // earliest such time; wait_reason cleared), attempt counter, last error and
  // the history row.
  MessageAfter apply(const DeliveryReport& report);
  // A message that was claimed but not attempted (shutdown, upstream busy):
  // back to its previous schedule without counting an attempt, with why it
  // waits (release_waiting looks at it).
  void unclaim(std::string_view id, std::int64_t next_attempt, std::string_view last_error = {},
               WaitReason reason = WaitReason::None);
  // After a reload: messages waiting for a route, a suspended or unusable
  // upstream or a rate ceiling (wait_reason != None; they were not counted
  // as attempts) are due now.
  int release_waiting(std::int64_t now);
  // Finished (sent/failed) messages whose last update is older than `before`.

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
  // The quota ledger (issue 10 item 3): a message handed to `upstream` at
  // `time` with its recipients; the entries newer than `since`, oldest
  // first (to refill the scheduler's windows at start); and the pruning of
  // entries no window looks at any more. Each is a range of the primary key.
  void record_start(std::string_view upstream, std::int64_t time, std::uint32_t recipients);
  // Delay warnings (issue 10 item 5). Messages still waiting (queued,
  // active, deferred) with a real sender, created in (after, upto], oldest
  // first, at most `limit`, with their recipients not yet done and their last
  // replies: a range of the messages_waiting_since index, so a sweep costs
  // what crossed an age since the last one, never the backlog.
  struct DelayCandidate {
    std::string id;
    std::string sender;
    std::int64_t created = 0;
    bool smtputf8 = false;
    std::vector<std::pair<std::string, std::string>> waiting;   // address, last reply
  };
  std::vector<DelayCandidate> delay_candidates(std::int64_t after, std::int64_t upto, std::size_t limit);
  // Per age (seconds), the creation time up to which messages were warned;
  // nullopt before the first sweep with that age.
  std::optional<std::int64_t> delay_watermark(std::int64_t age_s);
  void set_delay_watermark(std::int64_t age_s, std::int64_t upto);
  std::vector<LedgerEntry> load_ledger(std::string_view upstream, std::int64_t since);
  int prune_ledger(std::string_view upstream, std::int64_t before);
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
