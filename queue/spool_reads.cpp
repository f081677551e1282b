// Spool's reads of messages (any mode): list, get with history, stats and
// counts for status lines, and the keyset pages of outboxctl's queue and
// the query service.
#include "queue/spool.h"

#include "queue/spool_internal.h"

namespace outbox::queue {

// --- reading --------------------------------------------------------------------

namespace {
std::vector<std::string> split_lines(std::string_view s) {
  std::vector<std::string> out;
  while (!s.empty()) {
    auto nl = s.find('\n');
    out.emplace_back(s.substr(0, nl));
    if (nl == std::string_view::npos) break;
    s.remove_prefix(nl + 1);
  }
  return out;
}

MessageRecord read_message(const auto& st) {
  MessageRecord m;
  m.id = st.str(0);
  m.state = st.str(1);
  m.sender = st.str(2);
  m.size = static_cast<std::uint64_t>(st.i64(3));
  m.created = st.i64(4);
  m.attempts = static_cast<int>(st.i64(5));
  m.next_attempt = st.opt_i64(6);
  m.last_error = st.str(7);
  m.client = st.str(8);
  m.uid = st.opt_i64(9);
  m.helo = st.str(10);
  m.smtputf8 = st.i64(11) != 0;
  m.body_8bit = st.i64(12) != 0;
  return m;
}

RecipientRecord read_recipient(const auto& st, int c) {
  RecipientRecord r;
  r.address = st.str(c);
  r.state = st.str(c + 1);
  r.attempts = static_cast<int>(st.i64(c + 2));
  r.next_attempt = st.opt_i64(c + 3);
  r.last_reply = st.str(c + 4);
  r.updated = st.opt_i64(c + 5);
  return r;
}
}  // namespace


std::vector<MessageRecord> Spool::list(std::optional<std::string> state) {
  std::vector<MessageRecord> out;
  if (state && *state == kIncoming) return out;   // internal, never listed
  Txn txn(*this, false);                           // messages and recipients from one snapshot
  {
    Stmt st(*this, OUTBOX_MESSAGE_SELECT "WHERE state != 'incoming' AND (?1 IS NULL OR state = ?1) ORDER BY id");
    if (state) st.text(1, *state);
    while (st.step()) out.push_back(read_message(st));
  }
  if (!out.empty()) {
    // One pass over the recipients in id order, merged with the id-ordered messages.
    Stmt st(*this,
            "SELECT r.message_id, r.address, r.state, r.attempts, r.next_attempt, r.last_reply, r.updated "
            "FROM recipients r JOIN messages m ON m.id = r.message_id "
            "WHERE m.state != 'incoming' AND (?1 IS NULL OR m.state = ?1) ORDER BY r.message_id, r.rowid");
    if (state) st.text(1, *state);
    std::size_t i = 0;
    while (st.step()) {
      auto mid = st.bytes(0);
      while (i < out.size() && out[i].id < mid) ++i;
      if (i == out.size()) break;
      if (out[i].id == mid) out[i].recipients.push_back(read_recipient(st, 1));
    }
  }
  txn.commit();
  return out;
}

std::optional<MessageRecord> Spool::get(std::string_view id) {
  Txn txn(*this, false);
  std::optional<MessageRecord> m;
  {
    Stmt st(*this, sql::kGetMessage);
    st.text(1, id);
    if (st.step()) m = read_message(st);
  }
  if (m) {
    load_recipients(*m);
    Stmt st(*this, sql::kGetAttempts);
    st.text(1, id);
    while (st.step()) {
      AttemptRecord a;
      a.time = st.i64(0);
      a.upstream = st.str(1);
      a.recipients = split_lines(st.bytes(2));
      a.reply = st.str(3);
      a.outcome = st.str(4);
      m->history.push_back(std::move(a));
    }
  }
  txn.commit();
  return m;
}

QueueStats Spool::stats() {
  QueueStats s;
  Txn txn(*this, false);
  // Every listed state appears, in lifecycle order, so that outputs are stable.
  for (const char* state : {kQueued, kActive, kDeferred, kHeld, kSent, kFailed}) s.by_state.emplace_back(state, 0);
  {
    Stmt st(*this, "SELECT state, COUNT(*) FROM messages WHERE state != 'incoming' GROUP BY state ORDER BY state");
    while (st.step()) {
      auto name = st.str(0);
      bool known = false;
      for (auto& [k, v] : s.by_state)
        if (k == name) v = st.i64(1), known = true;
      if (!known) s.by_state.emplace_back(name, st.i64(1));   // a state from a newer version
    }
  }
  {
    Stmt st(*this,
            "SELECT MIN(created), COALESCE(SUM(size), 0) FROM messages "
            "WHERE state IN ('queued', 'active', 'deferred', 'held')");
    if (st.step()) {
      s.oldest_created = st.opt_i64(0);
      s.total_size = st.i64(1);
    }
  }
  {
    Stmt st(*this, "SELECT status, result, count FROM failure_counts ORDER BY status, result");
    while (st.step()) s.failures.push_back(QueueStats::Failures{st.str(0), st.str(1), st.i64(2)});
  }
  for (auto [since, out] : {std::pair{now_us() - 3'600'000'000LL, &s.attempts_last_hour},
                            std::pair{now_us() - 86'400'000'000LL, &s.attempts_last_day}}) {
    Stmt st(*this, "SELECT outcome, COUNT(*) FROM attempts WHERE time >= ?1 GROUP BY outcome ORDER BY outcome");
    st.i64(1, since);
    while (st.step()) out->emplace_back(st.str(0), st.i64(1));
  }
  {
    auto up = [&](const std::string& name) -> QueueStats::Upstream& {
      for (auto& u : s.upstreams)
        if (u.name == name) return u;
      s.upstreams.push_back(QueueStats::Upstream{name, {}, std::nullopt, std::nullopt, {}});
      return s.upstreams.back();
    };
    Stmt last(*this,
              "SELECT a.upstream, a.outcome, a.time FROM attempts a JOIN "
              "(SELECT upstream, MAX(time) AS t FROM attempts WHERE upstream != '' GROUP BY upstream) b "
              "ON a.upstream = b.upstream AND a.time = b.t ORDER BY a.upstream");
    while (last.step()) {
      auto& u = up(last.str(0));
      u.last_attempt = last.i64(2);
      u.last_outcome = last.str(1);
    }
    Stmt ok(*this,
            "SELECT upstream, MAX(time) FROM attempts WHERE upstream != '' AND outcome = 'delivered' "
            "GROUP BY upstream");
    while (ok.step()) up(ok.str(0)).last_delivered = ok.i64(1);
    Stmt day(*this,
             "SELECT upstream, outcome, COUNT(*) FROM attempts WHERE upstream != '' AND time >= ?1 "
             "GROUP BY upstream, outcome ORDER BY upstream, outcome");
    day.i64(1, now_us() - 86'400'000'000LL);
    while (day.step()) up(day.str(0)).attempts_last_day.emplace_back(day.str(1), day.i64(2));
  }
  txn.commit();
  return s;
}

std::optional<std::int64_t> Spool::oldest_waiting() {
  Stmt st(*this, sql::kOldestWaiting);
  return st.step() ? st.opt_i64(0) : std::nullopt;
}

std::int64_t Spool::count_unfinished() {
  Stmt st(*this, "SELECT COUNT(*) FROM messages WHERE state IN ('queued', 'active', 'deferred', 'held')");
  return st.step() ? st.i64(0) : 0;
}

void Spool::load_recipients(MessageRecord& m) {
  Stmt st(*this, sql::kGetRecipients);
  st.text(1, m.id);
  while (st.step()) m.recipients.push_back(read_recipient(st, 0));
}

// --- paging ----------------------------------------------------------------------------

std::vector<MessageRecord> Spool::list_page(const std::optional<std::string>& state, std::string_view after_id,
                                            int limit) {
  std::vector<MessageRecord> out;
  if (state && *state == kIncoming) return out;
  Txn txn(*this, false);
  {
    Stmt st(*this, sql::kListPage);
    st.text(1, after_id).i64(3, limit);
    if (state) st.text(2, *state);
    while (st.step()) out.push_back(read_message(st));
  }
  for (auto& m : out) load_recipients(m);
  txn.commit();
  return out;
}

std::vector<MessageRecord> Spool::list_page(const ListFilter& f, std::string_view after_id, int limit) {
  std::vector<MessageRecord> out;
  if (f.state && *f.state == kIncoming) return out;
  Txn txn(*this, false);
  {
    Stmt st(*this, OUTBOX_MESSAGE_SELECT
            "WHERE id > ?1 AND state != 'incoming' AND (?2 IS NULL OR state = ?2) "
            "AND (?4 = 0 OR state IN ('queued', 'active', 'deferred', 'held')) AND (?5 IS NULL OR uid = ?5) "
            "ORDER BY id LIMIT ?3");
    st.text(1, after_id).i64(3, limit).i64(4, f.unfinished_only ? 1 : 0);
    if (f.state) st.text(2, *f.state);
    if (f.uid) st.i64(5, *f.uid);
    while (st.step()) out.push_back(read_message(st));
  }
  for (auto& m : out) load_recipients(m);
  txn.commit();
  return out;
}

std::int64_t Spool::count_not_of_uid(const ListFilter& f, std::int64_t uid) {
  if (f.state && *f.state == kIncoming) return 0;
  Stmt st(*this,
          "SELECT COUNT(*) FROM messages WHERE state != 'incoming' AND (?1 IS NULL OR state = ?1) "
          "AND (?2 = 0 OR state IN ('queued', 'active', 'deferred', 'held')) AND (uid IS NULL OR uid != ?3)");
  if (f.state) st.text(1, *f.state);
  st.i64(2, f.unfinished_only ? 1 : 0).i64(3, uid);
  return st.step() ? st.i64(0) : 0;
}

}  // namespace outbox::queue
