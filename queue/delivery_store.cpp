#include "queue/delivery_store.h"

#include <sqlite3.h>

#include <map>

namespace outbox::queue {

namespace {

// A prepared statement for one call; the relay's statements are few and run
// at delivery rate, not per byte.
class Q {
 public:
  Q(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql, -1, &st_, nullptr) != SQLITE_OK)
      throw SpoolError(std::string("spool: prepare: ") + sqlite3_errmsg(db), sqlite3_extended_errcode(db));
  }
  ~Q() { sqlite3_finalize(st_); }
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

const char* result_state(RecipientResult r) {
  switch (r) {
    case RecipientResult::Sent: return kSent;
    case RecipientResult::Failed: return kFailed;
    case RecipientResult::Deferred: break;
  }
  return "pending";
}

}  // namespace

std::vector<DueMessage> DeliveryStore::claim_due(std::int64_t now, std::size_t limit,
                                                 const std::function<bool(const DueMessage&)>& routable,
                                                 std::int64_t no_route_retry, std::vector<std::string>* no_route) {
  sqlite3* db = spool_.handle();
  std::vector<DueMessage> out;
  {
    // messages.next_attempt is the earliest pending recipient's time, so the
    // (state, next_attempt) index finds due work without touching the rest.
    Q q(db,
        "SELECT id, sender, created, attempts, smtputf8, body_8bit, size FROM messages "
        "WHERE state IN ('queued', 'deferred') AND next_attempt IS NOT NULL AND next_attempt <= ?1 "
        "ORDER BY next_attempt, id LIMIT ?2");
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
    Q r(db,
        "SELECT address FROM recipients WHERE message_id = ?1 AND state = 'pending' "
        "AND next_attempt IS NOT NULL AND next_attempt <= ?2 ORDER BY rowid");
    r.text(1, m.id).i64(2, now);
    while (r.step()) m.recipients.push_back(r.col_text(0));
    if (routable && !m.recipients.empty() && !routable(m)) {
      Q p(db, "UPDATE recipients SET next_attempt = ?2 WHERE message_id = ?1 AND state = 'pending'");
      p.text(1, m.id).i64(2, no_route_retry).run();
      Q u(db, "UPDATE messages SET next_attempt = ?2, last_error = 'no route' WHERE id = ?1");
      u.text(1, m.id).i64(2, no_route_retry).run();
      if (no_route) no_route->push_back(m.id);
      m.recipients.clear();   // dropped from the result below
      continue;
    }
    Q u(db, "UPDATE messages SET state = 'active', updated = ?2 WHERE id = ?1");
    u.text(1, m.id).i64(2, now).run();
  }
  std::erase_if(out, [](const DueMessage& m) { return m.recipients.empty(); });
  return out;
}

std::optional<std::int64_t> DeliveryStore::next_due() {
  Q q(spool_.handle(),
      "SELECT MIN(next_attempt) FROM messages WHERE state IN ('queued', 'deferred') AND next_attempt IS NOT NULL");
  if (q.step() && !q.col_null(0)) return q.col_i64(0);
  return std::nullopt;
}

int DeliveryStore::recover_active(std::int64_t now) {
  sqlite3* db = spool_.handle();
  Q r(db,
      "UPDATE recipients SET next_attempt = ?1 WHERE state = 'pending' AND message_id IN "
      "(SELECT id FROM messages WHERE state = 'active')");
  r.i64(1, now).run();
  Q m(db, "UPDATE messages SET state = 'deferred', next_attempt = ?1, updated = ?1 WHERE state = 'active'");
  m.i64(1, now).run();
  return m.changes();
}

MessageAfter DeliveryStore::apply(const DeliveryReport& rep) {
  sqlite3* db = spool_.handle();
  MessageAfter after;
  {
    Q q(db, "SELECT attempts FROM messages WHERE id = ?1");
    q.text(1, rep.id);
    if (!q.step()) {
      after.exists = false;
      return after;
    }
  }
  for (const auto& r : rep.recipients) {
    // A recipient already sent is never touched again: exactly once.
    Q u(db,
        "UPDATE recipients SET state = ?3, attempts = attempts + ?6, next_attempt = ?4, last_reply = ?5, "
        "updated = ?7 WHERE message_id = ?1 AND address = ?2 AND state = 'pending'");
    u.text(1, rep.id).text(2, r.address).text(3, result_state(r.result))
        .opt(4, r.result == RecipientResult::Deferred ? r.next_attempt : std::nullopt)
        .text(5, r.reply).i64(6, rep.count_attempt ? 1 : 0).i64(7, rep.time).run();
    if (u.changes() == 1 && r.result == RecipientResult::Failed) after.newly_failed.push_back(r.address);
  }
  std::map<std::string, std::int64_t> counts;
  std::optional<std::int64_t> earliest;
  {
    Q q(db, "SELECT state, COUNT(*), MIN(next_attempt) FROM recipients WHERE message_id = ?1 GROUP BY state");
    q.text(1, rep.id);
    while (q.step()) {
      std::string st = q.col_text(0);
      counts[st] = q.col_i64(1);
      if (st == "pending" && !q.col_null(2)) earliest = q.col_i64(2);
    }
  }
  if (counts["pending"] > 0) {
    after.state = kDeferred;
  } else {
    after.state = counts[kFailed] > 0 ? kFailed : kSent;
    earliest.reset();
  }
  {
    Q u(db,
        "UPDATE messages SET state = CASE WHEN state = 'held' THEN 'held' ELSE ?2 END, "
        "held_from = CASE WHEN state = 'held' THEN ?2 ELSE held_from END, "
        "attempts = attempts + ?3, next_attempt = ?4, last_error = ?5, updated = ?6 WHERE id = ?1");
    u.text(1, rep.id).text(2, after.state).i64(3, rep.count_attempt ? 1 : 0).opt(4, earliest)
        .text(5, rep.last_error).i64(6, rep.time).run();
  }
  {
    Q q(db, "SELECT attempts, state FROM messages WHERE id = ?1");
    q.text(1, rep.id);
    if (q.step()) {
      after.attempts = static_cast<int>(q.col_i64(0));
      after.state = q.col_text(1);
    }
  }
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

void DeliveryStore::unclaim(std::string_view id, std::int64_t next_attempt, std::string_view last_error) {
  sqlite3* db = spool_.handle();
  Q r(db, "UPDATE recipients SET next_attempt = MAX(COALESCE(next_attempt, ?2), ?2) "
          "WHERE message_id = ?1 AND state = 'pending'");
  r.text(1, id).i64(2, next_attempt).run();
  Q m(db,
      "UPDATE messages SET state = CASE WHEN attempts = 0 THEN 'queued' ELSE 'deferred' END, "
      "next_attempt = (SELECT MIN(next_attempt) FROM recipients WHERE message_id = ?1 AND state = 'pending'), "
      "last_error = CASE WHEN ?2 = '' THEN last_error ELSE ?2 END "
      "WHERE id = ?1 AND state = 'active'");
  m.text(1, id).text(2, last_error).run();
}

int DeliveryStore::release_waiting(std::int64_t now) {
  sqlite3* db = spool_.handle();
  const char* waiting =
      "SELECT id FROM messages WHERE state IN ('queued', 'deferred') AND "
      "(last_error = 'no route' OR last_error LIKE 'upstream \"%\" suspended:%' OR attempts = 0)";
  Q r(db, (std::string("UPDATE recipients SET next_attempt = ?1 WHERE state = 'pending' AND message_id IN (") +
           waiting + ")").c_str());
  r.i64(1, now).run();
  Q m(db, (std::string("UPDATE messages SET next_attempt = ?1 WHERE id IN (") + waiting + ")").c_str());
  m.i64(1, now).run();
  return m.changes();
}

int DeliveryStore::purge_finished(std::int64_t before) {
  Q q(spool_.handle(), "DELETE FROM messages WHERE state IN ('sent', 'failed') AND updated < ?1");
  q.i64(1, before).run();
  int n = q.changes();
  Q m(spool_.handle(),
      "DELETE FROM meta WHERE key LIKE 'bounce:%' AND substr(key, 8) NOT IN (SELECT id FROM messages)");
  m.run();
  return n;
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
  Q q(spool_.handle(), "SELECT 1 FROM meta WHERE key = ?1");
  q.text(1, "bounce:" + std::string(id));
  return q.step();
}

void DeliveryStore::mark_bounce_sent(std::string_view id, std::string_view dsn_id) {
  Q q(spool_.handle(), "INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)");
  q.text(1, "bounce:" + std::string(id)).text(2, dsn_id).run();
}

// --- added for the scheduler ---------------------------------------------------

std::vector<UpstreamState> DeliveryStore::load_upstream_states() {
  Q q(spool_.handle(),
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

void DeliveryStore::save_upstream_state(const UpstreamState& s) {
  Q q(spool_.handle(),
      "INSERT OR REPLACE INTO upstreams(name, suspended_until, reason, failures, stage, last_reply, updated) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
  q.text(1, s.name).opt(2, s.suspended_until).i64(3, static_cast<int>(s.reason)).i64(4, s.failures)
      .text(5, s.stage).text(6, s.last_reply).i64(7, s.updated).run();
}

void DeliveryStore::park(std::string_view id, std::int64_t next_attempt, WaitReason reason, std::string_view upstream,
                         std::string_view last_error) {
  sqlite3* db = spool_.handle();
  // A recipient due later than this keeps its own time.
  Q r(db, "UPDATE recipients SET next_attempt = MAX(COALESCE(next_attempt, ?2), ?2) "
          "WHERE message_id = ?1 AND state IN ('pending', 'uncertain') AND EXISTS (SELECT 1 FROM messages WHERE id = ?1 AND state = 'active')");
  r.text(1, id).i64(2, next_attempt).run();
  Q m(db,
      "UPDATE messages SET state = CASE WHEN attempts = 0 THEN 'queued' ELSE 'deferred' END, "
      "next_attempt = (SELECT MIN(next_attempt) FROM recipients WHERE message_id = ?1 "
      "AND state IN ('pending', 'uncertain')), wait_reason = ?3, wait_upstream = ?4, "
      "last_error = CASE WHEN ?2 = '' THEN last_error ELSE ?2 END "
      "WHERE id = ?1 AND state = 'active'");
  m.text(1, id).text(2, last_error).i64(3, static_cast<int>(reason)).text(4, upstream).run();
}

std::vector<OperatorAction> DeliveryStore::operator_actions_after(std::int64_t after, std::size_t limit) {
  Q q(spool_.handle(),
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
  Q q(spool_.handle(), "SELECT MAX(seq) FROM operator_log");   // the rowid's b-tree: its last entry
  if (q.step() && !q.col_null(0)) return q.col_i64(0);
  return 0;
}

void DeliveryStore::mark_waiting(std::string_view id, WaitReason reason, std::string_view upstream) {
  Q q(spool_.handle(),
      "UPDATE messages SET wait_reason = ?2, wait_upstream = ?3 WHERE id = ?1 AND state IN ('queued', 'deferred')");
  q.text(1, id).i64(2, static_cast<int>(reason)).text(3, upstream).run();
}

int DeliveryStore::release_upstream(std::string_view upstream, std::int64_t now) {
  sqlite3* db = spool_.handle();
  const char* waiting =
      "SELECT id FROM messages WHERE state IN ('queued', 'deferred') AND wait_upstream = ?2 "
      "AND wait_reason IN (2, 3)";   // WaitReason::UpstreamSuspended, RateLimited
  Q r(db, (std::string("UPDATE recipients SET next_attempt = ?1 WHERE state IN ('pending', 'uncertain') "
                       "AND message_id IN (") + waiting + ")").c_str());
  r.i64(1, now).text(2, upstream).run();
  Q m(db, (std::string("UPDATE messages SET next_attempt = ?1, wait_reason = 0, wait_upstream = '' WHERE id IN (") +
           waiting + ")").c_str());
  m.i64(1, now).text(2, upstream).run();
  return m.changes();
}

}  // namespace outbox::queue
