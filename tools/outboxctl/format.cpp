#include "tools/outboxctl/format.h"

#include "protocol/rfc3339.h"

#include "protocol/header_text.h"
#include "protocol/printable.h"

#include <cinttypes>
#include <cstdio>
#include <ctime>

namespace outbox::ctl {

namespace {

constexpr std::int64_t kMicros = 1'000'000;

std::int64_t seconds_between(std::int64_t from_us, std::int64_t to_us) {
  return to_us > from_us ? (to_us - from_us) / kMicros : 0;
}

std::string sender_label(const std::string& s) { return s.empty() ? "<>" : printable(s); }

std::string next_label(const std::optional<std::int64_t>& next, std::int64_t now) {
  if (!next) return "-";
  if (*next <= now) return "now";
  // Round up: "in 0s" for something 0.4 s away would read as overdue.
  return "in " + human_duration((*next - now + kMicros - 1) / kMicros);
}

std::string fmt(const char* f, auto... args) {
  char buf[256];
  std::snprintf(buf, sizeof buf, f, args...);
  return buf;
}

nlohmann::ordered_json time_or_null(const std::optional<std::int64_t>& t) {
  return t ? nlohmann::ordered_json(rfc3339(*t)) : nlohmann::ordered_json(nullptr);
}

nlohmann::ordered_json counts_json(const std::vector<std::pair<std::string, std::int64_t>>& v) {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  for (const auto& [k, n] : v) j[k] = n;
  return j;
}

std::string prom_label(std::string_view v) {   // Prometheus text format escaping
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\', out += c;
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string counts_line(const std::vector<std::pair<std::string, std::int64_t>>& v) {
  if (v.empty()) return "none";
  std::string out;
  for (const auto& [k, n] : v) {
    if (!out.empty()) out += ", ";
    out += printable(k) + " " + std::to_string(n);
  }
  return out;
}

}  // namespace

std::string rfc3339(std::int64_t micros) {
  // Floor, not truncate, so times before 1970 stay ordered.
  return protocol::rfc3339_utc(micros / kMicros - (micros % kMicros < 0 ? 1 : 0));
}

std::string human_duration(std::int64_t s) {
  if (s < 0) s = 0;
  if (s < 60) return fmt("%" PRId64 "s", s);
  if (s < 3600) return fmt("%" PRId64 "m", s / 60);
  if (s < 86400) return fmt("%" PRId64 "h%02" PRId64 "m", s / 3600, (s % 3600) / 60);
  return fmt("%" PRId64 "d%02" PRId64 "h", s / 86400, (s % 86400) / 3600);
}

std::string human_size(std::uint64_t b) {
  if (b < 1024) return std::to_string(b);
  const char* units = "KMGT";
  double v = static_cast<double>(b) / 1024.0;
  int u = 0;
  while (v >= 1024.0 && u < 3) v /= 1024.0, ++u;
  return fmt("%.1f%c", v, units[u]);
}

std::string printable(std::string_view s) { return protocol::printable(s); }

std::string probe_step_line(std::string_view stage, std::string_view detail, long long ms) {
  std::string d = printable(detail);
  if (d.size() > 200) d = d.substr(0, 197) + "...";   // a long reply; paths are shown whole
  return fmt("%-9s %-70s %6lld ms\n", std::string(stage).c_str(), d.c_str(), ms);
}

nlohmann::ordered_json message_json(const queue::MessageRecord& m, bool with_history) {
  using json = nlohmann::ordered_json;
  json rcpts = json::array();
  for (const auto& r : m.recipients) {
    rcpts.push_back({{"address", r.address},
                     {"state", r.state},
                     {"last_reply", r.last_reply},
                     {"attempts", r.attempts},
                     {"next_attempt", time_or_null(r.next_attempt)}});
  }
  json j = {
      {"id", m.id},
      {"state", m.state},
      {"sender", m.sender},
      {"recipients", rcpts},
      {"size", m.size},
      {"created", rfc3339(m.created)},
      {"attempts", m.attempts},
      {"next_attempt", time_or_null(m.next_attempt)},
      {"last_error", m.last_error},
      {"client", m.client},
      {"uid", m.uid ? json(*m.uid) : json(nullptr)},
      {"helo", m.helo},
      {"smtputf8", m.smtputf8},
      {"body_8bit", m.body_8bit},
  };
  if (with_history) {
    json h = json::array();
    for (const auto& a : m.history) {
      h.push_back({{"time", rfc3339(a.time)},
                   {"upstream", a.upstream},
                   {"recipients", a.recipients},
                   {"reply", a.reply},
                   {"outcome", a.outcome}});
    }
    j["attempts_history"] = h;
  }
  return j;
}

nlohmann::ordered_json stats_json(const queue::QueueStats& s, std::int64_t now) {
  using json = nlohmann::ordered_json;
  std::int64_t unfinished = 0;
  for (const auto& [k, n] : s.by_state)
    if (k == queue::kQueued || k == queue::kActive || k == queue::kDeferred || k == queue::kHeld) unfinished += n;
  return {
      {"states", counts_json(s.by_state)},
      {"unfinished", unfinished},
      {"total_size", s.total_size},
      {"oldest_created", time_or_null(s.oldest_created)},
      {"oldest_age_seconds", s.oldest_created ? json(seconds_between(*s.oldest_created, now)) : json(nullptr)},
      {"attempts_last_hour", counts_json(s.attempts_last_hour)},
      {"attempts_last_day", counts_json(s.attempts_last_day)},
      {"failures", [&] {
         auto arr = json::array();
         for (const auto& f : s.failures) arr.push_back({{"status", f.status}, {"result", f.result}, {"count", f.count}});
         return arr;
       }()},
  };
}

std::string dump_json(const nlohmann::ordered_json& j) {
  return j.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
}

void render_queue_header(std::ostream& out) {
  out << fmt("%-14s  %-8s  %6s  %6s  %5s  %-8s  %s\n", "ID", "STATE", "AGE", "SIZE", "TRIES", "NEXT", "SENDER");
}

void render_queue_entry(std::ostream& out, const queue::MessageRecord& m, std::int64_t now) {
  const std::string indent(16, ' ');
  out << fmt("%-14s  %-8s  %6s  %6s  %5d  %-8s  ", m.id.c_str(), m.state.c_str(),
             human_duration(seconds_between(m.created, now)).c_str(), human_size(m.size).c_str(), m.attempts,
             next_label(m.next_attempt, now).c_str())
      << sender_label(m.sender) << "\n";
  if (!m.last_error.empty()) out << indent << "(" << printable(m.last_error) << ")\n";
  for (const auto& r : m.recipients) {
    out << indent << printable(r.address) << "  " << r.state;
    if (r.state == queue::kUncertain) out << "  (dot sent, no reply: a resend may duplicate it)";
    if (r.state != queue::kSent && !r.last_reply.empty()) out << "  (" << printable(r.last_reply) << ")";
    out << "\n";
  }
}

void render_queue_footer(std::ostream& out, std::uint64_t count, std::uint64_t total, std::string_view state_filter) {
  if (count == 0) {
    if (state_filter.empty())
      out << "Queue is empty\n";
    else
      out << "No " << printable(state_filter) << " messages\n";
    return;
  }
  out << "-- " << count << (count == 1 ? " message, " : " messages, ") << human_size(total)
      << (total < 1024 ? " bytes" : "") << "\n";
}

void render_queue(std::ostream& out, const std::vector<queue::MessageRecord>& msgs, std::int64_t now,
                  std::string_view state_filter) {
  std::uint64_t total = 0;
  if (!msgs.empty()) render_queue_header(out);
  for (const auto& m : msgs) {
    total += m.size;
    render_queue_entry(out, m, now);
  }
  render_queue_footer(out, msgs.size(), total, state_filter);
}

std::string suspend_reason_words(queue::SuspendReason r) {
  using R = queue::SuspendReason;
  switch (r) {
    case R::None: return "no reason recorded";
    case R::AuthFailed: return "authentication failed";
    case R::Throttled: return "throttled by the provider";
    case R::Unreachable: return "unreachable";
    case R::Refused: return "refused the session";
    case R::Operator: return "suspended by the operator";
    case R::QuotaReached: return "the account's quota at the provider is used up";
    case R::ProviderStop: return "the provider asked to stop sending for a while";
  }
  return "reason " + std::to_string(static_cast<int>(r));   // from a newer version
}

namespace {
const char* reason_key(queue::SuspendReason r) {
  using R = queue::SuspendReason;
  switch (r) {
    case R::None: return "none";
    case R::AuthFailed: return "auth_failed";
    case R::Throttled: return "throttled";
    case R::Unreachable: return "unreachable";
    case R::Refused: return "refused";
    case R::Operator: return "operator";
    case R::QuotaReached: return "quota_reached";
    case R::ProviderStop: return "provider_stop";
  }
  return "unknown";
}
bool suspended(const queue::UpstreamState& u, std::int64_t now) { return u.suspended_until && *u.suspended_until > now; }
}  // namespace

std::string upstream_status(const queue::UpstreamState& u, std::int64_t now) {
  if (!suspended(u, now)) return "ok";
  return "suspended until " + rfc3339(*u.suspended_until) + " (" + next_label(u.suspended_until, now) + ")";
}

namespace {
nlohmann::ordered_json quota_json(const std::vector<queue::WindowUse>& q) {
  using json = nlohmann::ordered_json;
  auto arr = json::array();
  for (const auto& w : q)
    arr.push_back({{"unit", w.window.recipients ? "recipients" : "messages"},
                   {"limit", w.window.count},
                   {"per_s", w.window.per_us / 1'000'000},
                   {"used", w.used},
                   {"full", w.full},
                   {"next_slot", w.full ? json(rfc3339(w.free_at)) : json(nullptr)}});
  return arr;
}
}  // namespace

nlohmann::ordered_json upstream_json(const UpstreamRow& r, std::int64_t now) {
  using json = nlohmann::ordered_json;
  bool susp = suspended(r.state, now);
  return {
      {"name", r.name},
      {"configured", r.configured},
      {"state", susp ? "suspended" : "ok"},
      {"suspended_until", susp ? time_or_null(r.state.suspended_until) : json(nullptr)},
      {"reason", susp ? json(reason_key(r.state.reason)) : json(nullptr)},
      {"failures", r.state.failures},
      {"stage", r.state.stage},
      {"last_reply", r.state.last_reply},
      {"in_flight", r.in_flight},
      {"waiting", r.waiting},
      {"quota", quota_json(r.quota)},
  };
}

void render_upstreams(std::ostream& out, const std::vector<UpstreamRow>& rows, std::int64_t now) {
  if (rows.empty()) {
    out << "No upstreams configured\n";
    return;
  }
  for (const auto& r : rows) {
    out << printable(r.name) << ": " << upstream_status(r.state, now);
    if (suspended(r.state, now)) out << ", " << suspend_reason_words(r.state.reason);
    out << "; failures " << r.state.failures << ", in flight " << r.in_flight << ", waiting " << r.waiting;
    if (!r.configured) out << " (not in the configuration)";
    out << "\n";
    for (const auto& w : r.quota) out << "  " << queue::quota_words(w) << "\n";
    if (!r.state.stage.empty() || !r.state.last_reply.empty())
      out << "  last failure at " << (r.state.stage.empty() ? "-" : printable(r.state.stage)) << ": "
          << (r.state.last_reply.empty() ? "-" : printable(r.state.last_reply)) << "\n";
  }
}

void render_message(std::ostream& out, const queue::MessageRecord& m, std::string_view headers, std::int64_t now) {
  auto line = [&](const char* key, const std::string& value) { out << fmt("%-13s ", key) << value << "\n"; };
  line("id:", m.id);
  line("state:", m.state);
  line("sender:", sender_label(m.sender));
  line("size:", std::to_string(m.size));
  line("created:", rfc3339(m.created) + " (" + human_duration(seconds_between(m.created, now)) + " ago)");
  std::string client = printable(m.client);
  if (m.uid) client += " uid=" + std::to_string(*m.uid);
  line("client:", client);
  line("helo:", printable(m.helo));
  line("smtputf8:", m.smtputf8 ? "yes" : "no");
  line("8bitmime:", m.body_8bit ? "yes" : "no");
  line("attempts:", std::to_string(m.attempts));
  line("next attempt:", m.next_attempt ? rfc3339(*m.next_attempt) + " (" + next_label(m.next_attempt, now) + ")" : "-");
  line("last error:", m.last_error.empty() ? "-" : printable(m.last_error));
  out << "recipients:\n";
  for (const auto& r : m.recipients) {
    out << "  " << printable(r.address) << "  " << r.state << "  attempts=" << r.attempts;
    if (r.state == queue::kUncertain) out << "  (dot sent, no reply: a resend may duplicate it)";
    if (r.next_attempt && (r.state == queue::kPending || r.state == queue::kUncertain))
      out << "  next=" << rfc3339(*r.next_attempt);
    if (!r.last_reply.empty()) out << "  (" << printable(r.last_reply) << ")";
    out << "\n";
  }
  out << "history:\n";
  if (m.history.empty()) out << "  (no delivery attempts yet)\n";
  for (const auto& a : m.history) {
    std::string to;
    for (const auto& r : a.recipients) to += (to.empty() ? "" : ",") + printable(r);
    out << "  " << rfc3339(a.time) << "  " << printable(a.outcome) << "  upstream=" << printable(a.upstream)
        << "  to=" << to;
    if (!a.reply.empty()) out << "  (" << printable(a.reply) << ")";
    out << "\n";
  }
  out << "headers:\n";
  // One line per field: unfolded (RFC 5322 §2.2.3), encoded-words decoded
  // to UTF-8 (RFC 2047), tabs shown as spaces; control bytes still escaped.
  // `show --body` has the bytes as stored.
  for (auto field : protocol::unfold_fields(headers)) {
    std::string text = protocol::decode_encoded_words(field);
    for (auto& c : text)
      if (c == '\t') c = ' ';
    out << "  " << printable(text) << "\n";
  }
}

void render_stats(std::ostream& out, const queue::QueueStats& s, std::int64_t now) {
  for (const auto& [k, n] : s.by_state) out << fmt("%-10s %8" PRId64 "\n", printable(k).c_str(), n);
  if (s.oldest_created)
    out << fmt("%-10s ", "oldest") << human_duration(seconds_between(*s.oldest_created, now)) << " ("
        << rfc3339(*s.oldest_created) << ")\n";
  else
    out << fmt("%-10s ", "oldest") << "-\n";
  out << fmt("%-10s ", "size") << human_size(static_cast<std::uint64_t>(s.total_size))
      << (s.total_size < 1024 ? " bytes" : "") << " unfinished\n";
  out << fmt("%-10s ", "last hour") << counts_line(s.attempts_last_hour) << "\n";
  out << fmt("%-10s ", "last 24h") << counts_line(s.attempts_last_day) << "\n";
}

void render_prometheus(std::ostream& out, const queue::QueueStats& s, std::int64_t now) {
  auto family = [&](const char* name, const char* help) {
    out << "# HELP " << name << " " << help << "\n# TYPE " << name << " gauge\n";
  };
  family("outbox_messages", "Messages in the spool, by state.");
  for (const auto& [k, n] : s.by_state) out << "outbox_messages{state=\"" << prom_label(k) << "\"} " << n << "\n";
  family("outbox_oldest_message_age_seconds", "Age of the oldest unfinished message (0 when there is none).");
  out << "outbox_oldest_message_age_seconds " << (s.oldest_created ? seconds_between(*s.oldest_created, now) : 0)
      << "\n";
  family("outbox_unfinished_bytes", "Bytes of queued, active, deferred and held messages.");
  out << "outbox_unfinished_bytes " << s.total_size << "\n";
  family("outbox_attempts_last_hour", "Delivery attempts in the last hour, by outcome.");
  for (const auto& [k, n] : s.attempts_last_hour)
    out << "outbox_attempts_last_hour{outcome=\"" << prom_label(k) << "\"} " << n << "\n";
  family("outbox_attempts_last_day", "Delivery attempts in the last 24 hours, by outcome.");
  for (const auto& [k, n] : s.attempts_last_day)
    out << "outbox_attempts_last_day{outcome=\"" << prom_label(k) << "\"} " << n << "\n";
  out << "# HELP outbox_delivery_failures_total Recipients deferred or failed by an attempt, by enhanced status "
         "code (RFC 3463) and result.\n# TYPE outbox_delivery_failures_total counter\n";
  for (const auto& f : s.failures)
    out << "outbox_delivery_failures_total{status=\"" << prom_label(f.status) << "\",result=\"" << prom_label(f.result)
        << "\"} " << f.count << "\n";
  if (s.upstreams.empty()) return;
  family("outbox_upstream_attempts_last_day",
         "Delivery attempts in the last 24 hours, by upstream and outcome (delivered, deferred, bounced, ...).");
  for (const auto& u : s.upstreams)
    for (const auto& [k, n] : u.attempts_last_day)
      out << "outbox_upstream_attempts_last_day{upstream=\"" << prom_label(u.name) << "\",outcome=\""
          << prom_label(k) << "\"} " << n << "\n";
  family("outbox_upstream_last_delivery_timestamp_seconds",
         "Unix time of the last successful delivery through the upstream (0: none on record).");
  for (const auto& u : s.upstreams)
    out << "outbox_upstream_last_delivery_timestamp_seconds{upstream=\"" << prom_label(u.name) << "\"} "
        << (u.last_delivered ? *u.last_delivered / 1'000'000 : 0) << "\n";
  family("outbox_upstream_failing",
         "1 when the upstream's most recent attempt did not deliver (refused, throttled, unreachable).");
  for (const auto& u : s.upstreams)
    out << "outbox_upstream_failing{upstream=\"" << prom_label(u.name) << "\"} "
        << (u.last_attempt && u.last_outcome != "delivered" ? 1 : 0) << "\n";
}

}  // namespace outbox::ctl
