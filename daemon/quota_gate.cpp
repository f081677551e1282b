#include "daemon/quota_gate.h"

#include <utility>

#include "queue/quota.h"

namespace outbox::daemon {

QuotaGate::Ticket QuotaGate::wait(queue::ConnId conn, std::string upstream, Job job) {
  const Ticket t = next_++;
  waiting_.emplace(t, Waiting{conn, std::move(upstream), std::move(job)});
  return t;
}

bool QuotaGate::holds(queue::ConnId conn) const {
  for (const auto& [t, w] : waiting_)
    if (w.conn == conn) return true;
  return false;
}

std::optional<QuotaGate::Step> QuotaGate::answered(Ticket ticket, const QuotaAnswer& a) {
  auto it = waiting_.find(ticket);
  if (it == waiting_.end()) return std::nullopt;
  Step s;
  s.conn = it->second.conn;
  s.upstream = std::move(it->second.upstream);
  s.job = std::move(it->second.job);
  waiting_.erase(it);
  if (a.kind != QuotaAnswer::Kind::Denied) return s;
  s.hand = false;
  s.until = a.free_at;
  // Said like the local ledger's full window, marked as the fleet's.
  queue::WindowUse w;
  w.window = a.window;
  w.used = a.used;
  w.full = w.fleet = true;
  w.free_at = a.free_at;
  s.why = "upstream \"" + s.upstream + "\" " + queue::quota_words(w);
  return s;
}

}  // namespace outbox::daemon
