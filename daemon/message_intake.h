// MessageIntake: one inbound connection's message on its way into the spool.
// It turns the session's BeginMessage / AppendBody / CommitMessage /
// AbortMessage into StoreWorker requests, keeps the message's state between
// them (the envelope held back until a chunk that is not the last, chunk
// numbers, whether a write failed, the bytes the writer still has to take),
// collects the text the relay will read first, and logs the outcome
// (`accepted`, `spool_error`). InboundConnection keeps the socket, TLS and
// timers; it is told when an append is done (back-pressure may lift) and
// what the commit answered (the session's 250 or 451).
//
// Durability: the 250 is the commit's answer. A message whose earlier write
// failed is never answered 250 even if its commit succeeds: its copy is
// incomplete, so it is aborted before anyone can see it as accepted.
//
// Store completions hold a weak_ptr to the intake (it goes with its
// connection); the Server outlives them all. Loop thread only.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "protocol/server_session.h"
#include "queue/types.h"

namespace outbox::daemon {

class Server;

class MessageIntake : public std::enable_shared_from_this<MessageIntake> {
 public:
  struct Source {
    std::string client;                 // the address, or "unix" (NewMessage::client, client= in the log)
    std::optional<std::uint32_t> uid;   // the peer's uid (Unix socket, loopback)
    std::string import_key;             // a maildrop file's import (NewMessage::import_key)
  };
  struct Events {
    std::function<void()> append_done;        // the writer took an append's bytes (or failed them)
    std::function<void(bool ok)> committed;   // the commit's answer, logged already
  };

  MessageIntake(Server& server, Source source, Events events);
  ~MessageIntake();   // gives back the text it held for the relay
  MessageIntake(const MessageIntake&) = delete;
  MessageIntake& operator=(const MessageIntake&) = delete;

  void begin(protocol::BeginMessage& a);
  void append(protocol::AppendBody& a);
  // last_chunk: the body's last chunk when the session gave it just before
  // the commit (one store request for a message that came whole).
  void commit(protocol::CommitMessage& a, protocol::AppendBody* last_chunk);
  void abort(const std::string& id);

  // The message under way ("" when none): between its BeginMessage and its
  // commit's answer or abort.
  const std::string& id() const { return msg_id_; }
  // Body bytes handed to the writer and not yet written.
  std::size_t inflight_bytes() const { return store_inflight_bytes_; }

 private:
  void send_begin();
  void drop_relay_text();
  std::string take_relay_text();   // out of Server::hold_text's count; collection off

  Server& server_;
  const Source source_;
  Events events_;
  std::string msg_id_;
  // The message's envelope, not yet sent to the store: the whole body of most
  // messages comes with the final dot, and then it goes as one request
  // (StoreWorker::store_message). Sent ahead of the first chunk that is not
  // the last.
  std::optional<queue::NewMessage> pending_begin_;
  std::int64_t chunk_seq_ = 0;
  bool msg_failed_ = false;
  std::size_t store_inflight_bytes_ = 0;
  std::string msg_from_;
  std::size_t msg_nrcpt_ = 0;
  std::string msg_user_;             // the AUTH user of the message, for the accepted line
  // The body's chunks before the last, copied for the relay (Server::
  // hold_text counts them); off once the message outgrows
  // BodyReader::kRememberTextBytes or the budget.
  std::string relay_text_;
  bool relay_text_on_ = false;
};

}  // namespace outbox::daemon
