// Spool's body reads: the whole stored body at once (read_body) and the
// bounded pieces the relay streams (read_body_part, queue/body_reader.h).
#include "queue/spool.h"

#include "queue/spool_internal.h"

namespace outbox::queue {

bool Spool::read_body(std::string_view id, const std::function<void(std::string_view)>& sink) {
  Txn txn(*this, false);   // prefix and chunks from one snapshot
  {
    Stmt st(*this, "SELECT prefix FROM messages WHERE id = ?1 AND state != 'incoming'");
    st.text(1, id);
    if (!st.step()) return false;
    sink(st.bytes(0));
  }
  {
    Stmt st(*this, "SELECT data FROM chunks WHERE message_id = ?1 ORDER BY seq");
    st.text(1, id);
    while (st.step()) sink(st.bytes(0));
  }
  txn.commit();
  return true;
}

// --- streaming body reads (queue/body_reader.h) ---

Spool::BodyPart Spool::read_body_part(std::string_view id, std::int64_t from_seq, std::size_t max_bytes,
                                      const std::function<void(std::string_view)>& sink) {
  BodyPart part;
  std::size_t given = 0;
  Txn txn(*this, false);
  {
    Stmt st(*this, "SELECT prefix FROM messages WHERE id = ?1 AND state != 'incoming'");
    st.text(1, id);
    if (!st.step()) return part;   // Missing: deleted (or never finalized)
    if (from_seq <= kPrefixSeq) {
      auto prefix = st.bytes(0);
      given += prefix.size();
      if (!prefix.empty()) sink(prefix);
      from_seq = 0;
    }
  }
  part.status = BodyPart::Status::End;
  part.next_seq = from_seq;
  {
    // The primary key (message_id, seq) makes this a range probe, not a scan.
    Stmt st(*this, "SELECT seq, data FROM chunks WHERE message_id = ?1 AND seq >= ?2 ORDER BY seq");
    st.text(1, id).i64(2, from_seq);
    while (st.step()) {
      if (given >= max_bytes) {
        part.status = BodyPart::Status::More;
        part.next_seq = st.i64(0);
        break;
      }
      auto data = st.bytes(1);
      given += data.size();
      sink(data);
      part.next_seq = st.i64(0) + 1;
    }
  }
  txn.commit();
  return part;
}

}  // namespace outbox::queue
