// Plain records of the spool, shared by the daemon, outboxctl and the tests.
// Times are microseconds since the Unix epoch (UTC).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace outbox::queue {

// Message states (SPEC "Queue states"). "incoming" is internal: a message whose
// DATA is still arriving or whose commit has not returned. It is never listed
// and is deleted at start-up (it never got a 250).
inline constexpr const char* kIncoming = "incoming";
inline constexpr const char* kQueued = "queued";
inline constexpr const char* kActive = "active";
inline constexpr const char* kDeferred = "deferred";
inline constexpr const char* kHeld = "held";
inline constexpr const char* kSent = "sent";
inline constexpr const char* kFailed = "failed";

// Recipient states. "uncertain": the final dot was sent and no reply is known
// (a crash or a lost connection in between, RFC 1047); resent by default as
// a possible duplicate, or held for the operator ([retry] uncertain = "hold").
inline constexpr const char* kPending = "pending";
inline constexpr const char* kUncertain = "uncertain";

// Why a queued/deferred message is waiting (messages.wait_reason). Stored as
// its integer value: append only.
enum class WaitReason : int {
  None = 0,               // its own backoff, or new
  NoRoute = 1,            // no [[route]] matched its sender
  UpstreamSuspended = 2,  // every upstream of its route is suspended
  RateLimited = 3,        // its upstream's rate ceiling is reached
  UpstreamUnusable = 4,   // its upstream cannot be set up (secret, CA file)
};

// Why an upstream is suspended (upstreams.reason). Append only.
enum class SuspendReason : int {
  None = 0,
  AuthFailed = 1,         // 535 & co: retried on its own slow schedule, never at message backoff
  Throttled = 2,          // 421/450/451/454 4.7.x, "too many": provider rate limiting
  Unreachable = 3,        // resolve/connect/TLS/timeout
  Refused = 4,            // greeting/EHLO/MAIL refused for the whole upstream
  Operator = 5,           // reserved: suspended by the operator
  QuotaReached = 6,       // the provider's table: the account's quota is used up (Gmail 5.4.5): held until it frees
  ProviderStop = 7,       // the provider's table: stop sending for a while (Microsoft 5.2.251-255)
};

struct LedgerEntry {               // one row of quota_ledger: a message handed to an upstream
  std::int64_t time = 0;           // µs
  std::uint32_t recipients = 1;
  bool operator==(const LedgerEntry&) const = default;
};

struct UpstreamState {             // one row of the upstreams table
  std::string name;
  std::optional<std::int64_t> suspended_until;   // µs; nullopt: usable
  SuspendReason reason = SuspendReason::None;
  int failures = 0;
  std::string stage;
  std::string last_reply;
  std::int64_t updated = 0;
};

struct OperatorAction {            // one row of operator_log
  std::int64_t seq = 0;
  std::int64_t time = 0;
  std::optional<std::int64_t> uid;
  std::string action;              // retry|retry_all|resume|hold|release|delete
  std::string target;
  std::string detail;
};

struct NewMessage {                 // what the server knows when DATA starts
  std::string id;
  std::string sender;               // "" = <>
  std::vector<std::string> recipients;
  std::string client;               // "127.0.0.1", "unix"
  std::optional<std::int64_t> uid;  // SO_PEERCRED
  std::string helo;
  bool smtputf8 = false;
  bool body_8bit = false;
  std::int64_t created = 0;         // µs
  // A maildrop file's name when the message is that file's import: recorded
  // with the commit (Spool::record_import), at most one message per file.
  std::string import_key;
};

struct RecipientRecord {
  std::string address;
  std::string state;                // pending | sent | failed
  int attempts = 0;
  std::optional<std::int64_t> next_attempt;
  std::string last_reply;
  std::optional<std::int64_t> updated;
};

struct AttemptRecord {
  std::int64_t time = 0;
  std::string upstream;
  std::vector<std::string> recipients;
  std::string reply;
  std::string outcome;              // delivered | deferred | bounced | ...
};

struct MessageRecord {
  std::string id;
  std::string state;
  std::string sender;
  std::vector<RecipientRecord> recipients;
  std::uint64_t size = 0;
  std::int64_t created = 0;
  int attempts = 0;
  std::optional<std::int64_t> next_attempt;
  std::string last_error;
  std::string client;
  std::optional<std::int64_t> uid;
  std::string helo;
  bool smtputf8 = false;
  bool body_8bit = false;
  std::vector<AttemptRecord> history;   // filled by Spool::get() only
};

struct QueueStats {
  std::vector<std::pair<std::string, std::int64_t>> by_state;  // state -> count (listed states only)
  std::optional<std::int64_t> oldest_created;                   // among unfinished messages
  std::int64_t total_size = 0;                                  // bytes of unfinished messages
  // Delivery attempts by outcome (delivered, deferred, bounced, ...) whose
  // time lies within the last hour / the last 24 hours.
  std::vector<std::pair<std::string, std::int64_t>> attempts_last_hour;
  std::vector<std::pair<std::string, std::int64_t>> attempts_last_day;
  // Per upstream, from the attempt history: what monitoring alerts on.
  struct Upstream {
    std::string name;
    std::vector<std::pair<std::string, std::int64_t>> attempts_last_day;  // outcome -> count
    std::optional<std::int64_t> last_delivered;   // µs of the newest delivered attempt
    std::optional<std::int64_t> last_attempt;     // µs of the newest attempt
    std::string last_outcome;                     // its outcome
  };
  std::vector<Upstream> upstreams;                // by name
  // Recipients deferred or failed since the spool was made, by enhanced
  // status and result: counters (they only grow).
  struct Failures {
    std::string status;   // "4.2.0", "none"
    std::string result;   // deferred | failed
    std::int64_t count = 0;
  };
  std::vector<Failures> failures;
};

}  // namespace outbox::queue
