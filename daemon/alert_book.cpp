#include "daemon/alert_book.h"

#include <nlohmann/json.hpp>

#include "protocol/rfc3339.h"

namespace outbox::daemon {

std::string_view alert_kind_name(AlertKind k) {
  switch (k) {
    case AlertKind::UpstreamSuspended: return "upstream_suspended";
    case AlertKind::AuthFailed: return "auth_failed";
    case AlertKind::QuotaExhausted: return "quota_exhausted";
    case AlertKind::QueueAge: return "queue_age";
    case AlertKind::SpoolError: return "spool_error";
  }
  return "unknown";
}

std::optional<AlertKind> alert_kind_of(std::string_view name) {
  for (AlertKind k : kAllAlertKinds)
    if (alert_kind_name(k) == name) return k;
  return std::nullopt;
}

std::string_view alert_severity(AlertKind k) {
  return k == AlertKind::AuthFailed || k == AlertKind::SpoolError ? "error" : "warning";
}

bool alert_resolves_itself(AlertKind k) { return k == AlertKind::SpoolError; }

std::string alert_json(const Alert& a, const std::string& host, std::uint64_t suppressed) {
  nlohmann::ordered_json j;
  j["source"] = "outbox";
  j["host"] = host;
  j["event"] = std::string(alert_kind_name(a.kind));
  j["severity"] = std::string(alert_severity(a.kind));
  j["subject"] = a.subject;
  j["summary"] = a.summary;
  j["hint"] = a.hint;
  j["time"] = protocol::rfc3339_utc(a.time);
  nlohmann::ordered_json d = nlohmann::ordered_json::object();
  for (const auto& [k, v] : a.details) d[k] = v;
  j["details"] = d;
  j["suppressed"] = suppressed;
  // Reply texts are the upstream's bytes: never let one break the JSON.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

AlertBook::AlertBook(std::set<AlertKind> subscribed, Params p) : subscribed_(std::move(subscribed)), p_(p) {}

AlertBook::Decision AlertBook::raise(AlertKind k, const std::string& subject, std::int64_t now) {
  if (!subscribed_.count(k)) return Decision::NotSubscribed;
  const auto key = std::make_pair(k, subject);
  auto it = open_.find(key);
  if (it != open_.end()) {
    const bool closed_by_quiet = alert_resolves_itself(k) && now - it->second > p_.quiet;
    if (!closed_by_quiet) {
      it->second = now;
      return Decision::Duplicate;
    }
  }
  // A new incident: open whether or not the limit lets it out, so a cut one
  // is not sent later as if it were new.
  open_[key] = now;
  while (!sent_.empty() && sent_.front() <= now - 3600) sent_.pop_front();
  if (sent_.size() >= p_.max_per_hour) {
    ++suppressed_;
    return Decision::RateLimited;
  }
  sent_.push_back(now);
  return Decision::Send;
}

bool AlertBook::resolve(AlertKind k, const std::string& subject) {
  return open_.erase(std::make_pair(k, subject)) > 0;
}

std::uint64_t AlertBook::take_suppressed() {
  std::uint64_t n = suppressed_;
  suppressed_ = 0;
  return n;
}

}  // namespace outbox::daemon
