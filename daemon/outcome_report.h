// What one delivery attempt means for its message (docs/design/relay-engine.md,
// "Outcomes"): the spool record, the log lines and the DSN recipients,
// composed from the client session's report. Pure: no I/O, no spool, no
// clock (`now` is given), so tests/unit/relay/test_outcome_report.cpp
// drives it with tables. The relay writes `record` through the
// OutcomeRecorder and logs `lines` once that is on disk.
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/client_session.h"
#include "protocol/dsn.h"
#include "queue/delivery_store.h"
#include "queue/scheduler.h"

namespace outbox::daemon {

// "5 days", "1 hour", "90 seconds": the lifetime as the DSN and the log say it.
std::string duration_words(std::chrono::seconds s);
// The enhanced status of a recipient's result, "4.4.2".
std::string dsn_code(const protocol::client::RecipientResult& r);
// A set-up failure (connect, TLS, greeting, EHLO, STARTTLS, AUTH) as the
// result of a recipient that was waiting for that connection.
protocol::client::RecipientResult setup_result(const std::string& address,
                                               const protocol::client::SessionFailure& f);
// A message whose try ended in the set-up of its connection, or that
// expired waiting for one (`f` carries only the reason then): every
// recipient setup_result(), with the provider's verdict on the reply when
// there is one.
protocol::client::MessageReport setup_report(const queue::DueMessage& m, const protocol::client::SessionFailure& f,
                                             const std::optional<protocol::ReplyVerdict>& verdict = std::nullopt);
// An upstream-scope failure of a message under way, as the failure the
// upstream is suspended for: the first failed recipient's stage, reply and
// detail ("failed" when the report names none).
protocol::client::SessionFailure failure_of(const protocol::client::MessageReport& report);
// A message a connection had taken but never sent when it ended (taken
// ahead of the one under way, daemon/delivery.h): every recipient temporary,
// of scope connection, 4.4.2 (RFC 3463 "bad connection"), with `why`. Never
// a possible duplicate: its outcome returns the recipients to pending.
protocol::client::MessageReport unsent_report(const queue::DueMessage& m, std::string_view why);

struct OutcomeInput {
  const queue::DueMessage* msg = nullptr;
  std::string upstream;                 // name; "" when no upstream was reached
  std::string host;                     // for the DSN's Remote-MTA
  const protocol::client::MessageReport* report = nullptr;
  queue::AfterAttempt after;            // Scheduler::after_attempt() for this try
  bool upstream_fault = false;          // the failure was the upstream's (it is suspended)
  std::chrono::seconds lifetime{0};     // [retry] lifetime
  bool hold_uncertain = false;          // [retry] uncertain = "hold"
  std::string hint;                     // protocol::diagnose() of the first failure, or ""
  std::int64_t now = 0;
};

struct OutcomeLine {
  std::string address, event, dsn, reply;   // event: delivered|bounced|expired|deferred
};

struct AttemptOutcome {
  queue::DeliveryReport record;
  std::vector<OutcomeLine> lines;
  std::vector<protocol::DsnRecipient> dsn_recipients;   // failed now (bounced or expired)
  bool held_uncertain = false;          // recipients stay 'uncertain' and the message is held
  bool failover = false;                // another upstream of its route takes it at once
  queue::WaitReason waits_for = queue::WaitReason::None;
  std::int64_t next_at = 0;             // deferred: when it is due again
};

AttemptOutcome compose_outcome(const OutcomeInput& in);

// The failure DSN for the recipients of `failed` that `newly_failed` names
// (a recipient turns failed once, so none is reported twice); nullopt when
// none is left or the sender gets no DSN (the null sender, bounces off).
struct FailureDsn {
  queue::NewMessage message;
  std::string bytes;
};
struct FailureDsnInput {
  const queue::DueMessage* msg = nullptr;
  const std::vector<protocol::DsnRecipient>* failed = nullptr;
  std::vector<std::string> newly_failed;
  std::string dsn_id;
  std::string host_name;
  std::function<std::string()> original_headers;   // read only when a DSN is made
  std::string lifetime_text;
  bool bounces = true;
  std::int64_t now = 0;
};
std::optional<FailureDsn> failure_dsn(const FailureDsnInput& in);
// A built notice as the message to enqueue: from <> (RFC 3464 §2), to the
// original sender. Shared by failure DSNs and delay warnings.
FailureDsn notice_message(std::string dsn_id, const std::string& original_sender, const std::string& host_name,
                          protocol::DsnMessage built, std::int64_t now);

}  // namespace outbox::daemon
