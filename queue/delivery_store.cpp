#include "queue/delivery_store.h"

#include <sqlite3.h>

#include <map>

namespace outbox::queue {

namespace {

// One use of a statement from the connection's cache (Spool::statement):
// the relay runs these per message, and preparing each one every time made
// SQLite's parser a visible share of the relay's CPU. `sql` must be a
// string literal (the cache is keyed by its address).
class Q {
 public:
  Q(Spool& spool, const char* sql) : db_(spool.handle()), st_(spool.statement(sql)) {}
  ~Q() {
    sqlite3_reset(st_);
    sqlite3_clear_bindings(st_);
  }
  Q(const Q&) = delete;
  Q& operator=(const Q&) = delete;
  Q& text(int i, std::string_view s) {
    // An empty view may have no data pointer, which SQLite would bind as NULL.
    sqlite3_bind_text(st_, i, s.data() ? s.data() : "", static_cast<int>(s.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Q& i64(int i, std::int64_t v) {
    sqlite3_bind_int64(st_, i, v);
    return *this;
  }
  Q& opt(int i, std::optional<std::int64_t> v) {
    if (v) sqlite3_bind_int64(st_, i, *v); else sqlite3_bind_null(st_, i);
    return *this;
  }
  Q& blob(int i, std::string_view s) {
    sqlite3_bind_blob(st_, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
    return *this;
  }
  bool step() {
    int rc = sqlite3_step(st_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    throw SpoolError(std::string("spool: ") + sqlite3_errmsg(db_), sqlite3_extended_errcode(db_));
  }
  void run() { while (step()) {} }
  std::int64_t col_i64(int c) { return sqlite3_column_int64(st_, c); }
  bool col_null(int c) { return sqlite3_column_type(st_, c) == SQLITE_NULL; }
  std::string col_text(int c) {
    const void* p = sqlite3_column_blob(st_, c);
    int n = sqlite3_column_bytes(st_, c);
    return p ? std::string(static_cast<const char*>(p), static_cast<std::size_t>(n)) : std::string();
  }
  int changes() { return sqlite3_changes(db_); }

 private:
  sqlite3* db_;
  sqlite3_stmt* st_ = nullptr;
};

const char* result_state(const RecipientOutcome& o) {
  switch (o.result) {
    case RecipientResult::Sent: return kSent;
    case RecipientResult::Failed: return kFailed;
    case RecipientResult::Deferred: break;
  }
  return o.uncertain ? kUncertain : kPending;
}

}  // namespace

// Index use is pinned where the planner, without ANALYZE statistics, would
// rather take messages_state (state, next_attempt): over two IN values that
// needs a sort of every due row, and for MIN() a walk of both ranges. A
// unary + keeps a term from choosing an index (recipients_due would be a
// range over every pending recipient of the backlog; the primary key
// (message_id, address) is the one wanted).
std::vector<DueMessage> DeliveryStore::claim_due(std::int64_t now, std::size_t limit,
                                                 const std::function<bool(const DueMessage&)>& routable,
                                                 std::int64_t no_route_retry, std::vector<std::string>* no_route) {
  std::vector<DueMessage> out;
  {
    // messages.next_attempt is the earliest pending recipient's time, so
    // messages_due, in its own order, yields due work oldest first and stops
    // at `limit`: no temp B-tree over the backlog.
    Q q(spool_,
        "SELECT id, sender, created, attempts, smtputf8, body_8bit, size FROM messages INDEXED BY messages_due "
        "WHERE state IN ('queued', 'deferred') AND next_attempt <= ?1 ORDER BY next_attempt LIMIT ?2");
    q.i64(1, now).i64(2, static_cast<std::int64_t>(limit));
    while (q.step()) {
      DueMessage m;
      m.id = q.col_text(0);
      m.sender = q.col_text(1);
      m.created = q.col_i64(2);
      m.attempts = static_cast<int>(q.col_i64(3));
      m.smtputf8 = q.col_i64(4) != 0;
      m.body_8bit = q.col_i64(5) != 0;
      m.size = static_cast<std::uint64_t>(q.col_i64(6));
      out.push_back(std::move(m));
    }
  }
  for (auto& m : out) {
    Q r(spool_,
        "SELECT address, state FROM recipients WHERE message_id = ?1 AND +state IN ('pending', 'uncertain') "
        "AND +next_attempt <= ?2 ORDER BY rowid");
    r.text(1, m.id).i64(2, now);
    while (r.step()) {
      m.recipients.push_back(r.col_text(0));
      if (r.col_text(1) == kUncertain) m.uncertain.push_back(m.recipients.back());
    }
    if (routable && !m.recipients.empty() && !routable(m)) {
      Q p(spool_,
          "UPDATE recipients SET next_attempt = ?2 WHERE message_id = ?1 AND +state IN ('pending', 'uncertain')");
      p.text(1, m.id).i64(2, no_route_retry).run();
      Q u(spool_, "UPDATE messages SET next_attempt = ?2, last_error = 'no route', wait_reason = ?3 WHERE id = ?1");
      u.text(1, m.id).i64(2, no_route_retry).i64(3, static_cast<int>(WaitReason::NoRoute)).run();
      if (no_route) no_route->push_back(m.id);
      m.recipients.clear();   // dropped from the result below
      continue;
    }
    if (m.recipients.empty()) {
      // Due by its own time but none of its recipients is: the message's
      // time was stale. Put it at its earliest recipient's time rather than
      // claim a message with nothing to send.
      Q h(spool_,
          "UPDATE messages SET next_attempt = (SELECT MIN(next_attempt) FROM recipients WHERE message_id = ?1 "
          "AND +state IN ('pending', 'uncertain')) WHERE id = ?1");
      h.text(1, m.id).run();
      continue;
    }
    Q u(spool_, "UPDATE messages SET state = 'active', wait_reason = 0, updated = ?2 WHERE id = ?1");
    u.text(1, m.id).i64(2, now).run();
  }
  std::erase_if(out, [](const DueMessage& m) { return m.recipients.empty(); });
  return out;
}

std::optional<std::int64_t> DeliveryStore::next_due() {
  // Not MIN(): with the IN over two states SQLite reads every entry of the
  // range. ORDER BY + LIMIT 1 on messages_due is its first non-NULL entry.
  Q q(spool_,
      "SELECT next_attempt FROM messages INDEXED BY messages_due WHERE state IN ('queued', 'deferred') "
      "AND next_attempt IS NOT NULL ORDER BY next_attempt LIMIT 1");
  if (q.step() && !q.col_null(0)) return q.col_i64(0);
  return std::nullopt;
}

Recovery DeliveryStore::recover_active(std::int64_t now, UncertainPolicy policy,
                                       const std::set<std::string>& exclude) {
  Recovery rec;
  std::vector<std::string> ids;
  {
    // messages_state (state = 'active'): as many rows as are active, never
    // the backlog.
    Q q(spool_, "SELECT id FROM messages WHERE state = 'active' ORDER BY id");
    while (q.step()) {
      std::string id = q.col_text(0);
      if (!exclude.count(id)) ids.push_back(std::move(id));
    }
  }
  for (const auto& id : ids) {
    std::vector<std::string> uncertain;
    {
      Q u(spool_, "SELECT address FROM recipients WHERE message_id = ?1 AND state = 'uncertain' ORDER BY rowid");
      u.text(1, id);
      while (u.step()) uncertain.push_back(u.col_text(0));
    }
    Q r(spool_, "UPDATE recipients SET next_attempt = ?2 WHERE message_id = ?1 AND +state IN ('pending', 'uncertain')");
    r.text(1, id).i64(2, now).run();
    const bool hold = !uncertain.empty() && policy == UncertainPolicy::Hold;
    Q m(spool_,
        "UPDATE messages SET state = ?3, held_from = CASE WHEN ?3 = 'held' THEN 'deferred' ELSE held_from END, "
        "next_attempt = ?2, updated = ?2 WHERE id = ?1 AND state = 'active'");
    m.text(1, id).i64(2, now).text(3, hold ? kHeld : kDeferred).run();
    rec.interrupted.push_back(id);
    if (hold) rec.held.push_back(id);
    if (!uncertain.empty()) rec.uncertain.emplace_back(id, std::move(uncertain));
  }
  return rec;
}

int DeliveryStore::recover_active(std::int64_t now) {
  return static_cast<int>(recover_active(now, UncertainPolicy::Resend, {}).interrupted.size());
}

int DeliveryStore::mark_dot_sent(std::string_view id, const std::vector<std::string>& recipients,
                                 std::string_view upstream, std::int64_t now) {
  int n = 0;
  for (const auto& a : recipients) {
    Q u(spool_,
        "UPDATE recipients SET state = 'uncertain', updated = ?3 WHERE message_id = ?1 AND address = ?2 "
        "AND state = 'pending'");
    u.text(1, id).text(2, a).i64(3, now).run();
    n += u.changes();
  }
  Q m(spool_, "UPDATE messages SET wait_upstream = ?2, updated = ?3 WHERE id = ?1");
  m.text(1, id).text(2, upstream).i64(3, now).run();
  return n;
}

MessageAfter DeliveryStore::apply(const DeliveryReport& rep) {
  MessageAfter after;
  std::int64_t attempts_before = 0;
  bool held_before = false;
  {
    Q q(spool_, "SELECT attempts, state FROM messages WHERE id = ?1");
    q.text(1, rep.id);
    if (!q.step()) {
      after.exists = false;
      return after;
    }
    attempts_before = q.col_i64(0);
    held_before = q.col_text(1) == kHeld;
  }
  for (const auto& r : rep.recipients) {
    // A recipient already sent is never touched again: exactly once. An
    // uncertain one takes the outcome like a pending one.
    Q u(spool_,
        "UPDATE recipients SET state = ?3, attempts = attempts + ?6, next_attempt = ?4, last_reply = ?5, "
        "updated = ?7 WHERE message_id = ?1 AND address = ?2 AND state IN ('pending', 'uncertain')");
    u.text(1, rep.id).text(2, r.address).text(3, result_state(r))
        .opt(4, r.result == RecipientResult::Deferred ? r.next_attempt : std::nullopt)
        .text(5, r.reply).i64(6, rep.count_attempt ? 1 : 0).i64(7, rep.time).run();
    if (u.changes() == 1 && r.result == RecipientResult::Failed) after.newly_failed.push_back(r.address);
    if (u.changes() == 1 && r.result != RecipientResult::Sent && rep.count_attempt) {
      // A counter per status: monitoring reads a handful of rows, never the history.
      Q c(spool_,
          "INSERT INTO failure_counts(status, result, count) VALUES (?1, ?2, 1) "
          "ON CONFLICT(status, result) DO UPDATE SET count = count + 1");
      c.text(1, r.status.empty() ? std::string_view("none") : std::string_view(r.status))
          .text(2, r.result == RecipientResult::Failed ? "failed" : "deferred").run();
    }
  }
  std::int64_t open = 0;   // pending or uncertain
  std::int64_t uncertain = 0;
  std::int64_t failed = 0;
  std::optional<std::int64_t> earliest;
  {
    // Counted here rather than with GROUP BY: no temporary b-tree per outcome.
    Q q(spool_, "SELECT state, next_attempt FROM recipients WHERE message_id = ?1");
    q.text(1, rep.id);
    while (q.step()) {
      std::string st = q.col_text(0);
      if (st == kPending || st == kUncertain) {
        ++open;
        if (st == kUncertain) ++uncertain;
        if (!q.col_null(1) && (!earliest || q.col_i64(1) < *earliest)) earliest = q.col_i64(1);
      } else if (st == kFailed) {
        ++failed;
      }
    }
  }
  const bool hold = rep.hold_uncertain && uncertain > 0;
  if (hold) {
    // Due the moment the operator releases it (release() makes the message due).
    Q r(spool_, "UPDATE recipients SET next_attempt = ?2 WHERE message_id = ?1 AND +state IN ('pending', 'uncertain')");
    r.text(1, rep.id).i64(2, rep.time).run();
    earliest = rep.time;
  }
  if (open > 0) {
    after.state = kDeferred;
  } else {
    after.state = failed > 0 ? kFailed : kSent;
    earliest.reset();
  }
  {
    Q u(spool_,
        "UPDATE messages SET state = CASE WHEN state = 'held' OR ?7 THEN 'held' ELSE ?2 END, "
        "held_from = CASE WHEN state = 'held' OR ?7 THEN ?2 ELSE held_from END, "
        "attempts = attempts + ?3, next_attempt = ?4, last_error = ?5, wait_reason = 0, updated = ?6 WHERE id = ?1");
    u.text(1, rep.id).text(2, after.state).i64(3, rep.count_attempt ? 1 : 0).opt(4, earliest)
        .text(5, rep.last_error).i64(6, rep.time).i64(7, hold ? 1 : 0).run();
  }
  // What the UPDATE just wrote, without reading it back.
  after.attempts = static_cast<int>(attempts_before + (rep.count_attempt ? 1 : 0));
  if (held_before || hold) after.state = kHeld;
  AttemptRecord a;
  a.time = rep.time;
  a.upstream = rep.upstream;
  a.outcome = rep.outcome;
  for (const auto& r : rep.recipients) {
    a.recipients.push_back(r.address);
    if (a.reply.empty()) a.reply = r.reply;
  }
  if (a.reply.empty()) a.reply = rep.last_error;
  spool_.add_attempt(rep.id, a);
  return after;
}

void DeliveryStore::unclaim(std::string_view id, std::int64_t next_attempt, std::string_view last_error,
                            WaitReason reason) {
  Q r(spool_, "UPDATE recipients SET next_attempt = MAX(COALESCE(next_attempt, ?2), ?2) "
          "WHERE message_id = ?1 AND +state IN ('pending', 'uncertain')");
  r.text(1, id).i64(2, next_attempt).run();
  Q m(spool_,
      "UPDATE messages SET state = CASE WHEN attempts = 0 THEN 'queued' ELSE 'deferred' END, "
      "next_attempt = (SELECT MIN(next_attempt) FROM recipients WHERE message_id = ?1 "
      "AND +state IN ('pending', 'uncertain')), "
      "last_error = CASE WHEN ?2 = '' THEN last_error ELSE ?2 END, wait_reason = ?3 "
      "WHERE id = ?1 AND state = 'active'");
  m.text(1, id).text(2, last_error).i64(3, static_cast<int>(reason)).run();
}

int DeliveryStore::release_waiting(std::int64_t now) {
  // Typed: wait_reason says why it waits (no route, suspended or unusable
  // upstream, rate ceiling); its own backoff (None) is left alone. The
  // messages_waiting partial index holds only these: a reload costs what
  // waits for an upstream, not the deferred backlog.
  std::vector<std::string> ids;
  {
    Q q(spool_, "SELECT id FROM messages INDEXED BY messages_waiting "
                "WHERE state IN ('queued', 'deferred') AND wait_reason != 0");
    while (q.step()) ids.push_back(q.col_text(0));
  }
  for (const auto& id : ids) {
    Q r(spool_, "UPDATE recipients SET next_attempt = ?2 WHERE message_id = ?1 AND +state IN ('pending', 'uncertain')");
    r.text(1, id).i64(2, now).run();
    Q m(spool_, "UPDATE messages SET next_attempt = ?2, wait_reason = 0 WHERE id = ?1");
    m.text(1, id).i64(2, now).run();
  }
  return static_cast<int>(ids.size());
}

std::string DeliveryStore::headers(std::string_view id, std::size_t max_bytes) {
  std::string out;
  bool done = false;
  spool_.read_body(id, [&](std::string_view chunk) {
    if (done) return;
    out.append(chunk);
    auto end = out.find("\r\n\r\n");
    if (end != std::string::npos) {
      out.resize(end + 2);
      done = true;
    } else if (out.size() > max_bytes) {
      // Cut at a line end so the DSN part stays well-formed.
      auto cut = out.rfind("\r\n", max_bytes);
      out.resize(cut == std::string::npos ? 0 : cut + 2);
      done = true;
    }
  });
  return out;
}

void DeliveryStore::enqueue_local(const NewMessage& m, std::string_view body, std::int64_t now) {
  spool_.create_incoming(m);
  constexpr std::size_t kChunk = 64 * 1024;
  std::int64_t seq = 0;
  for (std::size_t off = 0; off < body.size(); off += kChunk)
    spool_.append_chunk(m.id, seq++, body.substr(off, kChunk));
  spool_.finalize(m.id, {}, body.size(), now);
}

bool DeliveryStore::bounce_sent(std::string_view id) {
  Q q(spool_, "SELECT 1 FROM meta WHERE key = ?1");
  q.text(1, "bounce:" + std::string(id));
  return q.step();
}

void DeliveryStore::mark_bounce_sent(std::string_view id, std::string_view dsn_id) {
  Q q(spool_, "INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)");
  q.text(1, "bounce:" + std::string(id)).text(2, dsn_id).run();
}

// --- added for the scheduler ---------------------------------------------------

std::vector<UpstreamState> DeliveryStore::load_upstream_states() {
  Q q(spool_,
      "SELECT name, suspended_until, reason, failures, stage, last_reply, updated FROM upstreams ORDER BY name");
  std::vector<UpstreamState> out;
  while (q.step()) {
    UpstreamState s;
    s.name = q.col_text(0);
    if (!q.col_null(1)) s.suspended_until = q.col_i64(1);
    s.reason = static_cast<SuspendReason>(q.col_i64(2));
    s.failures = static_cast<int>(q.col_i64(3));
    s.stage = q.col_text(4);
    s.last_reply = q.col_text(5);
    s.updated = q.col_i64(6);
    out.push_back(std::move(s));
  }
  return out;
}

void DeliveryStore::record_start(std::string_view upstream, std::int64_t time, std::uint32_t recipients) {
  // seq: one more than the last entry at the same µs (usually 0).
  Q q(spool_,
      "INSERT INTO quota_ledger(upstream, time, seq, recipients) VALUES (?1, ?2, "
      "(SELECT COALESCE(MAX(seq) + 1, 0) FROM quota_ledger WHERE upstream = ?1 AND time = ?2), ?3)");
  q.text(1, upstream).i64(2, time).i64(3, recipients).run();
}

std::vector<DeliveryStore::DelayCandidate> DeliveryStore::delay_candidates(std::int64_t after, std::int64_t upto,
                                                                           std::size_t limit) {
  Q q(spool_,
      "SELECT id, sender, created, smtputf8 FROM messages INDEXED BY messages_waiting_since "
      "WHERE (state IN ('queued', 'deferred') OR state = 'active') AND created > ?1 AND created <= ?2 AND sender != '' "
      "ORDER BY created, rowid LIMIT ?3");
  q.i64(1, after).i64(2, upto).i64(3, static_cast<std::int64_t>(limit));
  std::vector<DelayCandidate> out;
  while (q.step()) out.push_back(DelayCandidate{q.col_text(0), q.col_text(1), q.col_i64(2), q.col_i64(3) != 0, {}});
  for (auto& c : out) {
    Q r(spool_, "SELECT address, last_reply FROM recipients WHERE message_id = ?1 AND +state IN ('pending', 'uncertain')");
    r.text(1, c.id);
    while (r.step()) c.waiting.emplace_back(r.col_text(0), r.col_text(1));
  }
  return out;
}

std::optional<std::int64_t> DeliveryStore::delay_watermark(std::int64_t age_s) {
  Q q(spool_, "SELECT value FROM meta WHERE key = ?1");
  q.text(1, "delay_warned:" + std::to_string(age_s));
  if (!q.step() || q.col_null(0)) return std::nullopt;
  return q.col_i64(0);
}

void DeliveryStore::set_delay_watermark(std::int64_t age_s, std::int64_t upto) {
  Q q(spool_, "INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)");
  q.text(1, "delay_warned:" + std::to_string(age_s)).i64(2, upto).run();
}

std::vector<LedgerEntry> DeliveryStore::load_ledger(std::string_view upstream, std::int64_t since) {
  return spool_.quota_ledger(upstream, since);
}

int DeliveryStore::prune_ledger(std::string_view upstream, std::int64_t before) {
  Q q(spool_, "DELETE FROM quota_ledger WHERE upstream = ?1 AND time <= ?2");
  q.text(1, upstream).i64(2, before).run();
  return q.changes();
}

void DeliveryStore::save_upstream_state(const UpstreamState& s) {
  Q q(spool_,
      "INSERT OR REPLACE INTO upstreams(name, suspended_until, reason, failures, stage, last_reply, updated) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
  q.text(1, s.name).opt(2, s.suspended_until).i64(3, static_cast<int>(s.reason)).i64(4, s.failures)
      .text(5, s.stage).text(6, s.last_reply).i64(7, s.updated).run();
}

void DeliveryStore::park(std::string_view id, std::int64_t next_attempt, WaitReason reason, std::string_view upstream,
                         std::string_view last_error) {
  // A recipient due later than this keeps its own time. "+state": the
  // message's own recipients by primary key, never recipients_due (state),
  // which would walk every pending recipient of the queue per park.
  Q r(spool_, "UPDATE recipients SET next_attempt = MAX(COALESCE(next_attempt, ?2), ?2) "
          "WHERE message_id = ?1 AND +state IN ('pending', 'uncertain') AND EXISTS (SELECT 1 FROM messages WHERE id = ?1 AND state = 'active')");
  r.text(1, id).i64(2, next_attempt).run();
  Q m(spool_,
      "UPDATE messages SET state = CASE WHEN attempts = 0 THEN 'queued' ELSE 'deferred' END, "
      "next_attempt = (SELECT MIN(next_attempt) FROM recipients WHERE message_id = ?1 "
      "AND +state IN ('pending', 'uncertain')), wait_reason = ?3, wait_upstream = ?4, "
      "last_error = CASE WHEN ?2 = '' THEN last_error ELSE ?2 END "
      "WHERE id = ?1 AND state = 'active'");
  m.text(1, id).text(2, last_error).i64(3, static_cast<int>(reason)).text(4, upstream).run();
}

std::vector<OperatorAction> DeliveryStore::operator_actions_after(std::int64_t after, std::size_t limit) {
  Q q(spool_,
      "SELECT seq, time, uid, action, target, detail FROM operator_log WHERE seq > ?1 ORDER BY seq LIMIT ?2");
  q.i64(1, after).i64(2, static_cast<std::int64_t>(limit));
  std::vector<OperatorAction> out;
  while (q.step()) {
    OperatorAction a;
    a.seq = q.col_i64(0);
    a.time = q.col_i64(1);
    if (!q.col_null(2)) a.uid = q.col_i64(2);
    a.action = q.col_text(3);
    a.target = q.col_text(4);
    a.detail = q.col_text(5);
    out.push_back(std::move(a));
  }
  return out;
}

std::int64_t DeliveryStore::last_operator_seq() {
  Q q(spool_, "SELECT MAX(seq) FROM operator_log");   // the rowid's b-tree: its last entry
  if (q.step() && !q.col_null(0)) return q.col_i64(0);
  return 0;
}

void DeliveryStore::mark_waiting(std::string_view id, WaitReason reason, std::string_view upstream) {
  Q q(spool_,
      "UPDATE messages SET wait_reason = ?2, wait_upstream = ?3 WHERE id = ?1 AND state IN ('queued', 'deferred')");
  q.text(1, id).i64(2, static_cast<int>(reason)).text(3, upstream).run();
}

int DeliveryStore::release_upstream(std::string_view upstream, std::int64_t now) {
// WaitReason::UpstreamSuspended, RateLimited
#define OUTBOX_WAITING_FOR_UPSTREAM                                                                  \
  "SELECT id FROM messages INDEXED BY messages_waiting WHERE state IN ('queued', 'deferred') "       \
  "AND wait_reason != 0 AND wait_upstream = ?2 AND wait_reason IN (2, 3)"
  Q r(spool_, "UPDATE recipients SET next_attempt = ?1 WHERE +state IN ('pending', 'uncertain') "
              "AND message_id IN (" OUTBOX_WAITING_FOR_UPSTREAM ")");
  r.i64(1, now).text(2, upstream).run();
  Q m(spool_, "UPDATE messages SET next_attempt = ?1, wait_reason = 0, wait_upstream = '' WHERE id IN ("
              OUTBOX_WAITING_FOR_UPSTREAM ")");
#undef OUTBOX_WAITING_FOR_UPSTREAM
  m.i64(1, now).text(2, upstream).run();
  return m.changes();
}

}  // namespace outbox::queue
