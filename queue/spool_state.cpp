// Spool's state beside the messages: upstream rows (suspensions, resume,
// loads), the quota ledger, a message's wait, and the operator log.
#include "queue/spool.h"

#include "queue/spool_internal.h"

namespace outbox::queue {

// --- upstreams, waits ---------------------------------------------------------------

namespace {
UpstreamState read_upstream(const auto& st) {
  UpstreamState u;
  u.name = st.str(0);
  u.suspended_until = st.opt_i64(1);
  u.reason = static_cast<SuspendReason>(st.i64(2));
  u.failures = static_cast<int>(st.i64(3));
  u.stage = st.str(4);
  u.last_reply = st.str(5);
  u.updated = st.i64(6);
  return u;
}
}  // namespace

std::vector<UpstreamState> Spool::upstream_states() {
  std::vector<UpstreamState> out;
  Stmt st(*this, sql::kUpstreamStates);
  while (st.step()) out.push_back(read_upstream(st));
  return out;
}

std::optional<UpstreamState> Spool::upstream_state(std::string_view name) {
  Stmt st(*this, sql::kUpstreamState);
  st.text(1, name);
  if (!st.step()) return std::nullopt;
  return read_upstream(st);
}

std::vector<LedgerEntry> Spool::quota_ledger(std::string_view upstream, std::int64_t since) {
  Stmt st(*this, "SELECT time, recipients FROM quota_ledger WHERE upstream = ?1 AND time > ?2 ORDER BY time, seq");
  st.text(1, upstream);
  st.i64(2, since);
  std::vector<LedgerEntry> out;
  while (st.step()) out.push_back(LedgerEntry{st.i64(0), static_cast<std::uint32_t>(st.i64(1))});
  return out;
}

std::unordered_map<std::string, Spool::UpstreamLoad> Spool::upstream_loads() {
  std::unordered_map<std::string, UpstreamLoad> out;
  // Walks the unfinished messages (messages_state index), not the finished
  // ones: outboxctl only, never on the daemon's paths.
  Stmt st(*this,
          "SELECT wait_upstream, state = 'active', COUNT(*) FROM messages "
          "WHERE state IN ('queued', 'active', 'deferred') AND wait_upstream != '' GROUP BY 1, 2");
  while (st.step()) {
    auto& l = out[st.str(0)];
    (st.i64(1) ? l.in_flight : l.waiting) += st.i64(2);
  }
  return out;
}

std::optional<Spool::MessageWait> Spool::wait_of(std::string_view id) {
  Stmt st(*this, sql::kWaitOf);
  st.text(1, id);
  if (!st.step()) return std::nullopt;
  return MessageWait{st.str(0), static_cast<WaitReason>(st.i64(1)), st.str(2)};
}

// --- operator log -------------------------------------------------------------------

std::int64_t Spool::log_operator_action(const OperatorAction& a) {
  Stmt st(*this, sql::kLogOperator);
  st.i64(1, a.time ? a.time : now_us()).opt_i64(2, a.uid).text(3, a.action).text(4, a.target).text(5, a.detail).run();
  return sqlite3_last_insert_rowid(db_);
}

void Spool::operator_log(const char* action, std::string_view target, std::string_view detail) {
  if (!operator_) return;
  OperatorAction a;
  a.uid = operator_uid_;
  a.action = action;
  a.target = std::string(target);
  a.detail = std::string(detail);
  log_operator_action(a);
}

std::vector<OperatorAction> Spool::operator_actions_after(std::int64_t seq, int limit) {
  std::vector<OperatorAction> out;
  Stmt st(*this, sql::kOperatorAfter);
  st.i64(1, seq).i64(2, limit);
  while (st.step()) {
    OperatorAction a;
    a.seq = st.i64(0);
    a.time = st.i64(1);
    a.uid = st.opt_i64(2);
    a.action = st.str(3);
    a.target = st.str(4);
    a.detail = st.str(5);
    out.push_back(std::move(a));
  }
  return out;
}

std::int64_t Spool::last_operator_seq() {
  Stmt st(*this, sql::kLastOperatorSeq);
  return st.step() && !st.is_null(0) ? st.i64(0) : 0;
}

Spool::ResumeResult Spool::resume_upstream(std::string_view name, std::int64_t now) {
  Txn txn(*this, true);
  bool changed;
  {
    Stmt st(*this, sql::kResumeUpstream);
    st.text(1, name).i64(2, now).run();
    changed = st.changes() == 1;
  }
  if (!changed) {
    bool known = upstream_state(name).has_value();
    txn.commit();
    return known ? ResumeResult::NotSuspended : ResumeResult::Unknown;
  }
  operator_log("resume", name);
  txn.commit();
  return ResumeResult::Resumed;
}

}  // namespace outbox::queue
