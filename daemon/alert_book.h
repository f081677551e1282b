// Alerts that do not go through the queue (issue 10 item 6): which
// incidents a hook is told about, as pure decisions (no I/O, no clock: every
// call takes `now`, seconds since the epoch; tests/unit/relay/test_alerts).
//
// An incident is (kind, subject): "upstream m365 suspended", "the oldest
// waiting message is older than 4 h", "spool writes fail". It is told once
// when it opens; raising it again while it is open is a duplicate. It closes
// when the condition clears (resolve: the upstream delivered again, the
// queue drained) or, for kinds with no clearing event (spool errors), after
// `quiet` seconds without a new raise. A flood of distinct incidents is cut
// at `max_per_hour` per hook; what was cut is counted and said in the next
// alert that goes out.
#pragma once
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace outbox::daemon {

enum class AlertKind { UpstreamSuspended, AuthFailed, QuotaExhausted, QueueAge, SpoolError };
inline constexpr AlertKind kAllAlertKinds[] = {AlertKind::UpstreamSuspended, AlertKind::AuthFailed,
                                               AlertKind::QuotaExhausted, AlertKind::QueueAge,
                                               AlertKind::SpoolError};
std::string_view alert_kind_name(AlertKind k);   // "upstream_suspended", "auth_failed", ...
std::optional<AlertKind> alert_kind_of(std::string_view name);
// "error" for what needs a person now (a refused login, spool writes), else "warning".
std::string_view alert_severity(AlertKind k);
// Whether the kind has an event that clears it (else it closes after `quiet`).
bool alert_resolves_itself(AlertKind k);

struct Alert {
  AlertKind kind = AlertKind::UpstreamSuspended;
  std::string subject;   // the upstream's name; "" for the queue or the spool
  std::string summary;   // one line, plain words
  std::string hint;      // what to do ("" when nothing specific)
  std::vector<std::pair<std::string, std::string>> details;   // reply, until, age, ...
  std::int64_t time = 0;                                      // s since the epoch
};

// The webhook's body / the command's standard input: one JSON object
// {"source":"outbox","host":...,"event":...,"severity":...,"subject":...,
//  "summary":...,"hint":...,"time":"RFC 3339","details":{...},"suppressed":N}.
std::string alert_json(const Alert& a, const std::string& host, std::uint64_t suppressed);

class AlertBook {
 public:
  struct Params {
    std::int64_t quiet = 900;        // s without a raise that close a self-resolving incident
    std::size_t max_per_hour = 20;   // alerts this hook sends per rolling hour
  };
  enum class Decision { Send, Duplicate, NotSubscribed, RateLimited };

  AlertBook(std::set<AlertKind> subscribed, Params p);

  Decision raise(AlertKind k, const std::string& subject, std::int64_t now);
  // The condition cleared: true when an incident was open (the next raise
  // opens a new one).
  bool resolve(AlertKind k, const std::string& subject);
  // Alerts cut by the hourly limit since the last one that went out; reset
  // by take_suppressed() when an alert carries the count.
  std::uint64_t take_suppressed();
  std::size_t open_incidents() const { return open_.size(); }

 private:
  std::set<AlertKind> subscribed_;
  Params p_;
  std::map<std::pair<AlertKind, std::string>, std::int64_t> open_;   // incident -> last raise
  std::deque<std::int64_t> sent_;                                    // times of the last hour's alerts
  std::uint64_t suppressed_ = 0;
};

}  // namespace outbox::daemon
