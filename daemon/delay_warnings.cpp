#include "daemon/delay_warnings.h"

#include <algorithm>

#include "protocol/dsn.h"
#include "protocol/reply_parser.h"

namespace outbox::daemon {

std::string age_words(std::chrono::seconds age) {
  std::int64_t s = age.count();
  std::string out;
  for (auto [unit, n] : {std::pair{"d", 86400}, {"h", 3600}, {"m", 60}, {"s", 1}}) {
    if (s >= n) {
      out += std::to_string(s / n) + unit;
      s %= n;
    }
  }
  return out.empty() ? "0s" : out;
}

std::chrono::milliseconds sweep_interval(const std::vector<std::chrono::seconds>& ages) {
  if (ages.empty()) return std::chrono::seconds(30);
  auto q = std::chrono::duration_cast<std::chrono::milliseconds>(ages.front()) / 4;
  return std::clamp<std::chrono::milliseconds>(q, std::chrono::seconds(1), std::chrono::seconds(30));
}

namespace {

// "451 4.2.0 Mailbox busy" -> 4.2.0; a transient status either way (the
// recipient is still being retried), 4.0.0 when the reply has none.
protocol::EnhancedStatus status_of(const std::string& reply) {
  auto sp = reply.find(' ');
  if (sp != std::string::npos) {
    auto end = reply.find(' ', sp + 1);
    auto st = protocol::EnhancedStatus::parse(reply.substr(sp + 1, end == std::string::npos ? std::string::npos : end - sp - 1));
    if (st) return protocol::EnhancedStatus{4, st->subject, st->detail};
  }
  return protocol::EnhancedStatus{4, 0, 0};
}

bool is_smtp_reply(const std::string& reply) {
  return reply.size() >= 3 && std::all_of(reply.begin(), reply.begin() + 3, [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

std::optional<FailureDsn> delay_notice(const DelayNoticeInput& in) {
  const auto& m = *in.msg;
  if (m.waiting.empty() || !protocol::should_bounce(m.sender, true)) return std::nullopt;
  protocol::DsnInput d;
  d.kind = protocol::DsnInput::Kind::Delay;
  d.reporting_host = in.host_name;
  d.queue_id = m.id;
  d.original_sender = m.sender;
  d.arrival = m.created;
  d.date = in.now;
  d.message_id = "<" + in.dsn_id + "@" + in.host_name + ">";
  for (const auto& [address, reply] : m.waiting) {
    protocol::DsnRecipient r;
    r.address = address;
    r.action = protocol::DsnRecipient::Action::Delayed;
    r.status = status_of(reply);
    r.diagnostic = reply.empty() ? "not yet attempted: waiting for its upstream" : reply;
    r.smtp_diagnostic = is_smtp_reply(reply);
    d.recipients.push_back(std::move(r));
  }
  d.original_headers = in.original_headers;
  d.original_smtputf8 = m.smtputf8;
  d.retry_until = in.retry_until;
  // From <>: never warned about itself.
  return notice_message(in.dsn_id, m.sender, in.host_name, protocol::build_dsn(d), in.now);
}

DelaySweepResult sweep_delays(queue::DeliveryStore& ds, DelaySweep in) {
  DelaySweepResult res;
  std::reverse(in.ids.begin(), in.ids.end());   // taken from the back, in drawn order
  for (auto age : in.ages) {
    const std::int64_t age_us = static_cast<std::int64_t>(age.count()) * 1'000'000;
    const std::int64_t upto = in.now - age_us;
    auto mark = ds.delay_watermark(age.count());
    if (!mark) {
      ds.set_delay_watermark(age.count(), upto);
      continue;
    }
    if (*mark >= upto) continue;
    if (in.ids.empty()) {   // the watermark stays: the next sweep goes on from it
      res.more = true;
      continue;
    }
    auto found = ds.delay_candidates(*mark, upto, in.ids.size());
    std::int64_t reached = upto;
    if (found.size() == in.ids.size()) {
      // Out of ids: stop before the last creation time, whose messages may
      // not all be in this batch (unless the whole batch shares it).
      const std::int64_t last = found.back().created;
      if (found.front().created != last)
        while (!found.empty() && found.back().created == last) found.pop_back();
      reached = found.empty() ? *mark : found.back().created;
      res.more = true;
    }
    for (const auto& c : found) {
      DelayNoticeInput n;
      n.msg = &c;
      n.age = age;
      n.dsn_id = in.ids.back();
      n.host_name = in.host_name;
      n.retry_until = c.created + static_cast<std::int64_t>(in.lifetime.count()) * 1'000'000;
      n.original_headers = ds.headers(c.id);
      n.now = in.now;
      auto notice = delay_notice(n);
      if (!notice) continue;
      in.ids.pop_back();
      ds.enqueue_local(notice->message, notice->bytes, in.now);
      res.warned.push_back(DelayWarned{c.id, notice->message.id, age, c.waiting.size()});
    }
    ds.set_delay_watermark(age.count(), reached);
  }
  return res;
}

}  // namespace outbox::daemon
