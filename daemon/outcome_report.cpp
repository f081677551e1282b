#include "daemon/outcome_report.h"

#include <algorithm>

namespace outbox::daemon {

namespace client = protocol::client;

std::string duration_words(std::chrono::seconds s) {
  auto n = s.count();
  if (n % 86400 == 0) return std::to_string(n / 86400) + (n == 86400 ? " day" : " days");
  if (n % 3600 == 0) return std::to_string(n / 3600) + (n == 3600 ? " hour" : " hours");
  if (n % 60 == 0) return std::to_string(n / 60) + (n == 60 ? " minute" : " minutes");
  return std::to_string(n) + " seconds";
}

std::string dsn_code(const client::RecipientResult& r) {
  const auto& s = r.status;
  return std::to_string(s.cls) + "." + std::to_string(s.subject) + "." + std::to_string(s.detail);
}

// Temporary, of scope upstream, with the status a reply-less failure
// deserves (RFC 3463).
client::RecipientResult setup_result(const std::string& address, const client::SessionFailure& f) {
  client::RecipientResult r;
  r.address = address;
  r.outcome = client::Outcome::Temporary;
  r.scope = client::Scope::Upstream;
  r.stage = f.stage;
  r.reply = f.reply;
  r.detail = f.detail;
  if (f.reply) {
    r.status = f.reply->status();
    if (r.status.cls != 4 && r.status.cls != 5) r.status = protocol::EnhancedStatus{4, 0, 0};
    r.status.cls = 4;   // an upstream failure never bounces (SPEC "Relay")
  } else if (f.detail.rfind("timeout", 0) == 0 || f.detail.rfind("connection closed", 0) == 0) {
    r.status = protocol::EnhancedStatus{4, 4, 2};   // bad connection
  } else if (f.stage == client::Stage::Connect) {
    r.status = protocol::EnhancedStatus{4, 4, 1};   // no answer from host
  } else if (f.stage == client::Stage::Tls) {
    r.status = protocol::EnhancedStatus{4, 7, 5};   // cryptographic failure
  } else if (f.stage == client::Stage::StartTls) {
    r.status = protocol::EnhancedStatus{4, 7, 4};   // security features not supported
  } else {
    r.status = protocol::EnhancedStatus{4, 7, 0};
  }
  return r;
}

client::MessageReport setup_report(const queue::DueMessage& m, const client::SessionFailure& f,
                                   const std::optional<protocol::ReplyVerdict>& verdict) {
  client::MessageReport report;
  report.id = m.id;
  for (const auto& a : m.recipients) {
    report.recipients.push_back(setup_result(a, f));
    report.recipients.back().verdict = verdict;
  }
  return report;
}

client::SessionFailure failure_of(const client::MessageReport& report) {
  client::SessionFailure sf;
  if (const client::RecipientResult* f = report.first_failure()) {
    sf.stage = f->stage;
    sf.reply = f->reply;
    sf.detail = f->detail;
  } else {
    sf.detail = "failed";
  }
  return sf;
}

client::MessageReport unsent_report(const queue::DueMessage& m, std::string_view why) {
  client::MessageReport report;
  report.id = m.id;
  for (const auto& a : m.recipients) {
    client::RecipientResult r;
    r.address = a;
    r.outcome = client::Outcome::Temporary;
    r.scope = client::Scope::Connection;
    r.stage = client::Stage::Mail;
    r.status = protocol::EnhancedStatus{4, 4, 2};
    r.detail = std::string(why);
    report.recipients.push_back(std::move(r));
  }
  return report;
}

AttemptOutcome compose_outcome(const OutcomeInput& in) {
  const queue::DueMessage& m = *in.msg;
  const client::MessageReport& report = *in.report;
  AttemptOutcome out;
  queue::DeliveryReport& rep = out.record;
  rep.id = m.id;
  rep.upstream = in.upstream;
  rep.time = in.now;
  // Every try counts, a connection that failed for this message included:
  // `show` must not say "attempts: 0" above a history of failures.
  rep.count_attempt = true;
  // After an upstream failure the message waits for its route, not for its
  // own backoff: another upstream of the route that is not suspended takes
  // it at once (failover), through the spool like any due message.
  const bool expired = in.after.expired;
  out.failover = in.upstream_fault && in.after.failover;
  out.next_at = in.after.next;
  std::string last_error;
  for (const auto& r : report.recipients) {
    queue::RecipientOutcome o;
    o.address = r.address;
    o.reply = r.text();
    o.status = dsn_code(r);
    if (r.outcome == client::Outcome::Delivered) {
      o.result = queue::RecipientResult::Sent;
      out.lines.push_back({r.address, "delivered", dsn_code(r), o.reply});
    } else if (r.outcome == client::Outcome::Permanent) {
      o.result = queue::RecipientResult::Failed;
      out.lines.push_back({r.address, "bounced", dsn_code(r), o.reply});
      out.dsn_recipients.push_back(protocol::dsn_recipient(r, in.host));
      last_error = o.reply;
    } else if (expired) {
      o.result = queue::RecipientResult::Failed;
      o.reply = "expired after " + duration_words(in.lifetime) + "; last reply: " + r.text();
      o.status = "4.4.7";
      out.lines.push_back({r.address, "expired", "4.4.7", o.reply});
      auto d = protocol::dsn_recipient(r, in.host);
      // dsn_recipient() reads a temporary result as "delayed"; expiry is
      // final (RFC 3464 §2.3.3: Action failed, with 5.4.7).
      d.action = protocol::DsnRecipient::Action::Failed;
      d.expired = true;
      d.status = protocol::EnhancedStatus{5, 4, 7};   // RFC 3463: delivery time expired
      d.last_attempt = in.now;
      out.dsn_recipients.push_back(d);
      last_error = o.reply;
    } else {
      o.result = queue::RecipientResult::Deferred;
      o.next_attempt = in.after.next;
      // The dot went out and no reply came: still 'uncertain' in the spool
      // (RFC 1047).
      o.uncertain = report.possible_duplicate && r.stage == client::Stage::DataEnd && !r.reply;
      out.lines.push_back({r.address, "deferred", dsn_code(r), o.reply});
      if (last_error.empty()) last_error = o.reply;
    }
    rep.recipients.push_back(std::move(o));
  }
  out.held_uncertain = in.hold_uncertain &&
      std::any_of(rep.recipients.begin(), rep.recipients.end(), [](const auto& o) { return o.uncertain; });
  rep.hold_uncertain = out.held_uncertain;
  // outboxctl queue/show print last_error: the hint is what the operator needs.
  rep.last_error = last_error.empty() || in.hint.empty() ? last_error : last_error + " (" + in.hint + ")";
  rep.outcome = report.all_delivered()        ? "delivered"
                : expired                     ? "expired"
                : !out.dsn_recipients.empty() ? "bounced"
                : report.possible_duplicate   ? "possible_duplicate"
                                              : "deferred";
  // Typed: a message deferred because its whole route is suspended waits
  // for that upstream (`resume` releases it), never parsed out of last_error.
  out.waits_for = in.upstream_fault && !out.failover ? queue::WaitReason::UpstreamSuspended : queue::WaitReason::None;
  return out;
}

std::optional<FailureDsn> failure_dsn(const FailureDsnInput& in) {
  const queue::DueMessage& m = *in.msg;
  if (in.dsn_id.empty() || in.newly_failed.empty() || !protocol::should_bounce(m.sender, in.bounces))
    return std::nullopt;
  protocol::DsnInput d;
  d.kind = protocol::DsnInput::Kind::Failure;
  d.reporting_host = in.host_name;
  d.queue_id = m.id;
  d.original_sender = m.sender;
  d.arrival = m.created;
  d.date = in.now;
  d.message_id = "<" + in.dsn_id + "@" + in.host_name + ">";
  for (const auto& r : *in.failed)
    if (std::find(in.newly_failed.begin(), in.newly_failed.end(), r.address) != in.newly_failed.end())
      d.recipients.push_back(r);
  if (d.recipients.empty()) return std::nullopt;
  d.original_headers = in.original_headers ? in.original_headers() : std::string();
  d.original_smtputf8 = m.smtputf8;
  d.lifetime_text = in.lifetime_text;
  return notice_message(in.dsn_id, m.sender, in.host_name, protocol::build_dsn(d), in.now);
}

FailureDsn notice_message(std::string dsn_id, const std::string& original_sender, const std::string& host_name,
                          protocol::DsnMessage built, std::int64_t now) {
  FailureDsn out;
  out.message.id = std::move(dsn_id);
  out.message.sender = "";   // RFC 3464 §2: a DSN goes out with the null sender
  out.message.recipients = {original_sender};
  out.message.client = "local";
  out.message.helo = host_name;
  out.message.smtputf8 = built.smtputf8;
  out.message.body_8bit = built.body_8bit;
  out.message.created = now;
  out.bytes = std::move(built.bytes);
  return out;
}

}  // namespace outbox::daemon
