#include "daemon/settle.h"

#include <algorithm>

#include "protocol/reply_rules.h"

namespace outbox::daemon {

namespace client = protocol::client;

AttemptNotes attempt_notes(const client::MessageReport& report, const protocol::UpstreamSummary* upstream,
                           queue::AfterAttempt after, std::int64_t now) {
  AttemptNotes n;
  n.after = after;
  const auto* f = report.first_failure();
  if (!upstream || !f || f->outcome == client::Outcome::Delivered) return n;
  n.hint = protocol::diagnose(*upstream, *f).hint;
  // The provider's meaning and what outbox does, in plain words, first:
  // `outboxctl show` prints it with the reply (SPEC "Provider profiles").
  if (!f->verdict) return n;
  n.action = std::string(protocol::action_name(f->verdict->action));
  // The generic diagnosis guesses from the text; for an upstream action
  // the table knows better (Microsoft's "Sender throttled ..." is no
  // sender mismatch).
  if (protocol::upstream_action(f->verdict->action)) n.hint.clear();
  n.hint = n.hint.empty() ? f->verdict->words() : f->verdict->words() + "; " + n.hint;
  // "retry after": this message waits at least that long (163 "451 DT:SPM": 2 minutes).
  if (f->verdict->action == protocol::ReplyAction::Retry && !n.after.expired)
    n.after.next = std::max(n.after.next, now + static_cast<std::int64_t>(f->verdict->after.count()) * 1'000'000);
  return n;
}

log::Line held_uncertain_line(const std::string& id) {
  return log::Line("held").kv("id", id).kv("reason", "outcome uncertain")
      .kv("hint", "check with the recipient, then outboxctl release or delete it");
}

std::vector<LogEntry> recovery_lines(const queue::Recovery& r, bool while_running) {
  std::vector<LogEntry> out;
  if (r.interrupted.empty()) return out;
  log::Line l("recovered");
  l.kv("interrupted_deliveries", r.interrupted.size());
  if (while_running) l.kv("while_running", "yes");
  out.push_back({log::Level::Info, std::move(l)});
  for (const auto& [id, rcpts] : r.uncertain) {
    bool held = std::find(r.held.begin(), r.held.end(), id) != r.held.end();
    for (const auto& to : rcpts)
      out.push_back({log::Level::Warn, log::Line("uncertain").kv("id", id).kv("to", to).kv("possible_duplicate", "yes")
                                           .kv("action", held ? "hold" : "resend")});
    if (held) out.push_back({log::Level::Warn, held_uncertain_line(id)});
  }
  return out;
}

LogEntry recorder_line(const OutcomeRecorder::Event& e) {
  if (e.kind == OutcomeRecorder::Event::Kind::WriteFailed)
    return {log::Level::Error, log::Line("spool_error").kv("id", e.id).kv("op", "delivery outcome")
                                   .kv("error", e.error).kv("retry_in_s", log::seconds_text(e.retry_in))};
  return {log::Level::Info, log::Line("outcome_recorded_late").kv("id", e.id).kv("tries", e.tries)
                                .kv("late_s", log::seconds_text(e.late_by))};
}

Settled settled_lines(const SettledInput& in) {
  const queue::DueMessage& m = *in.msg;
  const AttemptOutcome& out = *in.outcome;
  const queue::MessageAfter& after = *in.after;
  Settled s;
  const std::int64_t delay = in.now - m.created;
  for (const auto& l : out.lines) {
    log::Line line(l.event);
    line.kv("id", m.id).kv("from", m.sender.empty() ? "<>" : m.sender).kv("to", l.address).kv("relay", in.relay)
        .kv("delay", log::seconds_text(delay)).kv("attempt", after.attempts).kv("dsn", l.dsn).kv("reply", l.reply);
    // This try's dot had no reply, or an earlier one's (recipient claimed 'uncertain').
    if (in.possible_duplicate || std::find(m.uncertain.begin(), m.uncertain.end(), l.address) != m.uncertain.end())
      line.kv("possible_duplicate", "yes");
    if (l.event == "deferred" || l.event == "bounced") {
      if (!in.action.empty()) line.kv("action", in.action);
      if (!in.hint.empty()) line.kv("hint", in.hint);
    }
    s.lines.push_back({l.event == "delivered" ? log::Level::Info : log::Level::Warn, std::move(line)});
  }
  if (in.dsn_made) {
    s.lines.push_back({log::Level::Info, log::Line("bounce_queued").kv("id", in.dsn_id).kv("original", m.id)
                                             .kv("to", m.sender)});
    s.kick = true;
  }
  if (out.failover && after.exists && after.state == queue::kDeferred) {
    s.lines.push_back({log::Level::Info,
                       log::Line("failover").kv("id", m.id).kv("from_upstream", out.record.upstream)});
    s.kick = true;
  }
  if (!after.exists)
    s.lines.push_back({log::Level::Info, log::Line("delivery_dropped").kv("id", m.id)
                                             .kv("reason", "deleted during delivery")});
  if (out.held_uncertain && after.exists && after.state == queue::kHeld)
    s.lines.push_back({log::Level::Warn, held_uncertain_line(m.id)});
  return s;
}

}  // namespace outbox::daemon
