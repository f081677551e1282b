// Spool's writes to messages: submission (incoming rows, chunks, finalize,
// whole messages), the operator's control of a message (hold, release,
// delete, retry) and the delivery history (add_attempt).
#include "queue/spool.h"

#include "queue/spool_internal.h"

#include <limits>

namespace outbox::queue {

namespace {

std::string join_lines(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) {
    if (!out.empty()) out += '\n';
    out += s;
  }
  return out;
}

}  // namespace

// --- submission ---------------------------------------------------------------

void Spool::create_incoming(const NewMessage& m) {
  {
    Stmt st(*this, sql::kInsertMessage);
    st.text(1, m.id).text(2, m.sender).i64(3, m.created).text(4, m.client).opt_i64(5, m.uid).text(6, m.helo)
        .i64(7, m.smtputf8).i64(8, m.body_8bit).run();
  }
  for (const auto& r : m.recipients) {
    // The same RCPT twice is one recipient (and one delivery).
    Stmt st(*this, sql::kInsertRecipient);
    st.text(1, m.id).text(2, r).i64(3, m.created).run();
  }
  Stmt st(*this, sql::kBumpMaxId);
  st.text(1, m.id).run();
}

void Spool::append_chunk(std::string_view id, std::int64_t seq, std::string_view bytes) {
  Stmt st(*this, sql::kInsertChunk);
  st.text(1, id).i64(2, seq).blob_ref(3, bytes).run();
  if (st.changes() != 1)
    throw SpoolError("spool: append: no incoming message " + std::string(id), SQLITE_NOTFOUND);
}

void Spool::finalize(std::string_view id, std::string_view prefix, std::uint64_t size, std::int64_t now) {
  if (size > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
    throw SpoolError("spool: finalize: size out of range", SQLITE_RANGE);
  {
    Stmt st(*this, sql::kFinalizeMessage);
    st.text(1, id).blob_ref(2, prefix).i64(3, static_cast<std::int64_t>(size)).i64(4, now).run();
    if (st.changes() != 1)
      throw SpoolError("spool: finalize: no incoming message " + std::string(id), SQLITE_NOTFOUND);
  }
  Stmt st(*this, sql::kFinalizeRecipients);
  st.text(1, id).i64(2, now).run();
}

void Spool::store_whole(const NewMessage& m, std::string_view body, std::string_view prefix, std::uint64_t size,
                        std::int64_t now) {
  if (size > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
    throw SpoolError("spool: store: size out of range", SQLITE_RANGE);
  {
    Stmt st(*this, sql::kInsertWhole);
    st.text(1, m.id).text(2, m.sender).i64(3, m.created).text(4, m.client).opt_i64(5, m.uid).text(6, m.helo)
        .i64(7, m.smtputf8).i64(8, m.body_8bit).blob_ref(9, prefix).i64(10, static_cast<std::int64_t>(size))
        .i64(11, now).run();
  }
  for (const auto& r : m.recipients) {
    Stmt st(*this, sql::kInsertWholeRecipient);   // the same RCPT twice is one recipient
    st.text(1, m.id).text(2, r).i64(3, now).run();
  }
  if (!body.empty()) {
    Stmt st(*this, sql::kInsertWholeChunk);
    st.text(1, m.id).blob_ref(2, body).run();
  }
  Stmt st(*this, sql::kBumpMaxId);
  st.text(1, m.id).run();
}

void Spool::record_import(std::string_view file, std::string_view id, std::int64_t now) {
  if (auto earlier = imported_as(file))
    throw SpoolError("spool: maildrop file " + std::string(file) + " was imported already as " + *earlier,
                     SQLITE_CONSTRAINT);
  Stmt st(*this, sql::kRecordImport);
  st.text(1, file).text(2, id).i64(3, now).run();
}

std::optional<std::string> Spool::imported_as(std::string_view file) {
  Stmt st(*this, sql::kImportedAs);
  st.text(1, file);
  if (!st.step()) return std::nullopt;
  return st.str(0);
}

void Spool::forget_import(std::string_view file) {
  Stmt st(*this, sql::kForgetImport);
  st.text(1, file).run();
}

void Spool::discard(std::string_view id) {
  Stmt st(*this, sql::kDiscard);
  st.text(1, id).run();
}

int Spool::purge_incoming() {
  Stmt st(*this, "DELETE FROM messages WHERE state = 'incoming'");
  st.run();
  return st.changes();
}

std::string Spool::max_id() {
  Stmt st(*this, sql::kMaxId);
  if (!st.step() || st.is_null(0)) return {};
  return st.str(0);
}

// --- operator control -------------------------------------------------------------

bool Spool::hold(std::string_view id) {
  Txn txn(*this, true);
  Stmt st(*this, sql::kHold);
  st.text(1, id).i64(2, now_us()).run();
  bool changed = st.changes() == 1;
  if (changed) operator_log("hold", id);
  txn.commit();
  return changed;
}

bool Spool::release(std::string_view id) {
  Txn txn(*this, true);
  std::int64_t now = now_us();
  bool changed;
  {
    Stmt st(*this, sql::kRelease);
    st.text(1, id).i64(2, now).run();
    changed = st.changes() == 1;
  }
  if (changed) {
    Stmt st(*this, sql::kDueRecipients);
    st.text(1, id).i64(2, now).run();
    operator_log("release", id);
  }
  txn.commit();
  return changed;
}

bool Spool::remove(std::string_view id) {
  Txn txn(*this, true);
  bool changed;
  {
    Stmt st(*this, sql::kRemove);
    st.text(1, id).run();
    changed = st.changes() == 1;
  }
  if (changed) operator_log("delete", id);
  txn.commit();
  return changed;
}

bool Spool::retry(std::string_view id, std::int64_t now) {
  Txn txn(*this, true);
  bool changed;
  {
    Stmt st(*this, sql::kRetryMessage);
    st.text(1, id).i64(2, now).run();
    changed = st.changes() == 1;
  }
  if (changed) {
    Stmt st(*this, sql::kDueRecipients);
    st.text(1, id).i64(2, now).run();
    operator_log("retry", id);
  }
  txn.commit();
  return changed;
}

int Spool::retry_all(std::int64_t now) {
  Txn txn(*this, true);
  {
    Stmt st(*this,
            "UPDATE recipients SET next_attempt = ?1, updated = ?1 WHERE state IN ('pending', 'uncertain') AND message_id IN "
            "(SELECT id FROM messages WHERE state IN ('queued', 'deferred'))");
    st.i64(1, now).run();
  }
  int n;
  {
    Stmt st(*this, "UPDATE messages SET next_attempt = ?1, updated = ?1 WHERE state IN ('queued', 'deferred')");
    st.i64(1, now).run();
    n = st.changes();
  }
  operator_log("retry_all", "", std::to_string(n));
  txn.commit();
  return n;
}

void Spool::add_attempt(std::string_view id, const AttemptRecord& a) {
  Stmt st(*this, sql::kAddAttempt);
  st.text(1, id).i64(2, a.time).text(3, a.upstream).text(4, join_lines(a.recipients)).text(5, a.reply)
      .text(6, a.outcome).run();
}

}  // namespace outbox::queue
